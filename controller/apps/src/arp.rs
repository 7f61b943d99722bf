//! ARP answers from the controller. The pipeline answers known IPs with flows; this is the
//! software fallback (and the reference the flow-based responder is tested against).

use std::net::Ipv4Addr;

use crate::wire::{
    arp::{operation, ArpPacket, ArpRepr, PACKET_LEN},
    ethernet::{self, EtherType, EthernetFrame, EthernetRepr},
    EthernetAddress,
};

/// Answer an ARP request for `ip` with "`ip` is at `mac`", sent to the requester.
/// Probes (sender IP 0.0.0.0, RFC 5227) are answered too, so a VM's duplicate-address check
/// sees the owner; gratuitous ARPs (sender IP == target IP) and replies are not.
pub fn arp_reply(frame: &[u8], ip: Ipv4Addr, mac: EthernetAddress) -> Option<Vec<u8>> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EtherType::ARP {
        return None;
    }
    let req = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).ok()?);
    if req.operation != operation::REQUEST
        || req.target_protocol_addr != ip
        || req.source_protocol_addr == req.target_protocol_addr
        || !req.source_hardware_addr.is_unicast()
    {
        return None;
    }
    let mut buf = vec![0u8; ethernet::HEADER_LEN + PACKET_LEN];
    let mut out = EthernetFrame::new_checked(&mut buf[..]).ok()?;
    EthernetRepr {
        src_addr: mac,
        dst_addr: req.source_hardware_addr,
        ethertype: EtherType::ARP,
    }
    .emit(&mut out);
    let reply = ArpRepr {
        operation: operation::REPLY,
        source_hardware_addr: mac,
        source_protocol_addr: ip,
        target_hardware_addr: req.source_hardware_addr,
        target_protocol_addr: req.source_protocol_addr,
    };
    if !reply.emit(out.payload_mut()) {
        return None;
    }
    Some(buf)
}
