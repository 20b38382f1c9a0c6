//! Fair shares of a PMD's cycles between its receive queues (deficit round robin, by cycles).
//!
//! Polling queues in turn, a burst each, shares the PMD by bursts, not by work: a queue of new
//! flows costs ten times more a packet (parse, two table misses, an upcall) than one of
//! established flows, so in a miss storm the established flows on the same PMD would get a
//! tenth of it. Instead each queue earns a quantum of cycles per pass and pays what its bursts
//! cost: it takes bursts while it has a balance left (and packets waiting), and a queue in debt
//! sits passes out until it has earned its debt back. Busy queues so get equal cycles whatever
//! their packets cost, and a queue alone on a busy PMD still gets nearly all of it (the
//! others' empty polls cost little). An idle queue banks at most one quantum.

/// Cycles a queue earns per pass: about one burst of established traffic.
pub const QUANTUM: i64 = 4096;

/// One receive queue's balance.
#[derive(Debug, Clone, Copy, Default)]
pub struct CycleShare {
    balance: i64,
}

impl CycleShare {
    /// A new pass: the queue earns its quantum (banking at most one).
    #[inline]
    pub fn earn(&mut self) {
        self.balance = (self.balance + QUANTUM).min(QUANTUM);
    }

    /// Whether the queue has cycles left this pass.
    #[inline]
    pub fn may_poll(&self) -> bool {
        self.balance > 0
    }

    /// A poll cost `cycles`.
    #[inline]
    pub fn pay(&mut self, cycles: u64) {
        self.balance = self.balance.saturating_sub(i64::try_from(cycles).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two busy queues, one ten times dearer a burst: they end up with equal cycles.
    #[test]
    fn busy_queues_get_equal_cycles_whatever_their_packets_cost() {
        let costs = [3_000u64, 30_000];
        let mut shares = [CycleShare::default(); 2];
        let mut spent = [0u64; 2];
        for _ in 0..100_000 {
            for q in 0..2 {
                shares[q].earn();
                while shares[q].may_poll() {
                    shares[q].pay(costs[q]);
                    spent[q] += costs[q];
                }
            }
        }
        let ratio = spent[0] as f64 / spent[1] as f64;
        assert!((0.9..1.1).contains(&ratio), "cycles {spent:?}");
    }

    /// A queue alone with traffic (the other's polls come back empty) is polled nearly every pass.
    #[test]
    fn a_queue_alone_gets_the_pmd() {
        let (mut busy, mut idle) = (CycleShare::default(), CycleShare::default());
        let mut polled = 0;
        for _ in 0..10_000 {
            busy.earn();
            if busy.may_poll() {
                busy.pay(30_000);
                polled += 1;
            }
            // An empty poll: nothing waiting, so no second one.
            idle.earn();
            if idle.may_poll() {
                idle.pay(100);
            }
        }
        // Each 30k-cycle burst is earned back in 7 or 8 passes of (cheap) empty polls.
        assert!(polled >= 10_000 / 9, "polled {polled} times");
        idle.earn();
        assert!(idle.may_poll(), "an idle queue is never in debt");
    }
}
