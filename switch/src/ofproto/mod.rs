//! The OpenFlow pipeline: rule tables (one tuple-space classifier each), their owner that adds
//! and expires rules, and the translation of a flow key into datapath actions (`xlate`).
//!
//! Threads: the control core owns [`Ofproto`]; PMDs never look at it (they use megaflows the
//! slow path derived from it). Rules are tried in priority order, highest first; among
//! overlapping rules of equal priority the one added first wins (OpenFlow leaves this undefined;
//! we make it deterministic).

mod apply;
mod rule;
pub mod xlate;

use std::sync::Arc;

use ferrovs_config::PortVlan;
use ferrovs_config::flow::{FlowRule, OfPort};
use rustc_hash::FxHashMap;

pub use apply::apply_to_bytes;
pub use rule::{OfAction, Rule, RuleStats};
pub use xlate::{
    Credit, DpAction, DpActions, MAX_DP_ACTIONS, MacAccess, MacDeps, RuleList, Translation, XlateOptions, display_dp,
    translate,
};

use crate::classifier::Classifier;
use crate::packet::PortIdx;

/// Maps OpenFlow port numbers to the data path's dense port indices and back, and holds each
/// port's VLAN settings (for NORMAL).
#[derive(Debug, Clone, Default)]
pub struct PortTable {
    ofports: Vec<OfPort>,
    index: FxHashMap<OfPort, PortIdx>,
    vlans: Vec<PortVlan>,
}

impl PortTable {
    /// A table of ports given by their OpenFlow numbers, in index order, each a trunk of every VLAN.
    pub fn new(ofports: Vec<OfPort>) -> Self {
        let vlans = ofports.iter().map(|_| PortVlan::default()).collect();
        Self::with_vlans(ofports, vlans)
    }

    /// A table of ports given by their OpenFlow numbers and VLAN settings, in index order.
    pub fn with_vlans(ofports: Vec<OfPort>, vlans: Vec<PortVlan>) -> Self {
        assert_eq!(ofports.len(), vlans.len(), "a VLAN setting per port");
        let index = ofports.iter().enumerate().map(|(i, p)| (*p, PortIdx(i as u16))).collect();
        Self { ofports, index, vlans }
    }

    /// The VLAN settings of port `idx`.
    #[inline]
    pub fn vlan(&self, idx: PortIdx) -> &PortVlan {
        &self.vlans[idx.index()]
    }

    /// The index of port `ofport`.
    #[inline]
    pub fn index_of(&self, ofport: OfPort) -> Option<PortIdx> {
        self.index.get(&ofport).copied()
    }

    /// The OpenFlow number of port `idx`.
    pub fn ofport_of(&self, idx: PortIdx) -> OfPort {
        self.ofports[idx.index()]
    }

    /// Every port: (index, OpenFlow number), in index order.
    pub fn iter(&self) -> impl Iterator<Item = (PortIdx, OfPort)> + '_ {
        self.ofports.iter().enumerate().map(|(i, p)| (PortIdx(i as u16), *p))
    }

    /// How many ports.
    pub fn len(&self) -> usize {
        self.ofports.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ofports.is_empty()
    }
}

/// The rule tables, as one immutable snapshot.
#[derive(Debug, Clone, Default)]
pub struct Tables {
    tables: Vec<Classifier<Arc<Rule>>>,
}

impl Tables {
    /// Table `id`, if it has ever had a rule.
    #[inline]
    pub fn table(&self, id: u8) -> Option<&Classifier<Arc<Rule>>> {
        self.tables.get(usize::from(id))
    }

    /// Every rule: by table, then priority (highest first).
    pub fn rules(&self) -> Vec<&Arc<Rule>> {
        let mut out = Vec::new();
        for t in &self.tables {
            let mut rules: Vec<_> = t.iter().collect();
            rules.sort_by_key(|e| (std::cmp::Reverse(e.priority), e.seq));
            out.extend(rules.into_iter().map(|e| &e.value));
        }
        out
    }

    /// How many rules in all.
    pub fn len(&self) -> usize {
        self.tables.iter().map(Classifier::len).sum()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The owner of the rule tables.
pub struct Ofproto {
    ports: Arc<PortTable>,
    tables: Arc<Tables>,
    writers: usize,
}

impl Ofproto {
    /// Empty tables over `ports`; rule counters have a slot for each of `writers` threads.
    pub fn new(ports: Arc<PortTable>, writers: usize) -> Self {
        Self { ports, tables: Arc::new(Tables::default()), writers }
    }

    /// The port table.
    pub fn ports(&self) -> &Arc<PortTable> {
        &self.ports
    }

    /// Adds a rule (replacing one with the same table, match and priority).
    pub fn add(&mut self, spec: FlowRule, now_tsc: u64) -> Result<(), String> {
        let table = usize::from(spec.table);
        let rule = Arc::new(Rule::new(spec, &self.ports, self.writers, now_tsc)?);
        let tables = Arc::make_mut(&mut self.tables);
        if tables.tables.len() <= table {
            tables.tables.resize_with(table + 1, Classifier::new);
        }
        let (m, p) = (rule.spec.matches, rule.spec.priority);
        tables.tables[table].insert(m, p, rule);
        Ok(())
    }

    /// Removes every rule whose idle or hard timeout has run out at `now_tsc`; returns them.
    pub fn expire(&mut self, now_tsc: u64, hz: u64) -> Vec<Arc<Rule>> {
        let expired: Vec<Arc<Rule>> =
            self.tables.rules().into_iter().filter(|r| r.expired(now_tsc, hz)).cloned().collect();
        if !expired.is_empty() {
            let tables = Arc::make_mut(&mut self.tables);
            for r in &expired {
                tables.tables[usize::from(r.spec.table)].remove(&r.spec.matches, r.spec.priority);
            }
        }
        expired
    }

    /// Whether any rule has a timeout (so the control thread must check for expiry).
    pub fn has_timeouts(&self) -> bool {
        self.tables.rules().iter().any(|r| r.spec.idle_timeout != 0 || r.spec.hard_timeout != 0)
    }

    /// The current tables.
    pub fn tables(&self) -> &Arc<Tables> {
        &self.tables
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrovs_config::flow::{PortMap, parse_flow};

    struct Ports;
    impl PortMap for Ports {
        fn by_name(&self, name: &str) -> Option<OfPort> {
            name.strip_prefix('p')?.parse::<u16>().ok().map(|n| n + 1)
        }
        fn has_number(&self, n: OfPort) -> bool {
            (1..=2).contains(&n)
        }
        fn name_of(&self, _: OfPort) -> Option<&str> {
            None
        }
    }

    const HZ: u64 = 1000; // one tick per millisecond, for readable times

    fn ofproto(rules: &[&str]) -> Ofproto {
        let mut o = Ofproto::new(Arc::new(PortTable::new(vec![1, 2])), 2);
        for r in rules {
            o.add(parse_flow(r, &Ports).unwrap(), 0).unwrap();
        }
        o
    }

    #[test]
    fn hard_timeout_counts_from_installation() {
        let mut o = ofproto(&["hard_timeout=2,actions=output:p1", "priority=1,actions=drop"]);
        assert!(o.has_timeouts());
        assert!(o.expire(1999, HZ).is_empty());
        let gone = o.expire(2000, HZ);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].spec.hard_timeout, 2);
        assert_eq!(o.tables().len(), 1);
        assert!(!o.has_timeouts());
    }

    #[test]
    fn idle_timeout_counts_from_the_last_hit() {
        let mut o = ofproto(&["idle_timeout=1,actions=output:p1"]);
        let rule = Arc::clone(o.tables().rules()[0]);
        rule.stats.credit(1, 1, 60, 900); // a hit at 0.9 s on thread 1
        assert!(o.expire(1899, HZ).is_empty(), "idle for 0.999 s only");
        assert_eq!(o.expire(1900, HZ).len(), 1);
    }
}
