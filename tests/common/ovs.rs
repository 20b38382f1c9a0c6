//! Open vSwitch with DPDK as an oracle: the same rules and input pcaps through OVS's userspace
//! datapath, started by hand (never via systemd) and stopped by PID.
//!
//! One bridge whose ports are `net_pcap` vdevs: port i (0-based) is ofport i+1, reads its input
//! from an rx pcap and writes what OVS sends it to a tx pcap. Rules use port numbers. OVS starts
//! with a PMD mask naming a CPU that does not exist, so no port is polled until every port and
//! rule is installed (otherwise the first packets race the bridge's port map and are lost as
//! upcall errors); then the mask moves to CPU 1 and traffic flows. Runs are serialised, within the
//! process and across processes (a file lock): the netdev datapath's taps (`ovs-netdev`, `br0`)
//! allow one OVS per network namespace.
//!
//! [`start_daemons`] (database, switch, an empty bridge) is shared with the live harness
//! (`live.rs`), which adds `net_tap` ports instead of pcaps.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{read_pcap, write_pcap};

const VSWITCHD: &str = "/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk";
const SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";

/// One OVS at a time in this process (the netdev datapath's taps are per namespace).
static OVS_LOCK: Mutex<()> = Mutex::new(());
/// ... and on this machine: every test process takes this file lock too.
const OVS_LOCK_FILE: &str = "/tmp/ferrovs-tests-ovs.lock";

/// An exclusive `flock` on [`OVS_LOCK_FILE`], held until dropped (or the process dies).
pub struct MachineLock(std::fs::File);

impl MachineLock {
    /// Waits for the lock.
    pub fn take() -> Result<Self, String> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(OVS_LOCK_FILE)
            .map_err(|e| format!("{OVS_LOCK_FILE}: {e}"))?;
        loop {
            // SAFETY: flock on a file descriptor we own; no memory is involved.
            let rc = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(Self(file));
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(format!("flock {OVS_LOCK_FILE}: {e}"));
            }
        }
    }
}

/// Whether OVS with DPDK is installed.
pub fn ovs_installed() -> bool {
    Path::new(VSWITCHD).exists()
}

/// The daemons of one run; dropping it stops them (by PID), removes their runtime files and lets
/// the next run start.
pub struct Daemons {
    dir: PathBuf,
    prefix: String,
    ovsdb: Option<u32>,
    vswitchd: Option<u32>,
    _tmp: tempfile::TempDir,
    _one_per_machine: MachineLock,
    _one_at_a_time: MutexGuard<'static, ()>,
}

impl Daemons {
    /// The runtime directory (database, sockets, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        for var in ["OVS_RUNDIR", "OVS_LOGDIR", "OVS_DBDIR"] {
            c.env(var, &self.dir);
        }
        c
    }

    /// Runs an OVS command; an error carries the command, its stderr and the log's tail.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<String, String> {
        let out = self.cmd(program).args(args).output().map_err(|e| format!("{program}: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "`{program} {}` failed ({}): {}\n{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                self.log_tail()
            ))
        }
    }

    /// `ovs-vsctl` against this run's database.
    pub fn vsctl(&self, args: &[&str]) -> Result<String, String> {
        let db = format!("--db=unix:{}/db.sock", self.dir.display());
        let mut all = vec!["--timeout=30", db.as_str()];
        all.extend_from_slice(args);
        self.run("ovs-vsctl", &all)
    }

    /// `ovs-appctl -t TARGET` (`vswitchd.ctl` or `ovsdb.ctl`).
    pub fn appctl(&self, target: &str, args: &[&str]) -> Result<String, String> {
        let t = self.dir.join(target).display().to_string();
        let mut all = vec!["-t", t.as_str()];
        all.extend_from_slice(args);
        self.run("ovs-appctl", &all)
    }

    /// The last 30 lines of ovs-vswitchd's log.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        format!("--- ovs-vswitchd.log (tail)\n{}", lines[lines.len().saturating_sub(30)..].join("\n"))
    }

    /// ovs-vswitchd's whole log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("vswitchd.log")).unwrap_or_default()
    }

    /// Adds `rules` (ovs-ofctl syntax) to br0, one at a time, each in an OpenFlow version that can
    /// express it: OpenFlow 1.0 (with Nicira extensions) first, whose actions may ignore missing
    /// prerequisites; OpenFlow 1.5 for what 1.0 cannot say (push_vlan).
    pub fn add_rules(&self, rules: &[String]) -> Result<(), String> {
        for rule in rules {
            if let Err(e) = self.run("ovs-ofctl", &["add-flow", "br0", rule]) {
                if !e.contains("usable flow formats") {
                    return Err(e);
                }
                self.run("ovs-ofctl", &["-O", "OpenFlow15", "add-flow", "br0", rule])?;
            }
        }
        Ok(())
    }

    /// Lets a PMD thread on CPU 1 poll the ports.
    pub fn start_pmd(&self) -> Result<(), String> {
        self.vsctl(&["set", "Open_vSwitch", ".", "other_config:pmd-cpu-mask=0x2"]).map(drop)
    }

    /// Stops the daemons (by PID) and removes DPDK's runtime files; the runtime directory stays
    /// until the value is dropped.
    pub fn stop(&mut self) {
        if let Some(pid) = self.vswitchd.take() {
            let _ = self.appctl("vswitchd.ctl", &["exit", "--cleanup"]);
            stop(pid);
        }
        if let Some(pid) = self.ovsdb.take() {
            let _ = self.appctl("ovsdb.ctl", &["exit"]);
            stop(pid);
        }
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}", self.prefix));
        wait_for_taps_gone(Duration::from_secs(5));
    }

    fn pid(&self, file: &str) -> Option<u32> {
        std::fs::read_to_string(self.dir.join(file)).ok()?.trim().parse().ok()
    }
}

fn alive(pid: u32) -> bool {
    // A zombie is not alive for our purpose: it holds no resources.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

fn stop(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for signal in ["-TERM", "-KILL"] {
        if !alive(pid) {
            return;
        }
        let _ = Command::new("kill").args([signal, &pid.to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether any ovs-vswitchd runs on this machine (ours or anyone's).
fn vswitchd_running() -> bool {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.starts_with("ovs-vswitchd")))
}

/// Removes the netdev datapath's taps left behind by an OVS that died without cleaning up; only
/// when no ovs-vswitchd runs at all, so nobody else's bridge is touched.
fn remove_stale_taps() {
    if taps_present() && !vswitchd_running() {
        for tap in ["ovs-netdev", "br0"] {
            let _ = Command::new("ip").args(["link", "del", tap]).status();
        }
    }
}

fn taps_present() -> bool {
    ["ovs-netdev", "br0"].iter().any(|t| Path::new(&format!("/sys/class/net/{t}")).exists())
}

fn wait_for_taps_gone(timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while taps_present() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// Sum of rx and of tx packets over `names` (from `ovs-ofctl dump-ports`).
fn port_counters(d: &Daemons, n_ports: usize) -> Result<(u64, u64), String> {
    let text = d.run("ovs-ofctl", &["dump-ports", "br0"])?;
    let (mut rx, mut tx, mut port) = (0, 0, None::<u64>);
    for line in text.lines() {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix("port") {
            let id = rest.trim().split(':').next().unwrap_or("").trim();
            port = id.parse().ok();
        }
        let Some(p) = port else { continue };
        if p == 0 || p > n_ports as u64 {
            continue;
        }
        let value = |key: &str| l.split(key).nth(1).and_then(|r| r.split([',', ' ']).next()?.parse::<u64>().ok());
        if l.contains("rx pkts=") {
            rx += value("rx pkts=").unwrap_or(0);
        }
        if l.contains("tx pkts=") {
            tx += value("tx pkts=").unwrap_or(0);
        }
    }
    Ok((rx, tx))
}

/// A PMD mask naming a CPU that does not exist: no PMD polls anything until everything is in place.
pub const NO_PMD: &str = "0x8000000000000000";

/// Starts ovsdb-server and ovs-vswitchd (DPDK on CPU 0, PMDs on `pmd_mask`, e.g. [`NO_PMD`]) with
/// an empty netdev bridge `br0` in fail-mode secure. Holds the one-OVS-at-a-time lock until the
/// returned value is dropped. `tag` names the DPDK file prefix.
pub fn start_daemons(tag: &str, pmd_mask: &str) -> Result<Daemons, String> {
    assert!(ovs_installed(), "Open vSwitch with DPDK is not installed: run scripts/setup.sh --with-ovs");
    let lock = OVS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let machine_lock = MachineLock::take()?;
    remove_stale_taps();
    if !wait_for_taps_gone(Duration::from_secs(60)) {
        return Err("another OVS userspace datapath runs in this network namespace (taps ovs-netdev/br0 exist)".into());
    }
    let tmp = tempfile::Builder::new().prefix("ovs").tempdir_in("/tmp").map_err(|e| e.to_string())?;
    static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let run_no = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut d = Daemons {
        dir: tmp.path().to_path_buf(),
        prefix: format!("{tag}{}_{run_no}", std::process::id()),
        ovsdb: None,
        vswitchd: None,
        _tmp: tmp,
        _one_per_machine: machine_lock,
        _one_at_a_time: lock,
    };
    let dir = d.dir.display().to_string();
    let db = format!("{dir}/conf.db");
    d.run("ovsdb-tool", &["create", &db, SCHEMA])?;
    d.run(
        "ovsdb-server",
        &[
            &db,
            &format!("--remote=punix:{dir}/db.sock"),
            &format!("--pidfile={dir}/ovsdb.pid"),
            &format!("--unixctl={dir}/ovsdb.ctl"),
            &format!("--log-file={dir}/ovsdb.log"),
            "--detach",
            "-vconsole:off",
        ],
    )?;
    d.ovsdb = d.pid("ovsdb.pid");
    d.vsctl(&["--no-wait", "init"])?;
    d.vsctl(&[
        "--no-wait",
        "set",
        "Open_vSwitch",
        ".",
        "other_config:dpdk-init=true",
        "other_config:dpdk-lcore-mask=0x1",
        &format!("other_config:pmd-cpu-mask={pmd_mask}"),
        &format!("other_config:dpdk-extra=--no-pci --file-prefix={}", d.prefix),
        "other_config:dpdk-socket-mem=512",
    ])?;
    d.run(
        VSWITCHD,
        &[
            &format!("unix:{dir}/db.sock"),
            &format!("--pidfile={dir}/vswitchd.pid"),
            &format!("--unixctl={dir}/vswitchd.ctl"),
            &format!("--log-file={dir}/vswitchd.log"),
            "--detach",
            "-vconsole:off",
        ],
    )?;
    d.vswitchd = d.pid("vswitchd.pid");
    d.vsctl(&["add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev", "fail-mode=secure"])?;
    Ok(d)
}

/// Adds DPDK port `name` as OpenFlow port `ofport` with `devargs` and `extra` Interface columns
/// (`options:n_rxq=2`, ...); fails if OVS reports an error on the interface.
pub fn add_dpdk_port(d: &Daemons, name: &str, ofport: usize, devargs: &str, extra: &[&str]) -> Result<(), String> {
    let devargs = format!("options:dpdk-devargs={devargs}");
    let ofport = format!("ofport_request={ofport}");
    let mut args = vec!["add-port", "br0", name, "--", "set", "Interface", name, "type=dpdk", &ofport, &devargs];
    args.extend_from_slice(extra);
    d.vsctl(&args)?;
    let err = d.vsctl(&["get", "Interface", name, "error"])?;
    if err.trim() != "[]" {
        return Err(format!("port {name}: {err}{}", d.log_tail()));
    }
    Ok(())
}

/// Runs OVS once over `ports` (name, input frames) with `rules` (ovs-ofctl syntax, port numbers);
/// returns what each port transmitted.
pub fn run_ovs(ports: &[(&str, Vec<Vec<u8>>)], rules: &[String]) -> Result<BTreeMap<String, Vec<Vec<u8>>>, String> {
    let mut d = start_daemons("ovsdiff", NO_PMD)?;
    let mut outputs = Vec::new();
    for (i, (name, input)) in ports.iter().enumerate() {
        let rx = d.dir.join(format!("{name}.in.pcap"));
        let tx = d.dir.join(format!("{name}.out.pcap"));
        write_pcap(&rx, input);
        let devargs = format!("net_pcap{i},rx_pcap={},tx_pcap={}", rx.display(), tx.display());
        add_dpdk_port(&d, name, i + 1, &devargs, &[])?;
        outputs.push((name.to_string(), tx));
    }
    d.add_rules(rules)?;
    d.start_pmd()?;

    // Wait until every input packet has been received and transmissions have settled.
    let want: u64 = ports.iter().map(|(_, input)| input.len() as u64).sum();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut last_tx, mut stable_since) = (u64::MAX, Instant::now());
    loop {
        let (rx, tx) = port_counters(&d, ports.len())?;
        if tx != last_tx {
            (last_tx, stable_since) = (tx, Instant::now());
        }
        if rx >= want && stable_since.elapsed() >= Duration::from_millis(300) {
            break;
        }
        if Instant::now() > deadline {
            let stats = d.appctl("vswitchd.ctl", &["dpif-netdev/pmd-stats-show"]).unwrap_or_default();
            let ports = d.run("ovs-ofctl", &["dump-ports", "br0"]).unwrap_or_default();
            return Err(format!("OVS received {rx} of {want} packets in 30 s\n{ports}\n{stats}\n{}", d.log_tail()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Stopping OVS closes the ports, which completes the tx pcaps.
    d.stop();
    Ok(outputs.into_iter().map(|(name, tx)| (name, read_pcap(&tx))).collect())
}
