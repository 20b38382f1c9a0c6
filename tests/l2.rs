//! The NORMAL action end to end on `net_pcap` ports: VLAN modes, flooding, reserved and group
//! addresses, and a thousand learned MACs forwarded from the fast path alone. (Scenarios whose
//! outcome depends on the order of frames across ports — learning then unicast, moves, aging —
//! run on tap ports in `l2_live.rs` and against Open vSwitch in `normal_diff.rs`.)

mod common;

use common::{Switch, traffic};

const BROADCAST: [u8; 6] = [0xff; 6];

/// `frame` with its destination MAC replaced.
fn to(mut frame: Vec<u8>, dst: [u8; 6]) -> Vec<u8> {
    frame[..6].copy_from_slice(&dst);
    frame
}

/// `frame` (untagged) with an 802.1Q tag carrying `tci` inserted after the addresses.
fn tagged(frame: &[u8], tci: u16) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    out.extend_from_slice(&[0x81, 0x00]);
    out.extend_from_slice(&tci.to_be_bytes());
    out.extend_from_slice(&frame[12..]);
    out
}

/// A broadcast UDP frame from host `src`, told apart from others by `n`.
fn bcast(src: u16, n: u16) -> Vec<u8> {
    to(traffic::udp4(src, 999, 2000 + n, 10), BROADCAST)
}

/// Ports in every VLAN mode; each sends broadcasts untagged, priority-tagged, and tagged with
/// VLANs 10, 20 and 30. What comes out of each port follows OVS's rules: an access port carries
/// only its VLAN, untagged; a trunk carries the VLANs it lists, tagged; a native port also carries
/// its native VLAN as untagged frames (native-untagged) or tagged ones (native-tagged); frames are
/// never sent back out of their input port; a priority tag's PCP is kept on tagged output.
#[test]
fn vlan_modes_admit_tag_and_untag_as_open_vswitch() {
    let ports = [
        ("a10", "vlan_mode = \"access\"\ntag = 10\n"),
        ("a20", "tag = 20\n"), // access, implied by the tag
        ("trunk", "trunks = [10, 20]\n"),
        ("nu10", "vlan_mode = \"native-untagged\"\ntag = 10\ntrunks = [20]\n"),
        ("nt20", "vlan_mode = \"native-tagged\"\ntag = 20\ntrunks = [10]\n"),
    ];
    // (input port, frame) in; a distinct source host per frame so nothing learned matters.
    let mut inputs: Vec<Vec<Vec<u8>>> = vec![Vec::new(); ports.len()];
    let mut host = 1;
    for (i, input) in inputs.iter_mut().enumerate() {
        for tci in [None, Some(5 << 13), Some(10), Some(20), Some(0x6000 | 20), Some(30)] {
            let frame = bcast(host, i as u16);
            input.push(tci.map_or_else(|| frame.clone(), |t| tagged(&frame, t)));
            host += 1;
        }
    }
    let mut sw = Switch::new();
    for ((name, keys), input) in ports.iter().zip(&inputs) {
        sw = sw.port_with(name, input.clone(), keys);
    }
    let out = sw.run();

    // Expected, by hand: per input port and TCI, the VLAN it joins (None: dropped), then per
    // output port the VID it carries there (0: untagged; None: the port is not in the VLAN).
    let joins = |port: &str, tci: Option<u16>| -> Option<u16> {
        let vid = tci.map_or(0, |t| t & 0xfff);
        match (port, vid) {
            ("a10", 0) => Some(10),
            ("a20", 0) => Some(20),
            ("a10" | "a20", _) => None,
            ("trunk", 10 | 20) => Some(vid),
            ("trunk", _) => None,
            ("nu10", 0) => Some(10),
            ("nu10", 10 | 20) => Some(vid),
            ("nt20", 0) => Some(20),
            ("nt20", 10 | 20) => Some(vid),
            _ => None,
        }
    };
    let carries = |port: &str, vlan: u16| -> Option<u16> {
        match (port, vlan) {
            ("a10", 10) | ("a20", 20) => Some(0),
            ("trunk", 10 | 20) => Some(vlan),
            ("nu10", 10) => Some(0),
            ("nu10", 20) => Some(20),
            ("nt20", 10 | 20) => Some(vlan),
            _ => None,
        }
    };
    let mut want: Vec<Vec<Vec<u8>>> = vec![Vec::new(); ports.len()];
    let mut dropped = 0;
    for (i, (in_name, _)) in ports.iter().enumerate() {
        for (k, tci) in [None, Some(5 << 13), Some(10), Some(20), Some(0x6000 | 20), Some(30)].into_iter().enumerate() {
            let untagged = bcast(1 + (i * 6 + k) as u16, i as u16);
            let Some(vlan) = joins(in_name, tci) else {
                dropped += 1;
                continue;
            };
            let pcp = tci.map_or(0, |t| t & 0xe000);
            for (j, (out_name, _)) in ports.iter().enumerate() {
                match carries(out_name, vlan) {
                    Some(_) if j == i => {}
                    Some(0) => want[j].push(untagged.clone()),
                    Some(vid) => want[j].push(tagged(&untagged, pcp | vid)),
                    None => {}
                }
            }
        }
    }
    for (j, (name, _)) in ports.iter().enumerate() {
        out.assert_output(name, &want[j]);
    }
    assert_eq!(out.drops("vlan_not_allowed"), dropped);
}

/// Group destinations are flooded (never learned as sources); reserved ones (STP, LLDP...) are
/// dropped; a frame to its own source, learned on its input port, is dropped.
#[test]
fn reserved_and_group_addresses() {
    let multicast_src = [0x03, 0, 0, 0, 0, 7];
    let input = vec![
        traffic::udp4(1, 2, 1, 10),                                     // unknown: flooded
        to(traffic::udp4(1, 2, 2, 10), [0x01, 0x80, 0xc2, 0, 0, 0]),    // STP: dropped
        to(traffic::udp4(1, 2, 3, 10), [0x01, 0x80, 0xc2, 0, 0, 0x0e]), // LLDP: dropped
        to(traffic::udp4(1, 2, 4, 10), [0x01, 0x00, 0x5e, 0, 0, 1]),    // IPv4 multicast: flooded
        {
            let mut f = traffic::udp4(1, 2, 5, 10); // from a group address: flooded, not learned
            f[6..12].copy_from_slice(&multicast_src);
            f
        },
        to(traffic::udp4(1, 2, 6, 10), multicast_src), // so this is flooded too
        traffic::udp4(1, 1, 7, 10),                    // to itself, learned on p0: dropped
    ];
    let flooded: Vec<Vec<u8>> = [0, 3, 4, 5].iter().map(|&i| input[i].clone()).collect();
    let out = Switch::new().port("p0", input).port("p1", vec![]).port("p2", vec![]).run();
    out.assert_output("p1", &flooded);
    out.assert_output("p2", &flooded);
    assert_eq!(out.drops("reserved_mac"), 2);
    assert_eq!(out.drops("learned_on_in_port"), 1);
    let entries = out.stats["mac_table"]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "only host 1: {entries:?}");
}

/// A thousand hosts, half behind p0 and half behind p1, talk in pairs across the switch without
/// end. Once every MAC is learned, all of it is unicast from the fast path: no upcall, nothing
/// to the other ports.
#[test]
fn a_thousand_learned_macs_are_forwarded_from_the_fast_path_alone() {
    let sw = Switch::new();
    let left: Vec<Vec<u8>> = (1..=500).map(|h| traffic::udp4(h, h + 500, 7, 18)).collect();
    let right: Vec<Vec<u8>> = (1..=500).map(|h| traffic::udp4(h + 500, h, 7, 18)).collect();
    common::write_pcap(&sw.dir().join("left.pcap"), &left);
    common::write_pcap(&sw.dir().join("right.pcap"), &right);
    let out = sw
        .raw_port("p0", "net_pcap0,rx_pcap={dir}/left.pcap,infinite_rx=1,tx_pcap=/dev/null")
        .raw_port("p1", "net_pcap1,rx_pcap={dir}/right.pcap,infinite_rx=1,tx_pcap=/dev/null")
        .raw_port("p2", "net_null0,no-rx=1")
        .raw_port("p3", "net_null1,no-rx=1")
        .run_with_window(5.0, 3.0);
    let log = &out.log;
    let window = &out.stats["window"];
    assert_eq!(out.window_total("upcalls"), 0, "upcalls in steady state\n{log}");
    assert_eq!(window["control"]["rx_packets"], 0, "{log}");
    let port = |i: usize, key: &str| out.window_port(i, key);
    assert!(port(0, "rx_packets") > 10_000 && port(1, "rx_packets") > 10_000, "too little traffic\n{log}");
    // Each side's frames go to the other side only. At each edge of the window a port may have
    // received packets it has not yet sent: a burst being processed and a transmit buffer not
    // yet flushed (up to 64 + 64; seen: 96 in all on a loaded machine).
    for (rx, tx) in [(0, 1), (1, 0)] {
        assert!(port(rx, "rx_packets").abs_diff(port(tx, "tx_packets")) <= 256, "{}\n{log}", window["ports"]);
    }
    assert_eq!((port(2, "tx_packets"), port(3, "tx_packets")), (0, 0), "flooded in steady state\n{log}");
    let entries = out.stats["mac_table"]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1000);
    let on = |p: &str| entries.iter().filter(|e| e["port"] == p).count();
    assert_eq!((on("p0"), on("p1")), (500, 500));
    assert_eq!(out.stats["mac_table"]["counters"]["moved"], 0);
}
