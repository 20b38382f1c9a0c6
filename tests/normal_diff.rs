//! Differential tests of the NORMAL action (MAC learning, flooding, VLANs) against Open vSwitch:
//! each scenario (frames injected into chosen ports in a chosen order, see `common/live.rs`) runs
//! through OVS-DPDK and through ferrovs on `net_tap` ports, and every port must transmit the same
//! frames in the same order. Needs OVS (`scripts/setup.sh --with-ovs`); skipped without it.
//! `LIVE_DUMP=1 cargo test --test normal_diff -- --nocapture` prints every port's frames.

mod common;

use common::traffic::{self, arp_request, mac, udp4, vlan_udp4};
use std::time::Instant;

use common::live::{self, Captures, PortSpec, Scenario};

/// Runs `sc` through OVS then ferrovs; `None` (after saying so) if OVS is not installed.
fn run_both(sc: &Scenario) -> Option<(Captures, Captures)> {
    if !common::ovs::ovs_installed() {
        eprintln!("skipping: Open vSwitch with DPDK is not installed (scripts/setup.sh --with-ovs)");
        return None;
    }
    let started = Instant::now();
    let want = live::run_ovs(sc).unwrap_or_else(|e| panic!("OVS run failed: {e}"));
    let ovs_time = started.elapsed();
    let got = live::run_ferrovs(sc).unwrap_or_else(|e| panic!("ferrovs run failed: {e}"));
    let foreign = |c: &Captures| c.foreign.values().map(Vec::len).sum::<usize>();
    let slowest = |c: &Captures| c.slowest().map_or(0.0, |(d, _)| d.as_secs_f64() * 1e3);
    eprintln!(
        "OVS run {ovs_time:.1?}, ferrovs run {:.1?}; slowest frame through OVS {:.1} ms, ferrovs {:.1} ms; \
         other frames left out of the captures: OVS {}, ferrovs {}",
        started.elapsed() - ovs_time,
        slowest(&want),
        slowest(&got),
        foreign(&want),
        foreign(&got)
    );
    if std::env::var_os("LIVE_DUMP").is_some() {
        eprintln!("OVS sent:\n{}ferrovs sent:\n{}", want.dump(), got.dump());
    }
    Some((want, got))
}

/// Runs `sc` through both switches and fails with a readable report on any difference.
fn differential(sc: &Scenario) {
    let Some((want, got)) = run_both(sc) else { return };
    assert_same(sc, &want, &got);
}

/// Every port sent the same frames in the same order through both switches; ferrovs leaked no
/// packet buffer.
fn assert_same(sc: &Scenario, want: &Captures, got: &Captures) {
    if let Some(report) = live::diff(sc, ("OVS", want), ("ferrovs", got)) {
        panic!("{report}");
    }
    let in_use = &got.stats["mempool"]["in_use"];
    assert_eq!(in_use, 0, "ferrovs leaked mbufs\n{}", got.log_tail(40));
}

/// Numbers frames (a trailer, see `traffic::tag`) so a report names the input each output is.
struct Ids(u16);

impl Ids {
    fn new() -> Self {
        Self(1)
    }

    fn id(&mut self, frame: Vec<u8>) -> Vec<u8> {
        self.0 += 1;
        traffic::tag(frame, self.0 - 1)
    }

    fn all(&mut self, frames: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        frames.into_iter().map(|f| self.id(f)).collect()
    }
}

/// `frame` (802.1Q-tagged) with priority `pcp`.
fn with_pcp(mut frame: Vec<u8>, pcp: u8) -> Vec<u8> {
    frame[14] = (frame[14] & 0x1f) | (pcp << 5);
    frame
}

/// An 802.1ad tag (`outer_tci`) around a VLAN-20 frame.
fn qinq(src: u16, dst: u16, outer_tci: u16) -> Vec<u8> {
    let inner = vlan_udp4(20, src, dst, 30);
    let mut f = inner[..12].to_vec();
    f.extend_from_slice(&[0x88, 0xa8]);
    f.extend_from_slice(&outer_tci.to_be_bytes());
    f.extend_from_slice(&inner[12..]);
    f
}

/// `frame` with destination `dst`.
fn to(mut frame: Vec<u8>, dst: [u8; 6]) -> Vec<u8> {
    frame[..6].copy_from_slice(&dst);
    frame
}

/// `frame` with source `src`.
fn from(mut frame: Vec<u8>, src: [u8; 6]) -> Vec<u8> {
    frame[6..12].copy_from_slice(&src);
    frame
}

/// Explicit rules only (no NORMAL): proves the harness itself, byte for byte (VLAN tags the kernel
/// strips on receive included), against OVS and against what the rules require.
#[test]
fn harness_self_check_with_explicit_rules() {
    let mut ids = Ids::new();
    let from_p0 = ids.all(vec![
        udp4(1, 2, 1000, 20),
        vlan_udp4(10, 1, 2, 20),
        with_pcp(vlan_udp4(0, 1, 2, 20), 5), // priority-tagged
        with_pcp(vlan_udp4(4094, 1, 2, 100), 7),
        qinq(1, 2, 0x2007),
        arp_request(1, 2),
        udp4(1, 2, 1001, 1468), // a full 1514-byte frame with its id
    ]);
    let from_p1 = ids.all(vec![udp4(2, 1, 2000, 0), vlan_udp4(20, 2, 1, 64), arp_request(2, 1)]);
    let from_p2 = ids.all(vec![udp4(3, 1, 3000, 0), vlan_udp4(10, 3, 1, 0)]);
    let sc = Scenario::new()
        .plain_ports(3)
        .rules(&["in_port=1,actions=output:2", "in_port=2,actions=flood", "priority=0,actions=drop"])
        .send(0, from_p0[..3].to_vec())
        .send(1, from_p1[..2].to_vec())
        .send(2, from_p2.clone())
        .send(0, from_p0[3..].to_vec())
        .send(1, from_p1[2..].to_vec());
    let Some((want, got)) = run_both(&sc) else { return };
    // Both switches send exactly what the rules say, unchanged.
    for (name, run) in [("OVS", &want), ("ferrovs", &got)] {
        for (port, frames) in [("p0", &from_p1), ("p1", &from_p0), ("p2", &from_p1)] {
            let report = || {
                let list = |fs: &[Vec<u8>]| fs.iter().map(|f| live::describe(f)).collect::<Vec<_>>().join("\n    ");
                format!(
                    "{name}: port {port} sent\n    {}\nexpected\n    {}\n{}",
                    list(run.port(port)),
                    list(frames),
                    run.log_tail(30)
                )
            };
            assert!(run.port(port) == frames.as_slice(), "{}", report());
        }
    }
    assert_same(&sc, &want, &got);
}

const BROADCAST: [u8; 6] = [0xff; 6];

/// UDP from host `src` to MAC `dst`, untagged (`vid` `None`) or in an 802.1Q tag.
fn udp_to(vid: Option<u16>, src: u16, dst: [u8; 6], sport: u16) -> Vec<u8> {
    let f = match vid {
        None => udp4(src, 0, sport, 20),
        Some(vid) => vlan_udp4(vid, src, 0, 20),
    };
    to(f, dst)
}

/// NORMAL on untagged ports: flooding of broadcast, unknown unicast and multicast; unicast to
/// learned MACs; multicast source MACs not learned; reserved (802.1D) destinations dropped; a
/// frame for a MAC on its own input port dropped.
#[test]
fn normal_learning_and_flooding() {
    let mut ids = Ids::new();
    let mcast_src = [0x03, 0, 0, 0, 0, 0x07];
    let sc = Scenario::new()
        .plain_ports(4)
        // Host 1 on p0 asks for host 2: flood (and host 1 is learned on p0).
        .send1(0, ids.id(arp_request(1, 2)))
        // Unicast to a MAC nobody has: flood.
        .send1(0, ids.id(udp4(1, 9, 1000, 10)))
        // Host 2 on p2 answers host 1: to p0 only (and host 2 is learned on p2).
        .send1(2, ids.id(udp4(2, 1, 2000, 10)))
        // Host 1 to host 2: to p2 only.
        .send1(0, ids.id(udp4(1, 2, 1000, 10)))
        // A multicast destination: flood.
        .send1(0, ids.id(to(udp4(1, 2, 1001, 10), [0x01, 0x00, 0x5e, 0, 0, 1])))
        // A multicast source is not learned: frames to it are still flooded (from p1 and p3).
        .send1(1, ids.id(from(udp4(3, 1, 3000, 10), mcast_src)))
        .send1(3, ids.id(to(udp4(4, 0, 4000, 10), mcast_src)))
        .send1(2, ids.id(to(udp4(2, 0, 2001, 10), mcast_src)))
        // Reserved 802.1D destinations (STP, LLDP) are dropped.
        .send(
            0,
            ids.all(vec![
                to(udp4(1, 0, 1002, 10), [0x01, 0x80, 0xc2, 0, 0, 0]),
                to(udp4(1, 0, 1003, 10), [0x01, 0x80, 0xc2, 0, 0, 0x0e]),
            ]),
        )
        // A frame for its own source MAC, from where that MAC is: dropped.
        .send1(0, ids.id(udp4(1, 1, 1004, 10)))
        // A host nobody knows talks to learned ones: unicast.
        .send(3, ids.all(vec![udp4(5, 2, 5000, 10), udp4(5, 1, 5001, 10)]))
        // And they answer: unicast to p3.
        .send1(2, ids.id(udp4(2, 5, 2002, 10)))
        .send1(0, ids.id(udp4(1, 5, 1005, 10)));
    differential(&sc);
}

/// A MAC moves between ports and back; the same flow follows it each time.
#[test]
fn normal_mac_move() {
    let mut ids = Ids::new();
    let sc = Scenario::new()
        .plain_ports(4)
        .send1(0, ids.id(arp_request(1, 2)))
        // p1 (host 2) to host 1: to p0.
        .send1(1, ids.id(udp4(2, 1, 2000, 10)))
        // Host 1 now talks from p3 (to host 2, on p1): it moves to p3.
        .send1(3, ids.id(udp4(1, 2, 1000, 10)))
        // The same flow as before to host 1: now to p3.
        .send1(1, ids.id(udp4(2, 1, 2000, 10)))
        // A broadcast from host 1 on p0 moves it back.
        .send1(0, ids.id(arp_request(1, 2)))
        .send1(1, ids.id(udp4(2, 1, 2000, 10)))
        // Back and forth quickly: each step's frame goes where host 1 was last seen.
        .send1(2, ids.id(udp4(1, 2, 1001, 10)))
        .send1(1, ids.id(udp4(2, 1, 2000, 10)))
        .send1(0, ids.id(udp4(1, 2, 1001, 10)))
        .send1(1, ids.id(udp4(2, 1, 2000, 10)));
    differential(&sc);
}

/// Every VLAN port mode, every kind of frame in from every port; broadcast, then unicast after
/// learning; one MAC learned in two VLANs on two ports.
#[test]
fn normal_vlans() {
    let mut ids = Ids::new();
    let mut sc = Scenario::new()
        .port(PortSpec::access("p0", 10))
        .port(PortSpec::access("p1", 20))
        .port(PortSpec::trunk("p2", &[]))
        .port(PortSpec::trunk("p3", &[10]))
        .port(PortSpec::native_untagged("p4", 10, &[20]))
        .port(PortSpec::native_tagged("p5", 20, &[10]));
    // Untagged, VLAN 10, 20, 30, priority-tagged (VID 0, PCP 5).
    let kind = |k: usize, src: u16, dst: [u8; 6], sport: u16| match k {
        0 => udp_to(None, src, dst, sport),
        1 => udp_to(Some(10), src, dst, sport),
        2 => udp_to(Some(20), src, dst, sport),
        3 => udp_to(Some(30), src, dst, sport),
        _ => with_pcp(udp_to(Some(0), src, dst, sport), 5),
    };
    // Broadcasts: host 100 + i on port i, in whatever VLAN each frame lands, is learned.
    for port in 0..6 {
        let frames = (0..5).map(|k| ids.id(kind(k, 100 + port as u16, BROADCAST, 1000 + k as u16))).collect();
        sc = sc.send(port, frames);
    }
    // Unicast to the hosts of the other ports: known in some VLANs, unknown (flood) in others.
    for port in 0..6 {
        let frames = (0..5)
            .map(|k| {
                let dst = 100 + ((port + 1 + k) % 6) as u16;
                ids.id(kind(k, 100 + port as u16, mac(dst), 2000 + k as u16))
            })
            .collect();
        sc = sc.send(port, frames);
    }
    // Host 7 in VLAN 10 on p0 and in VLAN 20 on p1.
    let h7 = mac(7);
    sc = sc
        .send1(0, ids.id(udp_to(None, 7, BROADCAST, 3000)))
        .send1(1, ids.id(udp_to(None, 7, BROADCAST, 3001)))
        .send(
            2,
            ids.all(vec![
                udp_to(Some(10), 102, h7, 3002),
                udp_to(Some(20), 102, h7, 3003),
                udp_to(None, 102, h7, 3004),
            ]),
        )
        .send1(3, ids.id(udp_to(Some(10), 103, h7, 3005)))
        .send(
            4,
            ids.all(vec![
                udp_to(None, 104, h7, 3006),
                udp_to(Some(20), 104, h7, 3007),
                udp_to(Some(10), 104, h7, 3008),
            ]),
        )
        .send(
            5,
            ids.all(vec![
                udp_to(None, 105, h7, 3009),
                udp_to(Some(10), 105, h7, 3010),
                udp_to(Some(20), 105, h7, 3011),
            ]),
        );
    differential(&sc);
}

/// A static MAC entry: traffic to it goes to its port without learning, and traffic from that MAC
/// elsewhere does not move it.
#[test]
fn normal_static_mac() {
    let mut ids = Ids::new();
    let sc = Scenario::new()
        .plain_ports(4)
        .static_mac(mac(5), 2, 0)
        // To host 5: p2 only, though host 5 never spoke.
        .send1(0, ids.id(udp4(1, 5, 1000, 10)))
        // Host 5 speaks from p3 (to host 1, learned on p0): no move.
        .send1(3, ids.id(udp4(5, 1, 5000, 10)))
        .send1(0, ids.id(udp4(1, 5, 1000, 10)))
        // A broadcast from host 5 on p1: flooded, still no move.
        .send1(1, ids.id(arp_request(5, 1)))
        .send1(0, ids.id(udp4(1, 5, 1000, 10)))
        // From p2 itself to host 5: dropped (its port is the input port).
        .send1(2, ids.id(udp4(3, 5, 3000, 10)));
    differential(&sc);
}

/// A full MAC table makes room by evicting from the port with the most entries its least
/// recently used one (OVS's fair eviction). OVS clamps `mac-table-size` to at least 10 (and
/// `mac-aging-time` to at least 15 s), so the table here holds 10: hosts 1-6 on p0, 7-8 on p1,
/// 9-10 on p2; host 11 evicts host 1, then host 20 (on p3) evicts host 2.
#[test]
fn normal_full_mac_table() {
    let mut ids = Ids::new();
    let mut sc = Scenario::new().plain_ports(4).mac_table_size(10).mac_aging_secs(300);
    for (port, hosts) in [(0, 1..=6), (1, 7..=8), (2, 9..=11)] {
        for host in hosts {
            sc = sc.send1(port, ids.id(arp_request(host, 99)));
        }
    }
    let to_hosts = [1, 2, 3, 7, 9, 11].map(|dst| udp4(20, dst, 2000 + dst, 10));
    sc = sc.send(3, ids.all(to_hosts.to_vec()));
    differential(&sc);
}
