//! Printing rules, matches and actions in `ovs-ofctl dump-flows` style. Whatever is printed parses
//! back to the same rule.

use std::fmt;

use super::field::{FIELDS, Format, format_mac, format_value, read_be};
use super::key::{Match, VLAN_CFI, eth_type, ip_proto};
use super::parse::shorthands;
use super::{Action, Field, FlowRule, OfPort, PortMap};

pub(super) struct DisplayRule<'a> {
    pub rule: &'a FlowRule,
    pub ports: &'a dyn PortMap,
}

pub(super) struct DisplayMatch<'a> {
    pub m: &'a Match,
    pub ports: &'a dyn PortMap,
}

pub(super) struct DisplayActions<'a> {
    pub actions: &'a [Action],
    pub ports: &'a dyn PortMap,
}

fn port_name(ports: &dyn PortMap, p: OfPort) -> String {
    ports.name_of(p).map_or_else(|| p.to_string(), str::to_string)
}

impl fmt::Display for DisplayRule<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.rule;
        if r.cookie != 0 {
            write!(f, "cookie={:#x}, ", r.cookie)?;
        }
        if r.table != 0 {
            write!(f, "table={}, ", r.table)?;
        }
        if r.idle_timeout != 0 {
            write!(f, "idle_timeout={}, ", r.idle_timeout)?;
        }
        if r.hard_timeout != 0 {
            write!(f, "hard_timeout={}, ", r.hard_timeout)?;
        }
        write!(f, "priority={}", r.priority)?;
        let m = DisplayMatch { m: &r.matches, ports: self.ports }.to_string();
        if !m.is_empty() {
            write!(f, ",{m}")?;
        }
        write!(f, " actions={}", DisplayActions { actions: &r.actions, ports: self.ports })
    }
}

impl fmt::Display for DisplayMatch<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = match_parts(self.m, self.ports);
        f.write_str(&parts.join(","))
    }
}

fn match_parts(m: &Match, ports: &dyn PortMap) -> Vec<String> {
    let mut parts = Vec::new();
    let dl_type = m.exact_dl_type();
    let proto = m.exact_nw_proto();
    let mut proto_printed = false;
    if let Some(t) = dl_type {
        let with_proto = proto.and_then(|p| shorthands().iter().find(|(_, st, sp)| *st == t && *sp == Some(p)));
        if let Some((name, _, _)) = with_proto {
            parts.push(name.to_string());
            proto_printed = true;
        } else if let Some((name, _, _)) = shorthands().iter().find(|(_, st, sp)| *st == t && sp.is_none()) {
            parts.push(name.to_string());
        } else {
            parts.push(format!("dl_type={t:#06x}"));
        }
    }
    let arp = matches!(dl_type, Some(eth_type::ARP | eth_type::RARP));
    let icmp4 = dl_type == Some(eth_type::IPV4) && proto == Some(ip_proto::ICMP);
    let icmp6 = dl_type == Some(eth_type::IPV6) && proto == Some(ip_proto::ICMPV6);
    for def in FIELDS {
        let skip = match def.field {
            Field::DlType | Field::VlanVid | Field::VlanPcp | Field::DlVlan | Field::DlVlanPcp | Field::IpDscp => true,
            Field::ArpSpa | Field::ArpTpa | Field::ArpOp => !arp,
            Field::NwSrc | Field::NwDst => arp,
            Field::NwProto => arp || proto_printed,
            Field::IcmpType | Field::IcmpCode => !icmp4,
            Field::Icmpv6Type | Field::Icmpv6Code => !icmp6,
            Field::TpSrc | Field::TpDst => icmp4 || icmp6,
            // Same bits as tp_src/tp_dst, which print them.
            Field::TcpSrc | Field::TcpDst | Field::UdpSrc | Field::UdpDst | Field::SctpSrc | Field::SctpDst => true,
            _ => false,
        };
        if skip {
            continue;
        }
        if def.field == Field::VlanTci {
            parts.extend(vlan_parts(m));
            continue;
        }
        let mask = read_be(&m.mask, def.offset, def.len) & def.bits;
        if mask == 0 {
            continue;
        }
        let value = (read_be(&m.key, def.offset, def.len) & def.bits) >> def.shift;
        let mask = mask >> def.shift;
        let text = match def.format {
            Format::Port => port_name(ports, value as OfPort),
            _ => format_value(def, value, mask),
        };
        parts.push(format!("{}={text}", def.name));
    }
    parts
}

fn vlan_parts(m: &Match) -> Vec<String> {
    let (tci, mask) = (m.key.vlan_tci(), m.mask.vlan_tci());
    let cfi = tci & VLAN_CFI != 0;
    match mask {
        0 => vec![],
        0xffff if tci == 0 => vec!["vlan_tci=0x0000".into()],
        0x1fff if cfi => vec![format!("dl_vlan={}", tci & 0x0fff)],
        0xf000 if cfi => vec![format!("dl_vlan_pcp={}", tci >> 13)],
        0xffff if cfi => vec![format!("dl_vlan={}", tci & 0x0fff), format!("dl_vlan_pcp={}", tci >> 13)],
        0xffff => vec![format!("vlan_tci={tci:#06x}")],
        _ => vec![format!("vlan_tci={tci:#06x}/{mask:#06x}")],
    }
}

impl fmt::Display for DisplayActions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.actions.is_empty() {
            return f.write_str("drop");
        }
        for (i, a) in self.actions.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let port = |p: OfPort| port_name(self.ports, p);
            match a {
                Action::Output(p) => write!(f, "output:{}", port(*p))?,
                Action::InPort => f.write_str("IN_PORT")?,
                Action::Flood => f.write_str("FLOOD")?,
                Action::All => f.write_str("ALL")?,
                Action::Normal => f.write_str("NORMAL")?,
                Action::Drop => f.write_str("drop")?,
                Action::ModVlanVid(v) => write!(f, "mod_vlan_vid:{v}")?,
                Action::ModVlanPcp(v) => write!(f, "mod_vlan_pcp:{v}")?,
                Action::StripVlan => f.write_str("strip_vlan")?,
                Action::PushVlan(t) => write!(f, "push_vlan:{t:#06x}")?,
                Action::ModDlSrc(m) => write!(f, "mod_dl_src:{}", format_mac(mac_u128(m)))?,
                Action::ModDlDst(m) => write!(f, "mod_dl_dst:{}", format_mac(mac_u128(m)))?,
                Action::ModNwSrc(ip) => write!(f, "mod_nw_src:{}", std::net::Ipv4Addr::from(*ip))?,
                Action::ModNwDst(ip) => write!(f, "mod_nw_dst:{}", std::net::Ipv4Addr::from(*ip))?,
                Action::ModNwTos(t) => write!(f, "mod_nw_tos:{t}")?,
                Action::ModTpSrc(p) => write!(f, "mod_tp_src:{p}")?,
                Action::ModTpDst(p) => write!(f, "mod_tp_dst:{p}")?,
                Action::DecTtl => f.write_str("dec_ttl")?,
                Action::SetField(field, v) => {
                    let def = field.def();
                    write!(f, "set_field:{}->{}", format_value(def, *v, def.max()), def.name)?
                }
                Action::Resubmit { port: p, table: None } => {
                    write!(f, "resubmit:{}", p.map_or_else(|| "IN_PORT".to_string(), port))?
                }
                Action::Resubmit { port: p, table: Some(t) } => {
                    write!(f, "resubmit({},{t})", p.map_or_else(String::new, port))?
                }
                Action::GotoTable(t) => write!(f, "goto_table:{t}")?,
            }
        }
        Ok(())
    }
}

fn mac_u128(m: &[u8; 6]) -> u128 {
    m.iter().fold(0u128, |acc, b| (acc << 8) | u128::from(*b))
}
