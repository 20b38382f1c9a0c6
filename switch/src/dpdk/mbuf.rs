//! One packet buffer (`rte_mbuf`) with one owner.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use dpdk_sys as sys;

/// `ol_flags` bits that make an mbuf's data not ours alone to write (indirect or external buffer).
const NOT_DIRECT: u64 = (1 << 61) | (1 << 62); // RTE_MBUF_F_EXTERNAL | RTE_MBUF_F_INDIRECT

/// One packet with one owner. Dropping it returns it to its mempool, exactly once.
///
/// `Send` (a packet may travel to another core, e.g. a miss to the control core), never `Sync` or
/// `Clone`: [`Mbuf::share`] makes a second owner explicitly, by reference count.
#[repr(transparent)]
pub struct Mbuf(NonNull<sys::rte_mbuf>);

// SAFETY: an Mbuf is the unique handle on its buffer (or one of `refcnt` handles, whose shared parts
// are only read); DPDK lets any thread free an mbuf to its (thread-safe) mempool.
unsafe impl Send for Mbuf {}

/// The mbuf has no room for the bytes asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("mbuf has {room} bytes of tailroom, {needed} needed")]
pub struct NoRoom {
    /// Bytes free after the data.
    pub room: usize,
    /// Bytes asked for.
    pub needed: usize,
}

impl Mbuf {
    /// Takes ownership of a raw mbuf.
    ///
    /// # Safety
    /// `raw` must be a valid mbuf that nobody else will free (it came from an rx burst, an alloc, or
    /// `into_raw`).
    pub(crate) unsafe fn from_raw(raw: *mut sys::rte_mbuf) -> Self {
        debug_assert!(!raw.is_null());
        // SAFETY: the caller guarantees a valid, non-null mbuf.
        Self(unsafe { NonNull::new_unchecked(raw) })
    }

    fn raw(&self) -> &sys::rte_mbuf {
        // SAFETY: we own a reference on a valid mbuf; its header is not written by anyone else while
        // we hold it (shared owners only touch `refcnt`, which we read atomically elsewhere).
        unsafe { self.0.as_ref() }
    }

    /// The first segment's packet bytes.
    #[inline]
    pub fn data(&self) -> &[u8] {
        let m = self.raw();
        // SAFETY: buf_addr + data_off .. + data_len lies inside the mbuf's buffer (a DPDK invariant)
        // and stays valid while we hold a reference.
        unsafe {
            std::slice::from_raw_parts(m.buf_addr.cast::<u8>().add(usize::from(m.data_off)), usize::from(m.data_len))
        }
    }

    /// The first segment's bytes, writable; `None` when the buffer is shared with another owner,
    /// indirect or external (write to a copy instead).
    #[inline]
    pub fn data_mut(&mut self) -> Option<&mut [u8]> {
        if !self.is_writable() {
            return None;
        }
        let m = self.raw();
        let (addr, off, len) = (m.buf_addr.cast::<u8>(), usize::from(m.data_off), usize::from(m.data_len));
        // SAFETY: as in `data`, and we are the only owner of a direct buffer, so no one else reads
        // or writes these bytes while the returned borrow lives.
        Some(unsafe { std::slice::from_raw_parts_mut(addr.add(off), len) })
    }

    /// Whether this handle may write the packet: sole owner of a direct buffer.
    #[inline]
    pub fn is_writable(&self) -> bool {
        let m = self.raw();
        m.ol_flags & NOT_DIRECT == 0 && m.nb_segs == 1 && self.refcnt() == 1
    }

    fn refcnt(&self) -> u16 {
        // SAFETY: refcnt is a properly aligned u16 inside a live mbuf; DPDK updates it atomically.
        unsafe { AtomicU16::from_ptr(&raw mut (*self.0.as_ptr()).refcnt) }.load(Ordering::Acquire)
    }

    /// Total packet length over all segments.
    #[inline]
    pub fn len(&self) -> usize {
        self.raw().pkt_len as usize
    }

    /// Whether the packet has no bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many segments the packet spans.
    pub fn segments(&self) -> u16 {
        self.raw().nb_segs
    }

    /// The DPDK port id the packet arrived on.
    pub fn rx_port(&self) -> u16 {
        self.raw().port
    }

    /// The NIC's RSS hash, when the port computed one.
    #[inline]
    pub fn rss_hash(&self) -> Option<u32> {
        let m = self.raw();
        // SAFETY: the hash union is plain data (any bit pattern is a valid u32); `rss` is the member
        // the NIC writes when it sets RTE_MBUF_F_RX_RSS_HASH, and we only return it then.
        let rss = unsafe { m.__bindgen_anon_2.hash.rss };
        (m.ol_flags & u64::from(sys::RTE_MBUF_F_RX_RSS_HASH) != 0).then_some(rss)
    }

    /// Makes a second owner of the same buffer (reference count + 1). Neither handle can write the
    /// packet until the other is gone.
    pub fn share(&self) -> Mbuf {
        let mut seg = self.0.as_ptr();
        while !seg.is_null() {
            // SAFETY: `seg` is a live segment of our packet; refcnt is updated atomically as DPDK does
            // (rte_mbuf_refcnt_update), and `next` is read-only while we hold a reference.
            unsafe {
                AtomicU16::from_ptr(&raw mut (*seg).refcnt).fetch_add(1, Ordering::AcqRel);
                seg = (*seg).next;
            }
        }
        Mbuf(self.0)
    }

    /// Appends `bytes` after the data of a single-segment packet.
    pub fn append(&mut self, bytes: &[u8]) -> Result<(), NoRoom> {
        let room = {
            let m = self.raw();
            usize::from(m.buf_len) - usize::from(m.data_off) - usize::from(m.data_len)
        };
        if !self.is_writable()
            || bytes.len() > room
            || self.raw().data_len as usize + bytes.len() > usize::from(u16::MAX)
        {
            return Err(NoRoom { room: if self.is_writable() { room } else { 0 }, needed: bytes.len() });
        }
        let m = self.0.as_ptr();
        // SAFETY: we are the sole owner of a direct single-segment buffer, and the copy stays within
        // its tailroom (checked above); lengths are updated to match.
        unsafe {
            let tail = (*m).buf_addr.cast::<u8>().add(usize::from((*m).data_off) + usize::from((*m).data_len));
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), tail, bytes.len());
            (*m).data_len += bytes.len() as u16;
            (*m).pkt_len += bytes.len() as u32;
        }
        Ok(())
    }

    /// Makes `n` more bytes of room in front of the data (from the headroom), for pushing a header.
    /// The new bytes are uninitialised garbage: the caller overwrites them.
    pub fn prepend(&mut self, n: usize) -> Result<(), NoRoom> {
        let room = usize::from(self.raw().data_off);
        if !self.is_writable() || n > room || usize::from(self.raw().data_len) + n > usize::from(u16::MAX) {
            return Err(NoRoom { room, needed: n });
        }
        let m = self.0.as_ptr();
        // SAFETY: we are the sole owner of a direct single-segment mbuf; moving data_off back by
        // at most the headroom keeps the data inside the buffer, and the lengths follow.
        unsafe {
            (*m).data_off -= n as u16;
            (*m).data_len += n as u16;
            (*m).pkt_len += n as u32;
        }
        Ok(())
    }

    /// Drops the first `n` bytes of the data (for popping a header).
    pub fn trim_front(&mut self, n: usize) -> Result<(), NoRoom> {
        let len = usize::from(self.raw().data_len);
        if !self.is_writable() || n > len {
            return Err(NoRoom { room: len, needed: n });
        }
        let m = self.0.as_ptr();
        // SAFETY: sole owner of a direct single-segment mbuf; n <= data_len keeps data in bounds.
        unsafe {
            (*m).data_off += n as u16;
            (*m).data_len -= n as u16;
            (*m).pkt_len -= n as u32;
        }
        Ok(())
    }

    /// A full copy of the packet (all segments) in a new mbuf from the same pool, which the copy's
    /// owner may write. `None` when the pool is empty.
    pub fn deep_copy(&self) -> Option<Mbuf> {
        let m = self.raw();
        // SAFETY: the source is a live packet we hold a reference on; rte_pktmbuf_copy allocates
        // the copy from the given pool (the source's own, alive while the source is) and only
        // reads the source.
        let copy = unsafe { sys::rte_pktmbuf_copy(self.0.as_ptr(), m.pool, 0, u32::MAX) };
        // SAFETY: a non-null result is a fresh mbuf that nobody else references.
        NonNull::new(copy).map(|p| unsafe { Mbuf::from_raw(p.as_ptr()) })
    }

    /// Hints the CPU to load the packet's first cache line.
    #[inline(always)]
    pub fn prefetch_data(&self) {
        #[cfg(target_arch = "x86_64")]
        {
            let m = self.raw();
            let p = m.buf_addr.cast::<i8>().wrapping_add(usize::from(m.data_off));
            // SAFETY: prefetch never faults, whatever the address.
            unsafe { core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p) };
        }
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        let mut raw = self.0.as_ptr();
        // SAFETY: we own one reference on this packet and give it back exactly once; free_bulk
        // handles segments and reference counts.
        unsafe { sys::rte_pktmbuf_free_bulk(&mut raw, 1) };
    }
}

impl std::fmt::Debug for Mbuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mbuf").field("len", &self.len()).field("segments", &self.segments()).finish()
    }
}
