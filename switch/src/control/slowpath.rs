//! The slow path: what the control core does with a packet the fast path missed. It runs the
//! full OpenFlow translation with wildcard tracking (learning MACs for NORMAL), installs the
//! resulting megaflow and a flow cache entry, and keeps the installed megaflows honest:
//! revalidating them when the rules change or a MAC table entry they looked up changes,
//! expiring idle ones, and crediting their packets to the rules they came from. A NORMAL
//! megaflow's traffic refreshes (or moves back) its source MAC, as Open vSwitch's revalidators
//! do, so MACs with established flows do not age out.
//!
//! No DPDK here: decisions only (the caller moves the packets), so it is tested without EAL.

use ferrovs_config::flow::{FlowKey, KEY_WORDS};
use rustc_hash::FxHashMap;

use crate::fastpath::{InstallError, Installed, MegaflowRef, TablesWriter};
use crate::l2::{MacKey, MacTable};
use crate::ofproto::{Credit, MacAccess, MacDeps, Ofproto, RuleList, Translation, XlateOptions, translate};

/// Seconds a megaflow may go unused before it is removed (as Open vSwitch's `max-idle`).
pub const MEGAFLOW_IDLE_SECS: u64 = 10;
/// Megaflows whose counters one housekeeping step reads: a step takes well under a millisecond,
/// so a pass over a million megaflows never stalls upcalls for long.
const HOUSEKEEPING_STEP: usize = 16 * 1024;
/// A housekeeping pass starts at most this often (seconds, as a divisor of the TSC rate: 1/4 s).
const HOUSEKEEPING_PASSES_PER_SEC: u64 = 4;
/// Fewest megaflow removals that make a flow cache sweep worth its walk.
const SWEEP_AFTER_REMOVALS: usize = 1024;

/// What the slow path did, for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SlowPathCounters {
    /// Packets the PMDs handed over.
    pub upcalls: u64,
    /// Upcalls that found their megaflow already installed (by an earlier upcall).
    pub upcalls_existing: u64,
    /// Megaflows installed.
    pub megaflows_installed: u64,
    /// Megaflows not installed because their actions were too long.
    pub install_too_many_actions: u64,
    /// Megaflows not installed because the table was full.
    pub install_table_full: u64,
    /// Megaflows not installed because there were too many masks.
    pub install_too_many_masks: u64,
    /// Megaflows removed because a rule change altered them.
    pub megaflows_revalidated_away: u64,
    /// Megaflows removed after going unused.
    pub megaflows_idle_removed: u64,
    /// Flow cache entries added on request of a PMD (a megaflow hit without a cache entry).
    pub cache_promotions: u64,
    /// Flow rules that timed out.
    pub rules_expired: u64,
    /// Megaflows removed because a MAC table entry they looked up changed.
    pub megaflows_mac_invalidated: u64,
}

/// A decision for one missed packet, to install once the packet has been sent.
#[derive(Debug, Clone)]
pub struct Decision {
    key: FlowKey,
    hash: u64,
    mask: FlowKey,
    /// What to do with the packet.
    pub translation: Translation,
    rules: RuleList,
    existing: Option<MegaflowRef>,
}

/// The slow path.
pub struct SlowPath {
    ofproto: Ofproto,
    writer: TablesWriter,
    control_slot: usize,
    macs: MacTable,
    /// NORMAL megaflows by the MAC table entries they depend on: the one their destination
    /// lookup read, and the one their source was learned into (entries may be stale: each is
    /// checked against the live record before use).
    by_mac: FxHashMap<MacKey, Vec<MegaflowRef>>,
    /// NORMAL megaflows that ran NORMAL more than once: any MAC change may affect them.
    by_any: Vec<MegaflowRef>,
    /// References in `by_mac` and `by_any`, live or stale (to know when to prune).
    indexed: usize,
    changed: Vec<MacKey>,
    /// Megaflows removed since the flow cache was last swept of entries leading to them.
    removed_since_sweep: usize,
    /// Housekeeping: whether a pass over the megaflows is under way, where it is, and when the
    /// last one started (TSC).
    in_pass: bool,
    walk_pos: usize,
    last_pass: Option<u64>,
    /// What it did.
    pub counters: SlowPathCounters,
}

impl SlowPath {
    /// A slow path over `ofproto`'s rules, filling `writer`'s tables; rule hits it executes itself
    /// are credited to stats slot `control_slot`.
    pub fn new(ofproto: Ofproto, writer: TablesWriter, control_slot: usize) -> Self {
        Self {
            ofproto,
            writer,
            control_slot,
            macs: MacTable::new(ferrovs_config::DEFAULT_MAC_TABLE_SIZE, u64::MAX),
            by_mac: FxHashMap::default(),
            by_any: Vec::new(),
            indexed: 0,
            changed: Vec::new(),
            removed_since_sweep: 0,
            in_pass: false,
            walk_pos: 0,
            last_pass: None,
            counters: SlowPathCounters::default(),
        }
    }

    /// Uses `macs` as the MAC learning table (the default never ages entries).
    pub fn with_mac_table(mut self, macs: MacTable) -> Self {
        self.macs = macs;
        self
    }

    /// The MAC learning table.
    pub fn mac_table(&self) -> &MacTable {
        &self.macs
    }

    /// Changes the MAC table (static entries, port removal), then revalidates what that affects.
    pub fn with_mac_table_mut<R>(&mut self, f: impl FnOnce(&mut MacTable) -> R) -> R {
        let r = f(&mut self.macs);
        self.apply_mac_changes();
        r
    }

    /// The rules.
    pub fn ofproto(&self) -> &Ofproto {
        &self.ofproto
    }

    /// The fast-path tables' writer.
    pub fn writer(&self) -> &TablesWriter {
        &self.writer
    }

    /// Changes the rules (then revalidates every megaflow before returning).
    pub fn with_rules<R>(&mut self, f: impl FnOnce(&mut Ofproto) -> R) -> R {
        let r = f(&mut self.ofproto);
        self.revalidate();
        r
    }

    /// Decides what to do with a missed packet (key `key`, fast-path hash `hash`, `bytes` long).
    pub fn decide(&mut self, key: &FlowKey, hash: u64, bytes: u64, now_tsc: u64) -> Decision {
        self.counters.upcalls += 1;
        if let Some(existing) = self.writer.lookup(key) {
            let rec = self.writer.record(existing.id).expect("a live megaflow has a record");
            for rule in &rec.rules {
                rule.stats.credit(self.control_slot, 1, bytes, now_tsc);
            }
            self.counters.upcalls_existing += 1;
            return Decision {
                key: *key,
                hash,
                mask: rec.mask,
                translation: rec.translation.clone(),
                rules: RuleList::new(),
                existing: Some(existing),
            };
        }
        let mut mask = FlowKey::ZERO;
        let mut rules = RuleList::new();
        let mut translation = Translation::default();
        let opts = XlateOptions {
            credit: Some(Credit { slot: self.control_slot, bytes, tsc: now_tsc }),
            wildcards: Some(&mut mask),
            rules: Some(&mut rules),
            macs: Some(MacAccess::Learn(&mut self.macs, now_tsc)),
            ..Default::default()
        };
        translate(self.ofproto.tables(), self.ofproto.ports(), key, opts, &mut translation);
        Decision { key: *key, hash, mask, translation, rules, existing: None }
    }

    /// Installs what `decide` decided: the megaflow (unless an earlier decision already did) and
    /// the flow cache entry for the packet's exact key (unless the PMDs skip the cache: in a
    /// miss storm on a one-mask table that insert was a sixth of the control core's work, for
    /// entries nothing reads; should a second mask appear, PMDs ask for the entries they miss).
    pub fn commit(&mut self, d: Decision) {
        let handle = match d.existing {
            Some(h) => Some(h),
            None => {
                let deps = d.translation.mac;
                // An earlier decision of the same batch may have installed it (same path, same
                // mask): then that one is found.
                match self.writer.install_or_find(&d.key, &d.mask, d.translation, d.rules) {
                    Ok(Installed::New(h)) => {
                        self.counters.megaflows_installed += 1;
                        self.index_normal(deps, h);
                        Some(h)
                    }
                    Ok(Installed::Existing(h)) => Some(h),
                    Err(e) => {
                        match e {
                            InstallError::TooManyActions => self.counters.install_too_many_actions += 1,
                            InstallError::TableFull => self.counters.install_table_full += 1,
                            InstallError::TooManyMasks => self.counters.install_too_many_masks += 1,
                        }
                        None
                    }
                }
            }
        };
        if let Some(h) = handle
            && !self.writer.cache_bypassed()
        {
            self.writer.cache_insert(&d.key, d.hash, h);
        }
    }

    /// Caches `key` -> `megaflow`, at a PMD's request.
    pub fn promote(&mut self, key: &FlowKey, hash: u64, megaflow: MegaflowRef) {
        self.writer.cache_insert(key, hash, megaflow);
        self.counters.cache_promotions += 1;
    }

    /// Re-translates every megaflow under the current rules and removes those whose actions
    /// changed or that would now depend on bits outside their mask; then waits until no PMD can
    /// still be using a removed one. Returns how many were removed.
    pub fn revalidate(&mut self) -> usize {
        let stale: Vec<u32> = self
            .writer
            .records()
            .filter(|rec| !self.still_valid(&rec.key, &rec.mask, &rec.translation))
            .map(|rec| rec.handle.id)
            .collect();
        self.counters.megaflows_revalidated_away += stale.len() as u64;
        self.remove_all(&stale);
        stale.len()
    }

    /// Whether a megaflow (masked `key`, `mask`, `translation`) still says what the rules and
    /// the MAC table say now.
    fn still_valid(&self, key: &FlowKey, mask: &FlowKey, translation: &Translation) -> bool {
        let mut wc = FlowKey::ZERO;
        let mut t = Translation::default();
        let opts =
            XlateOptions { wildcards: Some(&mut wc), macs: Some(MacAccess::Read(&self.macs)), ..Default::default() };
        translate(self.ofproto.tables(), self.ofproto.ports(), key, opts, &mut t);
        let covered = (0..KEY_WORDS).all(|i| wc.word(i) & !mask.word(i) == 0);
        covered && t == *translation
    }

    /// Removes megaflows `ids`, then waits until no PMD can still be using them. The flow cache
    /// entries that led to them are stale from the removal on (a removed megaflow's generation
    /// moves, so they miss) and are swept later, in bulk: a sweep walks the whole cache, far too
    /// slow to do for each MAC move.
    fn remove_all(&mut self, ids: &[u32]) {
        for id in ids {
            self.writer.remove(*id);
        }
        if !ids.is_empty() {
            self.writer.synchronize();
            self.removed_since_sweep += ids.len();
        }
    }

    /// Sweeps stale flow cache entries once enough megaflows are gone to make the walk worth it
    /// (stale entries only take room: lookups already miss on them).
    fn maybe_sweep_cache(&mut self) {
        let worth = (self.writer.cache_len() / 16).max(SWEEP_AFTER_REMOVALS);
        if self.removed_since_sweep >= worth || (self.removed_since_sweep > 0 && self.writer.megaflow_count() == 0) {
            self.writer.sweep_cache();
            self.removed_since_sweep = 0;
        }
    }

    fn index_normal(&mut self, deps: MacDeps, handle: MegaflowRef) {
        if deps.more {
            self.by_any.push(handle);
            self.indexed += 1;
            return;
        }
        for key in [deps.dst, deps.src.filter(|s| Some(*s) != deps.dst)].into_iter().flatten() {
            self.by_mac.entry(key).or_default().push(handle);
            self.indexed += 1;
        }
    }

    /// Whether a NORMAL megaflow's source is still learned on its input port. Once the MAC has
    /// moved (or aged out), the megaflow must go, so that the next frame from the old port
    /// reaches the slow path and is learned again, as it would be without the megaflow.
    fn source_still_here(&self, key: &FlowKey, t: &Translation) -> bool {
        let Some(src) = t.mac.src else { return true };
        self.macs.lookup(&src).is_some_and(|port| self.ofproto.ports().index_of(key.in_port()) == Some(port))
    }

    /// Revalidates the megaflows whose NORMAL decision depends on a MAC table entry that changed
    /// (learned, moved, aged, evicted) since the last call; returns how many were removed.
    pub fn apply_mac_changes(&mut self) -> usize {
        if !self.macs.has_changes() {
            return 0;
        }
        let mut changed = std::mem::take(&mut self.changed);
        self.macs.take_changes(&mut changed);
        changed.sort_unstable();
        changed.dedup();
        // (key it was indexed under, megaflow): `None` for the ones any change may affect.
        let mut suspects: Vec<(Option<MacKey>, MegaflowRef)> = Vec::new();
        for key in &changed {
            if let Some(refs) = self.by_mac.remove(key) {
                self.indexed -= refs.len();
                suspects.extend(refs.into_iter().map(|r| (Some(*key), r)));
            }
        }
        self.indexed -= self.by_any.len();
        suspects.extend(self.by_any.drain(..).map(|r| (None, r)));
        let mut verdicts: FxHashMap<u32, bool> = FxHashMap::default();
        let mut stale = Vec::new();
        for (key, handle) in suspects {
            let Some(rec) = self.writer.record(handle.id).filter(|r| r.handle == handle) else { continue };
            let valid = *verdicts.entry(handle.id).or_insert_with(|| {
                let valid = self.source_still_here(&rec.key, &rec.translation)
                    && self.still_valid(&rec.key, &rec.mask, &rec.translation);
                if !valid {
                    stale.push(handle.id);
                }
                valid
            });
            if valid {
                match key {
                    Some(k) => self.by_mac.entry(k).or_default().push(handle),
                    None => self.by_any.push(handle),
                }
                self.indexed += 1;
            }
        }
        changed.clear();
        self.changed = changed;
        self.counters.megaflows_mac_invalidated += stale.len() as u64;
        self.remove_all(&stale);
        stale.len()
    }

    /// Drops index references to megaflows that are gone, once they outnumber the live ones.
    fn prune_index(&mut self) {
        if self.indexed <= 2 * self.writer.megaflow_count() + 1024 {
            return;
        }
        let writer = &self.writer;
        let live = |h: &MegaflowRef| writer.record(h.id).is_some_and(|r| r.handle == *h);
        self.by_mac.retain(|_, refs| {
            refs.retain(live);
            !refs.is_empty()
        });
        self.by_any.retain(live);
        self.indexed = self.by_mac.values().map(Vec::len).sum::<usize>() + self.by_any.len();
    }

    /// Periodic work, in steps (call it every few milliseconds): a pass, started at most
    /// [`HOUSEKEEPING_PASSES_PER_SEC`] times a second, walks the megaflows
    /// [`HOUSEKEEPING_STEP`] per call, crediting their packets to their rules and removing those
    /// idle for [`MEGAFLOW_IDLE_SECS`]; at its end it ages MAC entries, expires timed-out rules
    /// (revalidating after), and drops stale cache entries. `now_tsc` is the TSC now, `hz` its
    /// frequency. Returns whether a pass ended.
    pub fn housekeeping(&mut self, now_tsc: u64, hz: u64) -> bool {
        if !self.in_pass {
            if self.last_pass.is_some_and(|t| now_tsc.saturating_sub(t) < hz / HOUSEKEEPING_PASSES_PER_SEC) {
                return false;
            }
            self.in_pass = true;
            self.last_pass = Some(now_tsc);
            self.walk_pos = 0;
        }
        let mut visited = 0;
        while visited < HOUSEKEEPING_STEP
            && let Some(id) = self.writer.live_id(self.walk_pos)
        {
            visited += 1;
            let (packets, bytes) = self.writer.take_counts(id);
            let used_tsc = self.writer.used_tsc(id);
            if packets > 0
                && let Some(rec) = self.writer.record(id)
            {
                for rule in &rec.rules {
                    rule.stats.credit(self.control_slot, packets, bytes, used_tsc);
                }
                // Traffic from a learned source keeps its entry alive, or moves it back.
                let in_port = self.ofproto.ports().index_of(rec.key.in_port());
                if let (Some(src), Some(port)) = (rec.translation.mac.src, in_port) {
                    self.macs.learn(src, port, now_tsc);
                }
            }
            if now_tsc.saturating_sub(used_tsc) / hz.max(1) >= MEGAFLOW_IDLE_SECS {
                // The last megaflow moves into this position: the walk sees it next.
                self.writer.remove(id);
                self.counters.megaflows_idle_removed += 1;
                self.removed_since_sweep += 1;
            } else {
                self.walk_pos += 1;
            }
        }
        if self.walk_pos < self.writer.megaflow_count() {
            return false;
        }
        self.in_pass = false;
        self.macs.expire(now_tsc);
        self.apply_mac_changes();
        self.prune_index();
        let expired = self.ofproto.expire(now_tsc, hz);
        if !expired.is_empty() {
            self.counters.rules_expired += expired.len() as u64;
            for r in &expired {
                log::info!("flow expired: {}", describe(&r.spec));
            }
            self.revalidate();
        }
        self.maybe_sweep_cache();
        true
    }
}

fn describe(rule: &ferrovs_config::flow::FlowRule) -> String {
    format!("table={} priority={} cookie={:#x}", rule.table, rule.priority, rule.cookie)
}
