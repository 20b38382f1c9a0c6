//! Which flows a PMD has packets of still waiting at the control core, so that it never sends a
//! later packet of such a flow ahead of them.
//!
//! The race it closes: a packet misses and is queued to the control core; the control core sends
//! it and installs its megaflow; but a second packet of the flow, looked up just before the
//! install, was queued after the first batch was taken, and a third, looked up just after, hits
//! the megaflow. Sent directly, the third would overtake the second. So while the control core has
//! not handled everything this PMD queued, a hit whose flow has a packet in flight is held back
//! (see [`super::hold`]) until the control core has handled that packet.
//!
//! Upcalls are numbered in the order the PMD queues them (1, 2, ...); the control core publishes
//! how many of them it has handled (sent or dropped). A flow is in flight if it was queued with a
//! number above that. The table maps flow hashes to their latest number, open-addressed with a
//! bounded probe window; entries go stale on their own as the handled count passes them and are
//! reused. If a window is full of live entries, the flow's home slot is marked *spilled* until
//! the control core catches up: every flow homed there counts as in flight meanwhile (held a
//! little longer, never reordered), and only those. (A table-wide fallback held every hit of an
//! established flow for the milliseconds a full upcall queue takes to drain, once in a few
//! hundred thousand upcalls of a miss storm.)
//!
//! A flow's packets all come in on one port (the port is part of its key), so a port none of
//! whose packets wait at the control core has no flow in flight, and its hits skip the check:
//! an established flow on one port pays nothing for a miss storm on another (the check, a probe
//! of a table the storm keeps writing, had cost it about 5 % of its rate).

/// Slots: eight times the most upcalls one PMD can have queued, so that a window full of live
/// entries (8 of them, at most 1 in 8 live) practically never happens, even in a miss storm.
const SLOTS: usize = 8 * crate::control::UPCALL_QUEUE;
/// Slots probed from a hash's home slot (two cache lines).
const WINDOW: usize = 8;

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    hash: u64,
    /// Number of the flow's latest upcall; 0: never used.
    seq: u64,
}

/// One PMD's record of its queued upcalls.
pub struct InFlight {
    slots: Box<[Slot]>,
    /// Per home slot: until the control core has handled this many, every flow homed there
    /// counts as in flight (a flow homed there found its window full).
    spilled: Box<[u64]>,
    /// Upcalls queued so far (the number of the latest).
    queued: u64,
    /// Per receiving port (by index): the most any flow from it waits for (its latest upcall or
    /// hold). Ports beyond it count as waiting for everything queued.
    by_port: Box<[u64]>,
}

impl InFlight {
    /// An empty record for a PMD receiving from ports with indices below `ports`.
    pub fn new(ports: usize) -> Self {
        Self {
            slots: vec![Slot::default(); SLOTS].into_boxed_slice(),
            spilled: vec![0; SLOTS].into_boxed_slice(),
            queued: 0,
            by_port: vec![0; ports].into_boxed_slice(),
        }
    }

    /// Notes that a packet of the flow with `hash`, received on port `port`, was queued to the
    /// control core.
    #[inline]
    pub fn record(&mut self, hash: u64, port: usize, handled: u64) {
        self.queued += 1;
        self.mark(hash, port, self.queued, handled);
    }

    /// Notes that the flow with `hash` (of port `port`) has a packet held until `release`
    /// upcalls are handled: its later packets must wait as long.
    #[inline]
    pub fn note_held(&mut self, hash: u64, port: usize, release: u64, handled: u64) {
        self.mark(hash, port, release, handled);
    }

    /// The flow with `hash` (of port `port`) may not send before `seq` upcalls are handled.
    #[inline]
    fn mark(&mut self, hash: u64, port: usize, seq: u64, handled: u64) {
        if let Some(p) = self.by_port.get_mut(port) {
            *p = (*p).max(seq);
        }
        let home = home(hash);
        for k in 0..WINDOW {
            let s = &mut self.slots[(home + k) % SLOTS];
            if s.hash == hash && s.seq > handled {
                s.seq = s.seq.max(seq);
                return;
            }
        }
        for k in 0..WINDOW {
            let s = &mut self.slots[(home + k) % SLOTS];
            if s.seq <= handled {
                *s = Slot { hash, seq };
                return;
            }
        }
        self.spilled[home] = self.spilled[home].max(seq);
    }

    /// Whether some packet this PMD received on port `port` may still wait at the control core
    /// (`handled` as the control core last published it). When not, no flow of that port is in
    /// flight and the per-packet check can be skipped.
    #[inline]
    pub fn backlog(&self, port: usize, handled: u64) -> bool {
        handled < self.by_port.get(port).copied().unwrap_or(self.queued)
    }

    /// If a packet of the flow with `hash` may still be waiting at the control core, the number
    /// of upcalls the control core must have handled before the flow's next packet may leave.
    #[inline]
    pub fn wait_for(&self, hash: u64, handled: u64) -> Option<u64> {
        let home = home(hash);
        let spilled = Some(self.spilled[home]).filter(|&s| s > handled);
        (0..WINDOW)
            .map(|k| &self.slots[(home + k) % SLOTS])
            .filter(|s| s.hash == hash && s.seq > handled)
            .map(|s| s.seq)
            .chain(spilled)
            .max()
    }

    /// Whether flows homed with `hash` count as in flight for want of room (tests).
    #[cfg(test)]
    fn is_spilled(&self, hash: u64, handled: u64) -> bool {
        self.spilled[home(hash)] > handled
    }
}

#[inline(always)]
fn home(hash: u64) -> usize {
    // The high bits: the low ones already chose the flow's cache bucket.
    (hash >> 40) as usize % SLOTS
}

#[cfg(all(test, not(loom)))]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Queue(u64),
        Hold(u64),
        Handle(u64),
    }

    /// A full window holds back the flows homed there, not an established flow homed elsewhere.
    #[test]
    fn a_full_window_spills_only_its_own_home() {
        let mut t = InFlight::new(1);
        let homed_at = |home: u64, n: u64| home << 40 | n;
        for n in 0..=WINDOW as u64 {
            t.record(homed_at(0, n), 0, 0);
        }
        let overflowed = homed_at(0, WINDOW as u64);
        assert_eq!(t.wait_for(overflowed, 0), Some(WINDOW as u64 + 1));
        assert_eq!(t.wait_for(homed_at(0, 999), 0), Some(WINDOW as u64 + 1), "same home: in flight");
        assert_eq!(t.wait_for(homed_at(100, 1), 0), None, "another home: not in flight");
        assert_eq!(t.wait_for(overflowed, WINDOW as u64 + 1), None, "handled: free again");
    }

    proptest! {
        /// Against a model (every queued (hash, number) pair): a flow with a packet not yet
        /// handled is always reported in flight; without overflow, exactly those are; a port
        /// reports a backlog exactly when one of its flows has a packet not yet handled. Flows
        /// belong to ports 0-2 by hash, and port 3 is beyond what the record was made for.
        #[test]
        fn never_misses_a_flow_in_flight(ops in proptest::collection::vec(prop_oneof![
            // Few distinct hashes, some sharing a home slot, so windows fill and entries go stale.
            (0u64..48).prop_map(|h| Op::Queue((h % 6) << 40 | h)),
            (0u64..48).prop_map(|h| Op::Hold((h % 6) << 40 | h)),
            (1u64..20).prop_map(Op::Handle),
        ], 1..400)) {
            let mut t = InFlight::new(3);
            let mut model: Vec<(u64, u64)> = Vec::new();
            let mut handled = 0u64;
            let port_of = |h: u64| (h % 4) as usize;
            for op in ops {
                match op {
                    Op::Queue(h) => {
                        t.record(h, port_of(h), handled);
                        model.push((h, t.queued));
                    }
                    // A held packet waits for everything queued so far (the most it can).
                    Op::Hold(h) if t.queued > handled => {
                        t.note_held(h, port_of(h), t.queued, handled);
                        model.push((h, t.queued));
                    }
                    Op::Hold(_) => {}
                    Op::Handle(n) => handled = (handled + n).min(t.queued),
                }
                for port in 0..3 {
                    let want = model.iter().any(|&(h, s)| port_of(h) == port && s > handled);
                    prop_assert_eq!(t.backlog(port, handled), want, "port {}", port);
                }
                prop_assert_eq!(t.backlog(3, handled), t.queued > handled, "a port beyond the record");
                for h in (0u64..48).map(|h| (h % 6) << 40 | h) {
                    let want = model.iter().filter(|&&(mh, s)| mh == h && s > handled).map(|&(_, s)| s).max();
                    let got = t.wait_for(h, handled);
                    let exact = !t.is_spilled(h, handled);
                    match (got, want) {
                        (_, None) if exact => prop_assert_eq!(got, None),
                        (None, Some(_)) => prop_assert!(false, "flow {h:#x} is in flight but was not reported"),
                        (Some(g), Some(w)) => {
                            prop_assert!(g >= w, "flow {h:#x} would leave after upcall {g}, before its elder {w}");
                            if exact {
                                prop_assert_eq!(g, w);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}
