//! Internet checksums, updated incrementally when a header field changes (RFC 1624): the cost is
//! per changed word, not per packet byte.

/// Folds a 32-bit one's-complement sum to 16 bits.
#[inline]
pub fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The checksum after one 16-bit word of the covered data changed from `old` to `new`.
#[inline]
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    // HC' = ~(~HC + ~m + m')
    !fold(u32::from(!check) + u32::from(!old) + u32::from(new))
}

/// The checksum after the covered bytes `old` became `new` (same even length, word-aligned in
/// the covered data).
#[inline]
pub fn update_bytes(check: u16, old: &[u8], new: &[u8]) -> u16 {
    let mut sum = u32::from(!check);
    for (o, n) in old.chunks_exact(2).zip(new.chunks_exact(2)) {
        sum += u32::from(!u16::from_be_bytes([o[0], o[1]]));
        sum += u32::from(u16::from_be_bytes([n[0], n[1]]));
    }
    !fold(sum)
}

/// The one's-complement checksum of `data` (for tests and full recomputation).
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    !fold(sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn incremental_update_equals_recomputation(
            mut data in proptest::collection::vec(any::<u8>(), 2..64),
            pos in any::<prop::sample::Index>(),
            new in any::<[u8; 2]>(),
        ) {
            if data.len() % 2 == 1 { data.pop(); }
            let i = pos.index(data.len() / 2) * 2;
            let before = checksum(&data);
            let old = [data[i], data[i + 1]];
            data[i..i + 2].copy_from_slice(&new);
            let after = checksum(&data);
            let inc = update_bytes(before, &old, &new);
            // 0x0000 and 0xffff are the same number in one's complement.
            prop_assert!(inc == after || (inc ^ after) == 0xffff && (inc == 0 || inc == 0xffff), "{inc:#x} vs {after:#x}");
            prop_assert_eq!(update16(before, u16::from_be_bytes(old), u16::from_be_bytes(new)), inc);
        }
    }
}
