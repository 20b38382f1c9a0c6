//! NORMAL megaflows and the MAC table (no DPDK): once the slow path has applied a MAC table
//! change (a new MAC, a move, aging), no installed megaflow or cache entry still carries a
//! decision that change made obsolete, and megaflows the change does not affect stay.

use std::sync::Arc;

use etherparse::PacketBuilder;
use ferrovs_config::flow::{FlowKey, OfPort, PortMap, parse_flow};
use ferrovs_switch::cache::hash_key;
use ferrovs_switch::control::SlowPath;
use ferrovs_switch::fastpath::TablesWriter;
use ferrovs_switch::l2::{MacKey, MacTable};
use ferrovs_switch::ofproto::{DpAction, Ofproto, PortTable};
use ferrovs_switch::packet::{PortIdx, extract};

struct Ports;
impl PortMap for Ports {
    fn by_name(&self, _: &str) -> Option<OfPort> {
        None
    }
    fn has_number(&self, n: OfPort) -> bool {
        (1..=3).contains(&n)
    }
    fn name_of(&self, _: OfPort) -> Option<&str> {
        None
    }
}

const AGING: u64 = 1000;

fn mac(host: u8) -> [u8; 6] {
    [2, 0, 0, 0, 0, host]
}

/// The key of a UDP frame from host `src` to host `dst` arriving on OpenFlow port `in_port`.
fn key(src: u8, dst: u8, in_port: OfPort) -> FlowKey {
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(mac(src), mac(dst))
        .ipv4([10, 0, 0, src], [10, 0, 0, dst], 64)
        .udp(1, 2)
        .write(&mut frame, &[0; 8])
        .unwrap();
    extract(&frame, in_port).0
}

fn switch() -> SlowPath {
    let mut o = Ofproto::new(Arc::new(PortTable::new(vec![1, 2, 3])), 1);
    o.add(parse_flow("priority=0,actions=normal", &Ports).unwrap(), 0).unwrap();
    // No reader threads: removals need not wait for anyone.
    SlowPath::new(o, TablesWriter::new(1024, 1024, 0), 0).with_mac_table(MacTable::new(64, AGING))
}

/// What the control core does with a miss at time `now`: decide, install, apply MAC changes.
/// Returns the output port indices.
fn miss(slow: &mut SlowPath, k: &FlowKey, now: u64) -> Vec<u16> {
    let d = slow.decide(k, hash_key(k), 64, now);
    let outs = outputs(&d.translation.actions);
    slow.commit(d);
    slow.apply_mac_changes();
    outs
}

fn outputs(actions: &[DpAction]) -> Vec<u16> {
    actions
        .iter()
        .filter_map(|a| match a {
            DpAction::Output(p) => Some(p.0),
            _ => None,
        })
        .collect()
}

/// What the fast path would do with `k`: its megaflow's outputs, if one is installed.
fn installed(slow: &SlowPath, k: &FlowKey) -> Option<Vec<u16>> {
    let h = slow.writer().lookup(k)?;
    Some(outputs(&slow.writer().record(h.id).unwrap().translation.actions))
}

#[test]
fn learning_moves_and_aging_revalidate_exactly_the_affected_megaflows() {
    let mut s = switch();
    let b_to_a = key(2, 1, 2);
    let c_to_b = key(3, 2, 3);
    assert_eq!(miss(&mut s, &b_to_a, 0), [0, 2], "A unknown: flooded");
    assert_eq!(miss(&mut s, &c_to_b, 0), [1], "B was learned on port 2 (index 1)");
    assert_eq!(installed(&s, &b_to_a), Some(vec![0, 2]));

    // A speaks on port 1: the flood megaflow towards A goes; the one towards B stays.
    assert_eq!(miss(&mut s, &key(1, 2, 1), 10), [1]);
    assert_eq!(installed(&s, &b_to_a), None);
    assert_eq!(installed(&s, &c_to_b), Some(vec![1]));
    assert_eq!(miss(&mut s, &b_to_a, 10), [0]);

    // A moves to port 3.
    assert_eq!(miss(&mut s, &key(1, 2, 3), 20), [1]);
    assert_eq!(installed(&s, &b_to_a), None, "the decision to send to A's old port is gone");
    assert_eq!(miss(&mut s, &b_to_a, 30), [2]);
    assert_eq!(s.mac_table().counters.moved, 1);

    // A ages out (B spoke later); traffic to A floods again.
    s.housekeeping(20 + AGING, u64::MAX);
    assert_eq!(s.mac_table().lookup(&MacKey::new(0, mac(1))), None);
    assert_eq!(installed(&s, &b_to_a), None);
    assert_eq!(s.mac_table().lookup(&MacKey::new(0, mac(2))), Some(PortIdx(1)), "B spoke at 30");
    assert_eq!(installed(&s, &c_to_b), None, "C aged (it spoke at 0): its next frame must be learned again");
    assert_eq!(miss(&mut s, &b_to_a, 20 + AGING), [0, 2]);
    assert!(s.counters.megaflows_mac_invalidated >= 3, "{:?}", s.counters);
}

#[test]
fn a_static_mac_neither_moves_nor_ages() {
    let mut s = switch();
    s.with_mac_table_mut(|t| t.add_static(MacKey::new(0, mac(1)), PortIdx(0)));
    assert_eq!(miss(&mut s, &key(2, 1, 2), 0), [0]);
    // Frames from A on another port do not move a static entry.
    assert_eq!(miss(&mut s, &key(1, 2, 3), 1), [1]);
    assert_eq!(s.mac_table().lookup(&MacKey::new(0, mac(1))), Some(PortIdx(0)));
    s.housekeeping(10 * AGING, u64::MAX);
    assert_eq!(s.mac_table().lookup(&MacKey::new(0, mac(1))), Some(PortIdx(0)));
    assert_eq!(miss(&mut s, &key(2, 1, 2), 10 * AGING), [0]);
    assert_eq!(s.mac_table().counters.moved, 0);
}

/// A frame from a MAC's old port must be learned again (moving it back), so the megaflows that
/// learned it there go when it moves: otherwise their hits would keep the old port's traffic
/// from ever reaching the slow path.
#[test]
fn a_move_removes_the_megaflows_that_learned_the_old_port() {
    let mut s = switch();
    let a_to_b_on_1 = key(1, 2, 1);
    assert_eq!(miss(&mut s, &a_to_b_on_1, 0), [1, 2]);
    let c_to_b_on_2 = key(3, 2, 2);
    assert_eq!(miss(&mut s, &c_to_b_on_2, 0), [0, 2]);
    // A moves to port 3: the megaflow from A on port 1 goes, C's stays.
    assert_eq!(miss(&mut s, &key(1, 2, 3), 10), [0, 1]);
    assert_eq!(installed(&s, &a_to_b_on_1), None);
    assert!(installed(&s, &c_to_b_on_2).is_some());
    // So A's next frame on port 1 is a miss, and moves A back.
    miss(&mut s, &a_to_b_on_1, 20);
    assert_eq!(s.mac_table().lookup(&MacKey::new(0, mac(1))), Some(PortIdx(0)));
    assert_eq!(installed(&s, &key(1, 2, 3)), None, "and the megaflow from port 3 goes in turn");
    assert_eq!(s.mac_table().counters.moved, 2);
}
