//! The NORMAL action: Open vSwitch's `xlate_normal`. Check the frame's VLAN against its input
//! port, drop reserved destinations, learn the source, then send to the port the destination was
//! learned on, or flood the VLAN (never back out of the input port), tagging each copy as its
//! output port's VLAN mode says.
//!
//! The result depends on the input port, both addresses and the whole TCI (a tag keeps its
//! priority bits), so exactly those join the megaflow mask.

use ferrovs_config::flow::{VLAN_CFI, VLAN_VID_MASK, eth_type};

use super::{Ctx, MacAccess, Vlan};
use crate::l2::{self, MacKey, is_multicast};
use crate::packet::PortIdx;
use crate::stats::DropReason;

impl Ctx<'_, '_> {
    pub(super) fn normal(&mut self) {
        self.unwildcard(|wc| {
            wc.set_dl_src([0xff; 6]);
            wc.set_dl_dst([0xff; 6]);
            wc.set_vlan_tci(0xffff);
        });
        let (flow, ports) = (self.flow, self.ports);
        let Some(in_idx) = ports.index_of(flow.in_port()) else {
            self.trace(|| "normal: the input port is not on the bridge, dropping".into());
            return;
        };
        let tci = flow.vlan_tci();
        let (vid, pcp) = if tci & VLAN_CFI != 0 { (tci & VLAN_VID_MASK, tci >> 13) } else { (0, 0) };
        let in_cfg = ports.vlan(in_idx);
        if !l2::input_allowed(in_cfg, vid) {
            self.trace(|| format!("normal: VLAN {vid} is not allowed on this {} port, dropping", in_cfg.mode.name()));
            self.normal_drop = Some(DropReason::VlanNotAllowed);
            return;
        }
        let vlan = l2::input_vlan(in_cfg, vid);
        if l2::is_reserved(&flow.dl_dst()) {
            self.trace(|| "normal: reserved destination MAC, dropping".into());
            self.normal_drop = Some(DropReason::ReservedMac);
            return;
        }
        let (src, dst) = (MacKey::new(vlan, flow.dl_src()), MacKey::new(vlan, flow.dl_dst()));
        let deps = &mut self.out.mac;
        if deps.dst.is_some() {
            deps.more = true;
        } else {
            deps.dst = Some(dst);
            deps.src = (!is_multicast(&src.mac)).then_some(src);
        }
        if let Some(MacAccess::Learn(table, now)) = &mut self.opts.macs {
            let learned = table.learn(src, in_idx, *now);
            self.trace(|| format!("normal: learning the source in VLAN {vlan}: {learned:?}"));
        }
        match self.opts.macs.as_ref().and_then(|m| m.table().lookup(&dst)) {
            Some(port) if port == in_idx => {
                self.trace(|| "normal: the destination was learned on the input port, dropping".into());
                self.normal_drop = Some(DropReason::LearnedOnInPort);
            }
            Some(port) => {
                self.trace(|| format!("normal: forwarding to the learned port {}", ports.ofport_of(port)));
                self.output_normal(port, vlan, pcp);
            }
            None => {
                self.trace(|| format!("normal: no learned port for the destination, flooding VLAN {vlan}"));
                let before = self.outputs;
                for (idx, _) in ports.iter() {
                    if idx != in_idx && ports.vlan(idx).includes(vlan) {
                        self.output_normal(idx, vlan, pcp);
                    }
                }
                if self.outputs == before {
                    self.normal_drop = Some(DropReason::NoFloodPort);
                }
            }
        }
    }

    /// Outputs to `port` a copy tagged as the port carries `vlan` (priority `pcp` kept), then
    /// restores the working flow's tags.
    fn output_normal(&mut self, port: PortIdx, vlan: u16, pcp: u16) {
        let vid = l2::output_vid(self.ports.vlan(port), vlan);
        let saved = self.flow_vlans.clone();
        let tpid = saved.first().map_or(eth_type::VLAN, |v| v.tpid);
        if !self.flow_vlans.is_empty() {
            self.flow_vlans.remove(0);
        }
        if vid != 0 && !self.flow_vlans.is_full() {
            self.flow_vlans.insert(0, Vlan { tpid, tci: vid | (pcp << 13) | VLAN_CFI });
        }
        self.sync_vlan();
        self.emit_output(port);
        self.flow_vlans = saved;
        self.sync_vlan();
    }
}
