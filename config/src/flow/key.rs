//! The flow key: every header field a rule can match, at fixed byte offsets, in network byte order.
//!
//! One flat byte array rather than a struct of typed fields, so that masking, comparing and hashing
//! work a 64-bit word at a time whatever the fields, and a field is just (offset, length): the
//! field table in `field.rs`, the packet parser and the classifier all share this one layout.
//! Values follow Open vSwitch's `struct flow`: `vlan_tci` has the CFI bit (0x1000) set when a tag is
//! present, ARP stores its opcode in `nw_proto` and its IPs in `nw_src`/`nw_dst`, ICMP stores type
//! and code in `tp_src`/`tp_dst`.

use std::fmt;
use std::hash::{Hash, Hasher};

/// Bytes in a flow key.
pub const KEY_LEN: usize = 88;
/// 64-bit words in a flow key.
pub const KEY_WORDS: usize = KEY_LEN / 8;

/// Byte offsets of each field.
#[allow(missing_docs)]
pub mod off {
    pub const IN_PORT: usize = 0; // 2
    pub const DL_TYPE: usize = 2; // 2
    pub const VLAN_TCI: usize = 4; // 2
    pub const TCP_FLAGS: usize = 6; // 2
    pub const DL_DST: usize = 8; // 6
    pub const DL_SRC: usize = 14; // 6
    pub const TP_SRC: usize = 20; // 2
    pub const TP_DST: usize = 22; // 2
    pub const NW_SRC: usize = 24; // 4
    pub const NW_DST: usize = 28; // 4
    pub const NW_PROTO: usize = 32; // 1
    pub const NW_TOS: usize = 33; // 1
    pub const NW_TTL: usize = 34; // 1
    pub const NW_FRAG: usize = 35; // 1
    pub const IPV6_LABEL: usize = 36; // 4
    pub const IPV6_SRC: usize = 40; // 16
    pub const IPV6_DST: usize = 56; // 16
    pub const ARP_SHA: usize = 72; // 6
    pub const ARP_THA: usize = 78; // 6
    // 84..88: zero padding
}

/// `nw_frag` bit: the packet is a fragment.
pub const FRAG_ANY: u8 = 1;
/// `nw_frag` bit: the packet is a fragment other than the first.
pub const FRAG_LATER: u8 = 2;
/// `vlan_tci` bit that says a VLAN tag is present (Open vSwitch's use of the CFI bit).
pub const VLAN_CFI: u16 = 0x1000;
/// `vlan_tci` bits of the VLAN id.
pub const VLAN_VID_MASK: u16 = 0x0fff;
/// `vlan_tci` bits of the priority.
pub const VLAN_PCP_MASK: u16 = 0xe000;

/// Ethertypes the key knows.
#[allow(missing_docs)]
pub mod eth_type {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const RARP: u16 = 0x8035;
    pub const IPV6: u16 = 0x86dd;
    pub const VLAN: u16 = 0x8100;
    pub const VLAN_QINQ: u16 = 0x88a8;
    /// What Open vSwitch stores for 802.3 frames without a SNAP ethertype.
    pub const NONE: u16 = 0x05ff;
}

/// IP protocol numbers the key knows.
#[allow(missing_docs)]
pub mod ip_proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
    pub const SCTP: u8 = 132;
}

/// A flow key (or, used as a mask, which bits of one matter).
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub struct FlowKey(pub [u8; KEY_LEN]);

/// Word by word without branches: the derived comparison calls `memcmp`, which cost a PMD a sixth
/// of its cycles comparing each key with its predecessor (measured with `perf`).
impl PartialEq for FlowKey {
    #[inline(always)]
    fn eq(&self, other: &Self) -> bool {
        (0..KEY_WORDS).fold(0, |diff, i| diff | (self.word(i) ^ other.word(i))) == 0
    }
}

impl Eq for FlowKey {}

impl Hash for FlowKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl Default for FlowKey {
    fn default() -> Self {
        Self::ZERO
    }
}

macro_rules! be_field {
    ($get:ident, $set:ident, $off:expr, $t:ty, $n:expr) => {
        #[doc = concat!("`", stringify!($get), "`.")]
        #[inline]
        pub fn $get(&self) -> $t {
            <$t>::from_be_bytes(self.0[$off..$off + $n].try_into().expect("fixed size"))
        }
        #[doc = concat!("Sets `", stringify!($get), "`.")]
        #[inline]
        pub fn $set(&mut self, v: $t) {
            self.0[$off..$off + $n].copy_from_slice(&v.to_be_bytes());
        }
    };
}

macro_rules! bytes_field {
    ($get:ident, $set:ident, $off:expr, $n:expr) => {
        #[doc = concat!("`", stringify!($get), "`.")]
        #[inline]
        pub fn $get(&self) -> [u8; $n] {
            self.0[$off..$off + $n].try_into().expect("fixed size")
        }
        #[doc = concat!("Sets `", stringify!($get), "`.")]
        #[inline]
        pub fn $set(&mut self, v: [u8; $n]) {
            self.0[$off..$off + $n].copy_from_slice(&v);
        }
    };
}

impl FlowKey {
    /// All zeros: the empty key, or the mask that matches everything.
    pub const ZERO: Self = Self([0; KEY_LEN]);
    /// All ones: the mask of an exact match.
    pub const ONES: Self = Self([0xff; KEY_LEN]);

    be_field!(in_port, set_in_port, off::IN_PORT, u16, 2);
    be_field!(dl_type, set_dl_type, off::DL_TYPE, u16, 2);
    be_field!(vlan_tci, set_vlan_tci, off::VLAN_TCI, u16, 2);
    be_field!(tcp_flags, set_tcp_flags, off::TCP_FLAGS, u16, 2);
    bytes_field!(dl_dst, set_dl_dst, off::DL_DST, 6);
    bytes_field!(dl_src, set_dl_src, off::DL_SRC, 6);
    be_field!(tp_src, set_tp_src, off::TP_SRC, u16, 2);
    be_field!(tp_dst, set_tp_dst, off::TP_DST, u16, 2);
    be_field!(nw_src, set_nw_src, off::NW_SRC, u32, 4);
    be_field!(nw_dst, set_nw_dst, off::NW_DST, u32, 4);
    be_field!(nw_proto, set_nw_proto, off::NW_PROTO, u8, 1);
    be_field!(nw_tos, set_nw_tos, off::NW_TOS, u8, 1);
    be_field!(nw_ttl, set_nw_ttl, off::NW_TTL, u8, 1);
    be_field!(nw_frag, set_nw_frag, off::NW_FRAG, u8, 1);
    be_field!(ipv6_label, set_ipv6_label, off::IPV6_LABEL, u32, 4);
    bytes_field!(ipv6_src, set_ipv6_src, off::IPV6_SRC, 16);
    bytes_field!(ipv6_dst, set_ipv6_dst, off::IPV6_DST, 16);
    bytes_field!(arp_sha, set_arp_sha, off::ARP_SHA, 6);
    bytes_field!(arp_tha, set_arp_tha, off::ARP_THA, 6);

    /// Word `i` (native byte order: only for masking, comparing and hashing).
    #[inline(always)]
    pub fn word(&self, i: usize) -> u64 {
        u64::from_ne_bytes(self.0[i * 8..i * 8 + 8].try_into().expect("8 bytes"))
    }

    /// Sets word `i`.
    #[inline(always)]
    pub fn set_word(&mut self, i: usize, w: u64) {
        self.0[i * 8..i * 8 + 8].copy_from_slice(&w.to_ne_bytes());
    }

    /// This key with every bit outside `mask` cleared.
    #[inline]
    pub fn masked(&self, mask: &FlowKey) -> FlowKey {
        let mut out = FlowKey::ZERO;
        for i in 0..KEY_WORDS {
            out.set_word(i, self.word(i) & mask.word(i));
        }
        out
    }

    /// Bitwise or (to accumulate masks).
    #[inline]
    pub fn or(&self, other: &FlowKey) -> FlowKey {
        let mut out = FlowKey::ZERO;
        for i in 0..KEY_WORDS {
            out.set_word(i, self.word(i) | other.word(i));
        }
        out
    }

    /// Whether every bit is zero.
    pub fn is_zero(&self) -> bool {
        (0..KEY_WORDS).all(|i| self.word(i) == 0)
    }

    /// Whether the packet is IPv4 or IPv6.
    pub fn is_ip(&self) -> bool {
        matches!(self.dl_type(), eth_type::IPV4 | eth_type::IPV6)
    }
}

impl fmt::Debug for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FlowKey(")?;
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 && i % 8 == 0 {
                f.write_str("_")?;
            }
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// A match: the values of the bits a rule cares about (`key`) and which bits those are (`mask`).
/// Invariant: `key` has no bit set outside `mask`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Match {
    /// Values, already masked.
    pub key: FlowKey,
    /// Which bits matter.
    pub mask: FlowKey,
}

impl Match {
    /// The match that matches every packet.
    pub const ANY: Self = Self { key: FlowKey::ZERO, mask: FlowKey::ZERO };

    /// Whether `flow` matches.
    #[inline]
    pub fn matches(&self, flow: &FlowKey) -> bool {
        (0..KEY_WORDS).all(|i| flow.word(i) & self.mask.word(i) == self.key.word(i))
    }

    /// Whether the bits in `mask` at `offset` are all part of this match's mask (the field is
    /// matched exactly on those bits).
    pub fn covers(&self, offset: usize, mask: &[u8]) -> bool {
        mask.iter().enumerate().all(|(i, m)| self.mask.0[offset + i] & m == *m)
    }

    /// `dl_type` if it is matched exactly.
    pub fn exact_dl_type(&self) -> Option<u16> {
        (self.mask.dl_type() == 0xffff).then(|| self.key.dl_type())
    }

    /// `nw_proto` if it is matched exactly.
    pub fn exact_nw_proto(&self) -> Option<u8> {
        (self.mask.nw_proto() == 0xff).then(|| self.key.nw_proto())
    }
}
