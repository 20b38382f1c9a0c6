//! The slow path: what the control core does with a packet the fast path missed. It runs the
//! full OpenFlow translation with wildcard tracking, installs the resulting megaflow and a flow
//! cache entry, and keeps the installed megaflows honest: revalidating them when the rules
//! change, expiring idle ones, and crediting their packets to the rules they came from.
//!
//! No DPDK here: decisions only (the caller moves the packets), so it is tested without EAL.

use std::sync::Arc;

use ferrovs_config::flow::{FlowKey, KEY_WORDS};

use crate::fastpath::{InstallError, MegaflowRef, TablesWriter};
use crate::ofproto::{Credit, Ofproto, Rule, Translation, XlateOptions, translate};

/// Seconds a megaflow may go unused before it is removed (as Open vSwitch's `max-idle`).
pub const MEGAFLOW_IDLE_SECS: u64 = 10;

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
}

/// A decision for one missed packet, to install once the packet has been sent.
#[derive(Debug, Clone)]
pub struct Decision {
    key: FlowKey,
    hash: u64,
    mask: FlowKey,
    /// What to do with the packet.
    pub translation: Translation,
    rules: Vec<Arc<Rule>>,
    existing: Option<MegaflowRef>,
}

/// The slow path.
pub struct SlowPath {
    ofproto: Ofproto,
    writer: TablesWriter,
    control_slot: usize,
    /// What it did.
    pub counters: SlowPathCounters,
}

impl SlowPath {
    /// A slow path over `ofproto`'s rules, filling `writer`'s tables; rule hits it executes itself
    /// are credited to stats slot `control_slot`.
    pub fn new(ofproto: Ofproto, writer: TablesWriter, control_slot: usize) -> Self {
        Self { ofproto, writer, control_slot, counters: SlowPathCounters::default() }
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
                rules: Vec::new(),
                existing: Some(existing),
            };
        }
        let mut mask = FlowKey::ZERO;
        let mut rules = Vec::new();
        let mut translation = Translation::default();
        let opts = XlateOptions {
            credit: Some(Credit { slot: self.control_slot, bytes, tsc: now_tsc }),
            wildcards: Some(&mut mask),
            rules: Some(&mut rules),
            ..Default::default()
        };
        translate(self.ofproto.tables(), self.ofproto.ports(), key, opts, &mut translation);
        Decision { key: *key, hash, mask, translation, rules, existing: None }
    }

    /// Installs what `decide` decided: the megaflow (unless an earlier decision already did) and
    /// the flow cache entry for the packet's exact key.
    pub fn commit(&mut self, d: Decision) {
        let handle = match d.existing.or_else(|| self.writer.lookup(&d.key)) {
            Some(h) => Some(h),
            None => match self.writer.install(&d.key, &d.mask, &d.translation, d.rules) {
                Ok(h) => {
                    self.counters.megaflows_installed += 1;
                    Some(h)
                }
                Err(e) => {
                    match e {
                        InstallError::TooManyActions => self.counters.install_too_many_actions += 1,
                        InstallError::TableFull => self.counters.install_table_full += 1,
                        InstallError::TooManyMasks => self.counters.install_too_many_masks += 1,
                    }
                    None
                }
            },
        };
        if let Some(h) = handle {
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
        let mut stale = Vec::new();
        for rec in self.writer.records() {
            let mut wc = FlowKey::ZERO;
            let mut t = Translation::default();
            let opts = XlateOptions { wildcards: Some(&mut wc), ..Default::default() };
            translate(self.ofproto.tables(), self.ofproto.ports(), &rec.key, opts, &mut t);
            let covered = (0..KEY_WORDS).all(|i| wc.word(i) & !rec.mask.word(i) == 0);
            if !covered || t != rec.translation {
                stale.push(rec.handle.id);
            }
        }
        for id in &stale {
            self.writer.remove(*id);
        }
        self.counters.megaflows_revalidated_away += stale.len() as u64;
        if !stale.is_empty() {
            self.writer.synchronize();
            self.writer.sweep_cache();
        }
        stale.len()
    }

    /// Periodic work: credit megaflow packets to their rules, remove megaflows idle for
    /// [`MEGAFLOW_IDLE_SECS`], expire timed-out rules (revalidating after), and drop stale
    /// cache entries. `now_tsc` is the TSC now, `hz` its frequency.
    pub fn housekeeping(&mut self, now_tsc: u64, hz: u64) {
        let mut idle = Vec::new();
        for id in self.writer.ids() {
            let (packets, bytes) = self.writer.take_counts(id);
            let Some(rec) = self.writer.record(id) else { continue };
            if packets > 0 {
                for rule in &rec.rules {
                    rule.stats.credit(self.control_slot, packets, bytes, rec.used_tsc);
                }
            }
            if now_tsc.saturating_sub(rec.used_tsc) / hz.max(1) >= MEGAFLOW_IDLE_SECS {
                idle.push(id);
            }
        }
        for id in &idle {
            self.writer.remove(*id);
        }
        self.counters.megaflows_idle_removed += idle.len() as u64;
        let expired = self.ofproto.expire(now_tsc, hz);
        if !expired.is_empty() {
            self.counters.rules_expired += expired.len() as u64;
            for r in &expired {
                log::info!("flow expired: {}", describe(&r.spec));
            }
            self.revalidate();
        } else if !idle.is_empty() {
            self.writer.sweep_cache();
        }
    }
}

fn describe(rule: &ferrovs_config::flow::FlowRule) -> String {
    format!("table={} priority={} cookie={:#x}", rule.table, rule.priority, rule.cookie)
}
