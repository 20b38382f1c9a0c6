//! Datapath actions as 64-bit words, so a megaflow's actions live in atomics that PMDs read
//! while the control core writes (no pointers, no `unsafe`). One word per action, three for
//! the actions that carry an IPv6 address.

use crate::ofproto::{DpAction, Translation};
use crate::packet::{PortIdx, SetField};
use crate::stats::DropReason;

const OUTPUT: u64 = 1;
const PUSH_VLAN: u64 = 2;
const POP_VLAN: u64 = 3;
const DROP: u64 = 4;
const ETH_SRC: u64 = 16;
const ETH_DST: u64 = 17;
const VLAN_TCI: u64 = 18;
const IPV4_SRC: u64 = 19;
const IPV4_DST: u64 = 20;
const IP_TOS: u64 = 21;
const IP_TTL: u64 = 22;
const IPV6_SRC: u64 = 23;
const IPV6_DST: u64 = 24;
const IPV6_LABEL: u64 = 25;
const L4_SRC: u64 = 26;
const L4_DST: u64 = 27;
const ARP_OP: u64 = 28;
const ARP_SPA: u64 = 29;
const ARP_TPA: u64 = 30;
const ARP_SHA: u64 = 31;
const ARP_THA: u64 = 32;

fn mac_word(tag: u64, mac: [u8; 6]) -> u64 {
    tag | (u64::from_be_bytes([0, 0, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]]) << 8)
}

fn word_mac(w: u64) -> [u8; 6] {
    let b = (w >> 8).to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

/// Appends the words of a translation to `out`: its actions, or, when it outputs nothing, one
/// word with the reason the packet is dropped (so the fast path counts drops by reason too).
pub fn encode_translation(t: &Translation, out: &mut Vec<u64>) {
    match t.drop {
        Some(reason) if !t.actions.iter().any(|a| matches!(a, DpAction::Output(_))) => {
            out.push(DROP | ((reason as u64) << 8));
        }
        _ => encode(&t.actions, out),
    }
}

/// The drop reason, if the words say "drop".
#[inline]
pub fn drop_reason(words: &[u64]) -> Option<DropReason> {
    match words {
        [w] if w & 0xff == DROP => DropReason::from_index((w >> 8) as usize),
        _ => None,
    }
}

/// Appends the words of `actions` to `out`.
pub fn encode(actions: &[DpAction], out: &mut Vec<u64>) {
    for a in actions {
        match *a {
            DpAction::Output(p) => out.push(OUTPUT | (u64::from(p.0) << 8)),
            DpAction::PushVlan { tpid, tci } => out.push(PUSH_VLAN | (u64::from(tpid) << 8) | (u64::from(tci) << 24)),
            DpAction::PopVlan => out.push(POP_VLAN),
            DpAction::Set(s) => match s {
                SetField::EthSrc(m) => out.push(mac_word(ETH_SRC, m)),
                SetField::EthDst(m) => out.push(mac_word(ETH_DST, m)),
                SetField::VlanTci(v) => out.push(VLAN_TCI | (u64::from(v) << 8)),
                SetField::Ipv4Src(v) => out.push(IPV4_SRC | (u64::from(v) << 8)),
                SetField::Ipv4Dst(v) => out.push(IPV4_DST | (u64::from(v) << 8)),
                SetField::IpTos(v) => out.push(IP_TOS | (u64::from(v) << 8)),
                SetField::IpTtl(v) => out.push(IP_TTL | (u64::from(v) << 8)),
                SetField::Ipv6Src(a) | SetField::Ipv6Dst(a) => {
                    out.push(if matches!(s, SetField::Ipv6Src(_)) { IPV6_SRC } else { IPV6_DST });
                    out.push(u64::from_be_bytes(a[..8].try_into().expect("8")));
                    out.push(u64::from_be_bytes(a[8..].try_into().expect("8")));
                }
                SetField::Ipv6Label(v) => out.push(IPV6_LABEL | (u64::from(v) << 8)),
                SetField::L4Src(v) => out.push(L4_SRC | (u64::from(v) << 8)),
                SetField::L4Dst(v) => out.push(L4_DST | (u64::from(v) << 8)),
                SetField::ArpOp(v) => out.push(ARP_OP | (u64::from(v) << 8)),
                SetField::ArpSpa(v) => out.push(ARP_SPA | (u64::from(v) << 8)),
                SetField::ArpTpa(v) => out.push(ARP_TPA | (u64::from(v) << 8)),
                SetField::ArpSha(m) => out.push(mac_word(ARP_SHA, m)),
                SetField::ArpTha(m) => out.push(mac_word(ARP_THA, m)),
            },
        }
    }
}

/// Decodes the next action from `words`; returns it and how many words it took, or `None` for
/// an unknown tag or a short buffer (never from `encode`'s output).
#[inline]
pub fn decode(words: &[u64]) -> Option<(DpAction, usize)> {
    let w = *words.first()?;
    let v = w >> 8;
    let set = |s| Some((DpAction::Set(s), 1));
    match w & 0xff {
        OUTPUT => Some((DpAction::Output(PortIdx(v as u16)), 1)),
        PUSH_VLAN => Some((DpAction::PushVlan { tpid: v as u16, tci: (v >> 16) as u16 }, 1)),
        POP_VLAN => Some((DpAction::PopVlan, 1)),
        ETH_SRC => set(SetField::EthSrc(word_mac(w))),
        ETH_DST => set(SetField::EthDst(word_mac(w))),
        VLAN_TCI => set(SetField::VlanTci(v as u16)),
        IPV4_SRC => set(SetField::Ipv4Src(v as u32)),
        IPV4_DST => set(SetField::Ipv4Dst(v as u32)),
        IP_TOS => set(SetField::IpTos(v as u8)),
        IP_TTL => set(SetField::IpTtl(v as u8)),
        IPV6_SRC | IPV6_DST => {
            let (hi, lo) = (words.get(1)?, words.get(2)?);
            let mut a = [0u8; 16];
            a[..8].copy_from_slice(&hi.to_be_bytes());
            a[8..].copy_from_slice(&lo.to_be_bytes());
            let s = if w & 0xff == IPV6_SRC { SetField::Ipv6Src(a) } else { SetField::Ipv6Dst(a) };
            Some((DpAction::Set(s), 3))
        }
        IPV6_LABEL => set(SetField::Ipv6Label(v as u32)),
        L4_SRC => set(SetField::L4Src(v as u16)),
        L4_DST => set(SetField::L4Dst(v as u16)),
        ARP_OP => set(SetField::ArpOp(v as u16)),
        ARP_SPA => set(SetField::ArpSpa(v as u32)),
        ARP_TPA => set(SetField::ArpTpa(v as u32)),
        ARP_SHA => set(SetField::ArpSha(word_mac(w))),
        ARP_THA => set(SetField::ArpTha(word_mac(w))),
        _ => None,
    }
}

/// Whether the encoded actions are a plain list of outputs (the common case the PMD forwards
/// without touching packet bytes).
pub fn outputs_only(words: &[u64]) -> bool {
    words.iter().all(|w| w & 0xff == OUTPUT)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn set_field() -> impl Strategy<Value = SetField> {
        prop_oneof![
            any::<[u8; 6]>().prop_map(SetField::EthSrc),
            any::<[u8; 6]>().prop_map(SetField::EthDst),
            any::<u16>().prop_map(SetField::VlanTci),
            any::<u32>().prop_map(SetField::Ipv4Src),
            any::<u32>().prop_map(SetField::Ipv4Dst),
            any::<u8>().prop_map(SetField::IpTos),
            any::<u8>().prop_map(SetField::IpTtl),
            any::<[u8; 16]>().prop_map(SetField::Ipv6Src),
            any::<[u8; 16]>().prop_map(SetField::Ipv6Dst),
            (0u32..0x10_0000).prop_map(SetField::Ipv6Label),
            any::<u16>().prop_map(SetField::L4Src),
            any::<u16>().prop_map(SetField::L4Dst),
            any::<u16>().prop_map(SetField::ArpOp),
            any::<u32>().prop_map(SetField::ArpSpa),
            any::<u32>().prop_map(SetField::ArpTpa),
            any::<[u8; 6]>().prop_map(SetField::ArpSha),
            any::<[u8; 6]>().prop_map(SetField::ArpTha),
        ]
    }

    fn action() -> impl Strategy<Value = DpAction> {
        prop_oneof![
            any::<u16>().prop_map(|p| DpAction::Output(PortIdx(p))),
            (any::<u16>(), any::<u16>()).prop_map(|(tpid, tci)| DpAction::PushVlan { tpid, tci }),
            Just(DpAction::PopVlan),
            set_field().prop_map(DpAction::Set),
        ]
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(actions in prop::collection::vec(action(), 0..20)) {
            let mut words = Vec::new();
            encode(&actions, &mut words);
            let mut decoded = Vec::new();
            let mut at = 0;
            while at < words.len() {
                let (a, n) = decode(&words[at..]).expect("valid words");
                decoded.push(a);
                at += n;
            }
            prop_assert_eq!(decoded, actions.clone());
            prop_assert_eq!(outputs_only(&words), actions.iter().all(|a| matches!(a, DpAction::Output(_))));
        }

        #[test]
        fn drops_carry_their_reason(i in 0usize..DropReason::COUNT) {
            let reason = DropReason::from_index(i).unwrap();
            let t = Translation { actions: Default::default(), drop: Some(reason), ..Default::default() };
            let mut words = Vec::new();
            encode_translation(&t, &mut words);
            prop_assert_eq!(drop_reason(&words), Some(reason));
        }
    }
}
