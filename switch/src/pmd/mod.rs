//! The PMD (poll-mode driver) thread: one per PMD core, busy-polling its receive queues.
//!
//! Each pass of the loop has one fixed shape: for each receive queue, take a burst, extract the
//! flow keys of the whole burst, look every key up, then execute the decisions (outputs go to
//! per-port transmit buffers, drops to one bulk free); after all queues, flush the transmit buffers.
//! Every `HOUSEKEEPING_EVERY` passes it publishes its counters and checks the stop flag. Nothing in
//! the loop allocates, locks (except a shared transmit queue, once per burst), logs or calls the OS.

mod exec;
mod tx;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::{ArcSwap, Cache};
use ferrovs_config::flow::{FlowKey, OfPort};

pub use tx::TxBuffer;

use crate::dpdk::{Burst, MAX_BURST, RxQueue, rdtsc};
use crate::ofproto::{Credit, PortTable, Tables, Translation, XlateOptions, translate};
use crate::packet::{Layout, PacketInfo, PortIdx, extract};
use crate::stats::{PmdCounters, PublishedCounters};

/// Loop passes between two housekeeping steps (publish counters, check for stop).
const HOUSEKEEPING_EVERY: u64 = 64;

/// What a PMD shares with the control thread.
#[derive(Debug, Default)]
pub struct PmdShared {
    /// The PMD's latest counters.
    pub counters: PublishedCounters,
    stop: AtomicBool,
}

impl PmdShared {
    /// Asks the PMD to finish its pass, flush, publish and return.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

/// One receive queue as a PMD polls it.
pub struct PolledRxq {
    /// The queue.
    pub queue: RxQueue,
    /// The port it belongs to.
    pub port: PortIdx,
    /// That port's OpenFlow number (what flow keys carry).
    pub ofport: OfPort,
}

/// A PMD thread's state: its queues, its transmit buffers, and the rule tables it forwards by.
pub struct Pmd {
    id: usize,
    rxqs: Vec<PolledRxq>,
    tx: Vec<TxBuffer>,
    ports: Arc<PortTable>,
    tables: Cache<Arc<ArcSwap<Tables>>, Arc<Tables>>,
    burst_size: usize,
    shared: Arc<PmdShared>,
    counters: PmdCounters,
    xlate: Translation,
}

impl Pmd {
    /// PMD number `id` polling `rxqs`, transmitting through `tx` (one buffer per port, by port
    /// index), forwarding by the tables published in `tables`.
    pub fn new(
        id: usize,
        rxqs: Vec<PolledRxq>,
        tx: Vec<TxBuffer>,
        ports: Arc<PortTable>,
        tables: Arc<ArcSwap<Tables>>,
        burst_size: usize,
        shared: Arc<PmdShared>,
    ) -> Self {
        Self {
            id,
            rxqs,
            tx,
            ports,
            tables: Cache::new(tables),
            burst_size: burst_size.clamp(1, MAX_BURST),
            shared,
            counters: PmdCounters::default(),
            xlate: Translation::default(),
        }
    }

    /// Polls until asked to stop; returns the final counters. Runs on the PMD's lcore.
    pub fn run(mut self) -> PmdCounters {
        let mut last = rdtsc();
        loop {
            let mut received = 0;
            for q in 0..self.rxqs.len() {
                let mut burst = Burst::new();
                let n = self.rxqs[q].queue.recv(&mut burst, self.burst_size);
                if n == 0 {
                    continue;
                }
                received += n;
                let (port, ofport) = (self.rxqs[q].port, self.rxqs[q].ofport);
                self.process(&mut burst, port, ofport);
            }
            for buf in &mut self.tx {
                buf.flush(&mut self.counters);
            }
            let now = rdtsc();
            let c = &mut self.counters;
            if received > 0 {
                c.busy_cycles += now - last;
            } else {
                c.idle_cycles += now - last;
            }
            last = now;
            c.iterations += 1;
            if c.iterations % HOUSEKEEPING_EVERY == 0 {
                self.shared.counters.publish(c);
                if self.shared.should_stop() {
                    break;
                }
            }
        }
        self.shared.counters.publish(&self.counters);
        self.counters
    }

    /// Forwards one received burst: keys for all, then per packet the translation and its actions.
    #[inline]
    fn process(&mut self, burst: &mut Burst, _in_port: PortIdx, in_ofport: OfPort) {
        let Self { id, tx, counters, ports, tables, xlate, .. } = self;
        let tables: &Tables = tables.load();
        let n = burst.len();
        counters.rx_packets += n as u64;
        counters.batches += 1;

        let mut keys = [(FlowKey::ZERO, Layout::NONE); MAX_BURST];
        for (slot, pkt) in keys.iter_mut().zip(burst.as_slice()) {
            *slot = extract(pkt.data(), in_ofport);
        }
        let now = rdtsc();
        let mut dropped = Burst::new(); // freed in bulk when this function returns
        for ((key, layout), pkt) in keys[..n].iter().zip(burst.drain()) {
            let credit = Credit { slot: *id, bytes: pkt.len() as u64, tsc: now };
            translate(tables, ports, key, XlateOptions { credit: Some(credit), ..Default::default() }, xlate);
            if let Some(reason) = xlate.drop {
                counters.drops.add(reason, 1);
                let _ = dropped.push(pkt);
                continue;
            }
            counters.forwarded += 1;
            let info = PacketInfo {
                dl_type: key.dl_type(),
                nw_proto: key.nw_proto(),
                vlan: key.vlan_tci() & ferrovs_config::flow::VLAN_CFI != 0,
                layout: *layout,
            };
            exec::execute(pkt, info, &xlate.actions, tx, counters, &mut dropped);
        }
    }
}
