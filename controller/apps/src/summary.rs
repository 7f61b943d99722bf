//! `parse_packet_in`: the header fields an app needs to decide what a punted packet is.
//!
//! Frames must be complete (the daemon's controller actions use `max_len = NO_BUFFER`): an
//! IPv4 total length past the end of the frame is an error, not a silently short packet.

use std::net::Ipv4Addr;

use crate::wire::{
    arp::ArpPacket,
    ethernet::{EtherType, EthernetFrame},
    icmpv4::Icmpv4Packet,
    ipv4::{protocol, Ipv4Packet},
    udp::UdpPacket,
    EthernetAddress, WireError,
};

/// What a packet-in carries, as far as the apps care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketSummary {
    pub eth_src: EthernetAddress,
    pub eth_dst: EthernetAddress,
    pub ethertype: EtherType,
    /// Present when `ethertype` is IPv4.
    pub ipv4: Option<Ipv4Summary>,
    /// Present when `ethertype` is ARP.
    pub arp: Option<ArpSummary>,
}

/// IPv4 header fields plus the transport header that follows, when there is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Summary {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub protocol: u8,
    /// True for any fragment; later fragments have no transport header (`l4` is `None`).
    pub fragment: bool,
    pub l4: Option<L4Summary>,
}

/// The transport header of a first (or only) fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4Summary {
    Udp { src_port: u16, dst_port: u16 },
    Tcp { src_port: u16, dst_port: u16 },
    Icmp { msg_type: u8, code: u8 },
}

/// ARP fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpSummary {
    pub operation: u16,
    pub sender_mac: EthernetAddress,
    pub sender_ip: Ipv4Addr,
    pub target_ip: Ipv4Addr,
}

/// Why a packet-in could not be summarised; each variant wraps the view's own error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("failed to parse packet-in ethernet header")]
    Ethernet(#[source] WireError),
    #[error("failed to parse packet-in ipv4 header")]
    Ipv4(#[source] WireError),
    #[error("failed to parse packet-in udp header")]
    Udp(#[source] WireError),
    #[error("failed to parse packet-in tcp header: {have} bytes, need 20")]
    TcpTruncated { have: usize },
    #[error("failed to parse packet-in icmp header")]
    Icmp(#[source] WireError),
    #[error("failed to parse packet-in arp packet")]
    Arp(#[source] WireError),
}

impl ParseError {
    /// A stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ParseError::Ethernet(_) => "ethernet",
            ParseError::Ipv4(_) => "ipv4",
            ParseError::Udp(_) => "udp",
            ParseError::TcpTruncated { .. } => "tcp",
            ParseError::Icmp(_) => "icmp",
            ParseError::Arp(_) => "arp",
        }
    }
}

const TCP_MIN_HEADER: usize = 20;

/// Summarise a raw Ethernet frame from a packet-in. Other EtherTypes (IPv6, VLAN-tagged,
/// LLDP...) are summarised at the Ethernet level only.
pub fn parse_packet_in(frame: &[u8]) -> Result<PacketSummary, ParseError> {
    let eth = EthernetFrame::new_checked(frame).map_err(ParseError::Ethernet)?;
    let mut s = PacketSummary {
        eth_src: eth.src_addr(),
        eth_dst: eth.dst_addr(),
        ethertype: eth.ethertype(),
        ipv4: None,
        arp: None,
    };
    match s.ethertype {
        EtherType::IPV4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).map_err(ParseError::Ipv4)?;
            let l4 = if ip.frag_offset() != 0 {
                None
            } else {
                parse_l4(ip.protocol(), ip.payload())?
            };
            s.ipv4 = Some(Ipv4Summary {
                src: ip.src_addr(),
                dst: ip.dst_addr(),
                ttl: ip.ttl(),
                protocol: ip.protocol(),
                fragment: ip.is_fragment(),
                l4,
            });
        }
        EtherType::ARP => {
            let arp = ArpPacket::new_checked(eth.payload()).map_err(ParseError::Arp)?;
            s.arp = Some(ArpSummary {
                operation: arp.operation(),
                sender_mac: arp.sender_hardware_addr(),
                sender_ip: arp.sender_protocol_addr(),
                target_ip: arp.target_protocol_addr(),
            });
        }
        _ => {}
    }
    Ok(s)
}

fn parse_l4(proto: u8, payload: &[u8]) -> Result<Option<L4Summary>, ParseError> {
    Ok(match proto {
        protocol::UDP => {
            let u = UdpPacket::new_checked(payload).map_err(ParseError::Udp)?;
            Some(L4Summary::Udp {
                src_port: u.src_port(),
                dst_port: u.dst_port(),
            })
        }
        protocol::TCP => match payload {
            [a, b, c, d, ..] if payload.len() >= TCP_MIN_HEADER => Some(L4Summary::Tcp {
                src_port: u16::from_be_bytes([*a, *b]),
                dst_port: u16::from_be_bytes([*c, *d]),
            }),
            _ => {
                return Err(ParseError::TcpTruncated {
                    have: payload.len(),
                })
            }
        },
        protocol::ICMP => {
            let i = Icmpv4Packet::new_checked(payload).map_err(ParseError::Icmp)?;
            Some(L4Summary::Icmp {
                msg_type: i.msg_type(),
                code: i.msg_code(),
            })
        }
        _ => None,
    })
}
