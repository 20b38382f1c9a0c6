use proptest::prelude::*;

use super::reference::LinearClassifier;
use super::*;
use ferrovs_config::flow::off;

/// A small space of fields and values, so that random rules overlap a lot.
fn small_match() -> impl Strategy<Value = Match> {
    (
        prop::option::of(1u16..4),                                                        // in_port
        prop::option::of(prop_oneof![Just(0x0800u16), Just(0x86dd)]),                     // dl_type
        prop::option::of((0u32..4, prop::sample::select(vec![0u32, 8, 16, 24, 30, 32]))), // nw_dst/prefix
        prop::option::of((0u16..4, prop::sample::select(vec![0xffffu16, 0xfff0, 0x0003, 0x8000]))), // tp_dst/mask
    )
        .prop_map(|(port, dl_type, dst, tp)| {
            let mut m = Match::ANY;
            if let Some(p) = port {
                m.key.set_in_port(p);
                m.mask.set_in_port(0xffff);
            }
            if let Some(t) = dl_type {
                m.key.set_dl_type(t);
                m.mask.set_dl_type(0xffff);
            }
            if let Some((v, plen)) = dst {
                let mask = u32::MAX.checked_shl(32 - plen).unwrap_or(0);
                m.key.set_nw_dst(0x0a00_0000 | (v << 22) | v);
                m.mask.set_nw_dst(mask);
            }
            if let Some((v, mask)) = tp {
                m.key.set_tp_dst(v * 0x1001);
                m.mask.set_tp_dst(mask);
            }
            m.key = m.key.masked(&m.mask);
            m
        })
}

fn small_key() -> impl Strategy<Value = FlowKey> {
    (1u16..5, prop::sample::select(vec![0x0800u16, 0x86dd, 0x0806]), 0u32..4, any::<u32>(), 0u16..5, any::<u16>())
        .prop_map(|(port, dl_type, v, noise, tpv, tpnoise)| {
            let mut k = FlowKey::ZERO;
            k.set_in_port(port);
            k.set_dl_type(dl_type);
            k.set_nw_dst((0x0a00_0000 | (v << 22) | v) ^ (noise & 0x3f_ff00 & if noise & 1 == 0 { 0 } else { !0 }));
            k.set_tp_dst(tpv.wrapping_mul(0x1001) ^ (tpnoise & 0x0ff0 & if tpnoise & 1 == 0 { 0 } else { !0 }));
            k
        })
}

#[derive(Debug, Clone)]
enum Op {
    Insert(Match, u16),
    Remove(usize),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            4 => (small_match(), 0u16..4).prop_map(|(m, p)| Op::Insert(m, p)),
            1 => any::<usize>().prop_map(Op::Remove),
        ],
        0..60,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn agrees_with_the_linear_model(ops in ops(), keys in prop::collection::vec(small_key(), 1..40)) {
        let mut fast = Classifier::new();
        let mut model = LinearClassifier::default();
        let mut live: Vec<(Match, u16)> = Vec::new();
        for (id, op) in ops.into_iter().enumerate() {
            match op {
                Op::Insert(m, p) => {
                    fast.insert(m, p, id);
                    model.insert(m, p, id);
                    if !live.contains(&(m, p)) { live.push((m, p)); }
                }
                Op::Remove(i) if !live.is_empty() => {
                    let (m, p) = live.remove(i % live.len());
                    prop_assert_eq!(fast.remove(&m, p), model.remove(&m, p));
                }
                Op::Remove(_) => {}
            }
        }
        prop_assert_eq!(fast.len(), live.len());
        for k in keys {
            prop_assert_eq!(fast.lookup(&k).map(|e| e.value), model.lookup(&k).copied(), "key {:?}", k);
        }
    }

    #[test]
    fn the_reported_wildcards_are_safe(
        rules in prop::collection::vec((small_match(), 0u16..4), 0..40),
        key in small_key(),
        other in small_key(),
    ) {
        let mut c = Classifier::new();
        for (id, (m, p)) in rules.into_iter().enumerate() {
            c.insert(m, p, id);
        }
        let mut wc = FlowKey::ZERO;
        let answer = c.lookup_wc(&key, &mut wc).map(|e| e.value);
        // Any key that agrees with `key` on the reported bits gets the same answer.
        let mut blended = FlowKey::ZERO;
        for i in 0..ferrovs_config::flow::KEY_WORDS {
            blended.set_word(i, (key.word(i) & wc.word(i)) | (other.word(i) & !wc.word(i)));
        }
        prop_assert_eq!(c.lookup(&blended).map(|e| e.value), answer);
    }
}

#[test]
fn stops_early_once_no_subtable_can_win() {
    let mut c = Classifier::new();
    let mut exact = Match::ANY;
    exact.key.set_in_port(1);
    exact.mask.set_in_port(0xffff);
    c.insert(exact, 100, "high");
    let mut other = Match::ANY;
    other.key.set_dl_type(0x0800);
    other.mask.set_dl_type(0xffff);
    c.insert(other, 1, "low");
    let mut key = FlowKey::ZERO;
    key.set_in_port(1);
    key.set_dl_type(0x0800);
    let mut wc = FlowKey::ZERO;
    assert_eq!(c.lookup_wc(&key, &mut wc).map(|e| e.value), Some("high"));
    // Only in_port was needed: the dl_type subtable was never probed.
    assert_eq!(&wc.0[off::DL_TYPE..off::DL_TYPE + 2], &[0, 0]);
    assert_eq!(&wc.0[off::IN_PORT..off::IN_PORT + 2], &[0xff, 0xff]);
}

#[test]
fn same_match_and_priority_replaces() {
    let mut c = Classifier::new();
    assert_eq!(c.insert(Match::ANY, 5, 1), None);
    assert_eq!(c.insert(Match::ANY, 5, 2), Some(1));
    assert_eq!(c.len(), 1);
    assert_eq!(c.lookup(&FlowKey::ZERO).map(|e| e.value), Some(2));
    assert_eq!(c.remove(&Match::ANY, 5), Some(2));
    assert!(c.is_empty() && c.subtable_count() == 0);
}
