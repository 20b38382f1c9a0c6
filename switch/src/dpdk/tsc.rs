//! The time-stamp counter: the data path's clock (a system clock call per loop would be a syscall
//! on some hosts; the TSC is one instruction).

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
