//! Quiescent-state-based reclamation (QSBR).
//!
//! The writer (the control core) never frees or reuses a slot that a reader may still be looking
//! at. Readers (PMDs) announce a quiescent state once per poll-loop pass, when they hold no
//! reference into the shared tables: they copy the global epoch into their own counter. A slot
//! unlinked at epoch `e` may be reused once every online reader has announced an epoch `> e`.
//! A reader that parks goes offline and holds nothing back.
//!
//! Ordering: the writer unlinks (Release) and then advances the epoch (SeqCst); a reader's
//! announcement is a Release store after its reads, and the writer reads it with Acquire. So a
//! reader's last reads of an unlinked slot happen before the writer reuses it, and a reader that
//! announced the new epoch loaded it after the unlink and cannot find the slot any more.

use super::{AtomicU64, CachePadded, Ordering};

/// A reader's counter when it is offline.
const OFFLINE: u64 = u64::MAX;

/// The shared state: the global epoch and one counter per reader.
#[derive(Debug)]
pub struct Qsbr {
    epoch: CachePadded<AtomicU64>,
    readers: Box<[CachePadded<AtomicU64>]>,
}

impl Qsbr {
    /// Room for `readers` readers, all offline.
    pub fn new(readers: usize) -> Self {
        Self {
            epoch: CachePadded::new(AtomicU64::new(1)),
            readers: (0..readers).map(|_| CachePadded::new(AtomicU64::new(OFFLINE))).collect(),
        }
    }

    /// How many readers there is room for.
    pub fn reader_count(&self) -> usize {
        self.readers.len()
    }

    /// Reader `id` comes online (before its first read).
    pub fn online(&self, id: usize) {
        self.readers[id].store(self.epoch.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// Reader `id` passes a quiescent point: it holds no reference into the shared tables.
    #[inline]
    pub fn quiesce(&self, id: usize) {
        let e = self.epoch.load(Ordering::Acquire);
        let r = &self.readers[id];
        if r.load(Ordering::Relaxed) != e {
            r.store(e, Ordering::Release);
        }
    }

    /// Reader `id` goes offline (parks, or stops).
    pub fn offline(&self, id: usize) {
        self.readers[id].store(OFFLINE, Ordering::Release);
    }

    /// Writer: ends the current epoch after unlinking something; returns the epoch whose end
    /// readers must pass before the unlinked slots may be reused.
    pub fn advance(&self) -> u64 {
        self.epoch.fetch_add(1, Ordering::SeqCst)
    }

    /// Writer: whether every online reader has passed the end of epoch `e`.
    pub fn passed(&self, e: u64) -> bool {
        self.readers.iter().all(|r| {
            let v = r.load(Ordering::Acquire);
            v == OFFLINE || v > e
        })
    }

    /// Writer: the newest epoch every online reader has passed (for batch reclamation).
    pub fn safe_epoch(&self) -> u64 {
        let now = self.epoch.load(Ordering::SeqCst);
        self.readers
            .iter()
            .map(|r| r.load(Ordering::Acquire))
            .filter(|&v| v != OFFLINE)
            .map(|v| v.saturating_sub(1))
            .fold(now.saturating_sub(1), u64::min)
    }

    /// Writer: waits (spinning, then sleeping) until every online reader has passed epoch `e`.
    pub fn wait(&self, e: u64) {
        let mut spins = 0u32;
        while !self.passed(e) {
            spins += 1;
            if spins < 1000 {
                super::spin_loop();
            } else {
                std::thread::sleep(std::time::Duration::from_micros(20));
            }
        }
    }

    /// Writer: a full grace period (every reader passes a quiescent point after this call).
    pub fn synchronize(&self) {
        let e = self.advance();
        self.wait(e);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn offline_readers_do_not_hold_back_the_writer() {
        let q = Qsbr::new(2);
        let e = q.advance();
        assert!(q.passed(e));
        q.online(0);
        let e = q.advance();
        assert!(!q.passed(e), "reader 0 has not quiesced since");
        q.quiesce(0);
        assert!(q.passed(e));
        q.offline(0);
        assert!(q.passed(q.advance()));
    }

    #[test]
    fn synchronize_waits_for_a_busy_reader() {
        let q = Arc::new(Qsbr::new(1));
        q.online(0);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (q, stop) = (Arc::clone(&q), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    q.quiesce(0);
                }
                q.offline(0);
            })
        };
        for _ in 0..100 {
            q.synchronize();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        reader.join().unwrap();
    }
}
