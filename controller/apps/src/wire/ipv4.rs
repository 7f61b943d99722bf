//! IPv4 headers (RFC 791). `new_checked` validates version, IHL and total length once, so
//! `payload()` is always the bytes the sender meant (Ethernet padding excluded).

use std::net::Ipv4Addr;

use super::{be16, checksum, ipv4_at, put16, put_ipv4, Layer, WireError};

mod field {
    use std::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
}

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;

/// IP protocol numbers the apps look at.
pub mod protocol {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
}

/// A view of an IPv4 packet whose header and total length were checked.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wrap `buffer`: version 4, IHL >= 5, header and total length inside the buffer.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let data = buffer.as_ref();
        let have = data.len();
        if have < HEADER_LEN {
            return Err(WireError::Truncated {
                layer: Layer::Ipv4,
                need: HEADER_LEN,
                have,
            });
        }
        let version = data[field::VER_IHL] >> 4;
        if version != 4 {
            return Err(WireError::Ipv4Version(version));
        }
        let header = usize::from(data[field::VER_IHL] & 0x0f) * 4;
        if header < HEADER_LEN {
            return Err(WireError::Ipv4HeaderLength(header));
        }
        if header > have {
            return Err(WireError::Truncated {
                layer: Layer::Ipv4,
                need: header,
                have,
            });
        }
        let total = usize::from(be16(data, field::LENGTH.start));
        if total < header || total > have {
            return Err(WireError::Ipv4TotalLength {
                total,
                header,
                have,
            });
        }
        Ok(Ipv4Packet { buffer })
    }

    fn data(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Header length in bytes, options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.data()[field::VER_IHL] & 0x0f) * 4
    }

    pub fn dscp_ecn(&self) -> u8 {
        self.data()[field::DSCP_ECN]
    }

    pub fn total_len(&self) -> usize {
        usize::from(be16(self.data(), field::LENGTH.start))
    }

    pub fn ident(&self) -> u16 {
        be16(self.data(), field::IDENT.start)
    }

    pub fn dont_frag(&self) -> bool {
        be16(self.data(), field::FLG_OFF.start) & 0x4000 != 0
    }

    pub fn more_frags(&self) -> bool {
        be16(self.data(), field::FLG_OFF.start) & 0x2000 != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> usize {
        usize::from(be16(self.data(), field::FLG_OFF.start) & 0x1fff) * 8
    }

    /// True for any fragment (first or later) of a fragmented datagram.
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    pub fn ttl(&self) -> u8 {
        self.data()[field::TTL]
    }

    pub fn protocol(&self) -> u8 {
        self.data()[field::PROTOCOL]
    }

    pub fn checksum(&self) -> u16 {
        be16(self.data(), field::CHECKSUM.start)
    }

    pub fn src_addr(&self) -> Ipv4Addr {
        ipv4_at(self.data(), field::SRC_ADDR.start)
    }

    pub fn dst_addr(&self) -> Ipv4Addr {
        ipv4_at(self.data(), field::DST_ADDR.start)
    }

    /// The header (options included).
    pub fn header(&self) -> &[u8] {
        &self.data()[..self.header_len()]
    }

    /// True when the header checksum is right.
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(self.header())
    }

    /// The payload up to `total_len` (link-layer padding excluded).
    pub fn payload(&self) -> &[u8] {
        &self.data()[self.header_len()..self.total_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        put_ipv4(self.buffer.as_mut(), field::SRC_ADDR.start, a);
    }

    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        put_ipv4(self.buffer.as_mut(), field::DST_ADDR.start, a);
    }

    /// Recompute the header checksum after edits.
    pub fn fill_checksum(&mut self) {
        let hl = self.header_len();
        let data = self.buffer.as_mut();
        put16(data, field::CHECKSUM.start, 0);
        let c = checksum::checksum(&data[..hl]);
        put16(data, field::CHECKSUM.start, c);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (hl, tl) = (self.header_len(), self.total_len());
        &mut self.buffer.as_mut()[hl..tl]
    }
}

/// The parsed header fields the apps use (options are not represented: emitted headers have
/// none, which is what routers do for the packets they originate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub protocol: u8,
    pub payload_len: usize,
    pub ttl: u8,
    pub ident: u16,
    pub dscp_ecn: u8,
    pub dont_frag: bool,
}

impl Ipv4Repr {
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv4Packet<T>) -> Ipv4Repr {
        Ipv4Repr {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            protocol: p.protocol(),
            payload_len: p.total_len() - p.header_len(),
            ttl: p.ttl(),
            ident: p.ident(),
            dscp_ecn: p.dscp_ecn(),
            dont_frag: p.dont_frag(),
        }
    }

    /// Bytes `emit` writes.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Write a 20-byte header with a correct checksum into the start of `buf`, which must
    /// hold at least `HEADER_LEN` bytes; returns false (writing nothing) when it does not,
    /// or when the total length does not fit the 16-bit field.
    pub fn emit(&self, buf: &mut [u8]) -> bool {
        let Ok(total) = u16::try_from(self.buffer_len()) else {
            return false;
        };
        let Some(h) = buf.get_mut(..HEADER_LEN) else {
            return false;
        };
        h[field::VER_IHL] = 0x45;
        h[field::DSCP_ECN] = self.dscp_ecn;
        put16(h, field::LENGTH.start, total);
        put16(h, field::IDENT.start, self.ident);
        put16(
            h,
            field::FLG_OFF.start,
            if self.dont_frag { 0x4000 } else { 0 },
        );
        h[field::TTL] = self.ttl;
        h[field::PROTOCOL] = self.protocol;
        put16(h, field::CHECKSUM.start, 0);
        put_ipv4(h, field::SRC_ADDR.start, self.src_addr);
        put_ipv4(h, field::DST_ADDR.start, self.dst_addr);
        let c = checksum::checksum(h);
        put16(h, field::CHECKSUM.start, c);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The IPv4 header of a real dhclient DISCOVER: 0.0.0.0 -> 255.255.255.255, TTL 128,
    // tos 0x10, total length 328, checksum 0x3996.
    const HEADER: [u8; 20] = [
        0x45, 0x10, 0x01, 0x48, 0x00, 0x00, 0x00, 0x00, 0x80, 0x11, 0x39, 0x96, 0x00, 0x00, 0x00,
        0x00, 0xff, 0xff, 0xff, 0xff,
    ];

    fn packet() -> Vec<u8> {
        let mut v = HEADER.to_vec();
        v.resize(328, 0);
        v
    }

    #[test]
    fn parse_real_header() {
        let buf = packet();
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum());
        let r = Ipv4Repr::parse(&p);
        assert_eq!(r.src_addr, Ipv4Addr::UNSPECIFIED);
        assert_eq!(r.dst_addr, Ipv4Addr::BROADCAST);
        assert_eq!(r.ttl, 128);
        assert_eq!(r.protocol, protocol::UDP);
        assert_eq!(r.payload_len, 308);
        assert_eq!(p.payload().len(), 308);
        let mut out = vec![0u8; 20];
        assert!(r.emit(&mut out));
        assert_eq!(out, HEADER);
    }

    #[test]
    fn padding_is_excluded() {
        let mut buf = packet();
        buf.extend_from_slice(&[0xee; 10]);
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.payload().len(), 308);
    }

    #[test]
    fn refusals() {
        let buf = packet();
        assert!(matches!(
            Ipv4Packet::new_checked(&buf[..19]),
            Err(WireError::Truncated { need: 20, .. })
        ));
        assert!(matches!(
            Ipv4Packet::new_checked(&buf[..100]),
            Err(WireError::Ipv4TotalLength { total: 328, .. })
        ));
        let mut b = buf.clone();
        b[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            WireError::Ipv4Version(6)
        );
        let mut b = buf.clone();
        b[0] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            WireError::Ipv4HeaderLength(16)
        );
        let mut b = buf.clone();
        b[0] = 0x4f;
        b[2] = 0;
        b[3] = 40;
        assert!(matches!(
            Ipv4Packet::new_checked(&b[..]),
            Err(WireError::Ipv4TotalLength {
                total: 40,
                header: 60,
                ..
            })
        ));
    }

    #[test]
    fn fill_checksum_fixes_edit() {
        let mut buf = packet();
        let mut p = Ipv4Packet::new_checked(&mut buf[..]).unwrap();
        p.set_ttl(64);
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert!(p.verify_checksum());
    }
}
