use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64 as StdAtomicU64, Ordering as StdOrdering};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

/// Key `n` (its first word); every third has a nonzero tail (as IPv6 and ARP keys do).
fn key(n: u64) -> FlowKey {
    let mut k = FlowKey::ZERO;
    k.set_word(0, n);
    k.set_word(5, n.rotate_left(17) ^ 0xabcd);
    if n % 3 == 0 {
        k.set_word(HEAD_WORDS + (n as usize / 3) % TAIL_WORDS, n ^ 0x55);
    }
    k
}

/// Keys that differ only in their tails, all with one hash (so one bucket, one signature), are
/// told apart, whether their tails are zero or not, by single and batched lookups.
#[test]
fn keys_differing_only_in_the_tail_are_distinct() {
    let qsbr = Arc::new(Qsbr::new(1));
    let mut w = CuckooWriter::new(16, qsbr);
    let base = key(1);
    let with_tail = |word: usize, v: u64| {
        let mut k = base;
        k.set_word(word, v);
        k
    };
    let keys = [base, with_tail(HEAD_WORDS, 1), with_tail(HEAD_WORDS, 2), with_tail(KEY_WORDS - 1, 1)];
    let hash = 0x1234_5678_9abc_def0;
    for (v, k) in keys.iter().enumerate() {
        w.insert(k, hash, v as u64).unwrap();
    }
    let look = |w: &CuckooWriter| {
        let mut batch = [None; 4];
        w.map().get_batch(&keys, &[hash; 4], &mut batch);
        let single: Vec<_> = keys.iter().map(|k| w.map().get(k, hash)).collect();
        assert_eq!(single, batch.to_vec());
        batch
    };
    assert_eq!(look(&w), [Some(0), Some(1), Some(2), Some(3)]);
    assert_eq!(w.remove(&keys[0], hash), Some(0));
    assert_eq!(look(&w), [None, Some(1), Some(2), Some(3)]);
    assert_eq!(w.remove(&keys[2], hash), Some(2));
    assert_eq!(look(&w), [None, Some(1), None, Some(3)]);
    let mut tail_only = FlowKey::ZERO;
    tail_only.set_word(HEAD_WORDS, 1);
    assert_eq!(w.map().get(&tail_only, hash), None, "equal tail, different head");
}

/// A hash with few distinct buckets, so small maps get full and force cuckoo moves.
fn crowded_hash(n: u64) -> u64 {
    hash_key(&key(n))
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u64, u64),
    Remove(u64),
    Relocate(u64),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            6 => (0u64..200, any::<u64>()).prop_map(|(k, v)| Op::Insert(k, v)),
            2 => (0u64..200).prop_map(Op::Remove),
            1 => (0u64..200).prop_map(Op::Relocate),
        ],
        1..600,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Single-threaded semantics equal a HashMap's (except that an insert may report Full).
    #[test]
    fn behaves_like_a_hash_map(ops in ops(), capacity in 8usize..160) {
        let qsbr = Arc::new(Qsbr::new(1));
        let mut w = CuckooWriter::new(capacity, Arc::clone(&qsbr));
        let mut model: HashMap<u64, u64> = HashMap::new();
        for op in ops {
            match op {
                Op::Insert(k, v) => match w.insert(&key(k), crowded_hash(k), v) {
                    Ok(()) => { model.insert(k, v); }
                    Err(Full) => prop_assert!(model.len() >= capacity / 2 && !model.contains_key(&k), "full at {}", model.len()),
                },
                Op::Remove(k) => prop_assert_eq!(w.remove(&key(k), crowded_hash(k)), model.remove(&k)),
                Op::Relocate(k) => { w.relocate(&key(k), crowded_hash(k)); }
            }
            prop_assert_eq!(w.len(), model.len());
        }
        for k in 0..200 {
            prop_assert_eq!(w.map().get(&key(k), crowded_hash(k)), model.get(&k).copied(), "key {}", k);
            prop_assert_eq!(w.get(&key(k), crowded_hash(k)), model.get(&k).copied());
        }
        let keys: Vec<FlowKey> = (0..64).map(key).collect();
        let hashes: Vec<u64> = (0..64).map(crowded_hash).collect();
        let mut batch = vec![None; 64];
        w.map().get_batch(&keys, &hashes, &mut batch);
        for k in 0..64u64 {
            prop_assert_eq!(batch[k as usize], model.get(&k).copied(), "batch lookup of key {}", k);
        }
        let mut all: Vec<(u64, u64)> = w.entries().into_iter().map(|(k, v)| (k.word(0), v)).collect();
        all.sort();
        let mut want: Vec<(u64, u64)> = model.into_iter().collect();
        want.sort();
        prop_assert_eq!(all, want);
    }
}

#[test]
fn fills_to_a_high_load_factor() {
    let qsbr = Arc::new(Qsbr::new(1));
    let n = 10_000;
    let mut w = CuckooWriter::new(n, qsbr);
    let mut stored = 0;
    for k in 0..n as u64 {
        if w.insert(&key(k), crowded_hash(k), k).is_ok() {
            stored += 1;
        }
    }
    assert!(stored as f64 / n as f64 > 0.95, "only {stored} of {n}");
    for k in 0..n as u64 {
        if let Some(v) = w.map().get(&key(k), crowded_hash(k)) {
            assert_eq!(v, k);
        }
    }
}

#[test]
fn removed_entries_are_reused_only_after_readers_pass() {
    let qsbr = Arc::new(Qsbr::new(1));
    qsbr.online(0);
    let mut w = CuckooWriter::new(1, Arc::clone(&qsbr));
    w.insert(&key(1), crowded_hash(1), 1).unwrap();
    w.remove(&key(1), crowded_hash(1)).unwrap();
    assert_eq!(w.insert(&key(2), crowded_hash(2), 2), Err(Full), "reader 0 may still read the old entry");
    qsbr.quiesce(0);
    assert_eq!(w.insert(&key(2), crowded_hash(2), 2), Ok(()));
}

/// How long the multi-threaded stress runs: FERROVS_STRESS_SECS (default 20).
fn stress_duration() -> Duration {
    let secs = std::env::var("FERROVS_STRESS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(20.0);
    Duration::from_secs_f64(secs)
}

/// The writer churns inserts, removals, updates and cuckoo moves in a crowded map while readers
/// look keys up without pause. Every hit must carry a value the key really had (values name
/// their key), and the permanent keys (never removed, but moved around) must never be missed.
#[test]
fn concurrent_readers_never_see_a_wrong_value_or_lose_a_present_key() {
    const READERS: usize = 2;
    const PERMANENT: u64 = 64;
    const CHURN: u64 = 512;
    let qsbr = Arc::new(Qsbr::new(READERS));
    let mut w = CuckooWriter::new(700, Arc::clone(&qsbr));
    let value = |k: u64, version: u64| (k << 32) | (version & 0xffff_ffff);
    for k in 0..PERMANENT {
        w.insert(&key(k), crowded_hash(k), value(k, 0)).unwrap();
    }
    let map = Arc::clone(w.map());
    let stop = Arc::new(AtomicBool::new(false));
    let lookups = Arc::new(StdAtomicU64::new(0));
    let readers: Vec<_> = (0..READERS)
        .map(|id| {
            let (map, qsbr, stop, lookups) =
                (Arc::clone(&map), Arc::clone(&qsbr), Arc::clone(&stop), Arc::clone(&lookups));
            std::thread::spawn(move || {
                qsbr.online(id);
                let mut n = 0u64;
                let mut busy = 0u64;
                // Reader 0 looks keys up one by one, the others in batches of 64 (as PMDs do).
                let keys: Vec<FlowKey> = (0..PERMANENT + CHURN).map(key).collect();
                let hashes: Vec<u64> = (0..PERMANENT + CHURN).map(crowded_hash).collect();
                let mut found = vec![Lookup::Busy; keys.len()];
                while !stop.load(StdOrdering::Relaxed) {
                    if id == 0 {
                        for (f, (k, h)) in found.iter_mut().zip(keys.iter().zip(&hashes)) {
                            *f = map.lookup(k, *h);
                        }
                    } else {
                        for ((f, k), h) in found.chunks_mut(64).zip(keys.chunks(64)).zip(hashes.chunks(64)) {
                            map.lookup_batch(k, h, f);
                        }
                    }
                    for (k, f) in (0..).zip(&found) {
                        match *f {
                            Lookup::Hit(v) => assert_eq!(v >> 32, k, "key {k} returned another key's value {v:#x}"),
                            Lookup::Miss => assert!(k >= PERMANENT, "present key {k} reported absent (reader {id})"),
                            Lookup::Busy => busy += 1,
                        }
                        n += 1;
                    }
                    qsbr.quiesce(id);
                }
                qsbr.offline(id);
                lookups.fetch_add(n, StdOrdering::Relaxed);
                busy
            })
        })
        .collect();

    let deadline = Instant::now() + stress_duration();
    let (mut version, mut rng) = (0u64, 0x1234_5678_9abc_def0u64);
    let mut moves = 0;
    while Instant::now() < deadline {
        for _ in 0..1000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            version += 1;
            let k = PERMANENT + rng % CHURN;
            match rng % 4 {
                0 | 1 => {
                    let _ = w.insert(&key(k), crowded_hash(k), value(k, version));
                }
                2 => {
                    w.remove(&key(k), crowded_hash(k));
                }
                _ => {
                    let p = rng % PERMANENT;
                    w.insert(&key(p), crowded_hash(p), value(p, version)).unwrap();
                    if w.relocate(&key(p), crowded_hash(p)) {
                        moves += 1;
                    }
                }
            }
        }
    }
    stop.store(true, StdOrdering::Relaxed);
    let busy: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    // Readers give up after a few retries when the writer keeps hitting their buckets (a miss by
    // design, to bound their time); it must be rare.
    let total = lookups.load(StdOrdering::Relaxed);
    eprintln!("stress: {total} lookups, {moves} moves, {busy} lookups gave up");
    assert!(total > 1_000_000, "readers made only {total} lookups");
    assert!(moves > 1000, "only {moves} moves exercised");
    assert!((busy as f64) < total as f64 * 1e-3, "{busy} of {total} lookups gave up");
}
