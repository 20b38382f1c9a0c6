//! An ethdev port: probe by devargs, configure queues, start/stop/close, link, MAC and statistics.

use std::ffi::{CStr, CString};
use std::sync::{Arc, Mutex};

use dpdk_sys as sys;

use super::{Eal, Mempool, RteError, RxQueue, TxQueue};

/// Why a port operation failed. Each names the port and the DPDK call.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// Devargs with a NUL byte.
    #[error("port {name}: devargs {devargs:?} contain a NUL byte")]
    BadDevargs {
        /// Our name for the port.
        name: String,
        /// As given.
        devargs: String,
    },
    /// The bus refused to probe the device.
    #[error("port {name}: cannot probe device {devargs:?}: {source}")]
    Probe {
        /// Our name for the port.
        name: String,
        /// As given.
        devargs: String,
        /// DPDK's reason.
        source: RteError,
    },
    /// Probing succeeded but no ethdev port matches the devargs.
    #[error("port {name}: no ethernet port matches devargs {devargs:?} (is it a network device?)")]
    NotFound {
        /// Our name for the port.
        name: String,
        /// As given.
        devargs: String,
    },
    /// A DPDK call on the port failed.
    #[error("port {name}: {call} failed: {source}")]
    Call {
        /// Our name for the port.
        name: String,
        /// The DPDK function.
        call: &'static str,
        /// DPDK's reason.
        source: RteError,
    },
    /// More queues asked for than the device has.
    #[error("port {name}: asked for {asked} {kind} queues, the device ({driver}) has at most {max}")]
    TooManyQueues {
        /// Our name for the port.
        name: String,
        /// "rx" or "tx".
        kind: &'static str,
        /// Asked for.
        asked: u16,
        /// The device's limit.
        max: u16,
        /// Driver name.
        driver: String,
    },
    /// A queue handle is still alive where the port must be idle.
    #[error("port {name}: cannot {op} while {count} queue handle(s) are still in use")]
    QueuesInUse {
        /// Our name for the port.
        name: String,
        /// What was attempted.
        op: &'static str,
        /// How many handles remain.
        count: usize,
    },
    /// A queue id out of range, or a queue handed out twice.
    #[error("port {name}: {kind} queue {queue} is not configured or already taken")]
    QueueUnavailable {
        /// Our name for the port.
        name: String,
        /// "rx" or "tx".
        kind: &'static str,
        /// The queue id.
        queue: u16,
    },
}

/// How to configure a port's queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSetup {
    /// Receive queues.
    pub rx_queues: u16,
    /// Transmit queues.
    pub tx_queues: u16,
    /// Descriptors per receive queue (DPDK adjusts to the device's limits).
    pub rx_desc: u16,
    /// Descriptors per transmit queue.
    pub tx_desc: u16,
    /// The MTU to configure; `None` leaves the device's default (1500).
    pub mtu: Option<u16>,
}

/// What the device can do (`rte_eth_dev_info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevInfo {
    /// Driver name, e.g. `net_pcap`.
    pub driver: String,
    /// Most receive queues.
    pub max_rx_queues: u16,
    /// Most transmit queues.
    pub max_tx_queues: u16,
    /// Largest MTU.
    pub max_mtu: u16,
    /// Hash functions the device's RSS supports (`RTE_ETH_RSS_*` bits).
    pub rss_offloads: u64,
    /// NUMA socket, if known.
    pub socket: Option<i32>,
}

/// Link state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// Whether the link is up.
    pub up: bool,
    /// Speed in Mbit/s (0 when unknown).
    pub speed_mbps: u32,
    /// Full duplex.
    pub full_duplex: bool,
}

/// Port counters as the driver keeps them (`rte_eth_stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PortStats {
    /// Packets received.
    pub rx_packets: u64,
    /// Packets transmitted.
    pub tx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes transmitted.
    pub tx_bytes: u64,
    /// Packets the NIC dropped because its rx queue was full.
    pub rx_missed: u64,
    /// Erroneous received packets.
    pub rx_errors: u64,
    /// Failed transmissions.
    pub tx_errors: u64,
    /// Receive failures for lack of mbufs.
    pub rx_nombuf: u64,
    /// Packets received per receive queue (the first 16 queues, as DPDK counts them).
    pub rx_queue_packets: Vec<u64>,
}

/// A vhost-user queue that the guest enabled or disabled (`net_vhost` ports only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VhostQueueEvent {
    /// The queue (pair) number.
    pub queue: u16,
    /// Our receive queue (the guest's transmit ring) when true, our transmit queue otherwise.
    pub rx: bool,
    /// Enabled, or disabled.
    pub enabled: bool,
}

/// What queue handles share: the port's identity, kept alive while any handle exists.
pub(crate) struct PortShared {
    pub(crate) id: u16,
    pub(crate) name: String,
    _eal: Eal,
}

/// A probed ethdev port. Queue handles are taken from it once configured; it can be stopped or
/// closed only when every handle has been dropped (so no core polls a stopped device).
pub struct Port {
    shared: Arc<PortShared>,
    device: *mut sys::rte_device,
    driver: String,
    rx_taken: Vec<bool>,
    tx_taken: Vec<bool>,
    pools: Vec<Arc<Mempool>>,
    started: bool,
    closed: bool,
}

// SAFETY: `device` is only used on close, by the owner; DPDK's control-path calls on a port are safe
// from any thread as long as they are not concurrent, which `&mut self` guarantees.
unsafe impl Send for Port {}

impl Port {
    /// Probes the device named by `devargs` (a PCI address or a vdev like `net_pcap0,rx_pcap=in.pcap`)
    /// and finds its ethdev port.
    pub fn attach(eal: &Eal, name: &str, devargs: &str) -> Result<Self, PortError> {
        let cargs =
            CString::new(devargs).map_err(|_| PortError::BadDevargs { name: name.into(), devargs: devargs.into() })?;
        // SAFETY: EAL is initialised; the string is NUL-terminated and only read.
        let ret = unsafe { sys::rte_dev_probe(cargs.as_ptr()) };
        if ret < 0 {
            return Err(PortError::Probe {
                name: name.into(),
                devargs: devargs.into(),
                source: RteError::from_ret(ret),
            });
        }
        let id = find_port(&cargs).ok_or_else(|| PortError::NotFound { name: name.into(), devargs: devargs.into() })?;
        let mut info = sys::rte_eth_dev_info::default();
        // SAFETY: `id` is a valid port (the iterator returned it); `info` is a writable struct.
        RteError::check(unsafe { sys::rte_eth_dev_info_get(id, &mut info) }).map_err(|source| PortError::Call {
            name: name.into(),
            call: "rte_eth_dev_info_get",
            source,
        })?;
        Ok(Self {
            shared: Arc::new(PortShared { id, name: name.into(), _eal: eal.clone() }),
            device: info.device,
            driver: driver_name(&info),
            rx_taken: Vec::new(),
            tx_taken: Vec::new(),
            pools: Vec::new(),
            started: false,
            closed: false,
        })
    }

    /// Our name for the port.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The driver's name, e.g. `net_pcap`.
    pub fn driver(&self) -> &str {
        &self.driver
    }

    /// DPDK's port id.
    pub fn id(&self) -> u16 {
        self.shared.id
    }

    fn call_err(&self, call: &'static str) -> impl FnOnce(RteError) -> PortError + '_ {
        move |source| PortError::Call { name: self.name().into(), call, source }
    }

    /// What the device supports.
    pub fn info(&self) -> Result<DevInfo, PortError> {
        let mut info = sys::rte_eth_dev_info::default();
        // SAFETY: valid port id; `info` is writable.
        RteError::check(unsafe { sys::rte_eth_dev_info_get(self.id(), &mut info) })
            .map_err(self.call_err("rte_eth_dev_info_get"))?;
        let driver = driver_name(&info);
        // SAFETY: valid port id.
        let socket = unsafe { sys::rte_eth_dev_socket_id(self.id()) };
        Ok(DevInfo {
            driver,
            max_rx_queues: info.max_rx_queues,
            max_tx_queues: info.max_tx_queues,
            max_mtu: info.max_mtu,
            rss_offloads: info.flow_type_rss_offloads,
            socket: (socket >= 0).then_some(socket),
        })
    }

    /// Configures queue counts and sets up every queue; receive queues take buffers from `pool`.
    /// With several receive queues, RSS spreads flows over them (IP/TCP/UDP hash, as supported).
    pub fn configure(&mut self, setup: &PortSetup, pool: &Arc<Mempool>) -> Result<(), PortError> {
        self.ensure_idle("configure")?;
        let info = self.info()?;
        for (kind, asked, max) in
            [("rx", setup.rx_queues, info.max_rx_queues), ("tx", setup.tx_queues, info.max_tx_queues)]
        {
            if asked == 0 || asked > max {
                return Err(PortError::TooManyQueues {
                    name: self.name().into(),
                    kind,
                    asked,
                    max,
                    driver: info.driver.clone(),
                });
            }
        }
        let mut conf = sys::rte_eth_conf::default();
        // 0 is DPDK's "default" (1500); rte_eth_dev_configure checks the value against the device.
        conf.rxmode.mtu = u32::from(setup.mtu.unwrap_or(0));
        if setup.rx_queues > 1 {
            conf.rxmode.mq_mode = sys::rte_eth_rx_mq_mode::RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf =
                u64::from(sys::RTE_ETH_RSS_IP | sys::RTE_ETH_RSS_TCP | sys::RTE_ETH_RSS_UDP) & info.rss_offloads;
        }
        // SAFETY: valid, stopped port; `conf` is a fully initialised struct DPDK only reads.
        RteError::check(unsafe { sys::rte_eth_dev_configure(self.id(), setup.rx_queues, setup.tx_queues, &conf) })
            .map_err(self.call_err("rte_eth_dev_configure"))?;
        let (mut rx_desc, mut tx_desc) = (setup.rx_desc, setup.tx_desc);
        // SAFETY: valid port; both pointers are to local u16s.
        RteError::check(unsafe { sys::rte_eth_dev_adjust_nb_rx_tx_desc(self.id(), &mut rx_desc, &mut tx_desc) })
            .map_err(self.call_err("rte_eth_dev_adjust_nb_rx_tx_desc"))?;
        let socket = info.socket.unwrap_or(0) as u32;
        for q in 0..setup.rx_queues {
            // SAFETY: configured port, queue id below the configured count; the pool outlives the
            // port because we keep an Arc to it in `self.pools`.
            RteError::check(unsafe {
                sys::rte_eth_rx_queue_setup(self.id(), q, rx_desc, socket, std::ptr::null(), pool.as_ptr())
            })
            .map_err(self.call_err("rte_eth_rx_queue_setup"))?;
        }
        for q in 0..setup.tx_queues {
            // SAFETY: configured port, queue id below the configured count; default txconf.
            RteError::check(unsafe { sys::rte_eth_tx_queue_setup(self.id(), q, tx_desc, socket, std::ptr::null()) })
                .map_err(self.call_err("rte_eth_tx_queue_setup"))?;
        }
        self.pools = vec![Arc::clone(pool)];
        self.rx_taken = vec![false; usize::from(setup.rx_queues)];
        self.tx_taken = vec![false; usize::from(setup.tx_queues)];
        Ok(())
    }

    /// Starts the device.
    pub fn start(&mut self) -> Result<(), PortError> {
        // SAFETY: valid, configured port.
        RteError::check(unsafe { sys::rte_eth_dev_start(self.id()) }).map_err(self.call_err("rte_eth_dev_start"))?;
        self.started = true;
        Ok(())
    }

    /// Stops the device. Every queue handle must have been dropped (no core may be polling it).
    pub fn stop(&mut self) -> Result<(), PortError> {
        self.ensure_idle("stop")?;
        if self.started {
            // SAFETY: valid port; no queue handle exists, so no thread is in rx/tx burst on it.
            RteError::check(unsafe { sys::rte_eth_dev_stop(self.id()) }).map_err(self.call_err("rte_eth_dev_stop"))?;
            self.started = false;
        }
        self.rx_taken.iter_mut().chain(self.tx_taken.iter_mut()).for_each(|t| *t = false);
        Ok(())
    }

    /// Stops, closes and detaches the device, releasing every mbuf it held.
    pub fn close(mut self) -> Result<(), PortError> {
        self.close_inner()
    }

    fn close_inner(&mut self) -> Result<(), PortError> {
        if self.closed {
            return Ok(());
        }
        self.stop()?;
        self.closed = true;
        // SAFETY: stopped port with no queue handles; after this call the id is invalid, and we
        // never use it again (`closed`).
        RteError::check(unsafe { sys::rte_eth_dev_close(self.id()) }).map_err(self.call_err("rte_eth_dev_close"))?;
        if !self.device.is_null() {
            // SAFETY: the device pointer came from dev_info of this port, whose ethdev is now closed;
            // removing it lets the same devargs be probed again later.
            let ret = unsafe { sys::rte_dev_remove(self.device) };
            if ret < 0 {
                log::debug!("port {}: rte_dev_remove: {}", self.name(), RteError::from_ret(ret));
            }
        }
        Ok(())
    }

    fn ensure_idle(&self, op: &'static str) -> Result<(), PortError> {
        let count = Arc::strong_count(&self.shared) - 1;
        if count == 0 { Ok(()) } else { Err(PortError::QueuesInUse { name: self.name().into(), op, count }) }
    }

    /// Link state, without waiting for auto-negotiation.
    pub fn link(&self) -> Result<Link, PortError> {
        let mut link = sys::rte_eth_link::default();
        // SAFETY: valid port; `link` is writable.
        RteError::check(unsafe { sys::rte_eth_link_get_nowait(self.id(), &mut link) })
            .map_err(self.call_err("rte_eth_link_get_nowait"))?;
        Ok(Link {
            up: u32::from(link.link_status()) == sys::RTE_ETH_LINK_UP,
            speed_mbps: link.link_speed,
            full_duplex: link.link_duplex() != 0,
        })
    }

    /// The port's MAC address.
    pub fn mac(&self) -> Result<[u8; 6], PortError> {
        let mut addr = sys::rte_ether_addr::default();
        // SAFETY: valid port; `addr` is writable.
        RteError::check(unsafe { sys::rte_eth_macaddr_get(self.id(), &mut addr) })
            .map_err(self.call_err("rte_eth_macaddr_get"))?;
        Ok(addr.addr_bytes)
    }

    /// The driver's counters.
    pub fn stats(&self) -> Result<PortStats, PortError> {
        let mut s = sys::rte_eth_stats::default();
        // SAFETY: valid port; `s` is writable. Reading stats is safe alongside rx/tx bursts.
        RteError::check(unsafe { sys::rte_eth_stats_get(self.id(), &mut s) })
            .map_err(self.call_err("rte_eth_stats_get"))?;
        let queues = self.rx_taken.len().min(s.q_ipackets.len());
        Ok(PortStats {
            rx_queue_packets: s.q_ipackets[..queues].to_vec(),
            rx_packets: s.ipackets,
            tx_packets: s.opackets,
            rx_bytes: s.ibytes,
            tx_bytes: s.obytes,
            rx_missed: s.imissed,
            rx_errors: s.ierrors,
            tx_errors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }

    /// The port's MTU as the device reports it now (a vhost port takes the guest's, when the
    /// guest negotiates one).
    pub fn mtu(&self) -> Result<u16, PortError> {
        let mut mtu = 0u16;
        // SAFETY: valid port; `mtu` is writable.
        RteError::check(unsafe { sys::rte_eth_dev_get_mtu(self.id(), &mut mtu) })
            .map_err(self.call_err("rte_eth_dev_get_mtu"))?;
        Ok(mtu)
    }

    /// The next change of a vhost-user queue's state since the last call, if any; always `None`
    /// for ports of other drivers. (The driver keeps the latest state per queue, so a queue
    /// switched off and on again between two calls reports nothing.)
    pub fn vhost_queue_event(&self) -> Option<VhostQueueEvent> {
        if self.driver != "net_vhost" || self.closed {
            return None;
        }
        let mut ev = sys::rte_eth_vhost_queue_event::default();
        // SAFETY: the port is a live net_vhost port (checked above), for which the driver keeps
        // the queue states this reads under its own lock; `ev` is writable.
        let ret = unsafe { sys::rte_eth_vhost_get_queue_event(self.id(), &mut ev) };
        (ret == 0).then_some(VhostQueueEvent { queue: ev.queue_id, rx: ev.rx, enabled: ev.enable })
    }

    /// Receives every frame regardless of destination MAC (a switch port must). Devices that
    /// cannot (some vdevs) are already promiscuous in effect; their refusal is not an error.
    pub fn enable_promiscuous(&self) {
        // SAFETY: valid port.
        let ret = unsafe { sys::rte_eth_promiscuous_enable(self.id()) };
        if ret < 0 && ret != -libc_enotsup() {
            log::warn!("port {}: cannot enable promiscuous mode: {}", self.name(), RteError::from_ret(ret));
        }
    }

    /// Hands out receive queue `queue` to one polling core.
    pub fn rx_queue(&mut self, queue: u16) -> Result<RxQueue, PortError> {
        take(&mut self.rx_taken, queue).ok_or_else(|| self.unavailable("rx", queue))?;
        Ok(RxQueue::new(Arc::clone(&self.shared), queue))
    }

    /// Hands out transmit queue `queue` to `users` cores. With one user the queue is used without a
    /// lock; with several, each burst takes a lock shared by the handles (for devices with fewer
    /// transmit queues than cores).
    pub fn tx_queue(&mut self, queue: u16, users: usize) -> Result<Vec<TxQueue>, PortError> {
        take(&mut self.tx_taken, queue).ok_or_else(|| self.unavailable("tx", queue))?;
        let lock = (users > 1).then(|| Arc::new(Mutex::new(())));
        Ok((0..users.max(1)).map(|_| TxQueue::new(Arc::clone(&self.shared), queue, lock.clone())).collect())
    }

    fn unavailable(&self, kind: &'static str, queue: u16) -> PortError {
        PortError::QueueUnavailable { name: self.name().into(), kind, queue }
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        if let Err(e) = self.close_inner() {
            log::error!("{e}; leaking the device");
            // Queues may still be polled: keep the pools alive rather than free memory under them.
            std::mem::forget(std::mem::take(&mut self.pools));
        }
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

fn driver_name(info: &sys::rte_eth_dev_info) -> String {
    if info.driver_name.is_null() {
        String::from("?")
    } else {
        // SAFETY: DPDK returns a static NUL-terminated driver name.
        unsafe { CStr::from_ptr(info.driver_name) }.to_string_lossy().into_owned()
    }
}

const fn libc_enotsup() -> i32 {
    95 // ENOTSUP on Linux
}

/// Finds the ethdev port that `devargs` designates (as OVS does), falling back to the device name.
fn find_port(devargs: &CStr) -> Option<u16> {
    let mut iter = sys::rte_dev_iterator::default();
    // SAFETY: `iter` is a zeroed iterator and `devargs` a NUL-terminated string that outlives it;
    // the iterator is cleaned up below on every path that initialised it.
    if unsafe { sys::rte_eth_iterator_init(&mut iter, devargs.as_ptr()) } == 0 {
        // SAFETY: initialised above.
        let id = unsafe { sys::rte_eth_iterator_next(&mut iter) };
        // SAFETY: initialised above; cleanup is idempotent for an exhausted iterator.
        unsafe { sys::rte_eth_iterator_cleanup(&mut iter) };
        if usize::from(id) < sys::RTE_MAX_ETHPORTS as usize {
            return Some(id);
        }
    }
    let name = devargs.to_bytes().split(|&b| b == b',').next()?;
    let name = CString::new(name).ok()?;
    let mut id = 0u16;
    // SAFETY: NUL-terminated name; `id` is writable.
    (unsafe { sys::rte_eth_dev_get_port_by_name(name.as_ptr(), &mut id) } == 0).then_some(id)
}
