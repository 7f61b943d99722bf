//! Match keys: a field (the IR's [`FieldKind`]), a value and a mask. Exact, prefix (LPM) and
//! ternary matches are all value/mask pairs; the constructors say which one was meant.
//!
//! A packet presents every field as a `u64` in a fixed slot ([`slot`]) plus a presence bit.
//! A field is present when its header parsed (ARP fields only in a valid ARP packet, UDP
//! ports only with a UDP header, ...) or, for the logical registers, once a flow set it. An
//! entry that names a field never matches a packet without it, even with a zero mask: the
//! IR interpreter's semantics (`Ipv4Src(0.0.0.0/0)` matches only IPv4 packets).

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use wyvern_model::MacAddr;
use wyvern_pipeline::{FieldKind, Match};

/// Number of field slots in a packet's key.
pub const NUM_FIELDS: usize = 20;

/// Every field, in slot order (the IR's declaration order, so a slot is the enum's index).
pub const FIELDS: [FieldKind; NUM_FIELDS] = [
    FieldKind::PhysInPort,
    FieldKind::TunnelId,
    FieldKind::Network,
    FieldKind::InPort,
    FieldKind::OutPort,
    FieldKind::Router,
    FieldKind::EthSrc,
    FieldKind::EthDst,
    FieldKind::EthType,
    FieldKind::IpProto,
    FieldKind::Ipv4Src,
    FieldKind::Ipv4Dst,
    FieldKind::IpTtl,
    FieldKind::UdpSrc,
    FieldKind::UdpDst,
    FieldKind::IcmpType,
    FieldKind::ArpOp,
    FieldKind::ArpSpa,
    FieldKind::ArpTpa,
    FieldKind::ArpSha,
];

/// The slot of a field in a packet's key (its index in [`FIELDS`]).
#[inline]
pub const fn slot(f: FieldKind) -> usize {
    match f {
        FieldKind::PhysInPort => 0,
        FieldKind::TunnelId => 1,
        FieldKind::Network => 2,
        FieldKind::InPort => 3,
        FieldKind::OutPort => 4,
        FieldKind::Router => 5,
        FieldKind::EthSrc => 6,
        FieldKind::EthDst => 7,
        FieldKind::EthType => 8,
        FieldKind::IpProto => 9,
        FieldKind::Ipv4Src => 10,
        FieldKind::Ipv4Dst => 11,
        FieldKind::IpTtl => 12,
        FieldKind::UdpSrc => 13,
        FieldKind::UdpDst => 14,
        FieldKind::IcmpType => 15,
        FieldKind::ArpOp => 16,
        FieldKind::ArpSpa => 17,
        FieldKind::ArpTpa => 18,
        FieldKind::ArpSha => 19,
    }
}

/// Width of a field in bits (values and masks must fit). Logical keys are 32-bit here; a
/// P4 program may declare them narrower, and its front end checks its own widths.
pub const fn width(f: FieldKind) -> u32 {
    match f {
        FieldKind::PhysInPort
        | FieldKind::TunnelId
        | FieldKind::Network
        | FieldKind::InPort
        | FieldKind::OutPort
        | FieldKind::Router
        | FieldKind::Ipv4Src
        | FieldKind::Ipv4Dst
        | FieldKind::ArpSpa
        | FieldKind::ArpTpa => 32,
        FieldKind::EthSrc | FieldKind::EthDst | FieldKind::ArpSha => 48,
        FieldKind::EthType | FieldKind::UdpSrc | FieldKind::UdpDst | FieldKind::ArpOp => 16,
        FieldKind::IpProto | FieldKind::IpTtl | FieldKind::IcmpType => 8,
    }
}

/// All ones over a field's width.
pub const fn full_mask(f: FieldKind) -> u64 {
    (1u64 << width(f)) - 1
}

/// A MAC address as a 48-bit number (first byte most significant).
pub fn mac_u64(m: MacAddr) -> u64 {
    let b = m.0;
    u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
}

/// One field of an entry's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldMatch {
    pub field: FieldKind,
    /// Already masked (constructors and [`crate::Engine::insert`] ensure it).
    pub value: u64,
    pub mask: u64,
}

impl FieldMatch {
    /// Exact match on the whole field.
    pub fn exact(field: FieldKind, value: u64) -> Self {
        FieldMatch {
            field,
            value,
            mask: full_mask(field),
        }
    }
    /// Ternary match: bits set in `mask` must equal `value`.
    pub fn ternary(field: FieldKind, value: u64, mask: u64) -> Self {
        FieldMatch {
            field,
            value: value & mask,
            mask,
        }
    }
    /// Longest-prefix match: the top `len` bits of the field (`len` above the width is
    /// treated as the full width).
    pub fn prefix(field: FieldKind, value: u64, len: u32) -> Self {
        let w = width(field);
        let len = len.min(w);
        let mask = if len == 0 {
            0
        } else {
            full_mask(field) & !((1u64 << (w - len)) - 1)
        };
        FieldMatch::ternary(field, value, mask)
    }
    /// An IPv4 prefix on an address field.
    pub fn ipv4_net(field: FieldKind, net: Ipv4Net) -> Self {
        FieldMatch::prefix(
            field,
            u64::from(u32::from(net.addr())),
            u32::from(net.prefix_len()),
        )
    }
    /// Whether the mask is all ones over the field.
    pub fn is_exact(&self) -> bool {
        self.mask == full_mask(self.field)
    }
    /// The prefix length if the mask is a prefix mask.
    pub fn prefix_len(&self) -> Option<u32> {
        let w = width(self.field);
        let ones = self.mask.count_ones();
        (FieldMatch::prefix(self.field, 0, ones).mask == self.mask && ones <= w).then_some(ones)
    }
}

/// The key of an IR match.
pub fn from_ir_match(m: &Match) -> FieldMatch {
    use FieldKind as F;
    match *m {
        Match::PhysInPort(p) => FieldMatch::exact(F::PhysInPort, p.into()),
        Match::TunnelId(v) => FieldMatch::exact(F::TunnelId, v.into()),
        Match::Network(k) => FieldMatch::exact(F::Network, k.0.into()),
        Match::InPort(k) => FieldMatch::exact(F::InPort, k.0.into()),
        Match::OutPort(k) => FieldMatch::exact(F::OutPort, k.0.into()),
        Match::Router(k) => FieldMatch::exact(F::Router, k.0.into()),
        Match::EthSrc(mac) => FieldMatch::exact(F::EthSrc, mac_u64(mac)),
        Match::EthDst(mac) => FieldMatch::exact(F::EthDst, mac_u64(mac)),
        Match::EthDstMulticast => {
            let group_bit = 1u64 << 40;
            FieldMatch::ternary(F::EthDst, group_bit, group_bit)
        }
        Match::EthType(t) => FieldMatch::exact(F::EthType, t.into()),
        Match::IpProto(p) => FieldMatch::exact(F::IpProto, p.into()),
        Match::Ipv4Src(n) => FieldMatch::ipv4_net(F::Ipv4Src, n),
        Match::Ipv4Dst(n) => FieldMatch::ipv4_net(F::Ipv4Dst, n),
        Match::IpTtl(t) => FieldMatch::exact(F::IpTtl, t.into()),
        Match::UdpSrc(p) => FieldMatch::exact(F::UdpSrc, p.into()),
        Match::UdpDst(p) => FieldMatch::exact(F::UdpDst, p.into()),
        Match::IcmpType(t) => FieldMatch::exact(F::IcmpType, t.into()),
        Match::ArpOp(o) => FieldMatch::exact(F::ArpOp, o.into()),
        Match::ArpSpa(n) => FieldMatch::ipv4_net(F::ArpSpa, n),
        Match::ArpTpa(a) => FieldMatch::exact(F::ArpTpa, u64::from(u32::from(a))),
        Match::ArpSha(mac) => FieldMatch::exact(F::ArpSha, mac_u64(mac)),
    }
}

/// A packet's key: every field's value and which fields are present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketKey {
    pub values: [u64; NUM_FIELDS],
    /// Bit `slot(f)` set when field `f` is present.
    pub present: u32,
}

impl PacketKey {
    pub(crate) fn new() -> Self {
        PacketKey {
            values: [0; NUM_FIELDS],
            present: 0,
        }
    }
    #[inline]
    pub(crate) fn set(&mut self, f: FieldKind, v: u64) {
        let s = slot(f);
        self.values[s] = v;
        self.present |= 1 << s;
    }
    /// The value of a field, if present.
    pub fn get(&self, f: FieldKind) -> Option<u64> {
        let s = slot(f);
        (self.present & (1 << s) != 0).then_some(self.values[s])
    }
}

/// An IPv4 address as a key value.
pub fn ip_u64(a: Ipv4Addr) -> u64 {
    u64::from(u32::from(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_field_list() {
        for (i, f) in FIELDS.iter().enumerate() {
            assert_eq!(slot(*f), i, "{f:?}");
        }
    }

    #[test]
    fn prefixes_and_multicast() {
        let n: Ipv4Net = "10.1.2.3/24".parse().unwrap();
        let m = FieldMatch::ipv4_net(FieldKind::Ipv4Dst, n);
        assert_eq!(m.value, 0x0a01_0200);
        assert_eq!(m.mask, 0xffff_ff00);
        assert_eq!(m.prefix_len(), Some(24));
        assert_eq!(
            FieldMatch::prefix(FieldKind::Ipv4Dst, 7, 0).prefix_len(),
            Some(0)
        );
        assert!(FieldMatch::exact(FieldKind::EthDst, 1).is_exact());
        let mc = from_ir_match(&Match::EthDstMulticast);
        assert_eq!(mac_u64(MacAddr([1, 0, 0, 0, 0, 0])) & mc.mask, mc.value);
        assert_eq!(mac_u64(MacAddr([2, 0, 0, 0, 0, 1])) & mc.mask, 0);
        assert_eq!(
            FieldMatch::ternary(FieldKind::EthDst, 0xff, 0x0f).prefix_len(),
            None
        );
    }
}
