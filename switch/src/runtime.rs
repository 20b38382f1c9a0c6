//! Bringing the switch up from a validated [`Config`], running it, and taking it down cleanly.
//!
//! Start-up order: EAL (core list derived from `[datapath]`), ports probed by devargs, a mempool
//! per port for what it receives, sized from queues x descriptors (+ packets preloaded by
//! `net_pcap,infinite_rx=1`), ports configured and started, one PMD job per PMD lcore. Shutdown
//! runs the other way: PMDs stop and flush, ports stop and close (so `net_pcap` output files are
//! complete and drivers hand back their mbufs), and only then are the mempools' in-use counts
//! read: anything but 0 is a leak.
//!
//! Why a mempool per port: the packets a PMD sends itself come back to its own mempool cache,
//! still in its CPU's caches, but those of new flows are sent (and freed) by the control core on
//! another CPU. With one shared mempool, a miss storm on one port handed every port's PMD
//! buffers last written on the control core's CPU, and an established flow beside the storm
//! lost about a fifth of its rate; with its own mempool it keeps 96 % (the storm's port pays
//! for its own recycling). A storm also cannot take the buffers other ports receive into.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferrovs_config::{Config, PortConfig, VhostMode};

use crate::control::{ControlCore, PmdQueues, SlowPath, UPCALL_QUEUE};
use crate::dpdk::{
    DEFAULT_DATA_ROOM, Device, Eal, EalError, HEADROOM, LcoreJob, LcorePanic, MAX_BURST, Mempool, MempoolError, Port,
    PortError, PortSetup, VHOST_DRIVER, VhostUserPort, rdtsc, tsc_hz,
};
use crate::fastpath::{FlowTables, TablesWriter};
use crate::l2::{MacKey, MacTable};
use crate::link::PortLink;
use crate::ofproto::{Ofproto, PortTable};
use crate::packet::PortIdx;
use crate::pmd::{Pmd, PmdShared, PolledRxq, TxBuffer};
use crate::report::{
    CountersReport, FastPathReport, FlowReport, MacTableReport, MempoolReport, PmdReport, PortReport, PortWindow,
    Report, TimelinePoint, Totals, Window,
};
use crate::stats::PmdCounters;

/// Per-lcore mempool cache: big enough to serve a few bursts without touching the shared ring.
const MEMPOOL_CACHE: u32 = 256;
/// How often the control thread checks for stop conditions.
const CONTROL_TICK: Duration = Duration::from_millis(5);
/// How often the control thread takes a step of its periodic work (counters, expiry: a pass
/// over the megaflows every 1/4 s, taken in bounded steps; see `SlowPath::housekeeping`).
const HOUSEKEEPING: Duration = Duration::from_millis(2);

/// Why the switch could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// EAL did not start.
    #[error(transparent)]
    Eal(#[from] EalError),
    /// A port could not be set up.
    #[error(transparent)]
    Port(#[from] PortError),
    /// No memory for packet buffers.
    #[error(transparent)]
    Mempool(#[from] MempoolError),
    /// A rule could not be installed.
    #[error("flow rule {rule}: {reason}")]
    Rule {
        /// The rule.
        rule: String,
        /// Why.
        reason: String,
    },
    /// A PMD thread panicked.
    #[error(transparent)]
    Pmd(#[from] LcorePanic),
    /// A vhost server socket path is taken.
    #[error("port {name}: {reason}")]
    VhostSocket {
        /// The port.
        name: String,
        /// Why the socket cannot be created.
        reason: String,
    },
    /// EAL has fewer worker lcores than PMDs (should not happen: we derive the list).
    #[error("EAL started {got} worker lcores, {want} PMDs need one each")]
    Lcores {
        /// Worker lcores EAL has.
        got: usize,
        /// PMDs configured.
        want: usize,
    },
}

/// When to stop, besides SIGINT/SIGTERM.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Stop once the PMDs have received (and processed) this many packets in all.
    pub stop_after_rx: Option<u64>,
    /// Also report rates over the time after this warm-up (for benchmarks: the start-up miss storm
    /// and cold caches stay out of the measured window).
    pub warmup: Option<Duration>,
    /// Record megaflows installed and port counts at every control tick (for flow-setup
    /// benchmarks: the rate while a storm lasts, however long it lasts).
    pub timeline: bool,
}

/// Ticks a timeline keeps at most (a minute of 5 ms ticks).
const TIMELINE_TICKS: usize = 12_000;

/// Counters at one instant: the PMDs' as they last published them, the control core's, and the
/// ports' packet counts.
struct Snapshot {
    at: Instant,
    pmds: Vec<PmdCounters>,
    control: PmdCounters,
    megaflows_installed: u64,
    ports: Vec<[u64; 2]>,
}

impl Snapshot {
    fn take(jobs: &[(LcoreJob<PmdCounters>, Arc<PmdShared>)], control: &ControlCore, ports: &[SwitchPort]) -> Self {
        Self {
            at: Instant::now(),
            pmds: jobs.iter().map(|(_, s)| s.counters.read()).collect(),
            control: control.counters,
            megaflows_installed: control.slow_path().counters.megaflows_installed,
            ports: packet_counts(ports),
        }
    }

    /// The window from `start` to this snapshot.
    fn window_since(&self, start: &Snapshot, warmup: Duration, config: &Config) -> Window {
        let secs = self.at.duration_since(start.at).as_secs_f64();
        let pmds: Vec<PmdCounters> = self.pmds.iter().zip(&start.pmds).map(|(now, then)| now.since(then)).collect();
        let control = self.control.since(&start.control);
        let mpps = |n: u64| n as f64 / secs.max(f64::MIN_POSITIVE) / 1e6;
        let ports = config
            .ports
            .iter()
            .zip(self.ports.iter().zip(&start.ports))
            .map(|(pc, (now, then))| PortWindow {
                name: pc.name.clone(),
                rx_packets: now[0].saturating_sub(then[0]),
                tx_packets: now[1].saturating_sub(then[1]),
                rx_mpps: mpps(now[0].saturating_sub(then[0])),
                tx_mpps: mpps(now[1].saturating_sub(then[1])),
            })
            .collect();
        let installed = self.megaflows_installed.saturating_sub(start.megaflows_installed);
        Window {
            warmup_secs: warmup.as_secs_f64(),
            secs,
            pmds: pmds.iter().map(CountersReport::from).collect(),
            control: (&control).into(),
            megaflows_installed: installed,
            megaflows_per_sec: installed as f64 / secs.max(f64::MIN_POSITIVE),
            ports,
            totals: Totals::sum(&pmds, &control, secs),
        }
    }
}

/// The EAL arguments for `config`: lcore 0 is the control thread on `control_core`, lcore i+1 the
/// PMD on `pmd_cores[i]`; then the user's extra arguments.
pub fn eal_args(config: &Config) -> Vec<String> {
    let dp = &config.datapath;
    let lcores: Vec<String> = std::iter::once(format!("0@{}", dp.control_core))
        .chain(dp.pmd_cores.iter().enumerate().map(|(i, c)| format!("{}@{c}", i + 1)))
        .collect();
    let mut args = vec![format!("--lcores={}", lcores.join(",")), "--main-lcore=0".to_string()];
    if config.ports.iter().any(|p| p.devargs.vhost_socket().is_some()) {
        // The vhost library logs every message of every connection at INFO; link and queue
        // changes are logged by ferrovs itself. Given before the user's arguments, which may
        // raise it again.
        args.push("--log-level=lib.vhost.config:warning".to_string());
    }
    args.extend(config.eal_args.iter().cloned());
    args
}

/// One port of the running switch.
struct SwitchPort {
    port: Device,
    driver: String,
    setup: PortSetup,
    link: PortLink,
}

impl SwitchPort {
    /// Whether the control core transmits on queue 0 rather than a queue of its own. A vhost
    /// port's queue pairs beyond the first are enabled by the guest, which may enable fewer
    /// than configured (a one-vCPU Linux guest enables one): queue 0 is the one always there,
    /// and the control core sends the first packets of every flow.
    fn control_on_queue_0(&self) -> bool {
        self.port.is_vhost()
    }
}

/// Runs the switch until `stop` is set, or an option in `opts` says so; returns what it did.
pub fn run(config: &Config, opts: &RunOptions, stop: &AtomicBool) -> Result<Report, RunError> {
    let eal = Eal::init(&eal_args(config))?;
    let workers = eal.worker_lcores();
    let dp = &config.datapath;
    let npmds = dp.pmd_cores.len();
    if workers.len() < npmds {
        return Err(RunError::Lcores { got: workers.len(), want: npmds });
    }

    let port_table = Arc::new(PortTable::with_vlans(
        config.ports.iter().map(|p| p.ofport).collect(),
        config.ports.iter().map(|p| p.vlan.clone()).collect(),
    ));
    // Rule counters have one writer: the control core credits them (megaflow packets included).
    let mut ofproto = Ofproto::new(Arc::clone(&port_table), 1);
    let now = rdtsc();
    for rule in &config.flows {
        ofproto
            .add(rule.clone(), now)
            .map_err(|reason| RunError::Rule { rule: rule.display(config).to_string(), reason })?;
    }

    // Transmit queues: one per sender (each PMD, then the control core) where the device has enough.
    let senders = npmds + 1;
    let mut ports = Vec::with_capacity(config.ports.len());
    for pc in &config.ports {
        if let Some(v) = pc.vhost.as_ref().filter(|v| v.mode == VhostMode::Server) {
            clear_stale_socket(&v.path).map_err(|reason| RunError::VhostSocket { name: pc.name.clone(), reason })?;
        }
        let port = match &pc.vhost {
            Some(v) => {
                Device::Vhost(VhostUserPort::new(&eal, &pc.name, &v.path, v.mode == VhostMode::Client, v.queues)?)
            }
            None => Device::Eth(Port::attach(&eal, &pc.name, &pc.devargs.to_string())?),
        };
        let info = port.info()?;
        let max_tx = info.max_tx_queues.max(1);
        let tx_queues = match info.driver.as_str() {
            // A tap wants as many transmit queues as receive queues; senders then share them.
            "net_tap" => pc.rx_queues,
            // One per PMD; the control core shares queue 0 (see `control_on_queue_0`).
            "net_vhost" | VHOST_DRIVER => (npmds as u16).clamp(1, max_tx),
            _ => (senders as u16).clamp(1, max_tx),
        };
        let setup =
            PortSetup { rx_queues: pc.rx_queues, tx_queues, rx_desc: pc.rx_desc, tx_desc: pc.tx_desc, mtu: pc.mtu };
        ports.push(SwitchPort { port, driver: info.driver, setup, link: PortLink::default() });
    }

    let data_room = data_room(config);
    let mut pools = Vec::with_capacity(ports.len());
    for (i, pc) in config.ports.iter().enumerate() {
        let size = mempool_size(pc, i, &ports, senders);
        pools.push(Arc::new(Mempool::new(&eal, &format!("ferrovs_rx{i}"), size, MEMPOOL_CACHE, data_room, None)?));
        log::info!("port {}: mempool of {size} mbufs of {data_room} B", pc.name);
    }

    for (sp, pool) in ports.iter_mut().zip(&pools) {
        sp.port.configure(&sp.setup, pool)?;
        sp.port.start()?;
        sp.port.enable_promiscuous();
        let link = sp.port.link()?;
        sp.link.started(link.up);
        let mac = sp.port.mac()?;
        log::info!(
            "port {} ({}): {} rxq, {} txq, mtu {}, link {} {} Mbps, mac {}",
            sp.port.name(),
            sp.driver,
            sp.setup.rx_queues,
            sp.setup.tx_queues,
            sp.port.mtu()?,
            if link.up { "up" } else { "down" },
            link.speed_mbps,
            mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
        );
    }

    let writer = TablesWriter::new(dp.flow_cache_size, dp.max_megaflows, npmds);
    let tables = Arc::clone(writer.tables());
    let queues: Vec<Arc<PmdQueues>> = (0..npmds).map(|_| Arc::new(PmdQueues::default())).collect();
    let (pmds, control_tx) = build_pmds(config, &mut ports, &tables, &queues)?;
    let macs = mac_table(config, &port_table);
    let mut control = ControlCore::new(SlowPath::new(ofproto, writer, 0).with_mac_table(macs), queues, control_tx);

    let started = Instant::now();
    let mut jobs: Vec<(LcoreJob<PmdCounters>, Arc<PmdShared>)> = Vec::with_capacity(npmds);
    for ((pmd, shared), lcore) in pmds.into_iter().zip(&workers) {
        jobs.push((eal.launch(*lcore, move || pmd.run())?, shared));
    }
    log::info!("forwarding with {npmds} PMD(s) on cores {:?}", dp.pmd_cores);

    let (window, timeline) = control_loop(config, opts, stop, started, &jobs, &mut control, &ports);

    for (_, shared) in &jobs {
        shared.request_stop();
    }
    let mut counters = Vec::with_capacity(jobs.len());
    let mut pmd_reports = Vec::with_capacity(jobs.len());
    for ((job, _), core) in jobs.into_iter().zip(&dp.pmd_cores) {
        let lcore = job.lcore();
        let c = job.join()?;
        pmd_reports.push(PmdReport { core: *core, lcore, counters: (&c).into() });
        counters.push(c);
    }
    // The PMDs are gone: what they queued for the control core is still to be sent.
    control.drain();
    let duration_secs = started.elapsed().as_secs_f64();
    let (control_counters, slow) = control.finish();

    let mut port_reports = Vec::with_capacity(ports.len());
    for (sp, pc) in ports.into_iter().zip(&config.ports) {
        let SwitchPort { mut port, driver, link, .. } = sp;
        let link_up = port.link().map(|l| l.up).unwrap_or(false);
        port.stop()?;
        let stats = port.stats()?;
        port.close()?;
        port_reports.push(PortReport {
            name: pc.name.clone(),
            ofport: pc.ofport,
            driver,
            link_up,
            link_ups: link.ups(),
            link_downs: link.downs(),
            stats,
        });
    }
    let mempool = MempoolReport {
        capacity: pools.iter().map(|p| p.capacity()).sum(),
        in_use: pools.iter().map(|p| p.in_use()).sum(),
    };
    drop(pools);

    let flows = slow.ofproto().tables().rules().iter().map(|r| FlowReport::new(r, config)).collect();
    let mac_table = MacTableReport::new(slow.mac_table(), &port_table, config, rdtsc(), tsc_hz());
    let fastpath = FastPathReport {
        megaflows: slow.writer().megaflow_count(),
        masks: slow.writer().subtable_count(),
        cache_entries: slow.writer().cache_len(),
        slow_path: slow.counters,
    };
    Ok(Report {
        duration_secs,
        tsc_hz: tsc_hz(),
        flows,
        ports: port_reports,
        totals: Totals::sum(&counters, &control_counters, duration_secs),
        window,
        timeline,
        pmds: pmd_reports,
        control: (&control_counters).into(),
        fastpath,
        mac_table,
        mempool,
    })
}

/// The MAC learning table `[bridge]` asks for, with its static entries.
fn mac_table(config: &Config, ports: &PortTable) -> MacTable {
    let b = &config.bridge;
    let mut table = MacTable::new(b.mac_table_size, b.mac_aging_secs.saturating_mul(tsc_hz()));
    for s in &b.static_macs {
        let port = ports.index_of(s.ofport).expect("validated: a static MAC names a port");
        table.add_static(MacKey::new(s.vlan, s.mac), port);
    }
    table
}

/// The packet buffers' data room: a frame of the largest configured `mtu` (with an Ethernet
/// header, two VLAN tags and a CRC) must fit one buffer, behind the headroom; never less than
/// DPDK's default. Frames larger than a buffer arrive as chains, which the PMDs drop (`oversize`).
fn data_room(config: &Config) -> u16 {
    const FRAME_OVERHEAD: u16 = 14 + 2 * 4 + 4;
    let largest = config.ports.iter().filter_map(|p| p.mtu).max().unwrap_or(0);
    DEFAULT_DATA_ROOM.max(HEADROOM + largest + FRAME_OVERHEAD)
}

/// Makes way for a vhost server socket: a socket file nobody listens on (left by a switch that
/// was killed) is removed, as DPDK would fail to bind; one with a listener is an error.
fn clear_stale_socket(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else { return Ok(()) };
    if !meta.file_type().is_socket() {
        return Err(format!("{} exists and is not a socket", path.display()));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(format!("another process listens on {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            log::info!("removing the stale socket {}", path.display());
            std::fs::remove_file(path).map_err(|e| format!("cannot remove the stale socket {}: {e}", path.display()))
        }
        Err(e) => Err(format!("cannot tell whether {} is in use: {e}", path.display())),
    }
}

/// Which PMD polls each receive queue, as (port index, queue, PMD index). Pinned queues
/// (`pmd_rxq_affinity`) go to a PMD on their core (round-robin when several PMDs share it). As
/// OVS's `pmd-rxq-isolate`, a PMD with a pinned queue polls only pinned queues: the others go
/// round-robin over the remaining PMDs (over all of them when every PMD has a pinned queue).
fn assign_rxqs(config: &Config) -> Vec<(usize, u16, usize)> {
    let cores = &config.datapath.pmd_cores;
    let pinned_on =
        |pc: &ferrovs_config::PortConfig, q: u16| pc.pmd_rxq_affinity.iter().find(|(pq, _)| *pq == q).map(|(_, c)| *c);
    let mut out = Vec::new();
    let mut isolated = vec![false; cores.len()];
    let mut next_on_core: Vec<usize> = vec![0; cores.len()];
    for (idx, pc) in config.ports.iter().enumerate() {
        for q in 0..pc.rx_queues {
            let Some(core) = pinned_on(pc, q) else { continue };
            let on_core: Vec<usize> = (0..cores.len()).filter(|&p| cores[p] == core).collect();
            let first = on_core[0]; // validated: the core is a PMD core
            let pmd = on_core[next_on_core[first] % on_core.len()];
            next_on_core[first] += 1;
            isolated[pmd] = true;
            out.push((idx, q, pmd));
        }
    }
    let mut free: Vec<usize> = (0..cores.len()).filter(|&p| !isolated[p]).collect();
    if free.is_empty() {
        free = (0..cores.len()).collect();
    }
    let mut next = 0;
    for (idx, pc) in config.ports.iter().enumerate() {
        for q in (0..pc.rx_queues).filter(|&q| pinned_on(pc, q).is_none()) {
            out.push((idx, q, free[next % free.len()]));
            next += 1;
        }
    }
    out.sort_unstable();
    out
}

/// Creates one PMD per PMD core, and the control core's transmit buffers. Sender `s` (PMD `s`,
/// and the control core as sender `npmds`) transmits on queue `s % n` of a port with `n` queues,
/// under a per-burst lock when it shares that queue.
#[allow(clippy::type_complexity)]
fn build_pmds(
    config: &Config,
    ports: &mut [SwitchPort],
    tables: &Arc<FlowTables>,
    queues: &[Arc<PmdQueues>],
) -> Result<(Vec<(Pmd, Arc<PmdShared>)>, Vec<TxBuffer>), RunError> {
    let npmds = config.datapath.pmd_cores.len();
    let senders = npmds + 1;
    let mut rxqs: Vec<Vec<PolledRxq>> = (0..npmds).map(|_| Vec::new()).collect();
    for (idx, q, pmd) in assign_rxqs(config) {
        let queue = ports[idx].port.rx_queue(q)?;
        rxqs[pmd].push(PolledRxq { queue, port: PortIdx(idx as u16), ofport: config.ports[idx].ofport });
    }
    // tx[sender][port]
    let mut tx: Vec<Vec<TxBuffer>> = (0..senders).map(|_| Vec::with_capacity(ports.len())).collect();
    for sp in ports.iter_mut() {
        let nq = usize::from(sp.setup.tx_queues);
        let control_on_0 = sp.control_on_queue_0();
        let queue_of = |sender: usize| if sender == npmds && control_on_0 { 0 } else { sender % nq };
        let mut handles: Vec<Vec<_>> = Vec::with_capacity(nq);
        for q in 0..nq {
            let users = (0..senders).filter(|&s| queue_of(s) == q).count();
            handles.push(sp.port.tx_queue(q as u16, users)?);
        }
        for (sender, bufs) in tx.iter_mut().enumerate() {
            let queue = handles[queue_of(sender)].pop().expect("one handle per user");
            bufs.push(TxBuffer::new(queue, sp.link.flag()));
        }
    }
    let control_tx = tx.pop().expect("the control core is the last sender");
    let pmds = rxqs
        .into_iter()
        .zip(tx)
        .enumerate()
        .map(|(id, (rxqs, tx))| {
            let shared = Arc::new(PmdShared::default());
            let pmd = Pmd::new(
                id,
                rxqs,
                tx,
                Arc::clone(tables),
                Arc::clone(&queues[id]),
                config.datapath.upcall_rate,
                config.datapath.burst_size,
                Arc::clone(&shared),
            );
            (pmd, shared)
        })
        .collect();
    Ok((pmds, control_tx))
}

/// The control core's loop until it is time to stop: upcalls and cache promotions as they come,
/// housekeeping every [`HOUSEKEEPING`], stop conditions every [`CONTROL_TICK`]. When idle it backs
/// off from spinning to short sleeps, so it costs nothing on a quiet switch. Returns the counters
/// of the window after `opts.warmup`, if it asked for one and the run outlasted it.
fn control_loop(
    config: &Config,
    opts: &RunOptions,
    stop: &AtomicBool,
    started: Instant,
    jobs: &[(LcoreJob<PmdCounters>, Arc<PmdShared>)],
    control: &mut ControlCore,
    ports: &[SwitchPort],
) -> (Option<Window>, Vec<TimelinePoint>) {
    let mut timeline = Vec::with_capacity(if opts.timeline { TIMELINE_TICKS } else { 0 });
    let mut window_start: Option<Snapshot> = None;
    let window_end = |start: &Option<Snapshot>, control: &ControlCore| {
        let (start, warmup) = (start.as_ref()?, opts.warmup?);
        Some(Snapshot::take(jobs, control, ports).window_since(start, warmup, config))
    };
    let hz = tsc_hz();
    let (mut tick, mut housekeeping, mut log_every) =
        (Period::new(CONTROL_TICK, hz), Period::new(HOUSEKEEPING, hz), Period::new(Duration::from_secs(1), hz));
    let mut idle_passes = 0u32;
    loop {
        if control.poll() > 0 {
            idle_passes = 0;
        } else {
            idle_passes = idle_passes.saturating_add(1);
            if idle_passes > 2000 {
                // At most 100 us: a miss storm starting while asleep must not overflow the
                // upcall queues before the control core wakes.
                let backoff = 1u64 << ((idle_passes - 2000) / 64).min(7);
                std::thread::sleep(Duration::from_micros(backoff.min(100)));
            }
        }
        if housekeeping.due(rdtsc()) {
            control.housekeeping();
            housekeeping.restart(rdtsc());
        }
        if !tick.due(rdtsc()) {
            continue;
        }
        for sp in ports {
            sp.link.poll(&sp.port);
        }
        if stop.load(Ordering::Relaxed) {
            log::info!("stop requested");
            return (window_end(&window_start, control), timeline);
        }
        if opts.duration.is_some_and(|d| started.elapsed() >= d) {
            return (window_end(&window_start, control), timeline);
        }
        if opts.timeline && timeline.len() < TIMELINE_TICKS {
            timeline.push(TimelinePoint {
                secs: started.elapsed().as_secs_f64(),
                megaflows_installed: control.slow_path().counters.megaflows_installed,
                ports: packet_counts(ports),
            });
        }
        if window_start.is_none() && opts.warmup.is_some_and(|w| started.elapsed() >= w) {
            window_start = Some(Snapshot::take(jobs, control, ports));
        }
        let pmds: Vec<PmdCounters> = jobs.iter().map(|(_, s)| s.counters.read()).collect();
        let rx: u64 = pmds.iter().map(|c| c.rx_packets).sum();
        if let Some(target) = opts.stop_after_rx {
            // Every packet received has been forwarded or dropped, by a PMD or the control core.
            let handled: u64 = pmds.iter().map(|c| c.forwarded + c.drops.packets() + c.upcalls).sum();
            let upcalls: u64 = pmds.iter().map(|c| c.upcalls).sum();
            let control_done = control.counters.rx_packets == upcalls;
            if rx >= target && handled == rx && control_done {
                return (window_end(&window_start, control), timeline);
            }
            log::trace!(
                "stop-after-rx: rx {rx} handled {handled} upcalls {upcalls} control {}",
                control.counters.rx_packets
            );
        }
        if log_every.due(rdtsc()) && log::log_enabled!(log::Level::Debug) {
            let counts: Vec<String> = ports
                .iter()
                .map(|sp| {
                    let s = sp.port.stats().unwrap_or_default();
                    format!("{} rx {} tx {}", sp.port.name(), s.rx_packets, s.tx_packets)
                })
                .collect();
            log::debug!("received {rx} packets so far; ports: {}", counts.join(", "));
        }
    }
}

/// Each port's packets received and transmitted so far (0 where the driver cannot say).
fn packet_counts(ports: &[SwitchPort]) -> Vec<[u64; 2]> {
    ports.iter().map(|sp| sp.port.stats().map_or([0, 0], |s| [s.rx_packets, s.tx_packets])).collect()
}

/// A period of the control loop, timed with the TSC: `Instant::now` is a `clock_gettime`, and at
/// two a pass it was 8 % of the control core's time in a miss storm (measured with `perf`).
struct Period {
    cycles: u64,
    start: u64,
}

impl Period {
    fn new(period: Duration, tsc_hz: u64) -> Self {
        let cycles = (period.as_nanos() * u128::from(tsc_hz) / 1_000_000_000) as u64;
        Self { cycles, start: rdtsc() }
    }

    /// Whether the period has passed since it last started (and if so, it starts again now).
    fn due(&mut self, now: u64) -> bool {
        if now.wrapping_sub(self.start) < self.cycles {
            return false;
        }
        self.start = now;
        true
    }

    /// Starts the period again at `now`.
    fn restart(&mut self, now: u64) {
        self.start = now;
    }
}

/// Mbufs needed: every descriptor of every queue, what each lcore may hold (cache, one burst per
/// port in transmit buffers, one received and one dropped burst), the packets that `net_pcap`
/// preloads with `infinite_rx=1`, and a margin.
fn mempool_size(port: &PortConfig, index: usize, ports: &[SwitchPort], lcores: usize) -> u32 {
    // Its packets fill its own receive rings and may wait in any port's transmit ring.
    let own = &ports[index].setup;
    let rx_rings = u64::from(own.rx_queues) * u64::from(own.rx_desc);
    let tx_rings: u64 = ports.iter().map(|p| u64::from(p.setup.tx_queues) * u64::from(p.setup.tx_desc)).sum();
    // Each sender may hold a cache, a transmit buffer per port, a received and a dropped burst;
    // each PMD's upcall queue may hold UPCALL_QUEUE packets.
    let per_lcore = u64::from(MEMPOOL_CACHE) * 3 / 2 + (MAX_BURST * (ports.len() + 2)) as u64 + UPCALL_QUEUE as u64;
    let preloaded: u64 = if port.devargs.driver() == Some("net_pcap") && port.devargs.get("infinite_rx") == Some("1") {
        port.devargs.get_all("rx_pcap").map(Path::new).map(pcap_packets).sum()
    } else {
        0
    };
    let total = rx_rings + tx_rings + preloaded + per_lcore * lcores as u64 + 2048;
    u32::try_from(total).unwrap_or(u32::MAX)
}

/// Packets in a pcap file (for sizing); if the file cannot be read as pcap, an upper bound from
/// its size (every frame at least 60 bytes plus a 16-byte record header).
fn pcap_packets(path: &Path) -> u64 {
    let count = std::fs::File::open(path).ok().and_then(|f| {
        let mut reader = pcap_file::pcap::PcapReader::new(std::io::BufReader::new(f)).ok()?;
        let mut n = 0u64;
        while let Some(pkt) = reader.next_raw_packet() {
            pkt.ok()?;
            n += 1;
        }
        Some(n)
    });
    count.unwrap_or_else(|| std::fs::metadata(path).map_or(0, |m| m.len() / 76))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrovs_config::Host;

    fn config(pmd_cores: &str, ports: &[(u16, &str)]) -> Config {
        let mut text = format!("[datapath]\npmd_cores = {pmd_cores}\nallow_shared_cores = true\n");
        for (i, (queues, pins)) in ports.iter().enumerate() {
            text.push_str(&format!("[[port]]\nname = \"p{i}\"\ndevargs = \"net_null{i}\"\nrx_queues = {queues}\n"));
            if !pins.is_empty() {
                text.push_str(&format!("pmd_rxq_affinity = \"{pins}\"\n"));
            }
        }
        Config::parse(&text, Path::new("."), &Host { cpus: vec![0, 1, 2, 3] }).unwrap()
    }

    #[test]
    fn unpinned_queues_round_robin_over_all_pmds() {
        let c = config("[1, 2]", &[(2, ""), (1, "")]);
        assert_eq!(assign_rxqs(&c), [(0, 0, 0), (0, 1, 1), (1, 0, 0)]);
    }

    #[test]
    fn a_pmd_with_a_pinned_queue_polls_only_pinned_queues() {
        let c = config("[1, 2, 3]", &[(2, "1:2"), (2, "")]);
        // PMD 1 (core 2) has p0's queue 1 alone; the rest go round-robin over PMDs 0 and 2.
        assert_eq!(assign_rxqs(&c), [(0, 0, 0), (0, 1, 1), (1, 0, 2), (1, 1, 0)]);
    }

    #[test]
    fn pins_to_a_shared_core_spread_over_its_pmds() {
        let c = config("[1, 1]", &[(2, "0:1,1:1")]);
        assert_eq!(assign_rxqs(&c), [(0, 0, 0), (0, 1, 1)]);
        // Every PMD isolated: unpinned queues still get polled.
        let c = config("[1, 1]", &[(2, "0:1,1:1"), (1, "")]);
        assert_eq!(assign_rxqs(&c)[2], (1, 0, 0));
    }
}
