//! Grouping a burst's packets by megaflow, so each group's actions are fetched and decoded once.
//!
//! A burst holds up to [`MAX_BURST`] packets of any number of flows. A 64-slot open-addressed
//! table keyed by megaflow id finds each packet's group in O(1), then a counting sort lays the
//! packet indices out group by group, each group in arrival order (so a flow's packets leave in
//! the order they came). Rescanning the burst once per group would cost O(n x groups): at 32
//! flows per burst that was most of a packet's budget.

use crate::dpdk::MAX_BURST;
use crate::fastpath::MegaflowRef;

/// Slots in the lookup table: a power of two, twice the most groups, so probes stay short.
const SLOTS: usize = 2 * MAX_BURST;
const EMPTY: u8 = u8::MAX;
/// 0, 1, 2, ...: the order of a burst that is one group.
const IDENTITY: [u8; MAX_BURST] = {
    let mut a = [0u8; MAX_BURST];
    let mut i = 0;
    while i < MAX_BURST {
        a[i] = i as u8;
        i += 1;
    }
    a
};

/// The groups of one burst.
pub struct Groups {
    refs: [MegaflowRef; MAX_BURST],
    /// Per group: where its packet indices start in `order`, and how many there are.
    start: [u8; MAX_BURST + 1],
    order: [u8; MAX_BURST],
    len: usize,
}

impl Groups {
    /// Groups the packets `i` with `found[i] = Some(..)` by megaflow (others are left out).
    #[inline]
    pub fn build(found: &[Option<MegaflowRef>]) -> Self {
        debug_assert!(found.len() <= MAX_BURST);
        let n = found.len().min(MAX_BURST);
        // The common case of one flow filling the burst: no table, no sort.
        if let Some(Some(first)) = found.first()
            && found.iter().all(|f| *f == Some(*first))
        {
            let mut refs = [MegaflowRef { id: 0, generation: 0 }; MAX_BURST];
            refs[0] = *first;
            let mut start = [0u8; MAX_BURST + 1];
            start[1] = n as u8;
            return Self { refs, start, order: IDENTITY, len: 1 };
        }
        let mut slots = [EMPTY; SLOTS];
        let mut refs = [MegaflowRef { id: 0, generation: 0 }; MAX_BURST];
        let mut group_of = [EMPTY; MAX_BURST];
        let mut count = [0u8; MAX_BURST + 1];
        let mut len = 0;
        for (i, f) in found.iter().enumerate().take(MAX_BURST) {
            let Some(mf) = *f else { continue };
            let mut s = (mf.id.wrapping_mul(0x9e37_79b1) >> 25) as usize % SLOTS;
            let g = loop {
                match slots[s] {
                    EMPTY => {
                        slots[s] = len as u8;
                        refs[len] = mf;
                        len += 1;
                        break len - 1;
                    }
                    g if refs[g as usize] == mf => break g as usize,
                    _ => s = (s + 1) % SLOTS,
                }
            };
            group_of[i] = g as u8;
            count[g + 1] += 1;
        }
        // Counting sort: group g's packets go to order[start[g]..start[g + 1]], in arrival order.
        let mut start = [0u8; MAX_BURST + 1];
        for g in 0..len {
            start[g + 1] = start[g] + count[g + 1];
        }
        let mut next = start;
        let mut order = [0u8; MAX_BURST];
        for (i, &g) in group_of.iter().enumerate().take(found.len()) {
            if g != EMPTY {
                order[next[g as usize] as usize] = i as u8;
                next[g as usize] += 1;
            }
        }
        Self { refs, start, order, len }
    }

    /// Number of groups.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Group `g`: its megaflow and its packets' indices, in arrival order.
    #[inline]
    pub fn get(&self, g: usize) -> (MegaflowRef, &[u8]) {
        (self.refs[g], &self.order[self.start[g] as usize..self.start[g + 1] as usize])
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The reference: for each distinct megaflow in order of first appearance, the indices of its
    /// packets in order.
    fn model(found: &[Option<MegaflowRef>]) -> Vec<(MegaflowRef, Vec<u8>)> {
        let mut groups: Vec<(MegaflowRef, Vec<u8>)> = Vec::new();
        for (i, f) in found.iter().enumerate() {
            let Some(mf) = *f else { continue };
            match groups.iter_mut().find(|(r, _)| *r == mf) {
                Some((_, v)) => v.push(i as u8),
                None => groups.push((mf, vec![i as u8])),
            }
        }
        groups
    }

    proptest! {
        #[test]
        fn groups_match_the_model(
            found in proptest::collection::vec(
                proptest::option::weighted(0.9, (0u32..40, 0u32..2).prop_map(|(id, generation)| {
                    // Ids far apart in value but equal modulo the table: probe chains get exercised.
                    MegaflowRef { id: id * 64, generation }
                })),
                0..=MAX_BURST,
            )
        ) {
            let groups = Groups::build(&found);
            let got: Vec<(MegaflowRef, Vec<u8>)> =
                (0..groups.len()).map(|g| { let (r, idx) = groups.get(g); (r, idx.to_vec()) }).collect();
            prop_assert_eq!(got, model(&found));
        }
    }

    #[test]
    fn a_burst_of_one_flow_is_one_group() {
        let mf = MegaflowRef { id: 7, generation: 3 };
        let groups = Groups::build(&[Some(mf); MAX_BURST]);
        assert_eq!(groups.len(), 1);
        let (r, idx) = groups.get(0);
        assert_eq!(r, mf);
        assert_eq!(idx, (0..MAX_BURST as u8).collect::<Vec<_>>());
    }
}
