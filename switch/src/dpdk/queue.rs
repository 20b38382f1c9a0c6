//! Receive and transmit queues, each owned by one polling core: an ethdev port's, or a
//! vhost-user port's (see `vhost.rs`). The kind is matched once per burst.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use dpdk_sys as sys;

use super::port::PortShared;
use super::vhost::VhostShared;
use super::{Burst, Mempool};

/// Whose receive queue a handle is.
enum RxTarget {
    Eth(Arc<PortShared>),
    /// The pool received packets are copied into; the token counts the port's live handles.
    Vhost {
        port: Arc<VhostShared>,
        pool: Arc<Mempool>,
        _user: Arc<()>,
    },
}

/// Whose transmit queue a handle is.
enum TxTarget {
    Eth(Arc<PortShared>),
    /// The token counts the port's live handles.
    Vhost {
        port: Arc<VhostShared>,
        _user: Arc<()>,
    },
}

/// One receive queue of a started port, polled by exactly one core: `Send` (it is handed to its
/// PMD) but not `Sync` (DPDK queues are not thread-safe).
pub struct RxQueue {
    device: RxTarget,
    queue: u16,
    _not_sync: PhantomData<Cell<()>>,
}

impl RxQueue {
    pub(crate) fn new(port: Arc<PortShared>, queue: u16) -> Self {
        Self { device: RxTarget::Eth(port), queue, _not_sync: PhantomData }
    }

    pub(crate) fn vhost(port: Arc<VhostShared>, pool: Arc<Mempool>, queue: u16, user: Arc<()>) -> Self {
        Self { device: RxTarget::Vhost { port, pool, _user: user }, queue, _not_sync: PhantomData }
    }

    /// Queue id.
    pub fn queue_id(&self) -> u16 {
        self.queue
    }

    /// Receives into the free room of `burst` (at most `max` packets); returns how many arrived.
    #[inline]
    pub fn recv(&mut self, burst: &mut Burst, max: usize) -> usize {
        let port = match &self.device {
            RxTarget::Eth(port) => port,
            RxTarget::Vhost { port, pool, .. } => return port.recv(self.queue, pool, burst, max),
        };
        let (slots, room) = burst.spare_raw();
        let want = room.min(max) as u16;
        if want == 0 {
            return 0;
        }
        // SAFETY: the port is started and stays so while this handle lives (Port::stop refuses
        // otherwise); only this core polls the queue (RxQueue is !Sync and unique); `slots` has room
        // for `want` pointers.
        let n = unsafe { sys::ferrovs_rx_burst(port.id, self.queue, slots, want) };
        // SAFETY: the driver wrote `n` valid mbufs that we now own.
        unsafe { burst.commit_filled(usize::from(n)) };
        usize::from(n)
    }
}

/// One transmit queue of a started port. Owned by one core, or shared by a few through a lock
/// taken once per burst when the device has fewer queues than cores.
pub struct TxQueue {
    device: TxTarget,
    queue: u16,
    lock: Option<Arc<Mutex<()>>>,
    _not_sync: PhantomData<Cell<()>>,
}

impl TxQueue {
    pub(crate) fn new(port: Arc<PortShared>, queue: u16, lock: Option<Arc<Mutex<()>>>) -> Self {
        Self { device: TxTarget::Eth(port), queue, lock, _not_sync: PhantomData }
    }

    pub(crate) fn vhost(port: Arc<VhostShared>, queue: u16, lock: Option<Arc<Mutex<()>>>, user: Arc<()>) -> Self {
        Self { device: TxTarget::Vhost { port, _user: user }, queue, lock, _not_sync: PhantomData }
    }

    /// Queue id.
    pub fn queue_id(&self) -> u16 {
        self.queue
    }

    /// Whether other cores send on the same queue (and a lock is taken per burst).
    pub fn is_shared(&self) -> bool {
        self.lock.is_some()
    }

    /// Hands the packets of `burst` to the device, front first; returns how many it took. Those
    /// leave the burst (an ethdev owns them now; a vhost port copied them and they are freed);
    /// the ones it refused (queue full) stay, at the front, for a retry or a drop.
    #[inline]
    pub fn send(&mut self, burst: &mut Burst) -> usize {
        if burst.is_empty() {
            return 0;
        }
        let _guard = self.lock.as_ref().map(|l| l.lock().unwrap_or_else(|e| e.into_inner()));
        let port = match &self.device {
            TxTarget::Eth(port) => port,
            TxTarget::Vhost { port, .. } => return port.send(self.queue, burst),
        };
        let n = burst.len() as u16;
        // SAFETY: the port is started while this handle lives; the queue is used by this core alone,
        // or under the shared lock held above; the pointers are `n` owned mbufs.
        let sent = unsafe { sys::ferrovs_tx_burst(port.id, self.queue, burst.filled_raw(), n) };
        // SAFETY: the driver took ownership of the first `sent` mbufs.
        unsafe { burst.forget_front(usize::from(sent)) };
        usize::from(sent)
    }
}
