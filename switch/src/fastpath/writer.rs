//! The control core's side of the fast-path tables: installing and removing megaflows, filling
//! the flow cache, reading megaflow counters, and reclaiming what PMDs no longer see.

use std::collections::VecDeque;
use std::sync::Arc;

use ferrovs_config::flow::FlowKey;

use super::actions::encode_translation;
use super::{
    ACTION_WORDS, FlowTables, MAX_SUBTABLES, MegaflowRef, MegaflowSlot, MegaflowStats, SIMPLE_MODE_FLOWS, SubtableSlot,
    TAG_OFFSET,
};
use crate::cache::{CuckooWriter, Full, hash_key};
use crate::dpdk::HugeSlice;
use crate::ofproto::{RuleList, Translation};
use crate::sync::qsbr::Qsbr;
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// Why a megaflow was not installed (its packets are then handled by the control core).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InstallError {
    /// More action words than a megaflow holds.
    #[error("actions too long for a megaflow")]
    TooManyActions,
    /// Every megaflow slot is in use.
    #[error("megaflow table full")]
    TableFull,
    /// Every subtable (distinct mask) is in use.
    #[error("too many distinct megaflow masks")]
    TooManyMasks,
}

/// What the writer knows about an installed megaflow.
#[derive(Debug, Clone)]
pub struct MegaflowRecord {
    /// Its reference (id and generation).
    pub handle: MegaflowRef,
    /// Masked key (without the subtable tag).
    pub key: FlowKey,
    /// Mask.
    pub mask: FlowKey,
    /// What it does (datapath actions, or why it drops).
    pub translation: Translation,
    /// The OpenFlow rules its translation went through (they are credited its packets).
    pub rules: RuleList,
    subtable: usize,
}

/// What [`TablesWriter::install_or_find`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    /// Installed this new megaflow.
    New(MegaflowRef),
    /// Found this one already installed (same masked key, same mask).
    Existing(MegaflowRef),
}

impl Installed {
    /// The megaflow, new or not.
    pub fn megaflow(self) -> MegaflowRef {
        match self {
            Self::New(r) | Self::Existing(r) => r,
        }
    }
}

#[derive(Debug, Clone)]
struct SubtableRec {
    mask: FlowKey,
    tag: u32,
    megaflows: usize,
}

/// The single writer of the fast-path tables (owned by the control core).
pub struct TablesWriter {
    tables: Arc<FlowTables>,
    cache: CuckooWriter,
    megaflows: CuckooWriter,
    /// By id. Written in full when the tables are made (on huge pages when there are some):
    /// an install then writes memory that is already mapped (fresh pages, faulted in one by
    /// one as a miss storm installs, had cost the control core a quarter of its time).
    records: HugeSlice<Option<MegaflowRecord>>,
    /// Per PMD, by id: the (packets, bytes) of its counters already credited. Dense arrays
    /// rather than record fields, so housekeeping streams through them and touches a record
    /// only when its megaflow had traffic.
    seen: Vec<HugeSlice<[u64; 2]>>,
    /// By id: the last time any PMD (or the install) used the megaflow, TSC.
    used: HugeSlice<u64>,
    /// Ids of the installed megaflows, densely (so walks cost what is installed, not the table's
    /// capacity), and each id's position in it.
    live: Vec<u32>,
    live_pos: Vec<u32>,
    free_ids: Vec<u32>,
    retired_ids: VecDeque<(u64, u32)>,
    subtables: Vec<Option<SubtableRec>>,
    retired_subtables: VecDeque<(u64, usize)>,
    /// Bumped for each new use of a subtable slot, so a reused slot gets a new tag.
    subtable_gens: Vec<u16>,
    words: Vec<u64>,
    evict_cursor: usize,
    /// Subtable slots in the rank order last published (the writer's own lookups use it too).
    ranked: Vec<usize>,
}

impl TablesWriter {
    /// Empty tables: a flow cache of `cache_capacity` entries, room for `max_megaflows`
    /// megaflows, and counters for `readers` PMDs (which are also the QSBR readers 0..readers).
    pub fn new(cache_capacity: usize, max_megaflows: usize, readers: usize) -> Self {
        let qsbr = Arc::new(Qsbr::new(readers));
        let cache = CuckooWriter::new(cache_capacity.max(1), Arc::clone(&qsbr));
        let megaflows = CuckooWriter::new(max_megaflows.max(1), Arc::clone(&qsbr));
        let slots = HugeSlice::new(max_megaflows.max(1), |_| MegaflowSlot {
            generation: AtomicU32::new(1),
            len: AtomicU32::new(0),
            words: std::array::from_fn(|_| AtomicU64::new(0)),
        });
        let stats = (0..readers).map(|_| HugeSlice::new(max_megaflows.max(1), |_| MegaflowStats::default())).collect();
        let tables = Arc::new(FlowTables {
            cache: Arc::clone(cache.map()),
            megaflows: Arc::clone(megaflows.map()),
            slots,
            stats,
            subtables_seq: AtomicU32::new(2),
            subtable_count: AtomicU32::new(0),
            subtable_order: (0..MAX_SUBTABLES).map(|_| AtomicU32::new(0)).collect(),
            subtable_slots: (0..MAX_SUBTABLES)
                .map(|_| SubtableSlot { mask: std::array::from_fn(|_| AtomicU64::new(0)), tag: AtomicU32::new(0) })
                .collect(),
            qsbr,
        });
        Self {
            tables,
            cache,
            megaflows,
            records: HugeSlice::new(max_megaflows.max(1), |_| None),
            seen: (0..readers).map(|_| HugeSlice::new(max_megaflows.max(1), |_| [0; 2])).collect(),
            used: HugeSlice::new(max_megaflows.max(1), |_| 0),
            live: Vec::new(),
            live_pos: vec![u32::MAX; max_megaflows.max(1)],
            free_ids: (0..max_megaflows.max(1) as u32).rev().collect(),
            retired_ids: VecDeque::new(),
            subtables: vec![None; MAX_SUBTABLES],
            retired_subtables: VecDeque::new(),
            subtable_gens: vec![0; MAX_SUBTABLES],
            words: Vec::with_capacity(ACTION_WORDS),
            evict_cursor: 0,
            ranked: Vec::new(),
        }
    }

    /// The read side, for the PMDs.
    pub fn tables(&self) -> &Arc<FlowTables> {
        &self.tables
    }

    /// Installed megaflows.
    pub fn megaflow_count(&self) -> usize {
        self.megaflows.len()
    }

    /// Flow cache entries (some may be stale until the next sweep).
    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }

    /// Distinct masks in use.
    pub fn subtable_count(&self) -> usize {
        self.subtables.iter().flatten().count()
    }

    /// Every installed megaflow.
    pub fn records(&self) -> impl Iterator<Item = &MegaflowRecord> {
        self.live.iter().filter_map(|&id| self.records[id as usize].as_ref())
    }

    /// The megaflow installed in slot `id`, if any.
    pub fn record(&self, id: u32) -> Option<&MegaflowRecord> {
        self.records.get(id as usize)?.as_ref()
    }

    fn tagged(key: &FlowKey, mask: &FlowKey, tag: u32) -> (FlowKey, u64) {
        let mut m = key.masked(mask);
        m.0[TAG_OFFSET..TAG_OFFSET + 4].copy_from_slice(&tag.to_be_bytes());
        (m, hash_key(&m))
    }

    /// Hints the CPU to load what [`lookup`](Self::lookup) of `key` and a later cache insert
    /// of it (whose hash is `hash`) will read: do it for a batch of keys first.
    pub fn prefetch_for(&self, key: &FlowKey, hash: u64) {
        if !self.cache_bypassed() {
            self.cache.prefetch(hash);
        }
        // The top-ranked subtables only: with many, hashing for all would cost more than it saves.
        for st in self.ranked_subtables().take(4) {
            self.megaflows.prefetch(Self::tagged(key, &st.mask, st.tag).1);
        }
    }

    /// The installed megaflow that matches `key`, if any.
    pub fn lookup(&self, key: &FlowKey) -> Option<MegaflowRef> {
        self.ranked_subtables().find_map(|st| self.probe(key, st))
    }

    fn ranked_subtables(&self) -> impl Iterator<Item = &SubtableRec> {
        self.ranked.iter().filter_map(|&i| self.subtables[i].as_ref())
    }

    /// The installed megaflow for `key` in subtable `st`, if any.
    fn probe(&self, key: &FlowKey, st: &SubtableRec) -> Option<MegaflowRef> {
        let (m, h) = Self::tagged(key, &st.mask, st.tag);
        self.megaflows.get(&m, h).map(MegaflowRef::unpack).filter(|r| self.tables.is_current(*r))
    }

    /// Returns retired ids and subtable slots whose readers have all moved on.
    fn reclaim(&mut self) {
        let q = &self.tables.qsbr;
        while let Some(&(e, id)) = self.retired_ids.front() {
            if !q.passed(e) {
                break;
            }
            self.retired_ids.pop_front();
            self.free_ids.push(id);
        }
        while let Some(&(e, slot)) = self.retired_subtables.front() {
            if !q.passed(e) {
                break;
            }
            self.retired_subtables.pop_front();
            self.subtable_gens[slot] = self.subtable_gens[slot].wrapping_add(1);
        }
    }

    /// A subtable slot neither in use nor waiting for the PMDs to leave it.
    fn free_subtable_slot(&self) -> Option<usize> {
        (0..MAX_SUBTABLES)
            .find(|i| self.subtables[*i].is_none() && !self.retired_subtables.iter().any(|&(_, s)| s == *i))
    }

    /// The subtable slot for `mask`, creating it if needed.
    fn subtable_for(&mut self, mask: &FlowKey) -> Result<usize, InstallError> {
        if let Some(i) = self.subtables.iter().position(|s| s.as_ref().is_some_and(|s| s.mask == *mask)) {
            return Ok(i);
        }
        // Slots of dropped masks come back once every PMD has moved past them: collect those
        // first, and if none is free yet but some are on their way, wait for the PMDs.
        self.reclaim();
        let i = match self.free_subtable_slot() {
            Some(i) => i,
            None if !self.retired_subtables.is_empty() => {
                self.tables.qsbr.synchronize();
                self.reclaim();
                self.free_subtable_slot().ok_or(InstallError::TooManyMasks)?
            }
            None => return Err(InstallError::TooManyMasks),
        };
        let tag = ((i as u32) << 16) | u32::from(self.subtable_gens[i]);
        let slot = &self.tables.subtable_slots[i];
        for (w, a) in slot.mask.iter().enumerate() {
            a.store(mask.word(w), Ordering::Relaxed);
        }
        slot.tag.store(tag, Ordering::Relaxed);
        self.subtables[i] = Some(SubtableRec { mask: *mask, tag, megaflows: 0 });
        Ok(i)
    }

    /// Publishes the subtable list in rank order (most megaflows first).
    fn publish_subtables(&mut self) {
        let mut ranked: Vec<(usize, usize)> =
            self.subtables.iter().enumerate().filter_map(|(i, s)| s.as_ref().map(|s| (i, s.megaflows))).collect();
        ranked.sort_by_key(|&(i, n)| (std::cmp::Reverse(n), i));
        let t = &self.tables;
        let seq = t.subtables_seq.load(Ordering::Relaxed);
        t.subtables_seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        crate::sync::fence(Ordering::Release);
        for (pos, (i, _)) in ranked.iter().enumerate() {
            t.subtable_order[pos].store(*i as u32, Ordering::Relaxed);
        }
        t.subtable_count.store(ranked.len() as u32, Ordering::Relaxed);
        t.subtables_seq.store(seq.wrapping_add(2), Ordering::Release);
        self.ranked = ranked.into_iter().map(|(i, _)| i).collect();
    }

    /// Installs a megaflow: packets whose key agrees with `key` on the bits of `mask` get
    /// `translation`. Returns its reference, or that of the megaflow already installed with the
    /// same masked key and mask (and installs nothing).
    pub fn install(
        &mut self,
        key: &FlowKey,
        mask: &FlowKey,
        translation: Translation,
        rules: RuleList,
    ) -> Result<MegaflowRef, InstallError> {
        self.install_or_find(key, mask, translation, rules).map(Installed::megaflow)
    }

    /// [`install`](Self::install), saying whether the megaflow is new. One probe of the
    /// megaflow table both finds an installed one and, if none, tells the insert that the key is
    /// absent (in a miss storm each probe is a cache miss or two on the control core).
    pub fn install_or_find(
        &mut self,
        key: &FlowKey,
        mask: &FlowKey,
        translation: Translation,
        rules: RuleList,
    ) -> Result<Installed, InstallError> {
        self.words.clear();
        encode_translation(&translation, &mut self.words);
        if self.words.len() > ACTION_WORDS {
            return Err(InstallError::TooManyActions);
        }
        let st = self.subtable_for(mask)?;
        let tag = self.subtables[st].as_ref().expect("just found").tag;
        let (m, h) = Self::tagged(key, mask, tag);
        let present = self.megaflows.get(&m, h).map(MegaflowRef::unpack);
        if let Some(r) = present.filter(|r| self.tables.is_current(*r)) {
            return Ok(Installed::Existing(r));
        }
        if self.free_ids.is_empty() {
            self.reclaim();
        }
        let Some(id) = self.free_ids.pop() else {
            self.drop_subtable_if_empty(st);
            return Err(InstallError::TableFull);
        };
        // The next install's slot and record: in a miss storm each new id's lines are cold, and
        // reading the slot's generation then waited on memory (15 % of the control core).
        if let Some(&next) = self.free_ids.last() {
            let next = next as usize;
            crate::dpdk::prefetch(&self.tables.slots[next].generation);
            crate::dpdk::prefetch_all(&self.records[next]);
            crate::dpdk::prefetch(&self.used[next]);
            crate::dpdk::prefetch(&self.live_pos[next]);
            for seen in &self.seen {
                crate::dpdk::prefetch(&seen[next]);
            }
            self.megaflows.prefetch_next_entry();
        }
        let slot = &self.tables.slots[id as usize];
        for (a, w) in slot.words.iter().zip(&self.words) {
            a.store(*w, Ordering::Relaxed);
        }
        slot.len.store(self.words.len() as u32, Ordering::Relaxed);
        let handle = MegaflowRef { id, generation: slot.generation.load(Ordering::Relaxed) };
        // The map publishes the entry with Release: the words above are visible to any PMD
        // that finds it. (A stale entry for the key, never expected, is overwritten.)
        let inserted = match present {
            None => self.megaflows.insert_new(&m, h, handle.pack()),
            Some(_) => self.megaflows.insert(&m, h, handle.pack()),
        };
        if let Err(Full) = inserted {
            self.free_ids.push(id);
            self.drop_subtable_if_empty(st);
            return Err(InstallError::TableFull);
        }
        let i = id as usize;
        for pmd in 0..self.seen.len() {
            self.seen[pmd][i] = self.pmd_counters(pmd, id);
        }
        self.used[i] = crate::dpdk::rdtsc();
        self.records[i] =
            Some(MegaflowRecord { handle, key: key.masked(mask), mask: *mask, translation, rules, subtable: st });
        self.live_pos[id as usize] = self.live.len() as u32;
        self.live.push(id);
        let rec = self.subtables[st].as_mut().expect("exists");
        rec.megaflows += 1;
        // Re-rank on a new subtable and whenever a count crosses a power of two (cheap, rare).
        if rec.megaflows == 1 || rec.megaflows.is_power_of_two() {
            self.publish_subtables();
        }
        Ok(Installed::New(handle))
    }

    fn pmd_counters(&self, pmd: usize, id: u32) -> [u64; 2] {
        let s = &self.tables.stats[pmd][id as usize];
        [s.packets.load(Ordering::Relaxed), s.bytes.load(Ordering::Relaxed)]
    }

    /// Removes megaflow `id`. PMDs may still use it until they next pass a quiescent point: call
    /// [`synchronize`](Self::synchronize) before relying on its absence.
    pub fn remove(&mut self, id: u32) -> Option<MegaflowRecord> {
        let rec = self.records.get_mut(id as usize)?.take()?;
        let pos = std::mem::replace(&mut self.live_pos[id as usize], u32::MAX) as usize;
        self.live.swap_remove(pos);
        if let Some(&moved) = self.live.get(pos) {
            self.live_pos[moved as usize] = pos as u32;
        }
        let tag = self.subtables[rec.subtable].as_ref().expect("subtable of a live megaflow").tag;
        let (m, h) = Self::tagged(&rec.key, &rec.mask, tag);
        self.megaflows.remove(&m, h);
        // A new generation: every cache entry and in-flight reference to the old one is stale.
        self.tables.slots[id as usize].generation.fetch_add(1, Ordering::Release);
        let epoch = self.tables.qsbr.advance();
        self.retired_ids.push_back((epoch, id));
        if let Some(st) = self.subtables[rec.subtable].as_mut() {
            st.megaflows -= 1;
        }
        self.drop_subtable_if_empty(rec.subtable);
        Some(rec)
    }

    fn drop_subtable_if_empty(&mut self, st: usize) {
        if self.subtables[st].as_ref().is_some_and(|s| s.megaflows == 0) {
            self.subtables[st] = None;
            self.publish_subtables();
            let epoch = self.tables.qsbr.advance();
            self.retired_subtables.push_back((epoch, st));
        }
    }

    /// Whether the PMDs skip the flow cache (one mask and more than [`SIMPLE_MODE_FLOWS`]
    /// cached flows: see `pmd`), so that a new flow's cache entry would never be read.
    pub fn cache_bypassed(&self) -> bool {
        self.ranked.len() == 1 && self.cache.len() > SIMPLE_MODE_FLOWS
    }

    /// Caches `key` -> `megaflow` (evicting another entry of the same bucket if full).
    pub fn cache_insert(&mut self, key: &FlowKey, hash: u64, megaflow: MegaflowRef) {
        if !self.tables.is_current(megaflow) {
            return;
        }
        if self.cache.insert(key, hash, megaflow.pack()).is_err() {
            self.evict_cursor = self.evict_cursor.wrapping_add(1);
            self.cache.evict_one(hash, self.evict_cursor);
            let _ = self.cache.insert(key, hash, megaflow.pack());
        }
    }

    /// Drops cache entries whose megaflow is gone.
    pub fn sweep_cache(&mut self) -> usize {
        let before = self.cache.len();
        let tables = Arc::clone(&self.tables);
        self.cache.retain(|_, v| tables.is_current(MegaflowRef::unpack(v)));
        before - self.cache.len()
    }

    /// Packets and bytes PMDs sent through megaflow `id` since the last call (and notes their
    /// latest use, see [`used_tsc`](Self::used_tsc)).
    pub fn take_counts(&mut self, id: u32) -> (u64, u64) {
        let i = id as usize;
        if self.live_pos.get(i).is_none_or(|&p| p == u32::MAX) {
            return (0, 0);
        }
        let (mut p, mut b) = (0, 0);
        for pmd in 0..self.seen.len() {
            let [np, nb] = self.pmd_counters(pmd, id);
            let [sp, sb] = self.seen[pmd][i];
            if np != sp {
                self.used[i] = self.used[i].max(self.tables.stats[pmd][i].used_tsc.load(Ordering::Relaxed));
            }
            p += np.wrapping_sub(sp);
            b += nb.wrapping_sub(sb);
            self.seen[pmd][i] = [np, nb];
        }
        (p, b)
    }

    /// When megaflow `id` was last used (by a PMD, as of the last [`take_counts`](Self::take_counts),
    /// or installed), TSC.
    pub fn used_tsc(&self, id: u32) -> u64 {
        self.used.get(id as usize).copied().unwrap_or(0)
    }

    /// Installed megaflows, for walks in steps: the id at position `pos` of a dense list
    /// (removing a megaflow moves the last one into its place).
    pub fn live_id(&self, pos: usize) -> Option<u32> {
        self.live.get(pos).copied()
    }

    /// Waits until every PMD has passed a quiescent point: after it, nothing removed before
    /// the call is used any more.
    pub fn synchronize(&self) {
        self.tables.qsbr.synchronize();
    }
}
