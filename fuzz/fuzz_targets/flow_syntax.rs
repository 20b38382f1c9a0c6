//! The `ovs-ofctl` flow parser on arbitrary text: no panic, and whatever parses prints back to text
//! that parses to the same rule.

#![no_main]

use ferrovs_config::flow::{OfPort, PortMap, parse_flow};
use libfuzzer_sys::fuzz_target;

struct Ports;
impl PortMap for Ports {
    fn by_name(&self, name: &str) -> Option<OfPort> {
        ["p0", "p1", "uplink"].iter().position(|n| *n == name).map(|i| i as OfPort + 1)
    }
    fn has_number(&self, n: OfPort) -> bool {
        (1..=3).contains(&n)
    }
    fn name_of(&self, n: OfPort) -> Option<&str> {
        ["p0", "p1", "uplink"].get(usize::from(n).wrapping_sub(1)).copied()
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(rule) = parse_flow(text, &Ports) {
        let printed = rule.display(&Ports).to_string();
        let again = parse_flow(&printed, &Ports).unwrap_or_else(|e| panic!("{printed:?} does not parse: {e}"));
        assert_eq!(again, rule, "{printed:?}");
    }
});
