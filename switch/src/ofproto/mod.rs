//! The OpenFlow pipeline: rules compiled for the data path, and the decision for a flow key.
//!
//! Rules are tried in priority order, highest first; among overlapping rules of equal priority the
//! one added first wins (OpenFlow leaves this undefined; we make it deterministic and documented).

use ferrovs_config::flow::{Action, FieldMatch, FlowRule, OfPort};

use crate::packet::{FlowKey, PortIdx};
use crate::stats::DropReason;

/// Maps OpenFlow port numbers to the data path's dense port indices.
#[derive(Debug, Clone, Default)]
pub struct PortTable {
    ofports: Vec<OfPort>,
}

impl PortTable {
    /// A table of ports given by their OpenFlow numbers, in index order.
    pub fn new(ofports: Vec<OfPort>) -> Self {
        Self { ofports }
    }

    /// The index of port `ofport`.
    pub fn index_of(&self, ofport: OfPort) -> Option<PortIdx> {
        self.ofports
            .iter()
            .position(|&p| p == ofport)
            .map(|i| PortIdx(i as u16))
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

/// Why a rule cannot be compiled.
#[derive(Debug, thiserror::Error)]
#[error("rule {rule:?}: {reason}")]
pub struct CompileError {
    /// The rule, as given.
    pub rule: String,
    /// Why.
    pub reason: String,
}

/// A rule in data-path form.
#[derive(Debug, Clone)]
struct CompiledRule {
    priority: u16,
    in_port: Option<PortIdx>,
    outputs: Box<[PortIdx]>,
}

impl CompiledRule {
    #[inline]
    fn matches(&self, key: &FlowKey) -> bool {
        self.in_port.is_none_or(|p| p == key.in_port)
    }
}

/// What to do with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision<'a> {
    /// Send a copy to each port, in order (the input port is skipped by the executor).
    Output(&'a [PortIdx]),
    /// Drop it, for this reason.
    Drop(DropReason),
}

/// The compiled rule set (table 0).
#[derive(Debug, Clone, Default)]
pub struct Pipeline {
    rules: Vec<CompiledRule>,
}

impl Pipeline {
    /// Compiles `rules` against `ports`.
    pub fn compile(rules: &[FlowRule], ports: &PortTable) -> Result<Self, CompileError> {
        let mut compiled = Vec::with_capacity(rules.len());
        for rule in rules.iter().filter(|r| r.table == 0) {
            let port = |ofport: OfPort| {
                ports.index_of(ofport).ok_or_else(|| CompileError {
                    rule: format!("{rule:?}"),
                    reason: format!("port {ofport} does not exist"),
                })
            };
            let mut in_port = None;
            for m in &rule.matches {
                match m {
                    FieldMatch::InPort(p) => in_port = Some(port(*p)?),
                }
            }
            let mut outputs = Vec::new();
            for a in &rule.actions {
                match a {
                    Action::Output(p) => outputs.push(port(*p)?),
                    Action::Drop => {}
                }
            }
            compiled.push(CompiledRule {
                priority: rule.priority,
                in_port,
                outputs: outputs.into(),
            });
        }
        // Stable: equal priorities keep insertion order, so the first added wins.
        compiled.sort_by_key(|r| std::cmp::Reverse(r.priority));
        Ok(Self { rules: compiled })
    }

    /// How many rules are installed.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether no rule is installed.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The decision for `key`.
    #[inline]
    pub fn lookup(&self, key: &FlowKey) -> Decision<'_> {
        match self.rules.iter().find(|r| r.matches(key)) {
            None => Decision::Drop(DropReason::NoMatch),
            Some(r) if r.outputs.is_empty() => Decision::Drop(DropReason::DropAction),
            Some(r) => Decision::Output(&r.outputs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrovs_config::flow::{PortMap, parse_flow};

    struct Names;
    impl PortMap for Names {
        fn by_name(&self, name: &str) -> Option<OfPort> {
            name.strip_prefix('p')
                .and_then(|n| n.parse::<u16>().ok())
                .map(|n| n + 1)
        }
        fn has_number(&self, n: OfPort) -> bool {
            (1..=4).contains(&n)
        }
        fn name_of(&self, _: OfPort) -> Option<&str> {
            None
        }
    }

    fn pipeline(rules: &[&str]) -> Pipeline {
        let rules: Vec<_> = rules
            .iter()
            .map(|r| parse_flow(r, &Names).unwrap())
            .collect();
        Pipeline::compile(&rules, &PortTable::new(vec![1, 2, 3, 4])).unwrap()
    }

    fn key(port: u16) -> FlowKey {
        FlowKey {
            in_port: PortIdx(port),
        }
    }

    #[test]
    fn highest_priority_wins_then_first_added() {
        let p = pipeline(&[
            "priority=1,actions=output:p3",
            "priority=10,in_port=p0,actions=output:p1",
            "priority=10,in_port=p0,actions=output:p2",
            "priority=20,in_port=p1,actions=drop",
        ]);
        assert_eq!(p.lookup(&key(0)), Decision::Output(&[PortIdx(1)]));
        assert_eq!(p.lookup(&key(1)), Decision::Drop(DropReason::DropAction));
        assert_eq!(p.lookup(&key(2)), Decision::Output(&[PortIdx(3)]));
    }

    #[test]
    fn no_rule_means_no_match() {
        let p = pipeline(&["in_port=p0,actions=output:p1,output:p2"]);
        assert_eq!(
            p.lookup(&key(0)),
            Decision::Output(&[PortIdx(1), PortIdx(2)])
        );
        assert_eq!(p.lookup(&key(3)), Decision::Drop(DropReason::NoMatch));
        assert_eq!(
            pipeline(&[]).lookup(&key(0)),
            Decision::Drop(DropReason::NoMatch)
        );
    }
}
