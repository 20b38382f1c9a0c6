//! Port link state as the control thread sees it: polled every control tick, each change logged
//! and published to every transmit buffer of the port (one flag, read once per flush), so the
//! data path drops what it would send to a port that is down (`port_down`) instead of retrying.
//! A vhost port's link is up while a guest driver is attached; the guest's queue enable and
//! disable events are logged too.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::dpdk::Device;

/// One port's link, as last polled; down until [`started`](Self::started) says otherwise.
#[derive(Debug, Default)]
pub struct PortLink {
    up: Arc<AtomicBool>,
    ups: Cell<u64>,
    downs: Cell<u64>,
}

impl PortLink {
    /// Records the state the port started with (not counted as a change).
    pub fn started(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
    }

    /// Times the link went up while the switch ran (not counting the state at start).
    pub fn ups(&self) -> u64 {
        self.ups.get()
    }

    /// Times the link went down while the switch ran.
    pub fn downs(&self) -> u64 {
        self.downs.get()
    }

    /// The flag the port's transmit buffers read.
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.up)
    }

    /// Whether the link was up when last polled.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Reads `port`'s link state and queue events; logs and publishes what changed. A port whose
    /// state cannot be read counts as down.
    pub fn poll(&self, port: &Device) {
        let up = port.link().is_ok_and(|l| l.up);
        if up != self.is_up() {
            self.up.store(up, Ordering::Relaxed);
            if up {
                self.ups.set(self.ups.get() + 1);
                log::info!("port {}: link up", port.name());
            } else {
                self.downs.set(self.downs.get() + 1);
                log::info!("port {}: link down", port.name());
            }
        }
        while let Some(ev) = port.vhost_queue_event() {
            log::info!(
                "port {}: {} queue {} {} by the guest",
                port.name(),
                if ev.rx { "rx" } else { "tx" },
                ev.queue,
                if ev.enabled { "enabled" } else { "disabled" }
            );
        }
    }
}
