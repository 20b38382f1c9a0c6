//! ferrovs configuration: the TOML schema, the `ovs-ofctl` flow syntax, and the validation that
//! turns a file into a [`Config`] the switch can run, or into one line that names the field and
//! the reason. No DPDK here: `ferrovs check` uses this crate alone.
//!
//! ```toml
//! [eal]
//! args = ["--no-pci", "--in-memory"]     # extra EAL arguments; ferrovs derives the core list
//! [datapath]
//! pmd_cores = [1]
//! control_core = 0
//! burst_size = 64
//! [[port]]
//! name = "p0"
//! devargs = "net_pcap0,rx_pcap=in.pcap"  # relative paths are relative to this file
//! [[port]]
//! name = "vm0"                           # a vhost-user port instead of devargs (DPDK's vhost library)
//! vhost = { path = "vm0.sock", mode = "client", queues = 1 }
//! mtu = 9000                             # optional; frames up to it fit one packet buffer
//! vlan_mode = "access"                  # or trunk, native-untagged, native-tagged (for NORMAL)
//! tag = 10
//! [flows]
//! rules = ["priority=10,in_port=p0,actions=output:p0"]
//! file = "flows.txt"                     # one rule per line, '#' comments; no rules: NORMAL
//! [bridge]
//! mac_table_size = 8192
//! mac_aging_secs = 300
//! static_macs = [{ mac = "02:00:00:00:00:01", port = "p0", vlan = 10 }]
//! ```

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod bridge;
mod devargs;
mod error;
pub mod flow;
mod schema;
mod validate;
mod vhost;

use std::path::{Path, PathBuf};

pub use bridge::{Bridge, DEFAULT_MAC_AGING_SECS, DEFAULT_MAC_TABLE_SIZE, PortVlan, StaticMac, VLAN_MAX, VlanMode};
pub use devargs::Devargs;
pub use error::ConfigError;
use flow::{FlowRule, OfPort, PortMap};
pub use vhost::{VHOST_MAX_QUEUES, VhostMode, VhostPort};

/// Largest burst the data path supports (matches the switch's fixed burst arrays).
pub const MAX_BURST_SIZE: usize = 64;
/// Default entries in the flow cache.
pub const DEFAULT_FLOW_CACHE_SIZE: usize = 1 << 20;
/// Default most megaflows (as Open vSwitch's default flow limit).
pub const DEFAULT_MAX_MEGAFLOWS: usize = 200_000;
/// Smallest and largest `mtu` a port may have (IPv4's minimum; Open vSwitch's DPDK maximum).
pub const MTU_RANGE: (i64, i64) = (68, 9710);

/// Facts about the machine that validation checks against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// CPUs this process may run on.
    pub cpus: Vec<usize>,
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file it came from (for messages).
    pub source: PathBuf,
    /// Extra EAL arguments, as given.
    pub eal_args: Vec<String>,
    /// Cores and batch sizes.
    pub datapath: Datapath,
    /// Ports, in file order.
    pub ports: Vec<PortConfig>,
    /// Flow rules: `flows.rules` first, then `flows.file`; with none given, the one rule
    /// `priority=0,actions=normal` (a learning switch, as an Open vSwitch bridge in standalone mode).
    pub flows: Vec<FlowRule>,
    /// MAC learning for the NORMAL action.
    pub bridge: Bridge,
}

/// `[datapath]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datapath {
    /// One PMD thread per CPU listed, in order.
    pub pmd_cores: Vec<usize>,
    /// The CPU of the control thread (EAL's main lcore).
    pub control_core: usize,
    /// Packets per rx burst.
    pub burst_size: usize,
    /// Whether PMDs may share a CPU (for testing several PMDs on a small machine).
    pub allow_shared_cores: bool,
    /// Entries in the exact-match flow cache.
    pub flow_cache_size: usize,
    /// Most megaflows.
    pub max_megaflows: usize,
    /// Most upcalls per second per PMD (0: unlimited).
    pub upcall_rate: u64,
}

/// One `[[port]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// Unique name, used in rules and output.
    pub name: String,
    /// Device arguments, paths made absolute (derived from `vhost` for a vhost port).
    pub devargs: Devargs,
    /// The vhost-user socket, for a port given as `vhost = { ... }`.
    pub vhost: Option<VhostPort>,
    /// The MTU to configure (the device's default when not given); the largest one sizes the
    /// packet buffers, so frames up to it fit one buffer.
    pub mtu: Option<u16>,
    /// OpenFlow port number.
    pub ofport: OfPort,
    /// Receive descriptors per queue.
    pub rx_desc: u16,
    /// Transmit descriptors per queue.
    pub tx_desc: u16,
    /// Receive queues (RSS spreads flows over them).
    pub rx_queues: u16,
    /// Receive queues pinned to a PMD core: (queue, core).
    pub pmd_rxq_affinity: Vec<(u16, usize)>,
    /// VLAN settings (for the NORMAL action).
    pub vlan: PortVlan,
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path, host: &Host) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read { path: path.to_path_buf(), reason: e.to_string() })?;
        let base = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        validate::validate(&text, path, base, host)
    }

    /// Validates `text` as if read from a file in `base_dir`.
    pub fn parse(text: &str, base_dir: &Path, host: &Host) -> Result<Self, ConfigError> {
        validate::validate(text, Path::new("<config>"), base_dir, host)
    }

    /// The port with OpenFlow number `ofport`.
    pub fn port_by_ofport(&self, ofport: OfPort) -> Option<&PortConfig> {
        self.ports.iter().find(|p| p.ofport == ofport)
    }
}

impl PortMap for Config {
    fn by_name(&self, name: &str) -> Option<OfPort> {
        self.ports.iter().find(|p| p.name == name).map(|p| p.ofport)
    }
    fn has_number(&self, ofport: OfPort) -> bool {
        self.port_by_ofport(ofport).is_some()
    }
    fn name_of(&self, ofport: OfPort) -> Option<&str> {
        self.port_by_ofport(ofport).map(|p| p.name.as_str())
    }
}
