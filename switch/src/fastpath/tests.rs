use super::*;
use crate::cache::hash_key;
use crate::ofproto::{DpAction, Translation};
use crate::packet::PortIdx;

fn key(port: u16, dst: u32, tp: u16) -> FlowKey {
    let mut k = FlowKey::ZERO;
    k.set_in_port(port);
    k.set_dl_type(0x0800);
    k.set_nw_dst(dst);
    k.set_tp_dst(tp);
    k
}

fn mask(dst_prefix: u32) -> FlowKey {
    let mut m = FlowKey::ZERO;
    m.set_in_port(0xffff);
    m.set_dl_type(0xffff);
    m.set_nw_dst(u32::MAX.checked_shl(32 - dst_prefix).unwrap_or(0));
    m
}

fn out(p: u16) -> Translation {
    let mut t = Translation::default();
    t.actions.push(DpAction::Output(PortIdx(p)));
    t
}

fn actions_of(t: &FlowTables, r: MegaflowRef) -> Vec<DpAction> {
    let mut w = ActionWords { words: [0; ACTION_WORDS], len: 0 };
    assert!(t.actions(r, &mut w));
    let mut v = Vec::new();
    let mut at = 0;
    while at < w.len {
        let (a, n) = actions::decode(&w.as_slice()[at..]).unwrap();
        v.push(a);
        at += n;
    }
    v
}

#[test]
fn megaflows_match_by_mask_and_rank_by_size() {
    let mut w = TablesWriter::new(64, 64, 1);
    let wide = w.install(&key(1, 0x0a00_0000, 0), &mask(8), out(2), Default::default()).unwrap();
    let narrow = w.install(&key(1, 0x0b01_0000, 0), &mask(16), out(3), Default::default()).unwrap();
    w.install(&key(1, 0x0b02_0000, 0), &mask(16), out(3), Default::default()).unwrap();
    assert_eq!((w.megaflow_count(), w.subtable_count()), (3, 2));
    let t = Arc::clone(w.tables());
    let mut view = SubtableView::default();
    t.refresh(&mut view);
    assert_eq!(view.list.len(), 2);
    assert_eq!(view.list[0].mask, mask(16), "the subtable with more megaflows first");
    assert_eq!(t.megaflow_lookup(&view, &key(1, 0x0a09_0909, 99)), Some(wide));
    assert_eq!(t.megaflow_lookup(&view, &key(1, 0x0b01_ffff, 7)), Some(narrow));
    assert_eq!(t.megaflow_lookup(&view, &key(2, 0x0a09_0909, 99)), None, "in_port is in the mask");
    assert_eq!(t.megaflow_lookup(&view, &key(1, 0x0c00_0000, 0)), None);
    assert_eq!(actions_of(&t, narrow), out(3).actions.to_vec());
    assert_eq!(w.lookup(&key(1, 0x0b01_0001, 0)), Some(narrow));
}

#[test]
fn removal_makes_cache_entries_stale_and_ids_come_back_after_a_grace_period() {
    let mut w = TablesWriter::new(64, 1, 1);
    let t = Arc::clone(w.tables());
    t.qsbr().online(0);
    let k = key(1, 0x0a00_0001, 80);
    let h = hash_key(&k);
    let mf = w.install(&k, &mask(32), out(2), Default::default()).unwrap();
    w.cache_insert(&k, h, mf);
    assert_eq!(t.cache_lookup(&k, h), Some(mf));
    w.remove(mf.id).unwrap();
    assert_eq!(t.cache_lookup(&k, h), None, "generation moved on");
    let mut view = SubtableView::default();
    t.refresh(&mut view);
    assert_eq!(t.megaflow_lookup(&view, &k), None);
    assert_eq!(
        w.install(&k, &mask(32), out(3), Default::default()),
        Err(InstallError::TableFull),
        "the only id is still retired: the PMD has not quiesced"
    );
    t.qsbr().quiesce(0);
    let again = w.install(&k, &mask(32), out(3), Default::default()).unwrap();
    assert_eq!(again.id, mf.id);
    assert_ne!(again.generation, mf.generation);
    assert_eq!(t.cache_lookup(&k, h), None, "the old cache entry does not point at the new megaflow");
    assert_eq!(w.sweep_cache(), 1);
}

#[test]
fn counters_are_taken_as_deltas_per_megaflow() {
    let mut w = TablesWriter::new(8, 1, 2);
    let mf = w.install(&key(1, 1, 1), &mask(32), out(2), Default::default()).unwrap();
    let t = Arc::clone(w.tables());
    t.credit(0, mf.id, 3, 180, 10);
    t.credit(1, mf.id, 1, 60, 20);
    assert_eq!(w.take_counts(mf.id), (4, 240));
    assert_eq!(w.take_counts(mf.id), (0, 0));
    t.credit(1, mf.id, 2, 120, 30);
    assert_eq!(w.take_counts(mf.id), (2, 120));
    // A reused id does not inherit the old counters.
    w.remove(mf.id);
    w.synchronize();
    let mf2 = w.install(&key(1, 2, 1), &mask(32), out(2), Default::default()).unwrap();
    assert_eq!(mf2.id, mf.id);
    assert_eq!(w.take_counts(mf2.id), (0, 0));
}

#[test]
fn installing_an_installed_megaflow_finds_it() {
    let mut w = TablesWriter::new(8, 8, 1);
    let first = w.install_or_find(&key(1, 0x0a00_0001, 80), &mask(8), out(2), Default::default()).unwrap();
    let Installed::New(mf) = first else { panic!("{first:?}") };
    // Same masked key (the /8 hides the rest of the address, the mask the port): the same one.
    let again = w.install_or_find(&key(1, 0x0a09_0909, 99), &mask(8), out(3), Default::default());
    assert_eq!(again, Ok(Installed::Existing(mf)));
    assert_eq!(actions_of(w.tables(), mf), out(2).actions.to_vec(), "its actions are kept");
    assert_eq!(w.megaflow_count(), 1);
    let other = w.install_or_find(&key(1, 0x0b00_0001, 80), &mask(8), out(3), Default::default()).unwrap();
    assert!(matches!(other, Installed::New(r) if r.id != mf.id), "{other:?}");
    assert_eq!(w.megaflow_count(), 2);
}

#[test]
fn the_cache_is_left_unfilled_only_while_pmds_bypass_it() {
    let mut w = TablesWriter::new(1024, 8, 1);
    let mf = w.install(&key(1, 0, 0), &mask(0), out(2), Default::default()).unwrap();
    for i in 0..=SIMPLE_MODE_FLOWS as u32 {
        assert!(!w.cache_bypassed(), "{i} cached flows");
        let k = key(1, i, 0);
        w.cache_insert(&k, hash_key(&k), mf);
    }
    assert!(w.cache_bypassed(), "one mask, more flows than SIMPLE_MODE_FLOWS: PMDs skip the cache");
    w.install(&key(2, 0, 0), &mask(8), out(2), Default::default()).unwrap();
    assert!(!w.cache_bypassed(), "a second mask: PMDs use the cache again");
}

#[test]
fn too_long_action_lists_are_refused() {
    let mut w = TablesWriter::new(8, 8, 1);
    let mut many = Translation::default();
    many.actions.extend((0..ACTION_WORDS as u16 + 1).map(|p| DpAction::Output(PortIdx(p))));
    assert_eq!(w.install(&key(1, 1, 1), &mask(32), many, Default::default()), Err(InstallError::TooManyActions));
    assert_eq!(w.subtable_count(), 0);
}

proptest::proptest! {
    /// A subtable hashes only the words its mask keeps, plus constants for the rest: that must be
    /// exactly the hash the writer computes over the whole masked key.
    #[test]
    fn subtable_hash_equals_the_full_key_hash(
        words in proptest::array::uniform11(proptest::num::u64::ANY),
        mask_words in proptest::array::uniform11(proptest::prop_oneof![
            proptest::strategy::Just(0u64), proptest::strategy::Just(u64::MAX), proptest::num::u64::ANY
        ]),
        tag in proptest::num::u32::ANY,
    ) {
        let (mut k, mut m) = (FlowKey::ZERO, FlowKey::ZERO);
        for w in 0..KEY_WORDS {
            k.set_word(w, words[w]);
            m.set_word(w, mask_words[w]);
        }
        // The tag's bytes are never part of a mask.
        m.0[TAG_OFFSET..].fill(0);
        let st = Subtable::new(m, tag);
        let (masked, hash) = st.masked(&k);
        let mut expect = k.masked(&m);
        expect.0[TAG_OFFSET..TAG_OFFSET + 4].copy_from_slice(&tag.to_be_bytes());
        proptest::prop_assert_eq!(masked, expect);
        proptest::prop_assert_eq!(hash, hash_key(&expect));
    }

    /// Two keys compare equal under a subtable's mask exactly when their masked keys are equal
    /// (the second key differs from the first in a random subset of bits).
    #[test]
    fn same_masked_agrees_with_comparing_masked_keys(
        words in proptest::array::uniform11(proptest::num::u64::ANY),
        flips in proptest::array::uniform11(proptest::prop_oneof![
            proptest::strategy::Just(0u64), proptest::num::u64::ANY
        ]),
        mask_words in proptest::array::uniform11(proptest::prop_oneof![
            proptest::strategy::Just(0u64), proptest::strategy::Just(u64::MAX), proptest::num::u64::ANY
        ]),
    ) {
        let (mut a, mut b, mut m) = (FlowKey::ZERO, FlowKey::ZERO, FlowKey::ZERO);
        for w in 0..KEY_WORDS {
            a.set_word(w, words[w]);
            b.set_word(w, words[w] ^ flips[w]);
            m.set_word(w, mask_words[w]);
        }
        m.0[TAG_OFFSET..].fill(0);
        let st = Subtable::new(m, 7);
        proptest::prop_assert_eq!(st.same_masked(&a, &b), a.masked(&m) == b.masked(&m));
        proptest::prop_assert_eq!(a == b, a.0 == b.0);
    }
}

#[test]
fn mask_into_overwrites_every_word_and_agrees_with_masked() {
    let st = Subtable::new(mask(16), 0x0102_0304);
    let k = key(3, 0x0a0b_0c0d, 80);
    let mut out = FlowKey::ONES;
    let h = st.mask_into(&k, &mut out);
    assert_eq!((out, h), st.masked(&k));
}

proptest::proptest! {
    /// A batch in one subtable finds, for every key, what a lookup of that key alone finds,
    /// whatever runs of keys share a masked key (they are looked up once).
    #[test]
    fn a_batch_finds_what_single_lookups_find(
        picks in proptest::collection::vec((0u32..6, 0u16..3), 1..64),
    ) {
        let mut w = TablesWriter::new(64, 64, 1);
        // Megaflows for /8 prefixes 10, 11 and 12 on port 1: keys under 13..15 or port 2 miss.
        for net in 10..13u32 {
            w.install(&key(1, net << 24, 0), &mask(8), out(net as u16), Default::default()).unwrap();
        }
        let t = Arc::clone(w.tables());
        let mut view = SubtableView::default();
        t.refresh(&mut view);
        let st = &view.list[0];
        // Runs of equal masked keys with different exact keys (the tp_dst differs).
        let keys: Vec<FlowKey> = picks
            .iter()
            .enumerate()
            .map(|(i, &(net, port))| key(1 + port / 2, (10 + net) << 24 | i as u32, i as u16))
            .collect();
        let mut scratch = vec![FlowKey::ZERO; keys.len()];
        let mut found = vec![None; keys.len()];
        t.megaflow_lookup_batch_in(st, &keys, &mut scratch, &mut found);
        for (k, f) in keys.iter().zip(&found) {
            proptest::prop_assert_eq!(*f, t.megaflow_lookup_in(st, k));
        }
    }
}
