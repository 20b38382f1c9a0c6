//! The packet parser and the header rewriter on arbitrary bytes: no panic, no out-of-bounds offset,
//! and every rewrite leaves a frame that still parses.

#![no_main]

use ferrovs_switch::packet::parse::NONE;
use ferrovs_switch::packet::{PacketInfo, SetField, edit, extract};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (key, layout) = extract(data, 1);
    for off in [layout.l3, layout.l4, layout.end] {
        assert!(off == NONE || usize::from(off) <= data.len());
    }
    let info = PacketInfo { dl_type: key.dl_type(), nw_proto: key.nw_proto(), vlan: key.vlan_tci() != 0, layout };
    // Derive the new values from the input itself, so the fuzzer explores them too.
    let b = |i: usize| data.get(i).copied().unwrap_or(0x5a);
    let w = |i: usize| u16::from_be_bytes([b(i), b(i + 1)]);
    let d = |i: usize| u32::from_be_bytes([b(i), b(i + 1), b(i + 2), b(i + 3)]);
    let sets = [
        SetField::EthSrc([b(0); 6]),
        SetField::EthDst([b(1); 6]),
        SetField::VlanTci(w(2)),
        SetField::Ipv4Src(d(3)),
        SetField::Ipv4Dst(d(4)),
        SetField::IpTos(b(5)),
        SetField::IpTtl(b(6)),
        SetField::Ipv6Src([b(7); 16]),
        SetField::Ipv6Dst([b(8); 16]),
        SetField::Ipv6Label(d(9)),
        SetField::L4Src(w(10)),
        SetField::L4Dst(w(11)),
        SetField::ArpOp(w(12)),
        SetField::ArpSpa(d(13)),
        SetField::ArpTpa(d(14)),
        SetField::ArpSha([b(15); 6]),
        SetField::ArpTha([b(16); 6]),
    ];
    let mut frame = data.to_vec();
    for set in &sets {
        edit::apply(&mut frame, &info, set);
    }
    assert_eq!(frame.len(), data.len());
    let _ = extract(&frame, 1);
});
