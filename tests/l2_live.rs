//! NORMAL end to end where timing matters, on `net_tap` ports driven one frame at a time (see
//! `common/live.rs`): learning then unicast, a MAC move, and aging with a one-second timer, each
//! checked against outputs written out by hand. (`normal_diff.rs` runs such scenarios against
//! Open vSwitch; OVS cannot age faster than 15 s, so aging is tested here only.)

mod common;

use std::time::Duration;

use common::live::{self, Scenario};
use common::traffic;

/// A UDP frame from host `src` to host `dst`, numbered `n` (a trailer) to tell copies apart.
fn frame(src: u16, dst: u16, n: u16) -> Vec<u8> {
    traffic::tag(traffic::udp4(src, dst, 7, 18), n)
}

fn run(sc: &Scenario) -> live::Captures {
    let out = live::run_ferrovs(sc).unwrap_or_else(|e| panic!("ferrovs run failed: {e}"));
    assert_eq!(out.stats["mempool"]["in_use"], 0, "mbufs leaked\n{}", out.log_tail(40));
    out
}

#[test]
fn learns_floods_unknown_destinations_and_follows_a_move() {
    let f = [
        frame(1, 2, 1), // p0: B unknown, flooded; A learned on p0
        frame(2, 1, 2), // p1: to A on p0 only; B learned on p1
        frame(1, 2, 3), // p0: to B on p1 only
        frame(1, 2, 4), // p2: A moved to p2; to B on p1
        frame(2, 1, 5), // p1: to A, now on p2
        frame(3, 9, 6), // p3: unknown, flooded, never back to p3
    ];
    let sc = Scenario::new()
        .plain_ports(4)
        .send1(0, f[0].clone())
        .send1(1, f[1].clone())
        .send1(0, f[2].clone())
        .send1(2, f[3].clone())
        .send1(1, f[4].clone())
        .send1(3, f[5].clone());
    let out = run(&sc);
    let want = |frames: &[usize]| frames.iter().map(|&i| f[i].clone()).collect::<Vec<_>>();
    assert_eq!(out.port("p0"), want(&[1, 5]), "{}", out.dump());
    assert_eq!(out.port("p1"), want(&[0, 2, 3, 5]), "{}", out.dump());
    assert_eq!(out.port("p2"), want(&[0, 4, 5]), "{}", out.dump());
    assert_eq!(out.port("p3"), want(&[0]), "{}", out.dump());
    // The kernel may put a frame of its own on a tap before IPv6 is silenced there, and its
    // source is learned too: check the scenario's hosts, not the `learned` total.
    let mut ours: Vec<(&str, &str)> = out.stats["mac_table"]["entries"]
        .as_array()
        .expect("mac_table.entries")
        .iter()
        .map(|e| (e["mac"].as_str().unwrap_or(""), e["port"].as_str().unwrap_or("")))
        .filter(|(mac, _)| mac.starts_with("02:00:00:00:"))
        .collect();
    ours.sort();
    let want_macs = [("02:00:00:00:00:01", "p2"), ("02:00:00:00:00:02", "p1"), ("02:00:00:00:00:03", "p3")];
    assert_eq!(ours, want_macs, "{}", out.stats["mac_table"]);
    assert_eq!(out.stats["mac_table"]["counters"]["moved"].as_u64(), Some(1), "{}", out.stats["mac_table"]);
}

#[test]
fn a_mac_ages_out_after_the_aging_time_without_traffic() {
    let f = [frame(1, 9, 1), frame(2, 1, 2), frame(2, 1, 3), frame(2, 1, 4)];
    let sc = Scenario::new()
        .plain_ports(3)
        .mac_aging_secs(1)
        .send1(0, f[0].clone()) // A learned on p0
        .send1(1, f[1].clone()) // to A: p0 only
        .wait(Duration::from_millis(300))
        .send1(1, f[2].clone()) // still known
        .wait(Duration::from_millis(2500))
        .send1(1, f[3].clone()); // A aged out: flooded
    let out = run(&sc);
    assert_eq!(out.port("p0"), [f[1].clone(), f[2].clone(), f[3].clone()], "{}", out.dump());
    assert_eq!(out.port("p2"), [f[0].clone(), f[3].clone()], "{}", out.dump());
    let aged = out.stats["mac_table"]["counters"]["aged"].as_u64().unwrap();
    assert!(aged >= 1, "{}", out.stats["mac_table"]);
}
