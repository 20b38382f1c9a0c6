//! Differential tests against Open vSwitch: the same rules and the same traffic through OVS-DPDK
//! (the reference) and through ferrovs; every port must transmit the same packets (compared as
//! multisets, byte for byte). Needs OVS: `scripts/setup.sh --with-ovs` (what CI runs).
//!
//! The traffic is `traffic::oracle_mix` from two ports: every protocol and header the pipeline
//! parses, VLAN tags, fragments, IP options, TTL edge cases and malformed frames. Each frame carries
//! an id in a trailer, so a mismatch names the input it came from.

mod common;

use std::collections::BTreeMap;

use common::{Switch, ovs, traffic};
use ferrovs_config::flow::{FlowRule, OfPort, PortMap, flow_match};
use ferrovs_switch::packet::extract;

const PORTS: [&str; 4] = ["p0", "p1", "p2", "p3"];

struct Names;
impl PortMap for Names {
    fn by_name(&self, name: &str) -> Option<OfPort> {
        PORTS.iter().position(|p| *p == name).map(|i| i as OfPort + 1)
    }
    fn has_number(&self, n: OfPort) -> bool {
        (1..=4).contains(&n)
    }
    fn name_of(&self, n: OfPort) -> Option<&str> {
        PORTS.get(usize::from(n).wrapping_sub(1)).copied()
    }
}

/// One line about a frame: its flow as ferrovs parses it, and its bytes.
fn describe(frame: &[u8]) -> String {
    let (key, _) = extract(frame, 0);
    let flow = FlowRule::display_match(&flow_match(&key), &Names).to_string();
    let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
    format!("{flow}\n          {} bytes: {hex}", frame.len())
}

fn sorted(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v
}

/// Packets in `a` but not in `b`, as multisets.
fn minus(a: &[Vec<u8>], b: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut counts: BTreeMap<&[u8], i64> = BTreeMap::new();
    for f in b {
        *counts.entry(f).or_default() += 1;
    }
    let mut out = Vec::new();
    for f in a {
        let c = counts.entry(f).or_default();
        if *c > 0 {
            *c -= 1;
        } else {
            out.push(f.clone());
        }
    }
    out
}

/// Runs `rules` over the traffic mix in both switches and fails with a full report on any difference.
fn differential(rules: &[&str]) {
    let inputs: Vec<(&str, Vec<Vec<u8>>)> = vec![
        ("p0", traffic::oracle_mix_from(1, 192, 0)),
        ("p1", traffic::oracle_mix_from(2, 96, 10_000)),
        ("p2", vec![]),
        ("p3", vec![]),
    ];
    let rules_owned: Vec<String> = rules.iter().map(|r| r.to_string()).collect();
    let expected = ovs::run_ovs(&inputs, &rules_owned).unwrap_or_else(|e| panic!("OVS run failed: {e}"));

    let mut sw = Switch::new();
    for (name, input) in &inputs {
        sw = sw.port(name, input.clone());
    }
    let got = sw.rules(rules).run();

    let by_id: BTreeMap<u16, (&str, &Vec<u8>)> = inputs
        .iter()
        .flat_map(|(port, frames)| frames.iter().map(move |f| (traffic::tag_of(f).unwrap(), (*port, f))))
        .collect();
    let mut report = String::new();
    for port in PORTS {
        let ovs_out = sorted(expected.get(port).cloned().unwrap_or_default());
        let our_out = sorted(got.output(port).to_vec());
        let (only_ovs, only_ours) = (minus(&ovs_out, &our_out), minus(&our_out, &ovs_out));
        if only_ovs.is_empty() && only_ours.is_empty() {
            continue;
        }
        report.push_str(&format!(
            "\nport {port}: OVS sent {}, ferrovs sent {}; {} only from OVS, {} only from ferrovs\n",
            ovs_out.len(),
            our_out.len(),
            only_ovs.len(),
            only_ours.len()
        ));
        for (who, frames) in [("OVS", &only_ovs), ("ferrovs", &only_ours)] {
            for f in frames.iter().take(8) {
                match traffic::tag_of(f).and_then(|id| by_id.get(&id).map(|x| (id, x))) {
                    Some((id, (in_port, input))) => report.push_str(&format!(
                        "  only {who}: input #{id} from {in_port}:\n    in:  {}\n    out: {}\n",
                        describe(input),
                        describe(f)
                    )),
                    None => report.push_str(&format!("  only {who}: untagged output:\n    out: {}\n", describe(f))),
                }
            }
        }
    }
    assert!(report.is_empty(), "ferrovs and OVS differ\nrules:\n  {}\n{report}", rules.join("\n  "));
}

macro_rules! cases {
    ($($name:ident: [$($rule:expr),* $(,)?];)*) => {$(
        #[test]
        fn $name() {
            differential(&[$($rule),*]);
        }
    )*};
}

cases! {
    in_port_forwarding: [
        "priority=10,in_port=1,actions=output:3",
        "priority=10,in_port=2,actions=output:4,output:3",
    ];
    l2_addresses_and_ethertype: [
        "priority=40,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,actions=output:4",
        "priority=30,dl_src=02:00:00:00:00:01,dl_type=0x0806,actions=output:3",
        "priority=20,dl_dst=02:00:00:00:00:64/ff:ff:ff:ff:ff:fe,actions=output:2",
        "priority=10,dl_type=0x86dd,actions=output:3",
        "priority=5,dl_type=0x88cc,actions=output:4",
        "priority=1,actions=output:1",
    ];
    vlan_matches: [
        "priority=50,dl_vlan=10,actions=output:3",
        "priority=40,dl_vlan_pcp=1,actions=output:4",
        "priority=30,vlan_tci=0x1000/0x1fff,actions=output:2",
        "priority=20,vlan_tci=0x1000/0x1000,actions=output:4",
        "priority=10,dl_vlan=0xffff,in_port=1,actions=output:3",
    ];
    ipv4_prefixes_and_masks: [
        "priority=50,ip,nw_src=10.0.0.1,nw_dst=10.0.0.100,actions=output:3",
        "priority=40,ip,nw_dst=10.0.0.96/29,actions=output:4",
        "priority=30,ip,nw_src=10.0.0.0/255.255.0.2,actions=output:2",
        "priority=20,ip,nw_dst=10.0.0.0/8,actions=output:3,output:4",
        "priority=10,arp,nw_dst=10.0.0.102,actions=output:4",
    ];
    ip_protocol_tos_ttl: [
        "priority=60,ip,nw_proto=132,actions=output:4",
        "priority=50,ip,nw_tos=184,actions=output:3",
        "priority=40,ip,ip_dscp=10,actions=output:4",
        "priority=35,ip,ip_ecn=3,actions=output:2",
        "priority=30,ip,nw_ttl=0,actions=output:3",
        "priority=25,ipv6,nw_ttl=255,actions=output:4",
        "priority=20,ipv6,nw_proto=58,actions=output:3",
    ];
    ip_fragments: [
        "priority=50,ip,ip_frag=later,actions=output:3",
        "priority=40,ip,ip_frag=first,actions=output:4",
        "priority=30,ipv6,ip_frag=yes,actions=output:2",
        "priority=20,ip,ip_frag=not_later,nw_proto=17,actions=output:4,output:3",
        "priority=10,ipv6,ip_frag=no,actions=output:3",
    ];
    transport_ports_exact_and_masked: [
        "priority=60,tcp,tp_dst=80,actions=output:3",
        "priority=50,udp,tp_src=0x0400/0xfc00,actions=output:4",
        "priority=40,sctp,tp_dst=5001,actions=output:2",
        "priority=30,tcp6,tp_dst=443,actions=output:4",
        "priority=20,udp6,tp_dst=53,tp_src=1000/0xfff8,actions=output:3",
        "priority=10,udp,tp_dst=5001,actions=output:3",
    ];
    tcp_flags: [
        "priority=50,tcp,tcp_flags=+syn-ack,actions=output:3",
        "priority=40,tcp,tcp_flags=+fin+ack,actions=output:4",
        "priority=30,tcp,tcp_flags=0x004/0x004,actions=output:2",
        "priority=20,tcp6,tcp_flags=+ack,actions=output:3",
    ];
    icmp_and_icmpv6: [
        "priority=50,icmp,icmp_type=8,icmp_code=0,actions=output:3",
        "priority=40,icmp6,icmpv6_type=135,actions=output:4",
        "priority=30,icmp6,icmpv6_type=1,icmpv6_code=1,actions=output:2",
        "priority=20,icmp6,actions=output:3",
    ];
    arp_fields: [
        "priority=50,arp,arp_op=2,arp_sha=02:00:00:00:00:02,actions=output:3",
        "priority=40,arp,arp_tpa=10.0.0.100/31,actions=output:4",
        "priority=30,arp,arp_spa=10.0.0.1,arp_tha=00:00:00:00:00:00,actions=output:2",
        "priority=20,arp,arp_tha=02:00:00:00:00:64,actions=output:3",
    ];
    ipv6_addresses_and_label: [
        "priority=50,ipv6,ipv6_src=fd00::1,ipv6_dst=fd00::64/127,actions=output:3",
        "priority=40,ipv6,ipv6_dst=fd00::/16,ipv6_label=0,actions=output:4",
        "priority=30,ipv6,ipv6_src=fd00::2/128,actions=output:2",
    ];
    priorities_overlap: [
        "priority=100,udp,in_port=1,tp_dst=5001,actions=output:3",
        "priority=90,udp,actions=output:4",
        "priority=80,ip,actions=output:2",
        "priority=70,actions=output:3",
        "priority=0,actions=drop",
    ];
    mod_dl_addresses: [
        "priority=10,in_port=1,actions=mod_dl_src:02:11:11:11:11:11,mod_dl_dst:02:22:22:22:22:22,output:3",
        "priority=10,in_port=2,actions=mod_dl_dst:ff:ff:ff:ff:ff:ff,output:4",
    ];
    vlan_actions: [
        "priority=30,in_port=1,dl_vlan=10,actions=mod_vlan_vid:99,output:3,strip_vlan,output:4",
        "priority=20,in_port=1,vlan_tci=0x0000,actions=mod_vlan_pcp:6,output:3",
        "priority=20,in_port=1,vlan_tci=0x1000/0x1000,actions=mod_vlan_pcp:2,output:2",
        "priority=10,in_port=1,actions=push_vlan:0x8100,output:4",
        "priority=10,in_port=2,actions=push_vlan:0x88a8,set_field:4104->vlan_vid,output:3",
        "priority=5,in_port=2,vlan_tci=0x0000,actions=mod_vlan_vid:9,mod_vlan_pcp:3,output:2",
    ];
    ipv4_rewrites_keep_checksums: [
        "priority=10,in_port=1,ip,actions=mod_nw_src:192.0.2.1,mod_nw_dst:198.51.100.2,output:3",
        "priority=10,in_port=2,ip,actions=mod_nw_tos:184,output:4",
        "priority=5,actions=mod_nw_dst:203.0.113.9,output:2",
    ];
    transport_rewrites: [
        "priority=20,in_port=1,tcp,actions=mod_tp_src:1111,mod_tp_dst:2222,output:3",
        "priority=20,in_port=1,udp,actions=mod_tp_dst:53,output:4",
        "priority=20,in_port=1,sctp,actions=mod_tp_src:7,output:2",
        "priority=20,in_port=2,icmp,actions=mod_tp_src:0,output:3",
        "priority=10,in_port=2,actions=mod_tp_dst:9,output:4",
    ];
    dec_ttl: [
        "priority=10,in_port=1,actions=dec_ttl,output:3",
        "priority=10,in_port=2,actions=output:4,dec_ttl,output:3",
    ];
    set_field_everything: [
        "priority=50,in_port=1,ip,actions=set_field:10.9.9.9->ip_src,set_field:46->ip_dscp,set_field:2->nw_ecn,set_field:9->nw_ttl,output:3",
        "priority=50,in_port=1,ipv6,actions=set_field:fd00::99->ipv6_dst,set_field:0x12345->ipv6_label,output:4",
        "priority=40,in_port=1,arp,actions=set_field:1->arp_op,set_field:10.1.1.1->arp_tpa,set_field:02:00:00:00:00:99->arp_sha,output:2",
        "priority=40,in_port=1,tcp,actions=set_field:8080->tcp_dst,set_field:02:00:00:00:00:aa->eth_src,output:3",
        "priority=30,in_port=2,vlan_tci=0x1000/0x1000,actions=set_field:4396->vlan_vid,set_field:5->vlan_pcp,output:4",
        "priority=20,in_port=2,dl_vlan=0xffff,actions=push_vlan:0x8100,set_field:4103->vlan_vid,output:2",
        "priority=25,in_port=2,udp,actions=set_field:7->udp_src,output:3",
    ];
    multi_table_resubmit_and_goto: [
        "table=0,priority=10,in_port=1,actions=resubmit(,1),resubmit(,2)",
        "table=0,priority=10,in_port=2,actions=goto_table:3",
        "table=1,priority=10,ip,actions=mod_nw_dst:10.7.7.7,output:3",
        "table=1,priority=5,actions=output:4",
        "table=2,priority=10,ip,nw_dst=10.7.7.7,actions=output:2",
        "table=3,priority=10,udp,actions=mod_tp_dst:7,goto_table:4",
        "table=4,priority=10,udp,tp_dst=7,actions=output:3",
    ];
    resubmit_with_port_and_depth_limit: [
        "table=0,priority=10,in_port=1,actions=resubmit(3,1)",
        "table=1,priority=10,in_port=3,actions=output:in_port,output:4",
        "table=0,priority=10,in_port=2,actions=resubmit(,5)",
        "table=5,priority=10,actions=resubmit(,5)",
    ];
    flood_all_in_port: [
        "priority=20,in_port=1,tcp,actions=flood",
        "priority=20,in_port=1,udp,actions=all",
        "priority=10,in_port=1,actions=in_port,output:3",
        "priority=10,in_port=2,actions=output:2,output:4",
    ];
    copies_around_rewrites: [
        "priority=10,in_port=1,actions=output:2,mod_dl_dst:02:00:00:00:00:77,output:3,mod_vlan_vid:5,output:4,strip_vlan,mod_nw_dst:10.3.3.3,output:2",
    ];
    drops_and_misses: [
        "priority=30,in_port=1,udp,actions=drop",
        "priority=20,in_port=1,tcp,actions=",
        "priority=10,in_port=2,ip,actions=output:3",
    ];
    shorthands_v6: [
        "priority=40,tcp6,actions=output:3",
        "priority=30,udp6,actions=output:4",
        "priority=20,icmp6,actions=output:2",
        "priority=10,sctp,actions=output:3",
        "priority=5,rarp,actions=output:4",
    ];
    timeouts_and_cookies_do_not_change_forwarding: [
        "cookie=0x42,priority=10,idle_timeout=60,in_port=1,actions=output:3",
        "cookie=0x43,priority=10,hard_timeout=300,in_port=2,actions=output:4",
    ];
}
