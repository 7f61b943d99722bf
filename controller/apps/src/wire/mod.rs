//! Small zero-copy packet views (Ethernet, ARP, IPv4, UDP, ICMPv4) in the smoltcp shape.
//!
//! Why our own views instead of `etherparse`: the apps need only five fixed-layout headers,
//! they must both parse and *rewrite in place* (echo replies reuse the request's bytes), and
//! the project's style asks for a view (length checked once in `new_checked`, accessors that
//! cannot panic afterwards) plus a parsed representation with `parse`/`emit`, byte offsets in
//! one private `field` block per header, and errors that carry context. That is ~500 lines
//! with no dependency, where `etherparse` would bring its own slice/header/builder split that
//! we would wrap anyway. DHCP itself is decoded and encoded with `dhcproto`.

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmpv4;
pub mod ipv4;
pub mod udp;

use std::fmt;

/// A 48-bit Ethernet (MAC) address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: EthernetAddress = EthernetAddress([0xff; 6]);

    /// Build from a slice that the caller has already length-checked to 6 bytes; shorter
    /// input yields zeros for the missing bytes instead of panicking.
    pub fn from_bytes(data: &[u8]) -> EthernetAddress {
        let mut a = [0u8; 6];
        for (d, s) in a.iter_mut().zip(data.iter()) {
            *d = *s;
        }
        EthernetAddress(a)
    }

    /// The 6 bytes.
    pub fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    /// True for ff:ff:ff:ff:ff:ff.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// True for group addresses (includes broadcast): the I/G bit of the first octet.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// True for an address a single host can own.
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast() && self.0 != [0; 6]
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl From<[u8; 6]> for EthernetAddress {
    fn from(b: [u8; 6]) -> Self {
        EthernetAddress(b)
    }
}

/// Which header a wire error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    Ethernet,
    Arp,
    Ipv4,
    Udp,
    Icmpv4,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layer::Ethernet => "ethernet",
            Layer::Arp => "arp",
            Layer::Ipv4 => "ipv4",
            Layer::Udp => "udp",
            Layer::Icmpv4 => "icmpv4",
        })
    }
}

/// Why a view refused a buffer. Every variant names the header and the numbers involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("failed to parse {layer}: buffer has {have} bytes, header needs {need}")]
    Truncated {
        layer: Layer,
        need: usize,
        have: usize,
    },
    #[error("failed to parse ipv4: version field is {0}, expected 4")]
    Ipv4Version(u8),
    #[error("failed to parse ipv4: header length {0} bytes is below the 20-byte minimum")]
    Ipv4HeaderLength(usize),
    #[error(
        "failed to parse ipv4: total length {total} is below header length {header} or above buffer length {have}"
    )]
    Ipv4TotalLength {
        total: usize,
        header: usize,
        have: usize,
    },
    #[error("failed to parse udp: length field {field} is below 8 or above buffer length {have}")]
    UdpLength { field: usize, have: usize },
    #[error(
        "failed to parse arp: htype {htype} ptype {ptype:#06x} hlen {hlen} plen {plen} is not Ethernet/IPv4"
    )]
    ArpFormat {
        htype: u16,
        ptype: u16,
        hlen: u8,
        plen: u8,
    },
}

/// Read a big-endian u16 at `at`; callers only use offsets inside a length-checked header.
#[inline]
pub(crate) fn be16(data: &[u8], at: usize) -> u16 {
    match data.get(at..at + 2) {
        Some(b) => u16::from_be_bytes([b[0], b[1]]),
        None => 0,
    }
}

/// Write a big-endian u16 at `at`; out-of-range writes are ignored (cannot happen after
/// `new_checked`, but a view must never panic).
#[inline]
pub(crate) fn put16(data: &mut [u8], at: usize, v: u16) {
    if let Some(b) = data.get_mut(at..at + 2) {
        b.copy_from_slice(&v.to_be_bytes());
    }
}

#[inline]
pub(crate) fn ipv4_at(data: &[u8], at: usize) -> std::net::Ipv4Addr {
    match data.get(at..at + 4) {
        Some(b) => std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]),
        None => std::net::Ipv4Addr::UNSPECIFIED,
    }
}

#[inline]
pub(crate) fn put_ipv4(data: &mut [u8], at: usize, v: std::net::Ipv4Addr) {
    if let Some(b) = data.get_mut(at..at + 4) {
        b.copy_from_slice(&v.octets());
    }
}

/// True for an IPv4 source a router may send an ICMP message back to (RFC 1812 4.3.2.7):
/// not 0.0.0.0, not limited broadcast, not multicast, not loopback, not class E.
pub fn is_unicast_host(ip: std::net::Ipv4Addr) -> bool {
    !(ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_loopback()
        || ip.octets()[0] >= 240)
}
