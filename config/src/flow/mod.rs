//! OpenFlow rules in `ovs-ofctl` syntax: the flow key and match model, the field table, the
//! parser, and printing in `ovs-ofctl dump-flows` style (printing then parsing gives the same rule).
//!
//! Parsing needs a [`PortMap`] so that `in_port=p0` and `output:p1` resolve to OpenFlow port numbers
//! at once: an unknown port is a parse error. The datapath compiles these rules into its own
//! structures; this module holds no DPDK state.

mod field;
mod format;
mod key;
mod parse;

pub use field::{FIELDS, Field, FieldDef, Format, Prereq, flow_match, format_mac, format_value, parse_mac};
pub use key::{
    FRAG_ANY, FRAG_LATER, FlowKey, KEY_LEN, KEY_WORDS, Match, VLAN_CFI, VLAN_PCP_MASK, VLAN_VID_MASK, eth_type,
    ip_proto, off,
};
pub use parse::{parse_actions, parse_flow, parse_match};

/// An OpenFlow port number (1..=0xfeff for real ports).
pub type OfPort = u16;

/// The largest number a real (non-reserved) OpenFlow port may have (`OFPP_MAX` - 1).
pub const OFPORT_MAX: OfPort = 0xfeff;

/// `OFP_DEFAULT_PRIORITY`: the priority of a rule that gives none.
pub const DEFAULT_PRIORITY: u16 = 32768;

/// The highest table number (`OFPTT_MAX`).
pub const TABLE_MAX: u8 = 254;

/// Resolves port names and numbers written in rules.
pub trait PortMap {
    /// The OpenFlow number of the port called `name`.
    fn by_name(&self, name: &str) -> Option<OfPort>;
    /// Whether a port numbered `ofport` exists.
    fn has_number(&self, ofport: OfPort) -> bool;
    /// The name of port `ofport`, for printing.
    fn name_of(&self, ofport: OfPort) -> Option<&str>;
}

/// One action, in the order the rule lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `output:P`: send the packet as it is now to port P (skipped when P is the input port).
    Output(OfPort),
    /// `in_port` (or `output:in_port`): send it back out of the port it came in on.
    InPort,
    /// `flood`: every port but the input port.
    Flood,
    /// `all`: every port but the input port.
    All,
    /// `normal`: the L2 switch (until MAC learning lands: like `flood`).
    Normal,
    /// `drop`: explicitly nothing. Parsed only to be folded away: a rule's action list never
    /// holds it (an empty list is how a dropping rule looks).
    Drop,
    /// `mod_vlan_vid:N`: set the VLAN id, pushing a tag if there is none.
    ModVlanVid(u16),
    /// `mod_vlan_pcp:N`: set the VLAN priority, pushing a tag if there is none.
    ModVlanPcp(u8),
    /// `strip_vlan` / `pop_vlan`: remove the outer VLAN tag.
    StripVlan,
    /// `push_vlan:TPID`: push a new outer tag (VID 0, PCP 0).
    PushVlan(u16),
    /// `mod_dl_src:MAC`
    ModDlSrc([u8; 6]),
    /// `mod_dl_dst:MAC`
    ModDlDst([u8; 6]),
    /// `mod_nw_src:IP` (IPv4 only)
    ModNwSrc(u32),
    /// `mod_nw_dst:IP` (IPv4 only)
    ModNwDst(u32),
    /// `mod_nw_tos:N`: the DSCP bits (a multiple of 4).
    ModNwTos(u8),
    /// `mod_tp_src:N`
    ModTpSrc(u16),
    /// `mod_tp_dst:N`
    ModTpDst(u16),
    /// `dec_ttl`: decrement the IP TTL / hop limit; a packet whose TTL would reach 0 is dropped.
    DecTtl,
    /// `set_field:VALUE->FIELD`
    SetField(Field, u128),
    /// `resubmit(PORT,TABLE)`: look the packet up again (in `table`, default the current one), as if
    /// it came in on `port` (default: its real input port), then continue with the next action.
    Resubmit {
        /// Input port to pretend.
        port: Option<OfPort>,
        /// Table to look up.
        table: Option<u8>,
    },
    /// `goto_table:N`: after these actions, continue in table N.
    GotoTable(u8),
}

impl Action {
    /// Whether the action changes the packet's bytes.
    pub fn modifies_packet(&self) -> bool {
        matches!(
            self,
            Action::ModVlanVid(_)
                | Action::ModVlanPcp(_)
                | Action::StripVlan
                | Action::PushVlan(_)
                | Action::ModDlSrc(_)
                | Action::ModDlDst(_)
                | Action::ModNwSrc(_)
                | Action::ModNwDst(_)
                | Action::ModNwTos(_)
                | Action::ModTpSrc(_)
                | Action::ModTpDst(_)
                | Action::DecTtl
                | Action::SetField(..)
        )
    }
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
    /// Seconds without a packet after which the rule is removed (0: never).
    pub idle_timeout: u16,
    /// Seconds after which the rule is removed whatever happens (0: never).
    pub hard_timeout: u16,
    /// What the packet must look like.
    pub matches: Match,
    /// What to do with it, in order; empty or `[Drop]` drops.
    pub actions: Vec<Action>,
}

impl FlowRule {
    /// Prints the rule as `ovs-ofctl dump-flows --names` would (without counters), using `ports`
    /// for names.
    pub fn display<'a>(&'a self, ports: &'a dyn PortMap) -> impl std::fmt::Display + 'a {
        format::DisplayRule { rule: self, ports }
    }

    /// Prints just the match (`tcp,in_port=p0,tp_dst=80`), or `""` for a match-all.
    pub fn display_match<'a>(m: &'a Match, ports: &'a dyn PortMap) -> impl std::fmt::Display + 'a {
        format::DisplayMatch { m, ports }
    }

    /// Prints just the actions (`output:p1,dec_ttl`), `drop` when there are none.
    pub fn display_actions<'a>(actions: &'a [Action], ports: &'a dyn PortMap) -> impl std::fmt::Display + 'a {
        format::DisplayActions { actions, ports }
    }
}
