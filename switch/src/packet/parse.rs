//! Flow key extraction: the header fields of one frame, as Open vSwitch's `miniflow_extract` reads
//! them (same fields, same rules for truncated or malformed headers), so that a rule matches here
//! exactly the packets it matches in OVS.
//!
//! The parser reads the frame through bounds-checked slices only. It never fails and never panics:
//! whatever the bytes, the result is a key (a malformed header simply leaves its fields zero).

use ferrovs_config::flow::{FRAG_ANY, FRAG_LATER, FlowKey, OfPort, VLAN_CFI, eth_type, ip_proto};

/// Offsets of the parsed headers, for the actions that rewrite them. `NONE` where absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Start of the network header (IPv4, IPv6, ARP), if one was parsed.
    pub l3: u16,
    /// Where the transport header starts: right after the IP header (and IPv6 extension headers),
    /// whether or not a transport header was parsed there (as OVS's `l4_ofs`: checksum updates for
    /// address rewrites go by it).
    pub l4: u16,
    /// End of the network packet (IP total length; the frame may carry padding after it).
    pub end: u16,
    /// Whether a whole transport header (TCP, UDP, SCTP, ICMP, ICMPv6) was parsed at `l4`.
    pub l4_ok: bool,
}

impl Layout {
    /// No header offsets.
    pub const NONE: Layout = Layout { l3: NONE, l4: NONE, end: NONE, l4_ok: false };
}

impl Default for Layout {
    fn default() -> Self {
        Self::NONE
    }
}

/// An absent offset.
pub const NONE: u16 = u16::MAX;

const ETH_HEADER_LEN: usize = 14;
const VLAN_HEADER_LEN: usize = 4;
const ETH_TYPE_MIN: u16 = 0x0600;
const LLC_SNAP_LEN: usize = 8;
const IPV4_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;
const ARP_ETH_LEN: usize = 28;
const TCP_HEADER_LEN: usize = 20;
const UDP_HEADER_LEN: usize = 8;
const SCTP_HEADER_LEN: usize = 12;
const ICMP_HEADER_LEN: usize = 8;
const ICMPV6_HEADER_LEN: usize = 8;

/// IPv6 extension headers that the parser walks past.
const IPV6_HOPOPTS: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_AH: u8 = 51;
const IPV6_DSTOPTS: u8 = 60;

#[inline(always)]
fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

#[inline(always)]
fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Extracts the flow key of `frame`, received on OpenFlow port `in_port`, and where its headers are.
#[inline]
pub fn extract(frame: &[u8], in_port: OfPort) -> (FlowKey, Layout) {
    let mut key = FlowKey::ZERO;
    let mut layout = Layout::NONE;
    extract_to(frame, in_port, &mut key, &mut layout);
    (key, layout)
}

/// [`extract`] into `key` and `layout` in place (the data path parses a whole burst into arrays,
/// and reads the keys back only in a later stage, when the stores have settled).
#[inline]
pub fn extract_to(frame: &[u8], in_port: OfPort, key: &mut FlowKey, layout: &mut Layout) {
    *key = FlowKey::ZERO;
    key.set_in_port(in_port);
    *layout = Layout::NONE;
    // Any header that is cut short just ends the parse: the fields so far stand.
    let _ = extract_into(frame, key, layout);
}

fn extract_into(frame: &[u8], key: &mut FlowKey, layout: &mut Layout) -> Option<()> {
    if frame.len() < ETH_HEADER_LEN {
        return None;
    }
    key.set_dl_dst(frame[0..6].try_into().ok()?);
    key.set_dl_src(frame[6..12].try_into().ok()?);
    let mut at = 12;
    // One VLAN tag (Open vSwitch's default vlan-limit), only if the tag and the next ethertype fit.
    let tpid = be16(frame, at)?;
    if matches!(tpid, eth_type::VLAN | eth_type::VLAN_QINQ) && frame.len() >= at + VLAN_HEADER_LEN + 2 {
        key.set_vlan_tci(be16(frame, at + 2)? | VLAN_CFI);
        at += VLAN_HEADER_LEN;
    }
    let (dl_type, l3) = ethertype(frame, at)?;
    key.set_dl_type(dl_type);
    match dl_type {
        eth_type::IPV4 => ipv4(frame, l3, key, layout),
        eth_type::IPV6 => ipv6(frame, l3, key, layout),
        eth_type::ARP | eth_type::RARP => arp(frame, l3, key, layout),
        _ => None,
    }
}

/// The ethertype at `at` (following an 802.2 LLC/SNAP header for 802.3 frames), and where the
/// network header starts.
fn ethertype(frame: &[u8], at: usize) -> Option<(u16, usize)> {
    let proto = be16(frame, at)?;
    let after = at + 2;
    if proto >= ETH_TYPE_MIN {
        return Some((proto, after));
    }
    let snap = frame.get(after..after + LLC_SNAP_LEN);
    match snap {
        Some([0xaa, 0xaa, 0x03, 0, 0, 0, hi, lo]) if u16::from_be_bytes([*hi, *lo]) >= ETH_TYPE_MIN => {
            Some((u16::from_be_bytes([*hi, *lo]), after + LLC_SNAP_LEN))
        }
        _ => Some((eth_type::NONE, after)),
    }
}

fn ipv4(frame: &[u8], l3: usize, key: &mut FlowKey, layout: &mut Layout) -> Option<()> {
    let size = frame.len() - l3;
    if size < IPV4_HEADER_LEN {
        return None;
    }
    let ihl = usize::from(frame[l3] & 0x0f) * 4;
    let tot_len = usize::from(be16(frame, l3 + 2)?);
    if ihl < IPV4_HEADER_LEN || size < ihl || tot_len > size || ihl > tot_len {
        return None;
    }
    key.set_nw_src(be32(frame, l3 + 12)?);
    key.set_nw_dst(be32(frame, l3 + 16)?);
    key.set_nw_tos(frame[l3 + 1]);
    key.set_nw_ttl(frame[l3 + 8]);
    let proto = frame[l3 + 9];
    key.set_nw_proto(proto);
    let frag_off = be16(frame, l3 + 6)?;
    let mut frag = 0;
    if frag_off & 0x3fff != 0 {
        frag = FRAG_ANY;
        if frag_off & 0x1fff != 0 {
            frag |= FRAG_LATER;
        }
    }
    key.set_nw_frag(frag);
    let end = l3 + tot_len; // the rest of the frame is Ethernet padding
    *layout = Layout { l3: l3 as u16, l4: (l3 + ihl) as u16, end: end as u16, l4_ok: false };
    if frag & FRAG_LATER == 0 {
        transport(&frame[..end], l3 + ihl, proto, key, layout);
    }
    Some(())
}

fn ipv6(frame: &[u8], l3: usize, key: &mut FlowKey, layout: &mut Layout) -> Option<()> {
    let size = frame.len() - l3;
    if size < IPV6_HEADER_LEN {
        return None;
    }
    let plen = usize::from(be16(frame, l3 + 4)?);
    if plen + IPV6_HEADER_LEN > size {
        return None;
    }
    key.set_ipv6_src(frame[l3 + 8..l3 + 24].try_into().ok()?);
    key.set_ipv6_dst(frame[l3 + 24..l3 + 40].try_into().ok()?);
    let end = l3 + IPV6_HEADER_LEN + plen;
    *layout = Layout { l3: l3 as u16, l4: NONE, end: end as u16, l4_ok: false };
    let frame = &frame[..end];
    let tc_flow = be32(frame, l3)?;
    let mut proto = frame[l3 + 6];
    let ttl = frame[l3 + 7];
    let mut frag = 0;
    // Walk the extension headers; a truncated one leaves every field below unset, as in OVS.
    let mut at = l3 + IPV6_HEADER_LEN;
    loop {
        match proto {
            IPV6_HOPOPTS | IPV6_ROUTING | IPV6_DSTOPTS | IPV6_AH | IPV6_FRAGMENT if frame.len() < at + 8 => {
                return None;
            }
            IPV6_HOPOPTS | IPV6_ROUTING | IPV6_DSTOPTS => {
                let len = (usize::from(frame[at + 1]) + 1) * 8;
                proto = frame[at];
                if frame.len() < at + len {
                    return None;
                }
                at += len;
            }
            IPV6_AH => {
                let len = (usize::from(frame[at + 1]) + 2) * 4;
                proto = frame[at];
                if frame.len() < at + len {
                    return None;
                }
                at += len;
            }
            IPV6_FRAGMENT => {
                proto = frame[at];
                let offlg = be16(frame, at + 2)?;
                at += 8;
                if offlg != 0 {
                    frag = FRAG_ANY;
                    if offlg & 0xfff8 != 0 {
                        frag |= FRAG_LATER;
                        proto = IPV6_FRAGMENT;
                        break;
                    }
                }
            }
            _ => break,
        }
    }
    key.set_nw_tos((tc_flow >> 20) as u8);
    key.set_nw_ttl(ttl);
    key.set_nw_proto(proto);
    key.set_nw_frag(frag);
    key.set_ipv6_label(tc_flow & 0x000f_ffff);
    layout.l4 = at as u16;
    if frag & FRAG_LATER == 0 {
        transport(frame, at, proto, key, layout);
    }
    Some(())
}

fn arp(frame: &[u8], l3: usize, key: &mut FlowKey, layout: &mut Layout) -> Option<()> {
    let arp = frame.get(l3..l3 + ARP_ETH_LEN)?;
    // Ethernet hardware, IPv4 protocol, 6- and 4-byte addresses: anything else is left unparsed.
    if arp[0..6] != [0, 1, 0x08, 0x00, 6, 4] {
        return None;
    }
    key.set_nw_src(be32(arp, 14)?);
    key.set_nw_dst(be32(arp, 24)?);
    let op = be16(arp, 6)?;
    if op <= 0xff {
        key.set_nw_proto(op as u8); // only the low byte of the opcode is matchable
    }
    key.set_arp_sha(arp[8..14].try_into().ok()?);
    key.set_arp_tha(arp[18..24].try_into().ok()?);
    *layout = Layout { l3: l3 as u16, l4: NONE, end: (l3 + ARP_ETH_LEN) as u16, l4_ok: false };
    Some(())
}

/// Transport ports (or ICMP type and code) at `l4`, when the whole fixed header is there.
fn transport(frame: &[u8], l4: usize, proto: u8, key: &mut FlowKey, layout: &mut Layout) {
    let size = frame.len().saturating_sub(l4);
    let parsed = match proto {
        ip_proto::TCP if size >= TCP_HEADER_LEN => {
            let ctl = be16(frame, l4 + 12).unwrap_or(0);
            let hdr_len = usize::from(ctl >> 12) * 4;
            if hdr_len >= TCP_HEADER_LEN && size >= hdr_len {
                key.set_tcp_flags(ctl & 0x0fff);
                ports(frame, l4, key)
            } else {
                false
            }
        }
        ip_proto::UDP if size >= UDP_HEADER_LEN => ports(frame, l4, key),
        ip_proto::SCTP if size >= SCTP_HEADER_LEN => ports(frame, l4, key),
        ip_proto::ICMP if size >= ICMP_HEADER_LEN => type_code(frame, l4, key),
        ip_proto::ICMPV6 if size >= ICMPV6_HEADER_LEN => type_code(frame, l4, key),
        _ => false,
    };
    layout.l4_ok = parsed;
}

fn ports(frame: &[u8], l4: usize, key: &mut FlowKey) -> bool {
    match (be16(frame, l4), be16(frame, l4 + 2)) {
        (Some(src), Some(dst)) => {
            key.set_tp_src(src);
            key.set_tp_dst(dst);
            true
        }
        _ => false,
    }
}

fn type_code(frame: &[u8], l4: usize, key: &mut FlowKey) -> bool {
    match (frame.get(l4), frame.get(l4 + 1)) {
        (Some(t), Some(c)) => {
            key.set_tp_src(u16::from(*t));
            key.set_tp_dst(u16::from(*c));
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;
    use proptest::prelude::*;

    fn build<B: FnOnce(&mut Vec<u8>)>(f: B) -> Vec<u8> {
        let mut v = Vec::new();
        f(&mut v);
        v
    }

    fn tcp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, ttl: u8, payload: &[u8]) -> Vec<u8> {
        build(|v| {
            PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
                .ipv4(src, dst, ttl)
                .tcp(sport, dport, 1, 100)
                .syn()
                .ack(5)
                .write(v, payload)
                .unwrap()
        })
    }

    #[test]
    fn reads_an_ipv4_tcp_frame() {
        let f = tcp4([10, 0, 0, 1], [10, 0, 0, 2], 1234, 80, 64, b"hi");
        let (k, l) = extract(&f, 7);
        assert_eq!(k.in_port(), 7);
        assert_eq!((k.dl_src(), k.dl_dst(), k.dl_type()), ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], 0x0800));
        assert_eq!((k.nw_src(), k.nw_dst(), k.nw_proto(), k.nw_ttl()), (0x0a00_0001, 0x0a00_0002, 6, 64));
        assert_eq!((k.tp_src(), k.tp_dst(), k.tcp_flags()), (1234, 80, 0x012));
        assert_eq!((l.l3, l.l4, usize::from(l.end), l.l4_ok), (14, 34, f.len(), true));
    }

    #[test]
    fn reads_vlan_ipv6_udp_and_fragments() {
        let f = build(|v| {
            PacketBuilder::ethernet2([2; 6], [4; 6])
                .single_vlan(etherparse::VlanId::try_new(100).unwrap())
                .ipv6([1; 16], [2; 16], 9)
                .udp(53, 5353)
                .write(v, &[0; 10])
                .unwrap()
        });
        let (k, l) = extract(&f, 1);
        assert_eq!(k.vlan_tci(), 100 | VLAN_CFI);
        assert_eq!((k.dl_type(), k.nw_proto(), k.nw_ttl()), (0x86dd, 17, 9));
        assert_eq!((k.ipv6_src(), k.tp_src(), k.tp_dst()), ([1; 16], 53, 5353));
        assert_eq!((l.l3, l.l4, l.l4_ok), (18, 58, true));

        // An IPv4 later fragment: no transport fields.
        let mut f = tcp4([1, 1, 1, 1], [2, 2, 2, 2], 1, 2, 3, &[]);
        f[14 + 6] = 0x00;
        f[14 + 7] = 0x10; // offset 16 bytes
        let (k, l) = extract(&f, 1);
        assert_eq!(k.nw_frag(), FRAG_ANY | FRAG_LATER);
        assert_eq!((k.tp_src(), k.tp_dst(), l.l4, l.l4_ok), (0, 0, 34, false));
    }

    #[test]
    fn malformed_headers_leave_their_fields_zero() {
        // IHL of 4 words (less than the 20-byte minimum): IPv4 fields unset, dl_type still IPv4.
        let mut f = tcp4([1, 1, 1, 1], [2, 2, 2, 2], 1, 2, 3, &[]);
        f[14] = 0x44;
        let (k, l) = extract(&f, 1);
        assert_eq!((k.dl_type(), k.nw_src(), k.nw_proto(), l.l3), (0x0800, 0, 0, NONE));
        // Total length longer than the frame.
        let mut f = tcp4([1, 1, 1, 1], [2, 2, 2, 2], 1, 2, 3, &[]);
        f[16] = 0xff;
        assert_eq!(extract(&f, 1).0.nw_src(), 0);
        // Truncated TCP header: L3 fields stand, ports do not.
        let f = tcp4([1, 1, 1, 1], [2, 2, 2, 2], 1, 2, 3, &[]);
        let mut short = f[..14 + 20 + 10].to_vec();
        short[16..18].copy_from_slice(&30u16.to_be_bytes());
        let (k, l) = extract(&short, 1);
        assert_eq!((k.nw_src(), k.tp_src(), l.l4, l.l4_ok), (0x0101_0101, 0, 34, false));
        // A runt: nothing but in_port.
        let (k, _) = extract(&[0xff; 13], 3);
        assert_eq!(k.dl_type(), 0);
        assert_eq!(k.in_port(), 3);
    }

    #[test]
    fn reads_802_3_llc_snap_and_arp() {
        let mut f = vec![0xff; 12];
        f.extend_from_slice(&[0x00, 0x30, 0xaa, 0xaa, 0x03, 0, 0, 0, 0x08, 0x06]);
        f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
        f.extend_from_slice(&[2, 0, 0, 0, 0, 9, 10, 0, 0, 9, 2, 0, 0, 0, 0, 7, 10, 0, 0, 7]);
        let (k, _) = extract(&f, 1);
        assert_eq!((k.dl_type(), k.nw_proto(), k.nw_src(), k.nw_dst()), (0x0806, 2, 0x0a00_0009, 0x0a00_0007));
        assert_eq!((k.arp_sha(), k.arp_tha()), ([2, 0, 0, 0, 0, 9], [2, 0, 0, 0, 0, 7]));
        // 802.3 without SNAP.
        let mut f = vec![0xff; 12];
        f.extend_from_slice(&[0x00, 0x30, 0x42, 0x42, 0x03, 0, 0, 0, 0, 0]);
        assert_eq!(extract(&f, 1).0.dl_type(), eth_type::NONE);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn never_panics_and_stays_in_bounds(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let (_, l) = extract(&bytes, 1);
            for off in [l.l3, l.l4, l.end] {
                prop_assert!(off == NONE || usize::from(off) <= bytes.len());
            }
        }

        #[test]
        fn survives_any_cut_or_corruption_of_a_real_packet(
            kind in 0u8..4, cut in any::<prop::sample::Index>(), flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        ) {
            let mut f = match kind {
                0 => tcp4([10, 0, 0, 1], [10, 0, 0, 2], 1, 2, 3, &[7; 20]),
                1 => build(|v| PacketBuilder::ethernet2([1; 6], [2; 6]).single_vlan(etherparse::VlanId::try_new(5).unwrap()).ipv4([1; 4], [2; 4], 1).udp(1, 2).write(v, &[0; 30]).unwrap()),
                2 => build(|v| PacketBuilder::ethernet2([1; 6], [2; 6]).ipv6([1; 16], [2; 16], 1).icmpv6_echo_request(1, 2).write(v, &[0; 8]).unwrap()),
                _ => build(|v| PacketBuilder::ethernet2([1; 6], [2; 6]).ipv4([1; 4], [2; 4], 1).icmpv4_echo_request(1, 2).write(v, &[0; 8]).unwrap()),
            };
            for (at, b) in flips {
                let i = at.index(f.len());
                f[i] = b;
            }
            f.truncate(cut.index(f.len() + 1));
            let (_, l) = extract(&f, 1);
            for off in [l.l3, l.l4, l.end] {
                prop_assert!(off == NONE || usize::from(off) <= f.len());
            }
        }

        #[test]
        fn agrees_with_etherparse_on_well_formed_frames(
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), sport in any::<u16>(), dport in any::<u16>(),
            ttl in any::<u8>(), len in 0usize..64,
        ) {
            let f = tcp4(src, dst, sport, dport, ttl, &vec![0xab; len]);
            let (k, _) = extract(&f, 1);
            let p = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
            let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else { panic!("ipv4") };
            prop_assert_eq!(k.nw_src(), u32::from_be_bytes(ip.header().source()));
            prop_assert_eq!(k.nw_dst(), u32::from_be_bytes(ip.header().destination()));
            prop_assert_eq!(k.nw_ttl(), ip.header().ttl());
            let Some(etherparse::TransportSlice::Tcp(t)) = p.transport else { panic!("tcp") };
            prop_assert_eq!((k.tp_src(), k.tp_dst()), (t.source_port(), t.destination_port()));
        }
    }
}
