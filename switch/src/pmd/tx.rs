//! Per-PMD transmit buffers: packets for a port collect here and leave in bursts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::dpdk::{Burst, Mbuf, TxQueue};
use crate::stats::{DropReason, PmdCounters};

/// Attempts that may transmit nothing before the rest of a buffer is dropped. A queue that stays
/// full this long is congested; waiting longer would stall every other port on this core.
const TX_RETRIES: u32 = 4;

/// One port's transmit buffer on one PMD.
pub struct TxBuffer {
    queue: TxQueue,
    pending: Burst,
    /// The port's link state as the control thread last saw it (shared by every sender).
    link_up: Arc<AtomicBool>,
}

impl TxBuffer {
    /// A buffer in front of `queue`, whose port's link state is `link_up`.
    pub fn new(queue: TxQueue, link_up: Arc<AtomicBool>) -> Self {
        Self { queue, pending: Burst::new(), link_up }
    }

    /// Queues `pkt`, transmitting first if the buffer is full.
    #[inline]
    pub fn push(&mut self, pkt: Mbuf, counters: &mut PmdCounters) {
        if self.pending.is_full() {
            self.flush(counters);
        }
        // Cannot fail: the buffer is not full after a flush (what was not sent was dropped).
        if let Err(pkt) = self.pending.push(pkt) {
            drop(pkt);
            counters.drops.add(DropReason::TxQueueFull, 1);
        }
    }

    /// Transmits everything pending; what the device refuses after retries is freed and counted.
    /// A port whose link is down gets nothing: its packets are freed and counted at once
    /// (retrying a vhost port without a guest would only spin).
    #[inline]
    pub fn flush(&mut self, counters: &mut PmdCounters) {
        if self.pending.is_empty() {
            return;
        }
        // Once per flush, not per packet; a stale value for a moment only moves a few packets
        // between port_down and tx_queue_full.
        if !self.link_up.load(Ordering::Relaxed) {
            counters.drops.add(DropReason::PortDown, self.pending.len() as u64);
            self.pending.clear();
            return;
        }
        let mut idle_tries = 0;
        while !self.pending.is_empty() {
            let sent = self.queue.send(&mut self.pending);
            counters.tx_packets += sent as u64;
            if sent == 0 {
                idle_tries += 1;
                if idle_tries == TX_RETRIES {
                    counters.drops.add(DropReason::TxQueueFull, self.pending.len() as u64);
                    self.pending.clear();
                }
            }
        }
    }
}
