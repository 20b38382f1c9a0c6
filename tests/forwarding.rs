//! End-to-end forwarding by flow rules: the real binary on net_pcap vdevs, outputs compared byte
//! for byte with what the rules require.

mod common;

use common::{Switch, traffic};

#[test]
fn two_inputs_to_two_outputs() {
    let a = traffic::mixed(1, 120);
    let b = traffic::mixed(2, 90);
    let out = Switch::new()
        .port("p0", a.clone())
        .port("p1", b.clone())
        .port("p2", vec![])
        .port("p3", vec![])
        .rules(&["priority=10,in_port=p0,actions=output:p2", "priority=10,in_port=p1,actions=output:p3"])
        .run();
    out.assert_output("p2", a.as_slice());
    out.assert_output("p3", b.as_slice());
    assert!(out.output("p0").is_empty() && out.output("p1").is_empty());
    assert_eq!(out.total("forwarded"), 210);
    assert_eq!(out.total("dropped_packets"), 0);
}

#[test]
fn multi_output_sends_identical_copies() {
    let a = traffic::mixed(1, 100);
    let out = Switch::new()
        .port("p0", a.clone())
        .port("p1", vec![])
        .port("p2", vec![])
        .port("p3", vec![])
        .rules(&["in_port=p0,actions=output:p1,output:p3,output:p2"])
        .run();
    out.assert_output("p1", a.as_slice());
    out.assert_output("p2", a.as_slice());
    out.assert_output("p3", a.as_slice());
    assert_eq!((out.total("forwarded"), out.total("tx_packets")), (100, 300));
}

#[test]
fn drop_action_drops_and_counts() {
    let a = traffic::mixed(1, 50);
    let b = traffic::mixed(2, 40);
    let out = Switch::new()
        .port("p0", a)
        .port("p1", b.clone())
        .port("p2", vec![])
        .rules(&["in_port=p0,actions=drop", "in_port=p1,actions=", "priority=1,actions=output:p2"])
        .run();
    assert!(out.output("p2").is_empty());
    assert_eq!(out.drops("drop_action"), 90);
    assert_eq!(out.total("forwarded"), 0);
}

#[test]
fn unmatched_packets_are_dropped_and_counted() {
    let a = traffic::mixed(1, 70);
    let b = traffic::mixed(2, 30);
    let out = Switch::new()
        .port("p0", a)
        .port("p1", b.clone())
        .port("p2", vec![])
        .rules(&["in_port=p1,actions=output:p2"])
        .run();
    out.assert_output("p2", b.as_slice());
    assert_eq!(out.drops("no_match"), 70);
    assert_eq!(out.total("forwarded"), 30);
}

#[test]
fn no_rules_make_a_learning_switch() {
    // Nothing is known about the destinations: every frame is flooded, here to the only other port.
    let input = traffic::mixed(1, 25);
    let out = Switch::new().port("p0", input.clone()).port("p1", vec![]).run();
    out.assert_output("p1", &input);
    // Host 1 is learned on p0 in VLAN 0 and in the VLAN of its tagged frames (p0 is a trunk).
    let entries = out.stats["mac_table"]["entries"].as_array().unwrap();
    let learned: Vec<(&str, u64)> =
        entries.iter().map(|e| (e["port"].as_str().unwrap(), e["vlan"].as_u64().unwrap())).collect();
    assert_eq!(learned, [("p0", 0), ("p0", 11)]);
    assert_eq!(out.stats["mac_table"]["counters"]["learned"], 2);
}

#[test]
fn a_drop_rule_drops_everything() {
    let out = Switch::new().port("p0", traffic::mixed(1, 25)).port("p1", vec![]).rules(&["actions=drop"]).run();
    assert!(out.output("p1").is_empty());
    assert_eq!(out.drops("drop_action"), 25);
}

#[test]
fn higher_priority_wins_and_ties_go_to_the_first_rule() {
    let a = traffic::mixed(1, 40);
    let out = Switch::new()
        .port("p0", a.clone())
        .port("p1", vec![])
        .port("p2", vec![])
        .port("p3", vec![])
        .rules(&[
            "priority=5,in_port=p0,actions=output:p1",
            "priority=50,in_port=p0,actions=output:p2",
            "priority=50,actions=output:p3",
        ])
        .run();
    out.assert_output("p2", a.as_slice());
    assert!(out.output("p1").is_empty() && out.output("p3").is_empty());
}

#[test]
fn output_to_the_input_port_is_skipped() {
    let a = traffic::mixed(1, 30);
    let b = traffic::mixed(2, 20);
    let out = Switch::new()
        .port("p0", a.clone())
        .port("p1", b)
        .rules(&["in_port=p0,actions=output:p0,output:p1", "in_port=p1,actions=output:p1"])
        .run();
    out.assert_output("p1", a.as_slice());
    assert!(out.output("p0").is_empty());
    assert_eq!(out.drops("output_to_in_port"), 20);
    assert_eq!(out.total("forwarded"), 30);
}

#[test]
fn rules_by_number_and_from_a_flows_file() {
    let a = traffic::mixed(1, 33);
    let out = Switch::new()
        .port("p0", a.clone())
        .port("p1", vec![])
        .port("p2", vec![])
        .flows_file("# rules by OpenFlow port number\n\nin_port=1 actions=output:3\n")
        .rules(&["priority=1,in_port=p0,actions=output:p1"])
        .run();
    out.assert_output("p2", a.as_slice());
    assert!(out.output("p1").is_empty());
}

#[test]
fn large_input_arrives_complete_and_in_order() {
    // Many more packets than one burst or one descriptor ring, so buffers wrap and refill.
    let a: Vec<Vec<u8>> = (0..20_000u32).map(|i| traffic::udp4(1, 2, i as u16, (i % 200) as usize)).collect();
    let out = Switch::new().port("p0", a.clone()).port("p1", vec![]).rules(&["in_port=p0,actions=output:p1"]).run();
    assert_eq!(out.output("p1").len(), a.len());
    out.assert_output("p1", &a);
}

/// `upcall_rate` caps the misses each PMD hands the control core: 2000 new flows (each its own
/// megaflow: a rule on one exact UDP source port puts the port in every mask) arrive at once;
/// the first tenth of a second's worth (100) and then 1000/s go through, the rest are dropped
/// and counted. Once most of a burst is shed, the queue is polled only when the limit has room
/// for a burst again (miss-storm isolation).
#[test]
fn the_upcall_rate_limit_drops_and_counts_excess_misses() {
    let input: Vec<Vec<u8>> = (0..2000).map(|i| traffic::udp4(1, 2, 1000 + i, 10)).collect();
    let out = Switch::new()
        .port("p0", input)
        .port("p1", vec![])
        .rules(&["priority=20,udp,tp_src=7,actions=drop", "priority=10,actions=output:p1"])
        .with_datapath("upcall_rate = 1000\n")
        .run();
    let limited = out.drops("upcall_rate_limited");
    let forwarded = out.total("forwarded");
    assert_eq!(forwarded + limited, 2000, "{}", out.log);
    assert!(limited > 0 && forwarded >= 100, "{forwarded} forwarded\n{}", out.log);
    assert_eq!(out.output("p1").len() as u64, forwarded);
    assert!(out.total("rxq_skips") > 0, "{}", out.log);
}

#[test]
fn runs_of_one_flow_within_a_burst_keep_their_own_decision() {
    // Back-to-back packets of one flow are looked up once per run (see the PMD's tier 1): runs
    // of three flows going to three ports, interleaved, looped so bursts hit the exact cache.
    // Each port must get exactly its flow's share of what came in.
    let pattern: [u16; 15] = [1, 1, 1, 2, 2, 3, 1, 3, 3, 2, 2, 2, 2, 1, 3];
    let sw = Switch::new();
    let input: Vec<Vec<u8>> = pattern.iter().map(|&dst| traffic::udp4(9, dst, 7, 18)).collect();
    common::write_pcap(&sw.dir().join("runs.pcap"), &input);
    let out = sw
        .raw_port("p0", "net_pcap0,rx_pcap={dir}/runs.pcap,infinite_rx=1,tx_pcap=/dev/null")
        .raw_port("p1", "net_null0,no-rx=1")
        .raw_port("p2", "net_null1,no-rx=1")
        .raw_port("p3", "net_null2,no-rx=1")
        .rules(&[
            "ip,nw_dst=10.0.0.1,actions=output:p1",
            "ip,nw_dst=10.0.0.2,actions=output:p2",
            "ip,nw_dst=10.0.0.3,actions=output:p3",
        ])
        .run_with_window(3.0, 1.5);
    let log = &out.log;
    let port = |i: usize, key: &str| out.window_port(i, key);
    let rx = port(0, "rx_packets");
    assert!(rx > 100_000, "too little traffic\n{log}");
    let hits = out.window_total("cache_hits");
    assert!(hits * 10 > rx * 9, "{hits} cache hits of {rx} packets\n{log}");
    // Shares of what was sent: the three transmit counters are read together, while the
    // receive counter is read apart from them (at 20+ Mpps that alone is thousands of packets).
    let sent: u64 = (1..=3).map(|i| port(i, "tx_packets")).sum();
    for (i, dst) in [1u16, 2, 3].iter().enumerate() {
        let share = pattern.iter().filter(|&&d| d == *dst).count() as u64;
        let (want, got) = (sent * share / pattern.len() as u64, port(i + 1, "tx_packets"));
        // The window's edges may split a burst and a round of the pattern.
        assert!(got.abs_diff(want) <= 128, "p{}: {got} packets, want {want} of {sent}\n{log}", i + 1);
    }
}
