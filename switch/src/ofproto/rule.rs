//! An installed rule: its spec, its actions compiled to port indices, and its counters.

use std::sync::atomic::{AtomicU64, Ordering};

use ferrovs_config::flow::{Action, FlowRule, OfPort};

use super::PortTable;
use crate::packet::PortIdx;

/// A rule's action with ports resolved for the data path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfAction {
    /// `output:P`, with P's index and OpenFlow number.
    Output(PortIdx, OfPort),
    /// Every other action, as parsed.
    Other(Action),
}

/// Packet and byte counts, and when it was last hit, per thread that executes rules: each thread
/// writes only its own slot, so updates are plain loads and stores, never atomic read-modify-writes.
#[derive(Debug)]
pub struct RuleStats {
    slots: Box<[StatsSlot]>,
}

#[derive(Debug, Default)]
#[repr(align(64))] // one cache line per writer: no false sharing between PMDs
struct StatsSlot {
    packets: AtomicU64,
    bytes: AtomicU64,
    used_tsc: AtomicU64,
}

impl RuleStats {
    /// Counters for `writers` threads.
    pub fn new(writers: usize) -> Self {
        Self { slots: (0..writers.max(1)).map(|_| StatsSlot::default()).collect() }
    }

    /// Credits `packets` packets of `bytes` bytes, seen at `tsc`, to thread `slot` (its own only).
    #[inline]
    pub fn credit(&self, slot: usize, packets: u64, bytes: u64, tsc: u64) {
        let Some(s) = self.slots.get(slot) else {
            return;
        };
        s.packets.store(s.packets.load(Ordering::Relaxed) + packets, Ordering::Relaxed);
        s.bytes.store(s.bytes.load(Ordering::Relaxed) + bytes, Ordering::Relaxed);
        s.used_tsc.store(tsc, Ordering::Relaxed);
    }

    /// Totals: (packets, bytes, last-used TSC or 0).
    pub fn totals(&self) -> (u64, u64, u64) {
        self.slots.iter().fold((0, 0, 0), |(p, b, u), s| {
            (
                p + s.packets.load(Ordering::Relaxed),
                b + s.bytes.load(Ordering::Relaxed),
                u.max(s.used_tsc.load(Ordering::Relaxed)),
            )
        })
    }
}

/// An installed rule.
#[derive(Debug)]
pub struct Rule {
    /// As the user wrote it.
    pub spec: FlowRule,
    /// Its actions, ports resolved.
    pub actions: Vec<OfAction>,
    /// Counters.
    pub stats: RuleStats,
    /// TSC when it was installed (for hard_timeout, and idle_timeout before the first hit).
    pub created_tsc: u64,
}

impl Rule {
    /// Compiles `spec` against `ports`.
    pub fn new(spec: FlowRule, ports: &PortTable, writers: usize, now_tsc: u64) -> Result<Self, String> {
        let actions = spec
            .actions
            .iter()
            .map(|a| match a {
                Action::Output(p) => {
                    ports.index_of(*p).map(|i| OfAction::Output(i, *p)).ok_or_else(|| format!("output: no port {p}"))
                }
                Action::Drop => Ok(OfAction::Other(Action::Drop)),
                other => Ok(OfAction::Other(other.clone())),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { spec, actions, stats: RuleStats::new(writers), created_tsc: now_tsc })
    }

    /// Whether a timeout has run out at `now_tsc` (`hz` ticks per second).
    pub fn expired(&self, now_tsc: u64, hz: u64) -> bool {
        let secs = |t: u64| now_tsc.saturating_sub(t) / hz.max(1);
        let hard = self.spec.hard_timeout;
        let idle = self.spec.idle_timeout;
        if hard != 0 && secs(self.created_tsc) >= u64::from(hard) {
            return true;
        }
        if idle != 0 {
            let (_, _, used) = self.stats.totals();
            return secs(used.max(self.created_tsc)) >= u64::from(idle);
        }
        false
    }
}
