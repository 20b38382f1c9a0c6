//! End-to-end OpenFlow pipeline behaviour on the real binary: header rewrites (with valid
//! checksums), VLAN push/pop, multiple tables, dec_ttl, copies taken before a rewrite, per-rule
//! counters and rule expiry.

mod common;

use common::{Switch, traffic};
use etherparse::{NetSlice, SlicedPacket, TransportSlice};

/// Every checksum in `frame` is right (IPv4 header, TCP/UDP over IPv4 or IPv6).
fn checksums_ok(frame: &[u8]) -> bool {
    let Ok(p) = SlicedPacket::from_ethernet(frame) else {
        return false;
    };
    match (&p.net, &p.transport) {
        (Some(NetSlice::Ipv4(ip)), t) => {
            let hdr = ip.header().to_header();
            let l3 = hdr.calc_header_checksum() == hdr.header_checksum;
            let l4 = match t {
                Some(TransportSlice::Udp(u)) => {
                    u.checksum() == 0 || u.to_header().calc_checksum_ipv4(&hdr, u.payload()).unwrap() == u.checksum()
                }
                Some(TransportSlice::Tcp(tcp)) => {
                    tcp.to_header().calc_checksum_ipv4(&hdr, tcp.payload()).unwrap() == tcp.checksum()
                }
                _ => true,
            };
            l3 && l4
        }
        (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Udp(u))) => {
            u.to_header().calc_checksum_ipv6(&ip.header().to_header(), u.payload()).unwrap() == u.checksum()
        }
        (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Tcp(t))) => {
            t.to_header().calc_checksum_ipv6(&ip.header().to_header(), t.payload()).unwrap() == t.checksum()
        }
        _ => true,
    }
}

#[test]
fn rewrites_headers_with_valid_checksums() {
    let input: Vec<Vec<u8>> = (0..40).map(|i| traffic::udp4(1, 2, 1000 + i, 20 + i as usize)).collect();
    let tcp: Vec<Vec<u8>> = (0..40).map(|i| traffic::tcp4(1, 2, 2000 + i, i as usize)).collect();
    let out = Switch::new()
        .port("p0", input.iter().chain(&tcp).cloned().collect())
        .port("p1", vec![])
        .rules(&[
            "priority=10,udp,in_port=p0,actions=mod_dl_dst:02:aa:aa:aa:aa:aa,mod_nw_dst:192.0.2.9,mod_tp_dst:9999,mod_nw_tos:184,output:p1",
            "priority=10,tcp,in_port=p0,actions=mod_nw_src:198.51.100.1,mod_tp_src:4444,dec_ttl,output:p1",
        ])
        .run();
    let got = out.output("p1");
    assert_eq!(got.len(), 80);
    for frame in got {
        assert!(checksums_ok(frame), "bad checksum in {frame:02x?}");
        let p = SlicedPacket::from_ethernet(frame).unwrap();
        let Some(NetSlice::Ipv4(ip)) = &p.net else { panic!() };
        match &p.transport {
            Some(TransportSlice::Udp(u)) => {
                assert_eq!(&frame[0..6], &[2, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa]);
                assert_eq!(ip.header().destination(), [192, 0, 2, 9]);
                assert_eq!(u.destination_port(), 9999);
                assert_eq!(ip.header().to_header().dscp.value(), 46);
            }
            Some(TransportSlice::Tcp(t)) => {
                assert_eq!(ip.header().source(), [198, 51, 100, 1]);
                assert_eq!(t.source_port(), 4444);
                assert_eq!(ip.header().ttl(), 63);
            }
            _ => panic!("unexpected packet"),
        }
    }
}

#[test]
fn vlan_push_then_pop_gives_back_the_original_frame() {
    let input = traffic::mixed(1, 60);
    let untagged: Vec<Vec<u8>> = input.iter().filter(|f| f[12..14] != [0x81, 0x00]).cloned().collect();
    let out = Switch::new()
        .port("p0", untagged.clone())
        .port("p1", vec![])
        .port("p2", vec![])
        .rules(&["in_port=p0,actions=mod_vlan_vid:42,mod_vlan_pcp:5,output:p1,strip_vlan,output:p2"])
        .run();
    out.assert_output("p2", untagged.as_slice());
    let tagged: Vec<Vec<u8>> =
        untagged.iter().map(|f| [&f[..12], &[0x81, 0x00, 0xa0, 42][..], &f[12..]].concat()).collect();
    out.assert_output("p1", &tagged);
}

#[test]
fn an_output_before_a_rewrite_sees_the_packet_unchanged() {
    let input: Vec<Vec<u8>> = (0..50).map(|i| traffic::udp4(1, 2, i, 10)).collect();
    let out = Switch::new()
        .port("p0", input.clone())
        .port("p1", vec![])
        .port("p2", vec![])
        .port("p3", vec![])
        .rules(&["in_port=p0,actions=output:p1,mod_nw_dst:203.0.113.5,output:p2,output:p3"])
        .run();
    out.assert_output("p1", input.as_slice());
    out.assert_output("p2", out.output("p3"));
    assert!(out.output("p2").iter().all(|f| f[30..34] == [203, 0, 113, 5] && checksums_ok(f)));
}

#[test]
fn tables_resubmit_and_goto_chain_like_openflow() {
    let input: Vec<Vec<u8>> = (0..30).map(|i| traffic::udp4(1, 2, 5008 + i, 0)).collect();
    let out = Switch::new()
        .port("p0", input.clone())
        .port("p1", vec![])
        .port("p2", vec![])
        .port("p3", vec![])
        .rules(&[
            "table=0,in_port=p0,actions=resubmit(,1),goto_table:2",
            "table=1,udp,actions=output:p1",
            "table=2,udp,tp_src=5008/0xfff0,actions=output:p2",
            "table=2,priority=1,actions=output:p3",
        ])
        .run();
    out.assert_output("p1", input.as_slice());
    out.assert_output("p2", &input[..16]);
    out.assert_output("p3", &input[16..]);
}

#[test]
fn dec_ttl_drops_expiring_packets_and_counts_them() {
    let input: Vec<Vec<u8>> = (0..20)
        .map(|i| {
            let mut f = traffic::udp4(1, 2, i, 10);
            f[22] = (i % 3) as u8; // TTL 0, 1, 2: only 2 survives
            let hdr = etherparse::Ipv4HeaderSlice::from_slice(&f[14..]).unwrap().to_header();
            f[24..26].copy_from_slice(&hdr.calc_header_checksum().to_be_bytes());
            f
        })
        .collect();
    let out = Switch::new()
        .port("p0", input.clone())
        .port("p1", vec![])
        .rules(&["in_port=p0,actions=dec_ttl,output:p1"])
        .run();
    let survivors: Vec<_> = input.iter().filter(|f| f[22] == 2).collect();
    assert_eq!(out.output("p1").len(), survivors.len());
    assert!(out.output("p1").iter().all(|f| f[22] == 1 && checksums_ok(f)));
    assert_eq!(out.drops("ttl_expired"), (input.len() - survivors.len()) as u64);
}

#[test]
fn flood_and_in_port_reach_the_right_ports() {
    let input = traffic::mixed(1, 30);
    let out = Switch::new()
        .port("p0", input.clone())
        .port("p1", vec![])
        .port("p2", vec![])
        .rules(&["in_port=p0,actions=flood,in_port"])
        .run();
    out.assert_output("p0", input.as_slice());
    out.assert_output("p1", input.as_slice());
    out.assert_output("p2", input.as_slice());
}

#[test]
fn rule_counters_count_packets_and_bytes() {
    let input = traffic::mixed(1, 48);
    let tcp = input.iter().filter(|f| f.len() > 23 && f[12..14] == [8, 0] && f[23] == 6).count() as u64;
    let out = Switch::new()
        .port("p0", input.clone())
        .port("p1", vec![])
        .rules(&["priority=5,tcp,actions=output:p1", "priority=1,actions=drop"])
        .run();
    let flows = out.flows();
    assert_eq!(flows[0], ("priority=5,tcp actions=output:p1".to_string(), tcp));
    assert_eq!(flows[1], ("priority=1 actions=drop".to_string(), input.len() as u64 - tcp));
    let bytes: u64 = out.stats["flows"].as_array().unwrap().iter().map(|f| f["bytes"].as_u64().unwrap()).sum();
    assert_eq!(bytes, input.iter().map(|f| f.len() as u64).sum::<u64>());
}

/// A rule with a hard timeout expires while traffic runs: afterwards the lower-priority rule takes
/// the packets, and the expired rule is gone from the table at exit. (The timeout runs from when
/// the rule is added, before the ports start: 3 s leaves room for a slow start on a busy machine.)
#[test]
fn hard_timeout_expires_the_rule() {
    let sw = Switch::new();
    common::write_pcap(&sw.dir().join("loop.pcap"), &traffic::mixed(1, 8));
    let out = sw
        .raw_port("src", "net_pcap0,rx_pcap={dir}/loop.pcap,infinite_rx=1")
        .raw_port("early", "net_null0,no-rx=1")
        .raw_port("late", "net_null1,no-rx=1")
        .rules(&[
            "priority=10,hard_timeout=3,in_port=src,actions=output:early",
            "priority=1,in_port=src,actions=output:late",
        ])
        .run_for(5.0);
    assert!(out.port_stat("early", "tx_packets") > 0, "{}", out.log);
    assert!(out.port_stat("late", "tx_packets") > 0, "rule never expired\n{}", out.log);
    let rules: Vec<String> = out.flows().into_iter().map(|(r, _)| r).collect();
    assert_eq!(rules, ["priority=1,in_port=src actions=output:late"]);
}

#[test]
fn the_oracle_traffic_mix_passes_through_unchanged_and_tagged() {
    let mix = traffic::oracle_mix(1, 96);
    assert!(mix.iter().enumerate().all(|(i, f)| traffic::tag_of(f) == Some(i as u16)));
    let out = Switch::new().port("p0", mix.clone()).port("p1", vec![]).rules(&["in_port=p0,actions=output:p1"]).run();
    out.assert_output("p1", mix.as_slice());
}
