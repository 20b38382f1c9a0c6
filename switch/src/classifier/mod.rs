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
//! Threads: owned by one thread (the control core, or a snapshot read by PMDs); not concurrent.

pub mod reference;

use std::cmp::Reverse;

use ferrovs_config::flow::{FlowKey, Match};
use rustc_hash::FxHashMap;

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
    len: usize,
}

impl<T> Subtable<T> {
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
                self.subtables.push(Subtable {
                    mask: matches.mask,
                    max_priority: priority,
                    buckets: FxHashMap::default(),
                    len: 0,
                });
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
