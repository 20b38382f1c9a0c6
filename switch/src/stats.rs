//! Counters: every packet that leaves the data path other than by transmission is counted under a
//! [`DropReason`]. A PMD counts in plain `u64`s and publishes a snapshot to atomics now and then, so
//! the hot path never writes shared memory per packet.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a packet (or one copy of it) was not transmitted. One table: names, docs and order.
macro_rules! drop_reasons {
    ($($variant:ident => $name:literal, $doc:literal;)*) => {
        /// Why a packet, or one output copy of it, was not transmitted.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason { $(#[doc = $doc] $variant,)* }

        impl DropReason {
            /// Every reason, in table order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            /// How many reasons there are.
            pub const COUNT: usize = Self::ALL.len();
            const NAMES: &'static [&'static str] = &[$($name,)*];

            /// The reason's counter name, as printed and served.
            pub fn name(self) -> &'static str {
                Self::NAMES[self as usize]
            }

            /// The reason with this index (`reason as usize`).
            pub fn from_index(i: usize) -> Option<Self> {
                Self::ALL.get(i).copied()
            }
        }
    };
}

drop_reasons! {
    Oversize => "oversize", "The received frame did not fit one packet buffer (it came as an mbuf chain): larger than the largest port `mtu` allows.";
    NoMatch => "no_match", "No flow rule matched the packet.";
    DropAction => "drop_action", "The matching rule's actions drop it (`drop`, or no action).";
    OutputToInPort => "output_to_in_port", "Every output of the rule was the input port, which OpenFlow skips.";
    TtlExpired => "ttl_expired", "`dec_ttl` on a packet whose TTL (hop limit) was 0 or 1.";
    ResubmitDepth => "resubmit_depth", "`resubmit`/`goto_table` chained deeper than the limit (64).";
    TooManyActions => "too_many_actions", "The translated action list did not fit (more than 64 datapath actions).";
    VlanNotAllowed => "vlan_not_allowed", "NORMAL: the frame's VLAN is not carried by its input port (a tagged frame on an access port, or a VLAN a trunk does not list).";
    ReservedMac => "reserved_mac", "NORMAL: the destination is a reserved address (01:80:c2:00:00:0x: STP, pause, LACP, LLDP...), which a bridge does not forward.";
    LearnedOnInPort => "learned_on_in_port", "NORMAL: the destination was learned on the input port.";
    NoFloodPort => "flood_no_port", "NORMAL: the destination is unknown and no other port carries the frame's VLAN.";
    NoMbuf => "no_mbuf", "No free mbuf to copy the packet for one more output (counted per copy).";
    UpcallQueueFull => "upcall_queue_full", "A miss found the queue to the control core full.";
    UpcallRateLimited => "upcall_rate_limited", "A miss exceeded the PMD's upcall rate limit (`upcall_rate`).";
    OrderHoldFull => "order_hold_full", "A packet that had to wait for older packets of its flow at the control core found the PMD's holding queue full.";
    TxQueueFull => "tx_queue_full", "The port's transmit queue stayed full after retries (counted per copy).";
    PortDown => "port_down", "The output port's link was down (a vhost port without a guest attached), so nothing was tried (counted per copy).";
}

/// Per-drop-reason counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounts(pub [u64; DropReason::COUNT]);

impl DropCounts {
    /// Adds `n` drops for `reason`.
    #[inline]
    pub fn add(&mut self, reason: DropReason, n: u64) {
        self.0[reason as usize] += n;
    }

    /// The count for `reason`.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.0[reason as usize]
    }

    /// All drops.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Drops of whole packets (the reasons decided before transmission), as opposed to copies that
    /// could not be made or sent.
    pub fn packets(&self) -> u64 {
        self.total() - self.copies()
    }

    /// Drops of single output copies: not made, refused by the device, or for a port that is down.
    pub fn copies(&self) -> u64 {
        self.get(DropReason::TxQueueFull) + self.get(DropReason::NoMbuf) + self.get(DropReason::PortDown)
    }

    /// (name, count) for every reason with a nonzero count.
    pub fn nonzero(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DropReason::ALL.iter().map(|&r| (r.name(), self.get(r))).filter(|&(_, n)| n > 0)
    }

    /// Sums two sets of counts.
    pub fn merged(mut self, other: &Self) -> Self {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
        self
    }

    /// What was counted after `earlier` (a snapshot of the same counters).
    pub fn since(mut self, earlier: &Self) -> Self {
        for (a, b) in self.0.iter_mut().zip(earlier.0) {
            *a = a.saturating_sub(b);
        }
        self
    }
}

/// One PMD's counters. Owned by the PMD thread; plain integers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PmdCounters {
    /// Packets received.
    pub rx_packets: u64,
    /// Received packets sent out at least once.
    pub forwarded: u64,
    /// Copies handed to the devices' transmit queues and accepted.
    pub tx_packets: u64,
    /// Packets whose flow was in the exact-match flow cache.
    pub cache_hits: u64,
    /// Packets found by the megaflow table (after a cache miss).
    pub megaflow_hits: u64,
    /// Packets handed to the control core (missed both).
    pub upcalls: u64,
    /// Packets and copies not transmitted, by reason.
    pub drops: DropCounts,
    /// Poll-loop iterations.
    pub iterations: u64,
    /// Receive bursts that returned packets.
    pub batches: u64,
    /// TSC cycles spent in iterations that received packets.
    pub busy_cycles: u64,
    /// TSC cycles spent in iterations that received nothing.
    pub idle_cycles: u64,
    /// Polls of a receive queue skipped because the control core could not take its misses
    /// (miss-storm isolation, `pmd/backoff.rs`).
    pub rxq_skips: u64,
}

impl PmdCounters {
    /// Busy cycles per received packet.
    pub fn cycles_per_packet(&self) -> f64 {
        ratio(self.busy_cycles, self.rx_packets)
    }

    /// Packets per non-empty receive burst.
    pub fn packets_per_batch(&self) -> f64 {
        ratio(self.rx_packets, self.batches)
    }

    /// What was counted after `earlier` (a snapshot of the same PMD's counters).
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            rx_packets: self.rx_packets.saturating_sub(earlier.rx_packets),
            forwarded: self.forwarded.saturating_sub(earlier.forwarded),
            tx_packets: self.tx_packets.saturating_sub(earlier.tx_packets),
            cache_hits: self.cache_hits.saturating_sub(earlier.cache_hits),
            megaflow_hits: self.megaflow_hits.saturating_sub(earlier.megaflow_hits),
            upcalls: self.upcalls.saturating_sub(earlier.upcalls),
            drops: self.drops.since(&earlier.drops),
            iterations: self.iterations.saturating_sub(earlier.iterations),
            batches: self.batches.saturating_sub(earlier.batches),
            busy_cycles: self.busy_cycles.saturating_sub(earlier.busy_cycles),
            idle_cycles: self.idle_cycles.saturating_sub(earlier.idle_cycles),
            rxq_skips: self.rxq_skips.saturating_sub(earlier.rxq_skips),
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Where a PMD publishes its counters for other threads to read. Single writer (the PMD), relaxed
/// stores of whole words; a reader may see fields from two neighbouring snapshots, never a torn word.
#[derive(Debug, Default)]
pub struct PublishedCounters {
    words: [AtomicU64; PUBLISHED_WORDS],
}

const FIXED_WORDS: usize = 11;
const PUBLISHED_WORDS: usize = FIXED_WORDS + DropReason::COUNT;

impl PublishedCounters {
    /// Publishes a snapshot (PMD thread only).
    pub fn publish(&self, c: &PmdCounters) {
        let fixed = [
            c.rx_packets,
            c.forwarded,
            c.tx_packets,
            c.iterations,
            c.batches,
            c.busy_cycles,
            c.idle_cycles,
            c.cache_hits,
            c.megaflow_hits,
            c.upcalls,
            c.rxq_skips,
        ];
        for (w, v) in self.words.iter().zip(fixed.iter().chain(c.drops.0.iter())) {
            w.store(*v, Ordering::Relaxed);
        }
    }

    /// Reads the latest snapshot.
    pub fn read(&self) -> PmdCounters {
        let w: [u64; PUBLISHED_WORDS] = std::array::from_fn(|i| self.words[i].load(Ordering::Relaxed));
        let mut drops = DropCounts::default();
        drops.0.copy_from_slice(&w[FIXED_WORDS..]);
        PmdCounters {
            rx_packets: w[0],
            forwarded: w[1],
            tx_packets: w[2],
            iterations: w[3],
            batches: w[4],
            busy_cycles: w[5],
            idle_cycles: w[6],
            cache_hits: w[7],
            megaflow_hits: w[8],
            upcalls: w[9],
            rxq_skips: w[10],
            drops,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_table() {
        assert_eq!(DropReason::NoMatch.name(), "no_match");
        assert_eq!(DropReason::ALL.len(), DropReason::COUNT);
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }

    #[test]
    fn publish_round_trips() {
        let mut c = PmdCounters {
            rx_packets: 1,
            forwarded: 2,
            tx_packets: 3,
            iterations: 4,
            batches: 5,
            busy_cycles: 6,
            idle_cycles: 7,
            ..Default::default()
        };
        c.drops.add(DropReason::TxQueueFull, 9);
        c.drops.add(DropReason::NoMatch, 8);
        c.drops.add(DropReason::PortDown, 5);
        c.drops.add(DropReason::Oversize, 2);
        let p = PublishedCounters::default();
        p.publish(&c);
        assert_eq!(p.read(), c);
        assert_eq!(c.drops.packets(), 10, "no_match and oversize drop packets");
        assert_eq!(c.drops.copies(), 14, "tx_queue_full and port_down drop copies");
        assert_eq!(c.drops.total(), 24);
    }
}
