use proptest::prelude::*;

use super::*;

/// The reference: a list in refresh order (oldest first), scanned linearly.
#[derive(Default)]
struct Model {
    dynamic: Vec<MacEntry>,
    statics: Vec<MacEntry>,
    capacity: usize,
    aging: u64,
    changes: Vec<MacKey>,
    counters: MacCounters,
}

impl Model {
    fn len(&self) -> usize {
        self.dynamic.len() + self.statics.len()
    }

    fn lookup(&self, key: &MacKey) -> Option<PortIdx> {
        if is_multicast(&key.mac) {
            return None;
        }
        self.statics.iter().chain(&self.dynamic).find(|e| e.key == *key).map(|e| e.port)
    }

    fn evict(&mut self) -> bool {
        if self.dynamic.is_empty() {
            return false;
        }
        let e = self.dynamic.remove(0);
        self.changes.push(e.key);
        self.counters.evicted += 1;
        true
    }

    fn learn(&mut self, key: MacKey, port: PortIdx, now: u64) -> Learned {
        if is_multicast(&key.mac) {
            return Learned::Ignored;
        }
        if self.statics.iter().any(|e| e.key == key) {
            return Learned::Static;
        }
        if let Some(i) = self.dynamic.iter().position(|e| e.key == key) {
            let mut e = self.dynamic.remove(i);
            let from = e.port;
            e.port = port;
            e.used_tsc = e.used_tsc.max(now);
            self.dynamic.push(e);
            if from == port {
                return Learned::Refreshed;
            }
            self.counters.moved += 1;
            self.changes.push(key);
            return Learned::Moved { from };
        }
        if self.len() >= self.capacity && !self.evict() {
            return Learned::Ignored;
        }
        self.dynamic.push(MacEntry { key, port, used_tsc: now, is_static: false });
        self.counters.learned += 1;
        self.changes.push(key);
        Learned::New
    }

    fn add_static(&mut self, key: MacKey, port: PortIdx) -> bool {
        let entry = MacEntry { key, port, used_tsc: 0, is_static: true };
        if let Some(e) = self.statics.iter_mut().find(|e| e.key == key) {
            *e = entry;
            self.changes.push(key);
            return true;
        }
        if let Some(i) = self.dynamic.iter().position(|e| e.key == key) {
            self.dynamic.remove(i);
            self.statics.push(entry);
            self.changes.push(key);
            return true;
        }
        if self.len() >= self.capacity && !self.evict() {
            return false;
        }
        self.statics.push(entry);
        true
    }

    fn expire(&mut self, now: u64) -> usize {
        let mut n = 0;
        while let Some(e) = self.dynamic.first() {
            if now.saturating_sub(e.used_tsc) < self.aging {
                break;
            }
            self.changes.push(e.key);
            self.dynamic.remove(0);
            n += 1;
        }
        self.counters.aged += n as u64;
        n
    }
}

#[derive(Debug, Clone)]
enum Op {
    Learn(MacKey, u16),
    Static(MacKey, u16),
    Tick(u64),
    Expire,
    FlushPort(u16),
}

fn a_key() -> impl Strategy<Value = MacKey> {
    // A small space so that keys repeat; 0x01 in the first byte is a group address.
    (0u16..3, prop::sample::select(vec![0x02u8, 0x04, 0x01]), 0u8..6)
        .prop_map(|(vlan, first, last)| MacKey::new(vlan, [first, 0, 0, 0, 0, last]))
}

fn an_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (a_key(), 0u16..4).prop_map(|(k, p)| Op::Learn(k, p)),
        1 => (a_key(), 0u16..4).prop_map(|(k, p)| Op::Static(k, p)),
        2 => (1u64..40).prop_map(Op::Tick),
        2 => Just(Op::Expire),
        1 => (0u16..4).prop_map(Op::FlushPort),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// The table agrees with the model after every operation: results, every lookup, size,
    /// counters and the queue of changed keys.
    #[test]
    fn behaves_like_the_model(capacity in 1usize..8, aging in 1u64..100, ops in prop::collection::vec(an_op(), 0..80)) {
        let mut table = MacTable::new(capacity, aging);
        let mut model = Model { capacity, aging, ..Default::default() };
        let mut now = 0;
        for op in &ops {
            match *op {
                Op::Learn(k, p) => prop_assert_eq!(table.learn(k, PortIdx(p), now), model.learn(k, PortIdx(p), now)),
                Op::Static(k, p) => prop_assert_eq!(table.add_static(k, PortIdx(p)), model.add_static(k, PortIdx(p))),
                Op::Tick(t) => now += t,
                Op::Expire => prop_assert_eq!(table.expire(now), model.expire(now)),
                Op::FlushPort(p) => {
                    let mut gone: Vec<MacKey> = model.statics.iter().chain(&model.dynamic)
                        .filter(|e| e.port == PortIdx(p)).map(|e| e.key).collect();
                    model.dynamic.retain(|e| e.port != PortIdx(p));
                    model.statics.retain(|e| e.port != PortIdx(p));
                    prop_assert_eq!(table.flush_port(PortIdx(p)), gone.len());
                    // The order of a flush is unspecified: compare it as a set.
                    let mut got = Vec::new();
                    table.take_changes(&mut got);
                    let mut want = std::mem::take(&mut model.changes);
                    let split = want.len();
                    want.append(&mut gone);
                    got[split..].sort();
                    want[split..].sort();
                    prop_assert_eq!(got, want);
                }
            }
            prop_assert_eq!(table.len(), model.len());
            prop_assert!(table.len() <= capacity);
            for vlan in 0..3 {
                for first in [0x02u8, 0x04, 0x01] {
                    for last in 0..6 {
                        let k = MacKey::new(vlan, [first, 0, 0, 0, 0, last]);
                        prop_assert_eq!(table.lookup(&k), model.lookup(&k), "{:?}", k);
                    }
                }
            }
            prop_assert_eq!(table.counters, model.counters);
            let mut got = Vec::new();
            table.take_changes(&mut got);
            prop_assert_eq!(got, std::mem::take(&mut model.changes));
        }
    }
}

#[test]
fn evicts_the_least_recently_refreshed_and_ages_from_the_last_refresh() {
    let k = |n: u8| MacKey::new(0, [2, 0, 0, 0, 0, n]);
    let mut t = MacTable::new(2, 100);
    assert_eq!(t.learn(k(1), PortIdx(0), 0), Learned::New);
    assert_eq!(t.learn(k(2), PortIdx(1), 10), Learned::New);
    assert_eq!(t.learn(k(1), PortIdx(0), 20), Learned::Refreshed);
    assert_eq!(t.learn(k(3), PortIdx(2), 30), Learned::New, "evicts 2, refreshed longest ago");
    assert_eq!((t.lookup(&k(1)), t.lookup(&k(2))), (Some(PortIdx(0)), None));
    assert_eq!(t.counters.evicted, 1);
    assert_eq!(t.expire(119), 0, "1 was refreshed at 20");
    assert_eq!(t.expire(120), 1);
    assert_eq!(t.learn(k(3), PortIdx(1), 125), Learned::Moved { from: PortIdx(2) });
    assert_eq!(t.lookup(&k(3)), Some(PortIdx(1)));
    assert!(t.add_static(k(9), PortIdx(3)));
    assert_eq!(t.learn(k(9), PortIdx(0), 130), Learned::Static);
    assert_eq!(t.expire(u64::MAX), 1, "only the dynamic entry ages");
    assert_eq!(t.lookup(&k(9)), Some(PortIdx(3)));
    assert_eq!(t.learn(MacKey::new(0, [1, 0, 0, 0, 0, 1]), PortIdx(0), 0), Learned::Ignored);
}
