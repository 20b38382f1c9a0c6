//! The fast path's tables: an exact-match flow cache (tier 1) in front of a megaflow table
//! (tier 2). PMDs read both without locks; only the control core writes them ([`TablesWriter`]).
//!
//! Tiering (measurements in `docs/design.md`):
//! - **Flow cache**: one cuckoo map shared by every PMD, exact key -> megaflow. Sized for the
//!   working set (a million flows by default), so established flows take one hash probe. Shared
//!   rather than per PMD so that a flow moving between PMDs (rxq rebalancing) stays cached and
//!   memory is spent once; reads of shared cache lines cost nothing while nobody writes them.
//! - **Megaflow table**: every megaflow (a masked key and its actions) in one cuckoo map, keyed
//!   by the masked key tagged with its mask's subtable number; PMDs probe the subtables (masks)
//!   in rank order (most megaflows first). Megaflows never contradict each other, so the first
//!   hit is right.
//! - A megaflow's actions are words in atomics ([`actions`]), read by id; the id carries a
//!   generation, bumped when the megaflow is removed, so a cache entry that still points at a
//!   removed (or reused) megaflow is recognised as stale and ignored.
//! - Memory is reclaimed by QSBR: ids, entries and subtable slots are reused only after every
//!   PMD has passed a quiescent point.

pub mod actions;
#[cfg(all(test, not(loom)))]
mod tests;
mod writer;

use std::sync::Arc;

use arrayvec::ArrayVec;
use ferrovs_config::flow::{FlowKey, KEY_WORDS};

pub use writer::{InstallError, Installed, MegaflowRecord, TablesWriter};

use crate::cache::{CuckooMap, HASH_PAIRS, hash_finish, hash_pair};
use crate::dpdk::HugeSlice;
use crate::sync::qsbr::Qsbr;
use crate::sync::{AtomicU32, AtomicU64, Ordering, fence};

/// Most distinct megaflow masks.
pub const MAX_SUBTABLES: usize = 128;
/// Most action words one megaflow can hold (an output is one word; a set is one, or three for an
/// IPv6 address).
pub const ACTION_WORDS: usize = 30;
/// Byte offset in a flow key of the (otherwise zero) padding where a megaflow key carries its
/// subtable tag.
const TAG_OFFSET: usize = 84;

/// A megaflow: its id (slot) and the generation it had when looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MegaflowRef {
    /// Slot.
    pub id: u32,
    /// Generation of the slot when this reference was made.
    pub generation: u32,
}

impl MegaflowRef {
    fn pack(self) -> u64 {
        (u64::from(self.id) << 32) | u64::from(self.generation)
    }

    fn unpack(v: u64) -> Self {
        Self { id: (v >> 32) as u32, generation: v as u32 }
    }
}

/// Generation first, on the line the actions start on: the PMD checks it for every cache hit,
/// then reads the actions of the groups it forms.
#[repr(C, align(64))]
struct MegaflowSlot {
    generation: AtomicU32,
    len: AtomicU32,
    words: [AtomicU64; ACTION_WORDS],
}

/// One PMD's counters for one megaflow (only that PMD writes them).
#[derive(Default)]
struct MegaflowStats {
    packets: AtomicU64,
    bytes: AtomicU64,
    used_tsc: AtomicU64,
}

struct SubtableSlot {
    mask: [AtomicU64; KEY_WORDS],
    /// Tag mixed into megaflow keys: slot number and slot generation.
    tag: AtomicU32,
}

/// Flows above which a PMD with a single megaflow mask skips the exact cache (below, the cache's
/// lookup is the cheaper one: measured, see docs/design.md). The control core then stops adding
/// cache entries for new flows: nothing would read them.
pub const SIMPLE_MODE_FLOWS: usize = 256;

/// The shared tables.
pub struct FlowTables {
    cache: Arc<CuckooMap>,
    megaflows: Arc<CuckooMap>,
    slots: HugeSlice<MegaflowSlot>,
    stats: Box<[HugeSlice<MegaflowStats>]>,
    /// Odd while the writer changes the subtable list.
    subtables_seq: AtomicU32,
    subtable_count: AtomicU32,
    subtable_order: Box<[AtomicU32]>,
    subtable_slots: Box<[SubtableSlot]>,
    qsbr: Arc<Qsbr>,
}

/// One subtable as a PMD keeps it locally: its mask, tag, and which key words it uses.
#[derive(Debug, Clone)]
pub struct Subtable {
    /// The mask.
    pub mask: FlowKey,
    /// Hash pairs that can be nonzero in a masked key (the others add `hash_base`).
    pairs: ArrayVec<u8, HASH_PAIRS>,
    /// Key words the mask keeps any bit of.
    words: ArrayVec<u8, KEY_WORDS>,
    hash_base: u64,
    /// The key word holding the tag, with only the tag's bytes set.
    tag_word: u64,
}

impl Subtable {
    fn new(mask: FlowKey, tag: u32) -> Self {
        // The tag's word is set in every megaflow key: its pair is always hashed.
        let word_used = |w: usize| w < KEY_WORDS && mask.word(w) != 0;
        let used = |p: usize| p == TAG_OFFSET / 16 || word_used(2 * p) || word_used(2 * p + 1);
        let pairs = (0..HASH_PAIRS).filter(|&p| used(p)).map(|p| p as u8).collect();
        let words = (0..KEY_WORDS).filter(|&w| word_used(w)).map(|w| w as u8).collect();
        let hash_base = (0..HASH_PAIRS).filter(|&p| !used(p)).fold(0u64, |h, p| h.wrapping_add(hash_pair(p, 0, 0)));
        let mut t = FlowKey::ZERO;
        t.0[TAG_OFFSET..TAG_OFFSET + 4].copy_from_slice(&tag.to_be_bytes());
        Self { mask, pairs, words, hash_base, tag_word: t.word(TAG_OFFSET / 8) }
    }

    /// Whether `a` and `b` have the same megaflow key here (agree on every bit of the mask),
    /// reading only the words the mask keeps.
    #[inline(always)]
    pub fn same_masked(&self, a: &FlowKey, b: &FlowKey) -> bool {
        let differ = |w: usize| (a.word(w) ^ b.word(w)) & self.mask.word(w);
        self.words.iter().fold(0, |d, &w| d | differ(usize::from(w))) == 0
    }

    /// Writes the megaflow key of `key` in this subtable to `out` (every word, so `out` need not
    /// be cleared first) and returns its hash, as [`masked`](Self::masked) does.
    #[inline(always)]
    pub fn mask_into(&self, key: &FlowKey, out: &mut FlowKey) -> u64 {
        // In registers, then stored: hashing words read back from `out` would wait on the stores.
        let mut w = [0u64; 2 * HASH_PAIRS];
        for (i, v) in w.iter_mut().enumerate().take(KEY_WORDS) {
            *v = key.word(i) & self.mask.word(i);
        }
        w[TAG_OFFSET / 8] |= self.tag_word;
        for (i, &v) in w.iter().enumerate().take(KEY_WORDS) {
            out.set_word(i, v);
        }
        let mut h = self.hash_base;
        for &p in &self.pairs {
            let p = usize::from(p);
            h = h.wrapping_add(hash_pair(p, w[2 * p], w[2 * p + 1]));
        }
        hash_finish(h)
    }

    /// The megaflow key of `key` in this subtable, and its hash (the same as [`hash_key`] of it,
    /// computed over the words the mask keeps only).
    ///
    /// [`hash_key`]: crate::cache::hash_key
    #[inline]
    pub fn masked(&self, key: &FlowKey) -> (FlowKey, u64) {
        let mut m = FlowKey::ZERO;
        let h = self.mask_into(key, &mut m);
        (m, h)
    }
}

/// A PMD's copy of the subtable list, refreshed when the writer changes it.
#[derive(Debug, Clone, Default)]
pub struct SubtableView {
    seq: u32,
    /// In rank order.
    pub list: Vec<Subtable>,
}

/// Words of one megaflow's actions, copied out for execution.
pub struct ActionWords {
    /// The words (`len` of them are valid).
    pub words: [u64; ACTION_WORDS],
    /// How many.
    pub len: usize,
}

impl ActionWords {
    /// The valid words.
    pub fn as_slice(&self) -> &[u64] {
        &self.words[..self.len]
    }
}

impl FlowTables {
    /// The QSBR domain the PMDs (readers 0..n) announce quiescent points to.
    pub fn qsbr(&self) -> &Arc<Qsbr> {
        &self.qsbr
    }

    /// Hints the CPU to load the cache buckets for `hash`.
    #[inline(always)]
    pub fn prefetch_cache(&self, hash: u64) {
        self.cache.prefetch(hash);
    }

    /// About how many flows the exact cache holds.
    #[inline]
    pub fn cache_len_hint(&self) -> usize {
        self.cache.len_hint()
    }

    /// Tier 1: the megaflow cached for exactly `key`, if it is still installed.
    #[inline]
    pub fn cache_lookup(&self, key: &FlowKey, hash: u64) -> Option<MegaflowRef> {
        let r = MegaflowRef::unpack(self.cache.get(key, hash)?);
        self.is_current(r).then_some(r)
    }

    #[inline(always)]
    fn is_current(&self, r: MegaflowRef) -> bool {
        self.slots.get(r.id as usize).is_some_and(|s| s.generation.load(Ordering::Acquire) == r.generation)
    }

    /// Tier 1 for a batch: `found[i]` is the megaflow cached for `keys[i]` (still installed).
    #[inline]
    pub fn cache_lookup_batch(&self, keys: &[FlowKey], hashes: &[u64], found: &mut [Option<MegaflowRef>]) {
        let mut raw = [None; 64];
        let n = keys.len().min(64);
        self.cache.get_batch(&keys[..n], &hashes[..n], &mut raw[..n]);
        self.current_refs(&raw[..n], found);
    }

    /// `found[i]`: the megaflow packed in `raw[i]`, if it is still installed. The slots are
    /// prefetched first, so their misses overlap.
    #[inline(always)]
    fn current_refs(&self, raw: &[Option<u64>], found: &mut [Option<MegaflowRef>]) {
        for r in raw.iter().flatten() {
            if let Some(slot) = self.slots.get(MegaflowRef::unpack(*r).id as usize) {
                crate::dpdk::prefetch(slot);
            }
        }
        for (f, r) in found.iter_mut().zip(raw) {
            *f = r.map(MegaflowRef::unpack).filter(|r| self.is_current(*r));
        }
    }

    /// Refreshes `view` if the writer changed the subtable list since it was taken.
    #[inline]
    pub fn refresh(&self, view: &mut SubtableView) {
        // The writer starts the counter at 2, so a fresh view (seq 0) always loads.
        if self.subtables_seq.load(Ordering::Acquire) == view.seq {
            return;
        }
        loop {
            let seq = self.subtables_seq.load(Ordering::Acquire);
            if seq & 1 == 1 {
                crate::sync::spin_loop();
                continue;
            }
            let n = (self.subtable_count.load(Ordering::Relaxed) as usize).min(MAX_SUBTABLES);
            let mut list = Vec::with_capacity(n);
            for i in 0..n {
                let slot = &self.subtable_slots[self.subtable_order[i].load(Ordering::Relaxed) as usize];
                let mut mask = FlowKey::ZERO;
                for (w, a) in slot.mask.iter().enumerate() {
                    mask.set_word(w, a.load(Ordering::Relaxed));
                }
                list.push(Subtable::new(mask, slot.tag.load(Ordering::Relaxed)));
            }
            fence(Ordering::Acquire);
            if self.subtables_seq.load(Ordering::Relaxed) == seq {
                *view = SubtableView { seq, list };
                return;
            }
        }
    }

    /// Tier 2: the megaflow for `key` in subtable `st`.
    #[inline]
    pub fn megaflow_lookup_in(&self, st: &Subtable, key: &FlowKey) -> Option<MegaflowRef> {
        let (m, h) = st.masked(key);
        let r = MegaflowRef::unpack(self.megaflows.get(&m, h)?);
        self.is_current(r).then_some(r)
    }

    /// Tier 2 for a batch in one subtable: `found[i]` is the megaflow of `keys[i]` in `st`, if
    /// any. `scratch` holds the masked keys (as many as `keys`): all are masked and hashed, their
    /// buckets prefetched, then looked up together, so the loads overlap. Consecutive keys with
    /// the same masked key (flows of one wide megaflow, arriving together) are looked up once.
    #[inline]
    pub fn megaflow_lookup_batch_in(
        &self,
        st: &Subtable,
        keys: &[FlowKey],
        scratch: &mut [FlowKey],
        found: &mut [Option<MegaflowRef>],
    ) {
        let n = keys.len().min(scratch.len()).min(found.len()).min(64);
        let mut hashes = [0u64; 64];
        // `scratch[..distinct]` holds the distinct masked keys; `of[i]` is key i's among them.
        let mut of = [0u8; 64];
        let mut distinct = 0;
        for i in 0..n {
            // The predecessor's megaflow key (a run of one flow, or of one wide megaflow): not
            // masked again. Only the words the mask keeps are compared.
            if i > 0 && st.same_masked(&keys[i], &keys[i - 1]) {
                of[i] = of[i - 1];
                continue;
            }
            let h = st.mask_into(&keys[i], &mut scratch[distinct]);
            hashes[distinct] = h;
            self.megaflows.prefetch(h);
            of[i] = distinct as u8;
            distinct += 1;
        }
        let mut raw = [None; 64];
        self.megaflows.get_batch(&scratch[..distinct], &hashes[..distinct], &mut raw[..distinct]);
        let mut distinct_found = [None; 64];
        self.current_refs(&raw[..distinct], &mut distinct_found[..distinct]);
        for (f, &d) in found[..n].iter_mut().zip(&of[..n]) {
            *f = distinct_found[usize::from(d)];
        }
    }

    /// Tier 2: the megaflow for `key`, probing the subtables of `view` in order.
    #[inline]
    pub fn megaflow_lookup(&self, view: &SubtableView, key: &FlowKey) -> Option<MegaflowRef> {
        view.list.iter().find_map(|st| self.megaflow_lookup_in(st, key))
    }

    /// Copies the actions of megaflow `r` into `out`; false if it was removed meanwhile.
    #[inline]
    pub fn actions(&self, r: MegaflowRef, out: &mut ActionWords) -> bool {
        let Some(slot) = self.slots.get(r.id as usize) else { return false };
        if slot.generation.load(Ordering::Acquire) != r.generation {
            return false;
        }
        let len = (slot.len.load(Ordering::Relaxed) as usize).min(ACTION_WORDS);
        for (o, w) in out.words.iter_mut().zip(&slot.words[..len]) {
            *o = w.load(Ordering::Relaxed);
        }
        out.len = len;
        true
    }

    /// Credits `packets` packets and `bytes` bytes to megaflow `id`, from PMD `pmd` (its own
    /// counters: plain loads and stores).
    #[inline]
    pub fn credit(&self, pmd: usize, id: u32, packets: u64, bytes: u64, tsc: u64) {
        let Some(s) = self.stats.get(pmd).and_then(|s| s.get(id as usize)) else { return };
        s.packets.store(s.packets.load(Ordering::Relaxed) + packets, Ordering::Relaxed);
        s.bytes.store(s.bytes.load(Ordering::Relaxed) + bytes, Ordering::Relaxed);
        s.used_tsc.store(tsc, Ordering::Relaxed);
    }
}
