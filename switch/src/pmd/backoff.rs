//! Miss-storm isolation: a receive queue whose bursts the control core cannot absorb is polled
//! less often, so the PMD's cycles go to the queues whose packets it can forward.
//!
//! When most of a burst is shed because the PMD's upcall queue is full (or the upcall rate limit
//! is spent), parsing and looking up more of that queue's packets buys nothing: they would be
//! shed too. So the queue skips the next polls, twice as many after each such burst (up to
//! [`MAX_SKIP`]), and is polled normally again after its first burst that was not mostly shed.
//! The control core still gets a full queue of upcalls (it drains a few thousand per
//! millisecond; a skip lasts microseconds), so flow setup runs at its full rate, while an
//! established flow on another queue keeps the PMD to itself. Packets a skipped queue cannot
//! hold are dropped by the device and counted there (`imissed`); they would have been shed anyway.

/// Most passes a queue skips in a row.
pub const MAX_SKIP: u16 = 64;

/// One receive queue's back-off state.
#[derive(Debug, Clone, Default)]
pub struct MissBackoff {
    skip: u16,
    last: u16,
}

impl MissBackoff {
    /// Whether to poll the queue in this pass (false: it is skipping, one pass fewer to go).
    #[inline]
    pub fn poll_now(&mut self) -> bool {
        if self.skip == 0 {
            return true;
        }
        self.skip -= 1;
        false
    }

    /// After a burst of `received` packets of which `shed` found no room at the control core.
    #[inline]
    pub fn after_burst(&mut self, received: usize, shed: usize) {
        if received > 0 && shed * 4 >= received * 3 {
            self.last = (self.last.max(1) * 2).min(MAX_SKIP);
            self.skip = self.last;
        } else {
            self.last = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn polls(b: &mut MissBackoff, passes: usize) -> usize {
        (0..passes).filter(|_| b.poll_now()).count()
    }

    #[test]
    fn backs_off_exponentially_while_bursts_are_shed_and_recovers_at_once() {
        let mut b = MissBackoff::default();
        assert_eq!(polls(&mut b, 10), 10, "a fresh queue is polled every pass");
        let mut skips = Vec::new();
        for _ in 0..8 {
            b.after_burst(32, 32);
            let mut n = 0;
            while !b.poll_now() {
                n += 1;
            }
            skips.push(n);
        }
        assert_eq!(skips, [2, 4, 8, 16, 32, 64, 64, 64]);
        b.after_burst(32, 8); // mostly forwarded: back to every pass
        assert_eq!(polls(&mut b, 5), 5);
        b.after_burst(32, 23); // 72 % shed: not enough to back off
        assert!(b.poll_now());
        b.after_burst(0, 0);
        assert!(b.poll_now());
    }
}
