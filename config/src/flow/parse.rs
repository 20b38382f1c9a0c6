//! The `ovs-ofctl add-flow` parser: `field=value` pairs separated by commas or spaces, then
//! `actions=` and the rest of the line. Every error is one line naming the part at fault.

use super::field::{FieldDef, Format, Prereq, parse_int, parse_mac, parse_value, read_be, write_be};
use super::key::{Match, VLAN_CFI, eth_type, ip_proto};
use super::{Action, DEFAULT_PRIORITY, Field, FlowRule, OFPORT_MAX, OfPort, PortMap, TABLE_MAX};

/// Protocol shorthands: name, dl_type, nw_proto.
const SHORTHANDS: &[(&str, u16, Option<u8>)] = &[
    ("ip", eth_type::IPV4, None),
    ("ipv6", eth_type::IPV6, None),
    ("arp", eth_type::ARP, None),
    ("rarp", eth_type::RARP, None),
    ("tcp", eth_type::IPV4, Some(ip_proto::TCP)),
    ("udp", eth_type::IPV4, Some(ip_proto::UDP)),
    ("sctp", eth_type::IPV4, Some(ip_proto::SCTP)),
    ("icmp", eth_type::IPV4, Some(ip_proto::ICMP)),
    ("tcp6", eth_type::IPV6, Some(ip_proto::TCP)),
    ("udp6", eth_type::IPV6, Some(ip_proto::UDP)),
    ("sctp6", eth_type::IPV6, Some(ip_proto::SCTP)),
    ("icmp6", eth_type::IPV6, Some(ip_proto::ICMPV6)),
];

/// The protocol shorthands, for printing.
pub(super) fn shorthands() -> &'static [(&'static str, u16, Option<u8>)] {
    SHORTHANDS
}

/// OVS actions we know of but do not implement: a clearer message than "unknown".
const UNSUPPORTED_ACTIONS: &[&str] = &[
    "controller",
    "local",
    "learn",
    "ct",
    "ct_clear",
    "nat",
    "meter",
    "group",
    "enqueue",
    "set_queue",
    "pop_queue",
    "note",
    "sample",
    "clone",
    "multipath",
    "bundle",
    "bundle_load",
    "load",
    "move",
    "push",
    "pop",
    "exit",
    "fin_timeout",
    "write_metadata",
    "write_actions",
    "clear_actions",
    "set_tunnel",
    "set_tunnel64",
    "mod_nw_ttl",
    "mod_nw_ecn",
    "set_mpls_label",
    "push_mpls",
    "pop_mpls",
    "dec_mpls_ttl",
    "check_pkt_larger",
    "encap",
    "decap",
];

/// Parses one rule.
pub fn parse_flow(text: &str, ports: &dyn PortMap) -> Result<FlowRule, String> {
    let (match_part, actions_part) = split_actions(text)?;
    let mut rule = FlowRule {
        table: 0,
        priority: DEFAULT_PRIORITY,
        cookie: 0,
        idle_timeout: 0,
        hard_timeout: 0,
        matches: Match::ANY,
        actions: Vec::new(),
    };
    let mut builder = MatchBuilder::default();
    let mut seen: Vec<&str> = Vec::new();
    for token in split_list(match_part)? {
        let (name, value) = split_token(token);
        if seen.contains(&name) {
            return Err(format!("{name}: given twice"));
        }
        seen.push(name);
        let value = || value.filter(|v| !v.is_empty()).ok_or_else(|| format!("{name}: missing value"));
        match name {
            "priority" => rule.priority = number(value()?, u16::MAX.into(), name)? as u16,
            "table" => rule.table = number(value()?, TABLE_MAX.into(), name)? as u8,
            "idle_timeout" => rule.idle_timeout = number(value()?, u16::MAX.into(), name)? as u16,
            "hard_timeout" => rule.hard_timeout = number(value()?, u16::MAX.into(), name)? as u16,
            "cookie" => {
                let v = value()?;
                if v.contains('/') {
                    return Err("cookie: a cookie mask only makes sense when modifying or deleting flows".into());
                }
                rule.cookie = number(v, u64::MAX.into(), name)? as u64;
            }
            _ => builder.add(name, value, ports)?,
        }
    }
    rule.matches = builder.finish()?;
    rule.actions = parse_actions(actions_part, ports, rule.table, &rule.matches)?;
    Ok(rule)
}

/// Parses a match alone (`tcp,in_port=p0,tp_dst=80`), as `ferrovs trace` takes a packet's fields.
pub fn parse_match(text: &str, ports: &dyn PortMap) -> Result<Match, String> {
    let mut builder = MatchBuilder::default();
    for token in split_list(text)? {
        let (name, value) = split_token(token);
        let value = || value.filter(|v| !v.is_empty()).ok_or_else(|| format!("{name}: missing value"));
        builder.add(name, value, ports)?;
    }
    builder.finish()
}

fn split_token(token: &str) -> (&str, Option<&str>) {
    match token.split_once('=') {
        Some((n, v)) => (n.trim(), Some(v.trim())),
        None => (token, None),
    }
}

/// Accumulates match fields; checks conflicts as it goes and prerequisites at the end.
#[derive(Default)]
struct MatchBuilder {
    m: Match,
    fields: Vec<&'static FieldDef>,
}

impl MatchBuilder {
    fn add<'a>(
        &mut self,
        name: &str,
        value: impl Fn() -> Result<&'a str, String>,
        ports: &dyn PortMap,
    ) -> Result<(), String> {
        if let Some((_, dl_type, proto)) = SHORTHANDS.iter().find(|(n, _, _)| *n == name) {
            self.set(Field::DlType.def(), u128::from(*dl_type), 0xffff, name)?;
            if let Some(p) = proto {
                self.set(Field::NwProto.def(), u128::from(*p), 0xff, name)?;
            }
            return Ok(());
        }
        let field = Field::by_name(name).ok_or_else(|| format!("unknown field {name:?}"))?;
        let def = field.def();
        if !def.matchable {
            return Err(format!("{name}: can only be set (set_field), not matched; match dl_vlan/dl_vlan_pcp instead"));
        }
        if self.fields.iter().any(|d| d.field == field) {
            return Err(format!("{name}: given twice"));
        }
        let (v, m) = match def.format {
            Format::Port => (u128::from(parse_port(value()?, ports, name)?), 0xffff),
            _ => parse_value(def, value()?)?,
        };
        let (kv, km) = def.encode(v, m);
        self.set_raw(def, kv, km, name)?;
        self.fields.push(def);
        Ok(())
    }

    fn set(&mut self, def: &FieldDef, value: u128, mask: u128, name: &str) -> Result<(), String> {
        let (kv, km) = def.encode(value, mask);
        self.set_raw(def, kv, km, name)
    }

    fn set_raw(&mut self, def: &FieldDef, value: u128, mask: u128, name: &str) -> Result<(), String> {
        let old_v = read_be(&self.m.key, def.offset, def.len);
        let old_m = read_be(&self.m.mask, def.offset, def.len);
        if (old_v ^ value) & old_m & mask != 0 {
            return Err(format!("{name}: conflicts with an earlier part of the match"));
        }
        write_be(&mut self.m.key, def.offset, def.len, old_v | (value & mask));
        write_be(&mut self.m.mask, def.offset, def.len, old_m | mask);
        Ok(())
    }

    fn finish(self) -> Result<Match, String> {
        for def in &self.fields {
            if !def.prereq.satisfied_by(&self.m) {
                return Err(format!(
                    "{}: needs {} in the match (e.g. \"{},{}=...\")",
                    def.name,
                    def.prereq.hint(),
                    def.prereq.hint().split([' ', ',']).next().unwrap_or(""),
                    def.name
                ));
            }
        }
        Ok(self.m)
    }
}

/// Splits `... actions=...` into the match part and the action list (required, last).
fn split_actions(text: &str) -> Result<(&str, &str), String> {
    let mut depth = 0i32;
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'(' | b'[' => depth += 1,
            b')' | b']' => depth -= 1,
            b'a' if depth == 0 && text[i..].starts_with("actions") => {
                let boundary = i == 0 || matches!(bytes[i - 1], b',' | b' ' | b'\t');
                let rest = text[i + "actions".len()..].trim_start();
                if boundary && let Some(actions) = rest.strip_prefix('=') {
                    return Ok((text[..i].trim_end_matches([',', ' ', '\t']), actions.trim()));
                }
            }
            _ => {}
        }
    }
    Err("missing actions= (every rule needs one; use actions=drop to drop)".into())
}

/// Splits a comma- or space-separated list, keeping parenthesised groups whole.
fn split_list(text: &str) -> Result<Vec<&str>, String> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => {
                depth -= 1;
                if depth < 0 {
                    return Err(format!("unbalanced {c:?} in {text:?}"));
                }
            }
            ',' | ' ' | '\t' if depth == 0 => {
                if !text[start..i].trim().is_empty() {
                    out.push(text[start..i].trim());
                }
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced parentheses in {text:?}"));
    }
    if !text[start..].trim().is_empty() {
        out.push(text[start..].trim());
    }
    Ok(out)
}

/// A decimal or `0x` hexadecimal number no larger than `max`.
fn number(text: &str, max: u128, field: &str) -> Result<u128, String> {
    match parse_int(text) {
        Some(n) if n <= max => Ok(n),
        Some(n) => Err(format!("{field}: {n} is out of range (0 to {max})")),
        None => Err(format!("{field}: {text:?} is not a number")),
    }
}

/// A port by name or by number; either must exist.
fn parse_port(text: &str, ports: &dyn PortMap, field: &str) -> Result<OfPort, String> {
    if text.starts_with(|c: char| c.is_ascii_digit()) {
        let n = number(text, OFPORT_MAX.into(), field)? as OfPort;
        return if ports.has_number(n) { Ok(n) } else { Err(format!("{field}: unknown port {n}")) };
    }
    ports.by_name(text).ok_or_else(|| format!("{field}: unknown port {text:?}"))
}

/// A reserved port name in an output position, as the action it stands for.
fn reserved_port(name: &str) -> Option<Result<Action, String>> {
    Some(Ok(match name.to_ascii_lowercase().as_str() {
        "in_port" => Action::InPort,
        "flood" => Action::Flood,
        "all" => Action::All,
        "normal" => Action::Normal,
        "local" | "controller" | "none" | "any" | "table" => {
            return Some(Err(format!("{name}: port not supported by ferrovs")));
        }
        _ => return None,
    }))
}

/// Parses an action list; `table` is the rule's table (for `goto_table` checks).
///
/// `matches` is the rule's match: a `set_field` must have its field's prerequisites in it (or
/// established by an earlier action, as `push_vlan` does for `vlan_vid`), as Open vSwitch requires.
pub fn parse_actions(text: &str, ports: &dyn PortMap, table: u8, matches: &Match) -> Result<Vec<Action>, String> {
    let tokens = split_list(text)?;
    let mut actions = Vec::with_capacity(tokens.len());
    for token in &tokens {
        actions.push(parse_action(token, ports, table)?);
    }
    check_set_field_prereqs(&actions, matches)?;
    if actions.contains(&Action::Drop) {
        if actions.len() > 1 {
            return Err("drop must be the only action".into());
        }
        actions.clear(); // `drop` and an empty list are the same rule
    }
    if let Some(i) = actions.iter().position(|a| matches!(a, Action::GotoTable(_)))
        && i + 1 != actions.len()
    {
        return Err("goto_table must be the last action".into());
    }
    Ok(actions)
}

fn parse_action(token: &str, ports: &dyn PortMap, table: u8) -> Result<Action, String> {
    let (name, arg) = match token.find([':', '(']) {
        Some(i) if token.as_bytes()[i] == b'(' => {
            let inner = &token[i + 1..];
            let Some(inner) = inner.strip_suffix(')') else {
                return Err(format!("{token:?}: missing ')'"));
            };
            (token[..i].trim(), Some(inner.trim()))
        }
        Some(i) => (token[..i].trim(), Some(token[i + 1..].trim())),
        None => (token.trim(), None),
    };
    let lname = name.to_ascii_lowercase();
    let need = |what: &str| arg.filter(|a| !a.is_empty()).ok_or_else(|| format!("{name}: missing {what}"));
    let int = |max: u128| -> Result<u128, String> { number(need("value")?, max, name) };
    Ok(match (lname.as_str(), arg) {
        ("drop", None) => Action::Drop,
        ("strip_vlan" | "pop_vlan", None) => Action::StripVlan,
        ("dec_ttl", None) => Action::DecTtl,
        ("output", _) => {
            let port = need("port (output:PORT)")?;
            let port = port.strip_prefix("port=").unwrap_or(port);
            match reserved_port(port) {
                Some(a) => a?,
                None => Action::Output(parse_port(port, ports, "output")?),
            }
        }
        ("mod_vlan_vid", _) => Action::ModVlanVid(int(0x0fff)? as u16),
        ("mod_vlan_pcp", _) => Action::ModVlanPcp(int(7)? as u8),
        ("push_vlan", _) => {
            let tpid = int(0xffff)? as u16;
            if tpid != eth_type::VLAN && tpid != eth_type::VLAN_QINQ {
                return Err(format!("push_vlan: ethertype {tpid:#06x} is not 0x8100 or 0x88a8"));
            }
            Action::PushVlan(tpid)
        }
        ("mod_dl_src" | "mod_dl_dst", _) => {
            let mac = parse_mac(need("MAC address")?).ok_or_else(|| format!("{name}: {arg:?} is not a MAC address"))?;
            let b = (mac as u64).to_be_bytes();
            let mac = [b[2], b[3], b[4], b[5], b[6], b[7]];
            if lname == "mod_dl_src" { Action::ModDlSrc(mac) } else { Action::ModDlDst(mac) }
        }
        ("mod_nw_src" | "mod_nw_dst", _) => {
            let ip: std::net::Ipv4Addr =
                need("IPv4 address")?.parse().map_err(|_| format!("{name}: {arg:?} is not an IPv4 address"))?;
            if lname == "mod_nw_src" { Action::ModNwSrc(ip.into()) } else { Action::ModNwDst(ip.into()) }
        }
        ("mod_nw_tos", _) => {
            let tos = int(0xff)? as u8;
            if tos & 3 != 0 {
                return Err(format!("mod_nw_tos: {tos} has ECN bits set (give DSCP << 2: a multiple of 4)"));
            }
            Action::ModNwTos(tos)
        }
        ("mod_tp_src", _) => Action::ModTpSrc(int(0xffff)? as u16),
        ("mod_tp_dst", _) => Action::ModTpDst(int(0xffff)? as u16),
        ("set_field", _) => parse_set_field(need("VALUE->FIELD")?)?,
        ("resubmit", Some(a)) if token.contains('(') => {
            let (port, tbl) = a.split_once(',').unwrap_or((a, ""));
            let port = match port.trim() {
                "" => None,
                p if p.eq_ignore_ascii_case("in_port") => None,
                p => Some(parse_port(p, ports, "resubmit")?),
            };
            let tbl = match tbl.trim() {
                "" => None,
                t => Some(number(t, TABLE_MAX.into(), "resubmit")? as u8),
            };
            Action::Resubmit { port, table: tbl }
        }
        ("resubmit", Some(p)) if p.eq_ignore_ascii_case("in_port") => Action::Resubmit { port: None, table: None },
        ("resubmit", Some(p)) => Action::Resubmit { port: Some(parse_port(p, ports, "resubmit")?), table: None },
        ("goto_table", _) => {
            let t = int(TABLE_MAX.into())? as u8;
            if t <= table {
                return Err(format!("goto_table: table {t} is not after this rule's table {table}"));
            }
            Action::GotoTable(t)
        }
        (bare, None) => match reserved_port(bare) {
            Some(a) => a?,
            // A bare port name or number is ovs-ofctl's shorthand for output to it.
            None if ports.by_name(bare).is_some() || bare.starts_with(|c: char| c.is_ascii_digit()) => {
                Action::Output(parse_port(bare, ports, "output")?)
            }
            None if UNSUPPORTED_ACTIONS.contains(&lname.as_str()) => {
                return Err(format!("{name}: action not supported by ferrovs"));
            }
            None => return Err(format!("unknown action {token:?}")),
        },
        _ if UNSUPPORTED_ACTIONS.contains(&lname.as_str()) => {
            return Err(format!("{name}: action not supported by ferrovs"));
        }
        _ => return Err(format!("unknown action {token:?}")),
    })
}

fn parse_set_field(arg: &str) -> Result<Action, String> {
    let (value, name) = arg.split_once("->").ok_or_else(|| format!("set_field: {arg:?} is not VALUE->FIELD"))?;
    let field = match name.trim() {
        // As a set_field target, Open vSwitch's tp_src/tp_dst are the TCP ports.
        "tp_src" => Field::TcpSrc,
        "tp_dst" => Field::TcpDst,
        n => Field::by_name(n).ok_or_else(|| format!("set_field: unknown field {name:?}"))?,
    };
    let def = field.def();
    if !def.writable {
        return Err(format!("set_field: {} cannot be set", def.name));
    }
    if value.contains('/') {
        return Err("set_field: masked set_field is not supported".into());
    }
    let v = match field {
        // An OpenFlow 1.2+ vlan_vid may carry the "present" bit (0x1000): 4103 is VLAN 7.
        Field::VlanVid => number(value.trim(), 0x1fff, "set_field")? & 0x0fff,
        _ => parse_value(def, value.trim()).map_err(|e| format!("set_field: {e}"))?.0,
    };
    Ok(Action::SetField(field, v))
}

/// Checks every `set_field` against what the match (updated by the VLAN actions before it)
/// guarantees about the packet.
fn check_set_field_prereqs(actions: &[Action], matches: &Match) -> Result<(), String> {
    let mut m = *matches;
    let vlan = |m: &mut Match, present: bool| {
        m.mask.set_vlan_tci(m.mask.vlan_tci() | VLAN_CFI);
        let tci = m.key.vlan_tci() & !VLAN_CFI;
        m.key.set_vlan_tci(if present { tci | VLAN_CFI } else { tci });
    };
    for a in actions {
        match a {
            Action::PushVlan(_) | Action::ModVlanVid(_) | Action::ModVlanPcp(_) => vlan(&mut m, true),
            Action::StripVlan => vlan(&mut m, false),
            Action::SetField(field, _) => {
                // As set_field targets, nw_src/nw_dst are IPv4 only (arp_spa/arp_tpa for ARP).
                let prereq = match field {
                    Field::NwSrc | Field::NwDst => Prereq::Ipv4,
                    f => f.def().prereq,
                };
                if !prereq.satisfied_by(&m) {
                    return Err(format!("set_field: {} needs {} in the match", field.name(), prereq.hint()));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
