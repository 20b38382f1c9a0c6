//! What a run did: per-port, per-PMD and total counters, and the mempool's in-use count at exit.
//! Printed for humans at exit, and written as JSON for scripts and tests.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use ferrovs_config::flow::{PortMap, format_mac};

use crate::control::SlowPathCounters;
use crate::dpdk::PortStats;
use crate::l2::{MacCounters, MacTable};
use crate::ofproto::PortTable;
use crate::ofproto::Rule;
use crate::stats::{DropCounts, PmdCounters};

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Seconds from the PMDs' start to their stop.
    pub duration_secs: f64,
    /// TSC frequency, to turn cycles into time.
    pub tsc_hz: u64,
    /// Per port, in config order.
    pub ports: Vec<PortReport>,
    /// Per PMD thread.
    pub pmds: Vec<PmdReport>,
    /// The control core (its `rx_packets` are the upcalls it handled).
    pub control: CountersReport,
    /// The fast-path tables at exit and what the slow path did.
    pub fastpath: FastPathReport,
    /// The flow rules installed at the end, with their counters (`dump-flows`).
    pub flows: Vec<FlowReport>,
    /// The MAC learning table at exit (`fdb/show`) and what it did.
    pub mac_table: MacTableReport,
    /// Sums over PMDs.
    pub totals: Totals,
    /// The measured window after the warm-up, when `run --warmup` asked for one.
    pub window: Option<Window>,
    /// Counts at every control tick, when `run --timeline` asked for them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<TimelinePoint>,
    /// Packet buffers.
    pub mempool: MempoolReport,
}

/// One port.
#[derive(Debug, Clone, Serialize)]
pub struct PortReport {
    /// Name from the config.
    pub name: String,
    /// OpenFlow number.
    pub ofport: u16,
    /// DPDK driver.
    pub driver: String,
    /// Link state when the switch stopped.
    pub link_up: bool,
    /// Times the link went up while the switch ran (a guest attaching to a vhost port).
    pub link_ups: u64,
    /// Times the link went down while the switch ran (a guest leaving).
    pub link_downs: u64,
    /// The driver's counters.
    pub stats: PortStats,
}

/// The fast-path tables.
#[derive(Debug, Clone, Serialize)]
pub struct FastPathReport {
    /// Megaflows installed at exit.
    pub megaflows: usize,
    /// Distinct megaflow masks at exit.
    pub masks: usize,
    /// Flow cache entries at exit.
    pub cache_entries: usize,
    /// What the slow path did.
    pub slow_path: SlowPathCounters,
}

/// The MAC learning table.
#[derive(Debug, Clone, Serialize)]
pub struct MacTableReport {
    /// Entries at exit, by port, VLAN and address.
    pub entries: Vec<MacReport>,
    /// Learned, moved, evicted, aged.
    pub counters: MacCounters,
}

/// One MAC table entry.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct MacReport {
    /// Port name.
    pub port: String,
    /// VLAN.
    pub vlan: u16,
    /// Address, `xx:xx:xx:xx:xx:xx`.
    pub mac: String,
    /// Seconds since its last refresh (`None` for a static entry).
    pub age_secs: Option<u64>,
}

impl MacTableReport {
    /// The report of `table` at TSC time `now_tsc` (ticking at `hz`), with port names from `names`.
    pub fn new(table: &MacTable, ports: &PortTable, names: &dyn PortMap, now_tsc: u64, hz: u64) -> Self {
        let port_name = |idx| {
            let ofport = ports.ofport_of(idx);
            names.name_of(ofport).map_or_else(|| ofport.to_string(), str::to_string)
        };
        let mut entries: Vec<MacReport> = table
            .entries()
            .map(|e| MacReport {
                port: port_name(e.port),
                vlan: e.key.vlan,
                mac: format_mac(e.key.mac.iter().fold(0u128, |acc, b| (acc << 8) | u128::from(*b))),
                age_secs: (!e.is_static).then(|| now_tsc.saturating_sub(e.used_tsc) / hz.max(1)),
            })
            .collect();
        entries.sort();
        Self { entries, counters: table.counters }
    }
}

/// One flow rule and its counters.
#[derive(Debug, Clone, Serialize)]
pub struct FlowReport {
    /// The rule, as `ovs-ofctl dump-flows` prints it (without counters).
    pub rule: String,
    /// Packets that hit it.
    pub packets: u64,
    /// Bytes that hit it.
    pub bytes: u64,
}

impl FlowReport {
    /// The report line of `rule`, with port names from `names`.
    pub fn new(rule: &Rule, names: &dyn PortMap) -> Self {
        let (packets, bytes, _) = rule.stats.totals();
        Self { rule: rule.spec.display(names).to_string(), packets, bytes }
    }
}

/// One PMD.
#[derive(Debug, Clone, Serialize)]
pub struct PmdReport {
    /// The CPU it ran on.
    pub core: usize,
    /// Its EAL lcore id.
    pub lcore: u32,
    /// Its counters.
    pub counters: CountersReport,
}

/// Counters in report form.
#[derive(Debug, Clone, Serialize)]
pub struct CountersReport {
    /// Packets received.
    pub rx_packets: u64,
    /// Packets sent at least once.
    pub forwarded: u64,
    /// Copies transmitted.
    pub tx_packets: u64,
    /// Packets found in the exact-match flow cache.
    pub cache_hits: u64,
    /// Packets found by the megaflow table.
    pub megaflow_hits: u64,
    /// Packets handed to the control core.
    pub upcalls: u64,
    /// Whole packets dropped (every reason but transmit failures).
    pub dropped_packets: u64,
    /// Drops by reason, nonzero only.
    pub drops: BTreeMap<&'static str, u64>,
    /// Loop passes.
    pub iterations: u64,
    /// Non-empty receive bursts.
    pub batches: u64,
    /// Cycles in passes that received packets.
    pub busy_cycles: u64,
    /// Cycles in passes that received nothing.
    pub idle_cycles: u64,
    /// Receive-queue polls skipped while the control core could not take that queue's misses.
    pub rxq_skips: u64,
    /// Busy cycles per received packet.
    pub cycles_per_packet: f64,
    /// Packets per non-empty burst.
    pub packets_per_batch: f64,
}

impl From<&PmdCounters> for CountersReport {
    fn from(c: &PmdCounters) -> Self {
        Self {
            rx_packets: c.rx_packets,
            forwarded: c.forwarded,
            tx_packets: c.tx_packets,
            cache_hits: c.cache_hits,
            megaflow_hits: c.megaflow_hits,
            upcalls: c.upcalls,
            dropped_packets: c.drops.packets(),
            drops: drop_map(&c.drops),
            iterations: c.iterations,
            batches: c.batches,
            busy_cycles: c.busy_cycles,
            idle_cycles: c.idle_cycles,
            rxq_skips: c.rxq_skips,
            cycles_per_packet: c.cycles_per_packet(),
            packets_per_batch: c.packets_per_batch(),
        }
    }
}

fn drop_map(d: &DropCounts) -> BTreeMap<&'static str, u64> {
    d.nonzero().collect()
}

/// Totals over all PMDs, with rates.
#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    /// Summed counters.
    pub counters: CountersReport,
    /// Received, millions of packets per second.
    pub rx_mpps: f64,
    /// Forwarded, millions of packets per second.
    pub forwarded_mpps: f64,
}

/// Counters over the window from the end of the warm-up to the stop.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    /// Seconds of warm-up before the window.
    pub warmup_secs: f64,
    /// Length of the window.
    pub secs: f64,
    /// Per PMD, counted in the window only.
    pub pmds: Vec<CountersReport>,
    /// The control core in the window (`rx_packets`: upcalls handled; `busy_cycles`: cycles
    /// spent handling them).
    pub control: CountersReport,
    /// Megaflows the control core installed in the window.
    pub megaflows_installed: u64,
    /// The same, per second: the flow-setup rate while new flows keep coming.
    pub megaflows_per_sec: f64,
    /// Per port, in config order.
    pub ports: Vec<PortWindow>,
    /// Sums and rates in the window.
    pub totals: Totals,
}

/// Counts at one control tick (`run --timeline`).
#[derive(Debug, Clone, Serialize)]
pub struct TimelinePoint {
    /// Seconds since forwarding started.
    pub secs: f64,
    /// Megaflows the control core installed so far.
    pub megaflows_installed: u64,
    /// Per port, in config order: packets received and transmitted so far.
    pub ports: Vec<[u64; 2]>,
}

/// One port's rates in the window.
#[derive(Debug, Clone, Serialize)]
pub struct PortWindow {
    /// Name from the config.
    pub name: String,
    /// Received in the window.
    pub rx_packets: u64,
    /// Transmitted in the window.
    pub tx_packets: u64,
    /// Received, millions of packets per second.
    pub rx_mpps: f64,
    /// Transmitted, millions of packets per second.
    pub tx_mpps: f64,
}

/// The mempool at exit.
#[derive(Debug, Clone, Serialize)]
pub struct MempoolReport {
    /// Mbufs in all.
    pub capacity: u32,
    /// Mbufs still allocated after every port closed: anything but 0 is a leak.
    pub in_use: u32,
}

impl Totals {
    /// Sums `pmds` and the control core over `secs` seconds. Packets received are the PMDs'
    /// (what the control core receives are their upcalls); forwarded, transmitted and dropped
    /// include the control core's.
    pub fn sum(pmds: &[PmdCounters], control: &PmdCounters, secs: f64) -> Self {
        let mut t = PmdCounters::default();
        for c in pmds {
            t.rx_packets += c.rx_packets;
            t.iterations += c.iterations;
            t.batches += c.batches;
            t.busy_cycles += c.busy_cycles;
            t.idle_cycles += c.idle_cycles;
            t.rxq_skips += c.rxq_skips;
            t.cache_hits += c.cache_hits;
            t.megaflow_hits += c.megaflow_hits;
            t.upcalls += c.upcalls;
        }
        for c in pmds.iter().chain(std::iter::once(control)) {
            t.forwarded += c.forwarded;
            t.tx_packets += c.tx_packets;
            t.drops = t.drops.merged(&c.drops);
        }
        let rate = |n: u64| {
            if secs > 0.0 { n as f64 / secs / 1e6 } else { 0.0 }
        };
        Self { counters: (&t).into(), rx_mpps: rate(t.rx_packets), forwarded_mpps: rate(t.forwarded) }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "ferrovs ran {:.2} s", self.duration_secs)?;
        writeln!(
            f,
            "{:<12} {:>6} {:<10} {:>4} {:>14} {:>14} {:>10} {:>10} {:>10}",
            "port", "ofport", "driver", "link", "rx_packets", "tx_packets", "rx_missed", "rx_errors", "tx_errors"
        )?;
        for p in &self.ports {
            let s = &p.stats;
            writeln!(
                f,
                "{:<12} {:>6} {:<10} {:>4} {:>14} {:>14} {:>10} {:>10} {:>10}",
                p.name,
                p.ofport,
                p.driver,
                if p.link_up { "up" } else { "down" },
                s.rx_packets,
                s.tx_packets,
                s.rx_missed,
                s.rx_errors,
                s.tx_errors
            )?;
        }
        writeln!(
            f,
            "{:<6} {:>4} {:>14} {:>14} {:>14} {:>12} {:>12} {:>12} {:>10} {:>8} {:>9} {:>6}",
            "pmd",
            "core",
            "rx_packets",
            "forwarded",
            "tx_packets",
            "dropped",
            "cache_hits",
            "megaflow",
            "upcalls",
            "cyc/pkt",
            "pkt/batch",
            "busy%"
        )?;
        for (i, p) in self.pmds.iter().enumerate() {
            let c = &p.counters;
            let cycles = (c.busy_cycles + c.idle_cycles).max(1);
            writeln!(
                f,
                "{:<6} {:>4} {:>14} {:>14} {:>14} {:>12} {:>12} {:>12} {:>10} {:>8.1} {:>9.1} {:>5.1}%",
                i,
                p.core,
                c.rx_packets,
                c.forwarded,
                c.tx_packets,
                c.dropped_packets,
                c.cache_hits,
                c.megaflow_hits,
                c.upcalls,
                c.cycles_per_packet,
                c.packets_per_batch,
                100.0 * c.busy_cycles as f64 / cycles as f64
            )?;
        }
        let c = &self.control;
        writeln!(
            f,
            "control: {} upcalls handled, {} forwarded, {} dropped; {} megaflows ({} masks), {} flow cache entries",
            c.rx_packets,
            c.forwarded,
            c.dropped_packets,
            self.fastpath.megaflows,
            self.fastpath.masks,
            self.fastpath.cache_entries
        )?;
        if !self.flows.is_empty() {
            writeln!(f, "flows:")?;
            for fl in &self.flows {
                writeln!(f, "  n_packets={}, n_bytes={}, {}", fl.packets, fl.bytes, fl.rule)?;
            }
        }
        let m = &self.mac_table;
        if !m.entries.is_empty() || m.counters != MacCounters::default() {
            let c = &m.counters;
            writeln!(
                f,
                "mac table: {} entries; learned {}, moved {}, evicted {}, aged {}",
                m.entries.len(),
                c.learned,
                c.moved,
                c.evicted,
                c.aged
            )?;
            const SHOWN: usize = 32;
            writeln!(f, "  {:<12} {:>4}  {:<17}  age", "port", "VLAN", "MAC")?;
            for e in m.entries.iter().take(SHOWN) {
                let age = e.age_secs.map_or_else(|| "static".to_string(), |s| s.to_string());
                writeln!(f, "  {:<12} {:>4}  {}  {age}", e.port, e.vlan, e.mac)?;
            }
            if m.entries.len() > SHOWN {
                writeln!(f, "  ... and {} more (all in --stats-json)", m.entries.len() - SHOWN)?;
            }
        }
        let t = &self.totals;
        let drops: Vec<String> = t.counters.drops.iter().map(|(k, v)| format!("{k}={v}")).collect();
        writeln!(f, "drops: {}", if drops.is_empty() { "none".to_string() } else { drops.join(" ") })?;
        writeln!(
            f,
            "total: rx {} packets ({:.3} Mpps), forwarded {} ({:.3} Mpps), tx {} copies",
            t.counters.rx_packets, t.rx_mpps, t.counters.forwarded, t.forwarded_mpps, t.counters.tx_packets
        )?;
        if let Some(w) = &self.window {
            let c = &w.totals.counters;
            writeln!(
                f,
                "window: {:.2} s after {:.2} s warm-up: rx {:.3} Mpps, forwarded {:.3} Mpps, {:.1} cycles/packet, \
                 cache hits {}, megaflow hits {}, upcalls {}, dropped {}; {} megaflows installed ({:.0}/s)",
                w.secs,
                w.warmup_secs,
                w.totals.rx_mpps,
                w.totals.forwarded_mpps,
                c.cycles_per_packet,
                c.cache_hits,
                c.megaflow_hits,
                c.upcalls,
                c.dropped_packets,
                w.megaflows_installed,
                w.megaflows_per_sec
            )?;
            for p in &w.ports {
                writeln!(f, "window: port {}: rx {:.3} Mpps, tx {:.3} Mpps", p.name, p.rx_mpps, p.tx_mpps)?;
            }
        }
        write!(f, "mempool: {} of {} mbufs in use at exit", self.mempool.in_use, self.mempool.capacity)
    }
}
