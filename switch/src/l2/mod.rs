//! The L2 switch behind the NORMAL action: the MAC learning table and the VLAN rules of each
//! port, as Open vSwitch applies them (`ofproto-dpif-xlate.c`: `xlate_normal` and its helpers).
//! The translation itself lives with the other actions (`ofproto::xlate`); this module holds what
//! it consults.

pub mod mac_table;

pub use ferrovs_config::{PortVlan, VlanMode};
pub use mac_table::{Learned, MacCounters, MacEntry, MacKey, MacTable, is_multicast};

/// Whether a frame in VLAN `vid` (0: untagged or priority-tagged) may enter through `port`.
pub fn input_allowed(port: &PortVlan, vid: u16) -> bool {
    match port.mode {
        VlanMode::Access => vid == 0,
        // A native port always carries its native VLAN, as untagged frames.
        VlanMode::NativeUntagged | VlanMode::NativeTagged if vid == 0 => true,
        VlanMode::Trunk | VlanMode::NativeUntagged | VlanMode::NativeTagged => port.trunks_vlan(vid),
    }
}

/// The VLAN a frame with VID `vid` belongs to once in through `port`.
pub fn input_vlan(port: &PortVlan, vid: u16) -> u16 {
    match port.mode {
        VlanMode::Access => port.tag,
        VlanMode::Trunk => vid,
        VlanMode::NativeUntagged | VlanMode::NativeTagged if vid == 0 => port.tag,
        VlanMode::NativeUntagged | VlanMode::NativeTagged => vid,
    }
}

/// The VID a frame of `vlan` carries out of `port` (0: untagged).
pub fn output_vid(port: &PortVlan, vlan: u16) -> u16 {
    match port.mode {
        VlanMode::Access => 0,
        VlanMode::Trunk | VlanMode::NativeTagged => vlan,
        VlanMode::NativeUntagged if vlan == port.tag => 0,
        VlanMode::NativeUntagged => vlan,
    }
}

/// Whether a bridge must not forward frames to `mac` (as Open vSwitch's `eth_addr_is_reserved`):
/// IEEE 802.1D's 01:80:c2:00:00:00-0f (STP, pause, LACP, LLDP, 802.1X...) and a few proprietary
/// link protocols.
pub fn is_reserved(mac: &[u8; 6]) -> bool {
    const EXACT: [u64; 15] = [
        0x00e0_2b00_0000, // Extreme EDP
        0x00e0_2b00_0004, // Extreme EAPS
        0x00e0_2b00_0006, // Extreme EAPS
        0x0100_0c00_0000, // Cisco ISL
        0x0100_0ccc_cccc, // Cisco PAgP, UDLD, CDP, DTP, VTP
        0x0100_0ccc_cccd, // Cisco PVST+
        0x0100_0ccd_cdcd, // Cisco STP Uplink Fast, FlexLink
        0x0100_0ccc_ccc0, // Cisco CFM
        0x0100_0ccc_ccc1,
        0x0100_0ccc_ccc2,
        0x0100_0ccc_ccc3,
        0x0100_0ccc_ccc4,
        0x0100_0ccc_ccc5,
        0x0100_0ccc_ccc6,
        0x0100_0ccc_ccc7,
    ];
    let v = mac.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    (v & !0xf) == 0x0180_c200_0000 || EXACT.contains(&v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(mode: VlanMode, tag: u16, trunks: &[u16]) -> PortVlan {
        PortVlan { mode, tag, trunks: trunks.to_vec() }
    }

    #[test]
    fn vlan_rules_follow_open_vswitch() {
        let access = port(VlanMode::Access, 10, &[]);
        assert!(input_allowed(&access, 0) && !input_allowed(&access, 10));
        assert_eq!((input_vlan(&access, 0), output_vid(&access, 10)), (10, 0));
        assert!(access.includes(10) && !access.includes(0));

        let trunk = port(VlanMode::Trunk, 0, &[]);
        assert!(input_allowed(&trunk, 0) && input_allowed(&trunk, 4095));
        assert_eq!((input_vlan(&trunk, 7), output_vid(&trunk, 7)), (7, 7));
        let some = port(VlanMode::Trunk, 0, &[10, 20]);
        assert!(!input_allowed(&some, 0) && input_allowed(&some, 20) && !some.includes(30));

        // A native VLAN other than 0 is trunked, and VLAN 0 is not (OVS forces both).
        let native = port(VlanMode::NativeUntagged, 10, &[20]);
        assert!(input_allowed(&native, 0) && input_allowed(&native, 20) && input_allowed(&native, 10));
        assert!(!input_allowed(&native, 30) && !native.includes(0));
        assert_eq!((input_vlan(&native, 0), output_vid(&native, 10), output_vid(&native, 20)), (10, 0, 20));
        let all_native = port(VlanMode::NativeTagged, 10, &[]);
        assert!(all_native.includes(4000) && !all_native.includes(0));
        assert_eq!(output_vid(&all_native, 10), 10);
        let zero_native = port(VlanMode::NativeUntagged, 0, &[]);
        assert!(zero_native.includes(0) && zero_native.includes(5));
    }

    #[test]
    fn reserved_addresses() {
        assert!(is_reserved(&[0x01, 0x80, 0xc2, 0, 0, 0x00]));
        assert!(is_reserved(&[0x01, 0x80, 0xc2, 0, 0, 0x0e]));
        assert!(!is_reserved(&[0x01, 0x80, 0xc2, 0, 0, 0x10]));
        assert!(is_reserved(&[0x01, 0x00, 0x0c, 0xcc, 0xcc, 0xcd]));
        assert!(!is_reserved(&[0xff; 6]));
        assert!(!is_reserved(&[0x01, 0x00, 0x5e, 0, 0, 1]));
    }
}
