//! Rewriting header fields in place, with checksums kept right: the IPv4 header checksum, the
//! TCP/UDP/ICMPv6 checksums over the pseudo-header, ICMP's over type and code, and SCTP's CRC32c.
//! Every write is bounds-checked: an edit that does not fit the packet is skipped, never a panic.

use ferrovs_config::flow::{eth_type, ip_proto};

use super::csum::{update_bytes, update16};
use super::parse::{Layout, NONE};

/// A header field to set, as the datapath commits it (values in host order, written big-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetField {
    /// Ethernet source.
    EthSrc([u8; 6]),
    /// Ethernet destination.
    EthDst([u8; 6]),
    /// TCI of the existing outer VLAN tag (the CFI/present bit is not written).
    VlanTci(u16),
    /// IPv4 source address.
    Ipv4Src(u32),
    /// IPv4 destination address.
    Ipv4Dst(u32),
    /// IPv4 TOS byte or IPv6 traffic class (DSCP and ECN).
    IpTos(u8),
    /// IPv4 TTL or IPv6 hop limit.
    IpTtl(u8),
    /// IPv6 source address.
    Ipv6Src([u8; 16]),
    /// IPv6 destination address.
    Ipv6Dst([u8; 16]),
    /// IPv6 flow label (20 bits).
    Ipv6Label(u32),
    /// TCP/UDP/SCTP source port, or ICMP type.
    L4Src(u16),
    /// TCP/UDP/SCTP destination port, or ICMP code.
    L4Dst(u16),
    /// ARP opcode.
    ArpOp(u16),
    /// ARP sender IP.
    ArpSpa(u32),
    /// ARP target IP.
    ArpTpa(u32),
    /// ARP sender MAC.
    ArpSha([u8; 6]),
    /// ARP target MAC.
    ArpTha([u8; 6]),
}

impl std::fmt::Display for SetField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::net::{Ipv4Addr, Ipv6Addr};
        let mac = |m: &[u8; 6]| m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
        match self {
            SetField::EthSrc(m) => write!(f, "eth_src={}", mac(m)),
            SetField::EthDst(m) => write!(f, "eth_dst={}", mac(m)),
            SetField::VlanTci(t) => write!(f, "vlan(vid={},pcp={})", t & 0xfff, t >> 13),
            SetField::Ipv4Src(a) => write!(f, "ipv4_src={}", Ipv4Addr::from(*a)),
            SetField::Ipv4Dst(a) => write!(f, "ipv4_dst={}", Ipv4Addr::from(*a)),
            SetField::IpTos(t) => write!(f, "ip_tos={t:#04x}"),
            SetField::IpTtl(t) => write!(f, "ip_ttl={t}"),
            SetField::Ipv6Src(a) => write!(f, "ipv6_src={}", Ipv6Addr::from(*a)),
            SetField::Ipv6Dst(a) => write!(f, "ipv6_dst={}", Ipv6Addr::from(*a)),
            SetField::Ipv6Label(l) => write!(f, "ipv6_label={l:#x}"),
            SetField::L4Src(p) => write!(f, "l4_src={p}"),
            SetField::L4Dst(p) => write!(f, "l4_dst={p}"),
            SetField::ArpOp(o) => write!(f, "arp_op={o}"),
            SetField::ArpSpa(a) => write!(f, "arp_spa={}", Ipv4Addr::from(*a)),
            SetField::ArpTpa(a) => write!(f, "arp_tpa={}", Ipv4Addr::from(*a)),
            SetField::ArpSha(m) => write!(f, "arp_sha={}", mac(m)),
            SetField::ArpTha(m) => write!(f, "arp_tha={}", mac(m)),
        }
    }
}

/// What the executor knows of a packet while editing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketInfo {
    /// Ethertype after any VLAN tag.
    pub dl_type: u16,
    /// IP protocol (or ARP opcode low byte).
    pub nw_proto: u8,
    /// Whether an outer VLAN tag is present.
    pub vlan: bool,
    /// Header offsets.
    pub layout: Layout,
}

impl PacketInfo {
    /// Shifts the header offsets after `delta` bytes were inserted (+) or removed (-) in front.
    pub fn shift(&mut self, delta: i32) {
        for off in [&mut self.layout.l3, &mut self.layout.l4, &mut self.layout.end] {
            if *off != NONE {
                *off = (i32::from(*off) + delta).clamp(0, i32::from(NONE) - 1) as u16;
            }
        }
    }
}

/// Writes a new outer VLAN tag into a frame that has just grown by 4 bytes at the front: the MAC
/// addresses move to the new front, the tag goes after them.
pub fn write_pushed_vlan(d: &mut [u8], tpid: u16, tci: u16) -> bool {
    if d.len() < 16 {
        return false;
    }
    d.copy_within(4..16, 0);
    d[12..14].copy_from_slice(&tpid.to_be_bytes());
    d[14..16].copy_from_slice(&(tci & !0x1000).to_be_bytes());
    true
}

/// Whether the frame has a VLAN tag after its MAC addresses.
pub fn has_vlan(d: &[u8]) -> bool {
    get16(d, 12).is_some_and(|t| matches!(t, eth_type::VLAN | eth_type::VLAN_QINQ))
}

/// Moves the MAC addresses over the outer VLAN tag, so the frame can shrink by 4 bytes at the
/// front. False (nothing done) when there is no tag.
pub fn shift_out_vlan(d: &mut [u8]) -> bool {
    if !has_vlan(d) || d.len() < 18 {
        return false;
    }
    d.copy_within(0..12, 4);
    true
}

fn get16(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*d.get(at)?, *d.get(at + 1)?]))
}

fn put(d: &mut [u8], at: usize, bytes: &[u8]) -> Option<()> {
    d.get_mut(at..at + bytes.len())?.copy_from_slice(bytes);
    Some(())
}

/// Applies `set` to the packet bytes `d`.
pub fn apply(d: &mut [u8], info: &PacketInfo, set: &SetField) {
    let _ = apply_inner(d, info, set);
}

fn apply_inner(d: &mut [u8], info: &PacketInfo, set: &SetField) -> Option<()> {
    let l3 = usize::from(info.layout.l3);
    let l4 = (info.layout.l4 != NONE).then_some(usize::from(info.layout.l4));
    let transport = info.layout.l4_ok.then_some(()).and(l4);
    let ipv4 = info.dl_type == eth_type::IPV4 && info.layout.l3 != NONE;
    let ipv6 = info.dl_type == eth_type::IPV6 && info.layout.l3 != NONE;
    let arp = matches!(info.dl_type, eth_type::ARP | eth_type::RARP) && info.layout.l3 != NONE;
    match *set {
        SetField::EthSrc(mac) => put(d, 6, &mac),
        SetField::EthDst(mac) => put(d, 0, &mac),
        SetField::VlanTci(tci) if info.vlan => put(d, 14, &(tci & !0x1000).to_be_bytes()),
        SetField::Ipv4Src(ip) if ipv4 => set_ipv4_addr(d, info, l3 + 12, l4, ip),
        SetField::Ipv4Dst(ip) if ipv4 => set_ipv4_addr(d, info, l3 + 16, l4, ip),
        SetField::IpTos(tos) if ipv4 => {
            let old = get16(d, l3)?;
            let new = (old & 0xff00) | u16::from(tos);
            put(d, l3, &new.to_be_bytes())?;
            fix_ipv4_csum(d, l3, old, new)
        }
        SetField::IpTtl(ttl) if ipv4 => {
            let old = get16(d, l3 + 8)?;
            let new = (u16::from(ttl) << 8) | (old & 0xff);
            put(d, l3 + 8, &new.to_be_bytes())?;
            fix_ipv4_csum(d, l3, old, new)
        }
        SetField::IpTos(tc) if ipv6 => {
            let word = u32::from_be_bytes(d.get(l3..l3 + 4)?.try_into().ok()?);
            let new = (word & 0xf00f_ffff) | (u32::from(tc) << 20);
            put(d, l3, &new.to_be_bytes())
        }
        SetField::IpTtl(hlim) if ipv6 => put(d, l3 + 7, &[hlim]),
        SetField::Ipv6Label(label) if ipv6 => {
            let word = u32::from_be_bytes(d.get(l3..l3 + 4)?.try_into().ok()?);
            put(d, l3, &((word & 0xfff0_0000) | (label & 0x000f_ffff)).to_be_bytes())
        }
        SetField::Ipv6Src(addr) if ipv6 => set_ipv6_addr(d, info, l3 + 8, l4, addr),
        SetField::Ipv6Dst(addr) if ipv6 => set_ipv6_addr(d, info, l3 + 24, l4, addr),
        SetField::L4Src(v) => set_l4(d, info, transport?, 0, v),
        SetField::L4Dst(v) => set_l4(d, info, transport?, 2, v),
        SetField::ArpOp(op) if arp => put(d, l3 + 6, &op.to_be_bytes()),
        SetField::ArpSha(mac) if arp => put(d, l3 + 8, &mac),
        SetField::ArpSpa(ip) if arp => put(d, l3 + 14, &ip.to_be_bytes()),
        SetField::ArpTha(mac) if arp => put(d, l3 + 18, &mac),
        SetField::ArpTpa(ip) if arp => put(d, l3 + 24, &ip.to_be_bytes()),
        _ => None,
    }
}

fn fix_ipv4_csum(d: &mut [u8], l3: usize, old: u16, new: u16) -> Option<()> {
    let c = get16(d, l3 + 10)?;
    put(d, l3 + 10, &update16(c, old, new).to_be_bytes())
}

/// Offset of the transport checksum that covers the IP pseudo-header, if the packet has one. Like
/// OVS, this looks only at the protocol and the bytes left after the IP header, not at whether
/// a transport header was parsed (so a later IPv4 fragment's payload is "updated" too).
fn pseudo_header_csum(info: &PacketInfo, l4: usize) -> Option<(usize, bool)> {
    let size = usize::from(info.layout.end).saturating_sub(l4);
    match info.nw_proto {
        ip_proto::TCP if size >= 20 => Some((l4 + 16, false)),
        ip_proto::UDP if size >= 8 => Some((l4 + 6, true)),
        ip_proto::ICMPV6 if info.dl_type == eth_type::IPV6 && size >= 4 => Some((l4 + 2, false)),
        _ => None,
    }
}

/// Updates a pseudo-header checksum for the address bytes `old` -> `new`. A zero UDP checksum
/// means "none" and stays zero; a computed zero is sent as 0xffff.
fn fix_l4_csum(d: &mut [u8], info: &PacketInfo, l4: Option<usize>, old: &[u8], new: &[u8]) -> Option<()> {
    let (at, udp) = pseudo_header_csum(info, l4?)?;
    let c = get16(d, at)?;
    if udp && c == 0 {
        return Some(());
    }
    let mut n = update_bytes(c, old, new);
    if udp && n == 0 {
        n = 0xffff;
    }
    put(d, at, &n.to_be_bytes())
}

fn set_ipv4_addr(d: &mut [u8], info: &PacketInfo, at: usize, l4: Option<usize>, ip: u32) -> Option<()> {
    let old: [u8; 4] = d.get(at..at + 4)?.try_into().ok()?;
    let new = ip.to_be_bytes();
    put(d, at, &new)?;
    let l3 = usize::from(info.layout.l3);
    let c = get16(d, l3 + 10)?;
    put(d, l3 + 10, &update_bytes(c, &old, &new).to_be_bytes())?;
    fix_l4_csum(d, info, l4, &old, &new)
}

fn set_ipv6_addr(d: &mut [u8], info: &PacketInfo, at: usize, l4: Option<usize>, addr: [u8; 16]) -> Option<()> {
    let old: [u8; 16] = d.get(at..at + 16)?.try_into().ok()?;
    put(d, at, &addr)?;
    fix_l4_csum(d, info, l4, &old, &addr)
}

/// Sets the transport word at `l4 + off` (a port, or for ICMP the type/code byte).
fn set_l4(d: &mut [u8], info: &PacketInfo, l4: usize, off: usize, v: u16) -> Option<()> {
    match info.nw_proto {
        ip_proto::TCP | ip_proto::UDP => {
            let old = get16(d, l4 + off)?;
            put(d, l4 + off, &v.to_be_bytes())?;
            fix_l4_csum(d, info, Some(l4), &old.to_be_bytes(), &v.to_be_bytes())
        }
        ip_proto::SCTP => {
            put(d, l4 + off, &v.to_be_bytes())?;
            fix_sctp_crc(d, l4, usize::from(info.layout.end))
        }
        ip_proto::ICMP | ip_proto::ICMPV6 => {
            // Type and code share one checksummed word: type in the high byte, code in the low.
            let old = get16(d, l4)?;
            let new = if off == 0 { (v << 8) | (old & 0xff) } else { (old & 0xff00) | (v & 0xff) };
            put(d, l4, &new.to_be_bytes())?;
            let c = get16(d, l4 + 2)?;
            put(d, l4 + 2, &update16(c, old, new).to_be_bytes())
        }
        _ => None,
    }
}

/// Recomputes SCTP's CRC32c over the whole SCTP packet (it cannot be updated incrementally).
fn fix_sctp_crc(d: &mut [u8], l4: usize, end: usize) -> Option<()> {
    put(d, l4 + 8, &[0; 4])?;
    let crc = crc32c::crc32c(d.get(l4..end)?);
    put(d, l4 + 8, &crc.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::csum::checksum;
    use crate::packet::parse::extract;

    fn udp4() -> Vec<u8> {
        let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(1000, 2000);
        let mut out = Vec::new();
        b.write(&mut out, &[1, 2, 3, 4, 5, 6, 7]).unwrap();
        out
    }

    fn tcp6() -> Vec<u8> {
        let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv6([0xfd; 16], [0xfe; 16], 64)
            .tcp(1000, 80, 7, 100);
        let mut out = Vec::new();
        b.write(&mut out, &[9; 11]).unwrap();
        out
    }

    fn info(d: &[u8]) -> PacketInfo {
        let (k, layout) = extract(d, 1);
        PacketInfo { dl_type: k.dl_type(), nw_proto: k.nw_proto(), vlan: k.vlan_tci() != 0, layout }
    }

    /// The packet as etherparse re-checks it: every checksum verified.
    fn checksums_ok(d: &[u8]) -> bool {
        let p = etherparse::SlicedPacket::from_ethernet(d).unwrap();
        let ok_l4 = match (&p.net, &p.transport) {
            (Some(etherparse::NetSlice::Ipv4(ip)), Some(etherparse::TransportSlice::Udp(u))) => {
                u.to_header().calc_checksum_ipv4(&ip.header().to_header(), u.payload()).unwrap() == u.checksum()
            }
            (Some(etherparse::NetSlice::Ipv6(ip)), Some(etherparse::TransportSlice::Tcp(t))) => {
                t.to_header().calc_checksum_ipv6(&ip.header().to_header(), t.payload()).unwrap() == t.checksum()
            }
            _ => true,
        };
        let ok_l3 = match &p.net {
            Some(etherparse::NetSlice::Ipv4(ip)) => checksum(ip.header().slice()) == 0,
            _ => true,
        };
        ok_l3 && ok_l4
    }

    #[test]
    fn ipv4_edits_keep_every_checksum_right() {
        for set in [
            SetField::Ipv4Src(0xc0a8_0101),
            SetField::Ipv4Dst(0x0808_0808),
            SetField::IpTos(0xb8),
            SetField::IpTtl(3),
            SetField::L4Src(4242),
            SetField::L4Dst(53),
        ] {
            let mut d = udp4();
            let i = info(&d);
            apply(&mut d, &i, &set);
            assert!(checksums_ok(&d), "{set:?}");
            let (k, _) = extract(&d, 1);
            match set {
                SetField::Ipv4Src(ip) => assert_eq!(k.nw_src(), ip),
                SetField::Ipv4Dst(ip) => assert_eq!(k.nw_dst(), ip),
                SetField::IpTos(t) => assert_eq!(k.nw_tos(), t),
                SetField::IpTtl(t) => assert_eq!(k.nw_ttl(), t),
                SetField::L4Src(p) => assert_eq!(k.tp_src(), p),
                SetField::L4Dst(p) => assert_eq!(k.tp_dst(), p),
                _ => unreachable!(),
            }
        }
    }

    #[test]
    fn ipv6_edits_keep_the_tcp_checksum_right() {
        for set in [
            SetField::Ipv6Src([1; 16]),
            SetField::Ipv6Dst([2; 16]),
            SetField::L4Dst(8080),
            SetField::IpTos(0x28),
            SetField::Ipv6Label(0x54321),
        ] {
            let mut d = tcp6();
            let i = info(&d);
            apply(&mut d, &i, &set);
            assert!(checksums_ok(&d), "{set:?}");
        }
        let mut d = tcp6();
        let i = info(&d);
        apply(&mut d, &i, &SetField::Ipv6Label(0x54321));
        apply(&mut d, &i, &SetField::IpTos(0x28));
        let (k, _) = extract(&d, 1);
        assert_eq!((k.ipv6_label(), k.nw_tos()), (0x54321, 0x28));
    }

    #[test]
    fn a_zero_udp_checksum_stays_zero() {
        let mut d = udp4();
        let l4 = usize::from(info(&d).layout.l4);
        d[l4 + 6..l4 + 8].copy_from_slice(&[0, 0]);
        let i = info(&d);
        apply(&mut d, &i, &SetField::Ipv4Dst(1));
        assert_eq!(&d[l4 + 6..l4 + 8], &[0, 0]);
    }

    #[test]
    fn edits_that_do_not_fit_are_skipped() {
        let mut d = udp4();
        let i = info(&d);
        d.truncate(20);
        apply(&mut d, &i, &SetField::Ipv4Dst(1)); // no panic
        let mut short = vec![0u8; 3];
        apply(&mut short, &i, &SetField::EthSrc([1; 6]));
        assert_eq!(short, [0, 0, 0]);
    }
}
