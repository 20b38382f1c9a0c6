//! Tuple-space search: the OpenFlow rule classifier.
//!
//! Rules are grouped by mask into subtables; in a subtable, a rule is found by hashing the packet's
//! key under that mask. Subtables are kept in order of the highest priority they hold, so a lookup
//! can stop as soon as the next subtable cannot beat the best match found. Among matching rules
//! the highest priority wins; among equal priorities, the rule inserted first (the same rule as
//! the linear [`reference`] model, which the property tests compare against).
//!
//! [`Classifier::lookup_wc`] also reports which key bits the answer depended on (the union of the
//! masks of every subtable probed): any key that agrees on those bits gets the same answer. That
//! is what makes a megaflow safe to cache.
//!
//! Lookups are staged, as in Open vSwitch: a subtable first checks whether any of its rules agrees
//! with the key on the L2 (and metadata) bits of its mask, then on L2 + L3, and only then on the
//! whole mask. A key that fails at a stage depended only on that stage's bits, so the megaflow
//! leaves the later ones (say, the transport ports) wildcarded: far fewer megaflows when rules
//! match ports only under some prefixes.
//!
//! Threads: owned by one thread (the control core, or a snapshot read by PMDs); not concurrent.

pub mod reference;

use std::cmp::Reverse;

use ferrovs_config::flow::{FlowKey, Match, off};
use rustc_hash::FxHashMap;

/// Bytes of the key checked by the stages before the last: metadata and L2, then L3 too. What no
/// stage names (the transport ports, TCP flags) is checked only with the whole mask.
const STAGES: [&[(usize, usize)]; 2] = [
    &[(off::IN_PORT, off::TCP_FLAGS), (off::DL_DST, off::TP_SRC)],
    &[(off::IN_PORT, off::TCP_FLAGS), (off::DL_DST, off::TP_SRC), (off::NW_SRC, off::ARP_THA + 6)],
];

/// The bytes of `STAGES[s]` as a mask.
fn stage_bytes(s: usize) -> FlowKey {
    let mut m = FlowKey::ZERO;
    for &(from, to) in STAGES[s] {
        m.0[from..to].fill(0xff);
    }
    m
}

/// One stage of a subtable: its part of the mask, and how many rules have each masked value.
#[derive(Debug, Clone)]
struct Stage {
    mask: FlowKey,
    keys: FxHashMap<FlowKey, u32>,
}

/// A rule in the classifier.
#[derive(Debug, Clone)]
pub struct Entry<T> {
    /// Its match.
    pub matches: Match,
    /// Its priority.
    pub priority: u16,
    /// Insertion order (ties between equal priorities go to the lower).
    pub seq: u64,
    /// What the caller stored.
    pub value: T,
}

#[derive(Debug, Clone)]
struct Subtable<T> {
    mask: FlowKey,
    max_priority: u16,
    /// Masked key -> entries, highest priority first.
    buckets: FxHashMap<FlowKey, Vec<Entry<T>>>,
    /// The stages before the whole mask that check fewer bits than the next one.
    stages: Vec<Stage>,
    len: usize,
}

impl<T> Subtable<T> {
    fn new(mask: FlowKey, priority: u16) -> Self {
        let mut stages: Vec<Stage> = Vec::new();
        for s in 0..STAGES.len() {
            let m = mask.masked(&stage_bytes(s));
            let adds_bits = stages.last().map_or(m != FlowKey::ZERO, |prev| prev.mask != m);
            if adds_bits && m != mask {
                stages.push(Stage { mask: m, keys: FxHashMap::default() });
            }
        }
        Self { mask, max_priority: priority, buckets: FxHashMap::default(), stages, len: 0 }
    }

    /// Counts (or, with `add` false, uncounts) one rule with masked key `key` in every stage.
    fn track_stages(&mut self, key: &FlowKey, add: bool) {
        for st in &mut self.stages {
            let k = key.masked(&st.mask);
            if add {
                *st.keys.entry(k).or_insert(0) += 1;
            } else if let Some(n) = st.keys.get_mut(&k) {
                *n -= 1;
                if *n == 0 {
                    st.keys.remove(&k);
                }
            }
        }
    }

    fn recompute_max(&mut self) {
        self.max_priority = self.buckets.values().filter_map(|v| v.first()).map(|e| e.priority).max().unwrap_or(0);
    }
}

/// Rules with wildcards, looked up by tuple-space search.
#[derive(Debug, Clone)]
pub struct Classifier<T> {
    subtables: Vec<Subtable<T>>,
    next_seq: u64,
    len: usize,
}

impl<T> Default for Classifier<T> {
    fn default() -> Self {
        Self { subtables: Vec::new(), next_seq: 0, len: 0 }
    }
}

impl<T> Classifier<T> {
    /// An empty classifier.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many rules.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many distinct masks (subtables).
    pub fn subtable_count(&self) -> usize {
        self.subtables.len()
    }

    /// Adds a rule, or replaces the value of the rule with the same match and priority (as
    /// OpenFlow's add-flow does). Returns the replaced value.
    pub fn insert(&mut self, matches: Match, priority: u16, value: T) -> Option<T> {
        let matches = Match { key: matches.key.masked(&matches.mask), mask: matches.mask };
        let idx = match self.subtables.iter().position(|s| s.mask == matches.mask) {
            Some(i) => i,
            None => {
                self.subtables.push(Subtable::new(matches.mask, priority));
                self.subtables.len() - 1
            }
        };
        let st = &mut self.subtables[idx];
        let bucket = st.buckets.entry(matches.key).or_default();
        if let Some(e) = bucket.iter_mut().find(|e| e.priority == priority) {
            return Some(std::mem::replace(&mut e.value, value));
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let at = bucket.partition_point(|e| e.priority > priority);
        bucket.insert(at, Entry { matches, priority, seq, value });
        st.track_stages(&matches.key, true);
        st.len += 1;
        st.max_priority = st.max_priority.max(priority);
        self.len += 1;
        self.rank();
        None
    }

    /// Removes the rule with exactly this match and priority.
    pub fn remove(&mut self, matches: &Match, priority: u16) -> Option<T> {
        let key = matches.key.masked(&matches.mask);
        let idx = self.subtables.iter().position(|s| s.mask == matches.mask)?;
        let st = &mut self.subtables[idx];
        let bucket = st.buckets.get_mut(&key)?;
        let at = bucket.iter().position(|e| e.priority == priority)?;
        let entry = bucket.remove(at);
        if bucket.is_empty() {
            st.buckets.remove(&key);
        }
        st.track_stages(&key, false);
        st.len -= 1;
        self.len -= 1;
        if st.len == 0 {
            self.subtables.remove(idx);
        } else {
            st.recompute_max();
        }
        self.rank();
        Some(entry.value)
    }

    /// The rule with exactly this match and priority.
    pub fn get(&self, matches: &Match, priority: u16) -> Option<&Entry<T>> {
        let key = matches.key.masked(&matches.mask);
        let st = self.subtables.iter().find(|s| s.mask == matches.mask)?;
        st.buckets.get(&key)?.iter().find(|e| e.priority == priority)
    }

    /// Keeps subtables in order of their best priority, so lookups can stop early.
    fn rank(&mut self) {
        self.subtables.sort_by_key(|s| Reverse(s.max_priority));
    }

    /// The best rule for `key`.
    #[inline]
    pub fn lookup(&self, key: &FlowKey) -> Option<&Entry<T>> {
        self.search(key, None)
    }

    /// The best rule for `key`, and in `wc` (or-ed in) every key bit the answer depended on.
    #[inline]
    pub fn lookup_wc(&self, key: &FlowKey, wc: &mut FlowKey) -> Option<&Entry<T>> {
        self.search(key, Some(wc))
    }

    fn search(&self, key: &FlowKey, mut wc: Option<&mut FlowKey>) -> Option<&Entry<T>> {
        let mut best: Option<&Entry<T>> = None;
        for st in &self.subtables {
            if best.is_some_and(|b| st.max_priority < b.priority) {
                break;
            }
            // A stage no rule agrees with ends the search here, depending on its bits only.
            if let Some(failed) = st.stages.iter().find(|s| !s.keys.contains_key(&key.masked(&s.mask))) {
                if let Some(wc) = wc.as_deref_mut() {
                    *wc = wc.or(&failed.mask);
                }
                continue;
            }
            if let Some(wc) = wc.as_deref_mut() {
                *wc = wc.or(&st.mask);
            }
            let Some(bucket) = st.buckets.get(&key.masked(&st.mask)) else {
                continue;
            };
            // The bucket is sorted by priority; the first entry that can still win is the one.
            let candidate = &bucket[0];
            let better =
                best.is_none_or(|b| (candidate.priority, Reverse(candidate.seq)) > (b.priority, Reverse(b.seq)));
            if better {
                best = Some(candidate);
            }
        }
        best
    }

    /// Every rule, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Entry<T>> {
        self.subtables.iter().flat_map(|s| s.buckets.values().flatten())
    }
}

#[cfg(test)]
mod tests;
