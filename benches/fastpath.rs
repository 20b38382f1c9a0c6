//! Fast-path table speed (no DPDK): lookups/s in the exact-match flow cache and in the megaflow
//! classifier at 1 to 1M entries, and the control core's flow-setup rate (new flows/s through
//! `SlowPath::decide` + `commit`). Run with `cargo bench --bench fastpath`; pick cases with a
//! filter, e.g. `cargo bench --bench fastpath -- flow_cache/batch32`.
//!
//! Lookup cases are all hits, in bursts of [`BURST`] keys like a PMD's, visiting the keys in a
//! shuffled order so that large tables miss the CPU caches. Hashes are computed during setup
//! (the PMD computes them in a separate pass, or takes the NIC's); `flow_cache/hash_key` measures
//! that pass on its own.

use std::cell::OnceCell;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Bencher, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
mod common;

use common::Ports;
use ferrovs_config::flow::{FlowKey, parse_flow};
use ferrovs_switch::cache::hash_key;
use ferrovs_switch::control::SlowPath;
use ferrovs_switch::fastpath::{FlowTables, MegaflowRef, SubtableView, TablesWriter};
use ferrovs_switch::ofproto::{DpAction, Ofproto, PortTable, Translation};
use ferrovs_switch::packet::PortIdx;

/// Keys per lookup burst (a PMD's receive burst).
const BURST: usize = 32;
/// Table sizes (entries) for the lookup cases.
const SIZES: [usize; 4] = [1, 1_000, 100_000, 1_000_000];
/// Megaflow capacity of the flow-setup tables; they are rebuilt (untimed) before they fill.
const SETUP_CAPACITY: usize = 1 << 18;

// ---------------------------------------------------------------------------------------------
// Helpers

/// xorshift64*: deterministic, dependency-free pseudo-random numbers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, (self.next() % (i as u64 + 1)) as usize);
        }
    }
}

/// A filled table and the keys to look up in it. Built on first use, so that a filtered run
/// skips the large setups it does not need.
struct Lookups {
    tables: Arc<FlowTables>,
    view: SubtableView,
    /// Every key (repeated to at least one burst, cut to whole bursts) in a shuffled order:
    /// entries are laid out in insertion order, so visiting them in that order would be
    /// friendlier to the CPU caches than real traffic.
    keys: Vec<FlowKey>,
    /// Their hashes.
    hashes: Vec<u64>,
}

impl Lookups {
    fn new(w: &TablesWriter, mut keys: Vec<FlowKey>) -> Self {
        let tables = Arc::clone(w.tables());
        let mut view = SubtableView::default();
        tables.refresh(&mut view);
        Rng(0x9e37_79b9_7f4a_7c15).shuffle(&mut keys);
        let len = keys.len().next_multiple_of(BURST);
        let keys: Vec<FlowKey> = keys.iter().copied().cycle().take(len).collect();
        let hashes = keys.iter().map(hash_key).collect();
        Self { tables, view, keys, hashes }
    }
}

/// Runs `f` on successive bursts of `l`'s keys and hashes, wrapping around, one burst per
/// iteration; `f` returns its hit count (kept, so the lookups are not optimised away).
fn bench_bursts(b: &mut Bencher, l: &Lookups, mut f: impl FnMut(&[FlowKey], &[u64]) -> usize) {
    let bursts = l.keys.len() / BURST;
    let mut at = 0;
    b.iter(|| {
        let r = at * BURST..(at + 1) * BURST;
        at = if at + 1 == bursts { 0 } else { at + 1 };
        black_box(f(&l.keys[r.clone()], &l.hashes[r]))
    });
}

fn output(port: u16) -> Translation {
    let mut t = Translation::default();
    t.actions.push(DpAction::Output(PortIdx(port)));
    t
}

// ---------------------------------------------------------------------------------------------
// Tier 1: the exact-match flow cache

/// Flow `i` of the cache cases: a UDP 5-tuple made unique by its source address.
fn cache_key(i: usize) -> FlowKey {
    let mut k = FlowKey::ZERO;
    k.set_in_port(1);
    k.set_dl_type(0x0800);
    k.set_nw_proto(17);
    k.set_nw_src(0x0a00_0000 + i as u32);
    k.set_nw_dst(0x1400_0001);
    k.set_tp_src((i as u16).wrapping_mul(7919));
    k.set_tp_dst(53);
    k
}

/// A cache of `n` entries (capacity `n`, as configured in production), all pointing at one
/// catch-all megaflow; returns the writer (which owns the tables) and the keys.
fn filled_cache(n: usize) -> (TablesWriter, Vec<FlowKey>) {
    let mut w = TablesWriter::new(n, 1, 1);
    let mf = w.install(&FlowKey::ZERO, &FlowKey::ZERO, output(1), Default::default()).unwrap();
    let keys: Vec<FlowKey> = (0..n).map(cache_key).collect();
    for k in &keys {
        w.cache_insert(k, hash_key(k), mf);
    }
    // An eviction would turn some lookups into misses and skew the numbers.
    assert_eq!(w.cache_len(), n, "flow cache of {n} evicted entries while filling");
    (w, keys)
}

/// One burst through `cache_lookup`, key by key.
fn cache_single(t: &FlowTables, keys: &[FlowKey], hashes: &[u64]) -> usize {
    keys.iter().zip(hashes).filter(|(k, h)| t.cache_lookup(k, **h).is_some()).count()
}

/// One burst the way the PMD does it: prefetch every key's buckets, then one batched lookup.
fn cache_batch(t: &FlowTables, keys: &[FlowKey], hashes: &[u64]) -> usize {
    for &h in hashes {
        t.prefetch_cache(h);
    }
    let mut found = [None::<MegaflowRef>; BURST];
    t.cache_lookup_batch(keys, hashes, &mut found[..keys.len()]);
    found.iter().filter(|f| f.is_some()).count()
}

fn flow_cache(c: &mut Criterion) {
    let mut g = c.benchmark_group("flow_cache");
    g.throughput(Throughput::Elements(BURST as u64));

    let burst: Vec<FlowKey> = (0..BURST).map(cache_key).collect();
    g.bench_function("hash_key", |b| {
        b.iter(|| burst.iter().map(|k| hash_key(black_box(k))).fold(0, u64::wrapping_add))
    });

    for n in SIZES {
        let cell = OnceCell::new();
        let case = || {
            cell.get_or_init(|| {
                let (w, keys) = filled_cache(n);
                let l = Lookups::new(&w, keys);
                assert_eq!(cache_single(&l.tables, &l.keys, &l.hashes), l.keys.len(), "every key must hit");
                l
            })
        };
        g.bench_function(BenchmarkId::new("single", n), |b| {
            let l = case();
            bench_bursts(b, l, |k, h| cache_single(&l.tables, k, h))
        });
        g.bench_function(BenchmarkId::new("batch32", n), |b| {
            let l = case();
            bench_bursts(b, l, |k, h| cache_batch(&l.tables, k, h))
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// Tier 2: the megaflow classifier

/// Megaflow masks, each with different fields (so a lookup hashes a different masked key per
/// subtable); every mask includes `in_port` and `dl_type`.
fn megaflow_mask(subtable: usize) -> FlowKey {
    let mut m = FlowKey::ZERO;
    m.set_in_port(0xffff);
    m.set_dl_type(0xffff);
    match subtable {
        0 => m.set_nw_dst(u32::MAX),
        1 => {
            m.set_nw_src(u32::MAX);
            m.set_tp_dst(0xffff);
        }
        2 => {
            m.set_nw_dst(u32::MAX);
            m.set_nw_proto(0xff);
            m.set_tp_src(0xffff);
        }
        _ => {
            m.set_dl_src([0xff; 6]);
            m.set_dl_dst([0xff; 6]);
        }
    }
    m
}

/// A packet of megaflow `v` of subtable `s`: the megaflows of subtable `s` have in_port `s + 1`
/// (so they never overlap another subtable's) and carry `v` in every field a mask may hold.
/// `noise` goes into fields no mask covers, so lookups really mask the key.
fn megaflow_key(s: usize, v: usize, noise: u64) -> FlowKey {
    let v32 = v as u32;
    let mut k = FlowKey::ZERO;
    k.set_in_port(s as u16 + 1);
    k.set_dl_type(0x0800);
    k.set_nw_proto(17);
    k.set_nw_src(v32);
    k.set_nw_dst(v32);
    k.set_tp_src(v as u16);
    k.set_tp_dst((v >> 16) as u16);
    k.set_dl_src([2, 0, 0, (v >> 16) as u8, (v >> 8) as u8, v as u8]);
    k.set_dl_dst([2, 0, 0, 0, 0, 1]);
    k.set_nw_ttl(noise as u8);
    k.set_ipv6_label(noise as u32 >> 12);
    k
}

/// `n` megaflows spread evenly over `masks` subtables; returns the writer and one packet key
/// per megaflow.
fn filled_megaflows(n: usize, masks: usize) -> (TablesWriter, Vec<FlowKey>) {
    let mut w = TablesWriter::new(1, n, 1);
    let actions = output(1);
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut keys = Vec::with_capacity(n);
    for i in 0..n {
        let (s, v) = (i % masks, i / masks);
        w.install(&megaflow_key(s, v, 0), &megaflow_mask(s), actions.clone(), Default::default()).unwrap();
        keys.push(megaflow_key(s, v, rng.next()));
    }
    assert_eq!((w.megaflow_count(), w.subtable_count()), (n, masks));
    (w, keys)
}

/// One burst through `megaflow_lookup`, key by key (what the PMD does for cache misses).
fn megaflow_single(t: &FlowTables, view: &SubtableView, keys: &[FlowKey]) -> usize {
    keys.iter().filter(|k| t.megaflow_lookup(view, k).is_some()).count()
}

/// One burst subtable by subtable (each subtable probed for every key still unmatched), the
/// order a batched classifier would use. There is no batched megaflow API, so this is built
/// from `megaflow_lookup_in`.
fn megaflow_by_subtable(t: &FlowTables, view: &SubtableView, keys: &[FlowKey]) -> usize {
    let mut found = [None::<MegaflowRef>; BURST];
    let mut left = keys.len();
    for st in &view.list {
        for (f, k) in found.iter_mut().zip(keys).filter(|(f, _)| f.is_none()) {
            *f = t.megaflow_lookup_in(st, k);
            left -= usize::from(f.is_some());
        }
        if left == 0 {
            break;
        }
    }
    keys.len() - left
}

fn megaflows(c: &mut Criterion) {
    let mut g = c.benchmark_group("megaflow");
    g.throughput(Throughput::Elements(BURST as u64));
    for masks in [1, 4] {
        for n in SIZES.into_iter().filter(|&n| n >= masks) {
            let cell = OnceCell::new();
            let case = || {
                cell.get_or_init(|| {
                    let (w, keys) = filled_megaflows(n, masks);
                    let l = Lookups::new(&w, keys);
                    assert_eq!(megaflow_single(&l.tables, &l.view, &l.keys), l.keys.len(), "every key must hit");
                    l
                })
            };
            g.bench_function(BenchmarkId::new(format!("single/{masks}_masks"), n), |b| {
                let l = case();
                bench_bursts(b, l, |k, _| megaflow_single(&l.tables, &l.view, k))
            });
            g.bench_function(BenchmarkId::new(format!("by_subtable32/{masks}_masks"), n), |b| {
                let l = case();
                bench_bursts(b, l, |k, _| megaflow_by_subtable(&l.tables, &l.view, k))
            });
        }
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// The control core's flow setup

/// `n` rules: every 4th an exact source-MAC rule at the highest priority (always probed, so
/// every megaflow matches `dl_src` exactly: one megaflow per new source MAC), the others IP/UDP
/// rules over three more masks. With one rule only the MAC rule exists and the bench's flows
/// miss it (drop megaflows); with more they hit `nw_dst=20.1.0.0/16`.
fn setup_rules(n: usize) -> Ofproto {
    let mut o = Ofproto::new(Arc::new(PortTable::new(vec![1, 2, 3, 4])), 1);
    for i in 0..n {
        let text = match i % 4 {
            0 => format!("priority=400,dl_src=02:00:00:00:{:02x}:{:02x},actions=output:p3", i >> 8, i & 0xff),
            1 => format!("priority=300,ip,nw_dst=20.{}.0.0/16,actions=output:p1", i % 250),
            2 => format!("priority=200,udp,nw_dst=20.{}.0.0/16,tp_dst={},actions=output:p2", i % 250, 1024 + i),
            _ => format!("priority=100,udp,tp_dst={:#x}/0xf000,actions=output:p3", (i % 15 + 1) << 12),
        };
        o.add(parse_flow(&text, &Ports).unwrap(), 0).unwrap();
    }
    o
}

/// A packet of a never-seen flow: `serial` becomes its source MAC (whose prefix no rule has).
fn new_flow(serial: u64) -> FlowKey {
    let mut k = FlowKey::ZERO;
    k.set_in_port(1);
    k.set_dl_type(0x0800);
    k.set_nw_proto(17);
    let s = (serial as u32).to_be_bytes();
    k.set_dl_src([0x0a, 0, s[0], s[1], s[2], s[3]]);
    k.set_dl_dst([2, 0, 0, 0, 0, 1]);
    k.set_nw_src(0x0a00_0001);
    k.set_nw_dst(0x1401_0001);
    k.set_tp_src(4000);
    k.set_tp_dst(53);
    k
}

/// A slow path over `rules` rules whose tables are rebuilt (untimed) before they fill up.
struct FlowSetup {
    rules: usize,
    slow: SlowPath,
    serial: u64,
}

impl FlowSetup {
    fn new(rules: usize) -> Self {
        Self { rules, slow: Self::fresh(rules), serial: 0 }
    }

    /// A new setup, after checking on a few flows that each costs a translation and a megaflow
    /// install (never finds an earlier megaflow).
    fn checked(rules: usize) -> Self {
        let mut s = Self::new(rules);
        s.run(100);
        let (w, n) = (s.slow.writer(), &s.slow.counters);
        assert_eq!((w.megaflow_count(), n.megaflows_installed, n.upcalls_existing), (100, 100, 0));
        let hits_rule = w.records().all(|r| r.translation.drop.is_none());
        assert_eq!(hits_rule, rules > 1, "only the 1-rule table leaves the flows unmatched");
        s
    }

    fn fresh(rules: usize) -> SlowPath {
        SlowPath::new(setup_rules(rules), TablesWriter::new(SETUP_CAPACITY, SETUP_CAPACITY, 1), 0)
    }

    /// Sets up `count` new flows (with room for all of them); returns the time it took.
    fn run(&mut self, count: u64) -> Duration {
        let start = Instant::now();
        for _ in 0..count {
            self.serial += 1;
            let key = new_flow(self.serial);
            // (The PMD hands over the hash; computing it here adds a few ns per flow.)
            let d = self.slow.decide(&key, hash_key(&key), 64, self.serial);
            self.slow.commit(d);
        }
        start.elapsed()
    }

    /// Sets up `iters` new flows, rebuilding the tables whenever they are full; returns only
    /// the time spent setting up flows.
    fn timed(&mut self, iters: u64) -> Duration {
        let mut total = Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            let room = (SETUP_CAPACITY - self.slow.writer().megaflow_count()) as u64;
            if room == 0 {
                self.slow = Self::fresh(self.rules);
                continue;
            }
            let n = left.min(room);
            total += self.run(n);
            left -= n;
        }
        total
    }
}

fn flow_setup(c: &mut Criterion) {
    let mut g = c.benchmark_group("flow_setup");
    g.throughput(Throughput::Elements(1));
    for rules in [1, 100] {
        let mut setup = None;
        g.bench_function(BenchmarkId::new("new_flows", format!("{rules}_rules")), |b| {
            let s = setup.get_or_insert_with(|| FlowSetup::checked(rules));
            b.iter_custom(|iters| s.timed(iters))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    // Quick by default (the whole run takes a couple of minutes); override on the command line.
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = flow_cache, megaflows, flow_setup
}
criterion_main!(benches);
