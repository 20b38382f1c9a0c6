//! Model checking of the cuckoo map's version protocol with loom: every interleaving of a reader
//! looking a key up while the writer moves that key to its other bucket (or updates it). Run with
//!
//!     RUSTFLAGS="--cfg loom" cargo test -p ferrovs-switch --release --test loom_cuckoo
//!
//! (scripts/test.sh does). Without `--cfg loom` this file is empty.

#![cfg(loom)]

use std::sync::Arc;

use ferrovs_config::flow::FlowKey;
use ferrovs_switch::cache::{CuckooWriter, Lookup, hash_key};
use ferrovs_switch::sync::qsbr::Qsbr;

fn key(n: u64) -> FlowKey {
    let mut k = FlowKey::ZERO;
    k.set_word(0, n);
    k
}

/// A key being relocated is never reported absent, and a hit carries its value.
#[test]
fn a_moving_key_is_never_missing() {
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(2);
    model.check(|| {
        let qsbr = Arc::new(Qsbr::new(1));
        let mut w = CuckooWriter::new(12, qsbr);
        let k = key(7);
        let h = hash_key(&k);
        w.insert(&k, h, 70).unwrap();
        // Put the key in its second bucket first: a reader scans the first bucket first, so the
        // dangerous move is the one back from the second to the first.
        assert!(w.relocate(&k, h), "there is room in the other bucket");
        let map = Arc::clone(w.map());
        let reader = loom::thread::spawn(move || map.lookup(&key(7), h));
        assert!(w.relocate(&k, h), "and back");
        w.insert(&k, h, 71).unwrap(); // an in-place update
        match reader.join().unwrap() {
            Lookup::Hit(v) => assert!(v == 70 || v == 71, "value {v}"),
            Lookup::Busy => {} // allowed: the reader gave up, a cache miss, never a wrong answer
            Lookup::Miss => panic!("a present key was reported absent"),
        }
    });
}

/// The same for a batched lookup, which confirms a miss from the counters it read while
/// scanning instead of looking again: a moving key is never reported absent.
#[test]
fn a_moving_key_is_never_missing_from_a_batch() {
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(2);
    model.check(|| {
        let qsbr = Arc::new(Qsbr::new(1));
        let mut w = CuckooWriter::new(12, qsbr);
        let k = key(7);
        let h = hash_key(&k);
        w.insert(&k, h, 70).unwrap();
        assert!(w.relocate(&k, h), "there is room in the other bucket");
        let map = Arc::clone(w.map());
        let reader = loom::thread::spawn(move || {
            let mut out = [Lookup::Busy];
            map.lookup_batch(&[key(7)], &[h], &mut out);
            out[0]
        });
        assert!(w.relocate(&k, h), "and back");
        match reader.join().unwrap() {
            Lookup::Hit(v) => assert_eq!(v, 70),
            Lookup::Busy => {}
            Lookup::Miss => panic!("a present key was reported absent by a batch"),
        }
    });
}
