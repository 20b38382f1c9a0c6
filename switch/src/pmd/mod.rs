//! The PMD (poll-mode driver) thread: one per PMD core, busy-polling its receive queues.
//!
//! Each pass of the loop has one fixed shape: announce a quiescent point, then for each receive
//! queue take a burst and run it through the stages, each over the whole burst so memory loads
//! overlap: parse every packet, hash every key (the NIC's RSS hash when the port gives one),
//! prefetch the flow cache buckets, look every key up in the flow cache, look the misses up in
//! the megaflow table, hand what is left to the control core, then execute the actions once per
//! megaflow group into per-port transmit buffers. After all queues, flush the transmit buffers.
//! Every `HOUSEKEEPING_EVERY` passes it publishes its counters and checks the stop flag. Nothing in
//! the loop allocates, locks (except a shared transmit queue, once per burst), logs or calls the OS.

mod backoff;
pub mod exec;
mod group;
mod hold;
mod inflight;
mod share;
mod tx;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrayvec::ArrayVec;
use ferrovs_config::flow::{FlowKey, OfPort, VLAN_CFI};

pub use tx::TxBuffer;

use crate::cache::hash_key;
use crate::control::{PmdQueues, Promotion, TokenBucket, Upcall};
use crate::dpdk::{Burst, MAX_BURST, Mbuf, RxQueue, rdtsc};
use crate::fastpath::actions::{decode, drop_reason};
use crate::fastpath::{ACTION_WORDS, ActionWords, FlowTables, MegaflowRef, SIMPLE_MODE_FLOWS, SubtableView};
use crate::ofproto::DpAction;
use crate::packet::{Layout, PacketInfo, PortIdx, extract_to};
use crate::stats::{DropReason, PmdCounters, PublishedCounters};
use backoff::MissBackoff;
use group::Groups;
use hold::{Held, Hold};
use inflight::InFlight;
use share::CycleShare;

/// Loop passes between two housekeeping steps (publish counters, check for stop).
const HOUSEKEEPING_EVERY: u64 = 64;

/// What a PMD shares with the control thread.
#[derive(Debug, Default)]
pub struct PmdShared {
    /// The PMD's latest counters.
    pub counters: PublishedCounters,
    stop: AtomicBool,
}

impl PmdShared {
    /// Asks the PMD to finish its pass, flush, publish and return.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

/// One receive queue as a PMD polls it.
pub struct PolledRxq {
    /// The queue.
    pub queue: RxQueue,
    /// The port it belongs to.
    pub port: PortIdx,
    /// That port's OpenFlow number (what flow keys carry).
    pub ofport: OfPort,
}

/// A PMD thread's state: its queues, transmit buffers, the fast-path tables and its view of them.
pub struct Pmd {
    id: usize,
    rxqs: Vec<PolledRxq>,
    /// Per receive queue: whether it waits for room at the control core before it is polled.
    backoff: Vec<MissBackoff>,
    /// Per receive queue: its share of the PMD's cycles.
    shares: Vec<CycleShare>,
    /// Per receive queue: whether it had packets when last polled.
    had_packets: Vec<bool>,
    tx: Vec<TxBuffer>,
    tables: Arc<FlowTables>,
    view: SubtableView,
    queues: Arc<PmdQueues>,
    limiter: TokenBucket,
    inflight: InFlight,
    held: Hold,
    burst_size: usize,
    shared: Arc<PmdShared>,
    counters: PmdCounters,
    stage: Box<Stage>,
}

/// Per-burst scratch, allocated once per PMD (re-initialising it per burst would cost more than
/// some stages).
struct Stage {
    keys: [FlowKey; MAX_BURST],
    layouts: [Layout; MAX_BURST],
    hashes: [u64; MAX_BURST],
    /// Keys under a megaflow mask.
    masked: [FlowKey; MAX_BURST],
    /// One key per run of packets of the same flow (see `lookup_tiered`).
    run_keys: [FlowKey; MAX_BURST],
    found: [Option<MegaflowRef>; MAX_BURST],
    pkts: [Option<Mbuf>; MAX_BURST],
}

/// A flow's hash from the NIC's RSS hash of its 5-tuple: spread over 64 bits, port mixed in.
#[inline(always)]
fn rss_flow_hash(rss: u32, in_ofport: OfPort) -> u64 {
    (u64::from(rss) ^ (u64::from(in_ofport) << 32)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// A megaflow's actions, fetched and decoded once for a group of packets.
struct MegaflowActions {
    /// The megaflow was removed since the lookup.
    removed: bool,
    /// Its actions drop the packet, for this reason.
    drop: Option<DropReason>,
    actions: ArrayVec<DpAction, ACTION_WORDS>,
    /// The common case, a single output: no rewriting, no copies.
    single: Option<PortIdx>,
}

impl MegaflowActions {
    #[inline(always)]
    fn fetch(tables: &FlowTables, mf: MegaflowRef, words: &mut ActionWords) -> Self {
        let removed = !tables.actions(mf, words);
        let drop = drop_reason(words.as_slice());
        let mut actions: ArrayVec<DpAction, ACTION_WORDS> = ArrayVec::new();
        if !removed && drop.is_none() {
            let mut at = 0;
            while let Some((a, used)) = decode(&words.as_slice()[at..]) {
                actions.push(a);
                at += used;
            }
        }
        let single = match actions.as_slice() {
            [DpAction::Output(p)] => Some(*p),
            _ => None,
        };
        Self { removed, drop, actions, single }
    }

    /// Runs the actions on `pkt` (of a megaflow still installed), counted.
    #[inline(always)]
    fn deliver(
        &self,
        pkt: Mbuf,
        key: &FlowKey,
        layout: Layout,
        tx: &mut [TxBuffer],
        counters: &mut PmdCounters,
        dropped: &mut Burst,
    ) {
        if let Some(reason) = self.drop {
            counters.drops.add(reason, 1);
            let _ = dropped.push(pkt);
            return;
        }
        counters.forwarded += 1;
        if let Some(p) = self.single {
            tx[p.index()].push(pkt, counters);
            return;
        }
        let info = PacketInfo {
            dl_type: key.dl_type(),
            nw_proto: key.nw_proto(),
            vlan: key.vlan_tci() & VLAN_CFI != 0,
            layout,
        };
        exec::execute(pkt, info, &self.actions, tx, counters, dropped);
    }
}

impl Stage {
    /// Packet `i`'s flow hash. The single-mask lookup leaves it at 0 (not computed) unless the
    /// NIC gave one: only packets that go to the control core, or check for elders there, need it.
    #[inline]
    fn hash_of(&mut self, i: usize) -> u64 {
        if self.hashes[i] == 0 {
            self.hashes[i] = hash_key(&self.keys[i]);
        }
        self.hashes[i]
    }
}

impl Pmd {
    /// PMD number `id` (its QSBR reader and counter slot) polling `rxqs`, transmitting through
    /// `tx` (one buffer per port, by port index), forwarding by `tables`, handing misses to the
    /// control core through `queues` at most `upcall_rate` per second (0: unlimited).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: usize,
        rxqs: Vec<PolledRxq>,
        tx: Vec<TxBuffer>,
        tables: Arc<FlowTables>,
        queues: Arc<PmdQueues>,
        upcall_rate: u64,
        burst_size: usize,
        shared: Arc<PmdShared>,
    ) -> Self {
        let ports = tx.len();
        Self {
            id,
            backoff: vec![MissBackoff::default(); rxqs.len()],
            shares: vec![CycleShare::default(); rxqs.len()],
            had_packets: vec![false; rxqs.len()],
            rxqs,
            tx,
            tables,
            view: SubtableView::default(),
            queues,
            limiter: TokenBucket::new(upcall_rate, crate::dpdk::tsc_hz()),
            inflight: InFlight::new(ports),
            held: Hold::default(),
            burst_size: burst_size.clamp(1, MAX_BURST),
            shared,
            counters: PmdCounters::default(),
            stage: Box::new(Stage {
                keys: [FlowKey::ZERO; MAX_BURST],
                layouts: [Layout::NONE; MAX_BURST],
                hashes: [0; MAX_BURST],
                masked: [FlowKey::ZERO; MAX_BURST],
                run_keys: [FlowKey::ZERO; MAX_BURST],
                found: [None; MAX_BURST],
                pkts: [const { None }; MAX_BURST],
            }),
        }
    }

    /// Polls until asked to stop; returns the final counters. Runs on the PMD's lcore.
    pub fn run(mut self) -> PmdCounters {
        let qsbr = Arc::clone(self.tables.qsbr());
        qsbr.online(self.id);
        let mut last = rdtsc();
        loop {
            // Nothing from the previous pass is held any more.
            qsbr.quiesce(self.id);
            self.tables.refresh(&mut self.view);
            let mut received = 0;
            // Cycles are shared out only while queues compete for them (two or more had packets
            // when last polled); otherwise a burst a queue a pass, without the clock reads.
            let contended = self.had_packets.iter().filter(|&&h| h).count() > 1;
            for q in 0..self.rxqs.len() {
                self.shares[q].earn();
                let mut got = 0;
                let mut polled = false;
                // Bursts while the queue has cycles left this pass and packets waiting.
                loop {
                    // Room for a burst, or for all the rate limit ever grants at once.
                    let wanted = self.burst_size.min(self.limiter.capacity());
                    if (contended && !self.shares[q].may_poll())
                        || !self.backoff[q].poll_now(|| self.upcall_room(), wanted)
                    {
                        self.counters.rxq_skips += 1;
                        break;
                    }
                    let started = contended.then(rdtsc);
                    let n = self.poll_queue(q);
                    if let Some(started) = started {
                        self.shares[q].pay(rdtsc() - started);
                    }
                    got += n;
                    polled = true;
                    if !contended || n < self.burst_size {
                        break;
                    }
                }
                received += got;
                if polled {
                    self.had_packets[q] = got > 0;
                }
            }
            if received == 0 && !self.held.is_empty() {
                self.release_held_now(self.queues.handled.load(Ordering::Acquire));
            }
            for buf in &mut self.tx {
                buf.flush(&mut self.counters);
            }
            let now = rdtsc();
            let c = &mut self.counters;
            if received > 0 {
                c.busy_cycles += now - last;
            } else {
                c.idle_cycles += now - last;
            }
            last = now;
            c.iterations += 1;
            if c.iterations % HOUSEKEEPING_EVERY == 0 {
                self.shared.counters.publish(c);
                if self.shared.should_stop() {
                    break;
                }
            }
        }
        // Whatever is still held leaves now: the control core no longer runs to send its elders.
        self.release_held_now(u64::MAX);
        for buf in &mut self.tx {
            buf.flush(&mut self.counters);
        }
        qsbr.offline(self.id);
        self.shared.counters.publish(&self.counters);
        self.counters
    }

    /// Receives a burst from receive queue `q` and forwards it; returns its size.
    #[inline(always)]
    fn poll_queue(&mut self, q: usize) -> usize {
        let mut burst = Burst::new();
        let n = self.rxqs[q].queue.recv(&mut burst, self.burst_size);
        if n == 0 {
            return 0;
        }
        let (port, ofport) = (self.rxqs[q].port, self.rxqs[q].ofport);
        let shed_before = self.shed();
        self.process(&mut burst, port, ofport);
        let shed = (self.shed() - shed_before) as usize;
        self.backoff[q].after_burst(n, shed);
        n
    }

    /// How many more misses the control core would take now: free upcall queue slots, and the
    /// rate limit's tokens.
    fn upcall_room(&self) -> usize {
        let q = &self.queues.upcalls;
        let free = q.capacity() - q.len();
        free.min(self.limiter.available(rdtsc()))
    }

    /// Misses dropped so far because the control core had no room for them.
    #[inline]
    fn shed(&self) -> u64 {
        let d = &self.counters.drops;
        d.get(DropReason::UpcallQueueFull) + d.get(DropReason::UpcallRateLimited)
    }

    /// Releases the held packets whose elders are among the `handled` upcalls (outside a burst).
    fn release_held_now(&mut self, handled: u64) {
        let Self { id, tx, tables, queues, limiter, inflight, held, counters, .. } = self;
        let mut up = Upcaller { queues, limiter, inflight, handled };
        Self::release_held(held, *id, tables, tx, &mut up, counters);
    }

    /// Forwards one received burst, stage by stage.
    #[inline]
    fn process(&mut self, burst: &mut Burst, port: PortIdx, in_ofport: OfPort) {
        let Self { id, tx, tables, view, queues, limiter, inflight, held, counters, stage, .. } = self;
        let s: &mut Stage = stage;
        let tables: &FlowTables = tables;
        let handled = queues.handled.load(Ordering::Acquire);
        let mut up = Upcaller { queues, limiter, inflight, handled };
        // Held packets whose elders have left go first, with the same `handled` this burst sees.
        Self::release_held(held, *id, tables, tx, &mut up, counters);
        counters.rx_packets += burst.len() as u64;
        counters.batches += 1;
        // Frames larger than one buffer arrive as mbuf chains; parsing and rewrites assume one.
        let chained = burst.drop_chained();
        if chained > 0 {
            counters.drops.add(DropReason::Oversize, chained as u64);
        }
        let n = burst.len();

        // Bring every packet's headers in, parse them all, then hash them all and prefetch each
        // key's cache buckets (separate passes: a key is read back only after its stores settled).
        for pkt in burst.as_slice() {
            pkt.prefetch_data();
        }
        for (i, pkt) in burst.as_slice().iter().enumerate() {
            extract_to(pkt.data(), in_ofport, &mut s.keys[i], &mut s.layouts[i]);
        }

        if let [only] = view.list.as_slice()
            && tables.cache_len_hint() > SIMPLE_MODE_FLOWS
        {
            // One megaflow mask (say, rules on in_port only) and more flows than the CPU caches
            // hold: a megaflow probe hashes a word or two and touches no per-flow state, so it
            // beats the exact cache; skip that tier.
            // Back-to-back packets with one masked key (runs of one flow, or flows of one wide
            // megaflow) are looked up once.
            tables.megaflow_lookup_batch_in(only, &s.keys[..n], &mut s.masked[..n], &mut s.found[..n]);
            // Key hashes are computed later for the few packets that need one (0: not yet).
            for (h, pkt) in s.hashes.iter_mut().zip(burst.as_slice()) {
                *h = pkt.rss_hash().map_or(0, |rss| rss_flow_hash(rss, in_ofport));
            }
            counters.megaflow_hits += s.found[..n].iter().filter(|f| f.is_some()).count() as u64;
        } else {
            Self::lookup_tiered(s, burst, n, in_ofport, tables, view, &mut up, counters);
        }

        for (slot, pkt) in s.pkts.iter_mut().zip(burst.drain()) {
            *slot = Some(pkt);
        }
        let mut dropped = Burst::new(); // freed in bulk when this function returns
        let now = rdtsc();

        // Tier 3: the control core, for what neither table knew.
        for i in 0..n {
            if s.found[i].is_none()
                && let Some(pkt) = s.pkts[i].take()
            {
                let hash = s.hash_of(i);
                up.send(counters, pkt, port, &s.keys[i], s.layouts[i], hash, now, &mut dropped);
            }
        }
        Self::execute_groups(s, n, port, *id, tables, tx, &mut up, held, counters, &mut dropped, now);
    }

    /// Tiers 1 and 2: hash every key, look the batch up in the exact cache, then the misses in
    /// the megaflow table (a hit there asks the control core for a cache entry).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn lookup_tiered(
        s: &mut Stage,
        burst: &Burst,
        n: usize,
        in_ofport: OfPort,
        tables: &FlowTables,
        view: &SubtableView,
        up: &mut Upcaller<'_>,
        counters: &mut PmdCounters,
    ) {
        // Back-to-back packets of one flow (a bulk transfer's burst) are hashed and looked up
        // once per run; a packet costs one key comparison with its predecessor otherwise.
        let mut run_of = [0u8; MAX_BURST];
        let mut run_start = [0u8; MAX_BURST];
        let mut runs = 0;
        for (i, pkt) in burst.as_slice().iter().enumerate() {
            if i > 0 && s.keys[i] == s.keys[i - 1] {
                s.hashes[i] = s.hashes[i - 1];
                run_of[i] = run_of[i - 1];
                continue;
            }
            let hash = match pkt.rss_hash() {
                Some(rss) => rss_flow_hash(rss, in_ofport),
                None => hash_key(&s.keys[i]),
            };
            tables.prefetch_cache(hash);
            s.hashes[i] = hash;
            run_of[i] = runs as u8;
            run_start[runs] = i as u8;
            runs += 1;
        }

        // Tier 1: the exact-match flow cache.
        if runs == n {
            tables.cache_lookup_batch(&s.keys[..n], &s.hashes[..n], &mut s.found[..n]);
        } else {
            let mut run_hashes = [0u64; MAX_BURST];
            for r in 0..runs {
                let i = usize::from(run_start[r]);
                s.run_keys[r] = s.keys[i];
                run_hashes[r] = s.hashes[i];
            }
            let mut run_found = [None; MAX_BURST];
            tables.cache_lookup_batch(&s.run_keys[..runs], &run_hashes[..runs], &mut run_found[..runs]);
            for (f, &r) in s.found[..n].iter_mut().zip(&run_of[..n]) {
                *f = run_found[usize::from(r)];
            }
        }
        let cache_hits = s.found[..n].iter().filter(|f| f.is_some()).count();
        counters.cache_hits += cache_hits as u64;

        // Tier 2: the megaflow table, for the misses; a hit asks for a cache entry.
        if cache_hits < n {
            for i in 0..n {
                if s.found[i].is_some() {
                    continue;
                }
                if let Some(mf) = tables.megaflow_lookup(view, &s.keys[i]) {
                    s.found[i] = Some(mf);
                    counters.megaflow_hits += 1;
                    let _ = up.queues.promotions.push(Promotion { key: s.keys[i], hash: s.hashes[i], megaflow: mf });
                }
            }
        }
    }

    /// Executes the actions once per megaflow group; packets whose megaflow was removed since
    /// the lookup go to the control core, and packets whose flow still has older packets there
    /// are held until those have left.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn execute_groups(
        s: &mut Stage,
        n: usize,
        port: PortIdx,
        id: usize,
        tables: &FlowTables,
        tx: &mut [TxBuffer],
        up: &mut Upcaller<'_>,
        held: &mut Hold,
        counters: &mut PmdCounters,
        dropped: &mut Burst,
        now: u64,
    ) {
        let groups = Groups::build(&s.found[..n]);
        // Known once this burst's misses are queued: may hits have elders at the control core?
        let backlog = up.backlog(port);
        let mut words = ActionWords { words: [0; ACTION_WORDS], len: 0 };
        for g in 0..groups.len() {
            let (mf, members) = groups.get(g);
            let a = MegaflowActions::fetch(tables, mf, &mut words);
            let (mut packets, mut bytes) = (0u64, 0u64);
            // A member found with nothing in flight: later members of its flow have nothing
            // either (no member of this group is upcalled, and holding another flow's packet
            // puts only that flow in flight).
            let mut clear: Option<usize> = None;
            for &j in members {
                let j = usize::from(j);
                let Some(pkt) = s.pkts[j].take() else { continue };
                if a.removed {
                    // Removed since the lookup (a rule changed): let the slow path decide again.
                    let hash = s.hash_of(j);
                    up.send(counters, pkt, port, &s.keys[j], s.layouts[j], hash, now, dropped);
                    continue;
                }
                if backlog && a.drop.is_none() && clear.is_none_or(|c| s.keys[c] != s.keys[j]) {
                    let hash = s.hash_of(j);
                    if let Some(release) = up.wait_for(hash) {
                        let (key, layout) = (s.keys[j], s.layouts[j]);
                        let h = Held { pkt, port, key, layout, hash, megaflow: mf, release };
                        match held.push(h) {
                            Ok(release) => up.inflight.note_held(hash, port.index(), release, up.handled),
                            Err(pkt) => {
                                counters.drops.add(DropReason::OrderHoldFull, 1);
                                let _ = dropped.push(pkt);
                            }
                        }
                        continue;
                    }
                    clear = Some(j);
                }
                packets += 1;
                bytes += pkt.len() as u64;
                a.deliver(pkt, &s.keys[j], s.layouts[j], tx, counters, dropped);
            }
            if packets > 0 {
                tables.credit(id, mf.id, packets, bytes, now);
            }
        }
    }

    /// Sends the held packets whose elders the control core has handled (`up.handled`), before
    /// anything newer of their flows.
    #[inline]
    fn release_held(
        held: &mut Hold,
        id: usize,
        tables: &FlowTables,
        tx: &mut [TxBuffer],
        up: &mut Upcaller<'_>,
        counters: &mut PmdCounters,
    ) {
        if held.is_empty() {
            return;
        }
        let mut dropped = Burst::new();
        let mut words = ActionWords { words: [0; ACTION_WORDS], len: 0 };
        let now = rdtsc();
        held.release(up.handled, |h| {
            let a = MegaflowActions::fetch(tables, h.megaflow, &mut words);
            if a.removed {
                up.send(counters, h.pkt, h.port, &h.key, h.layout, h.hash, now, &mut dropped);
                return;
            }
            tables.credit(id, h.megaflow.id, 1, h.pkt.len() as u64, now);
            a.deliver(h.pkt, &h.key, h.layout, tx, counters, &mut dropped);
        });
    }
}

/// Hands packets to the control core.
struct Upcaller<'a> {
    queues: &'a PmdQueues,
    limiter: &'a mut TokenBucket,
    inflight: &'a mut InFlight,
    /// The control core's `handled` count for this PMD, read once per burst.
    handled: u64,
}

impl Upcaller<'_> {
    /// Hands a miss (or a packet whose megaflow was removed) to the control core, or drops it
    /// (rate limit, full queue), counted.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn send(
        &mut self,
        counters: &mut PmdCounters,
        pkt: Mbuf,
        port: PortIdx,
        key: &FlowKey,
        layout: Layout,
        hash: u64,
        now: u64,
        dropped: &mut Burst,
    ) {
        if !self.limiter.take(now) {
            counters.drops.add(DropReason::UpcallRateLimited, 1);
            let _ = dropped.push(pkt);
            return;
        }
        // In a miss storm the queue is mostly full: say so before copying the key in and out.
        if self.queues.upcalls.is_full() {
            counters.drops.add(DropReason::UpcallQueueFull, 1);
            let _ = dropped.push(pkt);
            return;
        }
        match self.queues.upcalls.push(Upcall { port, key: *key, layout, hash, packet: pkt }) {
            Ok(()) => {
                counters.upcalls += 1;
                self.inflight.record(hash, port.index(), self.handled);
            }
            Err(u) => {
                counters.drops.add(DropReason::UpcallQueueFull, 1);
                let _ = dropped.push(u.packet);
            }
        }
    }

    /// Whether any packet this PMD received on `port` may still be at the control core; if not,
    /// no hit from that port needs [`wait_for`](Self::wait_for).
    #[inline]
    fn backlog(&self, port: PortIdx) -> bool {
        self.inflight.backlog(port.index(), self.handled)
    }

    /// If the flow with `hash` has a packet still at the control core: how many upcalls must be
    /// handled before its next packet may leave (see [`InFlight`]).
    #[inline]
    fn wait_for(&self, hash: u64) -> Option<u64> {
        self.inflight.wait_for(hash, self.handled)
    }
}
