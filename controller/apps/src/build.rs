//! Assemble complete Ethernet + IPv4 (+ UDP) frames for the replies the apps send.

use std::net::Ipv4Addr;

use crate::wire::{
    ethernet::{self, EtherType, EthernetFrame, EthernetRepr},
    ipv4::{self, protocol, Ipv4Repr},
    udp::{self, UdpRepr},
    EthernetAddress,
};

/// TTL of packets the controller originates on a router's behalf (Linux default).
pub const ORIGINATED_TTL: u8 = 64;

/// An Ethernet + 20-byte IPv4 header frame with room for `payload_len` bytes, whose payload
/// `fill` writes. `None` only when the payload cannot fit an IPv4 total length.
pub(crate) fn ipv4_frame(
    eth_src: EthernetAddress,
    eth_dst: EthernetAddress,
    ip: Ipv4Repr,
    fill: impl FnOnce(&mut [u8]) -> bool,
) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; ethernet::HEADER_LEN + ip.buffer_len()];
    let mut eth = EthernetFrame::new_checked(&mut buf[..]).ok()?;
    EthernetRepr {
        src_addr: eth_src,
        dst_addr: eth_dst,
        ethertype: EtherType::IPV4,
    }
    .emit(&mut eth);
    let l3 = eth.payload_mut();
    if !ip.emit(l3) {
        return None;
    }
    if !fill(l3.get_mut(ipv4::HEADER_LEN..)?) {
        return None;
    }
    Some(buf)
}

/// Addresses of a UDP datagram to build.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UdpEndpoints {
    pub eth_src: EthernetAddress,
    pub eth_dst: EthernetAddress,
    pub ip_src: Ipv4Addr,
    pub ip_dst: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
}

/// Ethernet + IPv4 + UDP frame carrying `payload`, all checksums filled.
pub(crate) fn udp_frame(ep: UdpEndpoints, payload: &[u8]) -> Option<Vec<u8>> {
    let ip = Ipv4Repr {
        src_addr: ep.ip_src,
        dst_addr: ep.ip_dst,
        protocol: protocol::UDP,
        payload_len: udp::HEADER_LEN + payload.len(),
        ttl: ORIGINATED_TTL,
        ident: 0,
        dscp_ecn: 0,
        dont_frag: false,
    };
    let udp = UdpRepr {
        src_port: ep.src_port,
        dst_port: ep.dst_port,
    };
    ipv4_frame(ep.eth_src, ep.eth_dst, ip, |b| {
        udp.emit(b, ep.ip_src, ep.ip_dst, payload)
    })
}
