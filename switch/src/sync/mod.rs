//! Concurrency building blocks for the fast path: the atomics it uses (std's, or loom's when the
//! crate is built with `--cfg loom` so the model checker can explore the protocols), and
//! quiescent-state-based reclamation ([`qsbr`]).

pub mod qsbr;

#[cfg(loom)]
pub use loom::hint::spin_loop;
#[cfg(loom)]
pub use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
#[cfg(not(loom))]
pub use std::hint::spin_loop;
#[cfg(not(loom))]
pub use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

pub use crossbeam_utils::CachePadded;
