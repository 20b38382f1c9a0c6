//! The lock-free cuckoo hash map behind the exact-match flow cache and the megaflow table.
//!
//! # Concurrency contract
//! - One writer (a [`CuckooWriter`], owned by the control core) inserts, updates and removes.
//!   Any number of readers (PMDs) look up through a shared `&CuckooMap`, never block, never
//!   write, and give up after a bounded number of retries (a miss just falls to the next tier).
//! - Every shared word is an atomic; the protocol is sound in Rust's memory model with no
//!   `unsafe`. A bucket is one cache line: a sequence counter and 7 slots, each slot one `u64`
//!   holding a 16-bit signature, whether the key's tail is zero, and a 32-bit entry index
//!   (0 = empty), so a reader always sees a consistent slot.
//! - Entries (key words and value) are written before the slot that points at them is published
//!   (Release); a reader reaches an entry only through a slot it loaded (Acquire).
//! - The writer makes the counter of a bucket odd while it changes a slot and even after. A
//!   reader that finds nothing checks that neither of its two buckets' counters moved, and
//!   retries if one did: so a key that a cuckoo move relocates is never reported absent.
//!   A move fills the new slot before clearing the old one.
//! - A removed entry's index is reused only after every online reader has passed a quiescent
//!   point ([`Qsbr`]): a reader may still be comparing its key.
//!
//! Two buckets per key (the second derived from the first and the signature, so it can be
//! recomputed from a slot alone), breadth-first search for a path of moves when both are full.

#[cfg(all(test, not(loom)))]
mod tests;

use std::collections::VecDeque;
use std::sync::Arc;

use ferrovs_config::flow::{FlowKey, KEY_WORDS};

use crate::dpdk::HugeSlice;
use crate::sync::qsbr::Qsbr;
use crate::sync::{AtomicU32, AtomicU64, Ordering, fence, spin_loop};

/// Slots per bucket: 7 slots and a counter fill one 64-byte cache line.
pub const SLOTS: usize = 7;
/// Lookup attempts before a reader gives up (reports a miss).
const READ_TRIES: usize = 8;
/// How far the insertion search looks (buckets visited).
const BFS_LIMIT: usize = 512;

#[repr(C, align(64))]
struct Bucket {
    seq: AtomicU32,
    slots: [AtomicU64; SLOTS],
}

const _: () = assert!(std::mem::size_of::<Bucket>() == 64);

/// Key words on an entry's first cache line, beside its value.
const HEAD_WORDS: usize = 7;
/// The key's other words: IPv6 addresses, ARP hardware addresses, a megaflow's subtable tag.
const TAIL_WORDS: usize = KEY_WORDS - HEAD_WORDS;

/// An entry's first cache line: its value and the key words every kind of packet fills. An
/// Ethernet or IPv4 key has nothing else (its tail is zero, which its slot says), so looking it
/// up reads one line of the entry, not two: at a million flows each line is a miss in DRAM.
#[repr(C, align(64))]
struct EntryHead {
    value: AtomicU64,
    key: [AtomicU64; HEAD_WORDS],
}

/// The rest of an entry's key (read only when its slot says it is not zero).
struct EntryTail {
    key: [AtomicU64; TAIL_WORDS],
}

/// Whether `key`'s tail words are all zero.
#[inline(always)]
fn tail_is_zero(key: &FlowKey) -> bool {
    (HEAD_WORDS..KEY_WORDS).fold(0, |any, w| any | key.word(w)) == 0
}

/// Slot bit: the entry's key has a zero tail.
const TAIL_ZERO: u64 = 1 << 48;

/// What a slot says of a key besides its entry index (bits 32 and up): its signature and
/// whether its tail is zero. A reader compares only entries whose slot has its key's tag.
#[inline(always)]
fn key_tag(sig: u16, key: &FlowKey) -> u64 {
    (u64::from(sig) << 32) | if tail_is_zero(key) { TAIL_ZERO } else { 0 }
}

#[inline(always)]
fn slot_tag(s: u64) -> u64 {
    s & !0xffff_ffff
}

/// A slot: the key's tag (signature in bits 32..48, [`TAIL_ZERO`]) and the entry index in bits
/// 0..32.
#[inline(always)]
fn slot(tag: u64, index: u32) -> u64 {
    tag | u64::from(index)
}

#[inline(always)]
fn slot_sig(s: u64) -> u16 {
    (s >> 32) as u16
}

#[inline(always)]
fn slot_index(s: u64) -> usize {
    (s & 0xffff_ffff) as usize
}

/// The signature of a hash.
#[inline(always)]
pub fn signature(hash: u64) -> u16 {
    (hash >> 48) as u16
}

/// What a lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// The key's value.
    Hit(u64),
    /// The key is not there (checked against concurrent moves).
    Miss,
    /// The writer kept changing the key's buckets; the reader gave up (wait-free bound).
    Busy,
}

/// The shared, read-side map.
pub struct CuckooMap {
    buckets: HugeSlice<Bucket>,
    bucket_mask: usize,
    heads: HugeSlice<EntryHead>,
    tails: HugeSlice<EntryTail>,
    /// How many keys, as the writer last published it (a hint for readers' strategy).
    len_hint: LenHint,
}

/// On a cache line of its own: the fields before it are read by every lookup, and a store by
/// the writer next to them would take that line from every reader core.
#[repr(align(64))]
struct LenHint(AtomicU64);

/// Word pairs a key hash folds (the last pair's second word is past the key: zero).
pub const HASH_PAIRS: usize = KEY_WORDS.div_ceil(2);

/// Hashes a flow key (the caller masks it first where needed). Fast, not cryptographic.
///
/// wyhash-style: fold-multiply each pair of words (independent multiplies, so they overlap in
/// the pipeline), sum, then avalanche. The sum is exposed in parts ([`hash_pair`],
/// [`hash_finish`]) so that a megaflow subtable, whose masked keys are zero outside a few words,
/// can add precomputed constants for the pairs it never sets and get the same hash for less.
#[inline]
pub fn hash_key(key: &FlowKey) -> u64 {
    let w = |i: usize| if i < KEY_WORDS { key.word(i) } else { 0 };
    let mut h = 0u64;
    for p in 0..HASH_PAIRS {
        h = h.wrapping_add(hash_pair(p, w(2 * p), w(2 * p + 1)));
    }
    hash_finish(h)
}

/// Pair `p`'s term of [`hash_key`]: words `2p` and `2p + 1` are `a` and `b`.
#[inline(always)]
pub fn hash_pair(p: usize, a: u64, b: u64) -> u64 {
    const K: [u64; 12] = [
        0xa076_1d64_78bd_642f,
        0xe703_7ed1_a0b4_28db,
        0x8ebc_6af0_9c88_c6e3,
        0x5899_65cc_7537_4cc3,
        0x1d8e_4e27_c47d_124f,
        0x9e37_79b9_7f4a_7c15,
        0xbf58_476d_1ce4_e5b9,
        0x94d0_49bb_1331_11eb,
        0x2545_f491_4f6c_dd1d,
        0x6a09_e667_f3bc_c909,
        0xbb67_ae85_84ca_a73b,
        0x3c6e_f372_fe94_f82b,
    ];
    fold(a ^ K[2 * p], b ^ K[2 * p + 1])
}

/// The hash of a key whose pair terms sum to `sum`.
#[inline(always)]
pub fn hash_finish(sum: u64) -> u64 {
    fold(sum ^ 0xe703_7ed1_a0b4_28db, 0xa076_1d64_78bd_642f)
}

#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a).wrapping_mul(u128::from(b));
    (p as u64) ^ ((p >> 64) as u64)
}

impl CuckooMap {
    fn new(capacity: usize) -> Self {
        let buckets = (capacity.div_ceil(SLOTS - 1)).next_power_of_two().max(2);
        Self {
            buckets: HugeSlice::new(buckets, |_| Bucket {
                seq: AtomicU32::new(0),
                slots: std::array::from_fn(|_| AtomicU64::new(0)),
            }),
            bucket_mask: buckets - 1,
            heads: HugeSlice::new(capacity + 1, |_| EntryHead {
                value: AtomicU64::new(0),
                key: std::array::from_fn(|_| AtomicU64::new(0)),
            }),
            tails: HugeSlice::new(capacity + 1, |_| EntryTail { key: std::array::from_fn(|_| AtomicU64::new(0)) }),
            len_hint: LenHint(AtomicU64::new(0)),
        }
    }

    /// How many entries it can hold.
    pub fn capacity(&self) -> usize {
        self.heads.len() - 1
    }

    #[inline(always)]
    fn first_bucket(&self, hash: u64) -> usize {
        hash as usize & self.bucket_mask
    }

    #[inline(always)]
    fn alt_bucket(&self, bucket: usize, sig: u16) -> usize {
        (bucket ^ (usize::from(sig) | 1).wrapping_mul(0x5bd1_e995)) & self.bucket_mask
    }

    /// About how many keys the map holds (what the writer last published).
    #[inline]
    pub fn len_hint(&self) -> usize {
        self.len_hint.0.load(Ordering::Relaxed) as usize
    }

    /// Hints the CPU to load the bucket `hash` most likely lives in (do it for a whole batch
    /// first). Keys mostly sit in their first bucket (inserts try it first): [`get_batch`]
    /// loads the second only for keys not found in the first. Each line a lookup loads counts:
    /// a core keeps only about ten misses in flight.
    ///
    /// [`get_batch`]: Self::get_batch
    #[inline(always)]
    pub fn prefetch(&self, hash: u64) {
        crate::dpdk::prefetch(&self.buckets[self.first_bucket(hash)]);
    }

    /// Hints the CPU to load both buckets `hash` may live in.
    #[inline(always)]
    pub fn prefetch_both(&self, hash: u64) {
        let b = self.first_bucket(hash);
        crate::dpdk::prefetch(&self.buckets[b]);
        crate::dpdk::prefetch(&self.buckets[self.alt_bucket(b, signature(hash))]);
    }

    /// Prefetches the lines of the entry slot `v` points at that a lookup compares.
    #[inline(always)]
    fn prefetch_entry(&self, v: u64) {
        let i = slot_index(v);
        crate::dpdk::prefetch(&self.heads[i]);
        if v & TAIL_ZERO == 0 {
            crate::dpdk::prefetch(&self.tails[i]);
        }
    }

    /// Whether the entry slot `v` points at holds `key` (the slot's tag already matched: if it
    /// says the tail is zero, so is `key`'s).
    #[inline(always)]
    fn entry_is(&self, v: u64, key: &FlowKey) -> bool {
        let i = slot_index(v);
        let Some(head) = self.heads.get(i) else { return false };
        let differ = |a: &AtomicU64, w: usize| a.load(Ordering::Relaxed) ^ key.word(w);
        let mut diff = head.key.iter().enumerate().fold(0, |d, (w, a)| d | differ(a, w));
        if v & TAIL_ZERO == 0 {
            let Some(tail) = self.tails.get(i) else { return false };
            diff = tail.key.iter().enumerate().fold(diff, |d, (w, a)| d | differ(a, HEAD_WORDS + w));
        }
        diff == 0
    }

    #[inline(always)]
    fn value(&self, v: u64) -> u64 {
        self.heads[slot_index(v)].value.load(Ordering::Relaxed)
    }

    /// The slot of `bucket` holding `key` (whose tag is `tag`).
    #[inline(always)]
    fn scan(&self, bucket: usize, tag: u64, key: &FlowKey) -> Option<u64> {
        for s in &self.buckets[bucket].slots {
            let v = s.load(Ordering::Acquire);
            if v != 0 && slot_tag(v) == tag && self.entry_is(v, key) {
                return Some(v);
            }
        }
        None
    }

    /// The bucket's counter and the first slot of `bucket` with tag `tag` (`None`: none;
    /// `Err`: being written).
    #[inline(always)]
    fn candidate(&self, bucket: usize, tag: u64) -> Result<(u32, Option<u64>), ()> {
        let b = &self.buckets[bucket];
        let seq = b.seq.load(Ordering::Acquire);
        if seq & 1 == 1 {
            return Err(());
        }
        Ok((seq, b.slots.iter().map(|s| s.load(Ordering::Acquire)).find(|&v| v != 0 && slot_tag(v) == tag)))
    }

    /// The value stored for `key` (whose hash is `hash`), if any. A lookup that keeps colliding
    /// with the writer gives up and says `None`: callers treat it as a miss.
    #[inline]
    pub fn get(&self, key: &FlowKey, hash: u64) -> Option<u64> {
        match self.lookup(key, hash) {
            Lookup::Hit(v) => Some(v),
            Lookup::Miss | Lookup::Busy => None,
        }
    }

    /// Looks up `keys[i]` (hash `hashes[i]`) for every `i`, into `out[i]`, in passes so the
    /// memory loads of the whole batch overlap: first the first buckets (which the caller
    /// prefetched) are scanned for a slot with the key's tag and the candidate entries are
    /// prefetched, along with the second buckets of keys without one; then those second buckets
    /// are scanned; then the candidates' keys are compared, and keys in neither bucket are
    /// confirmed absent if neither bucket's counter moved since its scan. Anything unusual (a
    /// bucket being written or changed, a signature collision) falls back to
    /// [`lookup`](Self::lookup).
    #[inline]
    pub fn get_batch(&self, keys: &[FlowKey], hashes: &[u64], out: &mut [Option<u64>]) {
        let keys = &keys[..keys.len().min(out.len())];
        self.lookup_batch_with(keys, hashes, |i, found| {
            out[i] = match found {
                Lookup::Hit(v) => Some(v),
                Lookup::Miss | Lookup::Busy => None,
            }
        });
    }

    /// [`get_batch`](Self::get_batch), telling validated misses from giving up (for tests).
    #[doc(hidden)]
    pub fn lookup_batch(&self, keys: &[FlowKey], hashes: &[u64], out: &mut [Lookup]) {
        let keys = &keys[..keys.len().min(out.len())];
        self.lookup_batch_with(keys, hashes, |i, found| out[i] = found);
    }

    #[inline(always)]
    fn lookup_batch_with(&self, keys: &[FlowKey], hashes: &[u64], mut emit: impl FnMut(usize, Lookup)) {
        const BATCH: usize = 64;
        let n = keys.len().min(hashes.len()).min(BATCH);
        let mut tags = [0u64; BATCH];
        // Per key: the slot of its candidate entry (0: none yet).
        let mut candidate = [0u64; BATCH];
        // Keys to look for in their second bucket (`alt`), and the first bucket's counter then.
        let (mut b1s, mut alt, mut seq1) = ([0usize; BATCH], [0usize; BATCH], [0u32; BATCH]);
        let mut second = [0u8; BATCH];
        let mut seconds = 0;
        for i in 0..n {
            let (hash, key) = (hashes[i], &keys[i]);
            b1s[i] = self.first_bucket(hash);
            tags[i] = key_tag(signature(hash), key);
            match self.candidate(b1s[i], tags[i]) {
                Ok((_, Some(v))) => {
                    candidate[i] = v;
                    self.prefetch_entry(v);
                }
                Ok((seq, None)) => {
                    alt[i] = self.alt_bucket(b1s[i], signature(hash));
                    crate::dpdk::prefetch(&self.buckets[alt[i]]);
                    seq1[i] = seq;
                    second[seconds] = i as u8;
                    seconds += 1;
                }
                Err(()) => {} // being written: the slow path below sorts it out
            }
        }
        // Keys in neither bucket, and the second bucket's counter when it was scanned.
        let (mut absent, mut seq2) = ([false; BATCH], [0u32; BATCH]);
        let mut any_absent = false;
        for &i in &second[..seconds] {
            let i = usize::from(i);
            match self.candidate(alt[i], tags[i]) {
                Ok((_, Some(v))) => {
                    candidate[i] = v;
                    self.prefetch_entry(v);
                }
                Ok((seq, None)) => {
                    (absent[i], seq2[i], any_absent) = (true, seq, true);
                }
                Err(()) => {}
            }
        }
        if any_absent {
            // A miss counts only if no writer touched either bucket meanwhile (as in `lookup`).
            fence(Ordering::Acquire);
        }
        for i in 0..n {
            let found = match candidate[i] {
                v if v != 0 && self.entry_is(v, &keys[i]) => Lookup::Hit(self.value(v)),
                0 if absent[i]
                    && self.buckets[b1s[i]].seq.load(Ordering::Relaxed) == seq1[i]
                    && self.buckets[alt[i]].seq.load(Ordering::Relaxed) == seq2[i] =>
                {
                    Lookup::Miss
                }
                _ => self.lookup(&keys[i], hashes[i]),
            };
            emit(i, found);
        }
    }

    /// Like [`get`](Self::get), but tells a validated miss from giving up.
    #[inline]
    pub fn lookup(&self, key: &FlowKey, hash: u64) -> Lookup {
        let sig = signature(hash);
        let tag = key_tag(sig, key);
        let b1 = self.first_bucket(hash);
        let b2 = self.alt_bucket(b1, sig);
        for _ in 0..READ_TRIES {
            let s1 = self.buckets[b1].seq.load(Ordering::Acquire);
            let s2 = self.buckets[b2].seq.load(Ordering::Acquire);
            if (s1 | s2) & 1 == 0 {
                if let Some(v) = self.scan(b1, tag, key).or_else(|| self.scan(b2, tag, key)) {
                    return Lookup::Hit(self.value(v));
                }
                // A miss counts only if no writer touched either bucket meanwhile.
                fence(Ordering::Acquire);
                if self.buckets[b1].seq.load(Ordering::Relaxed) == s1
                    && self.buckets[b2].seq.load(Ordering::Relaxed) == s2
                {
                    return Lookup::Miss;
                }
            }
            spin_loop();
        }
        Lookup::Busy
    }
}

/// The insert did not fit: every path of moves from both buckets is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cuckoo map full")]
pub struct Full;

/// The single writer of a [`CuckooMap`].
pub struct CuckooWriter {
    map: Arc<CuckooMap>,
    qsbr: Arc<Qsbr>,
    free: Vec<u32>,
    /// Removed entries waiting for readers to pass: (epoch, index).
    retired: VecDeque<(u64, u32)>,
    len: usize,
    /// The `len` readers last saw in the hint.
    published_len: usize,
}

impl CuckooWriter {
    /// An empty map with room for `capacity` entries; reclamation waits on `qsbr`'s readers.
    pub fn new(capacity: usize, qsbr: Arc<Qsbr>) -> Self {
        assert!(capacity < u32::MAX as usize, "capacity must fit 32-bit indices");
        let map = Arc::new(CuckooMap::new(capacity));
        let free = (1..=capacity as u32).rev().collect();
        Self { map, qsbr, free, retired: VecDeque::new(), len: 0, published_len: 0 }
    }

    /// The read side, to share with readers.
    pub fn map(&self) -> &Arc<CuckooMap> {
        &self.map
    }

    /// Entries stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Hints the CPU to load both buckets `hash` may live in (an insert looks at both).
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        self.map.prefetch_both(hash);
    }

    /// The value stored for `key` (writer-side lookup; no retries needed).
    pub fn get(&self, key: &FlowKey, hash: u64) -> Option<u64> {
        self.find(key, hash).map(|(_, _, v)| self.map.value(v))
    }

    /// (bucket, slot number, slot) of `key`.
    fn find(&self, key: &FlowKey, hash: u64) -> Option<(usize, usize, u64)> {
        let m = &self.map;
        let sig = signature(hash);
        let tag = key_tag(sig, key);
        let b1 = m.first_bucket(hash);
        for b in [b1, m.alt_bucket(b1, sig)] {
            for (s, slot) in m.buckets[b].slots.iter().enumerate() {
                let v = slot.load(Ordering::Relaxed);
                if v != 0 && slot_tag(v) == tag && m.entry_is(v, key) {
                    return Some((b, s, v));
                }
            }
        }
        None
    }

    /// Stores one slot under the bucket's counter (odd while it changes).
    fn write_slot(&self, bucket: usize, slot: usize, value: u64) {
        let b = &self.map.buckets[bucket];
        let seq = b.seq.load(Ordering::Relaxed);
        b.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        b.slots[slot].store(value, Ordering::Release);
        b.seq.store(seq.wrapping_add(2), Ordering::Release);
    }

    /// Frees the indices whose readers have all moved on.
    fn reclaim(&mut self) {
        while let Some(&(epoch, index)) = self.retired.front() {
            if !self.qsbr.passed(epoch) {
                break;
            }
            self.retired.pop_front();
            self.free.push(index);
        }
    }

    /// Inserts `key` -> `value`, or updates the value if `key` is present.
    pub fn insert(&mut self, key: &FlowKey, hash: u64, value: u64) -> Result<(), Full> {
        if let Some((_, _, v)) = self.find(key, hash) {
            self.map.heads[slot_index(v)].value.store(value, Ordering::Release);
            return Ok(());
        }
        self.insert_new(key, hash, value)
    }

    /// Hints the CPU to load the entry the next insert will write (its lines are cold).
    pub fn prefetch_next_entry(&self) {
        if let Some(&i) = self.free.last() {
            crate::dpdk::prefetch(&self.map.heads[i as usize]);
            crate::dpdk::prefetch(&self.map.tails[i as usize]);
        }
    }

    /// Inserts `key` -> `value`; the caller has just looked `key` up and not found it (a
    /// present key would be stored twice).
    pub fn insert_new(&mut self, key: &FlowKey, hash: u64, value: u64) -> Result<(), Full> {
        debug_assert!(self.find(key, hash).is_none(), "insert_new of a present key");
        if self.free.is_empty() {
            self.reclaim();
        }
        let sig = signature(hash);
        let b1 = self.map.first_bucket(hash);
        let Some((bucket, slot_no)) = self.make_room(b1, self.map.alt_bucket(b1, sig)) else {
            return Err(Full);
        };
        let Some(index) = self.free.pop() else { return Err(Full) };
        let (head, tail) = (&self.map.heads[index as usize], &self.map.tails[index as usize]);
        for (w, a) in head.key.iter().enumerate() {
            a.store(key.word(w), Ordering::Relaxed);
        }
        for (w, a) in tail.key.iter().enumerate() {
            a.store(key.word(HEAD_WORDS + w), Ordering::Relaxed);
        }
        head.value.store(value, Ordering::Relaxed);
        // Publishing the slot (Release) makes the entry's words visible to whoever loads it.
        self.write_slot(bucket, slot_no, slot(key_tag(sig, key), index));
        self.len += 1;
        self.publish_len();
        Ok(())
    }

    /// Removes `key`; returns its value.
    pub fn remove(&mut self, key: &FlowKey, hash: u64) -> Option<u64> {
        let (b, s, v) = self.find(key, hash)?;
        let value = self.map.value(v);
        self.write_slot(b, s, 0);
        self.retire(slot_index(v) as u32);
        Some(value)
    }

    /// Updates the readers' length hint when the length moved by a sixteenth (always while the
    /// map is small): a store per insert would take the hint's line from the readers a million
    /// times a second in a miss storm, for a hint that only chooses a lookup strategy.
    fn publish_len(&mut self) {
        let shown = self.published_len;
        if self.len < 1024 || self.len.abs_diff(shown) * 16 >= shown {
            self.map.len_hint.0.store(self.len as u64, Ordering::Relaxed);
            self.published_len = self.len;
        }
    }

    fn retire(&mut self, index: u32) {
        let epoch = self.qsbr.advance();
        self.retired.push_back((epoch, index));
        self.len -= 1;
        self.publish_len();
    }

    /// Removes one entry from `key`'s first bucket (to make room in a cache); returns its key.
    pub fn evict_one(&mut self, hash: u64, victim: usize) -> Option<FlowKey> {
        let b = self.map.first_bucket(hash);
        let s = victim % SLOTS;
        let v = self.map.buckets[b].slots[s].load(Ordering::Relaxed);
        if v == 0 {
            return None;
        }
        let key = self.key_of(slot_index(v));
        self.write_slot(b, s, 0);
        self.retire(slot_index(v) as u32);
        Some(key)
    }

    fn key_of(&self, index: usize) -> FlowKey {
        let mut k = FlowKey::ZERO;
        for (w, a) in self.map.heads[index].key.iter().enumerate() {
            k.set_word(w, a.load(Ordering::Relaxed));
        }
        for (w, a) in self.map.tails[index].key.iter().enumerate() {
            k.set_word(HEAD_WORDS + w, a.load(Ordering::Relaxed));
        }
        k
    }

    /// Every (key, value), in no particular order (writer side).
    pub fn entries(&self) -> Vec<(FlowKey, u64)> {
        let mut out = Vec::with_capacity(self.len);
        for b in self.map.buckets.iter() {
            for s in &b.slots {
                let v = s.load(Ordering::Relaxed);
                if v != 0 {
                    out.push((self.key_of(slot_index(v)), self.map.value(v)));
                }
            }
        }
        out
    }

    /// Removes every entry for which `keep` says no.
    pub fn retain(&mut self, mut keep: impl FnMut(&FlowKey, u64) -> bool) {
        for b in 0..self.map.buckets.len() {
            for s in 0..SLOTS {
                let v = self.map.buckets[b].slots[s].load(Ordering::Relaxed);
                if v == 0 {
                    continue;
                }
                let i = slot_index(v);
                if !keep(&self.key_of(i), self.map.value(v)) {
                    self.write_slot(b, s, 0);
                    self.retire(i as u32);
                }
            }
        }
    }

    /// Finds a free slot in `b1` or `b2`, moving entries along a cuckoo path if both are full.
    /// Each move fills the destination before clearing the source.
    fn make_room(&mut self, b1: usize, b2: usize) -> Option<(usize, usize)> {
        let free_slot = |b: usize| self.map.buckets[b].slots.iter().position(|s| s.load(Ordering::Relaxed) == 0);
        if let Some(s) = free_slot(b1) {
            return Some((b1, s));
        }
        if let Some(s) = free_slot(b2) {
            return Some((b2, s));
        }
        // Breadth-first search over buckets; each node remembers (bucket, parent node, slot of the
        // parent's entry that would move into this bucket).
        let mut nodes: Vec<(usize, usize, usize)> = vec![(b1, usize::MAX, 0), (b2, usize::MAX, 0)];
        let mut head = 0;
        while head < nodes.len() && nodes.len() < BFS_LIMIT {
            let (bucket, _, _) = nodes[head];
            for s in 0..SLOTS {
                let v = self.map.buckets[bucket].slots[s].load(Ordering::Relaxed);
                let alt = self.map.alt_bucket(bucket, slot_sig(v));
                if alt == bucket {
                    continue;
                }
                nodes.push((alt, head, s));
                if let Some(free) = free_slot(alt) {
                    return Some(self.execute_moves(&nodes, nodes.len() - 1, free));
                }
            }
            head += 1;
        }
        None
    }

    /// Walks a path back from the node with a free slot, moving each entry one step forward.
    fn execute_moves(&self, nodes: &[(usize, usize, usize)], mut node: usize, mut free: usize) -> (usize, usize) {
        loop {
            let (bucket, parent, parent_slot) = nodes[node];
            if parent == usize::MAX {
                return (bucket, free);
            }
            let from = nodes[parent].0;
            let v = self.map.buckets[from].slots[parent_slot].load(Ordering::Relaxed);
            self.write_slot(bucket, free, v); // the entry is now in both buckets...
            self.write_slot(from, parent_slot, 0); // ...and then only in the new one
            node = parent;
            free = parent_slot;
        }
    }

    /// For tests: moves the entry of `key` to its other bucket if there is room there, as an
    /// insertion path would. Returns whether it moved.
    #[doc(hidden)]
    pub fn relocate(&mut self, key: &FlowKey, hash: u64) -> bool {
        let Some((b, s, _)) = self.find(key, hash) else { return false };
        let v = self.map.buckets[b].slots[s].load(Ordering::Relaxed);
        let alt = self.map.alt_bucket(b, slot_sig(v));
        let Some(free) = self.map.buckets[alt].slots.iter().position(|x| x.load(Ordering::Relaxed) == 0) else {
            return false;
        };
        if alt == b {
            return false;
        }
        self.write_slot(alt, free, v);
        self.write_slot(b, s, 0);
        true
    }
}
