//! The control core's housekeeping walks the megaflows in bounded steps: one call never walks a
//! large table whole (upcalls wait meanwhile), and a pass still sees every megaflow once.

use std::sync::Arc;

use etherparse::PacketBuilder;
use ferrovs_config::flow::{FlowKey, OfPort, PortMap, parse_flow};
use ferrovs_switch::cache::hash_key;
use ferrovs_switch::control::SlowPath;
use ferrovs_switch::dpdk::rdtsc;
use ferrovs_switch::fastpath::TablesWriter;
use ferrovs_switch::ofproto::{Ofproto, PortTable};
use ferrovs_switch::packet::extract;

struct Ports;
impl PortMap for Ports {
    fn by_name(&self, _: &str) -> Option<OfPort> {
        None
    }
    fn has_number(&self, n: OfPort) -> bool {
        (1..=2).contains(&n)
    }
    fn name_of(&self, _: OfPort) -> Option<&str> {
        None
    }
}

const FLOWS: u32 = 40_000;

/// A UDP frame's key from source MAC number `n` on port 1.
fn key(n: u32) -> FlowKey {
    let mut frame = Vec::new();
    let b = n.to_be_bytes();
    PacketBuilder::ethernet2([2, 1, b[0], b[1], b[2], b[3]], [2, 0, 0, 0, 0, 1])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(1, 2)
        .write(&mut frame, &[0; 8])
        .unwrap();
    extract(&frame, 1).0
}

/// A slow path whose rules give every source MAC its own megaflow, with `FLOWS` installed.
fn slow_path_with_megaflows() -> SlowPath {
    let mut o = Ofproto::new(Arc::new(PortTable::new(vec![1, 2])), 1);
    for rule in ["priority=20,dl_src=02:00:00:00:00:09,actions=drop", "priority=10,in_port=1,actions=output:2"] {
        o.add(parse_flow(rule, &Ports).unwrap(), 0).unwrap();
    }
    let mut s = SlowPath::new(o, TablesWriter::new(2 * FLOWS as usize, FLOWS as usize, 0), 0);
    for n in 0..FLOWS {
        let k = key(n);
        let d = s.decide(&k, hash_key(&k), 64, 0);
        s.commit(d);
    }
    assert_eq!(s.writer().megaflow_count(), FLOWS as usize);
    s
}

#[test]
fn a_pass_over_many_megaflows_takes_several_bounded_steps_and_sees_each_once() {
    let mut s = slow_path_with_megaflows();
    // A TSC of 1000 per second, and everything idle for far longer than the idle limit.
    let (hz, now) = (1000, rdtsc() + 1_000_000);
    assert!(!s.housekeeping(now, hz), "one step does not finish a pass over {FLOWS} megaflows");
    let left = s.writer().megaflow_count();
    assert!(left > 0 && left < FLOWS as usize, "a step removes some idle megaflows, not all ({left} left)");
    let mut steps = 1;
    while !s.housekeeping(now, hz) {
        steps += 1;
        assert!(steps < 10, "the pass never ends");
    }
    assert_eq!(s.writer().megaflow_count(), 0, "every idle megaflow is seen once in the pass");
    assert_eq!(s.counters.megaflows_idle_removed, u64::from(FLOWS));
    assert!(!s.housekeeping(now, hz), "the next pass waits its turn");
}

#[test]
fn megaflows_in_use_stay_and_the_walk_sees_past_them() {
    let mut s = slow_path_with_megaflows();
    // A TSC so fast that nothing has been idle for a second yet: the pass walks everything,
    // removing nothing.
    let (hz, now) = (u64::MAX, rdtsc());
    let mut steps = 1;
    while !s.housekeeping(now, hz) {
        steps += 1;
        assert!(steps < 10, "the pass never ends");
    }
    assert!(steps > 1, "a pass over {FLOWS} megaflows takes several steps");
    assert_eq!(s.writer().megaflow_count(), FLOWS as usize);
}
