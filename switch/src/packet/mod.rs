//! Packets as the pipeline sees them: the flow key extracted from a frame's headers, the header
//! offsets, and in-place header rewriting with checksum updates.

pub mod csum;
pub mod edit;
pub mod parse;

pub use edit::{PacketInfo, SetField};
pub use ferrovs_config::flow::{FlowKey, Match};
pub use parse::{Layout, extract, extract_to};

/// Dense index of a port in the switch's port table (0-based, config order). The data path uses it
/// to index per-port arrays; OpenFlow numbers appear in flow keys and rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortIdx(pub u16);

impl PortIdx {
    /// As an array index.
    #[inline]
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}
