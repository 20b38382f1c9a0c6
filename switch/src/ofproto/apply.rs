//! Datapath actions applied to a frame held in ordinary memory: what `ferrovs trace` shows as the
//! output packets, and the plain-bytes model of the PMD's mbuf executor (same edits, same order).

use ferrovs_config::flow::{FlowKey, VLAN_CFI};

use super::DpAction;
use crate::packet::{Layout, PacketInfo, PortIdx, edit};

/// Runs `actions` on a copy of `frame` (parsed as `key`, `layout`); returns each output's frame.
pub fn apply_to_bytes(frame: &[u8], key: &FlowKey, layout: Layout, actions: &[DpAction]) -> Vec<(PortIdx, Vec<u8>)> {
    let mut info =
        PacketInfo { dl_type: key.dl_type(), nw_proto: key.nw_proto(), vlan: key.vlan_tci() & VLAN_CFI != 0, layout };
    let mut d = frame.to_vec();
    let mut out = Vec::new();
    for action in actions {
        match *action {
            DpAction::Output(port) => out.push((port, d.clone())),
            DpAction::Set(set) => edit::apply(&mut d, &info, &set),
            DpAction::PushVlan { tpid, tci } => {
                d.splice(0..0, [0u8; 4]);
                if edit::write_pushed_vlan(&mut d, tpid, tci) {
                    info.vlan = true;
                    info.shift(4);
                } else {
                    d.drain(0..4);
                }
            }
            DpAction::PopVlan => {
                if edit::shift_out_vlan(&mut d) {
                    d.drain(0..4);
                    info.shift(-4);
                    info.vlan = edit::has_vlan(&d);
                }
            }
        }
    }
    out
}
