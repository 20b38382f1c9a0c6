//! DPDK return codes as typed errors with readable text.

use std::ffi::CStr;
use std::fmt;

use dpdk_sys as sys;

/// An errno-style code returned by DPDK (always positive here), printed with DPDK's own text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RteError(pub i32);

impl RteError {
    /// From a negative-errno return value (`-EINVAL`) or a positive one (`rte_errno`).
    pub fn from_ret(ret: i32) -> Self {
        Self(ret.saturating_abs())
    }

    /// The calling thread's `rte_errno`, for the functions that return -1 or NULL and set it.
    pub fn last() -> Self {
        // SAFETY: reads a thread-local integer; no preconditions.
        Self(unsafe { sys::ferrovs_errno() })
    }

    /// Converts a DPDK status return (0 or positive = ok, negative = -errno) into a `Result`.
    pub fn check(ret: i32) -> Result<i32, Self> {
        if ret < 0 { Err(Self::from_ret(ret)) } else { Ok(ret) }
    }
}

impl fmt::Display for RteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SAFETY: rte_strerror accepts any integer and returns a pointer to a static or thread-local
        // NUL-terminated string, valid until the next call on this thread; we copy it out at once.
        let text = unsafe { CStr::from_ptr(sys::rte_strerror(self.0)) };
        write!(f, "{} (errno {})", text.to_string_lossy(), self.0)
    }
}

impl std::error::Error for RteError {}
