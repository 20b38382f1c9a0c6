//! Packets a PMD holds back until older packets of their flow, queued to the control core, have
//! been sent (see [`super::inflight`]). Usually empty: a flow is held only in the moment between
//! its first packets' upcall and their transmission by the control core. A held flow is noted in
//! the in-flight table too, so its next packets are held behind it, not sent ahead.

use std::collections::VecDeque;

use ferrovs_config::flow::FlowKey;

use crate::dpdk::Mbuf;
use crate::fastpath::MegaflowRef;
use crate::packet::{Layout, PortIdx};

/// Most packets held at once (a full hold drops, counted as `order_hold_full`).
pub const HOLD_CAPACITY: usize = crate::control::UPCALL_QUEUE;

/// A held packet and what the fast path found for it.
pub struct Held {
    /// The packet.
    pub pkt: Mbuf,
    /// Its input port.
    pub port: PortIdx,
    /// Its flow key and header offsets (for the actions, or for an upcall).
    pub key: FlowKey,
    /// See `key`.
    pub layout: Layout,
    /// Its flow hash.
    pub hash: u64,
    /// The megaflow it hit (checked again on release: it may have been removed meanwhile).
    pub megaflow: MegaflowRef,
    /// It may leave once the control core has handled this many of the PMD's upcalls.
    pub release: u64,
}

/// The held packets, in arrival order. Allocated once; never grows.
pub struct Hold {
    queue: VecDeque<Held>,
}

impl Default for Hold {
    fn default() -> Self {
        Self { queue: VecDeque::with_capacity(HOLD_CAPACITY) }
    }
}

impl Hold {
    /// Holds `h` until its release, or later: packets leave in arrival order, so none waits for
    /// less than the one before it. Returns the release it got, or the packet if the hold is full.
    #[inline]
    pub fn push(&mut self, mut h: Held) -> Result<u64, Mbuf> {
        if self.queue.len() >= HOLD_CAPACITY {
            return Err(h.pkt);
        }
        if let Some(last) = self.queue.back() {
            h.release = h.release.max(last.release);
        }
        let release = h.release;
        self.queue.push_back(h);
        Ok(release)
    }

    /// Whether nothing is held.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Takes, in arrival order, the packets whose elders have been handled (`handled` upcalls),
    /// passing each to `release`. Releases never decrease along the queue, so this stops at the
    /// first packet that must still wait: the cost is what leaves, not what stays.
    #[inline]
    pub fn release(&mut self, handled: u64, mut release: impl FnMut(Held)) {
        while self.queue.front().is_some_and(|h| h.release <= handled) {
            release(self.queue.pop_front().expect("just seen"));
        }
    }
}
