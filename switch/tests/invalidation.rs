//! Rule changes against concurrent fast-path readers (no DPDK): once `SlowPath::with_rules`
//! returns, no PMD may act on a decision the change made obsolete.
//!
//! Reader threads play PMDs: each pass they announce a QSBR quiescent point, refresh their
//! subtable view, load the published rule generation, look a fixed set of flow keys up (flow cache
//! batch, then megaflows, asking for cache promotion on a megaflow hit), read and decode the
//! actions, and hand misses to the control thread over bounded queues without ever waiting. The
//! control thread owns the `SlowPath`: it serves misses (decide, then commit) and promotions, and
//! keeps changing the rules: a base rule's rewrite and output port, and a higher-priority rule
//! that is added, modified and removed (expired), so megaflows go away both because their actions
//! changed and because their masks no longer cover what the rules look at. After each
//! `with_rules` returns it publishes the new generation.
//!
//! Every rule version rewrites `nw_dst` to an address naming the generation it was written in, so
//! the decision each key must get at each generation is known exactly ([`expected`], checked
//! against the real translation after every change). A reader that loaded generation `g0` before
//! its lookups and `g1` after must see, for every hit, the decision of some generation in
//! `g0..=g1`: one older than `g0` means a megaflow or cache entry outlived the rule change that
//! revalidation had already completed. Runs for `FERROVS_STRESS_SECS` seconds (default 20).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use etherparse::PacketBuilder;
use ferrovs_config::flow::{FlowKey, OfPort, PortMap, parse_flow};
use ferrovs_switch::cache::hash_key;
use ferrovs_switch::control::SlowPath;
use ferrovs_switch::fastpath::actions::{decode, drop_reason, encode_translation};
use ferrovs_switch::fastpath::{
    ACTION_WORDS, ActionWords, FlowTables, MAX_SUBTABLES, MegaflowRef, SubtableView, TablesWriter,
};
use ferrovs_switch::ofproto::{DpAction, Ofproto, PortTable, Translation, XlateOptions, translate};
use ferrovs_switch::packet::{PortIdx, SetField, extract};
use ferrovs_switch::stats::DropReason;

/// PMD-like reader threads (with the control thread, one more thread than CI machines have CPUs).
const READERS: usize = 2;
/// Misses each reader may have waiting for the control thread.
const UPCALL_QUEUE: usize = 256;
/// Longest the control thread waits for every reader to hit after a change.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to run: FERROVS_STRESS_SECS (default 20), as the cuckoo map's stress test.
fn stress_duration() -> Duration {
    let secs = std::env::var("FERROVS_STRESS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(20.0);
    Duration::from_secs_f64(secs)
}

/// Ports p0..p3 numbered 1..4 (indices 0..3).
struct Ports;
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

/// What decides a key's fate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// UDP from p0 to a port in 0x1000/0xf000: the high-priority rule H when present, else B.
    High,
    /// Other IP traffic from p0: the base rule B.
    Base,
    /// From p1: no rule matches.
    Unmatched,
}
const CLASSES: [Class; 3] = [Class::High, Class::Base, Class::Unmatched];

/// The rules in force at generation `g`: the version of B, and of H if present. A cycle of six
/// changes: B changes, H is added, B changes, H changes, H is removed, B changes.
fn state(g: u64) -> (u64, Option<u64>) {
    let (c, base) = (g % 6, g - g % 6);
    let b = match c {
        0 | 1 => base,
        2..=4 => base + 2,
        _ => base + 5,
    };
    let h = match c {
        1 | 2 => Some(base + 1),
        3 => Some(base + 3),
        _ => None,
    };
    (b, h)
}

/// The address a rule version writes: `net`.v (24 bits of v).
fn addr(net: u32, v: u64) -> u32 {
    assert!(v < 1 << 24, "generation {v} does not fit an address");
    (net << 24) | v as u32
}

fn dotted(a: u32) -> String {
    std::net::Ipv4Addr::from(a).to_string()
}

fn rule_b(v: u64) -> String {
    format!("priority=10,ip,in_port=p0,actions=mod_nw_dst:{},output:p{}", dotted(addr(10, v)), 1 + v % 2)
}

/// H has a hard timeout only so that `Ofproto::expire` can remove it (there is no delete).
fn rule_h(v: u64) -> String {
    format!(
        "priority=20,hard_timeout=1,udp,in_port=p0,tp_dst=0x1000/0xf000,actions=mod_nw_dst:{},output:p3",
        dotted(addr(11, v))
    )
}

/// The translation a key of `class` must get under the rules of generation `g`.
fn expected(g: u64, class: Class) -> Translation {
    let (b, h) = state(g);
    let mut t = Translation::default();
    let (dst, port) = match (class, h) {
        (Class::Unmatched, _) => {
            t.drop = Some(DropReason::NoMatch);
            return t;
        }
        (Class::High, Some(h)) => (addr(11, h), 3),
        _ => (addr(10, b), 1 + (b % 2) as u16),
    };
    t.actions.push(DpAction::Set(SetField::Ipv4Dst(dst)));
    t.actions.push(DpAction::Output(PortIdx(port)));
    t
}

fn words_of(t: &Translation) -> Vec<u64> {
    let mut w = Vec::new();
    encode_translation(t, &mut w);
    w
}

/// Datapath actions as text (`ipv4_dst=10.0.0.7,output:p2`).
fn show(actions: &[DpAction]) -> String {
    let one = |a: &DpAction| match a {
        DpAction::Output(p) => format!("output:p{}", p.0),
        DpAction::Set(f) => f.to_string(),
        other => format!("{other:?}"),
    };
    actions.iter().map(one).collect::<Vec<_>>().join(",")
}

fn show_words(words: &[u64]) -> String {
    if let Some(reason) = drop_reason(words) {
        return format!("drop ({})", reason.name());
    }
    let mut actions = Vec::new();
    let mut at = 0;
    while let Some((a, n)) = decode(&words[at..]) {
        actions.push(a);
        at += n;
    }
    show(&actions)
}

/// The flow keys every reader looks up, with their class.
fn keys() -> Vec<(FlowKey, Class)> {
    let udp = |sport: u16, dport: u16| {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([192, 168, 0, 1], [192, 168, 0, 2], 64)
            .udp(sport, dport);
        let mut f = Vec::new();
        b.write(&mut f, &[0; 18]).unwrap();
        f
    };
    let tcp = |sport: u16| {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([192, 168, 0, 1], [192, 168, 1, 9], 64)
            .tcp(sport, 80, 1, 1000);
        let mut f = Vec::new();
        b.write(&mut f, &[0; 6]).unwrap();
        f
    };
    let mut out = Vec::new();
    for i in 0..20u16 {
        out.push((extract(&udp(2000 + i, 0x1000 + i * 181), 1).0, Class::High));
        out.push((extract(&udp(3000 + i, 53 + i), 1).0, Class::Base));
    }
    for i in 0..8u16 {
        out.push((extract(&tcp(4000 + i), 1).0, Class::Base));
    }
    for i in 0..4u16 {
        out.push((extract(&udp(5000 + i, 0x1000 + i), 2).0, Class::Unmatched));
    }
    assert!(out.len() <= 64, "one lookup batch");
    out
}

/// What the readers and the control thread share.
struct Shared {
    tables: std::sync::Arc<FlowTables>,
    keys: Vec<(FlowKey, Class)>,
    hashes: Vec<u64>,
    /// The last generation whose rule change has returned.
    generation: AtomicU64,
    stop: AtomicBool,
    /// The first reader failure.
    failure: Mutex<Option<String>>,
    upcalls: Vec<ArrayQueue<(FlowKey, u64)>>,
    promotions: Vec<ArrayQueue<(FlowKey, u64, MegaflowRef)>>,
    /// Per reader and class (High, Base): the newest generation loaded before a pass that hit a
    /// key of that class (+1, so 0 means never).
    hit_after: Vec<[AtomicU64; 2]>,
}

impl Shared {
    fn fail(&self, message: String) {
        self.failure.lock().unwrap().get_or_insert(message);
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What one reader did.
#[derive(Debug, Default, Clone, Copy)]
struct ReaderCounts {
    passes: u64,
    lookups: u64,
    cache_hits: u64,
    megaflow_hits: u64,
    /// Hits whose megaflow was removed between the lookup and reading its actions.
    removed_meanwhile: u64,
    misses: u64,
    queue_full: u64,
}

/// Goes offline when the reader ends, even by panicking (else the control thread would wait for
/// it forever in a grace period).
struct Offline<'a>(&'a Shared, usize);
impl Drop for Offline<'_> {
    fn drop(&mut self) {
        self.0.tables.qsbr().offline(self.1);
        if std::thread::panicking() {
            self.0.fail(format!("reader {} panicked", self.1));
        }
    }
}

fn reader(s: &Shared, id: usize) -> ReaderCounts {
    let tables: &FlowTables = &s.tables;
    let qsbr = tables.qsbr();
    qsbr.online(id);
    let _offline = Offline(s, id);
    let n = s.keys.len();
    let keys: Vec<FlowKey> = s.keys.iter().map(|(k, _)| *k).collect();
    let mut view = SubtableView::default();
    let mut found = [None; 64];
    let mut words = ActionWords { words: [0; ACTION_WORDS], len: 0 };
    let mut decided: Vec<(usize, ActionWords)> = Vec::with_capacity(n);
    let mut want: Vec<(u64, [Vec<u64>; 3])> = Vec::new();
    let mut c = ReaderCounts::default();
    while !s.stop.load(Ordering::Relaxed) {
        // As a PMD's loop: nothing from the previous pass is held any more.
        qsbr.quiesce(id);
        tables.refresh(&mut view);
        let g0 = s.generation.load(Ordering::Acquire);
        tables.cache_lookup_batch(&keys, &s.hashes, &mut found[..n]);
        decided.clear();
        for i in 0..n {
            if found[i].is_some() {
                c.cache_hits += 1;
            } else if let Some(mf) = tables.megaflow_lookup(&view, &keys[i]) {
                found[i] = Some(mf);
                c.megaflow_hits += 1;
                let _ = s.promotions[id].push((keys[i], s.hashes[i], mf));
            }
            let hit = found[i].is_some_and(|mf| tables.actions(mf, &mut words));
            if hit {
                decided.push((i, ActionWords { words: words.words, len: words.len }));
                continue;
            }
            if found[i].is_some() {
                c.removed_meanwhile += 1;
            }
            c.misses += 1;
            if s.upcalls[id].push((keys[i], s.hashes[i])).is_err() {
                c.queue_full += 1;
            }
        }
        let g1 = s.generation.load(Ordering::Acquire);
        c.passes += 1;
        c.lookups += n as u64;

        // Every decision must be that of a generation in g0..=g1.
        want.retain(|(g, _)| (g0..=g1).contains(g));
        for g in g0..=g1 {
            if !want.iter().any(|(w, _)| *w == g) {
                want.push((g, CLASSES.map(|class| words_of(&expected(g, class)))));
            }
        }
        let mut hit_classes = [false; 2];
        for (i, got) in &decided {
            let class = s.keys[*i].1;
            let ci = CLASSES.iter().position(|c| *c == class).unwrap();
            if !want.iter().any(|(_, w)| w[ci] == got.as_slice()) {
                s.fail(describe_stale(*i, class, got.as_slice(), g0, g1));
                return c;
            }
            if ci < 2 {
                hit_classes[ci] = true;
            }
        }
        for (ci, hit) in hit_classes.iter().enumerate() {
            if *hit {
                s.hit_after[id][ci].fetch_max(g0 + 1, Ordering::Relaxed);
            }
        }
        // Unlike a PMD, let others run: there are more threads than CPUs, and a preempted spinning
        // reader would hold up the control thread's grace periods by a whole time slice.
        std::thread::yield_now();
    }
    c
}

/// The failure message for a decision that belongs to no generation in `g0..=g1`.
fn describe_stale(i: usize, class: Class, got: &[u64], g0: u64, g1: u64) -> String {
    let of = (0..=g1).rev().find(|&g| words_of(&expected(g, class)) == got);
    let which = match of {
        Some(g) => format!("the decision of generation {g}, older than generation {g0}"),
        None => "the decision of no generation at all".to_string(),
    };
    format!(
        "stale fast-path decision: key {i} ({class:?}) got {}, {which}, which the reader loaded before its \
         lookups (so its rule change had returned; {g1} after them); generation {g0} says {}",
        show_words(got),
        show_words(&words_of(&expected(g0, class)))
    )
}

/// Moves the rules from generation `g - 1` to `g`.
fn change(o: &mut Ofproto, g: u64) {
    let ((b0, h0), (b1, h1)) = (state(g - 1), state(g));
    if b0 != b1 {
        o.add(parse_flow(&rule_b(b1), &Ports).unwrap(), 0).unwrap();
    }
    match (h0, h1) {
        (_, Some(v)) if h0 != h1 => o.add(parse_flow(&rule_h(v), &Ports).unwrap(), 0).unwrap(),
        (Some(_), None) => assert_eq!(o.expire(u64::MAX, 1).len(), 1, "H expires"),
        _ => {}
    }
}

/// Serves what the readers queued: misses (decide, then commit, as the control core does after
/// sending the packet) and cache promotions. Returns how many.
fn serve(slow: &mut SlowPath, s: &Shared) -> usize {
    let mut n = 0;
    for q in &s.upcalls {
        while let Some((key, hash)) = q.pop() {
            let d = slow.decide(&key, hash, 60, 0);
            slow.commit(d);
            n += 1;
        }
    }
    for q in &s.promotions {
        while let Some((key, hash, mf)) = q.pop() {
            slow.promote(&key, hash, mf);
            n += 1;
        }
    }
    n
}

/// The control thread: changes the rules until `deadline`, each time once every reader has hit
/// keys of both rule-dependent classes under the current generation. Returns how many changes.
fn control(slow: &mut SlowPath, s: &Shared, deadline: Instant) -> Result<u64, String> {
    let mut g = 0;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    while Instant::now() < deadline {
        // Dwell: serve until every reader hit both classes after the change, then a random while
        // longer (0 to 500 µs) so that some changes land on settled tables and some mid-storm.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let extra = Duration::from_micros(if rng % 3 == 0 { 0 } else { rng % 500 });
        let since = Instant::now();
        let mut settled: Option<Instant> = None;
        loop {
            if s.stop.load(Ordering::Relaxed) {
                return Err("a reader failed".into());
            }
            serve(slow, s);
            let all_hit = s.hit_after.iter().all(|r| r.iter().all(|h| h.load(Ordering::Relaxed) > g));
            match settled {
                None if all_hit => settled = Some(Instant::now()),
                Some(t) if t.elapsed() >= extra => break,
                _ => {}
            }
            if since.elapsed() > PROGRESS_TIMEOUT {
                let hits: Vec<[u64; 2]> =
                    s.hit_after.iter().map(|r| r.each_ref().map(|h| h.load(Ordering::Relaxed))).collect();
                let w = slow.writer();
                let masks = w.subtable_count();
                let hint = if slow.counters.install_too_many_masks > 0 && masks < MAX_SUBTABLES {
                    format!(
                        "; megaflows were refused for want of a mask slot with only {masks} of {MAX_SUBTABLES} \
                         masks in use (see dropped_masks_free_their_subtable_slots)"
                    )
                } else {
                    String::new()
                };
                return Err(format!(
                    "readers made no hits in generation {g} for {PROGRESS_TIMEOUT:?} (per reader and class, newest \
                     generation + 1 with a hit: {hits:?}); {} megaflows, {masks} masks, {} cache entries; {:?}{hint}",
                    w.megaflow_count(),
                    w.cache_len(),
                    slow.counters
                ));
            }
            std::hint::spin_loop();
        }
        g += 1;
        slow.with_rules(|o| change(o, g));
        // The model must be what the rules really do.
        for (key, class) in &s.keys {
            let mut t = Translation::default();
            translate(slow.ofproto().tables(), slow.ofproto().ports(), key, XlateOptions::default(), &mut t);
            let want = expected(g, *class);
            if t != want {
                return Err(format!("test model wrong at generation {g} for {class:?}: {t:?}, model {want:?}"));
            }
        }
        s.generation.store(g, Ordering::Release);
    }
    Ok(g)
}

#[test]
fn fast_path_never_uses_a_decision_older_than_a_completed_rule_change() {
    let mut ofproto = Ofproto::new(std::sync::Arc::new(PortTable::new(vec![1, 2, 3, 4])), 1);
    ofproto.add(parse_flow(&rule_b(state(0).0), &Ports).unwrap(), 0).unwrap();
    // Room for many more megaflows than ever live at once, as in the switch (so nothing relies on
    // the writer running out of free ids to reclaim what readers no longer see).
    let writer = TablesWriter::new(4096, 1 << 16, READERS);
    let keys = keys();
    let shared = Shared {
        tables: std::sync::Arc::clone(writer.tables()),
        hashes: keys.iter().map(|(k, _)| hash_key(k)).collect(),
        keys,
        generation: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        failure: Mutex::new(None),
        upcalls: (0..READERS).map(|_| ArrayQueue::new(UPCALL_QUEUE)).collect(),
        promotions: (0..READERS).map(|_| ArrayQueue::new(UPCALL_QUEUE)).collect(),
        hit_after: (0..READERS).map(|_| [AtomicU64::new(0), AtomicU64::new(0)]).collect(),
    };
    let mut slow = SlowPath::new(ofproto, writer, 0);
    let started = Instant::now();
    let (result, counts) = std::thread::scope(|scope| {
        let shared = &shared;
        let readers: Vec<_> = (0..READERS).map(|id| scope.spawn(move || reader(shared, id))).collect();
        let result = control(&mut slow, shared, started + stress_duration());
        shared.stop.store(true, Ordering::Relaxed);
        let counts: Vec<ReaderCounts> = readers.into_iter().map(|r| r.join().unwrap_or_default()).collect();
        (result, counts)
    });
    if let Some(failure) = shared.failure.lock().unwrap().take() {
        panic!("{failure}");
    }
    let changes = result.unwrap_or_else(|e| panic!("{e}"));

    let secs = started.elapsed().as_secs_f64();
    let sum = |f: fn(&ReaderCounts) -> u64| counts.iter().map(f).sum::<u64>();
    let (lookups, misses) = (sum(|c| c.lookups), sum(|c| c.misses));
    let hits = sum(|c| c.cache_hits) + sum(|c| c.megaflow_hits);
    let sc = slow.counters;
    eprintln!(
        "invalidation: {changes} rule changes in {secs:.1} s; readers {lookups} lookups, {} cache hits, {} megaflow \
         hits, {} removed between lookup and actions, {misses} misses ({} queue full); slow path {} upcalls, {} \
         megaflows installed, {} revalidated away, {} cache promotions",
        sum(|c| c.cache_hits),
        sum(|c| c.megaflow_hits),
        sum(|c| c.removed_meanwhile),
        sum(|c| c.queue_full),
        sc.upcalls,
        sc.megaflows_installed,
        sc.megaflows_revalidated_away,
        sc.cache_promotions,
    );
    // Progress: every reader hit keys of both classes after each change (the control thread
    // waited for it), and the work was substantial.
    assert!(changes >= 100, "only {changes} rule changes");
    assert!(counts.iter().all(|c| c.passes > 1000), "a reader barely ran: {counts:?}");
    assert!(lookups > 1_000_000 && hits > lookups / 2, "{lookups} lookups, {hits} hits");
    assert!(sc.megaflows_revalidated_away >= changes, "revalidation removed only {}", sc.megaflows_revalidated_away);
    assert!(sc.cache_promotions > 0 && sum(|c| c.cache_hits) > 0, "the flow cache was not exercised");
}

/// Revalidation drops a megaflow mask (subtable) with its last megaflow, as happens whenever rules
/// with masks of their own come and go. There are `MAX_SUBTABLES` slots: a dropped one must be
/// usable again after a grace period, or after that many drops no new mask can be installed and
/// every flow that needs one stays on the slow path for good.
#[test]
fn dropped_masks_free_their_subtable_slots() {
    let mut w = TablesWriter::new(64, 1024, 1);
    let (key, _) = keys()[0];
    let mut mask = FlowKey::ZERO;
    mask.set_word(0, u64::MAX);
    let mut out = Translation::default();
    out.actions.push(DpAction::Output(PortIdx(1)));
    for round in 0..2 * MAX_SUBTABLES {
        let mf = w.install(&key, &mask, out.clone(), Default::default()).unwrap_or_else(|e| {
            panic!("install {round} after as many removals: {e} (masks in use: {})", w.subtable_count())
        });
        w.remove(mf.id);
        w.synchronize();
    }
}
