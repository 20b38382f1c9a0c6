//! vhost-user end to end without VMs: each "guest" is a `dpdk-testpmd` process on a
//! `net_virtio_user` port (what a container would run), attached to one of ferrovs's vhost
//! ports through a Unix socket. One guest sends (`txonly`: one UDP flow of 64-byte frames, or
//! `frame_len`), another receives (`rxonly`); both count.
//!
//! Guests run on CPU 0 (`--lcores 0@0,1@0`), beside ferrovs's control core, so ferrovs's PMD has
//! CPU 1 to itself. They use `--no-huge` (virtio-user shares memfd memory, see the README) and a
//! file prefix of their own, whose runtime directory is removed when they are gone. Their totals
//! come from the summary testpmd prints when it stops (SIGINT); its stdout is block-buffered,
//! so progress while they run is read from ferrovs instead, which logs every port's counts each
//! second at debug level. (Line-buffering testpmd with `stdbuf` made killed guests take up to
//! minutes to exit on this kernel, stuck unmapping the memory ferrovs shares.)
//!
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::ovs::MachineLock;
use super::process::{Process, threads_of_every};

/// How long a guest or ferrovs may take to come up, connect, or stop.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// One vhost run at a time in this process.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
/// Numbers the DPDK file prefixes of this process.
static PREFIXES: AtomicU32 = AtomicU32::new(0);

/// Held for a whole scenario: nothing else polls the CPUs meanwhile.
pub struct Lock {
    _machine: MachineLock,
    _process: MutexGuard<'static, ()>,
}

/// Waits until no other vhost run (in this process) or live test (on this machine) runs.
pub fn lock() -> Lock {
    let started = Instant::now();
    let process = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let machine = MachineLock::take().expect("machine lock");
    trace("the lock", started);
    Lock { _machine: machine, _process: process }
}

/// With `VHOST_TRACE` set: how long waiting for `what` took.
fn trace(what: &str, since: Instant) {
    if std::env::var_os("VHOST_TRACE").is_some() {
        eprintln!("vhost trace: {:>8.3} s waiting for {what}", since.elapsed().as_secs_f64());
    }
}

/// A DPDK file prefix no other process of this machine uses.
fn unique_prefix(tag: &str) -> String {
    format!("fv{tag}{}_{}", std::process::id(), PREFIXES.fetch_add(1, Ordering::Relaxed))
}

/// Polls `done` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> Result<(), String> {
    let started = Instant::now();
    while !done() {
        if started.elapsed() > timeout {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    trace(what, started);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Guests

/// What a guest's testpmd does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `txonly`: sends one UDP flow as fast as it can.
    Send,
    /// `rxonly`: receives and counts.
    Receive,
}

/// A guest to start.
#[derive(Clone, Debug)]
pub struct GuestSpec {
    /// The vhost-user socket.
    pub sock: PathBuf,
    /// The guest creates the socket (`server=1`, for ferrovs in client mode).
    pub server: bool,
    /// Queue pairs.
    pub queues: u16,
    pub role: Role,
    /// Frame length a sender sends (64 when `None`).
    pub frame_len: Option<u16>,
}

impl GuestSpec {
    /// A one-queue guest on `sock`.
    pub fn new(sock: &Path, role: Role, server: bool) -> Self {
        Self { sock: sock.to_path_buf(), server, queues: 1, role, frame_len: None }
    }

    /// With `n` queue pairs.
    pub fn queues(mut self, n: u16) -> Self {
        self.queues = n;
        self
    }

    /// Sending frames of `len` bytes.
    pub fn frame_len(mut self, len: u16) -> Self {
        self.frame_len = Some(len);
        self
    }
}

/// Counts from a guest's testpmd.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestCounts {
    /// Packets its forwarding engine received (exit summary).
    pub rx_packets: u64,
    /// Packets its forwarding engine sent (exit summary).
    pub tx_packets: u64,
    /// Bytes its port received, as of its last per-second statistics.
    pub rx_bytes: u64,
    /// Packets its port received, as of the same statistics.
    pub rx_packets_at_bytes: u64,
}

/// A running guest.
pub struct Guest {
    spec: GuestSpec,
    prefix: String,
    process: Process,
}

impl Guest {
    /// Starts testpmd for `spec`. A server guest first removes a socket file left by a guest
    /// that was killed, as QEMU does (virtio-user would fail to bind).
    pub fn start(spec: GuestSpec) -> Result<Self, String> {
        if spec.server {
            let _ = std::fs::remove_file(&spec.sock);
        }
        let prefix = unique_prefix("g");
        let mut vdev = format!("net_virtio_user0,path={},queues={}", spec.sock.display(), spec.queues);
        if spec.server {
            vdev.push_str(",server=1");
        }
        let mut cmd = Command::new("dpdk-testpmd");
        cmd.args(["--lcores", "0@0,1@0", "-n", "1", "--no-pci", "--no-huge", "-m", "256"])
            .args(["--no-telemetry", "--file-prefix", &prefix, "--vdev", &vdev, "--"])
            .args(["--auto-start", "--stats-period", "1", "--disable-link-check", "--nb-cores=1"])
            .arg(format!("--rxq={}", spec.queues))
            .arg(format!("--txq={}", spec.queues))
            .arg("--total-num-mbufs=4096")
            // testpmd otherwise empties its receive rings when forwarding starts, uncounted: a
            // switch already sending then looks as if it lost packets.
            .arg("--no-flush-rx");
        match (spec.role, spec.frame_len) {
            (Role::Receive, _) => cmd.arg("--forward-mode=rxonly"),
            (Role::Send, None) => cmd.arg("--forward-mode=txonly"),
            // One buffer big enough for the frame (given before --txpkts, which is checked against it).
            (Role::Send, Some(len)) => {
                cmd.args(["--forward-mode=txonly", &format!("--mbuf-size={}", u32::from(len) + 256)]);
                cmd.arg(format!("--txpkts={len}"))
            }
        };
        let process = Process::spawn(cmd)?;
        Ok(Self { spec, prefix, process })
    }

    /// Its output so far.
    pub fn log(&self) -> String {
        format!("--- guest {} stdout\n{}--- stderr\n{}", self.prefix, self.process.stdout(), self.process.stderr())
    }

    /// Waits until a server guest's socket exists (it then waits for ferrovs to connect).
    pub fn wait_socket(&mut self) -> Result<(), String> {
        let sock = self.spec.sock.clone();
        let what = format!("{} to exist", sock.display());
        let exists = || std::fs::symlink_metadata(&sock).is_ok();
        wait_until(&what, TIMEOUT, exists).map_err(|e| format!("{e}\n{}", self.log()))?;
        if self.process.running() { Ok(()) } else { Err(format!("guest exited\n{}", self.log())) }
    }

    /// Packets its (first) port had received as of its last per-second statistics.
    pub fn printed_rx_packets(&self) -> Option<u64> {
        last_port_stats(&self.process.stdout(), "RX-packets:", "RX-missed:").map(|(packets, _)| packets)
    }

    /// Kills it (SIGKILL), as a crash would: its socket file stays.
    pub fn kill(mut self) {
        let _ = self.process.signal_and_wait("-KILL", TIMEOUT);
    }

    /// Stops it (SIGINT) and reads its totals.
    pub fn stop(mut self) -> Result<GuestCounts, String> {
        // A guest that does not exit may wait on the switch (a vhost-user reply): show both.
        let status = self
            .process
            .signal_and_wait("-INT", TIMEOUT)
            .map_err(|e| format!("{e}\nthe switch now:\n{}", threads_of_every("ferrovs")))?;
        let out = self.process.stdout();
        let summary = out
            .split("Accumulated forward statistics for all ports")
            .nth(1)
            .ok_or_else(|| format!("no exit summary ({status})\n{}", self.log()))?;
        let field = |name: &str| number_after(summary, name).ok_or_else(|| format!("no {name} in\n{}", self.log()));
        let (rx_packets_at_bytes, rx_bytes) = last_port_stats(&out, "RX-packets:", "RX-bytes:").unwrap_or((0, 0));
        Ok(GuestCounts {
            rx_packets: field("RX-packets:")?,
            tx_packets: field("TX-packets:")?,
            rx_bytes,
            rx_packets_at_bytes,
        })
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.process.signal_and_wait("-KILL", TIMEOUT);
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}", self.prefix));
    }
}

/// The number after the first `name` in `text`.
fn number_after(text: &str, name: &str) -> Option<u64> {
    text.split(name).nth(1)?.split_whitespace().next()?.parse().ok()
}

/// From the last per-second port statistics line that has both `first` and `second` (e.g.
/// `RX-packets: 12  RX-missed: 0  RX-bytes: 768`): the numbers after them.
fn last_port_stats(out: &str, first: &str, second: &str) -> Option<(u64, u64)> {
    out.lines()
        .rev()
        .filter(|l| l.contains(first) && l.contains(second))
        .find_map(|l| Some((number_after(l, first)?, number_after(l, second)?)))
}

// ---------------------------------------------------------------------------------------------
// ferrovs

/// A vhost port of the config.
#[derive(Clone, Debug)]
pub struct VhostPortSpec {
    pub name: String,
    pub sock: PathBuf,
    /// "client" or "server".
    pub mode: &'static str,
    pub queues: u16,
    pub mtu: Option<u16>,
}

/// A ferrovs config with vhost ports `ports`, PMDs on `pmd_cores` (sharing CPUs if need be) and
/// `rules` (none: NORMAL). The tables are small: a debug build fills big ones slowly, and the
/// guests' busy loops share its CPU.
pub fn config(ports: &[VhostPortSpec], pmd_cores: &[usize], rules: &[&str], prefix: &str) -> String {
    let mut t = format!(
        "[eal]\nargs = [\"--no-pci\", \"--in-memory\", \"--file-prefix={prefix}\", \"--log-level=lib.eal:warning\"]\n\
         [datapath]\npmd_cores = {pmd_cores:?}\ncontrol_core = 0\nallow_shared_cores = true\n\
         flow_cache_size = 4096\nmax_megaflows = 4096\n"
    );
    for p in ports {
        t.push_str(&format!(
            "[[port]]\nname = {:?}\nvhost = {{ path = {:?}, mode = {:?}, queues = {} }}\n",
            p.name,
            p.sock.display().to_string(),
            p.mode,
            p.queues
        ));
        if let Some(mtu) = p.mtu {
            t.push_str(&format!("mtu = {mtu}\n"));
        }
    }
    t.push_str("[flows]\nrules = [\n");
    for r in rules {
        t.push_str(&format!("  {r:?},\n"));
    }
    t.push_str("]\n");
    t
}

/// A running ferrovs.
pub struct Ferrovs {
    process: Process,
    prefix: String,
    stats: PathBuf,
}

/// What a ferrovs run left: its final counters and log.
pub struct Run {
    pub stats: Value,
    pub log: String,
}

impl Ferrovs {
    /// Runs `ferrovs run` on the config `text`, written into `dir` as `name.toml`; waits until it
    /// forwards.
    pub fn start(dir: &Path, name: &str, text: &str, prefix: &str) -> Result<Self, String> {
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(&config, text).map_err(|e| e.to_string())?;
        let stats = dir.join(format!("{name}.stats.json"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrovs"));
        cmd.args(["run", "--config"]).arg(&config).arg("--stats-json").arg(&stats);
        // Debug for the runtime only: its per-second port counts.
        cmd.env("RUST_LOG", "info,ferrovs_switch::runtime=debug");
        let mut sw = Self { process: Process::spawn(cmd)?, prefix: prefix.to_string(), stats };
        sw.wait_log("forwarding with", 1)?;
        Ok(sw)
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        format!("--- ferrovs stdout\n{}--- ferrovs stderr\n{}", self.process.stdout(), self.process.stderr())
    }

    /// How many log lines contain `pattern`.
    pub fn count_log(&self, pattern: &str) -> usize {
        self.process.stderr().lines().filter(|l| l.contains(pattern)).count()
    }

    /// Waits until `count` log lines contain `pattern` (and ferrovs still runs).
    pub fn wait_log(&mut self, pattern: &str, count: usize) -> Result<(), String> {
        let what = format!("{count} log line(s) with {pattern:?}");
        wait_until(&what, TIMEOUT, || self.count_log(pattern) >= count || !self.process.running())
            .map_err(|e| format!("{e}\n{}", self.log()))?;
        if self.process.running() { Ok(()) } else { Err(format!("ferrovs exited\n{}", self.log())) }
    }

    /// Lines of per-second port counts logged so far.
    fn count_lines(&self) -> Vec<String> {
        self.process.stderr().lines().filter(|l| l.contains("packets so far; ports:")).map(str::to_string).collect()
    }

    /// Port `port`'s (received, transmitted) packets as of the latest per-second log line.
    pub fn port_counts(&self, port: &str) -> (u64, u64) {
        let lines = self.count_lines();
        let Some(last) = lines.last() else { return (0, 0) };
        let ports = last.split("ports: ").nth(1).unwrap_or("");
        let entry = ports.split(", ").find(|e| e.split(' ').next() == Some(port)).unwrap_or("");
        (number_after(entry, " rx ").unwrap_or(0), number_after(entry, " tx ").unwrap_or(0))
    }

    /// Waits for the next per-second counts (so they postdate whatever just happened) and
    /// returns port `port`'s.
    pub fn fresh_port_counts(&mut self, port: &str) -> Result<(u64, u64), String> {
        let seen = self.count_lines().len();
        wait_until("fresh port counts", TIMEOUT, || self.count_lines().len() > seen || !self.process.running())
            .map_err(|e| format!("{e}\n{}", self.log()))?;
        Ok(self.port_counts(port))
    }

    /// Waits until port `port` has transmitted more than `n` packets.
    pub fn wait_tx_above(&mut self, port: &str, n: u64) -> Result<(), String> {
        let what = format!("port {port} to transmit more than {n} packets");
        wait_until(&what, TIMEOUT, || self.port_counts(port).1 > n || !self.process.running())
            .map_err(|e| format!("{e}\n{}", self.log()))?;
        if self.process.running() { Ok(()) } else { Err(format!("ferrovs exited\n{}", self.log())) }
    }

    /// Waits until port `port` has received more than `n` packets.
    pub fn wait_rx_above(&mut self, port: &str, n: u64) -> Result<(), String> {
        let what = format!("port {port} to receive more than {n} packets");
        wait_until(&what, TIMEOUT, || self.port_counts(port).0 > n || !self.process.running())
            .map_err(|e| format!("{e}\n{}", self.log()))?;
        if self.process.running() { Ok(()) } else { Err(format!("ferrovs exited\n{}", self.log())) }
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        self.process.running()
    }

    /// Stops it (SIGINT); it must exit successfully, with no mbuf left in use.
    pub fn stop(mut self) -> Result<Run, String> {
        let status = self.process.signal_and_wait("-INT", TIMEOUT)?;
        let log = self.log();
        if !status.success() {
            return Err(format!("ferrovs failed ({status})\n{log}"));
        }
        let text = std::fs::read_to_string(&self.stats).map_err(|e| format!("{}: {e}\n{log}", self.stats.display()))?;
        let stats: Value = serde_json::from_str(&text).map_err(|e| format!("stats: {e}\n{log}"))?;
        let run = Run { stats, log };
        run.assert_clean();
        Ok(run)
    }
}

impl Drop for Ferrovs {
    fn drop(&mut self) {
        let _ = self.process.signal_and_wait("-KILL", TIMEOUT);
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}", self.prefix));
    }
}

impl Run {
    fn port(&self, name: &str) -> &Value {
        let ports = self.stats["ports"].as_array().expect("ports");
        ports.iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("no port {name}\n{}", self.log))
    }

    /// A port's driver counter.
    pub fn port_stat(&self, port: &str, name: &str) -> u64 {
        self.port(port)["stats"][name].as_u64().unwrap_or_else(|| panic!("no {name} for {port}"))
    }

    /// Packets each receive queue of `port` received.
    pub fn rx_queue_packets(&self, port: &str) -> Vec<u64> {
        let q = self.port(port)["stats"]["rx_queue_packets"].as_array().expect("rx_queue_packets");
        q.iter().map(|v| v.as_u64().expect("a count")).collect()
    }

    /// How often `port`'s link went up and down while ferrovs ran.
    pub fn link_changes(&self, port: &str) -> (u64, u64) {
        let p = self.port(port);
        (p["link_ups"].as_u64().expect("link_ups"), p["link_downs"].as_u64().expect("link_downs"))
    }

    /// Drops for `reason` (0 if none).
    pub fn drops(&self, reason: &str) -> u64 {
        self.stats["totals"]["counters"]["drops"][reason].as_u64().unwrap_or(0)
    }

    /// A total counter.
    pub fn total(&self, name: &str) -> u64 {
        self.stats["totals"]["counters"][name].as_u64().unwrap_or_else(|| panic!("no counter {name}"))
    }

    /// Packets each PMD received.
    pub fn pmd_rx(&self) -> Vec<u64> {
        self.pmd_counter("rx_packets")
    }

    /// Packets each PMD transmitted.
    pub fn pmd_tx(&self) -> Vec<u64> {
        self.pmd_counter("tx_packets")
    }

    fn pmd_counter(&self, name: &str) -> Vec<u64> {
        let pmds = self.stats["pmds"].as_array().expect("pmds");
        pmds.iter().map(|p| p["counters"][name].as_u64().unwrap_or_else(|| panic!("no {name}"))).collect()
    }

    /// Every packet received was forwarded or dropped, what the PMDs and the ports counted
    /// agrees, and no mbuf is left in use.
    pub fn assert_clean(&self) {
        let ctx = &self.log;
        let ports = self.stats["ports"].as_array().expect("ports");
        let sum = |name: &str| ports.iter().map(|p| p["stats"][name].as_u64().expect("a count")).sum::<u64>();
        let rx = self.total("rx_packets");
        assert_eq!(sum("rx_packets"), rx, "ports and PMDs disagree on rx\n{ctx}");
        assert_eq!(rx, self.total("forwarded") + self.total("dropped_packets"), "rx != forwarded + dropped\n{ctx}");
        assert_eq!(sum("tx_packets"), self.total("tx_packets"), "ports and PMDs disagree on tx\n{ctx}");
        assert_eq!(self.stats["mempool"]["in_use"], 0, "mbufs leaked\n{ctx}");
    }
}
