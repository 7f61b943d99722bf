//! Shared test helpers: build client frames, take reply frames apart, check checksums by
//! recomputing them independently of the crate's own checksum code.
#![allow(dead_code)]

use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use ipnet::Ipv4Net;
use wyvern_apps::wire::{
    ethernet::{EtherType, EthernetFrame, EthernetRepr},
    ipv4::{Ipv4Packet, Ipv4Repr},
    udp::{UdpPacket, UdpRepr},
};
use wyvern_apps::{DhcpConfig, DhcpPortContext, DhcpSubnet, EthernetAddress, HostRoute};

pub const PORT_MAC: EthernetAddress = EthernetAddress([0x02, 0x00, 0x00, 0xaa, 0xbb, 0x01]);
pub const ROUTER_MAC: EthernetAddress = EthernetAddress([0xfa, 0x16, 0x3e, 0x00, 0x00, 0x01]);
pub const PORT_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

/// dhclient's default parameter request list (Debian dhclient.conf), as on the wire.
pub const DHCLIENT_PRL: [u8; 13] = [1, 28, 2, 3, 15, 6, 119, 12, 44, 47, 26, 121, 42];

/// A real DHCPDISCOVER captured from `dhclient -1` (isc-dhcp-client 4.4) on a veth with
/// MAC 02:00:00:aa:bb:01, 342 bytes. Hand-checked layout:
///   eth   ff:ff:ff:ff:ff:ff <- 02:00:00:aa:bb:01, type 0800
///   ipv4  45 tos 10 len 0148 (328) id 0 ttl 80 (128) proto 11 csum 3996 0.0.0.0 -> 255.255.255.255
///   udp   0044 (68) -> 0043 (67) len 0134 (308) csum 3e0a
///   bootp op 01 htype 01 hlen 06 hops 00 xid 3230857d secs 0000 flags 0000
///         ciaddr/yiaddr/siaddr/giaddr 0, chaddr 020000aabb01 + 10 zero bytes,
///         sname 64 and file 128 zero bytes, cookie 63825363
///   opts  35 01 01 (53 DISCOVER) | 0c 02 76 6d (12 hostname "vm") |
///         37 0d 01 1c 02 03 0f 06 77 0c 2c 2f 1a 79 2a (55 PRL, 13 codes) | ff, then padding
pub const DHCLIENT_DISCOVER_HEX: &str = concat!(
    "ffffffffffff020000aabb01080045100148000000008011399600000000ffffffff0044004301343e0a",
    "010106003230857d0000000000000000000000000000000000000000020000aabb010000000000000000",
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000638253633501010c02766d370d011c02",
    "030f06770c2c2f1a792aff00000000000000000000000000000000000000000000000000000000000000",
    "000000000000",
);

pub fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

pub fn subnet() -> DhcpSubnet {
    DhcpSubnet {
        cidr: "10.0.0.0/24".parse().unwrap(),
        gateway: Some(GATEWAY),
        dns_nameservers: vec![Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 3)],
        host_routes: vec![HostRoute {
            destination: "192.168.0.0/16".parse().unwrap(),
            nexthop: Ipv4Addr::new(10, 0, 0, 254),
        }],
        network_mtu: 1500,
    }
}

pub fn ctx() -> DhcpPortContext {
    DhcpPortContext {
        port_mac: PORT_MAC,
        port_ip: PORT_IP,
        subnet: subnet(),
        server_ip: GATEWAY,
        server_mac: ROUTER_MAC,
    }
}

pub fn cfg() -> DhcpConfig {
    DhcpConfig {
        lease_time_secs: 43_200,
        default_dns: vec![Ipv4Addr::new(9, 9, 9, 9)],
        domain_name: Some("openstacklocal".into()),
        overlay_overhead: 50,
    }
}

/// A client message the way dhclient fills it: chaddr = port MAC, hostname, PRL.
pub fn client_msg(t: MessageType, xid: u32) -> Message {
    let mut m = Message::new_with_id(
        xid,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &PORT_MAC.0,
    );
    m.set_opcode(Opcode::BootRequest);
    m.opts_mut().insert(DhcpOption::MessageType(t));
    m.opts_mut().insert(DhcpOption::Hostname("vm".into()));
    m.opts_mut().insert(DhcpOption::ParameterRequestList(
        DHCLIENT_PRL.iter().map(|&c| OptionCode::from(c)).collect(),
    ));
    m
}

pub fn with_flags(mut m: Message, broadcast: bool) -> Message {
    m.set_flags(if broadcast {
        Flags::default().set_broadcast()
    } else {
        Flags::default()
    });
    m
}

/// Ethernet/IPv4/UDP(68->67) frame around raw BOOTP bytes.
pub fn udp_frame_raw(
    eth_src: EthernetAddress,
    ip_src: Ipv4Addr,
    ip_dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let eth_dst = if ip_dst.is_broadcast() {
        EthernetAddress::BROADCAST
    } else {
        ROUTER_MAC
    };
    let ip = Ipv4Repr {
        src_addr: ip_src,
        dst_addr: ip_dst,
        protocol: 17,
        payload_len: 8 + payload.len(),
        ttl: 128,
        ident: 0,
        dscp_ecn: 0x10,
        dont_frag: false,
    };
    let mut buf = vec![0u8; 14 + ip.buffer_len()];
    let mut eth = EthernetFrame::new_checked(&mut buf[..]).unwrap();
    EthernetRepr {
        src_addr: eth_src,
        dst_addr: eth_dst,
        ethertype: EtherType::IPV4,
    }
    .emit(&mut eth);
    let l3 = eth.payload_mut();
    assert!(ip.emit(l3));
    assert!(UdpRepr {
        src_port: sport,
        dst_port: dport
    }
    .emit(&mut l3[20..], ip_src, ip_dst, payload));
    buf
}

/// A client frame: dhclient sends from 0.0.0.0 to broadcast unless it has a lease.
pub fn client_frame(m: &Message, ip_src: Ipv4Addr, ip_dst: Ipv4Addr) -> Vec<u8> {
    udp_frame_raw(PORT_MAC, ip_src, ip_dst, 68, 67, &m.to_vec().unwrap())
}

pub fn broadcast_frame(m: &Message) -> Vec<u8> {
    client_frame(m, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST)
}

/// A reply taken apart, every checksum verified by independent recomputation.
pub struct Reply {
    pub eth_src: EthernetAddress,
    pub eth_dst: EthernetAddress,
    pub ip_src: Ipv4Addr,
    pub ip_dst: Ipv4Addr,
    pub ttl: u8,
    pub sport: u16,
    pub dport: u16,
    pub bootp: Vec<u8>,
    pub msg: Message,
}

/// RFC 1071 sum written out again here, so tests do not trust the crate's checksum code.
pub fn ones_sum(data: &[u8]) -> u16 {
    let mut s: u64 = 0;
    for (i, b) in data.iter().enumerate() {
        s += if i % 2 == 0 {
            u64::from(*b) << 8
        } else {
            u64::from(*b)
        };
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

pub fn parse_reply(frame: &[u8]) -> Reply {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    assert_eq!(eth.ethertype(), EtherType::IPV4);
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert_eq!(ones_sum(ip.header()), 0xffff, "ipv4 header checksum");
    assert_eq!(ip.total_len(), eth.payload().len(), "no trailing bytes");
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert_ne!(udp.checksum(), 0, "udp checksum is filled");
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&ip.src_addr().octets());
    pseudo.extend_from_slice(&ip.dst_addr().octets());
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(udp.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(ip.payload());
    assert_eq!(ones_sum(&pseudo), 0xffff, "udp checksum");
    let bootp = udp.payload().to_vec();
    let msg = Message::decode(&mut Decoder::new(&bootp)).unwrap();
    assert_eq!(msg.opcode(), Opcode::BootReply);
    Reply {
        eth_src: eth.src_addr(),
        eth_dst: eth.dst_addr(),
        ip_src: ip.src_addr(),
        ip_dst: ip.dst_addr(),
        ttl: ip.ttl(),
        sport: udp.src_port(),
        dport: udp.dst_port(),
        bootp,
        msg,
    }
}

/// The raw options of a BOOTP message in wire order: (code, value).
pub fn raw_options(bootp: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut i = 240;
    while i < bootp.len() {
        match bootp[i] {
            0 => i += 1,
            255 => break,
            c => {
                let l = bootp[i + 1] as usize;
                out.push((c, bootp[i + 2..i + 2 + l].to_vec()));
                i += 2 + l;
            }
        }
    }
    out
}

pub fn option(bootp: &[u8], code: u8) -> Option<Vec<u8>> {
    raw_options(bootp)
        .into_iter()
        .find(|(c, _)| *c == code)
        .map(|(_, v)| v)
}

pub fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}
