//! ARP for Ethernet/IPv4 (RFC 826); other hardware/protocol pairs are refused.

use std::net::Ipv4Addr;

use super::{be16, ipv4_at, put16, put_ipv4, EthernetAddress, Layer, WireError};

mod field {
    use std::ops::Range;
    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;

/// ARP operation codes.
pub mod operation {
    pub const REQUEST: u16 = 1;
    pub const REPLY: u16 = 2;
}

/// A view of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let data = buffer.as_ref();
        if data.len() < PACKET_LEN {
            return Err(WireError::Truncated {
                layer: Layer::Arp,
                need: PACKET_LEN,
                have: data.len(),
            });
        }
        let (htype, ptype) = (
            be16(data, field::HTYPE.start),
            be16(data, field::PTYPE.start),
        );
        let (hlen, plen) = (data[field::HLEN], data[field::PLEN]);
        if (htype, ptype, hlen, plen) != (1, 0x0800, 6, 4) {
            return Err(WireError::ArpFormat {
                htype,
                ptype,
                hlen,
                plen,
            });
        }
        Ok(ArpPacket { buffer })
    }

    pub fn operation(&self) -> u16 {
        be16(self.buffer.as_ref(), field::OPER.start)
    }

    pub fn sender_hardware_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::SHA])
    }

    pub fn sender_protocol_addr(&self) -> Ipv4Addr {
        ipv4_at(self.buffer.as_ref(), field::SPA.start)
    }

    pub fn target_hardware_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::THA])
    }

    pub fn target_protocol_addr(&self) -> Ipv4Addr {
        ipv4_at(self.buffer.as_ref(), field::TPA.start)
    }
}

/// The parsed ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRepr {
    pub operation: u16,
    pub source_hardware_addr: EthernetAddress,
    pub source_protocol_addr: Ipv4Addr,
    pub target_hardware_addr: EthernetAddress,
    pub target_protocol_addr: Ipv4Addr,
}

impl ArpRepr {
    pub fn parse<T: AsRef<[u8]>>(p: &ArpPacket<T>) -> ArpRepr {
        ArpRepr {
            operation: p.operation(),
            source_hardware_addr: p.sender_hardware_addr(),
            source_protocol_addr: p.sender_protocol_addr(),
            target_hardware_addr: p.target_hardware_addr(),
            target_protocol_addr: p.target_protocol_addr(),
        }
    }

    /// Write the 28-byte packet into `buf`; false when `buf` is shorter.
    pub fn emit(&self, buf: &mut [u8]) -> bool {
        let Some(b) = buf.get_mut(..PACKET_LEN) else {
            return false;
        };
        put16(b, field::HTYPE.start, 1);
        put16(b, field::PTYPE.start, 0x0800);
        b[field::HLEN] = 6;
        b[field::PLEN] = 4;
        put16(b, field::OPER.start, self.operation);
        b[field::SHA].copy_from_slice(&self.source_hardware_addr.0);
        put_ipv4(b, field::SPA.start, self.source_protocol_addr);
        b[field::THA].copy_from_slice(&self.target_hardware_addr.0);
        put_ipv4(b, field::TPA.start, self.target_protocol_addr);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real "who-has 10.0.0.1 tell 10.0.0.5" from 02:00:00:aa:bb:01.
    const REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x00, 0xaa, 0xbb, 0x01, 10, 0,
        0, 5, 0, 0, 0, 0, 0, 0, 10, 0, 0, 1,
    ];

    #[test]
    fn parse_emit_round_trip() {
        let p = ArpPacket::new_checked(&REQUEST[..]).unwrap();
        let r = ArpRepr::parse(&p);
        assert_eq!(r.operation, operation::REQUEST);
        assert_eq!(r.source_protocol_addr, Ipv4Addr::new(10, 0, 0, 5));
        assert_eq!(r.target_protocol_addr, Ipv4Addr::new(10, 0, 0, 1));
        let mut out = [0u8; 28];
        assert!(r.emit(&mut out));
        assert_eq!(out, REQUEST);
    }

    #[test]
    fn refuses_non_ethernet_ipv4() {
        let mut b = REQUEST;
        b[4] = 8;
        assert!(matches!(
            ArpPacket::new_checked(&b[..]),
            Err(WireError::ArpFormat { hlen: 8, .. })
        ));
        assert!(ArpPacket::new_checked(&REQUEST[..27]).is_err());
    }
}
