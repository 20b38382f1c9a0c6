//! Translation: what the OpenFlow tables do to one flow, as a short list of datapath actions.
//!
//! The walk follows Open vSwitch's `xlate_actions`: look the flow up in table 0, run the rule's
//! actions in order on a working copy of the flow (`mod_*`/`set_field` change it, `resubmit` and
//! `goto_table` look it up again), and at each output "commit" the differences between the working
//! flow and the packet as already rewritten into set/push/pop actions, then emit the output. So an
//! output sees exactly the changes made before it, later tables see the changed flow, and a change
//! that is undone before any output costs nothing.
//!
//! Nothing here allocates: the result is a fixed-capacity list; a trace, when asked for, does.

use std::fmt::Write as _;

use arrayvec::ArrayVec;
use ferrovs_config::flow::{
    Action, FRAG_ANY, FRAG_LATER, Field, FlowKey, OfPort, PortMap, VLAN_CFI, eth_type, ip_proto,
};

use super::{OfAction, PortTable, Rule, Tables};
use crate::packet::{PortIdx, SetField};
use crate::stats::DropReason;

/// Most datapath actions one translation may produce.
pub const MAX_DP_ACTIONS: usize = 64;
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
    /// What to do, in order.
    pub actions: ArrayVec<DpAction, MAX_DP_ACTIONS>,
    /// Why the packet goes nowhere, when `actions` has no output.
    pub drop: Option<DropReason>,
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
    out: &'o mut Translation,
    depth: usize,
    resubmits: usize,
    outputs: usize,
    skipped_in_port: bool,
    ttl_expired: bool,
    error: Option<DropReason>,
    stop: bool,
    opts: XlateOptions<'o>,
}

/// Translates `key` through `tables` into `out` (cleared first; reuse it across packets: it is
/// too big to return by value on the fast path).
pub fn translate(tables: &Tables, ports: &PortTable, key: &FlowKey, opts: XlateOptions<'_>, out: &mut Translation) {
    out.actions.clear();
    out.drop = None;
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
        out,
        depth: 0,
        resubmits: 0,
        outputs: 0,
        skipped_in_port: false,
        ttl_expired: false,
        error: None,
        stop: false,
        opts,
    };
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
        let flow = &mut self.flow;
        match *action {
            Action::Output(_) | Action::Drop => {}
            Action::InPort => {
                if let Some(idx) = self.ports.index_of(self.flow.in_port()) {
                    self.emit_output(idx);
                }
            }
            Action::Flood | Action::All | Action::Normal => {
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
                if !self.flow_vlans.is_empty() {
                    self.flow_vlans.remove(0);
                    self.sync_vlan();
                }
            }
            Action::PushVlan(tpid) => {
                if !self.flow_vlans.is_full() {
                    self.flow_vlans.insert(0, Vlan { tpid, tci: VLAN_CFI });
                    self.sync_vlan();
                }
            }
            Action::ModDlSrc(mac) => flow.set_dl_src(mac),
            Action::ModDlDst(mac) => flow.set_dl_dst(mac),
            Action::ModNwSrc(ip) if flow.dl_type() == eth_type::IPV4 => flow.set_nw_src(ip),
            Action::ModNwDst(ip) if flow.dl_type() == eth_type::IPV4 => flow.set_nw_dst(ip),
            Action::ModNwTos(tos) if flow.is_ip() => flow.set_nw_tos((flow.nw_tos() & 0x03) | tos),
            Action::ModTpSrc(p) if flow.is_ip() && flow.nw_frag() & FRAG_LATER == 0 => flow.set_tp_src(p),
            Action::ModTpDst(p) if flow.is_ip() && flow.nw_frag() & FRAG_LATER == 0 => flow.set_tp_dst(p),
            Action::ModNwSrc(_)
            | Action::ModNwDst(_)
            | Action::ModNwTos(_)
            | Action::ModTpSrc(_)
            | Action::ModTpDst(_) => {}
            Action::DecTtl if flow.is_ip() => {
                if flow.nw_ttl() > 1 {
                    flow.set_nw_ttl(flow.nw_ttl() - 1);
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

    /// Changes the outer tag's TCI; with `push_if_none`, pushes a tag (VID 0, PCP 0) first.
    fn set_vlan(&mut self, push_if_none: bool, f: impl FnOnce(u16) -> u16) {
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
        match field {
            Field::VlanVid => self.set_vlan(false, |tci| (tci & !0x0fff) | (v as u16 & 0x0fff)),
            Field::VlanPcp => self.set_vlan(false, |tci| (tci & !0xe000) | ((v as u16 & 7) << 13)),
            _ => def.set(&mut self.flow, v),
        }
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
        if self.out.actions.try_push(a).is_err() {
            self.error = Some(DropReason::TooManyActions);
        }
    }

    /// Emits what it takes to make the packet look like the working flow.
    fn commit(&mut self) {
        let (f, b) = (self.flow, self.base);
        if f.dl_dst() != b.dl_dst() {
            self.emit(DpAction::Set(SetField::EthDst(f.dl_dst())));
        }
        if f.dl_src() != b.dl_src() {
            self.emit(DpAction::Set(SetField::EthSrc(f.dl_src())));
        }
        self.commit_vlans();
        match b.dl_type() {
            eth_type::IPV4 => {
                if f.nw_src() != b.nw_src() {
                    self.emit(DpAction::Set(SetField::Ipv4Src(f.nw_src())));
                }
                if f.nw_dst() != b.nw_dst() {
                    self.emit(DpAction::Set(SetField::Ipv4Dst(f.nw_dst())));
                }
            }
            eth_type::IPV6 => {
                if f.ipv6_src() != b.ipv6_src() {
                    self.emit(DpAction::Set(SetField::Ipv6Src(f.ipv6_src())));
                }
                if f.ipv6_dst() != b.ipv6_dst() {
                    self.emit(DpAction::Set(SetField::Ipv6Dst(f.ipv6_dst())));
                }
                if f.ipv6_label() != b.ipv6_label() {
                    self.emit(DpAction::Set(SetField::Ipv6Label(f.ipv6_label())));
                }
            }
            eth_type::ARP | eth_type::RARP => {
                if f.nw_proto() != b.nw_proto() {
                    self.emit(DpAction::Set(SetField::ArpOp(u16::from(f.nw_proto()))));
                }
                if f.nw_src() != b.nw_src() {
                    self.emit(DpAction::Set(SetField::ArpSpa(f.nw_src())));
                }
                if f.nw_dst() != b.nw_dst() {
                    self.emit(DpAction::Set(SetField::ArpTpa(f.nw_dst())));
                }
                if f.arp_sha() != b.arp_sha() {
                    self.emit(DpAction::Set(SetField::ArpSha(f.arp_sha())));
                }
                if f.arp_tha() != b.arp_tha() {
                    self.emit(DpAction::Set(SetField::ArpTha(f.arp_tha())));
                }
            }
            _ => {}
        }
        if b.is_ip() {
            if f.nw_tos() != b.nw_tos() {
                self.emit(DpAction::Set(SetField::IpTos(f.nw_tos())));
            }
            if f.nw_ttl() != b.nw_ttl() {
                self.emit(DpAction::Set(SetField::IpTtl(f.nw_ttl())));
            }
            let l4 = matches!(
                b.nw_proto(),
                ip_proto::TCP | ip_proto::UDP | ip_proto::SCTP | ip_proto::ICMP | ip_proto::ICMPV6
            );
            if l4 && b.nw_frag() & FRAG_LATER == 0 {
                if f.tp_src() != b.tp_src() {
                    self.emit(DpAction::Set(SetField::L4Src(f.tp_src())));
                }
                if f.tp_dst() != b.tp_dst() {
                    self.emit(DpAction::Set(SetField::L4Dst(f.tp_dst())));
                }
            }
        }
        self.base = self.flow;
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
