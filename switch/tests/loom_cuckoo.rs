//! Model checking of the cuckoo map's version protocol with loom: every interleaving of a reader
//! looking a key up while the writer moves that key to its other bucket (or updates it). Run with
//!
//!     RUSTFLAGS="--cfg loom" cargo test -p ferrovs-switch --release --test loom_cuckoo
//!
//! (scripts/test.sh does). Without `--cfg loom` this file is empty.

#![cfg(loom)]

use std::sync::Arc;

use ferrovs_config::flow::FlowKey;
use ferrovs_switch::cache::{CuckooMap, CuckooWriter, Lookup, hash_key};
use ferrovs_switch::sync::qsbr::Qsbr;

fn key(n: u64) -> FlowKey {
    let mut k = FlowKey::ZERO;
    k.set_word(0, n);
    k
}

/// Every interleaving of `read` (a lookup of key 7 by a reader thread) with the writer moving the
/// key from its second bucket back to its first (the dangerous move: readers scan the first
/// bucket first), then, if `update`, changing its value from 70 to 71 in place; `check` judges
/// each lookup's result.
fn with_a_moving_key(read: fn(&CuckooMap, u64) -> Lookup, update: bool, check: fn(Lookup)) {
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(2);
    model.check(move || {
        let qsbr = Arc::new(Qsbr::new(1));
        let mut w = CuckooWriter::new(12, qsbr);
        let k = key(7);
        let h = hash_key(&k);
        w.insert(&k, h, 70).unwrap();
        assert!(w.relocate(&k, h), "there is room in the other bucket");
        let map = Arc::clone(w.map());
        let reader = loom::thread::spawn(move || read(&map, h));
        assert!(w.relocate(&k, h), "and back");
        if update {
            w.insert(&k, h, 71).unwrap();
        }
        check(reader.join().unwrap());
    });
}

/// A key being relocated is never reported absent, and a hit carries its value.
#[test]
fn a_moving_key_is_never_missing() {
    with_a_moving_key(
        |map, h| map.lookup(&key(7), h),
        true,
        |found| match found {
            Lookup::Hit(v) => assert!(v == 70 || v == 71, "value {v}"),
            Lookup::Busy => {} // allowed: the reader gave up, a cache miss, never a wrong answer
            Lookup::Miss => panic!("a present key was reported absent"),
        },
    );
}

/// The same for a batched lookup, which confirms a miss from the counters it read while
/// scanning instead of looking again: a moving key is never reported absent.
#[test]
fn a_moving_key_is_never_missing_from_a_batch() {
    let read = |map: &CuckooMap, h| {
        let mut out = [Lookup::Busy];
        map.lookup_batch(&[key(7)], &[h], &mut out);
        out[0]
    };
    with_a_moving_key(read, false, |found| match found {
        Lookup::Hit(v) => assert_eq!(v, 70),
        Lookup::Busy => {}
        Lookup::Miss => panic!("a present key was reported absent by a batch"),
    });
}
