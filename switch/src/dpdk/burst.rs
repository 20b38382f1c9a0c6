//! A burst: up to `MAX_BURST` owned packets in a fixed array, on the stack (no heap, ever).

use std::mem::MaybeUninit;

use dpdk_sys as sys;

use super::Mbuf;

/// The largest burst the data path handles at once (rx, processing batch and tx buffer size).
pub const MAX_BURST: usize = 64;

/// Up to [`MAX_BURST`] packets, owned inline. Dropping a burst frees what it still holds with one
/// bulk call.
pub struct Burst {
    len: usize,
    pkts: [MaybeUninit<Mbuf>; MAX_BURST],
}

impl Default for Burst {
    fn default() -> Self {
        Self::new()
    }
}

impl Burst {
    /// An empty burst.
    #[inline]
    pub const fn new() -> Self {
        Self { len: 0, pkts: [const { MaybeUninit::uninit() }; MAX_BURST] }
    }

    /// How many packets it holds.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds none.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether it is full.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.len == MAX_BURST
    }

    /// Adds a packet at the end, or hands it back when full.
    #[inline]
    pub fn push(&mut self, pkt: Mbuf) -> Result<(), Mbuf> {
        if self.is_full() {
            return Err(pkt);
        }
        self.pkts[self.len].write(pkt);
        self.len += 1;
        Ok(())
    }

    /// The packets, in order.
    #[inline]
    pub fn as_slice(&self) -> &[Mbuf] {
        // SAFETY: the first `len` slots are initialised, and MaybeUninit<Mbuf> has Mbuf's layout.
        unsafe { std::slice::from_raw_parts(self.pkts.as_ptr().cast::<Mbuf>(), self.len) }
    }

    /// The packets, in order, mutably.
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [Mbuf] {
        // SAFETY: as in `as_slice`, with unique access through `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.pkts.as_mut_ptr().cast::<Mbuf>(), self.len) }
    }

    /// Moves every packet out, in order; whatever the iterator does not yield is freed when it drops.
    #[inline]
    pub fn drain(&mut self) -> Drain<'_> {
        let end = self.len;
        self.len = 0; // from here on the Drain owns the slots
        Drain { burst: self, next: 0, end }
    }

    /// Frees the packets that span several mbufs (a chain: a frame larger than one buffer), in
    /// one bulk call, and keeps the others in order; returns how many it freed. The data path
    /// reads and rewrites headers in a packet's first buffer only, so chains never enter it.
    #[inline]
    pub fn drop_chained(&mut self) -> usize {
        if self.as_slice().iter().all(|p| p.segments() == 1) {
            return 0;
        }
        let (mut kept, mut chained) = (Burst::new(), Burst::new());
        for pkt in self.drain() {
            let into = if pkt.segments() == 1 { &mut kept } else { &mut chained };
            // Cannot fail: the two together hold what one burst held.
            let _ = into.push(pkt);
        }
        *self = kept;
        chained.len()
    }

    /// Frees every packet with one bulk call.
    pub fn clear(&mut self) {
        if self.len == 0 {
            return;
        }
        let n = self.len;
        self.len = 0;
        free_raw(self.pkts.as_mut_ptr().cast::<*mut sys::rte_mbuf>(), n);
    }

    /// The free slots as raw pointers for a driver to fill (rx burst), and how many there are.
    pub(crate) fn spare_raw(&mut self) -> (*mut *mut sys::rte_mbuf, usize) {
        // SAFETY: `len <= MAX_BURST`, so the offset stays within (or one past) the array.
        let ptr = unsafe { self.pkts.as_mut_ptr().add(self.len) }.cast::<*mut sys::rte_mbuf>();
        (ptr, MAX_BURST - self.len)
    }

    /// The packets as raw pointers (for a tx burst).
    pub(crate) fn filled_raw(&mut self) -> *mut *mut sys::rte_mbuf {
        self.pkts.as_mut_ptr().cast::<*mut sys::rte_mbuf>()
    }

    /// Records that a driver filled `n` more slots.
    ///
    /// # Safety
    /// The `n` slots after the current end must now hold valid mbufs owned by this burst.
    pub(crate) unsafe fn commit_filled(&mut self, n: usize) {
        debug_assert!(self.len + n <= MAX_BURST);
        self.len += n;
    }

    /// Frees the first `n` packets in one bulk call (a device copied them); the rest move to the
    /// front.
    #[inline]
    pub(crate) fn free_front(&mut self, n: usize) {
        let n = n.min(self.len);
        if n == 0 {
            return;
        }
        free_raw(self.filled_raw(), n);
        // SAFETY: the first `n` packets were just freed and are never touched again.
        unsafe { self.forget_front(n) };
    }

    /// Records that a driver took ownership of the first `n` packets; the rest move to the front.
    ///
    /// # Safety
    /// The first `n` packets must now be owned elsewhere (never freed by this burst).
    pub(crate) unsafe fn forget_front(&mut self, n: usize) {
        debug_assert!(n <= self.len);
        let rest = self.len - n;
        // SAFETY: both ranges lie within the array; `copy` handles the overlap. The moved-from slots
        // beyond the new length are treated as uninitialised.
        unsafe { std::ptr::copy(self.pkts.as_ptr().add(n), self.pkts.as_mut_ptr(), rest) };
        self.len = rest;
    }
}

impl Drop for Burst {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Frees `n` raw mbufs in one call.
fn free_raw(ptr: *mut *mut sys::rte_mbuf, n: usize) {
    // SAFETY: callers pass `n` initialised mbuf pointers they own and will not touch again.
    unsafe { sys::rte_pktmbuf_free_bulk(ptr, n as u32) };
}

/// The iterator of [`Burst::drain`].
pub struct Drain<'a> {
    burst: &'a mut Burst,
    next: usize,
    end: usize,
}

impl Iterator for Drain<'_> {
    type Item = Mbuf;

    #[inline]
    fn next(&mut self) -> Option<Mbuf> {
        if self.next == self.end {
            return None;
        }
        // SAFETY: slots [next, end) are initialised and owned by the drain; each is read once.
        let pkt = unsafe { self.burst.pkts[self.next].assume_init_read() };
        self.next += 1;
        Some(pkt)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.end - self.next, Some(self.end - self.next))
    }
}

impl ExactSizeIterator for Drain<'_> {}

impl Drop for Drain<'_> {
    fn drop(&mut self) {
        let rest = self.end - self.next;
        if rest > 0 {
            // SAFETY: slots [next, end) are initialised and were never yielded.
            let ptr = unsafe { self.burst.pkts.as_mut_ptr().add(self.next) }.cast::<*mut sys::rte_mbuf>();
            free_raw(ptr, rest);
        }
    }
}
