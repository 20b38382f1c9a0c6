//! End-to-end runs with two PMD threads: the real binary on `net_pcap` vdevs, with both PMDs on
//! CPU 1 (`allow_shared_cores`; CPU 0 is the control core's, and CI machines have two CPUs).
//! Receive queues are spread over the PMDs round-robin unless `pmd_rxq_affinity` pins them; the
//! per-PMD counters of `--stats-json` show which PMD polled what. Outputs are checked byte for byte
//! and per flow in order, with every packet and mbuf accounted for.

mod common;

use common::{Outcome, Switch, traffic};

/// `[datapath]` keys for two PMD threads sharing CPU 1.
const TWO_PMDS: &str = "pmd_cores = [1, 1]\nallow_shared_cores = true\n";

/// Runs `sw` as `Switch::run` does (until `sent` packets were received, then the conservation and
/// leak checks), but with two PMDs and with extra keys in some `[[port]]` tables (`port_keys`:
/// port name, TOML lines). The harness writes a one-PMD `[datapath]` and closed port tables (TOML
/// allows neither to be reopened), so the written config is patched. Reads back
/// `{port}.out.pcap` of every port in `captured`.
fn run_two_pmds(sw: &Switch, sent: usize, captured: &[&str], port_keys: &[(&str, &str)]) -> Outcome {
    let config = sw.write();
    let mut text = std::fs::read_to_string(&config).unwrap();
    let patch = |text: &mut String, find: &str, add: &str| {
        assert!(text.contains(find), "{find:?} not in the harness's config; update this test:\n{text}");
        *text = text.replacen(find, add, 1);
    };
    patch(&mut text, "pmd_cores = [1]\n", TWO_PMDS);
    for (port, keys) in port_keys {
        let name = format!("[[port]]\nname = \"{port}\"\n");
        patch(&mut text, &name, &format!("{name}{keys}"));
    }
    std::fs::write(&config, text).unwrap();
    let stats_path = sw.dir().join("stats.json");
    let output = common::ferrovs()
        .args(["run", "--config"])
        .arg(&config)
        .args(["--stop-after-rx", &sent.to_string(), "--duration", "120", "--stats-json"])
        .arg(&stats_path)
        .output()
        .unwrap();
    let log = format!(
        "--- stdout\n{}--- stderr\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "ferrovs failed ({}):\n{log}", output.status);
    let stats = serde_json::from_str(&std::fs::read_to_string(&stats_path).unwrap()).unwrap();
    let out =
        captured.iter().map(|p| (p.to_string(), common::read_pcap(&sw.dir().join(format!("{p}.out.pcap"))))).collect();
    let outcome = Outcome { out, stats, sent: sent as u64, log };
    outcome.assert_conserved();
    outcome
}

/// Counter `name` of each PMD, in PMD order.
fn per_pmd(out: &Outcome, name: &str) -> Vec<u64> {
    let pmds = out.stats["pmds"].as_array().expect("pmds in the report");
    pmds.iter().map(|p| p["counters"][name].as_u64().unwrap_or_else(|| panic!("no PMD counter {name}"))).collect()
}

/// Both PMDs ran, on CPU 1, as EAL lcores 1 and 2.
fn assert_two_pmds_on_cpu_1(out: &Outcome) {
    let pmds = out.stats["pmds"].as_array().unwrap();
    let placement: Vec<(u64, u64)> =
        pmds.iter().map(|p| (p["core"].as_u64().unwrap(), p["lcore"].as_u64().unwrap())).collect();
    assert_eq!(placement, [(1, 1), (1, 2)], "PMD (core, lcore)\n{}", out.log);
}

/// Two input ports, each polled by its own PMD (round-robin over the ports' queues in config
/// order: p0 and p2 to PMD 0, p1 and p3 to PMD 1), each sent to its own output.
#[test]
fn two_pmds_forward_their_own_ports() {
    let a = traffic::mixed(1, 300);
    let b = traffic::mixed(2, 200);
    let sw = Switch::new()
        .port("p0", a.clone())
        .port("p1", b.clone())
        .port("p2", vec![])
        .port("p3", vec![])
        .rules(&["priority=10,in_port=p0,actions=output:p2", "priority=10,in_port=p1,actions=output:p3"]);
    let out = run_two_pmds(&sw, a.len() + b.len(), &["p0", "p1", "p2", "p3"], &[]);
    out.assert_output("p2", &a);
    out.assert_output("p3", &b);
    assert!(out.output("p0").is_empty() && out.output("p1").is_empty());
    assert_two_pmds_on_cpu_1(&out);
    // Exact counts: each PMD received exactly its input port's packets.
    assert_eq!(per_pmd(&out, "rx_packets"), [300, 200], "{}", out.log);
    assert_eq!((out.total("forwarded"), out.total("dropped_packets")), (500, 0));
}

/// A port with two receive queues (one pcap file each: 300 and 200 packets). Round-robin gives
/// queue 0 to PMD 0 and queue 1 to PMD 1; `pmd_rxq_affinity = "1:1"` pins queue 1 to core 1,
/// whose first PMD is PMD 0, and (as OVS's pmd-rxq-isolate) a PMD with a pinned queue polls no
/// other, so queue 0 moves to PMD 1. The exact per-PMD receive counts show where each queue went,
/// with and without the pin.
#[test]
fn rxq_affinity_pins_a_queue_to_its_pmd() {
    let q0 = traffic::mixed(1, 300);
    let q1 = traffic::mixed(2, 200);
    let both: Vec<Vec<u8>> = q0.iter().chain(&q1).cloned().collect();
    let run = |keys: &str| {
        let sw = Switch::new();
        common::write_pcap(&sw.dir().join("q0.pcap"), &q0);
        common::write_pcap(&sw.dir().join("q1.pcap"), &q1);
        let sw = sw
            .raw_port("p0", "net_pcap0,rx_pcap=q0.pcap,rx_pcap=q1.pcap,tx_pcap=p0.out.pcap")
            .port("p1", vec![])
            .rules(&["in_port=p0,actions=output:p1"]);
        let out = run_two_pmds(&sw, both.len(), &["p0", "p1"], &[("p0", keys)]);
        out.assert_output("p1", &both);
        assert!(out.output("p0").is_empty());
        assert_two_pmds_on_cpu_1(&out);
        out
    };

    let spread = run("rx_queues = 2\n");
    assert_eq!(per_pmd(&spread, "rx_packets"), [300, 200], "round-robin\n{}", spread.log);
    let pinned = run("rx_queues = 2\npmd_rxq_affinity = \"1:1\"\n");
    assert_eq!(per_pmd(&pinned, "rx_packets"), [200, 300], "queue 1 pinned to PMD 0, alone\n{}", pinned.log);
}

/// Many new flows on both PMDs at once, each needing its own upcall: a rule matching one exact UDP
/// source port (which no packet has) puts the source port in every megaflow's mask. Both PMDs
/// hand misses to the control core, which decides, sends and installs for both queues in the
/// same passes. The output must be complete and in order per flow (whether a packet went through
/// the control core or, once its megaflow is in, the fast path), with no drops, no leaked mbufs.
/// Each port sends fewer packets than a PMD's upcall queue holds (1024), so no timing can
/// overflow it (a full queue drops by design, and `net_pcap` delivers a whole file faster than
/// the control core installs the first batch: usually every packet here is an upcall).
#[test]
fn upcalls_from_both_pmds_at_once_keep_flows_complete_and_ordered() {
    const FLOWS: usize = 300;
    const PER_FLOW: usize = 3;
    // Flow i's k-th packet at position k * FLOWS + i: every flow's packets are spread out, so
    // some arrive while its first is still with the control core.
    let flows = |src: u16| -> Vec<Vec<u8>> {
        (0..FLOWS * PER_FLOW)
            .map(|n| {
                let (k, i) = (n / FLOWS, n % FLOWS);
                traffic::udp4(src, 100 + (i % 5) as u16, 1000 + i as u16, 10 + k * 100 + i % 50)
            })
            .collect()
    };
    let (a, b) = (flows(1), flows(2));
    let sw = Switch::new().port("p0", a.clone()).port("p1", b.clone()).port("p2", vec![]).port("p3", vec![]).rules(&[
        "priority=20,udp,tp_src=7,actions=drop",
        "priority=10,in_port=p0,actions=output:p2",
        "priority=10,in_port=p1,actions=output:p3",
    ]);
    let out = run_two_pmds(&sw, a.len() + b.len(), &["p0", "p1", "p2", "p3"], &[]);
    out.assert_output("p2", &a);
    out.assert_output("p3", &b);
    assert_two_pmds_on_cpu_1(&out);
    assert_eq!(per_pmd(&out, "rx_packets"), [a.len() as u64, b.len() as u64], "{}", out.log);
    let upcalls = per_pmd(&out, "upcalls");
    assert!(upcalls.iter().all(|&u| u >= FLOWS as u64), "each flow's first packet is an upcall: {upcalls:?}");
    let installed = out.stats["fastpath"]["slow_path"]["megaflows_installed"].as_u64().unwrap();
    assert!(installed >= 2 * FLOWS as u64, "one megaflow per flow expected, {installed} installed\n{}", out.log);
    assert_eq!(out.total("dropped_packets"), 0, "{}", out.log);
    assert_eq!(out.total("forwarded"), (a.len() + b.len()) as u64);
}
