//! Live scenarios: a switch (ferrovs, or OVS-DPDK as the reference) runs with `net_tap` ports,
//! and the test injects frames into chosen ports in a chosen order through the kernel side of the
//! taps ([`tap::Tap`]), waiting after each frame for the switch to have handled it (upcall and MAC
//! learning included), while collectors capture everything each port transmits.
//!
//! Port `i` (0-based) is OpenFlow port `i + 1` in both switches, so rules use port numbers. A
//! scenario without rules runs `priority=0,actions=normal`. Captures keep only frames whose source
//! MAC starts with `02:00:00` (every test frame, see `traffic::mac`) or `03:00:00`: the kernel,
//! OVS's `br0` and others may put their own frames on the taps. Live runs are serialised with
//! each other and with OVS runs of any test process (`ovs::MachineLock`), so timing does not
//! depend on what else runs.
//!
//! Diagnosis: `LIVE_TRACE=1` prints when every frame went in and came out of each switch;
//! `LIVE_SETTLE_MS`, `LIVE_GAP_MS`, `LIVE_QUIET_MS` change the timing defaults of
//! [`Scenario::new`]; `LIVE_OVS_NO_PURGE=1` leaves OVS's datapath flows alone (see [`run_ovs`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::ovs;
use super::process::Process;
use super::tap::{self, Tap};

/// Whether `frame` is one of ours: its source MAC is `02:00:00:xx:xx:xx` (`traffic::mac`), or
/// `03:00:00:xx:xx:xx` (the same with the multicast bit, which tests use as an invalid source).
/// Captures keep only those.
pub fn is_test_frame(frame: &[u8]) -> bool {
    matches!(frame.get(6..9), Some(&[0x02 | 0x03, 0x00, 0x00]))
}

/// One live run at a time in this process (both switches poll CPU 1; timing must not depend on
/// what else runs).
static LIVE_LOCK: Mutex<()> = Mutex::new(());

/// A switch port and its VLAN configuration (as in OVS's Port table).
#[derive(Clone, Debug)]
pub struct PortSpec {
    /// Port name (ferrovs `[[port]] name`, OVS port name).
    pub name: String,
    /// `access`, `trunk`, `native-untagged` or `native-tagged`; `None`: not set.
    pub vlan_mode: Option<String>,
    /// The port's VLAN (access or native).
    pub tag: Option<u16>,
    /// VLANs a trunk carries; empty: not set (all VLANs).
    pub trunks: Vec<u16>,
}

impl PortSpec {
    /// A port without VLAN configuration.
    pub fn plain(name: &str) -> Self {
        Self { name: name.into(), vlan_mode: None, tag: None, trunks: Vec::new() }
    }

    /// An access port in VLAN `tag`.
    pub fn access(name: &str, tag: u16) -> Self {
        Self { vlan_mode: Some("access".into()), tag: Some(tag), ..Self::plain(name) }
    }

    /// A trunk carrying `trunks` (empty: every VLAN).
    pub fn trunk(name: &str, trunks: &[u16]) -> Self {
        Self { vlan_mode: Some("trunk".into()), trunks: trunks.to_vec(), ..Self::plain(name) }
    }

    /// A trunk whose untagged frames are in VLAN `tag`, which it sends untagged.
    pub fn native_untagged(name: &str, tag: u16, trunks: &[u16]) -> Self {
        Self { vlan_mode: Some("native-untagged".into()), tag: Some(tag), trunks: trunks.to_vec(), ..Self::plain(name) }
    }

    /// A trunk whose untagged frames are in VLAN `tag`, which it sends tagged.
    pub fn native_tagged(name: &str, tag: u16, trunks: &[u16]) -> Self {
        Self { vlan_mode: Some("native-tagged".into()), tag: Some(tag), trunks: trunks.to_vec(), ..Self::plain(name) }
    }

    fn has_vlan_config(&self) -> bool {
        self.vlan_mode.is_some() || self.tag.is_some() || !self.trunks.is_empty()
    }
}

/// A MAC table entry configured up front.
#[derive(Clone, Debug)]
pub struct StaticMac {
    pub mac: [u8; 6],
    /// Index into the scenario's ports.
    pub port: usize,
    pub vlan: u16,
}

/// One step of a scenario.
#[derive(Clone, Debug)]
pub enum Step {
    /// Frames sent into port `port` (an index into the scenario's ports), in order, each
    /// followed by the settle time (unless the scenario sets a `frame_gap`).
    Send { port: usize, frames: Vec<Vec<u8>> },
    /// Nothing happens for this long (on top of the settle time).
    Wait(Duration),
}

/// Ports, rules, bridge settings and the traffic steps of one live run.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub ports: Vec<PortSpec>,
    /// ovs-ofctl syntax with port numbers (port i is `i + 1`); empty: `priority=0,actions=normal`.
    pub rules: Vec<String>,
    pub mac_table_size: Option<u32>,
    pub mac_aging_secs: Option<u32>,
    pub static_macs: Vec<StaticMac>,
    pub steps: Vec<Step>,
    /// Pause after each frame sent (and before the first), so the switch has handled it, upcall
    /// and MAC learning included, before the next one: outputs then come in a deterministic order.
    /// It must exceed the switch's slowest upcall (see [`Captures::slowest`]).
    pub settle: Duration,
    /// `Some(gap)`: the frames of one `Send` step go `gap` apart and the settle time follows the
    /// step only (faster, for frames whose relative order and learning do not matter). A tap port
    /// has two receive queues (`net_tap` wants as many as transmit queues; the kernel spreads
    /// flows over them by hash) and a switch may forward a cached flow ahead of an older frame
    /// still in an upcall, so such frames may leave in either order. `None` (the default): every
    /// frame is a step of its own.
    pub frame_gap: Option<Duration>,
    /// After the last step: captures are complete once no port received anything for this long.
    pub quiet: Duration,
}

impl Default for Scenario {
    fn default() -> Self {
        Self::new()
    }
}

impl Scenario {
    /// No ports, no rules (NORMAL), no steps; 100 ms settle after every frame, 200 ms quiet (for
    /// diagnosis, `LIVE_SETTLE_MS`, `LIVE_GAP_MS` and `LIVE_QUIET_MS` change these defaults).
    pub fn new() -> Self {
        let ms = |var: &str| std::env::var(var).ok().and_then(|v| v.parse().ok()).map(Duration::from_millis);
        Self {
            ports: Vec::new(),
            rules: Vec::new(),
            mac_table_size: None,
            mac_aging_secs: None,
            static_macs: Vec::new(),
            steps: Vec::new(),
            settle: ms("LIVE_SETTLE_MS").unwrap_or(Duration::from_millis(100)),
            frame_gap: ms("LIVE_GAP_MS"),
            quiet: ms("LIVE_QUIET_MS").unwrap_or(Duration::from_millis(200)),
        }
    }

    /// Adds a port.
    pub fn port(mut self, port: PortSpec) -> Self {
        self.ports.push(port);
        self
    }

    /// Adds ports `p0`, `p1`, ... (continuing the numbering) without VLAN configuration.
    pub fn plain_ports(mut self, n: usize) -> Self {
        for _ in 0..n {
            let name = format!("p{}", self.ports.len());
            self.ports.push(PortSpec::plain(&name));
        }
        self
    }

    /// Adds flow rules.
    pub fn rules(mut self, rules: &[&str]) -> Self {
        self.rules.extend(rules.iter().map(|r| r.to_string()));
        self
    }

    /// Sets the MAC table's capacity.
    pub fn mac_table_size(mut self, n: u32) -> Self {
        self.mac_table_size = Some(n);
        self
    }

    /// Sets the MAC aging time.
    pub fn mac_aging_secs(mut self, secs: u32) -> Self {
        self.mac_aging_secs = Some(secs);
        self
    }

    /// Adds a static MAC table entry: `mac` in `vlan` is on port index `port`.
    pub fn static_mac(mut self, mac: [u8; 6], port: usize, vlan: u16) -> Self {
        self.static_macs.push(StaticMac { mac, port, vlan });
        self
    }

    /// A step: `frames` sent into port index `port`.
    pub fn send(mut self, port: usize, frames: Vec<Vec<u8>>) -> Self {
        self.steps.push(Step::Send { port, frames });
        self
    }

    /// A step: one frame sent into port index `port`.
    pub fn send1(self, port: usize, frame: Vec<u8>) -> Self {
        self.send(port, vec![frame])
    }

    /// A step: nothing happens for `d`.
    pub fn wait(mut self, d: Duration) -> Self {
        self.steps.push(Step::Wait(d));
        self
    }

    /// Sets the pause after each step.
    pub fn settle(mut self, d: Duration) -> Self {
        self.settle = d;
        self
    }

    /// Sends the frames of each step `d` apart, settling after the step only.
    pub fn frame_gap(mut self, d: Duration) -> Self {
        self.frame_gap = Some(d);
        self
    }

    /// The rules to install: the scenario's, or NORMAL.
    pub fn effective_rules(&self) -> Vec<String> {
        if self.rules.is_empty() { vec!["priority=0,actions=normal".to_string()] } else { self.rules.clone() }
    }

    fn check(&self) -> Result<(), String> {
        let n = self.ports.len();
        if n == 0 {
            return Err("a scenario needs ports".into());
        }
        for (i, step) in self.steps.iter().enumerate() {
            if let Step::Send { port, .. } = step {
                if *port >= n {
                    return Err(format!("step {i} sends into port {port}, there are {n}"));
                }
            }
        }
        match self.static_macs.iter().find(|s| s.port >= n) {
            Some(s) => Err(format!("static MAC {} on port {}, there are {n}", fmt_mac(&s.mac), s.port)),
            None => Ok(()),
        }
    }
}

/// What each port transmitted during a run.
#[derive(Debug)]
pub struct Captures {
    /// Per port name: the test frames ([`is_test_frame`]) it transmitted, in order.
    pub out: Frames,
    /// Per port name: the other frames it transmitted (the kernel's, OVS's own), left out of `out`.
    pub foreign: Frames,
    /// ferrovs's final counters (`--stats-json`); `Null` for OVS.
    pub stats: Value,
    /// ferrovs's stdout and stderr, or ovs-vswitchd's log.
    pub log: String,
    /// Every test frame sent and received, in time order.
    pub events: Vec<Event>,
}

/// A test frame going into the switch (`sent`) or coming out of it, on port index `port`, `at`
/// after the first frame was sent.
#[derive(Clone, Debug)]
pub struct Event {
    pub at: Duration,
    pub sent: bool,
    pub port: usize,
    pub frame: Vec<u8>,
}

impl Captures {
    fn new(sc: &Scenario, run: Driven, stats: Value, log: String) -> Self {
        let c = Self { out: run.out, foreign: run.foreign, stats, log, events: run.events };
        if std::env::var_os("LIVE_TRACE").is_some() {
            eprintln!("timeline (ms):\n{}", c.timeline(sc));
        }
        c
    }

    /// What port `name` transmitted.
    pub fn port(&self, name: &str) -> &[Vec<u8>] {
        self.out.get(name).map_or(&[], Vec::as_slice)
    }

    /// Every port's frames, one line each (for `--nocapture` runs), then the others.
    pub fn dump(&self) -> String {
        let mut s = String::new();
        for (port, frames) in &self.out {
            let _ = writeln!(s, "  {port}: {} frames", frames.len());
            for f in frames {
                let _ = writeln!(s, "      {}", describe(f));
            }
        }
        for (port, frames) in self.foreign.iter().filter(|(_, f)| !f.is_empty()) {
            let _ = writeln!(s, "  {port}: {} other frames (left out)", frames.len());
            for f in frames {
                let _ = writeln!(s, "      {}", describe(f));
            }
        }
        s
    }

    /// The longest time a frame took through the switch, and its id (`traffic::tag`): from when
    /// it was sent to when a copy came out. Frames without an id are not counted.
    pub fn slowest(&self) -> Option<(Duration, u16)> {
        let mut sent_at = BTreeMap::new();
        let mut slowest: Option<(Duration, u16)> = None;
        for e in &self.events {
            let Some(id) = super::traffic::tag_of(&e.frame) else { continue };
            if e.sent {
                sent_at.insert(id, e.at);
            } else if let Some(t) = sent_at.get(&id) {
                let took = e.at.saturating_sub(*t);
                if slowest.is_none_or(|(d, _)| took > d) {
                    slowest = Some((took, id));
                }
            }
        }
        slowest
    }

    /// Sends and receives in time order, in milliseconds from the first send.
    pub fn timeline(&self, sc: &Scenario) -> String {
        let mut s = String::new();
        for e in &self.events {
            let ms = e.at.as_secs_f64() * 1e3;
            let dir = if e.sent { "in " } else { "out" };
            let _ = writeln!(s, "  {ms:9.3} {dir} {:<4} {}", sc.ports[e.port].name, describe(&e.frame));
        }
        s
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let lines: Vec<&str> = self.log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// Frames per port name.
pub type Frames = BTreeMap<String, Vec<Vec<u8>>>;

/// Short interface names, unique per process and run: `{prefix}{pid % 10000}_{run}_{i}`.
fn iface_names(prefix: &str, n: usize) -> Vec<String> {
    static RUNS: AtomicU32 = AtomicU32::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id() % 10_000;
    let names: Vec<String> = (0..n).map(|i| format!("{prefix}{pid}_{run}_{i}")).collect();
    assert!(names.iter().all(|n| n.len() <= 15), "interface names too long: {names:?}");
    names
}

/// What [`drive`] collected.
struct Driven {
    out: Frames,
    foreign: Frames,
    events: Vec<Event>,
}

/// Opens the taps, plays the steps, drains the captures. `after_settle` runs after each settle
/// time.
fn drive(sc: &Scenario, ifaces: &[String], after_settle: &dyn Fn() -> Result<(), String>) -> Result<Driven, String> {
    let taps = ifaces.iter().map(|i| Tap::open(i)).collect::<Result<Vec<_>, _>>()?;
    std::thread::sleep(sc.settle);
    let settle = || {
        std::thread::sleep(sc.settle);
        after_settle()
    };
    let mut sent = Vec::new();
    for step in &sc.steps {
        match step {
            Step::Send { port, frames } => {
                for (k, frame) in frames.iter().enumerate() {
                    match sc.frame_gap {
                        Some(gap) if k > 0 => std::thread::sleep(gap),
                        Some(_) => {}
                        None if k > 0 => settle()?,
                        None => {}
                    }
                    taps[*port].send(frame)?;
                    sent.push((Instant::now(), *port, frame.clone()));
                }
            }
            Step::Wait(d) => std::thread::sleep(*d),
        }
        settle()?;
    }
    let (mut out, mut foreign, mut received) = (BTreeMap::new(), BTreeMap::new(), Vec::new());
    for (i, (port, tap)) in sc.ports.iter().zip(&taps).enumerate() {
        let (ours, theirs): (Vec<_>, Vec<_>) =
            tap.recv_all_timed(sc.quiet)?.into_iter().partition(|(_, f)| is_test_frame(f));
        received.extend(ours.iter().map(|(t, f)| (*t, i, f.clone())));
        out.insert(port.name.clone(), ours.into_iter().map(|(_, f)| f).collect());
        foreign.insert(port.name.clone(), theirs.into_iter().map(|(_, f)| f).collect());
    }
    let events = events(&sent, &received);
    Ok(Driven { out, foreign, events })
}

/// Sends and receives as [`Event`]s in time order.
fn events(sent: &[(Instant, usize, Vec<u8>)], received: &[(Instant, usize, Vec<u8>)]) -> Vec<Event> {
    let mut all: Vec<(Instant, bool, usize, &Vec<u8>)> = sent.iter().map(|(t, p, f)| (*t, true, *p, f)).collect();
    all.extend(received.iter().map(|(t, p, f)| (*t, false, *p, f)));
    all.sort_by_key(|e| e.0);
    let Some(&(start, ..)) = all.first() else { return Vec::new() };
    all.into_iter()
        .map(|(t, sent, port, frame)| Event {
            at: t.saturating_duration_since(start),
            sent,
            port,
            frame: frame.clone(),
        })
        .collect()
}

fn fmt_mac(mac: &[u8]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

// ---------------------------------------------------------------------------------------------
// ferrovs

/// The ferrovs config for `sc` with tap ports named `ifaces`.
pub fn ferrovs_config(sc: &Scenario, ifaces: &[String]) -> String {
    let mut t = String::from("[eal]\nargs = [\"--no-pci\", \"--in-memory\", \"--log-level=lib.eal:warning\"]\n");
    t.push_str("[datapath]\npmd_cores = [1]\ncontrol_core = 0\n");
    if sc.mac_table_size.is_some() || sc.mac_aging_secs.is_some() || !sc.static_macs.is_empty() {
        t.push_str("[bridge]\n");
        if let Some(n) = sc.mac_table_size {
            let _ = writeln!(t, "mac_table_size = {n}");
        }
        if let Some(n) = sc.mac_aging_secs {
            let _ = writeln!(t, "mac_aging_secs = {n}");
        }
        if !sc.static_macs.is_empty() {
            t.push_str("static_macs = [\n");
            for s in &sc.static_macs {
                let port = &sc.ports[s.port].name;
                let _ = writeln!(t, "  {{ mac = \"{}\", port = {port:?}, vlan = {} }},", fmt_mac(&s.mac), s.vlan);
            }
            t.push_str("]\n");
        }
    }
    for (i, (p, iface)) in sc.ports.iter().zip(ifaces).enumerate() {
        let _ = write!(t, "[[port]]\nname = {:?}\ndevargs = \"net_tap{i},iface={iface}\"\n", p.name);
        if let Some(mode) = &p.vlan_mode {
            let _ = writeln!(t, "vlan_mode = {mode:?}");
        }
        if let Some(tag) = p.tag {
            let _ = writeln!(t, "tag = {tag}");
        }
        if !p.trunks.is_empty() {
            let _ = writeln!(t, "trunks = {:?}", p.trunks);
        }
    }
    t.push_str("[flows]\nrules = [\n");
    for r in sc.effective_rules() {
        let _ = writeln!(t, "  {r:?},");
    }
    t.push_str("]\n");
    t
}

/// A running ferrovs; dropping it kills the process (by PID) if it still runs.
struct Ferrovs {
    process: Process,
}

impl Ferrovs {
    fn spawn(config: &Path, stats: &Path) -> Result<Self, String> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrovs"));
        cmd.args(["run", "--config"]).arg(config).arg("--stats-json").arg(stats);
        Ok(Self { process: Process::spawn(cmd)? })
    }

    fn log(&self) -> String {
        format!("--- ferrovs stdout\n{}--- ferrovs stderr\n{}", self.process.stdout(), self.process.stderr())
    }

    /// Waits for the log line saying the PMDs forward.
    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while !self.process.stderr().contains("forwarding with") {
            if !self.process.running() {
                return Err(format!("ferrovs exited before forwarding\n{}", self.log()));
            }
            if Instant::now() > deadline {
                return Err(format!("ferrovs not forwarding after {timeout:?}\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// SIGINT, then waits (up to 30 s) for a graceful exit.
    fn stop(&mut self) -> Result<ExitStatus, String> {
        self.process
            .signal_and_wait("-INT", Duration::from_secs(30))
            .map_err(|e| format!("ferrovs: {e}\n{}", self.log()))
    }
}

/// Runs `sc` through ferrovs on `net_tap` ports; returns the captures, the final counters and
/// the log.
pub fn run_ferrovs(sc: &Scenario) -> Result<Captures, String> {
    sc.check()?;
    let _one_at_a_time = LIVE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    // Not while an OVS (of any test process) polls CPU 1 too: timing matters here.
    let _no_ovs = ovs::MachineLock::take()?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let ifaces = iface_names("fv", sc.ports.len());
    let config = dir.path().join("ferrovs.toml");
    let stats_path = dir.path().join("stats.json");
    std::fs::write(&config, ferrovs_config(sc, &ifaces)).map_err(|e| e.to_string())?;
    let _quiet_kernel = tap::Ipv6OffForNewInterfaces::take()?;
    let mut sw = Ferrovs::spawn(&config, &stats_path)?;
    sw.wait_ready(Duration::from_secs(60))?;
    let run = drive(sc, &ifaces, &|| Ok(())).map_err(|e| format!("{e}\n{}", sw.log()))?;
    let status = sw.stop()?;
    let log = sw.log();
    if !status.success() {
        return Err(format!("ferrovs failed ({status})\n{log}"));
    }
    let stats = std::fs::read_to_string(&stats_path).map_err(|e| format!("{}: {e}\n{log}", stats_path.display()))?;
    let stats = serde_json::from_str(&stats).map_err(|e| format!("stats json: {e}\n{log}"))?;
    Ok(Captures::new(sc, run, stats, log))
}

// ---------------------------------------------------------------------------------------------
// OVS

/// Applies a port's VLAN settings to OVS's Port table.
fn ovs_port_vlan(d: &ovs::Daemons, p: &PortSpec) -> Result<(), String> {
    if !p.has_vlan_config() {
        return Ok(());
    }
    let mut args = vec!["set".to_string(), "Port".to_string(), p.name.clone()];
    if let Some(mode) = &p.vlan_mode {
        args.push(format!("vlan_mode={mode}"));
    }
    if let Some(tag) = p.tag {
        args.push(format!("tag={tag}"));
    }
    if !p.trunks.is_empty() {
        let trunks: Vec<String> = p.trunks.iter().map(u16::to_string).collect();
        args.push(format!("trunks={}", trunks.join(",")));
    }
    d.vsctl(&args.iter().map(String::as_str).collect::<Vec<_>>()).map(drop)
}

fn ovs_bridge_settings(d: &ovs::Daemons, sc: &Scenario) -> Result<(), String> {
    let mut args = vec!["set".to_string(), "Bridge".to_string(), "br0".to_string()];
    if let Some(n) = sc.mac_aging_secs {
        args.push(format!("other_config:mac-aging-time={n}"));
    }
    if let Some(n) = sc.mac_table_size {
        args.push(format!("other_config:mac-table-size={n}"));
    }
    if args.len() > 3 {
        d.vsctl(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    }
    for s in &sc.static_macs {
        let vlan = s.vlan.to_string();
        d.appctl("vswitchd.ctl", &["fdb/add", "br0", &sc.ports[s.port].name, &vlan, &fmt_mac(&s.mac)])?;
    }
    Ok(())
}

/// Waits until the PMD polls every port (`dpif-netdev/pmd-rxq-show` lists them).
fn ovs_wait_polled(d: &ovs::Daemons, sc: &Scenario) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = d.appctl("vswitchd.ctl", &["dpif-netdev/pmd-rxq-show"])?;
        let words: Vec<&str> = text.split_whitespace().collect();
        let polled = |name: &str| words.windows(2).any(|w| w[0] == "port:" && w[1] == name);
        if sc.ports.iter().all(|p| polled(&p.name)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("OVS's PMD does not poll every port after 20 s:\n{text}\n{}", d.log_tail()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `sc` through OVS-DPDK on `net_tap` ports (the reference). The datapath's flows are
/// purged after every step, so every step's frames go through translation (MAC learning
/// included) and see the MAC table the previous steps left: OVS itself gets there asynchronously,
/// its revalidators re-translating cached flows and learning from their hits up to ~0.5 s later.
/// `LIVE_OVS_NO_PURGE=1` leaves the flows alone (to see what OVS does at full speed).
pub fn run_ovs(sc: &Scenario) -> Result<Captures, String> {
    sc.check()?;
    let _one_at_a_time = LIVE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    // The PMD runs from the start: the ports' transmit queues (one per PMD, plus one) are then
    // as many as their receive queues, as net_tap wants; nothing is sent before the taps open.
    let mut d = ovs::start_daemons("ovslive", "0x2")?;
    let ifaces = iface_names("ov", sc.ports.len());
    let _quiet_kernel = tap::Ipv6OffForNewInterfaces::take()?;
    for (i, (p, iface)) in sc.ports.iter().zip(&ifaces).enumerate() {
        ovs::add_dpdk_port(&d, &p.name, i + 1, &format!("net_tap{i},iface={iface}"), &["options:n_rxq=2"])?;
        ovs_port_vlan(&d, p)?;
    }
    ovs_bridge_settings(&d, sc)?;
    d.add_rules(&sc.effective_rules())?;
    ovs_wait_polled(&d, sc)?;
    // LIVE_OVS_NO_PURGE=1 shows what OVS does left alone (for diagnosis).
    let keep_flows = std::env::var_os("LIVE_OVS_NO_PURGE").is_some();
    let purge = || if keep_flows { Ok(()) } else { d.appctl("vswitchd.ctl", &["revalidator/purge"]).map(drop) };
    let run = drive(sc, &ifaces, &purge).map_err(|e| format!("{e}\n{}", d.log_tail()))?;
    let log = d.log();
    d.stop();
    Ok(Captures::new(sc, run, Value::Null, log))
}

// ---------------------------------------------------------------------------------------------
// Comparing

/// One line about a frame: addresses, VLAN tags, type, length and the id of `traffic::tag`.
pub fn describe(frame: &[u8]) -> String {
    if frame.len() < 14 {
        return format!("runt, {} B", frame.len());
    }
    let mut s = format!("{} > {}", fmt_mac(&frame[6..12]), fmt_mac(&frame[..6]));
    let mut at = 12;
    while frame.len() >= at + 4 {
        let tpid = u16::from_be_bytes([frame[at], frame[at + 1]]);
        if tpid != 0x8100 && tpid != 0x88a8 {
            break;
        }
        let tci = u16::from_be_bytes([frame[at + 2], frame[at + 3]]);
        let _ =
            write!(s, ", {} vlan {} pcp {}", if tpid == 0x8100 { "802.1q" } else { "802.1ad" }, tci & 0xfff, tci >> 13);
        at += 4;
    }
    let ty = frame.get(at..at + 2).map_or(0, |t| u16::from_be_bytes([t[0], t[1]]));
    let kind = match ty {
        0x0806 => "arp".to_string(),
        0x0800 => match frame.get(at + 11) {
            Some(6) => "ip tcp".into(),
            Some(17) => "ip udp".into(),
            Some(1) => "ip icmp".into(),
            _ => "ip".into(),
        },
        0x86dd => "ipv6".into(),
        t if t < 0x600 => format!("802.3 len {t}"),
        t => format!("type {t:#06x}"),
    };
    let _ = write!(s, ", {kind}, {} B", frame.len());
    if let Some(id) = super::traffic::tag_of(frame) {
        let _ = write!(s, ", id {id}");
    }
    s
}

fn hex(frame: &[u8]) -> String {
    frame.iter().map(|b| format!("{b:02x}")).collect()
}

/// The scenario's steps, one line each.
pub fn describe_steps(sc: &Scenario) -> String {
    let mut s = String::new();
    for (i, step) in sc.steps.iter().enumerate() {
        match step {
            Step::Send { port, frames } => {
                let _ = writeln!(s, "  step {i}: {} receives", sc.ports[*port].name);
                for f in frames {
                    let _ = writeln!(s, "      {}", describe(f));
                }
            }
            Step::Wait(d) => {
                let _ = writeln!(s, "  step {i}: wait {d:?}");
            }
        }
    }
    s
}

/// Compares two runs of `sc` port by port (same frames, same order); `None` if they agree, else
/// a report naming each port that differs, its frames side by side (hex where they differ), the
/// steps, and the tail of `got`'s log.
pub fn diff(sc: &Scenario, (want_name, want): (&str, &Captures), (got_name, got): (&str, &Captures)) -> Option<String> {
    let mut report = String::new();
    for (i, p) in sc.ports.iter().enumerate() {
        let (w, g) = (want.port(&p.name), got.port(&p.name));
        if w == g {
            continue;
        }
        let first = (0..w.len().max(g.len())).find(|&k| w.get(k) != g.get(k)).unwrap_or(0);
        let _ = writeln!(
            report,
            "port {} (ofport {}): {want_name} sent {}, {got_name} sent {}; first difference at #{first}",
            p.name,
            i + 1,
            w.len(),
            g.len()
        );
        for k in 0..w.len().max(g.len()).min(40) {
            match (w.get(k), g.get(k)) {
                (Some(a), Some(b)) if a == b => {
                    let _ = writeln!(report, "  #{k:<3} both:  {}", describe(a));
                }
                (a, b) => {
                    for (who, f) in [(want_name, a), (got_name, b)] {
                        match f {
                            Some(f) => {
                                let _ = writeln!(report, "  #{k:<3} {who}: {}\n         {}", describe(f), hex(f));
                            }
                            None => {
                                let _ = writeln!(report, "  #{k:<3} {who}: (nothing)");
                            }
                        }
                    }
                }
            }
        }
    }
    if report.is_empty() {
        return None;
    }
    let rules = sc.effective_rules().join("\n  ");
    let slowest = |c: &Captures| match c.slowest() {
        Some((d, id)) => format!("{:.1} ms (id {id})", d.as_secs_f64() * 1e3),
        None => "?".into(),
    };
    let timing = format!(
        "slowest frame through the switch: {want_name} {}, {got_name} {}; settle time {} ms (LIVE_SETTLE_MS; \
         LIVE_TRACE=1 prints every frame's times)",
        slowest(want),
        slowest(got),
        sc.settle.as_millis()
    );
    let steps = describe_steps(sc);
    let log = got.log_tail(40);
    let head = format!("{want_name} and {got_name} differ\nrules:\n  {rules}\n");
    Some(format!("{head}{report}{timing}\nsteps:\n{steps}--- {got_name} log (tail)\n{log}"))
}
