//! Miss-storm isolation: a receive queue whose misses the control core cannot absorb is polled
//! only when the control core has room for another burst of them, so the PMD's cycles go to the
//! queues whose packets it can forward.
//!
//! When most of a burst is shed because the PMD's upcall queue is full (or the upcall rate limit
//! is spent), parsing and looking up more of that queue's packets buys nothing until room opens:
//! they would be shed too. So such a queue is marked stormy and skipped while the room left (in
//! the upcall queue and the rate limit) is less than a burst; it is polled as soon as a burst
//! fits, so the control core stays fed and flow setup keeps its full rate, and it is unmarked
//! by its first burst that is not mostly shed. An established flow on another queue keeps the
//! rest of the PMD. Packets a skipped queue cannot hold are dropped by the device and counted
//! there (`imissed`); they would have been shed anyway.

/// One receive queue's state.
#[derive(Debug, Clone, Default)]
pub struct MissBackoff {
    stormy: bool,
}

impl MissBackoff {
    /// Whether to poll the queue now, given the `room` the control core has left for misses
    /// (asked only for a stormy queue) and the room `wanted` (a burst, or less when the rate
    /// limit never grants that many at once).
    #[inline]
    pub fn poll_now(&self, room: impl FnOnce() -> usize, wanted: usize) -> bool {
        !self.stormy || room() >= wanted
    }

    /// After a burst of `received` packets of which `shed` found no room at the control core.
    #[inline]
    pub fn after_burst(&mut self, received: usize, shed: usize) {
        self.stormy = received > 0 && shed * 4 >= received * 3;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stormy_queue_waits_for_room_for_a_burst() {
        let mut b = MissBackoff::default();
        assert!(b.poll_now(|| unreachable!("a calm queue does not ask"), 32));
        b.after_burst(32, 24); // 75 % shed: stormy
        assert!(!b.poll_now(|| 31, 32));
        assert!(b.poll_now(|| 32, 32));
        b.after_burst(32, 23); // under 75 %: calm again
        assert!(b.poll_now(|| 0, 32));
        b.after_burst(32, 32);
        b.after_burst(0, 0); // an empty burst is not a storm
        assert!(b.poll_now(|| 0, 32));
    }
}
