//! The match fields: names as `ovs-ofctl` spells them, where each lives in the [`FlowKey`], how its
//! values are written, and what a rule must also match for the field to make sense (its
//! prerequisites, as in Open vSwitch: `tp_dst` needs `tcp`, `udp` or `sctp`).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::key::{FlowKey, Match, VLAN_CFI, eth_type, ip_proto, off};

/// A field a rule can match or an action can set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum Field {
    InPort,
    DlSrc,
    DlDst,
    DlType,
    VlanTci,
    DlVlan,
    DlVlanPcp,
    NwSrc,
    NwDst,
    NwProto,
    NwTos,
    IpDscp,
    NwEcn,
    NwTtl,
    IpFrag,
    Ipv6Src,
    Ipv6Dst,
    Ipv6Label,
    ArpOp,
    ArpSpa,
    ArpTpa,
    ArpSha,
    ArpTha,
    TpSrc,
    TpDst,
    TcpSrc,
    TcpDst,
    UdpSrc,
    UdpDst,
    SctpSrc,
    SctpDst,
    TcpFlags,
    IcmpType,
    IcmpCode,
    Icmpv6Type,
    Icmpv6Code,
    /// Set-only: the VLAN id of an existing tag (`set_field:100->vlan_vid`).
    VlanVid,
    /// Set-only: the priority of an existing tag.
    VlanPcp,
}

/// How a field's values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A port name or number.
    Port,
    /// `aa:bb:cc:dd:ee:ff`
    Mac,
    /// `10.0.0.1`, masks as `/8` or `/255.0.0.0`
    Ipv4,
    /// `fd00::1`, masks as `/64` or an address
    Ipv6,
    /// Decimal (hex accepted)
    Dec,
    /// Hexadecimal (decimal accepted), e.g. `dl_type=0x0800`
    Hex,
    /// `no`, `yes`, `first`, `later`, `not_later`
    Frag,
    /// `+syn-ack` or a number
    TcpFlags,
}

/// What else a rule must match for a field to be meaningful.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prereq {
    /// Nothing.
    None,
    /// IPv4 or IPv6.
    Ip,
    /// IPv4.
    Ipv4,
    /// IPv4, or ARP (where `nw_src`/`nw_dst` are the ARP addresses).
    Ipv4OrArp,
    /// IPv6.
    Ipv6,
    /// ARP or RARP.
    Arp,
    /// TCP, UDP or SCTP over IPv4 or IPv6.
    L4,
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
    /// A VLAN tag (`dl_vlan=`, `vlan_tci=0x1000/0x1000`, or an action that pushes one).
    Vlan,
    /// ICMPv4.
    Icmpv4,
    /// ICMPv6.
    Icmpv6,
}

impl Prereq {
    /// How to satisfy it, for error messages.
    pub fn hint(self) -> &'static str {
        match self {
            Prereq::None => "",
            Prereq::Ip => "ip or ipv6",
            Prereq::Ipv4 => "ip",
            Prereq::Ipv4OrArp => "ip or arp",
            Prereq::Ipv6 => "ipv6",
            Prereq::Arp => "arp",
            Prereq::L4 => "tcp, udp or sctp (or tcp6, udp6, sctp6)",
            Prereq::Tcp => "tcp or tcp6",
            Prereq::Udp => "udp or udp6",
            Prereq::Sctp => "sctp or sctp6",
            Prereq::Vlan => "a VLAN tag (dl_vlan=N or vlan_tci=0x1000/0x1000, or push_vlan/mod_vlan_vid first)",
            Prereq::Icmpv4 => "icmp",
            Prereq::Icmpv6 => "icmp6",
        }
    }

    /// Whether a flow with `dl_type` and `nw_proto` satisfies it.
    pub fn holds(self, dl_type: u16, nw_proto: u8) -> bool {
        let ip = matches!(dl_type, eth_type::IPV4 | eth_type::IPV6);
        match self {
            Prereq::None => true,
            Prereq::Ip => ip,
            Prereq::Ipv4 => dl_type == eth_type::IPV4,
            Prereq::Ipv4OrArp => matches!(dl_type, eth_type::IPV4 | eth_type::ARP | eth_type::RARP),
            Prereq::Ipv6 => dl_type == eth_type::IPV6,
            Prereq::Arp => matches!(dl_type, eth_type::ARP | eth_type::RARP),
            Prereq::L4 => ip && matches!(nw_proto, ip_proto::TCP | ip_proto::UDP | ip_proto::SCTP),
            Prereq::Tcp => ip && nw_proto == ip_proto::TCP,
            Prereq::Udp => ip && nw_proto == ip_proto::UDP,
            Prereq::Sctp => ip && nw_proto == ip_proto::SCTP,
            // Not a matter of dl_type/nw_proto: checked on the VLAN bits (see `satisfied_by`).
            Prereq::Vlan => true,
            Prereq::Icmpv4 => dl_type == eth_type::IPV4 && nw_proto == ip_proto::ICMP,
            Prereq::Icmpv6 => dl_type == eth_type::IPV6 && nw_proto == ip_proto::ICMPV6,
        }
    }

    /// Whether a match guarantees it (dl_type, and nw_proto where needed, matched exactly).
    pub fn satisfied_by(self, m: &Match) -> bool {
        if self == Prereq::Vlan {
            return m.mask.vlan_tci() & VLAN_CFI != 0 && m.key.vlan_tci() & VLAN_CFI != 0;
        }
        let needs_proto =
            matches!(self, Prereq::L4 | Prereq::Tcp | Prereq::Udp | Prereq::Sctp | Prereq::Icmpv4 | Prereq::Icmpv6);
        match (m.exact_dl_type(), m.exact_nw_proto()) {
            _ if self == Prereq::None => true,
            (Some(t), Some(p)) => self.holds(t, p),
            (Some(t), None) if !needs_proto => self.holds(t, 0),
            _ => false,
        }
    }
}

/// Everything about one field.
#[derive(Debug, Clone, Copy)]
pub struct FieldDef {
    /// Which field.
    pub field: Field,
    /// The name printed.
    pub name: &'static str,
    /// Other names accepted.
    pub aliases: &'static [&'static str],
    /// Byte offset in the key.
    pub offset: usize,
    /// Bytes in the key.
    pub len: usize,
    /// Bits of the `len`-byte big-endian key value that belong to the field.
    pub bits: u128,
    /// A value is stored shifted left this much.
    pub shift: u32,
    /// How values are written.
    pub format: Format,
    /// Whether a match may give a mask (`/...`).
    pub maskable: bool,
    /// Whether `set_field` may write it.
    pub writable: bool,
    /// Whether it may appear in a match at all.
    pub matchable: bool,
    /// What the match must also contain.
    pub prereq: Prereq,
}

/// One row of the field table: positional, in the order of [`FieldDef`]'s fields.
macro_rules! def {
    ($field:expr, $name:expr, $aliases:expr, $offset:expr, $len:expr, $bits:expr, $shift:expr, $format:expr,
     $maskable:expr, $writable:expr, $prereq:expr $(,)?) => {
        FieldDef {
            field: $field,
            name: $name,
            aliases: $aliases,
            offset: $offset,
            len: $len,
            bits: $bits,
            shift: $shift,
            format: $format,
            maskable: $maskable,
            writable: $writable,
            matchable: true,
            prereq: $prereq,
        }
    };
}

const fn set_only(mut d: FieldDef) -> FieldDef {
    d.matchable = false;
    d
}

const MAC: u128 = 0xffff_ffff_ffff;
const IP4: u128 = 0xffff_ffff;
const IP6: u128 = u128::MAX;
use Field as F;
use Format as Fm;
use Prereq as P;

/// Every field, in the order `dump-flows` prints them.
#[rustfmt::skip]
pub const FIELDS: &[FieldDef] = &[
    def!(F::InPort, "in_port", &[], off::IN_PORT, 2, 0xffff, 0, Fm::Port, false, false, P::None),
    def!(F::DlType, "dl_type", &["eth_type"], off::DL_TYPE, 2, 0xffff, 0, Fm::Hex, false, false, P::None),
    def!(F::VlanTci, "vlan_tci", &[], off::VLAN_TCI, 2, 0xffff, 0, Fm::Hex, true, false, P::None),
    def!(F::DlVlan, "dl_vlan", &[], off::VLAN_TCI, 2, 0x0fff, 0, Fm::Dec, false, false, P::None),
    def!(F::DlVlanPcp, "dl_vlan_pcp", &[], off::VLAN_TCI, 2, 0xe000, 13, Fm::Dec, false, false, P::None),
    def!(F::DlSrc, "dl_src", &["eth_src"], off::DL_SRC, 6, MAC, 0, Fm::Mac, true, true, P::None),
    def!(F::DlDst, "dl_dst", &["eth_dst"], off::DL_DST, 6, MAC, 0, Fm::Mac, true, true, P::None),
    def!(F::ArpSpa, "arp_spa", &[], off::NW_SRC, 4, IP4, 0, Fm::Ipv4, true, true, P::Arp),
    def!(F::ArpTpa, "arp_tpa", &[], off::NW_DST, 4, IP4, 0, Fm::Ipv4, true, true, P::Arp),
    def!(F::NwSrc, "nw_src", &["ip_src"], off::NW_SRC, 4, IP4, 0, Fm::Ipv4, true, true, P::Ipv4OrArp),
    def!(F::NwDst, "nw_dst", &["ip_dst"], off::NW_DST, 4, IP4, 0, Fm::Ipv4, true, true, P::Ipv4OrArp),
    def!(F::Ipv6Src, "ipv6_src", &[], off::IPV6_SRC, 16, IP6, 0, Fm::Ipv6, true, true, P::Ipv6),
    def!(F::Ipv6Dst, "ipv6_dst", &[], off::IPV6_DST, 16, IP6, 0, Fm::Ipv6, true, true, P::Ipv6),
    def!(F::Ipv6Label, "ipv6_label", &[], off::IPV6_LABEL, 4, 0x000f_ffff, 0, Fm::Hex, true, true, P::Ipv6),
    def!(F::ArpOp, "arp_op", &[], off::NW_PROTO, 1, 0xff, 0, Fm::Dec, false, true, P::Arp),
    def!(F::NwProto, "nw_proto", &["ip_proto"], off::NW_PROTO, 1, 0xff, 0, Fm::Dec, false, false, P::Ip),
    def!(F::ArpSha, "arp_sha", &[], off::ARP_SHA, 6, MAC, 0, Fm::Mac, true, true, P::Arp),
    def!(F::ArpTha, "arp_tha", &[], off::ARP_THA, 6, MAC, 0, Fm::Mac, true, true, P::Arp),
    def!(F::NwTos, "nw_tos", &[], off::NW_TOS, 1, 0xfc, 0, Fm::Dec, false, true, P::Ip),
    def!(F::IpDscp, "ip_dscp", &[], off::NW_TOS, 1, 0xfc, 2, Fm::Dec, false, true, P::Ip),
    def!(F::NwEcn, "nw_ecn", &["ip_ecn"], off::NW_TOS, 1, 0x03, 0, Fm::Dec, false, true, P::Ip),
    def!(F::NwTtl, "nw_ttl", &["ip_ttl"], off::NW_TTL, 1, 0xff, 0, Fm::Dec, false, true, P::Ip),
    def!(F::IpFrag, "ip_frag", &["nw_frag"], off::NW_FRAG, 1, 0x03, 0, Fm::Frag, true, false, P::Ip),
    def!(F::TpSrc, "tp_src", &[], off::TP_SRC, 2, 0xffff, 0, Fm::Dec, true, false, P::L4),
    def!(F::TpDst, "tp_dst", &[], off::TP_DST, 2, 0xffff, 0, Fm::Dec, true, false, P::L4),
    def!(F::TcpSrc, "tcp_src", &[], off::TP_SRC, 2, 0xffff, 0, Fm::Dec, true, true, P::Tcp),
    def!(F::TcpDst, "tcp_dst", &[], off::TP_DST, 2, 0xffff, 0, Fm::Dec, true, true, P::Tcp),
    def!(F::UdpSrc, "udp_src", &[], off::TP_SRC, 2, 0xffff, 0, Fm::Dec, true, true, P::Udp),
    def!(F::UdpDst, "udp_dst", &[], off::TP_DST, 2, 0xffff, 0, Fm::Dec, true, true, P::Udp),
    def!(F::SctpSrc, "sctp_src", &[], off::TP_SRC, 2, 0xffff, 0, Fm::Dec, true, true, P::Sctp),
    def!(F::SctpDst, "sctp_dst", &[], off::TP_DST, 2, 0xffff, 0, Fm::Dec, true, true, P::Sctp),
    def!(F::TcpFlags, "tcp_flags", &[], off::TCP_FLAGS, 2, 0x0fff, 0, Fm::TcpFlags, true, false, P::Tcp),
    def!(F::IcmpType, "icmp_type", &["icmpv4_type"], off::TP_SRC, 2, 0xff, 0, Fm::Dec, false, true, P::Icmpv4),
    def!(F::IcmpCode, "icmp_code", &["icmpv4_code"], off::TP_DST, 2, 0xff, 0, Fm::Dec, false, true, P::Icmpv4),
    def!(F::Icmpv6Type, "icmpv6_type", &[], off::TP_SRC, 2, 0xff, 0, Fm::Dec, false, true, P::Icmpv6),
    def!(F::Icmpv6Code, "icmpv6_code", &[], off::TP_DST, 2, 0xff, 0, Fm::Dec, false, true, P::Icmpv6),
    set_only(def!(F::VlanVid, "vlan_vid", &[], off::VLAN_TCI, 2, 0x0fff, 0, Fm::Dec, false, true, P::Vlan)),
    set_only(def!(F::VlanPcp, "vlan_pcp", &[], off::VLAN_TCI, 2, 0xe000, 13, Fm::Dec, false, true, P::Vlan)),
];

impl Field {
    /// The field's definition.
    pub fn def(self) -> &'static FieldDef {
        FIELDS.iter().find(|d| d.field == self).expect("every field has a definition")
    }

    /// Looks a field up by any of its names.
    pub fn by_name(name: &str) -> Option<Field> {
        FIELDS.iter().find(|d| d.name == name || d.aliases.contains(&name)).map(|d| d.field)
    }

    /// The field's name.
    pub fn name(self) -> &'static str {
        self.def().name
    }
}

impl FieldDef {
    /// The largest value (before shifting).
    pub fn max(&self) -> u128 {
        self.bits >> self.shift
    }

    /// The key bits for `value` (user units) under `mask` (user units), as (value, mask) in the
    /// field's `len`-byte big-endian space. Handles the VLAN fields' present bit.
    pub fn encode(&self, value: u128, mask: u128) -> (u128, u128) {
        match self.field {
            // dl_vlan=0xffff means "no VLAN tag".
            F::DlVlan if value == 0xffff => (0, 0xffff),
            F::DlVlan => (value | u128::from(VLAN_CFI), self.bits | u128::from(VLAN_CFI)),
            F::DlVlanPcp => ((value << 13) | u128::from(VLAN_CFI), self.bits | u128::from(VLAN_CFI)),
            _ => ((value << self.shift) & self.bits, (mask << self.shift) & self.bits),
        }
    }

    /// Reads the field's value (user units) from `key`.
    pub fn get(&self, key: &FlowKey) -> u128 {
        (read_be(key, self.offset, self.len) & self.bits) >> self.shift
    }

    /// Writes `value` (user units) into `key`, leaving the field's other bits alone.
    pub fn set(&self, key: &mut FlowKey, value: u128) {
        let old = read_be(key, self.offset, self.len);
        let new = (old & !self.bits) | ((value << self.shift) & self.bits);
        write_be(key, self.offset, self.len, new);
    }
}

/// The `len`-byte big-endian integer at `offset`.
pub fn read_be(key: &FlowKey, offset: usize, len: usize) -> u128 {
    key.0[offset..offset + len].iter().fold(0u128, |acc, b| (acc << 8) | u128::from(*b))
}

/// Writes the low `len` bytes of `v`, big-endian, at `offset`.
pub fn write_be(key: &mut FlowKey, offset: usize, len: usize, v: u128) {
    for i in 0..len {
        key.0[offset + i] = (v >> (8 * (len - 1 - i))) as u8;
    }
}

/// A number in decimal or `0x` hex.
pub fn parse_int(text: &str) -> Option<u128> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() => u128::from_str_radix(hex, 16).ok(),
        _ => text.parse::<u128>().ok(),
    }
}

/// `aa:bb:cc:dd:ee:ff` as a 48-bit number.
pub fn parse_mac(text: &str) -> Option<u128> {
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    parts.iter().try_fold(0u128, |acc, p| {
        (p.len() <= 2 && !p.is_empty()).then_some(())?;
        Some((acc << 8) | u128::from(u8::from_str_radix(p, 16).ok()?))
    })
}

/// Formats a 48-bit number as a MAC address.
pub fn format_mac(v: u128) -> String {
    let b = (v as u64).to_be_bytes();
    format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[2], b[3], b[4], b[5], b[6], b[7])
}

/// TCP flag names, as `ovs-ofctl` writes them, by bit.
pub const TCP_FLAG_NAMES: &[(&str, u16)] = &[
    ("fin", 0x001),
    ("syn", 0x002),
    ("rst", 0x004),
    ("psh", 0x008),
    ("ack", 0x010),
    ("urg", 0x020),
    ("ece", 0x040),
    ("cwr", 0x080),
    ("ns", 0x100),
];

/// `ip_frag` values and their (value, mask).
pub const FRAG_NAMES: &[(&str, u8, u8)] =
    &[("no", 0, 3), ("yes", 1, 1), ("first", 1, 3), ("later", 3, 3), ("not_later", 0, 2)];

/// Parses a value (and optional mask) of `def`'s format; ports are resolved by the caller.
/// Returns (value, mask) in user units; the mask is all ones when absent.
pub fn parse_value(def: &FieldDef, text: &str) -> Result<(u128, u128), String> {
    let name = def.name;
    let full = def.max();
    let (value, mask) = match text.split_once('/') {
        Some((v, m)) => (v, Some(m)),
        None => (text, None),
    };
    if mask.is_some() && !def.maskable && def.format != Format::Frag {
        return Err(format!("{name}: does not take a mask"));
    }
    let bad = |what: &str| format!("{name}: {text:?} is not {what}");
    let (v, m) = match def.format {
        Format::Port => return Err(format!("{name}: internal: ports are parsed by the caller")),
        Format::Mac => {
            let v = parse_mac(value).ok_or_else(|| bad("a MAC address (aa:bb:cc:dd:ee:ff)"))?;
            let m = mask.map(|m| parse_mac(m).ok_or_else(|| bad("a MAC address with a MAC mask"))).transpose()?;
            (v, m.unwrap_or(full))
        }
        Format::Ipv4 => {
            let v: Ipv4Addr = value.parse().map_err(|_| bad("an IPv4 address"))?;
            let m = match mask {
                None => full,
                Some(m) => match m.parse::<u32>() {
                    Ok(p) if p <= 32 => u128::from(u32::MAX.checked_shl(32 - p).unwrap_or(0)),
                    Ok(_) => return Err(format!("{name}: prefix length must be 0 to 32")),
                    Err(_) => u128::from(u32::from(m.parse::<Ipv4Addr>().map_err(|_| bad("an IPv4 address/mask"))?)),
                },
            };
            (u128::from(u32::from(v)), m)
        }
        Format::Ipv6 => {
            let v: Ipv6Addr = value.parse().map_err(|_| bad("an IPv6 address"))?;
            let m = match mask {
                None => full,
                Some(m) => match m.parse::<u32>() {
                    Ok(p) if p <= 128 => u128::MAX.checked_shl(128 - p).unwrap_or(0),
                    Ok(_) => return Err(format!("{name}: prefix length must be 0 to 128")),
                    Err(_) => u128::from(m.parse::<Ipv6Addr>().map_err(|_| bad("an IPv6 address/mask"))?),
                },
            };
            (u128::from(v), m)
        }
        Format::Dec | Format::Hex => {
            let v = parse_int(value).ok_or_else(|| bad("a number"))?;
            let m = mask.map(|m| parse_int(m).ok_or_else(|| bad("a number/mask"))).transpose()?;
            (v, m.unwrap_or(full))
        }
        Format::Frag => {
            if mask.is_some() {
                return Err(format!("{name}: use no, yes, first, later or not_later"));
            }
            let (_, v, m) = FRAG_NAMES
                .iter()
                .find(|(n, _, _)| *n == value)
                .ok_or_else(|| format!("{name}: {value:?} is not one of no, yes, first, later, not_later"))?;
            (u128::from(*v), u128::from(*m))
        }
        Format::TcpFlags => parse_tcp_flags(text).map_err(|e| format!("{name}: {e}"))?,
    };
    let special_vlan = def.field == Field::DlVlan && v == 0xffff;
    if v > full && !special_vlan {
        return Err(format!("{name}: {v} is out of range (0 to {full})"));
    }
    if m > full {
        return Err(format!("{name}: mask {m:#x} has bits outside the field ({full:#x})"));
    }
    if def.field == Field::NwTos && v & 0x3 != 0 {
        return Err(format!("{name}: {v} has ECN bits set (nw_tos takes DSCP << 2: a multiple of 4)"));
    }
    Ok((v, m))
}

fn parse_tcp_flags(text: &str) -> Result<(u128, u128), String> {
    if !text.starts_with(['+', '-']) {
        let (v, m) = match text.split_once('/') {
            Some((v, m)) => (v, Some(m)),
            None => (text, None),
        };
        let v = parse_int(v).ok_or_else(|| format!("{text:?} is not flags (+syn-ack) or a number"))?;
        let m = m.map(|m| parse_int(m).ok_or_else(|| format!("bad mask {m:?}"))).transpose()?.unwrap_or(0x0fff);
        return Ok((v, m));
    }
    let (mut value, mut mask) = (0u128, 0u128);
    let mut rest = text;
    while !rest.is_empty() {
        let set = rest.starts_with('+');
        rest = &rest[1..];
        let end = rest.find(['+', '-']).unwrap_or(rest.len());
        let name = &rest[..end];
        let (_, bit) =
            TCP_FLAG_NAMES.iter().find(|(n, _)| *n == name).ok_or_else(|| format!("unknown TCP flag {name:?}"))?;
        mask |= u128::from(*bit);
        if set {
            value |= u128::from(*bit);
        }
        rest = &rest[end..];
    }
    Ok((value, mask))
}

/// Formats a value (with its mask when partial) in the field's format.
pub fn format_value(def: &FieldDef, value: u128, mask: u128) -> String {
    let full = def.max();
    let partial = mask != full;
    match def.format {
        Format::Mac if partial => format!("{}/{}", format_mac(value), format_mac(mask)),
        Format::Mac => format_mac(value),
        Format::Ipv4 => {
            let v = Ipv4Addr::from(value as u32);
            match prefix_len(mask, 32) {
                Some(32) => v.to_string(),
                Some(p) => format!("{v}/{p}"),
                None => format!("{v}/{}", Ipv4Addr::from(mask as u32)),
            }
        }
        Format::Ipv6 => {
            let v = Ipv6Addr::from(value);
            match prefix_len(mask, 128) {
                Some(128) => v.to_string(),
                Some(p) => format!("{v}/{p}"),
                None => format!("{v}/{}", Ipv6Addr::from(mask)),
            }
        }
        Format::Frag => FRAG_NAMES
            .iter()
            .find(|(_, v, m)| u128::from(*v) == value && u128::from(*m) == mask)
            .map_or_else(|| format!("{value:#x}/{mask:#x}"), |(n, _, _)| n.to_string()),
        Format::TcpFlags if partial => {
            let mut s = String::new();
            for (name, bit) in TCP_FLAG_NAMES {
                let bit = u128::from(*bit);
                if mask & bit != 0 {
                    s.push(if value & bit != 0 { '+' } else { '-' });
                    s.push_str(name);
                }
            }
            s
        }
        Format::TcpFlags => format!("{value:#05x}"),
        Format::Hex if partial => format!("{value:#06x}/{mask:#06x}"),
        Format::Hex => format!("{value:#06x}"),
        Format::Dec if partial => format!("{value:#x}/{mask:#x}"),
        Format::Dec | Format::Port => value.to_string(),
    }
}

/// The prefix length of `mask` over `bits` bits, if it is a prefix.
fn prefix_len(mask: u128, bits: u32) -> Option<u32> {
    let shifted = mask << (128 - bits);
    let ones = shifted.leading_ones();
    (shifted.checked_shl(ones).unwrap_or(0) == 0).then_some(ones)
}

/// `key` as an exact match on every field that means something for its protocol (what a trace
/// prints as "the flow"): IPv6 fields only for IPv6, ports only for TCP/UDP/SCTP, and so on.
pub fn flow_match(key: &FlowKey) -> Match {
    let (dl_type, proto) = (key.dl_type(), key.nw_proto());
    let mut mask = FlowKey::ZERO;
    for def in FIELDS.iter().filter(|d| d.matchable && d.prereq.holds(dl_type, proto)) {
        if matches!(def.field, Field::DlVlan | Field::DlVlanPcp) {
            continue; // vlan_tci covers them
        }
        let bits = read_be(&mask, def.offset, def.len) | def.bits;
        write_be(&mut mask, def.offset, def.len, bits);
    }
    mask.set_dl_type(0xffff);
    Match { key: key.masked(&mask), mask }
}
