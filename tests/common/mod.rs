//! End-to-end harness: runs the real `ferrovs` binary on `net_pcap` vdevs. Each port reads its
//! input from a pcap the test writes and captures what the switch sends it into another pcap; the
//! run stops once every input packet has been received (`--stop-after-rx`), and the harness reads
//! back every capture and the final counters (`--stats-json`).

#![allow(dead_code)] // each test binary uses a different part

pub mod live;
pub mod ovs;
pub mod process;
pub mod tap;
pub mod traffic;
pub mod virtio;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use serde_json::Value;

/// The binary under test.
pub fn ferrovs() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferrovs"))
}

/// Writes `packets` to a pcap file.
pub fn write_pcap(path: &Path, packets: &[Vec<u8>]) {
    let file = std::fs::File::create(path).unwrap();
    let header = PcapHeader { datalink: DataLink::ETHERNET, snaplen: 65535, ..Default::default() };
    let mut w = PcapWriter::with_header(file, header).unwrap();
    for p in packets {
        w.write_packet(&PcapPacket::new(std::time::Duration::ZERO, p.len() as u32, p)).unwrap();
    }
}

/// Reads every packet of a pcap file.
pub fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut r = PcapReader::new(file).unwrap_or_else(|e| panic!("{}: not a pcap: {e}", path.display()));
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.unwrap_or_else(|e| panic!("{}: truncated: {e}", path.display()));
        assert_eq!(p.orig_len as usize, p.data.len(), "{}: packet captured short", path.display());
        out.push(p.data.into_owned());
    }
    out
}

struct PortDef {
    name: String,
    input: Vec<Vec<u8>>,
    /// Devargs other than the default pcap pair (then nothing is captured).
    devargs: Option<String>,
    /// More keys for its `[[port]]` table (`tag = 10`).
    keys: String,
}

/// A switch to run: ports with their input traffic, and flow rules.
pub struct Switch {
    dir: tempfile::TempDir,
    ports: Vec<PortDef>,
    rules: Vec<String>,
    flows_file: Option<String>,
    extra: String,
    datapath: String,
}

impl Default for Switch {
    fn default() -> Self {
        Self::new()
    }
}

impl Switch {
    /// An empty switch in a fresh directory.
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            ports: Vec::new(),
            rules: Vec::new(),
            flows_file: None,
            extra: String::new(),
            datapath: String::new(),
        }
    }

    /// Adds a port that receives `input` (in order) and captures what it transmits.
    pub fn port(mut self, name: &str, input: Vec<Vec<u8>>) -> Self {
        self.ports.push(PortDef { name: name.into(), input, devargs: None, keys: String::new() });
        self
    }

    /// Like [`port`](Self::port), with more TOML keys for its `[[port]]` table (VLAN settings).
    pub fn port_with(mut self, name: &str, input: Vec<Vec<u8>>, keys: &str) -> Self {
        self.ports.push(PortDef { name: name.into(), input, devargs: None, keys: keys.into() });
        self
    }

    /// Adds a port with its own devargs (`{dir}` is replaced by the working directory); its input
    /// and output are not managed by the harness.
    pub fn raw_port(mut self, name: &str, devargs: &str) -> Self {
        let devargs = devargs.replace("{dir}", &self.dir.path().display().to_string());
        self.ports.push(PortDef { name: name.into(), input: Vec::new(), devargs: Some(devargs), keys: String::new() });
        self
    }

    /// Adds flow rules in ovs-ofctl syntax.
    pub fn rules(mut self, rules: &[&str]) -> Self {
        self.rules.extend(rules.iter().map(|r| r.to_string()));
        self
    }

    /// Puts `text` in a flows file referenced by `flows.file`.
    pub fn flows_file(mut self, text: &str) -> Self {
        self.flows_file = Some(text.into());
        self
    }

    /// More keys for `[datapath]` (`upcall_rate = 100`).
    pub fn with_datapath(mut self, keys: &str) -> Self {
        self.datapath.push_str(keys);
        self
    }

    /// Extra TOML appended to the config.
    pub fn extra_toml(mut self, text: &str) -> Self {
        self.extra.push_str(text);
        self
    }

    /// The working directory (config, pcaps).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn input_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.in.pcap"))
    }

    fn output_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.out.pcap"))
    }

    /// Writes the inputs and the config; returns the config's path.
    pub fn write(&self) -> PathBuf {
        let mut toml = String::from("[eal]\nargs = [\"--no-pci\", \"--in-memory\", \"--log-level=lib.eal:warning\"]\n");
        toml.push_str("[datapath]\npmd_cores = [1]\ncontrol_core = 0\n");
        toml.push_str(&self.datapath);
        for (i, p) in self.ports.iter().enumerate() {
            let devargs = match &p.devargs {
                Some(d) => d.clone(),
                None => {
                    write_pcap(&self.input_path(&p.name), &p.input);
                    format!("net_pcap{i},rx_pcap={}.in.pcap,tx_pcap={}.out.pcap", p.name, p.name)
                }
            };
            toml.push_str(&format!("[[port]]\nname = \"{}\"\ndevargs = \"{devargs}\"\n{}", p.name, p.keys));
        }
        toml.push_str("[flows]\nrules = [\n");
        for r in &self.rules {
            toml.push_str(&format!("  {r:?},\n"));
        }
        toml.push_str("]\n");
        if let Some(text) = &self.flows_file {
            std::fs::write(self.dir.path().join("flows.txt"), text).unwrap();
            toml.push_str("file = \"flows.txt\"\n");
        }
        toml.push_str(&self.extra);
        let path = self.dir.path().join("ferrovs.toml");
        std::fs::write(&path, toml).unwrap();
        path
    }

    /// Runs the switch until it has received every input packet, and collects what came out.
    pub fn run(&self) -> Outcome {
        let sent: usize = self.ports.iter().map(|p| p.input.len()).sum();
        let outcome = self.run_with(&["--stop-after-rx", &sent.to_string(), "--duration", "120"], sent as u64);
        outcome.assert_conserved();
        outcome
    }

    /// Runs the switch for `secs` seconds (for endless sources); checks only that nothing leaked.
    pub fn run_for(&self, secs: f64) -> Outcome {
        let outcome = self.run_with(&["--duration", &secs.to_string()], 0);
        assert_eq!(outcome.stats["mempool"]["in_use"], 0, "mbufs leaked\n{}", outcome.log);
        outcome
    }

    /// Runs the switch for `secs` seconds and reports a window that starts after `warmup` seconds
    /// (in `stats["window"]`); checks only that nothing leaked.
    pub fn run_with_window(&self, secs: f64, warmup: f64) -> Outcome {
        let outcome = self.run_with(&["--duration", &secs.to_string(), "--warmup", &warmup.to_string()], 0);
        assert_eq!(outcome.stats["mempool"]["in_use"], 0, "mbufs leaked\n{}", outcome.log);
        outcome
    }

    fn run_with(&self, args: &[&str], sent: u64) -> Outcome {
        let config = self.write();
        let stats_path = self.dir.path().join("stats.json");
        let output = ferrovs()
            .args(["run", "--config"])
            .arg(&config)
            .args(args)
            .arg("--stats-json")
            .arg(&stats_path)
            .output()
            .unwrap();
        Outcome::collect(self, output, &stats_path, sent)
    }
}

/// `got` holds the same packets as `want`, byte for byte, and the packets of each flow (same
/// flow key) in the same order.
pub fn assert_same_packets(got: &[Vec<u8>], want: &[Vec<u8>], what: &str) {
    let flows = |frames: &[Vec<u8>]| {
        let mut by_flow: BTreeMap<Vec<u8>, Vec<Vec<u8>>> = BTreeMap::new();
        for f in frames {
            let (key, _) = ferrovs_switch::packet::extract(f, 0);
            by_flow.entry(key.0.to_vec()).or_default().push(f.clone());
        }
        by_flow
    };
    assert_eq!(got.len(), want.len(), "{what}: {} packets, expected {}", got.len(), want.len());
    let (g, w) = (flows(got), flows(want));
    assert_eq!(g.len(), w.len(), "{what}: {} flows, expected {}", g.len(), w.len());
    for (key, frames) in &w {
        let got_frames = g.get(key).unwrap_or_else(|| panic!("{what}: a flow is missing: {:02x?}", frames[0]));
        assert!(got_frames == frames, "{what}: a flow's packets differ or are reordered: first {:02x?}", frames[0]);
    }
}

/// What a run produced.
pub struct Outcome {
    /// Packets each port transmitted, in order.
    pub out: BTreeMap<String, Vec<Vec<u8>>>,
    /// The final counters (`--stats-json`).
    pub stats: Value,
    /// Packets the test sent in.
    pub sent: u64,
    /// The process's stdout and stderr, for failure messages.
    pub log: String,
}

impl Outcome {
    fn collect(switch: &Switch, output: Output, stats_path: &Path, sent: u64) -> Self {
        let log = format!(
            "--- stdout\n{}--- stderr\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "ferrovs failed ({}):\n{log}", output.status);
        let stats: Value = serde_json::from_str(&std::fs::read_to_string(stats_path).unwrap()).unwrap();
        let out = switch
            .ports
            .iter()
            .filter(|p| p.devargs.is_none())
            .map(|p| (p.name.clone(), read_pcap(&switch.output_path(&p.name))))
            .collect();
        Self { out, stats, sent, log }
    }

    /// What port `name` transmitted.
    pub fn output(&self, name: &str) -> &[Vec<u8>] {
        &self.out[name]
    }

    /// Port `name` transmitted exactly `want`, byte for byte: the same packets (as a multiset) and,
    /// within each flow, in the same order (packets of different flows may be interleaved
    /// differently: a new flow's first packets go through the control core).
    pub fn assert_output(&self, name: &str, want: &[Vec<u8>]) {
        assert_same_packets(self.output(name), want, &format!("port {name}"));
    }

    /// The total count of drops for `reason` (0 if none).
    pub fn drops(&self, reason: &str) -> u64 {
        self.stats["totals"]["counters"]["drops"][reason].as_u64().unwrap_or(0)
    }

    /// A total counter.
    pub fn total(&self, name: &str) -> u64 {
        self.stats["totals"]["counters"][name].as_u64().unwrap_or_else(|| panic!("no counter {name}"))
    }

    /// A total counter over the window of `Switch::run_with_window`.
    pub fn window_total(&self, name: &str) -> u64 {
        let w = &self.stats["window"];
        w["totals"]["counters"][name].as_u64().unwrap_or_else(|| panic!("no window counter {name}"))
    }

    /// Port number `i`'s (in config order) counter over the window of `Switch::run_with_window`.
    pub fn window_port(&self, i: usize, name: &str) -> u64 {
        self.stats["window"]["ports"][i][name].as_u64().unwrap_or_else(|| panic!("no window {name} for port {i}"))
    }

    /// A port's driver counter.
    pub fn port_stat(&self, port: &str, name: &str) -> u64 {
        let ports = self.stats["ports"].as_array().unwrap();
        let p = ports.iter().find(|p| p["name"] == port).unwrap_or_else(|| panic!("no port {port}"));
        p["stats"][name].as_u64().unwrap()
    }

    /// The installed rules at exit: (rule text, packets).
    pub fn flows(&self) -> Vec<(String, u64)> {
        let flows = self.stats["flows"].as_array().unwrap();
        flows.iter().map(|f| (f["rule"].as_str().unwrap().to_string(), f["packets"].as_u64().unwrap())).collect()
    }

    fn port_sum(&self, name: &str) -> u64 {
        self.stats["ports"].as_array().unwrap().iter().map(|p| p["stats"][name].as_u64().unwrap()).sum()
    }

    /// Every packet is accounted for: received = forwarded + dropped; every copy the PMDs
    /// transmitted is in a capture; no mbuf is left in use.
    pub fn assert_conserved(&self) {
        let ctx = &self.log;
        let rx = self.total("rx_packets");
        assert_eq!(rx, self.sent, "switch received {rx} of {} packets\n{ctx}", self.sent);
        assert_eq!(self.port_sum("rx_packets"), rx, "ports and PMDs disagree on rx\n{ctx}");
        assert_eq!(rx, self.total("forwarded") + self.total("dropped_packets"), "rx != forwarded + dropped\n{ctx}");
        let tx = self.total("tx_packets");
        assert_eq!(self.port_sum("tx_packets"), tx, "ports and PMDs disagree on tx\n{ctx}");
        let captured: usize = self.out.values().map(Vec::len).sum();
        assert_eq!(captured as u64, tx, "captures hold {captured} packets, PMDs sent {tx}\n{ctx}");
        let in_use = self.stats["mempool"]["in_use"].as_u64().unwrap();
        assert_eq!(in_use, 0, "{in_use} mbufs leaked\n{ctx}");
    }
}
