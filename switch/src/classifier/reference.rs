//! The classifier's reference model: a list scanned in full. Slow and obviously right; the
//! property tests check the tuple-space classifier against it.

use std::cmp::Reverse;

use ferrovs_config::flow::{FlowKey, Match};

/// Rules in a list.
#[derive(Debug, Clone, Default)]
pub struct LinearClassifier<T> {
    rules: Vec<(Match, u16, u64, T)>,
    next_seq: u64,
}

impl<T> LinearClassifier<T> {
    /// Adds a rule, replacing one with the same match and priority.
    pub fn insert(&mut self, m: Match, priority: u16, value: T) {
        let m = Match { key: m.key.masked(&m.mask), mask: m.mask };
        if let Some(r) = self.rules.iter_mut().find(|r| r.0 == m && r.1 == priority) {
            r.3 = value;
            return;
        }
        self.rules.push((m, priority, self.next_seq, value));
        self.next_seq += 1;
    }

    /// Removes the rule with this match and priority.
    pub fn remove(&mut self, m: &Match, priority: u16) -> Option<T> {
        let m = Match { key: m.key.masked(&m.mask), mask: m.mask };
        let i = self.rules.iter().position(|r| r.0 == m && r.1 == priority)?;
        Some(self.rules.remove(i).3)
    }

    /// The highest-priority matching rule; the earliest inserted among equals.
    pub fn lookup(&self, key: &FlowKey) -> Option<&T> {
        self.rules.iter().filter(|r| r.0.matches(key)).max_by_key(|r| (r.1, Reverse(r.2))).map(|r| &r.3)
    }
}
