//! Controller apps: DHCP server, ICMP and ARP answers for packet-ins; pure functions over packets.
//!
//! Nothing here does I/O: the daemon hands in the raw Ethernet frame of a packet-in plus
//! what it knows about the port, and gets back the frame to PACKET_OUT (or a typed reason
//! for staying silent). That keeps every decision unit-testable with byte fixtures and
//! fuzzable, and keeps the OpenFlow plumbing in one place.
//!
//! Entry points:
//! - [`handle_dhcp`]: DHCP server for one port ([`DhcpPortContext`], [`DhcpConfig`]).
//! - [`icmp_echo_reply`], [`icmp_time_exceeded`]: the distributed router's ICMP.
//! - [`arp_reply`]: software ARP answer (the pipeline's flows normally do this).
//! - [`parse_packet_in`]: header summary for the reactive L3 app.
//! - [`RateLimiter`]: per-port token bucket to put in front of [`handle_dhcp`].

pub mod arp;
mod build;
pub mod dhcp;
#[doc(hidden)]
pub mod fuzzing;
pub mod icmp;
pub mod ratelimit;
pub mod summary;
pub mod wire;

pub use arp::arp_reply;
pub use build::ORIGINATED_TTL;
pub use dhcp::{
    classless_routes, handle_dhcp, handle_dhcp_relayed, relayed_client, DhcpConfig, DhcpDrop,
    DhcpOutcome, DhcpPortContext, DhcpRelay, DhcpReply, DhcpReplyKind, DhcpRequestKind,
    DhcpResponse, DhcpSubnet, HostRoute, NoReplyReason, RequestState,
};
pub use icmp::{icmp_echo_reply, icmp_time_exceeded};
pub use ratelimit::RateLimiter;
pub use summary::{parse_packet_in, ArpSummary, Ipv4Summary, L4Summary, PacketSummary, ParseError};
pub use wire::EthernetAddress;
