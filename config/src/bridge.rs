//! The L2 switch's settings: `[bridge]` (MAC learning) and each port's VLAN keys, with the rules
//! Open vSwitch applies to them (`vswitch.xml`, Port table), except that where OVS logs a warning
//! and ignores a key, we reject the file: a setting that would silently do nothing is an error.

use crate::flow::{OfPort, parse_mac};
use crate::schema::{RawBridge, RawPort};
use crate::{ConfigError, PortConfig};

/// Default most learned MAC addresses (as Open vSwitch's `mac-table-size`).
pub const DEFAULT_MAC_TABLE_SIZE: usize = 8192;
/// Default seconds a learned MAC lives without traffic from it (as OVS's `mac-aging-time`).
pub const DEFAULT_MAC_AGING_SECS: u64 = 300;
/// The largest VLAN id.
pub const VLAN_MAX: u16 = 4095;

/// `[bridge]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridge {
    /// Most learned MACs; learning one more evicts the least recently refreshed.
    pub mac_table_size: usize,
    /// Seconds a learned MAC lives without traffic from it.
    pub mac_aging_secs: u64,
    /// Entries that never age, move or get evicted.
    pub static_macs: Vec<StaticMac>,
}

impl Default for Bridge {
    fn default() -> Self {
        Self { mac_table_size: DEFAULT_MAC_TABLE_SIZE, mac_aging_secs: DEFAULT_MAC_AGING_SECS, static_macs: Vec::new() }
    }
}

/// One `bridge.static_macs` entry (as `ovs-appctl fdb/add`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticMac {
    /// The address (unicast).
    pub mac: [u8; 6],
    /// Its port.
    pub ofport: OfPort,
    /// In this VLAN.
    pub vlan: u16,
}

/// How a port carries VLANs (Open vSwitch's `vlan_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VlanMode {
    /// Untagged frames in one VLAN (`tag`); tagged frames other than priority tags are dropped.
    Access,
    /// Tagged frames of the VLANs in `trunks` (every VLAN when empty); untagged frames are VLAN 0.
    Trunk,
    /// A trunk whose untagged frames belong to `tag`, sent out untagged.
    NativeUntagged,
    /// A trunk whose untagged frames belong to `tag`, sent out tagged.
    NativeTagged,
}

impl VlanMode {
    /// Its name in the config file.
    pub fn name(self) -> &'static str {
        match self {
            VlanMode::Access => "access",
            VlanMode::Trunk => "trunk",
            VlanMode::NativeUntagged => "native-untagged",
            VlanMode::NativeTagged => "native-tagged",
        }
    }
}

/// A port's VLAN settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortVlan {
    /// The mode: given, or `access` when `tag` is set, else `trunk` (as OVS).
    pub mode: VlanMode,
    /// The access or native VLAN (0 when not set; unused by `trunk`).
    pub tag: u16,
    /// Trunked VLANs, sorted; empty means every VLAN. The native VLAN is not added here.
    pub trunks: Vec<u16>,
}

impl Default for PortVlan {
    fn default() -> Self {
        Self { mode: VlanMode::Trunk, tag: 0, trunks: Vec::new() }
    }
}

fn check_vlan_id(value: i64, field: String) -> Result<u16, ConfigError> {
    u16::try_from(value)
        .ok()
        .filter(|v| *v <= VLAN_MAX)
        .ok_or_else(|| ConfigError::invalid(field, format!("a VLAN id is between 0 and {VLAN_MAX}, got {value}")))
}

/// Port `i`'s VLAN keys.
pub(crate) fn check_port_vlan(raw: &RawPort, i: usize) -> Result<PortVlan, ConfigError> {
    let at = |key: &str| format!("port[{i}].{key}");
    let given_mode = match raw.vlan_mode.as_deref() {
        None => None,
        Some("access") => Some(VlanMode::Access),
        Some("trunk") => Some(VlanMode::Trunk),
        Some("native-untagged") => Some(VlanMode::NativeUntagged),
        Some("native-tagged") => Some(VlanMode::NativeTagged),
        Some(other) => {
            return Err(ConfigError::invalid(
                at("vlan_mode"),
                format!("{other:?} is not one of \"access\", \"trunk\", \"native-untagged\", \"native-tagged\""),
            ));
        }
    };
    let tag = raw.tag.map(|t| check_vlan_id(t, at("tag"))).transpose()?;
    let mut trunks = Vec::new();
    for (j, &v) in raw.trunks.iter().flatten().enumerate() {
        let vid = check_vlan_id(v, format!("port[{i}].trunks[{j}]"))?;
        if trunks.contains(&vid) {
            return Err(ConfigError::invalid(format!("port[{i}].trunks[{j}]"), format!("VLAN {vid} is listed twice")));
        }
        trunks.push(vid);
    }
    trunks.sort_unstable();
    let mode = given_mode.unwrap_or(if tag.is_some() { VlanMode::Access } else { VlanMode::Trunk });
    if mode == VlanMode::Access && raw.trunks.is_some() {
        return Err(ConfigError::invalid(
            at("trunks"),
            "an access port carries only the VLAN of its tag; remove trunks, or set vlan_mode = \"trunk\", \
             \"native-untagged\" or \"native-tagged\"",
        ));
    }
    if mode == VlanMode::Trunk && tag.is_some() {
        return Err(ConfigError::invalid(
            at("tag"),
            "a trunk port has no VLAN of its own; remove tag, or set vlan_mode = \"access\", \
             \"native-untagged\" or \"native-tagged\"",
        ));
    }
    Ok(PortVlan { mode, tag: tag.unwrap_or(0), trunks })
}

impl PortVlan {
    /// Whether the port carries VLAN `vlan` (as Open vSwitch's `xbundle_includes_vlan`).
    pub fn includes(&self, vlan: u16) -> bool {
        match self.mode {
            VlanMode::Access => vlan == self.tag,
            VlanMode::Trunk => self.trunks_vlan(vlan),
            VlanMode::NativeUntagged | VlanMode::NativeTagged => vlan == self.tag || self.trunks_vlan(vlan),
        }
    }

    /// Whether the port trunks `vlan` (as OVS's `xbundle_trunks_vlan`). A native port with a
    /// native VLAN other than 0 always trunks that VLAN and never VLAN 0, as OVS forces.
    pub fn trunks_vlan(&self, vlan: u16) -> bool {
        let listed = self.trunks.is_empty() || self.trunks.binary_search(&vlan).is_ok();
        match self.mode {
            VlanMode::Access => false,
            VlanMode::Trunk => listed,
            VlanMode::NativeUntagged | VlanMode::NativeTagged if self.tag != 0 => {
                vlan != 0 && (vlan == self.tag || listed)
            }
            VlanMode::NativeUntagged | VlanMode::NativeTagged => listed,
        }
    }
}

/// `[bridge]`, with port names resolved among `ports`.
pub(crate) fn check_bridge(raw: &RawBridge, ports: &[PortConfig]) -> Result<Bridge, ConfigError> {
    let size = crate::validate::check_range(
        raw.mac_table_size,
        DEFAULT_MAC_TABLE_SIZE as i64,
        1,
        1 << 20,
        "bridge.mac_table_size",
    )?;
    let aging = crate::validate::check_range(
        raw.mac_aging_secs,
        DEFAULT_MAC_AGING_SECS as i64,
        1,
        86_400,
        "bridge.mac_aging_secs",
    )?;
    let mut static_macs: Vec<StaticMac> = Vec::new();
    for (i, s) in raw.static_macs.iter().enumerate() {
        let at = |key: &str| format!("bridge.static_macs[{i}].{key}");
        let mac = parse_mac(&s.mac)
            .map(|v| {
                let b = v.to_be_bytes();
                [b[10], b[11], b[12], b[13], b[14], b[15]]
            })
            .ok_or_else(|| {
                ConfigError::invalid(at("mac"), format!("{:?} is not a MAC address (xx:xx:xx:xx:xx:xx)", s.mac))
            })?;
        if mac[0] & 1 != 0 {
            return Err(ConfigError::invalid(
                at("mac"),
                format!("{} is a multicast address; only unicast addresses are learned", s.mac),
            ));
        }
        let port = ports
            .iter()
            .find(|p| p.name == s.port)
            .ok_or_else(|| ConfigError::invalid(at("port"), format!("no port is called {:?}", s.port)))?;
        let vlan = check_vlan_id(s.vlan.unwrap_or(0), at("vlan"))?;
        if !port.vlan.includes(vlan) {
            return Err(ConfigError::invalid(
                at("vlan"),
                format!("port {} ({} port) does not carry VLAN {vlan}", port.name, port.vlan.mode.name()),
            ));
        }
        let ofport = port.ofport;
        if let Some(j) = static_macs.iter().position(|o| o.mac == mac && o.vlan == vlan) {
            return Err(ConfigError::invalid(
                at("mac"),
                format!("{} in VLAN {vlan} is already bridge.static_macs[{j}]", s.mac),
            ));
        }
        static_macs.push(StaticMac { mac, ofport, vlan });
    }
    if static_macs.len() > size as usize {
        return Err(ConfigError::invalid(
            "bridge.static_macs",
            format!("{} static entries do not fit in mac_table_size = {size}", static_macs.len()),
        ));
    }
    Ok(Bridge { mac_table_size: size as usize, mac_aging_secs: aging as u64, static_macs })
}
