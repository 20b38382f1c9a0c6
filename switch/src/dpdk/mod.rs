//! The safe DPDK layer: the only code that calls into `dpdk_sys`. Every `unsafe` block here states
//! why it is sound; everything above this module is safe Rust.
//!
//! Ownership rules: an [`Mbuf`] has one owner and is freed exactly once (on drop, or in bulk by a
//! [`Burst`]); queues belong to one core; ports, pools and lcore jobs keep [`Eal`] alive.

mod burst;
mod device;
mod eal;
mod error;
mod huge;
mod mbuf;
mod mempool;
mod port;
mod queue;
mod tsc;
mod vhost;

pub use burst::{Burst, Drain, MAX_BURST};
pub use device::Device;
pub use eal::{Eal, EalError, LcoreJob, LcorePanic};
pub use error::RteError;
pub use huge::HugeSlice;
pub use mbuf::{Mbuf, NoRoom};
pub use mempool::{Mempool, MempoolError};
pub use port::{DevInfo, Link, Port, PortError, PortSetup, PortStats, VhostQueueEvent};
pub use queue::{RxQueue, TxQueue};
pub use tsc::{prefetch, prefetch_all, rdtsc, tsc_hz};
pub use vhost::{VHOST_DRIVER, VhostUserPort};

/// The DPDK version ferrovs was built against.
pub const DPDK_VERSION: &str = dpdk_sys::DPDK_VERSION;

/// Data room of the default packet buffer: 2048 bytes plus headroom (`RTE_MBUF_DEFAULT_BUF_SIZE`).
pub const DEFAULT_DATA_ROOM: u16 = dpdk_sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16;

/// Bytes reserved in front of each packet (`RTE_PKTMBUF_HEADROOM`), room to push headers.
pub const HEADROOM: u16 = dpdk_sys::RTE_PKTMBUF_HEADROOM as u16;
