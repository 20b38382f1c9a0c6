//! OpenFlow rules in `ovs-ofctl add-flow` syntax: the parsed form, and its printing in
//! `ovs-ofctl dump-flows` style.
//!
//! Parsing needs a [`PortMap`] so that `in_port=p0` and `output:p1` resolve to OpenFlow port numbers
//! at once (an unknown port is a parse error, as the issue tracker of every switch wishes it were).
//! The datapath compiles these rules into its own lookup structures; this crate holds no DPDK state.

mod parse;

use std::fmt;

pub use parse::parse_flow;

/// An OpenFlow port number (1..=0xfeff for real ports).
pub type OfPort = u16;

/// The largest number a real (non-reserved) OpenFlow port may have (`OFPP_MAX` - 1).
pub const OFPORT_MAX: OfPort = 0xfeff;

/// `OFP_DEFAULT_PRIORITY`: the priority of a rule that gives none.
pub const DEFAULT_PRIORITY: u16 = 32768;

/// Resolves port names and numbers written in rules.
pub trait PortMap {
    /// The OpenFlow number of the port called `name`.
    fn by_name(&self, name: &str) -> Option<OfPort>;
    /// Whether a port numbered `ofport` exists.
    fn has_number(&self, ofport: OfPort) -> bool;
    /// The name of port `ofport`, for printing.
    fn name_of(&self, ofport: OfPort) -> Option<&str>;
}

/// One field of a rule's match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldMatch {
    /// `in_port=P`: the port the packet arrived on.
    InPort(OfPort),
}

/// One action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `output:P`: send a copy to port P (skipped when P is the input port, as in OpenFlow).
    Output(OfPort),
    /// `drop`: explicitly do nothing (also what an empty action list means).
    Drop,
}

/// One flow rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRule {
    /// The table it lives in (`table=N`, default 0).
    pub table: u8,
    /// Higher wins (`priority=N`, default 32768).
    pub priority: u16,
    /// Opaque controller cookie (`cookie=N`).
    pub cookie: u64,
    /// What the packet must look like; empty matches everything.
    pub matches: Vec<FieldMatch>,
    /// What to do with it, in order; empty or `[Drop]` drops.
    pub actions: Vec<Action>,
}

impl FlowRule {
    /// Prints the rule as `ovs-ofctl dump-flows --names` would (without counters), using `ports`
    /// for names.
    pub fn display<'a>(&'a self, ports: &'a dyn PortMap) -> impl fmt::Display + 'a {
        DisplayRule { rule: self, ports }
    }
}

struct DisplayRule<'a> {
    rule: &'a FlowRule,
    ports: &'a dyn PortMap,
}

impl fmt::Display for DisplayRule<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.rule;
        let port = |p: OfPort| {
            self.ports
                .name_of(p)
                .map_or_else(|| p.to_string(), str::to_string)
        };
        if r.cookie != 0 {
            write!(f, "cookie={:#x}, ", r.cookie)?;
        }
        if r.table != 0 {
            write!(f, "table={}, ", r.table)?;
        }
        write!(f, "priority={}", r.priority)?;
        for m in &r.matches {
            match m {
                FieldMatch::InPort(p) => write!(f, ",in_port={}", port(*p))?,
            }
        }
        f.write_str(" actions=")?;
        if r.actions.is_empty() || r.actions == [Action::Drop] {
            return f.write_str("drop");
        }
        for (i, a) in r.actions.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match a {
                Action::Output(p) => write!(f, "output:{}", port(*p))?,
                Action::Drop => f.write_str("drop")?,
            }
        }
        Ok(())
    }
}
