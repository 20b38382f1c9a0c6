//! Packet buffer pools (`rte_pktmbuf_pool_create`).

use std::ffi::CString;
use std::ptr::NonNull;

use dpdk_sys as sys;

use super::{Eal, Mbuf, RteError};

/// Why a pool could not be created.
#[derive(Debug, thiserror::Error)]
pub enum MempoolError {
    /// The name has a NUL byte or is too long for DPDK (RTE_MEMPOOL_NAMESIZE).
    #[error("mempool name {0:?} is invalid (NUL byte or longer than 25 bytes)")]
    BadName(String),
    /// `rte_pktmbuf_pool_create` failed.
    #[error(
        "cannot create mempool {name:?} of {mbufs} mbufs x {data_room} B: {source} (out of hugepage memory? run scripts/setup.sh)"
    )]
    Create {
        /// The pool's name.
        name: String,
        /// The number of mbufs asked for.
        mbufs: u32,
        /// Data room per mbuf, bytes.
        data_room: u16,
        /// DPDK's reason.
        source: RteError,
    },
}

/// A pool of packet mbufs. Thread-safe: any thread may allocate from and free to it; EAL lcores get
/// a per-lcore cache.
pub struct Mempool {
    ptr: NonNull<sys::rte_mempool>,
    name: String,
    _eal: Eal,
}

// SAFETY: DPDK mempools are multi-producer/multi-consumer safe; the pointer is stable for the pool's
// life and every method goes through DPDK's thread-safe API.
unsafe impl Send for Mempool {}
// SAFETY: as above; `&Mempool` only exposes thread-safe DPDK calls.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// Creates a pool of `mbufs` packet buffers, each with `data_room` bytes (headroom included),
    /// a per-lcore cache of `cache` buffers, on NUMA `socket` (or `None` for any).
    pub fn new(
        eal: &Eal,
        name: &str,
        mbufs: u32,
        cache: u32,
        data_room: u16,
        socket: Option<i32>,
    ) -> Result<Self, MempoolError> {
        let cname = CString::new(name).map_err(|_| MempoolError::BadName(name.into()))?;
        if name.len() >= 26 {
            return Err(MempoolError::BadName(name.into()));
        }
        let cache = cache.min(sys::RTE_MEMPOOL_CACHE_MAX_SIZE);
        // SAFETY: EAL is initialised (we hold `eal`); the name is NUL-terminated and DPDK copies it.
        let ptr = unsafe {
            sys::rte_pktmbuf_pool_create(
                cname.as_ptr(),
                mbufs,
                cache,
                0,
                data_room,
                socket.unwrap_or(sys::SOCKET_ID_ANY),
            )
        };
        let ptr = NonNull::new(ptr).ok_or_else(|| MempoolError::Create {
            name: name.into(),
            mbufs,
            data_room,
            source: RteError::last(),
        })?;
        Ok(Self { ptr, name: name.into(), _eal: eal.clone() })
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many mbufs the pool holds in all.
    pub fn capacity(&self) -> u32 {
        // SAFETY: the pool is alive; `size` is written once at creation.
        unsafe { self.ptr.as_ref().size }
    }

    /// How many mbufs are allocated right now (in use by us, a driver, or a queue).
    pub fn in_use(&self) -> u32 {
        // SAFETY: the pool is alive; the count is a thread-safe read of ring and cache lengths.
        unsafe { sys::rte_mempool_in_use_count(self.ptr.as_ptr()) }
    }

    /// How many mbufs are free (in the pool or in lcore caches).
    pub fn available(&self) -> u32 {
        // SAFETY: as for `in_use`.
        unsafe { sys::rte_mempool_avail_count(self.ptr.as_ptr()) }
    }

    /// Allocates one packet mbuf (empty, default headroom). Not for the per-packet fast path.
    pub fn alloc(&self) -> Option<Mbuf> {
        let mut raw = [std::ptr::null_mut(); 1];
        // SAFETY: the pool is alive and `raw` has room for one pointer.
        let ret = unsafe { sys::ferrovs_pktmbuf_alloc_bulk(self.ptr.as_ptr(), raw.as_mut_ptr(), 1) };
        // SAFETY: on success DPDK wrote a fresh mbuf that nobody else references.
        (ret == 0).then(|| unsafe { Mbuf::from_raw(raw[0]) })
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::rte_mempool {
        self.ptr.as_ptr()
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        let in_use = self.in_use();
        if in_use != 0 {
            // Freeing the memory under live mbufs would be a use-after-free: leak it instead, loudly.
            log::error!("mempool {}: {in_use} mbufs still in use at teardown; leaking the pool", self.name);
            return;
        }
        // SAFETY: no mbuf of this pool is in use, and every port that used it is closed (ports hold
        // an Arc to their pool), so nothing references the memory any more.
        unsafe { sys::rte_mempool_free(self.ptr.as_ptr()) };
    }
}
