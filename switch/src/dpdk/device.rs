//! A switch port's device: an ethdev port (a NIC or a vdev) or a vhost-user socket. The runtime
//! and the link monitor drive both through this one type.

use std::sync::Arc;

use super::port::{DevInfo, Link, Port, PortError, PortSetup, PortStats, VhostQueueEvent};
use super::vhost::VhostUserPort;
use super::{Mempool, RxQueue, TxQueue};

/// A port's device.
pub enum Device {
    /// An ethdev port.
    Eth(Port),
    /// A vhost-user port on the vhost library.
    Vhost(VhostUserPort),
}

impl Device {
    /// Our name for the port.
    pub fn name(&self) -> &str {
        match self {
            Device::Eth(p) => p.name(),
            Device::Vhost(p) => p.name(),
        }
    }

    /// What the device supports.
    pub fn info(&self) -> Result<DevInfo, PortError> {
        match self {
            Device::Eth(p) => p.info(),
            Device::Vhost(p) => Ok(p.info()),
        }
    }

    /// Sets up the queues; received packets go into `pool`.
    pub fn configure(&mut self, setup: &PortSetup, pool: &Arc<Mempool>) -> Result<(), PortError> {
        match self {
            Device::Eth(p) => p.configure(setup, pool),
            Device::Vhost(p) => p.configure(setup, pool),
        }
    }

    /// Starts the device (a vhost port starts listening or connecting).
    pub fn start(&mut self) -> Result<(), PortError> {
        match self {
            Device::Eth(p) => p.start(),
            Device::Vhost(p) => p.start(),
        }
    }

    /// Stops it; every queue handle must have been dropped.
    pub fn stop(&mut self) -> Result<(), PortError> {
        match self {
            Device::Eth(p) => p.stop(),
            Device::Vhost(p) => p.stop(),
        }
    }

    /// Stops and releases it.
    pub fn close(self) -> Result<(), PortError> {
        match self {
            Device::Eth(p) => p.close(),
            Device::Vhost(mut p) => p.stop(),
        }
    }

    /// Receives every frame (a no-op for a vhost port, which has no address filter).
    pub fn enable_promiscuous(&self) {
        if let Device::Eth(p) = self {
            p.enable_promiscuous();
        }
    }

    /// Link state (a vhost port is up while a guest driver is attached).
    pub fn link(&self) -> Result<Link, PortError> {
        match self {
            Device::Eth(p) => p.link(),
            Device::Vhost(p) => Ok(p.link()),
        }
    }

    /// The MAC address (none for a vhost port: all zeros).
    pub fn mac(&self) -> Result<[u8; 6], PortError> {
        match self {
            Device::Eth(p) => p.mac(),
            Device::Vhost(_) => Ok([0; 6]),
        }
    }

    /// The MTU.
    pub fn mtu(&self) -> Result<u16, PortError> {
        match self {
            Device::Eth(p) => p.mtu(),
            Device::Vhost(p) => Ok(p.mtu()),
        }
    }

    /// Counters.
    pub fn stats(&self) -> Result<PortStats, PortError> {
        match self {
            Device::Eth(p) => p.stats(),
            Device::Vhost(p) => Ok(p.stats()),
        }
    }

    /// The next guest queue enable or disable, for vhost-user ports (either kind).
    pub fn vhost_queue_event(&self) -> Option<VhostQueueEvent> {
        match self {
            Device::Eth(p) => p.vhost_queue_event(),
            Device::Vhost(p) => p.queue_event(),
        }
    }

    /// Whether the device is a vhost-user port (either kind): the guest decides how many of its
    /// queue pairs it enables.
    pub fn is_vhost(&self) -> bool {
        match self {
            Device::Eth(p) => p.driver() == "net_vhost",
            Device::Vhost(_) => true,
        }
    }

    /// Hands out receive queue `queue` to one polling core.
    pub fn rx_queue(&mut self, queue: u16) -> Result<RxQueue, PortError> {
        match self {
            Device::Eth(p) => p.rx_queue(queue),
            Device::Vhost(p) => p.rx_queue(queue),
        }
    }

    /// Hands out transmit queue `queue` to `users` cores.
    pub fn tx_queue(&mut self, queue: u16, users: usize) -> Result<Vec<TxQueue>, PortError> {
        match self {
            Device::Eth(p) => p.tx_queue(queue, users),
            Device::Vhost(p) => p.tx_queue(queue, users),
        }
    }
}
