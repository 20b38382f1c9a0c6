//! The control core's loop body: take misses from the PMDs' queues, decide with the slow path,
//! send the packets itself (through its own transmit buffers), and only then install the
//! megaflows and cache entries, so a later packet of the same flow, which the fast path will then
//! forward, cannot overtake an earlier one still with the control core.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use ferrovs_config::flow::VLAN_CFI;

use super::{Decision, PmdQueues, SlowPath, Upcall};
use crate::dpdk::{Burst, Mbuf, rdtsc};
use crate::packet::PacketInfo;
use crate::pmd::{TxBuffer, exec};
use crate::stats::PmdCounters;

/// Upcalls taken per pass and PMD (then the control core transmits and installs).
const UPCALL_BATCH: usize = 256;
/// Cache promotion requests handled per pass and PMD.
const PROMOTIONS_PER_PASS: usize = 1024;

/// The control core's state.
pub struct ControlCore {
    slow: SlowPath,
    queues: Vec<Arc<PmdQueues>>,
    tx: Vec<TxBuffer>,
    /// Packets it received (upcalls), forwarded, transmitted and dropped.
    pub counters: PmdCounters,
    incoming: Vec<Upcall>,
    decisions: Vec<(Upcall, Decision)>,
    pending: Vec<Decision>,
    /// Upcalls taken from each PMD's queue in the current pass.
    taken: Vec<u64>,
    hz: u64,
}

impl ControlCore {
    /// A control core running `slow` on the misses from `queues`, transmitting through `tx`
    /// (one buffer per port, by port index).
    pub fn new(slow: SlowPath, queues: Vec<Arc<PmdQueues>>, tx: Vec<TxBuffer>) -> Self {
        let taken = vec![0; queues.len()];
        Self {
            slow,
            queues,
            tx,
            counters: PmdCounters::default(),
            incoming: Vec::with_capacity(UPCALL_BATCH * taken.len()),
            decisions: Vec::with_capacity(UPCALL_BATCH),
            pending: Vec::with_capacity(UPCALL_BATCH),
            taken,
            hz: crate::dpdk::tsc_hz(),
        }
    }

    /// The slow path (rules, tables, its counters).
    pub fn slow_path(&self) -> &SlowPath {
        &self.slow
    }

    /// One pass: a batch of upcalls and the pending cache promotions. Returns the work done.
    pub fn poll(&mut self) -> usize {
        let now = rdtsc();
        for (q, taken) in self.queues.iter().zip(&mut self.taken) {
            for _ in 0..UPCALL_BATCH {
                let Some(u) = q.upcalls.pop() else { break };
                // Each upcall probes the megaflow table and ends in a flow cache insert: start
                // loading those buckets now, while the rest of the batch is taken.
                self.slow.writer().prefetch_for(&u.key, u.hash);
                self.incoming.push(u);
                *taken += 1;
            }
        }
        for u in self.incoming.drain(..) {
            let d = self.slow.decide(&u.key, u.hash, u.packet.len() as u64, now);
            self.decisions.push((u, d));
        }
        let upcalls = self.decisions.len();
        if upcalls > 0 {
            let mut dropped = Burst::new();
            for (u, d) in self.decisions.drain(..) {
                self.counters.rx_packets += 1;
                execute(&mut self.counters, &mut self.tx, &mut dropped, u, &d);
                self.pending.push(d);
            }
            for buf in &mut self.tx {
                buf.flush(&mut self.counters);
            }
            // Sent: the PMDs may now send these flows' later packets themselves.
            for (q, taken) in self.queues.iter().zip(&mut self.taken) {
                q.handled.fetch_add(std::mem::take(taken), Ordering::Release);
            }
            for d in self.pending.drain(..) {
                self.slow.commit(d);
            }
            // Learning in this batch may have changed what installed megaflows should do.
            self.slow.apply_mac_changes();
            self.counters.busy_cycles += rdtsc().saturating_sub(now);
        }
        let mut promotions = 0;
        for q in &self.queues {
            for _ in 0..PROMOTIONS_PER_PASS {
                let Some(p) = q.promotions.pop() else { break };
                self.slow.promote(&p.key, p.hash, p.megaflow);
                promotions += 1;
            }
        }
        upcalls + promotions
    }

    /// A step of periodic work (see [`SlowPath::housekeeping`]); whether a pass ended.
    pub fn housekeeping(&mut self) -> bool {
        self.slow.housekeeping(rdtsc(), self.hz)
    }

    /// Handles every upcall still queued (after the PMDs stopped).
    pub fn drain(&mut self) {
        while self.poll() > 0 {}
    }

    /// Ends the control core, releasing its transmit queues; returns its counters and slow path.
    pub fn finish(self) -> (PmdCounters, SlowPath) {
        (self.counters, self.slow)
    }
}

fn discard(dropped: &mut Burst, pkt: Mbuf) {
    if dropped.is_full() {
        dropped.clear();
    }
    let _ = dropped.push(pkt);
}

fn execute(counters: &mut PmdCounters, tx: &mut [TxBuffer], dropped: &mut Burst, u: Upcall, d: &Decision) {
    let t = &d.translation;
    if let Some(reason) = t.drop {
        counters.drops.add(reason, 1);
        return discard(dropped, u.packet);
    }
    counters.forwarded += 1;
    let info = PacketInfo {
        dl_type: u.key.dl_type(),
        nw_proto: u.key.nw_proto(),
        vlan: u.key.vlan_tci() & VLAN_CFI != 0,
        layout: u.layout,
    };
    if dropped.is_full() {
        dropped.clear();
    }
    exec::execute(u.packet, info, &t.actions, tx, counters, dropped);
}
