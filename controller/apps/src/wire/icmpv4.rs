//! ICMPv4 messages (RFC 792): the fixed 8-byte header and the data after it.

use super::{be16, checksum, put16, Layer, WireError};

mod field {
    use std::ops::Range;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQNO: Range<usize> = 6..8;
    pub const DATA: usize = 8;
}

/// Length of the fixed ICMP header (type, code, checksum, 4 type-specific bytes).
pub const HEADER_LEN: usize = field::DATA;

/// ICMP message types used here.
pub mod msg_type {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACHABLE: u8 = 3;
    pub const SOURCE_QUENCH: u8 = 4;
    pub const REDIRECT: u8 = 5;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAMETER_PROBLEM: u8 = 12;

    /// True for ICMP *error* messages, which must never be answered with another error
    /// (RFC 1122 3.2.2). Unknown types count as errors: when in doubt, stay silent.
    pub fn is_error(t: u8) -> bool {
        !matches!(t, 0 | 8 | 9 | 10 | 13 | 14 | 15 | 16 | 17 | 18)
    }
}

/// A view of an ICMPv4 message (the whole IPv4 payload).
#[derive(Debug, Clone)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let have = buffer.as_ref().len();
        if have < HEADER_LEN {
            return Err(WireError::Truncated {
                layer: Layer::Icmpv4,
                need: HEADER_LEN,
                have,
            });
        }
        Ok(Icmpv4Packet { buffer })
    }

    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    pub fn echo_ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_IDENT.start)
    }

    pub fn echo_seq_no(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_SEQNO.start)
    }

    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA..]
    }

    /// True when the checksum over the whole message is right.
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    pub fn set_msg_type(&mut self, t: u8) {
        self.buffer.as_mut()[field::TYPE] = t;
    }

    pub fn set_msg_code(&mut self, c: u8) {
        self.buffer.as_mut()[field::CODE] = c;
    }

    /// Set the 4 type-specific bytes after the checksum (echo id/seq, or "unused").
    pub fn set_rest_of_header(&mut self, rest: [u8; 4]) {
        self.buffer.as_mut()[field::ECHO_IDENT.start..field::DATA].copy_from_slice(&rest);
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA..]
    }

    /// Recompute the checksum over the whole message.
    pub fn fill_checksum(&mut self) {
        let data = self.buffer.as_mut();
        put16(data, field::CHECKSUM.start, 0);
        let c = checksum::checksum(data);
        put16(data, field::CHECKSUM.start, c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // An echo request body (checksum left 0): id 0x1234 seq 1, 8 bytes of data.
    const ECHO: [u8; 16] = [
        0x08, 0x00, 0x00, 0x00, 0x12, 0x34, 0x00, 0x01, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67,
        0x68,
    ];

    #[test]
    fn fill_and_verify() {
        let mut b = ECHO;
        let mut p = Icmpv4Packet::new_checked(&mut b[..]).unwrap();
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!(p.msg_type(), msg_type::ECHO_REQUEST);
        assert_eq!(p.echo_ident(), 0x1234);
        assert_eq!(p.echo_seq_no(), 1);
        assert_eq!(p.data(), b"abcdefgh");
    }

    #[test]
    fn error_types() {
        assert!(msg_type::is_error(msg_type::TIME_EXCEEDED));
        assert!(msg_type::is_error(msg_type::DEST_UNREACHABLE));
        assert!(msg_type::is_error(200));
        assert!(!msg_type::is_error(msg_type::ECHO_REQUEST));
        assert!(!msg_type::is_error(msg_type::ECHO_REPLY));
    }

    #[test]
    fn truncated() {
        assert!(Icmpv4Packet::new_checked(&ECHO[..7]).is_err());
    }
}
