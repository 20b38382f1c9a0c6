//! CPU helpers DPDK also wraps: the time-stamp counter (the data path's clock: one instruction,
//! where a system clock call may be a syscall) and cache prefetch (`rte_prefetch0`).

use dpdk_sys as sys;

/// Reads the TSC. Cycles are comparable only on the same machine; convert with [`tsc_hz`].
#[inline(always)]
pub fn rdtsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC has no preconditions on x86_64.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // SAFETY: reads the cycle counter; no preconditions.
        unsafe { sys::ferrovs_rdtsc() }
    }
}

/// TSC ticks per second as EAL measured them. Valid once EAL is initialised.
pub fn tsc_hz() -> u64 {
    // SAFETY: reads a value EAL computed at init; harmless (returns 0) before init.
    unsafe { sys::rte_get_tsc_hz() }
}

/// Hints the CPU to load the cache line holding `*value` (like `rte_prefetch0`).
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    prefetch_line(value, 0);
}

/// Hints the CPU to load every cache line of `*value` (for a value about to be written in
/// full: its lines come in while other work goes on, instead of one store miss after another).
#[inline(always)]
pub fn prefetch_all<T>(value: &T) {
    for offset in (0..std::mem::size_of::<T>()).step_by(64) {
        prefetch_line(value, offset);
    }
}

/// Hints the CPU to load the cache line `offset` bytes into `*value`.
#[inline(always)]
fn prefetch_line<T>(value: &T, offset: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let p = (value as *const T).cast::<i8>().wrapping_add(offset);
        // SAFETY: prefetching is a hint; it never faults and reads nothing architecturally, and
        // the address is inside a live reference anyway (callers stay within its size).
        unsafe { core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (value, offset);
}
