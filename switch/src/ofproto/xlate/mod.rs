//! Translation: what the OpenFlow tables do to one flow, as a short list of datapath actions.
//!
//! The walk follows Open vSwitch's `xlate_actions`: look the flow up in table 0, run the rule's
//! actions in order on a working copy of the flow (`mod_*`/`set_field` change it, `resubmit` and
//! `goto_table` look it up again), and at each output "commit" the differences between the working
//! flow and the packet as already rewritten into set/push/pop actions, then emit the output. So an
//! output sees exactly the changes made before it, later tables see the changed flow, and a change
//! that is undone before any output costs nothing.
//!
//! Setting a field writes an absolute value, so the emitted set does not depend on what the packet
//! held: each modified field is marked dirty and committed as a set at the next output. That keeps
//! megaflows wide: with `wildcards`, the translation reports every key bit its result depended on
//! (the masks of the subtables it probed, in_port, dl_type, nw_proto and nw_frag of IP packets,
//! vlan_tci when VLAN actions run, nw_tos when only part of it is rewritten, nw_ttl for dec_ttl),
//! and any packet that agrees on those bits translates to the same actions (property-tested).
//!
//! NORMAL (the learning switch, `normal.rs`) consults the MAC table and the ports' VLAN settings;
//! it learns the source only when the caller passes the table mutably (upcalls, not revalidation
//! or traces), and it reports which table entries it read in [`Translation::mac`], so that a MAC
//! table change can find the megaflows it affects.
//!
//! Nothing here allocates: the result is a fixed-capacity list; a trace, when asked for, does.

use std::fmt::Write as _;

use arrayvec::ArrayVec;
use ferrovs_config::flow::{
    Action, FRAG_ANY, FRAG_LATER, Field, FlowKey, OfPort, PortMap, VLAN_CFI, eth_type, ip_proto,
};

mod normal;

use super::{OfAction, PortTable, Rule, Tables};
use crate::l2::{MacKey, MacTable};
use crate::packet::{PortIdx, SetField};
use crate::stats::DropReason;

/// Most datapath actions one translation may produce.
pub const MAX_DP_ACTIONS: usize = 64;

/// A translation's actions: most have one or two.
pub type DpActions = smallvec::SmallVec<[DpAction; 2]>;
/// The rules a translation went through: most go through one or two.
pub type RuleList = smallvec::SmallVec<[std::sync::Arc<Rule>; 2]>;
/// Deepest `resubmit`/`goto_table` nesting (as Open vSwitch).
pub const MAX_DEPTH: usize = 64;
/// Most `resubmit`/`goto_table` steps in one translation (as Open vSwitch).
pub const MAX_RESUBMITS: usize = MAX_DEPTH * MAX_DEPTH;
/// Most VLAN tags tracked on one packet.
const MAX_VLANS: usize = 4;

/// One datapath action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpAction {
    /// Send the packet, as rewritten so far, to a port.
    Output(PortIdx),
    /// Rewrite a header field.
    Set(SetField),
    /// Push an outer VLAN tag.
    PushVlan {
        /// Its ethertype (0x8100 or 0x88a8).
        tpid: u16,
        /// Its TCI (the present bit is not written).
        tci: u16,
    },
    /// Remove the outer VLAN tag.
    PopVlan,
}

impl DpAction {
    /// Whether it changes the packet's bytes.
    pub fn modifies(&self) -> bool {
        !matches!(self, DpAction::Output(_))
    }
}

/// Datapath actions for one flow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Translation {
    /// What to do, in order (at most [`MAX_DP_ACTIONS`]). The first few inline, the rest on
    /// the heap: a translation is moved through the control core's batch and kept in each
    /// megaflow's record, where an inline array of the most actions (2.5 KB) was most of the
    /// control core's copying, and an allocation per upcall most of the rest.
    pub actions: DpActions,
    /// Why the packet goes nowhere, when `actions` has no output.
    pub drop: Option<DropReason>,
    /// The MAC table entries NORMAL read or learned.
    pub mac: MacDeps,
}

/// What a translation's NORMAL actions used of the MAC table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MacDeps {
    /// The entry looked up for the destination (the decision changes when it does).
    pub dst: Option<MacKey>,
    /// The source learned from (refreshed while the translation's megaflow has traffic).
    pub src: Option<MacKey>,
    /// NORMAL ran more than once: `dst` and `src` are only the first (any change may matter).
    pub more: bool,
}

/// How a translation may use the MAC table.
pub enum MacAccess<'a> {
    /// Learn sources (a missed packet), at this TSC time.
    Learn(&'a mut MacTable, u64),
    /// Only look up (revalidation, traces).
    Read(&'a MacTable),
}

impl MacAccess<'_> {
    fn table(&self) -> &MacTable {
        match self {
            MacAccess::Learn(t, _) => t,
            MacAccess::Read(t) => t,
        }
    }
}

/// Who to credit rule hits to.
#[derive(Debug, Clone, Copy)]
pub struct Credit {
    /// The caller's stats slot.
    pub slot: usize,
    /// The packet's length.
    pub bytes: u64,
    /// Now, in TSC ticks.
    pub tsc: u64,
}

/// What else a translation should do.
#[derive(Default)]
pub struct XlateOptions<'a> {
    /// Credit every rule hit.
    pub credit: Option<Credit>,
    /// Write a human-readable trace here (`ferrovs trace`).
    pub trace: Option<&'a mut String>,
    /// Or in every key bit the result depended on (for megaflows).
    pub wildcards: Option<&'a mut FlowKey>,
    /// Names for ports in the trace.
    pub names: Option<&'a dyn PortMap>,
    /// Collect every rule hit (to credit a megaflow's packets to them later).
    pub rules: Option<&'a mut RuleList>,
    /// The MAC table for NORMAL (without one, NORMAL floods and learns nothing).
    pub macs: Option<MacAccess<'a>>,
}

/// Fields whose new value an output must commit, as bits.
mod dirty {
    pub const DL_SRC: u32 = 1 << 0;
    pub const DL_DST: u32 = 1 << 1;
    pub const NW_SRC: u32 = 1 << 2;
    pub const NW_DST: u32 = 1 << 3;
    pub const IPV6_SRC: u32 = 1 << 4;
    pub const IPV6_DST: u32 = 1 << 5;
    pub const IPV6_LABEL: u32 = 1 << 6;
    pub const TOS: u32 = 1 << 7;
    pub const TTL: u32 = 1 << 8;
    pub const TP_SRC: u32 = 1 << 9;
    pub const TP_DST: u32 = 1 << 10;
    pub const ARP_OP: u32 = 1 << 11;
    pub const ARP_SHA: u32 = 1 << 12;
    pub const ARP_THA: u32 = 1 << 13;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Vlan {
    tpid: u16,
    tci: u16,
}

struct Ctx<'a, 'o> {
    tables: &'a Tables,
    ports: &'a PortTable,
    flow: FlowKey,
    base: FlowKey,
    flow_vlans: ArrayVec<Vlan, MAX_VLANS>,
    base_vlans: ArrayVec<Vlan, MAX_VLANS>,
    dirty: u32,
    out: &'o mut Translation,
    depth: usize,
    resubmits: usize,
    outputs: usize,
    skipped_in_port: bool,
    ttl_expired: bool,
    /// Why NORMAL output nothing, if it did not.
    normal_drop: Option<DropReason>,
    error: Option<DropReason>,
    stop: bool,
    opts: XlateOptions<'o>,
}

/// Translates `key` through `tables` into `out` (cleared first; reuse it across packets: it is
/// too big to return by value on the fast path).
pub fn translate(tables: &Tables, ports: &PortTable, key: &FlowKey, opts: XlateOptions<'_>, out: &mut Translation) {
    out.actions.clear();
    out.drop = None;
    out.mac = MacDeps::default();
    let mut vlans = ArrayVec::new();
    if key.vlan_tci() & VLAN_CFI != 0 {
        vlans.push(Vlan { tpid: eth_type::VLAN, tci: key.vlan_tci() });
    }
    let mut ctx = Ctx {
        tables,
        ports,
        flow: *key,
        base: *key,
        flow_vlans: vlans.clone(),
        base_vlans: vlans,
        dirty: 0,
        out,
        depth: 0,
        resubmits: 0,
        outputs: 0,
        skipped_in_port: false,
        ttl_expired: false,
        normal_drop: None,
        error: None,
        stop: false,
        opts,
    };
    // What every translation depends on: the input port (outputs skip it), the ethertype
    // (prerequisites of every rewrite), and for IP the protocol and fragment bits.
    ctx.unwildcard(|wc| {
        wc.set_in_port(0xffff);
        wc.set_dl_type(0xffff);
        if key.is_ip() {
            wc.set_nw_proto(0xff);
            wc.set_nw_frag(0xff);
        }
    });
    let matched = ctx.table(0, None);
    let out = &mut *ctx.out;
    if let Some(e) = ctx.error {
        out.actions.clear();
        out.drop = Some(e);
    } else if ctx.outputs == 0 {
        out.drop = Some(if !matched {
            DropReason::NoMatch
        } else if ctx.ttl_expired {
            DropReason::TtlExpired
        } else if let Some(reason) = ctx.normal_drop {
            reason
        } else if ctx.skipped_in_port {
            DropReason::OutputToInPort
        } else {
            DropReason::DropAction
        });
    }
    if let Some(t) = ctx.opts.trace {
        let names = ctx.opts.names;
        let _ = write!(t, "\ndatapath actions: {}", display_dp(out, ports, names));
    }
}

/// Prints datapath actions (`set(ipv4_dst=1.2.3.4),output:p1`) for traces.
pub fn display_dp(t: &Translation, ports: &PortTable, names: Option<&dyn PortMap>) -> String {
    if t.actions.iter().all(|a| !matches!(a, DpAction::Output(_))) {
        return format!("drop ({})", t.drop.map_or("no output", |d| d.name()));
    }
    let port = |idx: PortIdx| {
        let n = ports.ofport_of(idx);
        names.and_then(|m| m.name_of(n)).map_or_else(|| n.to_string(), str::to_string)
    };
    let parts: Vec<String> = t
        .actions
        .iter()
        .map(|a| match a {
            DpAction::Output(p) => format!("output:{}", port(*p)),
            DpAction::PushVlan { tpid, tci } => {
                format!("push_vlan(tpid={tpid:#06x},vid={},pcp={})", tci & 0xfff, tci >> 13)
            }
            DpAction::PopVlan => "pop_vlan".into(),
            DpAction::Set(s) => format!("set({s})"),
        })
        .collect();
    parts.join(",")
}

impl Ctx<'_, '_> {
    fn trace(&mut self, line: impl FnOnce() -> String) {
        if let Some(t) = self.opts.trace.as_deref_mut() {
            let _ = write!(t, "\n{}{}", "    ".repeat(self.depth), line());
        }
    }

    /// Looks the working flow up in `table` (as if it came in on `in_port`, when given) and runs
    /// the rule found; false on a miss.
    fn table(&mut self, table: u8, in_port: Option<OfPort>) -> bool {
        let tables = self.tables;
        // The pretended input port is for the lookup only: actions such as `in_port` and the
        // skip-the-input-port rule still see the real one (as in Open vSwitch).
        let mut key = self.flow;
        if let Some(p) = in_port {
            key.set_in_port(p);
        }
        // OpenFlow's "normal" fragment handling: rules see no transport ports on any fragment,
        // even a first one that carries them (actions still see the real ports).
        if key.nw_frag() & FRAG_ANY != 0 {
            key.set_tp_src(0);
            key.set_tp_dst(0);
        }
        let entry = tables.table(table).and_then(|c| match self.opts.wildcards.as_deref_mut() {
            Some(wc) => {
                wc.set_nw_frag(wc.nw_frag() | FRAG_ANY);
                c.lookup_wc(&key, wc)
            }
            None => c.lookup(&key),
        });
        let Some(entry) = entry else {
            self.trace(|| format!("table {table}: no match"));
            return false;
        };
        let rule: &Rule = &entry.value;
        if let Some(rules) = self.opts.rules.as_deref_mut() {
            rules.push(std::sync::Arc::clone(&entry.value));
        }
        if let Some(c) = self.opts.credit {
            rule.stats.credit(c.slot, 1, c.bytes, c.tsc);
        }
        if self.opts.trace.is_some() {
            let names = self.opts.names;
            let text = match names {
                Some(n) => rule.spec.display(n).to_string(),
                None => format!("{:?}", rule.spec),
            };
            self.trace(|| format!("table {table}: {text}"));
        }
        self.run(&rule.actions, table);
        true
    }

    fn run(&mut self, actions: &[OfAction], table: u8) {
        for action in actions {
            if self.stop || self.error.is_some() {
                return;
            }
            match action {
                OfAction::Output(idx, ofport) => self.output(*idx, *ofport),
                OfAction::Other(a) => self.other(a, table),
            }
        }
    }

    fn other(&mut self, action: &Action, table: u8) {
        let is_ip = self.flow.is_ip();
        let ipv4 = self.flow.dl_type() == eth_type::IPV4;
        let l4 = is_ip && self.flow.nw_frag() & FRAG_LATER == 0;
        match *action {
            Action::Output(_) | Action::Drop => {}
            Action::InPort => {
                if let Some(idx) = self.ports.index_of(self.flow.in_port()) {
                    self.emit_output(idx);
                }
            }
            Action::Normal => self.normal(),
            Action::Flood | Action::All => {
                let in_port = self.flow.in_port();
                let ports = self.ports;
                for (idx, ofport) in ports.iter() {
                    if ofport != in_port {
                        self.emit_output(idx);
                    }
                }
            }
            Action::ModVlanVid(vid) => self.set_vlan(true, |tci| (tci & !0x0fff) | vid),
            Action::ModVlanPcp(pcp) => self.set_vlan(true, |tci| (tci & !0xe000) | (u16::from(pcp) << 13)),
            Action::StripVlan => {
                self.unwildcard(|wc| wc.set_vlan_tci(0xffff));
                if !self.flow_vlans.is_empty() {
                    self.flow_vlans.remove(0);
                    self.sync_vlan();
                }
            }
            Action::PushVlan(tpid) => {
                self.unwildcard(|wc| wc.set_vlan_tci(0xffff));
                if !self.flow_vlans.is_full() {
                    self.flow_vlans.insert(0, Vlan { tpid, tci: VLAN_CFI });
                    self.sync_vlan();
                }
            }
            Action::ModDlSrc(mac) => self.modify(dirty::DL_SRC, |f| f.set_dl_src(mac)),
            Action::ModDlDst(mac) => self.modify(dirty::DL_DST, |f| f.set_dl_dst(mac)),
            Action::ModNwSrc(ip) if ipv4 => self.modify(dirty::NW_SRC, |f| f.set_nw_src(ip)),
            Action::ModNwDst(ip) if ipv4 => self.modify(dirty::NW_DST, |f| f.set_nw_dst(ip)),
            Action::ModNwTos(tos) if is_ip => {
                // Only the DSCP bits change: the ECN bits come from the packet.
                self.unwildcard(|wc| wc.set_nw_tos(0xff));
                self.modify(dirty::TOS, |f| f.set_nw_tos((f.nw_tos() & 0x03) | tos));
            }
            Action::ModTpSrc(p) if l4 => self.modify(dirty::TP_SRC, |f| f.set_tp_src(p)),
            Action::ModTpDst(p) if l4 => self.modify(dirty::TP_DST, |f| f.set_tp_dst(p)),
            Action::ModNwSrc(_)
            | Action::ModNwDst(_)
            | Action::ModNwTos(_)
            | Action::ModTpSrc(_)
            | Action::ModTpDst(_) => {}
            Action::DecTtl if is_ip => {
                self.unwildcard(|wc| wc.set_nw_ttl(0xff));
                if self.flow.nw_ttl() > 1 {
                    self.modify(dirty::TTL, |f| f.set_nw_ttl(f.nw_ttl() - 1));
                } else {
                    self.ttl_expired = true;
                    self.stop = true;
                    self.trace(|| "dec_ttl: TTL expired, packet dropped".into());
                }
            }
            Action::DecTtl => {}
            Action::SetField(field, value) => self.set_field(field, value),
            Action::Resubmit { port, table: t } => self.resubmit(port, t.unwrap_or(table)),
            Action::GotoTable(t) => self.resubmit(None, t),
        }
    }

    /// Changes the working flow and marks what the next output must commit.
    fn modify(&mut self, bits: u32, f: impl FnOnce(&mut FlowKey)) {
        f(&mut self.flow);
        self.dirty |= bits;
    }

    /// Ors key bits into the megaflow mask, when one is being computed.
    fn unwildcard(&mut self, f: impl FnOnce(&mut FlowKey)) {
        if let Some(wc) = self.opts.wildcards.as_deref_mut() {
            f(wc);
        }
    }

    /// Changes the outer tag's TCI; with `push_if_none`, pushes a tag (VID 0, PCP 0) first.
    fn set_vlan(&mut self, push_if_none: bool, f: impl FnOnce(u16) -> u16) {
        self.unwildcard(|wc| wc.set_vlan_tci(0xffff));
        if self.flow_vlans.is_empty() {
            if !push_if_none {
                return;
            }
            self.flow_vlans.push(Vlan { tpid: eth_type::VLAN, tci: VLAN_CFI });
        }
        let top = &mut self.flow_vlans[0];
        top.tci = f(top.tci) | VLAN_CFI;
        self.sync_vlan();
    }

    fn sync_vlan(&mut self) {
        self.flow.set_vlan_tci(self.flow_vlans.first().map_or(0, |v| v.tci));
    }

    fn set_field(&mut self, field: Field, v: u128) {
        let def = field.def();
        let (dl_type, proto) = (self.flow.dl_type(), self.flow.nw_proto());
        // OVS sets a field only if the packet has it: the field's prerequisites must hold. As
        // set_field targets, nw_src/nw_dst mean IPv4 only (arp_spa/arp_tpa are the ARP ones).
        let ok = match field {
            Field::NwSrc | Field::NwDst => dl_type == eth_type::IPV4,
            _ => def.prereq.holds(dl_type, proto),
        };
        if !ok {
            self.trace(|| format!("set_field: {} prerequisites unmet, ignored", def.name));
            return;
        }
        let bits = match field {
            Field::VlanVid => return self.set_vlan(false, |tci| (tci & !0x0fff) | (v as u16 & 0x0fff)),
            Field::VlanPcp => return self.set_vlan(false, |tci| (tci & !0xe000) | ((v as u16 & 7) << 13)),
            Field::DlSrc => dirty::DL_SRC,
            Field::DlDst => dirty::DL_DST,
            Field::NwSrc | Field::ArpSpa => dirty::NW_SRC,
            Field::NwDst | Field::ArpTpa => dirty::NW_DST,
            Field::Ipv6Src => dirty::IPV6_SRC,
            Field::Ipv6Dst => dirty::IPV6_DST,
            Field::Ipv6Label => dirty::IPV6_LABEL,
            Field::NwTos | Field::IpDscp | Field::NwEcn => {
                // Part of the TOS byte changes; the rest comes from the packet.
                self.unwildcard(|wc| wc.set_nw_tos(0xff));
                dirty::TOS
            }
            Field::NwTtl => dirty::TTL,
            Field::ArpOp => dirty::ARP_OP,
            Field::ArpSha => dirty::ARP_SHA,
            Field::ArpTha => dirty::ARP_THA,
            Field::TpSrc | Field::TcpSrc | Field::UdpSrc | Field::SctpSrc | Field::IcmpType | Field::Icmpv6Type => {
                dirty::TP_SRC
            }
            Field::TpDst | Field::TcpDst | Field::UdpDst | Field::SctpDst | Field::IcmpCode | Field::Icmpv6Code => {
                dirty::TP_DST
            }
            // Not writable: the parser rejects set_field to them.
            Field::InPort | Field::DlType | Field::VlanTci | Field::DlVlan | Field::DlVlanPcp | Field::NwProto => 0,
            Field::IpFrag | Field::TcpFlags => 0,
        };
        self.modify(bits, |f| def.set(f, v));
    }

    fn resubmit(&mut self, port: Option<OfPort>, table: u8) {
        if self.depth >= MAX_DEPTH || self.resubmits >= MAX_RESUBMITS {
            self.error = Some(DropReason::ResubmitDepth);
            self.trace(|| "resubmit: too deep, packet dropped".into());
            return;
        }
        self.depth += 1;
        self.resubmits += 1;
        self.table(table, port);
        self.depth -= 1;
    }

    fn output(&mut self, idx: PortIdx, ofport: OfPort) {
        if ofport == self.flow.in_port() {
            self.skipped_in_port = true;
            self.trace(|| format!("output:{ofport}: is the input port, skipped"));
            return;
        }
        self.emit_output(idx);
    }

    fn emit_output(&mut self, idx: PortIdx) {
        self.commit();
        self.emit(DpAction::Output(idx));
        self.outputs += 1;
    }

    fn emit(&mut self, a: DpAction) {
        if self.out.actions.len() < MAX_DP_ACTIONS {
            self.out.actions.push(a);
        } else {
            self.error = Some(DropReason::TooManyActions);
        }
    }

    /// Emits what it takes to make the packet look like the working flow: a set for every field
    /// changed since the last output, and the tag pushes and pops.
    fn commit(&mut self) {
        let (f, b, d) = (self.flow, self.base, self.dirty);
        let set = |ctx: &mut Self, bit: u32, field: SetField| {
            if d & bit != 0 {
                ctx.emit(DpAction::Set(field));
            }
        };
        set(self, dirty::DL_DST, SetField::EthDst(f.dl_dst()));
        set(self, dirty::DL_SRC, SetField::EthSrc(f.dl_src()));
        self.commit_vlans();
        match b.dl_type() {
            eth_type::IPV4 => {
                set(self, dirty::NW_SRC, SetField::Ipv4Src(f.nw_src()));
                set(self, dirty::NW_DST, SetField::Ipv4Dst(f.nw_dst()));
            }
            eth_type::IPV6 => {
                set(self, dirty::IPV6_SRC, SetField::Ipv6Src(f.ipv6_src()));
                set(self, dirty::IPV6_DST, SetField::Ipv6Dst(f.ipv6_dst()));
                set(self, dirty::IPV6_LABEL, SetField::Ipv6Label(f.ipv6_label()));
            }
            eth_type::ARP | eth_type::RARP => {
                set(self, dirty::ARP_OP, SetField::ArpOp(u16::from(f.nw_proto())));
                set(self, dirty::NW_SRC, SetField::ArpSpa(f.nw_src()));
                set(self, dirty::NW_DST, SetField::ArpTpa(f.nw_dst()));
                set(self, dirty::ARP_SHA, SetField::ArpSha(f.arp_sha()));
                set(self, dirty::ARP_THA, SetField::ArpTha(f.arp_tha()));
            }
            _ => {}
        }
        if b.is_ip() {
            set(self, dirty::TOS, SetField::IpTos(f.nw_tos()));
            set(self, dirty::TTL, SetField::IpTtl(f.nw_ttl()));
            let l4 = matches!(
                b.nw_proto(),
                ip_proto::TCP | ip_proto::UDP | ip_proto::SCTP | ip_proto::ICMP | ip_proto::ICMPV6
            );
            if l4 && b.nw_frag() & FRAG_LATER == 0 {
                set(self, dirty::TP_SRC, SetField::L4Src(f.tp_src()));
                set(self, dirty::TP_DST, SetField::L4Dst(f.tp_dst()));
            }
        }
        self.base = self.flow;
        self.dirty = 0;
    }

    /// Makes the packet's tag stack match the working flow's: set the top when only its TCI
    /// changed, otherwise pop the tags that differ and push the new ones.
    fn commit_vlans(&mut self) {
        let (f, b) = (self.flow_vlans.clone(), self.base_vlans.clone());
        if f == b {
            return;
        }
        if f.len() == b.len() && f[1..] == b[1..] && f[0].tpid == b[0].tpid {
            self.emit(DpAction::Set(SetField::VlanTci(f[0].tci)));
        } else {
            // Tags are listed outermost first; the innermost ones they share stay.
            let shared = f.iter().rev().zip(b.iter().rev()).take_while(|(x, y)| x == y).count();
            for _ in 0..b.len() - shared {
                self.emit(DpAction::PopVlan);
            }
            for v in f[..f.len() - shared].iter().rev() {
                self.emit(DpAction::PushVlan { tpid: v.tpid, tci: v.tci });
            }
        }
        self.base_vlans = f;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ferrovs_config::flow::{KEY_WORDS, OfPort, PortMap, parse_flow};
    use proptest::prelude::*;

    use super::*;
    use crate::ofproto::Ofproto;

    struct Ports;
    impl PortMap for Ports {
        fn by_name(&self, _: &str) -> Option<OfPort> {
            None
        }
        fn has_number(&self, n: OfPort) -> bool {
            (1..=4).contains(&n)
        }
        fn name_of(&self, _: OfPort) -> Option<&str> {
            None
        }
    }

    fn a_match() -> impl Strategy<Value = String> {
        let parts = prop::collection::vec(
            prop::sample::select(vec![
                "in_port=1",
                "in_port=2",
                "ip",
                "ipv6",
                "arp",
                "tcp",
                "udp",
                "dl_vlan=5",
                "vlan_tci=0x0000",
                "vlan_tci=0x1000/0x1000",
                "ip,nw_dst=10.0.0.0/8",
                "ip,nw_dst=10.1.0.0/16",
                "tcp,tp_dst=0x0050/0xfff0",
                "ip,nw_ttl=1",
                "ip,ip_frag=later",
                "udp,tp_src=1",
                "ip,nw_tos=4",
                "dl_dst=01:00:00:00:00:00/01:00:00:00:00:00",
            ]),
            0..3,
        );
        parts.prop_map(|p| p.join(","))
    }

    fn an_action() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "output:1",
            "output:2",
            "output:3",
            "output:4",
            "in_port",
            "flood",
            "mod_nw_dst:9.9.9.9",
            "mod_tp_dst:80",
            "dec_ttl",
            "mod_vlan_vid:7",
            "mod_vlan_pcp:3",
            "strip_vlan",
            "push_vlan:0x8100",
            "mod_nw_tos:8",
            "mod_dl_src:02:00:00:00:00:09",
            "resubmit(,1)",
            "resubmit(3,1)",
            "mod_tp_src:7",
            "normal",
        ])
    }

    fn rule() -> impl Strategy<Value = String> {
        (0u8..2, 0u16..4, a_match(), prop::collection::vec(an_action(), 0..4)).prop_map(|(table, prio, m, a)| {
            let m = if m.is_empty() { String::new() } else { format!("{m},") };
            format!("table={table},priority={prio},{m}actions={}", a.join(","))
        })
    }

    /// Keys from a small space so that rules match often.
    fn key() -> impl Strategy<Value = FlowKey> {
        (
            1u16..5,
            prop::sample::select(vec![0x0800u16, 0x86dd, 0x0806, 0x88cc]),
            prop::sample::select(vec![0u8, 6, 17]),
            prop::sample::select(vec![0u16, 0x1005, 0x3007]),
            (0u32..4, any::<u32>()),
            (0u16..4, 0u8..4, 0u8..3, 0u8..4),
        )
            .prop_map(|(port, dl_type, proto, tci, (dst, noise), (tp, ttl, frag, tos))| {
                let mut k = FlowKey::ZERO;
                k.set_in_port(port);
                k.set_dl_type(dl_type);
                k.set_vlan_tci(tci);
                k.set_dl_dst([u8::from(noise & 1 == 1), 0, 0, 0, 0, 2]);
                if dl_type == 0x0800 || dl_type == 0x86dd {
                    k.set_nw_proto(proto);
                    k.set_nw_ttl(ttl);
                    k.set_nw_frag([0, 1, 3][frag as usize]);
                    k.set_nw_tos(tos * 4 + (tos & 1));
                    k.set_tp_src(tp);
                    k.set_tp_dst(0x50 + tp);
                }
                k.set_nw_dst(0x0a00_0000 | (dst << 16) | (noise & 0xffff));
                k
            })
    }

    /// Ports of every VLAN mode, so that NORMAL's VLAN handling is part of the property.
    fn vlan_ports() -> PortTable {
        use ferrovs_config::{PortVlan, VlanMode};
        let v = |mode, tag, trunks: &[u16]| PortVlan { mode, tag, trunks: trunks.to_vec() };
        PortTable::with_vlans(
            vec![1, 2, 3, 4],
            vec![
                v(VlanMode::Access, 5, &[]),
                v(VlanMode::Trunk, 0, &[]),
                v(VlanMode::NativeUntagged, 5, &[7]),
                v(VlanMode::NativeTagged, 7, &[5]),
            ],
        )
    }

    /// A MAC table that knows the keys' destination (00:..:02) in two VLANs.
    fn macs() -> MacTable {
        let mut t = MacTable::new(16, u64::MAX);
        t.learn(MacKey::new(5, [0, 0, 0, 0, 0, 2]), PortIdx(1), 0);
        t.learn(MacKey::new(7, [0, 0, 0, 0, 0, 2]), PortIdx(2), 0);
        t.learn(MacKey::new(0, [0, 0, 0, 0, 0, 2]), PortIdx(0), 0);
        t
    }

    fn tables(rules: &[String]) -> Ofproto {
        let mut o = Ofproto::new(Arc::new(vlan_ports()), 1);
        // Random combinations may be invalid (a field twice, a conflict): those are skipped.
        for rule in rules.iter().filter_map(|r| parse_flow(r, &Ports).ok()) {
            o.add(rule, 0).unwrap();
        }
        o
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// The megaflow property: any key that agrees with `key` on the reported wildcard bits
        /// gets exactly the same datapath actions (so caching them under that mask is safe).
        #[test]
        fn any_key_agreeing_on_the_wildcards_translates_the_same(
            rules in prop::collection::vec(rule(), 0..8),
            key in key(),
            other in key(),
        ) {
            let o = tables(&rules);
            let macs = macs();
            let mut wc = FlowKey::ZERO;
            let mut first = Translation::default();
            let opts = XlateOptions { wildcards: Some(&mut wc), macs: Some(MacAccess::Read(&macs)), ..Default::default() };
            translate(o.tables(), o.ports(), &key, opts, &mut first);
            let mut blended = FlowKey::ZERO;
            for i in 0..KEY_WORDS {
                blended.set_word(i, (key.word(i) & wc.word(i)) | (other.word(i) & !wc.word(i)));
            }
            let mut second = Translation::default();
            let opts = XlateOptions { macs: Some(MacAccess::Read(&macs)), ..Default::default() };
            translate(o.tables(), o.ports(), &blended, opts, &mut second);
            prop_assert_eq!(&first, &second, "key {:?}\nblended {:?}\nwc {:?}\nrules {:#?}", key, blended, wc, rules);
        }
    }
}
