//! Test frames, built with etherparse: a deterministic mix of protocols and sizes.

use etherparse::{ArpHardwareId, ArpOperation, ArpPacket, EtherType, PacketBuilder, VlanId};

/// A MAC address whose last bytes say who it is.
pub fn mac(host: u16) -> [u8; 6] {
    let [hi, lo] = host.to_be_bytes();
    [0x02, 0, 0, 0, hi, lo]
}

/// UDP over IPv4 from host `src` to host `dst`, with `payload` bytes.
pub fn udp4(src: u16, dst: u16, sport: u16, payload: usize) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(mac(src), mac(dst)).ipv4(ip4(src), ip4(dst), 64).udp(sport, 5001);
    build(b, payload)
}

/// TCP over IPv4.
pub fn tcp4(src: u16, dst: u16, sport: u16, payload: usize) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(mac(src), mac(dst)).ipv4(ip4(src), ip4(dst), 64).tcp(sport, 80, 1000, 4096).syn();
    build(b, payload)
}

/// UDP over IPv6.
pub fn udp6(src: u16, dst: u16, sport: u16, payload: usize) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(mac(src), mac(dst)).ipv6(ip6(src), ip6(dst), 64).udp(sport, 53);
    build(b, payload)
}

/// ICMP echo request over IPv4.
pub fn ping4(src: u16, dst: u16, seq: u16) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(mac(src), mac(dst)).ipv4(ip4(src), ip4(dst), 64).icmpv4_echo_request(7, seq);
    build(b, 56)
}

/// UDP over IPv4 in an 802.1Q tag.
pub fn vlan_udp4(vid: u16, src: u16, dst: u16, payload: usize) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(mac(src), mac(dst))
        .single_vlan(VlanId::try_new(vid).unwrap())
        .ipv4(ip4(src), ip4(dst), 64)
        .udp(4000, 4001);
    build(b, payload)
}

/// A broadcast ARP request from `src` for `dst`.
pub fn arp_request(src: u16, dst: u16) -> Vec<u8> {
    let arp = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        ArpOperation::REQUEST,
        &mac(src),
        &ip4(src),
        &[0; 6],
        &ip4(dst),
    )
    .unwrap();
    let b = PacketBuilder::ethernet2(mac(src), [0xff; 6]).arp(arp);
    let mut out = Vec::with_capacity(b.size());
    b.write(&mut out).unwrap();
    pad(out)
}

/// `n` frames of mixed kinds and sizes (60 to 1514 bytes), all different, from host `src`.
pub fn mixed(src: u16, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let (dst, sport, size) = (100 + (i % 7) as u16, 1000 + i as u16, [0, 18, 100, 700, 1472][i % 5]);
            match i % 6 {
                0 => udp4(src, dst, sport, size),
                1 => tcp4(src, dst, sport, size),
                2 => udp6(src, dst, sport, size.min(1400)),
                3 => ping4(src, dst, i as u16),
                4 => vlan_udp4(10 + (i % 3) as u16, src, dst, size.min(1400)),
                _ => arp_request(src, dst),
            }
        })
        .collect()
}

fn ip4(host: u16) -> [u8; 4] {
    let [hi, lo] = host.to_be_bytes();
    [10, 0, hi, lo]
}

fn ip6(host: u16) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0] = 0xfd;
    a[14..].copy_from_slice(&host.to_be_bytes());
    a
}

fn build<B: BuildStep>(b: B, payload: usize) -> Vec<u8> {
    let data: Vec<u8> = (0..payload).map(|i| i as u8).collect();
    pad(b.finish(&data))
}

/// Pads to the 60-byte Ethernet minimum, as a NIC would.
fn pad(mut frame: Vec<u8>) -> Vec<u8> {
    if frame.len() < 60 {
        frame.resize(60, 0);
    }
    frame
}

/// The last step of an etherparse builder, whatever its transport.
pub trait BuildStep {
    /// Serialises with `payload`.
    fn finish(self, payload: &[u8]) -> Vec<u8>;
}

macro_rules! build_step {
    ($($t:ty),*) => {$(
        impl BuildStep for etherparse::PacketBuilderStep<$t> {
            fn finish(self, payload: &[u8]) -> Vec<u8> {
                let mut out = Vec::with_capacity(self.size(payload.len()));
                self.write(&mut out, payload).unwrap();
                out
            }
        }
    )*};
}
build_step!(etherparse::UdpHeader, etherparse::TcpHeader, etherparse::Icmpv4Header, etherparse::Icmpv6Header);

/// Appends a 4-byte trailer carrying `id` (after any IP total length, so parsers ignore it as
/// Ethernet padding): outputs can be traced back to their input even after header rewrites.
pub fn tag(mut frame: Vec<u8>, id: u16) -> Vec<u8> {
    frame.extend_from_slice(&[0xfe, 0xed]);
    frame.extend_from_slice(&id.to_be_bytes());
    frame
}

/// The id a frame was tagged with, if any.
pub fn tag_of(frame: &[u8]) -> Option<u16> {
    let t = frame.get(frame.len().checked_sub(4)?..)?;
    (t[0..2] == [0xfe, 0xed]).then(|| u16::from_be_bytes([t[2], t[3]]))
}

fn with_ipv4_checksum(mut f: Vec<u8>, l3: usize) -> Vec<u8> {
    f[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
    let ihl = usize::from(f[l3] & 0x0f) * 4;
    let sum = f[l3..l3 + ihl].chunks(2).fold(0u32, |s, c| s + u32::from(u16::from_be_bytes([c[0], c[1]])));
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
    f[l3 + 10..l3 + 12].copy_from_slice(&sum.to_be_bytes());
    f
}

/// An SCTP packet over IPv4 (etherparse does not build SCTP; the header is 12 bytes plus a chunk).
pub fn sctp4(src: u16, dst: u16, sport: u16, dport: u16) -> Vec<u8> {
    let mut f = udp4(src, dst, sport, 12);
    let l3 = 14;
    f[l3 + 9] = 132;
    let l4 = l3 + 20;
    f[l4..l4 + 2].copy_from_slice(&sport.to_be_bytes());
    f[l4 + 2..l4 + 4].copy_from_slice(&dport.to_be_bytes());
    f[l4 + 4..l4 + 8].copy_from_slice(&[0, 0, 0, 1]); // verification tag
    f[l4 + 8..l4 + 12].copy_from_slice(&[0; 4]);
    let end = l3 + usize::from(u16::from_be_bytes([f[l3 + 2], f[l3 + 3]]));
    let crc = crc32c::crc32c(&f[l4..end]);
    f[l4 + 8..l4 + 12].copy_from_slice(&crc.to_le_bytes());
    with_ipv4_checksum(f, l3)
}

/// Every kind of frame the differential tests feed both switches: ARP, IPv4 and IPv6 with TCP,
/// UDP, SCTP, ICMP, VLAN tags (802.1Q and 802.1ad), fragments, IP options, TTL edge cases, and
/// malformed frames. `n` frames from host `src`, each tagged with its index.
pub fn oracle_mix(src: u16, n: usize) -> Vec<Vec<u8>> {
    oracle_mix_from(src, n, 0)
}

/// [`oracle_mix`], tagged from `first_id` on (so the inputs of several ports stay distinct).
pub fn oracle_mix_from(src: u16, n: usize, first_id: u16) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let dst = 100 + (i % 5) as u16;
            let port = 1000 + (i * 37 % 5000) as u16;
            let size = [0, 6, 40, 200][i % 4];
            let f = match i % 24 {
                0 => udp4(src, dst, port, size),
                1 => tcp4(src, dst, port, size),
                2 => udp6(src, dst, port, size),
                3 => ping4(src, dst, i as u16),
                4 => vlan_udp4(10 + (i % 3) as u16, src, dst, size),
                5 => arp_request(src, dst),
                6 => {
                    // TCP with other flags (FIN+ACK, RST, PSH+ACK+URG)
                    let mut f = tcp4(src, dst, port, size);
                    f[47] = [0x11, 0x04, 0x38][i / 24 % 3];
                    retcp4(f)
                }
                7 => {
                    // IPv4 fragments: first (MF), then a later one.
                    let mut f = udp4(src, dst, port, 64);
                    f[20..22].copy_from_slice(if i / 24 % 2 == 0 { &[0x20, 0x00] } else { &[0x00, 0x08] });
                    with_ipv4_checksum(f, 14)
                }
                8 => {
                    // TTL 0, 1, 2 and a TOS byte with DSCP and ECN bits.
                    let mut f = udp4(src, dst, port, size);
                    f[22] = (i / 24 % 3) as u8;
                    f[15] = [0xb8, 0x01, 0x2a, 0x03][i / 24 % 4];
                    with_ipv4_checksum(f, 14)
                }
                9 => sctp4(src, dst, port, 5000 + (i % 3) as u16),
                10 => tcp6(src, dst, port, size),
                11 => icmp6(src, dst, [128, 135, 1][i / 24 % 3], (i / 24 % 2) as u8),
                12 => {
                    // 802.1ad (QinQ outer tag) around an 802.1Q tag.
                    let inner = vlan_udp4(20, src, dst, size);
                    let mut f = inner[..12].to_vec();
                    f.extend_from_slice(&[0x88, 0xa8, 0x20, 0x07]);
                    f.extend_from_slice(&inner[12..]);
                    f
                }
                13 => {
                    // IPv4 with a 4-byte option (IHL 6).
                    let base = udp4(src, dst, port, size);
                    let mut f = base[..34].to_vec();
                    f.extend_from_slice(&[0x01, 0x01, 0x01, 0x00]);
                    f.extend_from_slice(&base[34..]);
                    f[14] = 0x46;
                    let len = u16::from_be_bytes([f[16], f[17]]) + 4;
                    f[16..18].copy_from_slice(&len.to_be_bytes());
                    with_ipv4_checksum(f, 14)
                }
                14 => {
                    // Malformed: IHL below 5.
                    let mut f = udp4(src, dst, port, size);
                    f[14] = 0x43;
                    f
                }
                15 => {
                    // Malformed: total length beyond the frame.
                    let mut f = tcp4(src, dst, port, size);
                    f[16..18].copy_from_slice(&1500u16.to_be_bytes());
                    f
                }
                16 => {
                    // Malformed: TCP data offset larger than the segment.
                    let mut f = tcp4(src, dst, port, 0);
                    f[46] = 0xf0;
                    f
                }
                17 => {
                    // 802.3 frame with LLC (no SNAP), then one with SNAP carrying IPv4.
                    let mut f = vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
                    f.extend_from_slice(&mac(src));
                    if i / 24 % 2 == 0 {
                        f.extend_from_slice(&[0x00, 0x26, 0x42, 0x42, 0x03]);
                    } else {
                        let ip = udp4(src, dst, port, 8);
                        f.extend_from_slice(&((ip.len() - 14 + 8) as u16).to_be_bytes());
                        f.extend_from_slice(&[0xaa, 0xaa, 0x03, 0, 0, 0, 0x08, 0x00]);
                        f.extend_from_slice(&ip[14..]);
                    }
                    f
                }
                18 => {
                    // Unknown ethertype (LLDP).
                    let mut f = mac(dst).to_vec();
                    f.extend_from_slice(&mac(src));
                    f.extend_from_slice(&[0x88, 0xcc]);
                    f.extend_from_slice(&[0x02; 30]);
                    f
                }
                19 => {
                    // ARP reply with distinct sender/target hardware addresses.
                    let arp = ArpPacket::new(
                        ArpHardwareId::ETHERNET,
                        EtherType::IPV4,
                        ArpOperation::REPLY,
                        &mac(src),
                        &ip4(src),
                        &mac(dst),
                        &ip4(dst),
                    )
                    .unwrap();
                    let b = PacketBuilder::ethernet2(mac(src), mac(dst)).arp(arp);
                    let mut out = Vec::new();
                    b.write(&mut out).unwrap();
                    out
                }
                20 => {
                    // Multicast and broadcast destinations.
                    let mut f = udp4(src, dst, port, size);
                    f[0..6].copy_from_slice(if i / 24 % 2 == 0 { &[0x01, 0x00, 0x5e, 0, 0, 1] } else { &[0xff; 6] });
                    f
                }
                21 => vlan_udp4(0, src, dst, size), // priority-tagged (VID 0)
                22 => {
                    // IPv6 with a hop-by-hop header, then a fragment header.
                    let base = udp6(src, dst, port, 16);
                    let mut f = base[..54].to_vec();
                    f[20] = 0; // next header: hop-by-hop
                    let frag_later = i / 24 % 2 == 1;
                    f.extend_from_slice(&[44, 0, 1, 4, 0, 0, 0, 0]); // hop-by-hop -> fragment
                    f.extend_from_slice(&[17, 0, 0, if frag_later { 0x10 } else { 0x01 }, 0, 0, 0, 7]);
                    f.extend_from_slice(&base[54..]);
                    let plen = (f.len() - 54) as u16;
                    f[18..20].copy_from_slice(&plen.to_be_bytes());
                    f
                }
                _ => vec![0x33; 12 + i % 4], // runt: shorter than an Ethernet header
            };
            tag(pad(f), first_id + i as u16)
        })
        .collect()
}

/// TCP over IPv6.
pub fn tcp6(src: u16, dst: u16, sport: u16, payload: usize) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(mac(src), mac(dst)).ipv6(ip6(src), ip6(dst), 64).tcp(sport, 443, 1, 1000).ack(9);
    build(b, payload)
}

/// ICMPv6 of a given type and code.
pub fn icmp6(src: u16, dst: u16, icmp_type: u8, code: u8) -> Vec<u8> {
    let t = etherparse::Icmpv6Type::Unknown { type_u8: icmp_type, code_u8: code, bytes5to8: [0; 4] };
    let b = PacketBuilder::ethernet2(mac(src), mac(dst)).ipv6(ip6(src), ip6(dst), 255).icmpv6(t);
    build(b, 8)
}

/// Recomputes a TCP-over-IPv4 frame's TCP checksum after its header bytes changed.
fn retcp4(mut f: Vec<u8>) -> Vec<u8> {
    let ip = etherparse::Ipv4HeaderSlice::from_slice(&f[14..]).unwrap().to_header();
    let tcp = etherparse::TcpHeaderSlice::from_slice(&f[34..]).unwrap().to_header();
    let payload_start = 34 + tcp.header_len();
    let end = 14 + usize::from(ip.total_len);
    let c = tcp.calc_checksum_ipv4(&ip, &f[payload_start..end]).unwrap();
    f[50..52].copy_from_slice(&c.to_be_bytes());
    f
}
