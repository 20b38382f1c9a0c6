//! The TOML file as written: serde structs, unknown keys rejected. Numbers are read as `i64` so that
//! validation, not serde, explains what range a value must be in.

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub eal: RawEal,
    #[serde(default)]
    pub datapath: RawDatapath,
    #[serde(default, rename = "port")]
    pub ports: Vec<RawPort>,
    #[serde(default)]
    pub flows: RawFlows,
    #[serde(default)]
    pub bridge: RawBridge,
}

/// `[bridge]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBridge {
    pub mac_table_size: Option<i64>,
    pub mac_aging_secs: Option<i64>,
    #[serde(default)]
    pub static_macs: Vec<RawStaticMac>,
}

/// One entry of `bridge.static_macs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStaticMac {
    pub mac: String,
    pub port: String,
    pub vlan: Option<i64>,
}

/// `[eal]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEal {
    #[serde(default)]
    pub args: Vec<String>,
}

/// `[datapath]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDatapath {
    pub pmd_cores: Option<Vec<i64>>,
    pub control_core: Option<i64>,
    pub burst_size: Option<i64>,
    pub allow_shared_cores: Option<bool>,
    pub flow_cache_size: Option<i64>,
    pub max_megaflows: Option<i64>,
    pub upcall_rate: Option<i64>,
}

/// One `[[port]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPort {
    pub name: String,
    pub devargs: Option<String>,
    pub vhost: Option<RawVhost>,
    pub mtu: Option<i64>,
    pub ofport: Option<i64>,
    pub rx_desc: Option<i64>,
    pub tx_desc: Option<i64>,
    pub rx_queues: Option<i64>,
    pub pmd_rxq_affinity: Option<String>,
    pub vlan_mode: Option<String>,
    pub tag: Option<i64>,
    pub trunks: Option<Vec<i64>>,
}

/// A port's `vhost = { path, mode, queues }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVhost {
    pub path: String,
    pub mode: Option<String>,
    pub queues: Option<i64>,
}

/// `[flows]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFlows {
    #[serde(default)]
    pub rules: Vec<String>,
    pub file: Option<String>,
}
