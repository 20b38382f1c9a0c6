//! The PMD (poll-mode driver) thread: one per PMD core, busy-polling its receive queues.
//!
//! Each pass of the loop has one fixed shape: for each receive queue, take a burst, extract the
//! flow keys of the whole burst, look every key up, then execute the decisions (outputs go to
//! per-port transmit buffers, drops to one bulk free); after all queues, flush the transmit buffers.
//! Every `HOUSEKEEPING_EVERY` passes it publishes its counters and checks the stop flag. Nothing in
//! the loop allocates, locks (except a shared transmit queue, once per burst), logs or calls the OS.

mod tx;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub use tx::TxBuffer;

use crate::dpdk::{Burst, MAX_BURST, Mbuf, RxQueue, rdtsc};
use crate::ofproto::{Decision, Pipeline};
use crate::packet::{FlowKey, PortIdx};
use crate::stats::{DropReason, PmdCounters, PublishedCounters};

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
}

/// A PMD thread's state: its queues, its transmit buffers, and the pipeline it forwards by.
pub struct Pmd {
    rxqs: Vec<PolledRxq>,
    tx: Vec<TxBuffer>,
    pipeline: Arc<Pipeline>,
    burst_size: usize,
    shared: Arc<PmdShared>,
    counters: PmdCounters,
}

impl Pmd {
    /// A PMD polling `rxqs`, transmitting through `tx` (one buffer per port, by port index).
    pub fn new(
        rxqs: Vec<PolledRxq>,
        tx: Vec<TxBuffer>,
        pipeline: Arc<Pipeline>,
        burst_size: usize,
        shared: Arc<PmdShared>,
    ) -> Self {
        Self {
            rxqs,
            tx,
            pipeline,
            burst_size: burst_size.clamp(1, MAX_BURST),
            shared,
            counters: PmdCounters::default(),
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
                let port = self.rxqs[q].port;
                self.process(&mut burst, port);
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

    /// Forwards one received burst: keys for all, decisions for all, then actions.
    #[inline]
    fn process(&mut self, burst: &mut Burst, in_port: PortIdx) {
        let Self {
            pipeline,
            tx,
            counters,
            ..
        } = self;
        let n = burst.len();
        counters.rx_packets += n as u64;
        counters.batches += 1;

        let mut keys = [FlowKey::default(); MAX_BURST];
        for (key, pkt) in keys.iter_mut().zip(burst.as_slice()) {
            *key = FlowKey::extract(pkt.data(), in_port);
        }
        let mut dropped = Burst::new(); // freed in bulk when this function returns
        for (key, pkt) in keys[..n].iter().zip(burst.drain()) {
            match pipeline.lookup(key) {
                Decision::Output(ports) => output(tx, counters, &mut dropped, pkt, ports, in_port),
                Decision::Drop(reason) => discard(counters, &mut dropped, pkt, reason),
            }
        }
    }
}

/// Sends `pkt` to each of `ports` except the input port: shared copies for all but the last.
#[inline]
fn output(
    tx: &mut [TxBuffer],
    counters: &mut PmdCounters,
    dropped: &mut Burst,
    pkt: Mbuf,
    ports: &[PortIdx],
    in_port: PortIdx,
) {
    let mut targets = ports.iter().copied().filter(|&p| p != in_port);
    let Some(mut port) = targets.next() else {
        return discard(counters, dropped, pkt, DropReason::OutputToInPort);
    };
    for next in targets {
        tx[port.index()].push(pkt.share(), counters);
        port = next;
    }
    tx[port.index()].push(pkt, counters);
    counters.forwarded += 1;
}

#[inline]
fn discard(counters: &mut PmdCounters, dropped: &mut Burst, pkt: Mbuf, reason: DropReason) {
    counters.drops.add(reason, 1);
    if let Err(pkt) = dropped.push(pkt) {
        drop(pkt); // cannot happen: `dropped` holds at most one burst
    }
}
