//! UDP datagrams (RFC 768).

use std::net::Ipv4Addr;

use super::{be16, checksum, ipv4::protocol, put16, Layer, WireError};

mod field {
    use std::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
    pub const PAYLOAD: usize = 8;
}

/// Length of a UDP header.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// A view of a UDP datagram whose length field was checked against the buffer.
#[derive(Debug, Clone)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wrap `buffer` (the IPv4 payload): header present, 8 <= length field <= buffer.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let data = buffer.as_ref();
        let have = data.len();
        if have < HEADER_LEN {
            return Err(WireError::Truncated {
                layer: Layer::Udp,
                need: HEADER_LEN,
                have,
            });
        }
        let len = usize::from(be16(data, field::LENGTH.start));
        if !(HEADER_LEN..=have).contains(&len) {
            return Err(WireError::UdpLength { field: len, have });
        }
        Ok(UdpPacket { buffer })
    }

    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT.start)
    }

    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT.start)
    }

    pub fn len(&self) -> usize {
        usize::from(be16(self.buffer.as_ref(), field::LENGTH.start))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == HEADER_LEN
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// The payload up to the length field.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..self.len()]
    }

    /// True when the checksum is right or absent (0 means "not computed" in IPv4).
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let len = self.len();
        // The length was checked against u16 in new_checked.
        let acc = checksum::pseudo_header(src, dst, protocol::UDP, len as u16)
            .wrapping_add(checksum::sum(&self.buffer.as_ref()[..len]));
        checksum::fold(acc) == 0xffff
    }
}

/// The parsed UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpRepr {
    pub src_port: u16,
    pub dst_port: u16,
}

impl UdpRepr {
    pub fn parse<T: AsRef<[u8]>>(p: &UdpPacket<T>) -> UdpRepr {
        UdpRepr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
        }
    }

    /// Write header + `payload` into `buf` (which must hold `HEADER_LEN + payload.len()`
    /// bytes) with the checksum over the pseudo-header; false when it does not fit.
    pub fn emit(&self, buf: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> bool {
        let total = HEADER_LEN + payload.len();
        let Ok(total16) = u16::try_from(total) else {
            return false;
        };
        let Some(b) = buf.get_mut(..total) else {
            return false;
        };
        put16(b, field::SRC_PORT.start, self.src_port);
        put16(b, field::DST_PORT.start, self.dst_port);
        put16(b, field::LENGTH.start, total16);
        put16(b, field::CHECKSUM.start, 0);
        b[field::PAYLOAD..].copy_from_slice(payload);
        let acc = checksum::pseudo_header(src, dst, protocol::UDP, total16)
            .wrapping_add(checksum::sum(b));
        let mut c = !checksum::fold(acc);
        // RFC 768: a computed zero is sent as all ones (zero means "no checksum").
        if c == 0 {
            c = 0xffff;
        }
        put16(b, field::CHECKSUM.start, c);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emit_then_parse_verifies() {
        let src = Ipv4Addr::new(10, 0, 0, 1);
        let dst = Ipv4Addr::new(10, 0, 0, 5);
        let mut buf = vec![0u8; 8 + 5];
        let r = UdpRepr {
            src_port: 67,
            dst_port: 68,
        };
        assert!(r.emit(&mut buf, src, dst, b"hello"));
        let p = UdpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(UdpRepr::parse(&p), r);
        assert_eq!(p.payload(), b"hello");
        assert!(p.verify_checksum(src, dst));
        assert!(!p.verify_checksum(src, Ipv4Addr::new(10, 0, 0, 6)));
    }

    #[test]
    fn length_field_checked() {
        let buf = [0, 68, 0, 67, 0, 20, 0, 0, 1, 2];
        assert_eq!(
            UdpPacket::new_checked(&buf[..]).unwrap_err(),
            WireError::UdpLength {
                field: 20,
                have: 10
            }
        );
        let buf = [0, 68, 0, 67, 0, 7, 0, 0];
        assert!(UdpPacket::new_checked(&buf[..]).is_err());
    }
}
