//! The control core: the slow path for packets the fast path missed, and the periodic work
//! (rule and megaflow expiry, counters). PMDs hand it misses through bounded lock-free queues,
//! one per PMD, and never wait for it: a full queue or an exhausted rate limit drops the
//! packet, counted.

mod core;
pub mod slowpath;

use std::sync::atomic::AtomicU64;

use ferrovs_config::flow::FlowKey;

pub use core::ControlCore;
pub use slowpath::{Decision, MEGAFLOW_IDLE_SECS, SlowPath, SlowPathCounters};

use crate::dpdk::Mbuf;
use crate::fastpath::MegaflowRef;
use crate::packet::{Layout, PortIdx};

/// Packets each PMD may have waiting for the control core.
pub const UPCALL_QUEUE: usize = 4096;
/// Cache promotion requests each PMD may have waiting.
pub const PROMOTION_QUEUE: usize = 4096;

/// A packet the fast path could not place.
pub struct Upcall {
    /// The port it came in on.
    pub port: PortIdx,
    /// Its flow key.
    pub key: FlowKey,
    /// Its header offsets.
    pub layout: Layout,
    /// Its fast-path hash.
    pub hash: u64,
    /// The packet.
    pub packet: Mbuf,
}

/// A flow that hit a megaflow but not the flow cache: worth a cache entry.
#[derive(Debug, Clone, Copy)]
pub struct Promotion {
    /// Exact key.
    pub key: FlowKey,
    /// Fast-path hash.
    pub hash: u64,
    /// The megaflow it hit.
    pub megaflow: MegaflowRef,
}

/// The queues between one PMD and the control core.
pub struct PmdQueues {
    /// Misses.
    pub upcalls: crossbeam_queue::ArrayQueue<Upcall>,
    /// Cache promotion requests.
    pub promotions: crossbeam_queue::ArrayQueue<Promotion>,
    /// Upcalls the control core has taken from `upcalls` and finished (sent, or dropped),
    /// published after their packets were handed to the devices.
    pub handled: AtomicU64,
}

impl Default for PmdQueues {
    fn default() -> Self {
        Self {
            upcalls: crossbeam_queue::ArrayQueue::new(UPCALL_QUEUE),
            promotions: crossbeam_queue::ArrayQueue::new(PROMOTION_QUEUE),
            handled: AtomicU64::new(0),
        }
    }
}

/// A token bucket on the TSC: at most `rate` events per second, bursts of `rate / 10`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: u64,
    max: u64,
    ticks_per_token: u64,
    last_tsc: u64,
}

impl TokenBucket {
    /// `rate` events per second (0: unlimited) on a TSC of `hz`.
    pub fn new(rate: u64, hz: u64) -> Self {
        let max = (rate / 10).max(1);
        Self { tokens: max, max, ticks_per_token: hz.checked_div(rate).map_or(0, |t| t.max(1)), last_tsc: 0 }
    }

    /// Most tokens it holds at once (`usize::MAX`: unlimited).
    #[inline]
    pub fn capacity(&self) -> usize {
        if self.ticks_per_token == 0 { usize::MAX } else { self.max as usize }
    }

    /// Tokens that [`take`](Self::take) would grant at `now_tsc` (`usize::MAX`: unlimited).
    #[inline]
    pub fn available(&self, now_tsc: u64) -> usize {
        if self.ticks_per_token == 0 {
            return usize::MAX;
        }
        if self.tokens > 0 {
            return self.tokens as usize;
        }
        (now_tsc.saturating_sub(self.last_tsc) / self.ticks_per_token).min(self.max) as usize
    }

    /// Takes a token at `now_tsc`; false when the rate is exceeded.
    #[inline]
    pub fn take(&mut self, now_tsc: u64) -> bool {
        if self.ticks_per_token == 0 {
            return true;
        }
        if self.tokens == 0 {
            let earned = now_tsc.saturating_sub(self.last_tsc) / self.ticks_per_token;
            if earned == 0 {
                return false;
            }
            self.tokens = earned.min(self.max);
            self.last_tsc = now_tsc;
        }
        self.tokens -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_allows_the_rate_and_its_burst() {
        let mut b = TokenBucket::new(100, 1000); // 100/s on a 1 kHz clock: a token per 10 ticks
        let burst = (0..50).filter(|_| b.take(0)).count();
        assert_eq!(burst, 10, "a tenth of a second's worth at once");
        assert!(!b.take(5));
        assert!(b.take(10));
        assert_eq!((b.available(15), b.available(20), b.available(1000)), (0, 1, 10));
        let over_a_second = (1..=1000u64).filter(|t| b.take(10 + t)).count();
        assert!((95..=105).contains(&over_a_second), "{over_a_second}");
        let mut unlimited = TokenBucket::new(0, 1000);
        assert!((0..10_000).all(|_| unlimited.take(0)));
    }
}
