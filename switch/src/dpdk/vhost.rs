//! A vhost-user port on DPDK's vhost library (`rte_vhost`): a Unix socket a guest's virtio-net
//! (QEMU, or virtio-user) attaches to, polled by the PMDs like any port.
//!
//! Why the library and not the `net_vhost` ethdev driver: the driver walks every packet of every
//! burst again for its statistics (sizes, multicast, broadcast) and frees transmitted packets one
//! by one; measured, that was 8 % of a PMD's cycles guest to guest. Here a burst costs two atomic
//! flag writes and one bulk free, and we count what we need per burst.
//!
//! Life cycle. The library calls back on its own thread: `new_device` when the guest's driver is
//! ready, `destroy_device` when it leaves (or the switch unregisters), `vring_state_changed` when
//! the guest enables or disables a ring. A PMD may use a ring only while it is *usable* (device
//! ready and ring enabled). Around every burst it raises its queue's *busy* flag; `destroy_device`
//! first clears every usable flag, then waits until no ring is busy before it returns, after
//! which the library frees the device. Both sides use sequentially consistent operations (the
//! store-then-load pattern of Dekker's algorithm), so either the PMD sees the ring unusable or
//! the callback sees it busy. The library does not hold ring locks while it calls
//! `destroy_device`, so the wait cannot deadlock with a PMD inside a burst; it does hold them
//! around `vring_state_changed`, which therefore never waits.
//!
//! Queue pair `q` is the guest's receive ring `2q` (we enqueue) and its transmit ring `2q + 1`
//! (we dequeue). A transmit queue whose pair the guest did not enable sends on one it did
//! (`remap_tx`); its busy flag stays on its own ring.

use std::collections::VecDeque;
use std::ffi::{CStr, CString, c_char, c_int};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use dpdk_sys as sys;

use super::port::{DevInfo, Link, PortError, PortSetup, PortStats, VhostQueueEvent};
use super::{Burst, Eal, Mempool, RteError, RxQueue, TxQueue};

/// Virtio-net feature bits the switch turns off (`linux/virtio_net.h`): the guest's checksum
/// offload, and with it every segmentation offload that needs it. The data path neither
/// completes partial checksums nor segments, so guests send finished frames, as with Open
/// vSwitch when its userspace TSO is off.
const UNSUPPORTED_FEATURES: u64 = (1 << 0) // VIRTIO_NET_F_CSUM
    | (1 << 11) // VIRTIO_NET_F_HOST_TSO4
    | (1 << 12) // VIRTIO_NET_F_HOST_TSO6
    | (1 << 13) // VIRTIO_NET_F_HOST_ECN
    | (1 << 14); // VIRTIO_NET_F_HOST_UFO

/// The driver name ferrovs reports for these ports.
pub const VHOST_DRIVER: &str = "vhost-user";

/// How long `destroy_device` waits for the PMDs to leave the device's rings before it gives up
/// and logs (a PMD stays in a burst for microseconds; only a stopped machine takes longer).
const QUIESCE_WARN_AFTER: Duration = Duration::from_secs(1);

/// One ring's state, on a cache line of its own (written per burst by the one core using it).
#[derive(Default)]
#[repr(align(64))]
struct Vring {
    /// The device is ready and the guest enabled the ring.
    usable: AtomicBool,
    /// A PMD is inside a burst on the ring.
    busy: AtomicBool,
    packets: AtomicU64,
    bytes: AtomicU64,
}

/// The control side's view of the connection.
#[derive(Default)]
struct Connection {
    /// The library's device id while a guest driver is attached.
    vid: Option<c_int>,
    /// The guest enabled ring `i`.
    enabled: Vec<bool>,
}

/// What the port, its queue handles and the library's callbacks share.
pub(crate) struct VhostShared {
    name: String,
    path: CString,
    /// The device id the PMDs use; valid while a ring they use is usable.
    vid: AtomicI32,
    vrings: Box<[Vring]>,
    /// Per transmit queue: the queue pair it sends on (see `remap_tx`).
    tx_target: Box<[AtomicU16]>,
    connection: Mutex<Connection>,
    events: Mutex<VecDeque<VhostQueueEvent>>,
    link_up: AtomicBool,
    _eal: Eal,
}

impl VhostShared {
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.connection.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes which rings the PMDs may use. Called with the connection locked.
    fn publish(&self, conn: &Connection) {
        for (i, ring) in self.vrings.iter().enumerate() {
            let usable = conn.vid.is_some() && conn.enabled.get(i).copied().unwrap_or(false);
            ring.usable.store(usable, Ordering::SeqCst);
        }
        self.remap_tx();
        self.link_up.store(conn.vid.is_some(), Ordering::Relaxed);
    }

    /// Points each transmit queue at a pair whose receive ring the guest enabled: its own when
    /// enabled, else the enabled ones in turn (a guest may enable fewer pairs than the port has:
    /// a one-vCPU Linux guest enables one). Several cores may then enqueue on one ring, which the
    /// library serialises with the ring's lock; counters and busy flags stay per queue.
    fn remap_tx(&self) {
        let pairs = self.tx_target.len();
        let enabled: Vec<u16> =
            (0..pairs as u16).filter(|&p| self.vrings[usize::from(2 * p)].usable.load(Ordering::SeqCst)).collect();
        for (q, target) in self.tx_target.iter().enumerate() {
            let to =
                if enabled.is_empty() || enabled.contains(&(q as u16)) { q as u16 } else { enabled[q % enabled.len()] };
            if target.swap(to, Ordering::SeqCst) != to && to != q as u16 {
                log::info!("port {}: transmit queue {q} sends on the guest's queue {to}", self.name);
            }
        }
    }

    /// Waits until no PMD is inside a burst on any ring (every ring was made unusable first).
    fn wait_quiescent(&self) {
        let start = Instant::now();
        let mut warned = false;
        while self.vrings.iter().any(|r| r.busy.load(Ordering::SeqCst)) {
            if !warned && start.elapsed() > QUIESCE_WARN_AFTER {
                log::warn!("port {}: still waiting for the PMDs to leave the device", self.name);
                warned = true;
            }
            std::hint::spin_loop();
        }
    }

    /// Receives up to `want` packets from the guest's transmit ring of queue pair `queue` into
    /// `slots`; 0 when the ring is not usable.
    ///
    /// # Safety
    /// `slots` has room for `want` pointers; `pool` is a live mempool; only one core dequeues
    /// from this queue at a time.
    #[inline]
    unsafe fn dequeue(
        &self,
        queue: u16,
        pool: *mut sys::rte_mempool,
        slots: *mut *mut sys::rte_mbuf,
        want: u16,
    ) -> u16 {
        let ring = 2 * queue + 1;
        let vr = &self.vrings[usize::from(ring)];
        vr.busy.store(true, Ordering::SeqCst);
        let n = if vr.usable.load(Ordering::SeqCst) {
            // SAFETY: the ring is usable and we are marked busy on it, so `destroy_device` has not
            // returned for this vid (it waits for us); the caller vouches for the rest.
            unsafe { sys::rte_vhost_dequeue_burst(self.vid.load(Ordering::Relaxed), ring, pool, slots, want) }
        } else {
            0
        };
        vr.busy.store(false, Ordering::Release);
        n
    }

    /// Copies up to `n` packets from `pkts` into the guest's receive ring of queue pair `queue`;
    /// returns how many it copied (the packets stay ours).
    ///
    /// # Safety
    /// `pkts` holds `n` valid mbufs; only one core enqueues on this queue at a time.
    #[inline]
    unsafe fn enqueue(&self, queue: u16, pkts: *mut *mut sys::rte_mbuf, n: u16) -> u16 {
        // Busy on our own queue's ring, whichever ring we send on (see `remap_tx`).
        let own = &self.vrings[usize::from(2 * queue)];
        own.busy.store(true, Ordering::SeqCst);
        let ring = 2 * self.tx_target[usize::from(queue)].load(Ordering::Relaxed);
        let sent = if self.vrings[usize::from(ring)].usable.load(Ordering::SeqCst) {
            // SAFETY: as in `dequeue`; the library takes the ring's lock against other senders.
            unsafe { sys::rte_vhost_enqueue_burst(self.vid.load(Ordering::Relaxed), ring, pkts, n) }
        } else {
            0
        };
        own.busy.store(false, Ordering::Release);
        sent
    }

    /// Adds to a ring's counters (one writer at a time: the core that owns the queue).
    #[inline]
    fn count(&self, ring: u16, packets: usize, bytes: u64) {
        let vr = &self.vrings[usize::from(ring)];
        vr.packets.store(vr.packets.load(Ordering::Relaxed) + packets as u64, Ordering::Relaxed);
        vr.bytes.store(vr.bytes.load(Ordering::Relaxed) + bytes, Ordering::Relaxed);
    }

    /// Receives into the free room of `burst` (at most `max`); returns how many arrived.
    #[inline]
    pub(crate) fn recv(&self, queue: u16, pool: &Mempool, burst: &mut Burst, max: usize) -> usize {
        let (slots, room) = burst.spare_raw();
        let want = room.min(max) as u16;
        if want == 0 {
            return 0;
        }
        let before = burst.len();
        // SAFETY: `slots` has room for `want`; the pool is alive (the queue holds it); the handle
        // is the queue's only user (RxQueue is unique and !Sync).
        let n = usize::from(unsafe { self.dequeue(queue, pool.as_ptr(), slots, want) });
        // SAFETY: the library wrote `n` mbufs that we now own.
        unsafe { burst.commit_filled(n) };
        if n > 0 {
            let bytes = burst.as_slice()[before..].iter().map(|p| p.len() as u64).sum();
            self.count(2 * queue + 1, n, bytes);
        }
        n
    }

    /// Copies the packets of `burst` to the guest, front first, and frees the ones copied (in
    /// bulk); returns how many. The rest stay at the front of `burst`.
    #[inline]
    pub(crate) fn send(&self, queue: u16, burst: &mut Burst) -> usize {
        let n = burst.len() as u16;
        // SAFETY: the burst holds `n` valid mbufs; the caller serialises users of the queue.
        let sent = usize::from(unsafe { self.enqueue(queue, burst.filled_raw(), n) });
        if sent > 0 {
            let bytes = burst.as_slice()[..sent].iter().map(|p| p.len() as u64).sum();
            self.count(2 * queue, sent, bytes);
            burst.free_front(sent);
        }
        sent
    }
}

/// Every registered vhost port, for the library's callbacks to find theirs by socket path.
static REGISTRY: Mutex<Vec<Arc<VhostShared>>> = Mutex::new(Vec::new());

fn registry() -> MutexGuard<'static, Vec<Arc<VhostShared>>> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// The port whose socket device `vid` came in on.
fn port_of(vid: c_int) -> Option<Arc<VhostShared>> {
    let mut buf = [0 as c_char; 256];
    // SAFETY: `buf` is writable for its length; the library NUL-terminates what it writes.
    if unsafe { sys::rte_vhost_get_ifname(vid, buf.as_mut_ptr(), buf.len()) } < 0 {
        return None;
    }
    // SAFETY: NUL-terminated above.
    let path = unsafe { CStr::from_ptr(buf.as_ptr()) };
    registry().iter().find(|p| p.path.as_c_str() == path).cloned()
}

unsafe extern "C" fn new_device(vid: c_int) -> c_int {
    let Some(port) = port_of(vid) else { return -1 };
    // SAFETY: `vid` is the device being announced; these calls are allowed from the callback.
    let vrings = unsafe { sys::rte_vhost_get_vring_num(vid) };
    for ring in 0..vrings {
        // The PMDs poll: the guest need not kick us (nor we it) for every packet.
        // SAFETY: as above; `ring` is below the device's ring count.
        unsafe { sys::rte_vhost_enable_guest_notification(vid, ring, 0) };
    }
    let mut conn = port.lock();
    port.vid.store(vid, Ordering::SeqCst);
    conn.vid = Some(vid);
    port.publish(&conn);
    drop(conn);
    if usize::from(vrings) > port.vrings.len() {
        log::warn!(
            "port {}: the guest has {} queue pairs, the port {}; the others are not polled",
            port.name,
            vrings / 2,
            port.vrings.len() / 2
        );
    }
    0
}

unsafe extern "C" fn destroy_device(vid: c_int) {
    let Some(port) = port_of(vid) else { return };
    let mut conn = port.lock();
    if conn.vid != Some(vid) {
        return;
    }
    conn.vid = None;
    port.publish(&conn);
    drop(conn);
    port.wait_quiescent();
}

unsafe extern "C" fn vring_state_changed(vid: c_int, ring: u16, enable: c_int) -> c_int {
    let Some(port) = port_of(vid) else { return 0 };
    let enabled = enable != 0;
    let mut conn = port.lock();
    let i = usize::from(ring);
    if conn.enabled.len() <= i {
        conn.enabled.resize(i + 1, false);
    }
    if conn.enabled[i] == enabled {
        return 0;
    }
    conn.enabled[i] = enabled;
    if conn.vid == Some(vid) {
        port.publish(&conn);
    }
    drop(conn);
    if i < port.vrings.len() {
        let ev = VhostQueueEvent { queue: ring / 2, rx: ring % 2 == 1, enabled };
        port.events.lock().unwrap_or_else(|e| e.into_inner()).push_back(ev);
    }
    0
}

/// The callbacks, in a static the library keeps a pointer to.
struct DeviceOps(sys::rte_vhost_device_ops);

// SAFETY: never written after initialisation; its only pointer field (`reserved`) is null.
unsafe impl Sync for DeviceOps {}

static DEVICE_OPS: DeviceOps = DeviceOps(sys::rte_vhost_device_ops {
    new_device: Some(new_device),
    destroy_device: Some(destroy_device),
    vring_state_changed: Some(vring_state_changed),
    features_changed: None,
    new_connection: None,
    destroy_connection: None,
    guest_notified: None,
    reserved: [std::ptr::null_mut(); 1],
});

/// A vhost-user port. Queue handles are taken from it once configured; it is stopped (the socket
/// unregistered, the guest disconnected) only when every handle has been dropped.
pub struct VhostUserPort {
    shared: Arc<VhostShared>,
    client: bool,
    queues: u16,
    mtu: Option<u16>,
    rx_taken: Vec<bool>,
    tx_taken: Vec<bool>,
    pool: Option<Arc<Mempool>>,
    registered: bool,
    /// One clone per queue handle (the shared state is also held by the library's callbacks).
    users: Arc<()>,
}

// SAFETY: the raw pointers inside are the library's, used by the owner only; see `Port`.
unsafe impl Send for VhostUserPort {}

impl VhostUserPort {
    /// A port on socket `path` with `queues` queue pairs; `client`: the guest listens and we
    /// connect (and reconnect), else we listen. Nothing happens until [`start`](Self::start).
    pub fn new(eal: &Eal, name: &str, path: &Path, client: bool, queues: u16) -> Result<Self, PortError> {
        let cpath = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| PortError::BadDevargs { name: name.into(), devargs: path.display().to_string() })?;
        let shared = Arc::new(VhostShared {
            name: name.into(),
            path: cpath,
            vid: AtomicI32::new(-1),
            vrings: (0..2 * usize::from(queues.max(1))).map(|_| Vring::default()).collect(),
            tx_target: (0..queues.max(1)).map(AtomicU16::new).collect(),
            connection: Mutex::new(Connection::default()),
            events: Mutex::new(VecDeque::new()),
            link_up: AtomicBool::new(false),
            _eal: eal.clone(),
        });
        Ok(Self {
            shared,
            client,
            queues: queues.max(1),
            mtu: None,
            rx_taken: Vec::new(),
            tx_taken: Vec::new(),
            pool: None,
            registered: false,
            users: Arc::new(()),
        })
    }

    /// Our name for the port.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    fn call_err(&self, call: &'static str) -> impl FnOnce(RteError) -> PortError + '_ {
        move |source| PortError::Call { name: self.name().into(), call, source }
    }

    /// What the port supports: as many queues as it has pairs.
    pub fn info(&self) -> DevInfo {
        DevInfo {
            driver: VHOST_DRIVER.into(),
            max_rx_queues: self.queues,
            max_tx_queues: self.queues,
            max_mtu: 9710,
            rss_offloads: 0,
            socket: None,
        }
    }

    /// Records the queue counts, the MTU and the pool received packets are copied into.
    pub fn configure(&mut self, setup: &PortSetup, pool: &Arc<Mempool>) -> Result<(), PortError> {
        self.ensure_idle("configure")?;
        for (kind, asked) in [("rx", setup.rx_queues), ("tx", setup.tx_queues)] {
            if asked == 0 || asked > self.queues {
                return Err(PortError::TooManyQueues {
                    name: self.name().into(),
                    kind,
                    asked,
                    max: self.queues,
                    driver: VHOST_DRIVER.into(),
                });
            }
        }
        self.mtu = setup.mtu;
        self.pool = Some(Arc::clone(pool));
        self.rx_taken = vec![false; usize::from(setup.rx_queues)];
        self.tx_taken = vec![false; usize::from(setup.tx_queues)];
        Ok(())
    }

    /// Registers the socket with the library and starts listening or connecting.
    pub fn start(&mut self) -> Result<(), PortError> {
        if self.registered {
            return Ok(());
        }
        if registry().iter().any(|p| p.path == self.shared.path) {
            return Err(PortError::Call {
                name: self.name().into(),
                call: "rte_vhost_driver_register",
                source: RteError::from_ret(-libc_eexist()),
            });
        }
        let path = self.shared.path.as_ptr();
        let mut flags = u64::from(sys::RTE_VHOST_USER_NET_COMPLIANT_OL_FLAGS);
        if self.client {
            flags |= u64::from(sys::RTE_VHOST_USER_CLIENT);
        }
        // SAFETY: EAL is initialised; `path` is NUL-terminated and outlives the registration
        // (the shared state keeps it until after unregistering).
        RteError::check(unsafe { sys::rte_vhost_driver_register(path, flags) })
            .map_err(self.call_err("rte_vhost_driver_register"))?;
        registry().push(Arc::clone(&self.shared));
        self.registered = true;
        // SAFETY: registered above; DEVICE_OPS is static.
        let steps = [
            ("rte_vhost_driver_disable_features", unsafe {
                sys::rte_vhost_driver_disable_features(path, UNSUPPORTED_FEATURES)
            }),
            // SAFETY: as above.
            ("rte_vhost_driver_callback_register", unsafe {
                sys::rte_vhost_driver_callback_register(path, &DEVICE_OPS.0)
            }),
            // SAFETY: as above; from here the callbacks may run.
            ("rte_vhost_driver_start", unsafe { sys::rte_vhost_driver_start(path) }),
        ];
        for (call, ret) in steps {
            if let Err(e) = RteError::check(ret) {
                let err = self.call_err(call)(e);
                self.unregister();
                return Err(err);
            }
        }
        Ok(())
    }

    /// Disconnects the guest and forgets the socket (removing it in server mode). The library
    /// calls `destroy_device` first, which waits for the PMDs to leave the rings.
    fn unregister(&mut self) {
        if !self.registered {
            return;
        }
        // SAFETY: the path was registered by us and is still alive.
        let ret = unsafe { sys::rte_vhost_driver_unregister(self.shared.path.as_ptr()) };
        if ret < 0 {
            log::warn!("port {}: rte_vhost_driver_unregister: {}", self.name(), RteError::from_ret(ret));
        }
        // Only now: `destroy_device`, called while unregistering, finds the port here.
        registry().retain(|p| !Arc::ptr_eq(p, &self.shared));
        self.registered = false;
    }

    /// Stops the port: the guest is disconnected. Every queue handle must have been dropped.
    pub fn stop(&mut self) -> Result<(), PortError> {
        self.ensure_idle("stop")?;
        self.unregister();
        self.rx_taken.iter_mut().chain(self.tx_taken.iter_mut()).for_each(|t| *t = false);
        Ok(())
    }

    fn ensure_idle(&self, op: &'static str) -> Result<(), PortError> {
        let count = Arc::strong_count(&self.users) - 1;
        if count == 0 { Ok(()) } else { Err(PortError::QueuesInUse { name: self.name().into(), op, count }) }
    }

    /// Up while a guest driver is attached.
    pub fn link(&self) -> Link {
        Link { up: self.shared.link_up.load(Ordering::Relaxed), speed_mbps: 10_000, full_duplex: true }
    }

    /// The configured MTU (1500 by default).
    pub fn mtu(&self) -> u16 {
        self.mtu.unwrap_or(1500)
    }

    /// Packets and bytes per direction, as counted per burst.
    pub fn stats(&self) -> PortStats {
        let ring = |i: usize| {
            let r = &self.shared.vrings[i];
            (r.packets.load(Ordering::Relaxed), r.bytes.load(Ordering::Relaxed))
        };
        let mut s = PortStats::default();
        for q in 0..usize::from(self.queues) {
            let (tx_p, tx_b) = ring(2 * q);
            let (rx_p, rx_b) = ring(2 * q + 1);
            s.tx_packets += tx_p;
            s.tx_bytes += tx_b;
            s.rx_packets += rx_p;
            s.rx_bytes += rx_b;
            if q < self.rx_taken.len() {
                s.rx_queue_packets.push(rx_p);
            }
        }
        s
    }

    /// The next enable or disable of one of the port's rings by the guest, if any.
    pub fn queue_event(&self) -> Option<VhostQueueEvent> {
        self.shared.events.lock().unwrap_or_else(|e| e.into_inner()).pop_front()
    }

    /// Hands out receive queue `queue` to one polling core.
    pub fn rx_queue(&mut self, queue: u16) -> Result<RxQueue, PortError> {
        let pool = self.pool.clone().ok_or_else(|| self.unavailable("rx", queue))?;
        take(&mut self.rx_taken, queue).ok_or_else(|| self.unavailable("rx", queue))?;
        Ok(RxQueue::vhost(Arc::clone(&self.shared), pool, queue, Arc::clone(&self.users)))
    }

    /// Hands out transmit queue `queue` to `users` cores (sharing a per-burst lock when several).
    pub fn tx_queue(&mut self, queue: u16, users: usize) -> Result<Vec<TxQueue>, PortError> {
        take(&mut self.tx_taken, queue).ok_or_else(|| self.unavailable("tx", queue))?;
        let lock = (users > 1).then(|| Arc::new(Mutex::new(())));
        Ok((0..users.max(1))
            .map(|_| TxQueue::vhost(Arc::clone(&self.shared), queue, lock.clone(), Arc::clone(&self.users)))
            .collect())
    }

    fn unavailable(&self, kind: &'static str, queue: u16) -> PortError {
        PortError::QueueUnavailable { name: self.name().into(), kind, queue }
    }
}

impl Drop for VhostUserPort {
    fn drop(&mut self) {
        if self.ensure_idle("drop").is_ok() {
            self.unregister();
        } else {
            // Queues may still be polled: leave the device registered and the pool alive.
            log::error!("port {}: dropped while queues are in use; leaking it", self.name());
            std::mem::forget(self.pool.take());
        }
    }
}

impl Drop for VhostShared {
    fn drop(&mut self) {
        debug_assert!(self.vrings.iter().all(|r| !r.busy.load(Ordering::Relaxed)));
    }
}

fn take(taken: &mut [bool], queue: u16) -> Option<()> {
    let slot = taken.get_mut(usize::from(queue))?;
    if *slot {
        return None;
    }
    *slot = true;
    Some(())
}

const fn libc_eexist() -> i32 {
    17 // EEXIST on Linux
}
