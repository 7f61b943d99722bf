//! ICMP answers a distributed router gives from the controller: echo replies for its
//! interface IPs and time-exceeded for packets whose TTL ran out at the router.
//!
//! Both functions return `None` for anything they must not answer (RFC 1122 3.2.2 and
//! RFC 1812 4.3.2.7): bad checksums, fragments, ICMP errors, broadcast/multicast sources or
//! destinations. `None` is also the answer for malformed input: these run on packet-ins and
//! must never panic.

use std::net::Ipv4Addr;

use crate::build::{ipv4_frame, ORIGINATED_TTL};
use crate::wire::{
    ethernet::{EtherType, EthernetFrame},
    icmpv4::{self, msg_type, Icmpv4Packet},
    ipv4::{protocol, Ipv4Packet, Ipv4Repr},
    is_unicast_host, EthernetAddress,
};

/// How many payload bytes after the original IP header a time-exceeded quotes (RFC 792).
pub const QUOTED_PAYLOAD: usize = 8;

/// Answer an ICMP echo request addressed to `router_ip` with an echo reply from
/// `router_ip`/`router_mac` back to the sender (same id, sequence and data; TTL 64).
pub fn icmp_echo_reply(
    frame: &[u8],
    router_ip: Ipv4Addr,
    router_mac: EthernetAddress,
) -> Option<Vec<u8>> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EtherType::IPV4 || !eth.src_addr().is_unicast() {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if !ip.verify_checksum()
        || ip.is_fragment()
        || ip.protocol() != protocol::ICMP
        || ip.dst_addr() != router_ip
        || !is_unicast_host(ip.src_addr())
    {
        return None;
    }
    let icmp = Icmpv4Packet::new_checked(ip.payload()).ok()?;
    if icmp.msg_type() != msg_type::ECHO_REQUEST || icmp.msg_code() != 0 || !icmp.verify_checksum()
    {
        return None;
    }
    let request = ip.payload();
    let reply_ip = Ipv4Repr {
        src_addr: router_ip,
        dst_addr: ip.src_addr(),
        protocol: protocol::ICMP,
        payload_len: request.len(),
        ttl: ORIGINATED_TTL,
        ident: ip.ident(),
        dscp_ecn: ip.dscp_ecn(),
        dont_frag: false,
    };
    ipv4_frame(router_mac, eth.src_addr(), reply_ip, |b| {
        let Some(dst) = b.get_mut(..request.len()) else {
            return false;
        };
        dst.copy_from_slice(request);
        let Ok(mut reply) = Icmpv4Packet::new_checked(dst) else {
            return false;
        };
        reply.set_msg_type(msg_type::ECHO_REPLY);
        reply.fill_checksum();
        true
    })
}

/// Build ICMP time-exceeded (type 11, code 0 "TTL exceeded in transit") from `router_ip` to
/// the source of `frame`, quoting its IP header and first 8 payload bytes, sent to the
/// frame's Ethernet source. Only for packets that did run out of TTL (TTL <= 1) and that
/// RFC 1812 allows an error for.
pub fn icmp_time_exceeded(
    frame: &[u8],
    router_ip: Ipv4Addr,
    router_mac: EthernetAddress,
) -> Option<Vec<u8>> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EtherType::IPV4
        || !eth.src_addr().is_unicast()
        || eth.dst_addr().is_multicast()
    {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    let dst = ip.dst_addr();
    if !ip.verify_checksum()
        || ip.ttl() > 1
        || ip.frag_offset() != 0
        || !is_unicast_host(ip.src_addr())
        || dst.is_broadcast()
        || dst.is_multicast()
    {
        return None;
    }
    if ip.protocol() == protocol::ICMP {
        // Never answer an error with an error; a header we cannot read counts as one.
        let inner = Icmpv4Packet::new_checked(ip.payload()).ok()?;
        if msg_type::is_error(inner.msg_type()) {
            return None;
        }
    }
    let quoted_len = ip.header_len() + ip.payload().len().min(QUOTED_PAYLOAD);
    let quoted = eth.payload().get(..quoted_len)?;
    let reply_ip = Ipv4Repr {
        src_addr: router_ip,
        dst_addr: ip.src_addr(),
        protocol: protocol::ICMP,
        payload_len: icmpv4::HEADER_LEN + quoted.len(),
        ttl: ORIGINATED_TTL,
        ident: 0,
        dscp_ecn: 0,
        dont_frag: false,
    };
    ipv4_frame(router_mac, eth.src_addr(), reply_ip, |b| {
        let Ok(mut icmp) = Icmpv4Packet::new_checked(b) else {
            return false;
        };
        icmp.set_msg_type(msg_type::TIME_EXCEEDED);
        icmp.set_msg_code(0);
        icmp.set_rest_of_header([0; 4]);
        let Some(data) = icmp.data_mut().get_mut(..quoted.len()) else {
            return false;
        };
        data.copy_from_slice(quoted);
        icmp.fill_checksum();
        true
    })
}
