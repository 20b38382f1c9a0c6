//! The MAC learning table: which port each (VLAN, MAC) was last seen on.
//!
//! Bounded, with least-recently-refreshed eviction and aging, as Open vSwitch's `mac_learning`:
//! an entry is refreshed when traffic from its MAC is learned again (a miss, or a megaflow's hits
//! reported by housekeeping), and it ages out `aging` after its last refresh. Static entries never
//! age, move or get evicted. Every change (new entry, move, removal) is queued in `changes` so the
//! slow path can revalidate the megaflows whose NORMAL decision looked that entry up.
//!
//! The control core owns it; lookups and updates are O(1): a hash index over a slab whose dynamic
//! entries form an intrusive list in refresh order (oldest first), so aging and eviction take from
//! the head.

use rustc_hash::FxHashMap;

use crate::packet::PortIdx;

/// The key: a VLAN and a MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacKey {
    /// The VLAN (after input translation: an access port's tag, or the frame's VID).
    pub vlan: u16,
    /// The address.
    pub mac: [u8; 6],
}

impl MacKey {
    /// `mac` in `vlan`.
    pub fn new(vlan: u16, mac: [u8; 6]) -> Self {
        Self { vlan, mac }
    }
}

/// Whether `mac` is a group (multicast or broadcast) address.
#[inline]
pub fn is_multicast(mac: &[u8; 6]) -> bool {
    mac[0] & 1 != 0
}

/// What learning a source did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// A new entry.
    New,
    /// The entry was there, on the same port: refreshed.
    Refreshed,
    /// The entry moved here from another port.
    Moved {
        /// Where it was.
        from: PortIdx,
    },
    /// A static entry: left as it is.
    Static,
    /// Not learned: a group address, or a table full of static entries.
    Ignored,
}

/// What the table did, for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MacCounters {
    /// Entries learned.
    pub learned: u64,
    /// Entries that moved to another port.
    pub moved: u64,
    /// Entries evicted to make room (least recently refreshed first).
    pub evicted: u64,
    /// Entries removed after `mac_aging_secs` without traffic.
    pub aged: u64,
}

/// One entry, for listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacEntry {
    /// VLAN and address.
    pub key: MacKey,
    /// Its port.
    pub port: PortIdx,
    /// When it was last refreshed (TSC); 0 for static entries.
    pub used_tsc: u64,
    /// Whether it is static.
    pub is_static: bool,
}

const NIL: u32 = u32::MAX;

#[derive(Debug, Clone)]
struct Slot {
    entry: MacEntry,
    prev: u32,
    next: u32,
}

/// The table.
#[derive(Debug, Clone)]
pub struct MacTable {
    index: FxHashMap<MacKey, u32>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Oldest refreshed dynamic entry, and newest.
    head: u32,
    tail: u32,
    capacity: usize,
    aging_ticks: u64,
    changes: Vec<MacKey>,
    /// What it did.
    pub counters: MacCounters,
}

impl MacTable {
    /// An empty table of at most `capacity` entries whose dynamic entries live `aging_ticks` TSC
    /// ticks after their last refresh.
    pub fn new(capacity: usize, aging_ticks: u64) -> Self {
        Self {
            index: FxHashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            capacity: capacity.max(1),
            aging_ticks: aging_ticks.max(1),
            changes: Vec::new(),
            counters: MacCounters::default(),
        }
    }

    /// How many entries (static ones included).
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether it has none.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The port `key` was learned on (never for a group address).
    #[inline]
    pub fn lookup(&self, key: &MacKey) -> Option<PortIdx> {
        if is_multicast(&key.mac) {
            return None;
        }
        self.index.get(key).map(|&i| self.slots[i as usize].entry.port)
    }

    /// Adds a static entry (replacing a dynamic one); false if the table is full of static ones.
    pub fn add_static(&mut self, key: MacKey, port: PortIdx) -> bool {
        if let Some(&i) = self.index.get(&key) {
            let slot = &self.slots[i as usize];
            if !slot.entry.is_static {
                self.unlink(i);
            }
            self.slots[i as usize].entry = MacEntry { key, port, used_tsc: 0, is_static: true };
            self.changes.push(key);
            return true;
        }
        if self.index.len() >= self.capacity && !self.evict_oldest() {
            return false;
        }
        self.insert(MacEntry { key, port, used_tsc: 0, is_static: true });
        true
    }

    /// Learns that `key`'s MAC sends from `port` at `now_tsc`: refreshes, moves or adds its entry
    /// (evicting the least recently refreshed dynamic entry when the table is full).
    pub fn learn(&mut self, key: MacKey, port: PortIdx, now_tsc: u64) -> Learned {
        if is_multicast(&key.mac) {
            return Learned::Ignored;
        }
        if let Some(&i) = self.index.get(&key) {
            let entry = &mut self.slots[i as usize].entry;
            if entry.is_static {
                return Learned::Static;
            }
            let from = entry.port;
            entry.port = port;
            entry.used_tsc = entry.used_tsc.max(now_tsc);
            self.unlink(i);
            self.push_tail(i);
            if from == port {
                return Learned::Refreshed;
            }
            self.counters.moved += 1;
            self.changes.push(key);
            return Learned::Moved { from };
        }
        if self.index.len() >= self.capacity && !self.evict_oldest() {
            return Learned::Ignored;
        }
        self.insert(MacEntry { key, port, used_tsc: now_tsc, is_static: false });
        self.counters.learned += 1;
        self.changes.push(key);
        Learned::New
    }

    /// Removes every dynamic entry not refreshed for the aging time as of `now_tsc`.
    pub fn expire(&mut self, now_tsc: u64) -> usize {
        let mut n = 0;
        while self.head != NIL {
            let entry = self.slots[self.head as usize].entry;
            if now_tsc.saturating_sub(entry.used_tsc) < self.aging_ticks {
                break;
            }
            self.remove_slot(self.head);
            self.changes.push(entry.key);
            n += 1;
        }
        self.counters.aged += n as u64;
        n
    }

    /// Removes every entry on `port` (it went away); returns how many.
    pub fn flush_port(&mut self, port: PortIdx) -> usize {
        let gone: Vec<u32> =
            self.index.values().copied().filter(|&i| self.slots[i as usize].entry.port == port).collect();
        for &i in &gone {
            let key = self.slots[i as usize].entry.key;
            self.remove_slot(i);
            self.changes.push(key);
        }
        gone.len()
    }

    /// Moves the keys changed since the last call into `out` (which the caller reuses).
    pub fn take_changes(&mut self, out: &mut Vec<MacKey>) {
        out.append(&mut self.changes);
    }

    /// Whether anything changed since the last [`take_changes`](Self::take_changes).
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    /// Every entry, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = MacEntry> + '_ {
        self.index.values().map(|&i| self.slots[i as usize].entry)
    }

    fn insert(&mut self, entry: MacEntry) {
        let slot = Slot { entry, prev: NIL, next: NIL };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(entry.key, i);
        if !entry.is_static {
            self.push_tail(i);
        }
    }

    fn evict_oldest(&mut self) -> bool {
        if self.head == NIL {
            return false;
        }
        let key = self.slots[self.head as usize].entry.key;
        self.remove_slot(self.head);
        self.changes.push(key);
        self.counters.evicted += 1;
        true
    }

    fn remove_slot(&mut self, i: u32) {
        let entry = self.slots[i as usize].entry;
        if !entry.is_static {
            self.unlink(i);
        }
        self.index.remove(&entry.key);
        self.free.push(i);
    }

    fn unlink(&mut self, i: u32) {
        let Slot { prev, next, .. } = self.slots[i as usize];
        match prev {
            NIL => self.head = next,
            p => self.slots[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.slots[n as usize].prev = prev,
        }
        let slot = &mut self.slots[i as usize];
        (slot.prev, slot.next) = (NIL, NIL);
    }

    fn push_tail(&mut self, i: u32) {
        self.slots[i as usize].prev = self.tail;
        self.slots[i as usize].next = NIL;
        match self.tail {
            NIL => self.head = i,
            t => self.slots[t as usize].next = i,
        }
        self.tail = i;
    }
}

#[cfg(test)]
mod tests;
