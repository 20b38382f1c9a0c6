//! From TOML text to a [`Config`]: every check, in file order, stopping at the first problem.

use std::collections::HashMap;
use std::path::Path;

use crate::flow::{self, FlowRule, OFPORT_MAX, OfPort, PortMap};
use crate::schema::{RawConfig, RawDatapath, RawFlows, RawPort};
use crate::vhost::{VhostPort, check_vhost};
use crate::{Config, ConfigError, Datapath, Devargs, Host, MAX_BURST_SIZE, MTU_RANGE, PortConfig};

const DEFAULT_DESC: u16 = 1024;
const DESC_RANGE: (i64, i64) = (64, 16384);

/// EAL options ferrovs derives from `[datapath]`; giving them too would contradict it.
const DERIVED_EAL_OPTIONS: &[&str] = &["-l", "-c", "--lcores", "--main-lcore", "--master-lcore"];

/// Words with a meaning of their own in flow syntax; a port cannot be called that.
const RESERVED_PORT_NAMES: &[&str] =
    &["in_port", "table", "normal", "flood", "all", "controller", "local", "none", "any", "drop", "output"];

pub(crate) fn validate(text: &str, source: &Path, base: &Path, host: &Host) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| syntax_error(text, source, &e))?;
    let eal_args = check_eal_args(raw.eal.args)?;
    let datapath = check_datapath(&raw.datapath, host)?;
    let ports = check_ports(&raw.ports, base, &datapath.pmd_cores)?;
    let bridge = crate::bridge::check_bridge(&raw.bridge, &ports)?;
    let mut config = Config { source: source.to_path_buf(), eal_args, datapath, ports, flows: Vec::new(), bridge };
    config.flows = check_flows(&raw.flows, base, &config)?;
    if config.flows.is_empty() && raw.flows.rules.is_empty() && raw.flows.file.is_none() {
        config.flows.push(flow::parse_flow("priority=0,actions=normal", &config).expect("a valid rule"));
    }
    Ok(config)
}

fn syntax_error(text: &str, source: &Path, e: &toml::de::Error) -> ConfigError {
    let offset = e.span().map_or(0, |s| s.start).min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    let mut message = e.message().lines().next().unwrap_or("invalid TOML").trim().to_string();
    if let Some(field) = field_at(text, line) {
        if !message.contains('`') {
            message = format!("{field}: {message}");
        }
    }
    ConfigError::Syntax { path: source.to_path_buf(), line, column, message }
}

/// The TOML path (`datapath.burst_size`, `port[1].ofport`) of the `key = value` on 1-based `line`.
fn field_at(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let key = lines.get(line - 1)?.split_once('=')?.0.trim();
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return None;
    }
    let header = lines[..line - 1].iter().rev().map(|l| l.trim()).find(|l| l.starts_with('['));
    Some(match header {
        None => key.to_string(),
        Some(h) if h.starts_with("[[") => {
            let table = h.trim_matches(['[', ']']).trim();
            let index = lines[..line - 1].iter().filter(|l| l.trim() == h).count() - 1;
            format!("{table}[{index}].{key}")
        }
        Some(h) => format!("{}.{key}", h.trim_matches(['[', ']']).trim()),
    })
}

fn check_eal_args(args: Vec<String>) -> Result<Vec<String>, ConfigError> {
    for (i, arg) in args.iter().enumerate() {
        let field = format!("eal.args[{i}]");
        if arg.trim().is_empty() {
            return Err(ConfigError::invalid(field, "empty argument"));
        }
        let option = arg.split('=').next().unwrap_or(arg);
        let derived = DERIVED_EAL_OPTIONS
            .iter()
            .any(|o| option == *o || (o.len() == 2 && option.starts_with(o) && !option.starts_with("--")));
        if derived {
            return Err(ConfigError::invalid(
                field,
                format!("{arg:?} is derived from [datapath] pmd_cores and control_core; remove it"),
            ));
        }
    }
    Ok(args)
}

fn check_core(value: i64, field: String, host: &Host) -> Result<usize, ConfigError> {
    let cpus = || host.cpus.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    match usize::try_from(value) {
        Ok(core) if host.cpus.contains(&core) => Ok(core),
        _ => {
            Err(ConfigError::invalid(field, format!("core {value} does not exist (this machine has cores {})", cpus())))
        }
    }
}

pub(crate) fn check_range(
    value: Option<i64>,
    default: i64,
    min: i64,
    max: i64,
    field: &str,
) -> Result<i64, ConfigError> {
    let v = value.unwrap_or(default);
    if (min..=max).contains(&v) {
        Ok(v)
    } else {
        Err(ConfigError::invalid(field, format!("must be between {min} and {max}, got {v}")))
    }
}

fn check_datapath(raw: &RawDatapath, host: &Host) -> Result<Datapath, ConfigError> {
    let control_core = check_core(raw.control_core.unwrap_or(0), "datapath.control_core".into(), host)?;
    let allow_shared_cores = raw.allow_shared_cores.unwrap_or(false);
    let pmd_raw = raw.pmd_cores.clone().unwrap_or_else(|| vec![1]);
    if pmd_raw.is_empty() {
        return Err(ConfigError::invalid("datapath.pmd_cores", "needs at least one core"));
    }
    let mut pmd_cores = Vec::with_capacity(pmd_raw.len());
    for (i, &core) in pmd_raw.iter().enumerate() {
        let field = format!("datapath.pmd_cores[{i}]");
        let core = check_core(core, field.clone(), host)?;
        if core == control_core {
            return Err(ConfigError::invalid(
                field,
                format!("core {core} is also the control_core; a PMD needs a core of its own"),
            ));
        }
        if pmd_cores.contains(&core) && !allow_shared_cores {
            return Err(ConfigError::invalid(
                field,
                format!("core {core} is listed twice (set allow_shared_cores = true to let PMDs share a CPU)"),
            ));
        }
        pmd_cores.push(core);
    }
    let burst = raw.burst_size.unwrap_or(64);
    if !(1..=MAX_BURST_SIZE as i64).contains(&burst) {
        return Err(ConfigError::invalid(
            "datapath.burst_size",
            format!("must be between 1 and {MAX_BURST_SIZE}, got {burst}"),
        ));
    }
    let flow_cache_size = check_range(
        raw.flow_cache_size,
        crate::DEFAULT_FLOW_CACHE_SIZE as i64,
        1,
        1 << 26,
        "datapath.flow_cache_size",
    )?;
    let max_megaflows =
        check_range(raw.max_megaflows, crate::DEFAULT_MAX_MEGAFLOWS as i64, 1, 1 << 22, "datapath.max_megaflows")?;
    let upcall_rate = check_range(raw.upcall_rate, 0, 0, 100_000_000, "datapath.upcall_rate")?;
    Ok(Datapath {
        pmd_cores,
        control_core,
        burst_size: burst as usize,
        allow_shared_cores,
        flow_cache_size: flow_cache_size as usize,
        max_megaflows: max_megaflows as usize,
        upcall_rate: upcall_rate as u64,
    })
}

fn check_port_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    let valid = name.len() <= 32
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !valid {
        return Err(format!(
            "{name:?} is not a valid port name (a letter, then up to 31 letters, digits, '_', '-' or '.')"
        ));
    }
    if RESERVED_PORT_NAMES.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!("{name:?} is a reserved word in flow syntax"));
    }
    Ok(())
}

fn check_desc(value: Option<i64>, field: String) -> Result<u16, ConfigError> {
    let Some(v) = value else {
        return Ok(DEFAULT_DESC);
    };
    if (DESC_RANGE.0..=DESC_RANGE.1).contains(&v) {
        Ok(v as u16)
    } else {
        Err(ConfigError::invalid(field, format!("must be between {} and {}, got {v}", DESC_RANGE.0, DESC_RANGE.1)))
    }
}

/// `"0:1,1:2"`: queue 0 on core 1, queue 1 on core 2; each queue below `rx_queues`, each core a PMD core.
fn check_affinity(
    text: &str,
    rx_queues: u16,
    pmd_cores: &[usize],
    field: String,
) -> Result<Vec<(u16, usize)>, ConfigError> {
    let mut out: Vec<(u16, usize)> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || ConfigError::invalid(field.clone(), format!("{part:?} is not QUEUE:CORE (e.g. \"0:1,1:2\")"));
        let (q, c) = part.split_once(':').ok_or_else(bad)?;
        let (q, c): (u16, usize) = (q.trim().parse().map_err(|_| bad())?, c.trim().parse().map_err(|_| bad())?);
        if q >= rx_queues {
            return Err(ConfigError::invalid(field, format!("queue {q} does not exist (rx_queues = {rx_queues})")));
        }
        if !pmd_cores.contains(&c) {
            return Err(ConfigError::invalid(
                field,
                format!("core {c} is not one of datapath.pmd_cores {pmd_cores:?}"),
            ));
        }
        if out.iter().any(|(oq, _)| *oq == q) {
            return Err(ConfigError::invalid(field, format!("queue {q} is pinned twice")));
        }
        out.push((q, c));
    }
    Ok(out)
}

fn check_ports(raw: &[RawPort], base: &Path, pmd_cores: &[usize]) -> Result<Vec<PortConfig>, ConfigError> {
    let mut ports: Vec<PortConfig> = Vec::with_capacity(raw.len());
    let mut ofport_owner: HashMap<OfPort, usize> = HashMap::new();
    // Explicit ofports first, so a default that collides is reported against the explicit one.
    for (i, p) in raw.iter().enumerate() {
        if let Some(n) = p.ofport {
            let field = format!("port[{i}].ofport");
            if !(1..=i64::from(OFPORT_MAX)).contains(&n) {
                return Err(ConfigError::invalid(field, format!("must be between 1 and {OFPORT_MAX}, got {n}")));
            }
            if let Some(j) = ofport_owner.insert(n as OfPort, i) {
                return Err(ConfigError::invalid(field, format!("ofport {n} is already used by port[{j}]")));
            }
        }
    }
    for (i, p) in raw.iter().enumerate() {
        let at = |key: &str| format!("port[{i}].{key}");
        check_port_name(&p.name).map_err(|r| ConfigError::invalid(at("name"), r))?;
        if let Some(j) = ports.iter().position(|q| q.name == p.name) {
            return Err(ConfigError::invalid(at("name"), format!("{:?} is already the name of port[{j}]", p.name)));
        }
        let (devargs, vhost) = check_device(p, i, base, &ports)?;
        let ofport = match p.ofport {
            Some(n) => n as OfPort,
            None => {
                let n = (i + 1) as OfPort;
                if let Some(&j) = ofport_owner.get(&n) {
                    return Err(ConfigError::invalid(
                        at("ofport"),
                        format!("the default ofport {n} (its position) is taken by port[{j}]; give an explicit ofport"),
                    ));
                }
                ofport_owner.insert(n, i);
                n
            }
        };
        let rx_queues = match &vhost {
            Some(v) => check_vhost_rx_queues(p.rx_queues, v.queues, &at("rx_queues"))?,
            None => check_range(p.rx_queues, 1, 1, 64, &at("rx_queues"))? as u16,
        };
        let mtu = match p.mtu {
            Some(_) => Some(check_range(p.mtu, 0, MTU_RANGE.0, MTU_RANGE.1, &at("mtu"))? as u16),
            None => None,
        };
        let pmd_rxq_affinity = match &p.pmd_rxq_affinity {
            Some(text) => check_affinity(text, rx_queues, pmd_cores, at("pmd_rxq_affinity"))?,
            None => Vec::new(),
        };
        ports.push(PortConfig {
            name: p.name.clone(),
            devargs,
            ofport,
            rx_desc: check_desc(p.rx_desc, at("rx_desc"))?,
            tx_desc: check_desc(p.tx_desc, at("tx_desc"))?,
            rx_queues,
            pmd_rxq_affinity,
            vlan: crate::bridge::check_port_vlan(p, i)?,
            vhost,
            mtu,
        });
    }
    Ok(ports)
}

/// Port `i`'s device: its `devargs`, or the `net_vhost` devargs derived from its `vhost` table
/// (exactly one of the two), unique among the ports before it, as is a vhost socket.
fn check_device(
    p: &RawPort,
    i: usize,
    base: &Path,
    before: &[PortConfig],
) -> Result<(Devargs, Option<VhostPort>), ConfigError> {
    let at = |key: &str| format!("port[{i}].{key}");
    let (devargs, vhost) = match (&p.devargs, &p.vhost) {
        (Some(_), Some(_)) => return Err(ConfigError::invalid(at("vhost"), "a port has devargs or vhost, not both")),
        (None, None) => {
            return Err(ConfigError::invalid(
                format!("port[{i}]"),
                "needs devargs (a DPDK device) or vhost (a vhost-user socket)",
            ));
        }
        (Some(text), None) => (Devargs::parse(text, base).map_err(|r| ConfigError::invalid(at("devargs"), r))?, None),
        (None, Some(raw)) => {
            let (vhost, devargs) = check_vhost(raw, base, i)?;
            (devargs, Some(vhost))
        }
    };
    let field = if vhost.is_some() { at("vhost.path") } else { at("devargs") };
    if let Some(j) = before.iter().position(|q| q.devargs.device() == devargs.device()) {
        return Err(ConfigError::invalid(
            field,
            format!("device {} is already used by port[{j}] ({})", devargs.device(), before[j].name),
        ));
    }
    if let Some(sock) = devargs.vhost_socket()
        && let Some(j) = before.iter().position(|q| q.devargs.vhost_socket() == Some(sock))
    {
        return Err(ConfigError::invalid(
            field,
            format!("socket {sock} is already used by port[{j}] ({})", before[j].name),
        ));
    }
    Ok((devargs, vhost))
}

/// A vhost port receives on one queue per queue pair: `rx_queues`, if given, must agree.
fn check_vhost_rx_queues(rx_queues: Option<i64>, queues: u16, field: &str) -> Result<u16, ConfigError> {
    match rx_queues {
        Some(n) if n != i64::from(queues) => Err(ConfigError::invalid(
            field,
            format!("a vhost port receives on its vhost.queues ({queues}) queue pairs, got {n}; remove rx_queues"),
        )),
        _ => Ok(queues),
    }
}

fn check_flows(raw: &RawFlows, base: &Path, ports: &dyn PortMap) -> Result<Vec<FlowRule>, ConfigError> {
    let mut rules = Vec::new();
    for (i, text) in raw.rules.iter().enumerate() {
        let rule = flow::parse_flow(text, ports)
            .map_err(|r| ConfigError::invalid(format!("flows.rules[{i}]"), format!("{text:?}: {r}")))?;
        rules.push(rule);
    }
    if let Some(file) = &raw.file {
        let path = base.join(file);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ConfigError::invalid("flows.file", format!("cannot read {}: {e}", path.display())))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let rule = flow::parse_flow(line, ports).map_err(|r| {
                ConfigError::invalid("flows.file", format!("{}:{}: {line:?}: {r}", path.display(), n + 1))
            })?;
            rules.push(rule);
        }
    }
    Ok(rules)
}
