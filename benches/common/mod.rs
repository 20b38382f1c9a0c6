//! What the benchmarks share.

use ferrovs_config::flow::{OfPort, PortMap};

/// Ports p0..p3 numbered 1..4.
pub struct Ports;

impl PortMap for Ports {
    fn by_name(&self, name: &str) -> Option<OfPort> {
        name.strip_prefix('p')?.parse::<u16>().ok().filter(|n| *n < 4).map(|n| n + 1)
    }
    fn has_number(&self, n: OfPort) -> bool {
        (1..=4).contains(&n)
    }
    fn name_of(&self, _: OfPort) -> Option<&str> {
        None
    }
}
