//! Packets as the pipeline sees them: the flow key extracted from a frame's headers.

/// Dense index of a port in the switch's port table (0-based, config order). The data path uses it
/// to index per-port arrays; OpenFlow numbers appear only at the edges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortIdx(pub u16);

impl PortIdx {
    /// As an array index.
    #[inline]
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// What a flow is matched on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// The port the packet arrived on.
    pub in_port: PortIdx,
}

impl FlowKey {
    /// Extracts the key of `frame`, received on `in_port`. Never fails: whatever the bytes, the
    /// result is a key (a malformed frame simply matches fewer fields).
    #[inline]
    pub fn extract(_frame: &[u8], in_port: PortIdx) -> Self {
        Self { in_port }
    }
}
