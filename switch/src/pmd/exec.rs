//! Executing datapath actions on one packet: rewrite, push/pop tags, and hand copies to the
//! transmit buffers. A copy that later actions would modify is a deep copy; one that nothing
//! modifies afterwards shares the buffer (reference count); the last output takes the packet.

use super::TxBuffer;
use crate::dpdk::{Burst, Mbuf};
use crate::ofproto::DpAction;
use crate::packet::{PacketInfo, edit};
use crate::stats::{DropReason, PmdCounters};

/// Runs `actions` on `pkt`. The caller has checked that there is at least one output.
#[inline]
pub fn execute(
    pkt: Mbuf,
    mut info: PacketInfo,
    actions: &[DpAction],
    tx: &mut [TxBuffer],
    counters: &mut PmdCounters,
    dropped: &mut Burst,
) {
    let last_output = actions.iter().rposition(|a| matches!(a, DpAction::Output(_)));
    let last_modify = actions.iter().rposition(DpAction::modifies);
    let mut pkt = Some(pkt);
    for (i, action) in actions.iter().enumerate() {
        let Some(p) = pkt.as_mut() else { break };
        match *action {
            DpAction::Output(port) if Some(i) == last_output => {
                tx[port.index()].push(pkt.take().expect("checked above"), counters);
            }
            DpAction::Output(port) if last_modify.is_some_and(|m| m > i) => match p.deep_copy() {
                Some(copy) => tx[port.index()].push(copy, counters),
                None => counters.drops.add(DropReason::NoMbuf, 1),
            },
            DpAction::Output(port) => tx[port.index()].push(p.share(), counters),
            DpAction::Set(set) => {
                if let Some(data) = writable(&mut pkt, counters) {
                    edit::apply(data, &info, &set);
                }
            }
            DpAction::PushVlan { tpid, tci } => {
                let Some(p) = owned(&mut pkt, counters) else {
                    break;
                };
                if p.prepend(4).is_ok() && p.data_mut().is_some_and(|d| edit::write_pushed_vlan(d, tpid, tci)) {
                    info.vlan = true;
                    info.shift(4);
                }
            }
            DpAction::PopVlan => {
                let Some(p) = owned(&mut pkt, counters) else {
                    break;
                };
                if p.data_mut().is_some_and(edit::shift_out_vlan) && p.trim_front(4).is_ok() {
                    info.shift(-4);
                    info.vlan = edit::has_vlan(p.data());
                }
            }
        }
    }
    if let Some(p) = pkt {
        // Only when actions end in a modification after the last output (never from xlate).
        let _ = dropped.push(p);
    }
}

/// The packet, made exclusively ours (copied if it is shared or not directly writable).
fn owned<'a>(pkt: &'a mut Option<Mbuf>, counters: &mut PmdCounters) -> Option<&'a mut Mbuf> {
    let p = pkt.as_mut()?;
    if !p.is_writable() {
        match p.deep_copy() {
            Some(copy) => *p = copy,
            None => {
                counters.drops.add(DropReason::NoMbuf, 1);
                *pkt = None;
                return None;
            }
        }
    }
    pkt.as_mut()
}

fn writable<'a>(pkt: &'a mut Option<Mbuf>, counters: &mut PmdCounters) -> Option<&'a mut [u8]> {
    owned(pkt, counters)?.data_mut()
}
