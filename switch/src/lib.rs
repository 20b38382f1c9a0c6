//! ferrovs: the data path and control plane of a DPDK poll-mode virtual switch.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod cache;
pub mod classifier;
pub mod control;
#[allow(unsafe_code)] // the safe DPDK layer: the only module that touches dpdk_sys
pub mod dpdk;
pub mod fastpath;
pub mod l2;
pub mod link;
pub mod ofproto;
pub mod packet;
pub mod pmd;
pub mod report;
pub mod runtime;
pub mod stats;
pub mod sync;
