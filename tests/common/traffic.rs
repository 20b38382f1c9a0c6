//! Test frames, built with etherparse: a deterministic mix of protocols and sizes.

use etherparse::{ArpHardwareId, ArpOperation, ArpPacket, EtherType, PacketBuilder, VlanId};

/// A MAC address whose last bytes say who it is.
pub fn mac(host: u16) -> [u8; 6] {
    let [hi, lo] = host.to_be_bytes();
    [0x02, 0, 0, 0, hi, lo]
}

/// UDP over IPv4 from host `src` to host `dst`, with `payload` bytes.
pub fn udp4(src: u16, dst: u16, sport: u16, payload: usize) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(mac(src), mac(dst))
        .ipv4(ip4(src), ip4(dst), 64)
        .udp(sport, 5001);
    build(b, payload)
}

/// TCP over IPv4.
pub fn tcp4(src: u16, dst: u16, sport: u16, payload: usize) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(mac(src), mac(dst))
        .ipv4(ip4(src), ip4(dst), 64)
        .tcp(sport, 80, 1000, 4096)
        .syn();
    build(b, payload)
}

/// UDP over IPv6.
pub fn udp6(src: u16, dst: u16, sport: u16, payload: usize) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(mac(src), mac(dst))
        .ipv6(ip6(src), ip6(dst), 64)
        .udp(sport, 53);
    build(b, payload)
}

/// ICMP echo request over IPv4.
pub fn ping4(src: u16, dst: u16, seq: u16) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(mac(src), mac(dst))
        .ipv4(ip4(src), ip4(dst), 64)
        .icmpv4_echo_request(7, seq);
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
            let (dst, sport, size) = (
                100 + (i % 7) as u16,
                1000 + i as u16,
                [0, 18, 100, 700, 1472][i % 5],
            );
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
build_step!(
    etherparse::UdpHeader,
    etherparse::TcpHeader,
    etherparse::Icmpv4Header
);
