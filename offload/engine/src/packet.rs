//! Conversions between raw frames and the IR interpreter's abstract [`Packet`]: the bridge
//! the equivalence tests stand on, and what a trace command needs to run a captured frame
//! through the reference interpreter.

use wyvern_pipeline::interp::{ArpFields, Ipv4Fields, Packet};

use crate::engine::Meta;
use crate::wire::{udp_ports, ArpPacket, EthernetFrame, Headers, Ipv4Packet, ETH_TYPE_ARP};

/// Frames shorter than this are padded (Ethernet's minimum without the FCS).
pub const MIN_FRAME: usize = 60;

/// Encodes `p` as an Ethernet frame: ARP, or IPv4 with a UDP header (and `udp_payload`
/// bytes of zeros) or an 8-byte ICMP header, with valid IPv4 checksums.
pub fn encode(p: &Packet, udp_payload: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(64 + udp_payload);
    f.extend_from_slice(&p.eth_dst.0);
    f.extend_from_slice(&p.eth_src.0);
    f.extend_from_slice(&p.eth_type.to_be_bytes());
    if let Some(a) = p.arp.filter(|_| p.eth_type == ETH_TYPE_ARP) {
        f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4]);
        f.extend_from_slice(&a.op.to_be_bytes());
        f.extend_from_slice(&a.sha.0);
        f.extend_from_slice(&a.spa.octets());
        f.extend_from_slice(&a.tha.0);
        f.extend_from_slice(&a.tpa.octets());
    } else if let Some(ip) = p.ipv4 {
        let l4_len = match (ip.udp, ip.icmp_type) {
            (Some(_), _) => 8 + udp_payload,
            _ => 8,
        };
        let start = f.len();
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&((20 + l4_len) as u16).to_be_bytes());
        f.extend_from_slice(&[0x12, 0x34, 0x40, 0, ip.ttl, ip.proto, 0, 0]);
        f.extend_from_slice(&ip.src.octets());
        f.extend_from_slice(&ip.dst.octets());
        if let Ok(mut v) = Ipv4Packet::new_checked(&mut f[start..]) {
            v.fill_checksum();
        }
        match (ip.udp, ip.icmp_type) {
            (Some((s, d)), _) => {
                f.extend_from_slice(&s.to_be_bytes());
                f.extend_from_slice(&d.to_be_bytes());
                f.extend_from_slice(&((8 + udp_payload) as u16).to_be_bytes());
                f.extend_from_slice(&[0, 0]);
                f.resize(f.len() + udp_payload, 0);
            }
            (None, Some(t)) => f.extend_from_slice(&[t, 0, 0, 0, 0, 1, 0, 1]),
            (None, None) => f.extend_from_slice(&[0; 8]),
        }
    }
    if f.len() < MIN_FRAME {
        f.resize(MIN_FRAME, 0);
    }
    f
}

/// Decodes a frame into the interpreter's packet (None if shorter than Ethernet).
pub fn decode(frame: &[u8], meta: Meta) -> Option<Packet> {
    let h = Headers::parse(frame).ok()?;
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let arp = h
        .arp
        .and_then(|off| ArpPacket::new_checked(&frame[off..]).ok())
        .map(|a| ArpFields {
            op: a.op(),
            sha: a.sha(),
            spa: a.spa(),
            tha: a.tha(),
            tpa: a.tpa(),
        });
    let ipv4 = h
        .ipv4
        .and_then(|off| Ipv4Packet::new_checked(&frame[off..]).ok())
        .map(|ip| Ipv4Fields {
            src: ip.src(),
            dst: ip.dst(),
            proto: ip.protocol(),
            ttl: ip.ttl(),
            udp: h.udp.and_then(|off| udp_ports(frame, off)),
            icmp_type: h.icmp.map(|off| frame[off]),
        });
    Some(Packet {
        in_port: meta.in_port,
        tun_id: meta.tun_id,
        eth_src: eth.src(),
        eth_dst: eth.dst(),
        eth_type: eth.ethertype(),
        arp,
        ipv4,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use wyvern_model::MacAddr;

    #[test]
    fn round_trips() {
        let m1 = MacAddr([2, 0, 0, 0, 0, 1]);
        let m2 = MacAddr([2, 0, 0, 0, 0, 2]);
        let a = Ipv4Addr::new(10, 0, 0, 1);
        let b = Ipv4Addr::new(10, 0, 0, 2);
        let meta = Meta {
            in_port: 3,
            tun_id: None,
        };
        for p in [
            Packet::arp_request(3, m1, a, b),
            Packet::ipv4(3, m1, m2, a, b, 64),
            Packet::dhcp_discover(3, m1),
        ] {
            let f = encode(&p, 300);
            assert!(f.len() >= MIN_FRAME);
            assert_eq!(decode(&f, meta), Some(p));
        }
        let f = encode(&Packet::ipv4(3, m1, m2, a, b, 64), 0);
        assert!(Ipv4Packet::new_checked(&f[14..]).unwrap().checksum_ok());
    }
}
