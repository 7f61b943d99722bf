//! The DHCP server for one port's packet-in: RFC 2131 semantics (as OVN and dnsmasq apply
//! them) for a port whose address is fixed, so there is no pool and no lease table: every
//! decision follows from the request and the port's context.
//!
//! The frame is checked layer by layer with the `wire` views, then the BOOTP options are
//! walked once by hand so that an option running past the end is a typed drop. `dhcproto`
//! is not given the request's options: it stops decoding silently at the first bad option
//! (which would hide e.g. a parameter request list after a broken hostname) and some of its
//! option decoders `debug_assert!` on lengths, i.e. panic on hostile input in debug builds.
//! `dhcproto` decodes the fixed header and encodes the reply (including RFC 3396 splitting
//! of long options and RFC 3442 routes); reply options are encoded one by one so that they
//! follow the client's parameter request list order (RFC 2131 4.3.1 "SHOULD").

use std::net::Ipv4Addr;

use dhcproto::v4::{self as d4, DhcpOption, Message, MessageType, Opcode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use ipnet::Ipv4Net;

use crate::build::{udp_frame, UdpEndpoints};
use crate::wire::{
    ethernet::{EtherType, EthernetFrame},
    ipv4::{protocol, Ipv4Packet},
    udp::UdpPacket,
    EthernetAddress, WireError,
};

/// UDP port of DHCP servers.
pub const SERVER_PORT: u16 = 67;
/// UDP port of DHCP clients.
pub const CLIENT_PORT: u16 = 68;

mod field {
    // BOOTP fixed header (RFC 2131 figure 1), offsets into the UDP payload.
    pub const OP: usize = 0;
    pub const HTYPE: usize = 1;
    pub const HLEN: usize = 2;
    pub const GIADDR: usize = 24;
    pub const CHADDR: usize = 28;
    pub const MAGIC: std::ops::Range<usize> = 236..240;
    pub const OPTIONS: usize = 240;
}

/// RFC 2132 magic cookie.
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Replies are padded to the 300-byte BOOTP minimum (RFC 1542 2.1), as dnsmasq and ISC do.
const MIN_BOOTP_LEN: usize = 300;
/// RFC 2132 9.3 / RFC 791: the smallest MTU a host may be told.
const MIN_MTU: u16 = 68;

mod code {
    pub const PAD: u8 = 0;
    pub const REQUESTED_IP: u8 = 50;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const PARAMETER_REQUEST_LIST: u8 = 55;
    pub const RELAY_AGENT_INFORMATION: u8 = 82;
    pub const END: u8 = 255;
}

/// A static route of the subnet (Neutron `host_routes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostRoute {
    pub destination: Ipv4Net,
    pub nexthop: Ipv4Addr,
}

/// The subnet a port's fixed IP belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpSubnet {
    pub cidr: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    pub dns_nameservers: Vec<Ipv4Addr>,
    pub host_routes: Vec<HostRoute>,
    /// The network's MTU; the overlay overhead from `DhcpConfig` is subtracted from it.
    pub network_mtu: u16,
}

/// Everything about the port a packet-in came from that the answer depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpPortContext {
    pub port_mac: EthernetAddress,
    pub port_ip: Ipv4Addr,
    pub subnet: DhcpSubnet,
    /// The server identifier and reply source: the subnet gateway, else a configured address.
    pub server_ip: Ipv4Addr,
    /// Reply Ethernet source: the router interface MAC, else a configured address.
    pub server_mac: EthernetAddress,
}

/// The relay agent a relayed request came through (RFC 2131 4.1, RFC 3046, RFC 8357).
///
/// The daemon only builds one when relayed requests are enabled and the relay is a port of
/// the client's network whose own fixed IP is the request's `giaddr` (see
/// [`handle_dhcp_relayed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DhcpRelay {
    /// The relay's address: the request's giaddr, where the reply goes.
    pub giaddr: Ipv4Addr,
    /// The relay port's MAC: the reply's Ethernet destination.
    pub relay_mac: EthernetAddress,
}

/// The two fields that tell whether a request was relayed and for which client, read
/// without validating the rest (the handler does that). `None` when the frame is not a
/// relayed BOOTP request long enough to hold them.
pub fn relayed_client(frame: &[u8]) -> Option<(Ipv4Addr, EthernetAddress)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    let udp = UdpPacket::new_checked(ip.payload()).ok()?;
    let bootp = udp.payload();
    if bootp.len() < field::OPTIONS {
        return None;
    }
    let giaddr = crate::wire::ipv4_at(bootp, field::GIADDR);
    if giaddr.is_unspecified() {
        return None;
    }
    let chaddr = EthernetAddress::from_bytes(&bootp[field::CHADDR..field::CHADDR + 6]);
    Some((giaddr, chaddr))
}

/// Deployment-wide DHCP settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpConfig {
    /// Lease time (option 51); T1 = 1/2 and T2 = 7/8 of it. Default 43200 s (Neutron's).
    pub lease_time_secs: u32,
    /// DNS servers (option 6) for subnets that have none.
    pub default_dns: Vec<Ipv4Addr>,
    /// Domain name (option 15), if any.
    pub domain_name: Option<String>,
    /// Bytes the overlay adds (50 for VXLAN over IPv4, 0 on a single host); option 26
    /// carries the network MTU less this.
    pub overlay_overhead: u16,
}

impl Default for DhcpConfig {
    fn default() -> Self {
        DhcpConfig {
            lease_time_secs: 43_200,
            default_dns: Vec::new(),
            domain_name: None,
            overlay_overhead: 0,
        }
    }
}

/// Which REQUEST this was (RFC 2131 4.3.2), told apart by server id / requested IP / ciaddr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    /// Answering an OFFER: server identifier and requested IP present.
    Selecting,
    /// Rebooted client checking its address: requested IP, no server identifier.
    InitReboot,
    /// ciaddr set, sent unicast to the server.
    Renewing,
    /// ciaddr set, broadcast after T2.
    Rebinding,
}

/// The client message that was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DhcpRequestKind {
    Discover,
    Request(RequestState),
    Decline,
    Release,
    Inform,
}

impl DhcpRequestKind {
    /// A stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            DhcpRequestKind::Discover => "discover",
            DhcpRequestKind::Request(RequestState::Selecting) => "request_selecting",
            DhcpRequestKind::Request(RequestState::InitReboot) => "request_init_reboot",
            DhcpRequestKind::Request(RequestState::Renewing) => "request_renewing",
            DhcpRequestKind::Request(RequestState::Rebinding) => "request_rebinding",
            DhcpRequestKind::Decline => "decline",
            DhcpRequestKind::Release => "release",
            DhcpRequestKind::Inform => "inform",
        }
    }
}

/// The server message sent back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DhcpReplyKind {
    Offer,
    Ack,
    Nak,
}

impl DhcpReplyKind {
    pub fn label(&self) -> &'static str {
        match self {
            DhcpReplyKind::Offer => "offer",
            DhcpReplyKind::Ack => "ack",
            DhcpReplyKind::Nak => "nak",
        }
    }
}

/// Why a valid message gets no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoReplyReason {
    /// RELEASE: nothing to free, the address stays the port's.
    Release,
    /// DECLINE: the client saw a conflict; the port keeps its address, nothing to answer.
    Decline,
    /// REQUEST in SELECTING naming another server: the client chose someone else.
    OtherServer,
}

impl NoReplyReason {
    pub fn label(&self) -> &'static str {
        match self {
            NoReplyReason::Release => "release",
            NoReplyReason::Decline => "decline",
            NoReplyReason::OtherServer => "other_server",
        }
    }
}

/// A reply frame, ready to PACKET_OUT to the port the request came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpReply {
    pub kind: DhcpReplyKind,
    /// Ethernet + IPv4 + UDP (67 -> 68) + DHCP, checksums filled.
    pub frame: Vec<u8>,
}

/// What to do with a reply, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhcpResponse {
    Reply(DhcpReply),
    NoReply(NoReplyReason),
}

/// A handled client message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpOutcome {
    pub request: DhcpRequestKind,
    pub response: DhcpResponse,
}

impl DhcpOutcome {
    /// The frame to send, if any.
    pub fn reply_frame(&self) -> Option<&[u8]> {
        match &self.response {
            DhcpResponse::Reply(r) => Some(&r.frame),
            DhcpResponse::NoReply(_) => None,
        }
    }

    /// The reply kind, if any.
    pub fn reply_kind(&self) -> Option<DhcpReplyKind> {
        match &self.response {
            DhcpResponse::Reply(r) => Some(r.kind),
            DhcpResponse::NoReply(_) => None,
        }
    }
}

/// Why a packet-in was dropped without an answer. One variant per check.
#[derive(Debug, thiserror::Error)]
pub enum DhcpDrop {
    #[error("failed to read dhcp packet-in: ethernet header truncated")]
    EthernetTruncated(#[source] WireError),
    #[error("failed to read dhcp packet-in: ethertype {ethertype:#06x} is not IPv4")]
    NotIpv4 { ethertype: u16 },
    #[error("failed to read dhcp packet-in: bad ipv4 header")]
    Ipv4Malformed(#[source] WireError),
    #[error("failed to read dhcp packet-in: ipv4 header checksum is wrong")]
    Ipv4Checksum,
    #[error("failed to read dhcp packet-in: ipv4 fragment (DHCP is never fragmented here)")]
    Ipv4Fragment,
    #[error("failed to read dhcp packet-in: ip protocol {protocol} is not UDP")]
    NotUdp { protocol: u8 },
    #[error("failed to read dhcp packet-in: bad udp header")]
    UdpMalformed(#[source] WireError),
    #[error("failed to read dhcp packet-in: udp {src} -> {dst} is not client 68 -> server 67")]
    WrongUdpPorts { src: u16, dst: u16 },
    #[error("failed to read dhcp message: {len} bytes, need 240 (BOOTP header and cookie)")]
    BootpTruncated { len: usize },
    #[error("failed to read dhcp message: op {op} is not BOOTREQUEST (1)")]
    NotBootRequest { op: u8 },
    #[error("failed to read dhcp message: htype {htype} hlen {hlen} is not Ethernet (1, 6)")]
    BadHardwareAddress { htype: u8, hlen: u8 },
    #[error("failed to read dhcp message: magic cookie {0:02x?} is not 63:82:53:63")]
    BadMagicCookie([u8; 4]),
    #[error("failed to match dhcp client: chaddr {chaddr} is not the port's MAC {port_mac}")]
    ChaddrMismatch {
        chaddr: EthernetAddress,
        port_mac: EthernetAddress,
    },
    #[error("failed to read dhcp option {code} at offset {offset}: length runs past the end")]
    OptionOverrun { code: u8, offset: usize },
    #[error("failed to read dhcp option {code}: length {len} is wrong for its type")]
    BadOptionLength { code: u8, len: u8 },
    #[error("failed to read dhcp message: no message type option (53)")]
    MissingMessageType,
    #[error("failed to handle dhcp message type {msg_type}: not a client message")]
    UnexpectedMessageType { msg_type: u8 },
    #[error("failed to handle dhcp message: relayed (giaddr {giaddr}) on a port-local server")]
    Relayed { giaddr: Ipv4Addr },
    #[error(
        "failed to handle relayed dhcp message: giaddr {giaddr} is not the relay port's {relay}"
    )]
    RelayMismatch { giaddr: Ipv4Addr, relay: Ipv4Addr },
    #[error("failed to decode dhcp message with dhcproto")]
    Decode(#[source] dhcproto::error::DecodeError),
    #[error("failed to handle dhcp request: neither requested IP (50) nor ciaddr is set")]
    RequestWithoutAddress,
    #[error("failed to answer dhcp: port IP {port_ip} is outside its subnet {cidr}")]
    PortIpOutsideSubnet { port_ip: Ipv4Addr, cidr: Ipv4Net },
    #[error("failed to encode dhcp reply with dhcproto")]
    Encode(#[source] dhcproto::error::EncodeError),
    #[error("failed to build dhcp reply frame: {len} bytes do not fit one IPv4 packet")]
    ReplyTooLarge { len: usize },
}

impl DhcpDrop {
    /// A stable label for metrics (`wyvern_dhcp_dropped_total{reason=...}`).
    pub fn label(&self) -> &'static str {
        match self {
            DhcpDrop::EthernetTruncated(_) => "ethernet_truncated",
            DhcpDrop::NotIpv4 { .. } => "not_ipv4",
            DhcpDrop::Ipv4Malformed(_) => "ipv4_malformed",
            DhcpDrop::Ipv4Checksum => "ipv4_checksum",
            DhcpDrop::Ipv4Fragment => "ipv4_fragment",
            DhcpDrop::NotUdp { .. } => "not_udp",
            DhcpDrop::UdpMalformed(_) => "udp_malformed",
            DhcpDrop::WrongUdpPorts { .. } => "wrong_udp_ports",
            DhcpDrop::BootpTruncated { .. } => "bootp_truncated",
            DhcpDrop::NotBootRequest { .. } => "not_bootrequest",
            DhcpDrop::BadHardwareAddress { .. } => "bad_hardware_address",
            DhcpDrop::BadMagicCookie(_) => "bad_magic_cookie",
            DhcpDrop::ChaddrMismatch { .. } => "chaddr_mismatch",
            DhcpDrop::OptionOverrun { .. } => "option_overrun",
            DhcpDrop::BadOptionLength { .. } => "bad_option_length",
            DhcpDrop::MissingMessageType => "missing_message_type",
            DhcpDrop::UnexpectedMessageType { .. } => "unexpected_message_type",
            DhcpDrop::Relayed { .. } => "relayed",
            DhcpDrop::RelayMismatch { .. } => "relay_mismatch",
            DhcpDrop::Decode(_) => "decode",
            DhcpDrop::RequestWithoutAddress => "request_without_address",
            DhcpDrop::PortIpOutsideSubnet { .. } => "port_ip_outside_subnet",
            DhcpDrop::Encode(_) => "encode",
            DhcpDrop::ReplyTooLarge { .. } => "reply_too_large",
        }
    }

    /// Every label, for pre-registering metric series.
    pub const LABELS: [&'static str; 24] = [
        "ethernet_truncated",
        "not_ipv4",
        "ipv4_malformed",
        "ipv4_checksum",
        "ipv4_fragment",
        "not_udp",
        "udp_malformed",
        "wrong_udp_ports",
        "bootp_truncated",
        "not_bootrequest",
        "bad_hardware_address",
        "bad_magic_cookie",
        "chaddr_mismatch",
        "option_overrun",
        "bad_option_length",
        "missing_message_type",
        "unexpected_message_type",
        "relayed",
        "relay_mismatch",
        "decode",
        "request_without_address",
        "port_ip_outside_subnet",
        "encode",
        "reply_too_large",
    ];
}

/// The options this server acts on, read by the strict walk.
#[derive(Debug, Default)]
struct ClientOptions {
    msg_type: Option<u8>,
    requested_ip: Option<Ipv4Addr>,
    server_id: Option<Ipv4Addr>,
    /// Parameter request list (option 55), concatenated if split (RFC 3396).
    prl: Vec<u8>,
    /// Relay agent information (option 82) as sent, echoed in replies (RFC 3046 2.2).
    relay_agent_info: Option<Vec<u8>>,
}

/// RFC 8357 relay source port sub-option of option 82: reply to the relay's source port.
const RELAY_SOURCE_PORT_SUBOPTION: u8 = 19;

/// Whether option 82's sub-options (code, length, value...) include the relay source port.
fn has_relay_source_port(info: &[u8]) -> bool {
    let mut i = 0;
    while let (Some(&code), Some(&len)) = (info.get(i), info.get(i + 1)) {
        if code == RELAY_SOURCE_PORT_SUBOPTION {
            return true;
        }
        i += 2 + usize::from(len);
    }
    false
}

/// Walk the options area once; every length is checked against the end of the message.
/// `base` is the offset of `opts` within the DHCP message, for error context. Option
/// overload (52) is not followed: clients do not use it in requests in practice.
fn walk_options(opts: &[u8], base: usize) -> Result<ClientOptions, DhcpDrop> {
    let mut out = ClientOptions::default();
    let mut i = 0;
    while let Some(&code) = opts.get(i) {
        match code {
            code::PAD => {
                i += 1;
                continue;
            }
            code::END => break,
            _ => {}
        }
        let overrun = DhcpDrop::OptionOverrun {
            code,
            offset: base + i,
        };
        let Some(&len) = opts.get(i + 1) else {
            return Err(overrun);
        };
        let start = i + 2;
        let end = start + usize::from(len);
        let Some(value) = opts.get(start..end) else {
            return Err(overrun);
        };
        let addr = |v: &[u8]| match v {
            [a, b, c, d] => Ok(Ipv4Addr::new(*a, *b, *c, *d)),
            _ => Err(DhcpDrop::BadOptionLength { code, len }),
        };
        match code {
            code::MESSAGE_TYPE => match value {
                [t] => out.msg_type = Some(*t),
                _ => return Err(DhcpDrop::BadOptionLength { code, len }),
            },
            code::REQUESTED_IP => out.requested_ip = Some(addr(value)?),
            code::SERVER_ID => out.server_id = Some(addr(value)?),
            code::PARAMETER_REQUEST_LIST => out.prl.extend_from_slice(value),
            code::RELAY_AGENT_INFORMATION => out
                .relay_agent_info
                .get_or_insert_with(Vec::new)
                .extend_from_slice(value),
            _ => {}
        }
        i = end;
    }
    Ok(out)
}

/// A request that passed every check, with what the answer needs.
struct ClientRequest {
    msg: Message,
    msg_type: MessageType,
    opts: ClientOptions,
    ip_src: Ipv4Addr,
    ip_dst: Ipv4Addr,
    /// UDP source port (a relay's, for RFC 8357).
    udp_src: u16,
}

/// Check the frame layer by layer and decode the DHCP message.
fn read_request(
    frame: &[u8],
    port_mac: EthernetAddress,
    relay: Option<&DhcpRelay>,
) -> Result<ClientRequest, DhcpDrop> {
    let eth = EthernetFrame::new_checked(frame).map_err(DhcpDrop::EthernetTruncated)?;
    if eth.ethertype() != EtherType::IPV4 {
        return Err(DhcpDrop::NotIpv4 {
            ethertype: eth.ethertype().0,
        });
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).map_err(DhcpDrop::Ipv4Malformed)?;
    if !ip.verify_checksum() {
        return Err(DhcpDrop::Ipv4Checksum);
    }
    if ip.is_fragment() {
        return Err(DhcpDrop::Ipv4Fragment);
    }
    if ip.protocol() != protocol::UDP {
        return Err(DhcpDrop::NotUdp {
            protocol: ip.protocol(),
        });
    }
    // The UDP checksum is not verified: packets from local VMs may carry a partial
    // (offloaded) checksum, and dnsmasq/OVN do not check it either.
    let udp = UdpPacket::new_checked(ip.payload()).map_err(DhcpDrop::UdpMalformed)?;
    // A relay sends from 67, or from any port under RFC 8357; a client from 68.
    let src_ok = relay.is_some() || udp.src_port() == CLIENT_PORT;
    if !src_ok || udp.dst_port() != SERVER_PORT {
        return Err(DhcpDrop::WrongUdpPorts {
            src: udp.src_port(),
            dst: udp.dst_port(),
        });
    }
    let bootp = udp.payload();
    let Some(options) = bootp.get(field::OPTIONS..) else {
        return Err(DhcpDrop::BootpTruncated { len: bootp.len() });
    };
    let op = bootp[field::OP];
    if op != 1 {
        return Err(DhcpDrop::NotBootRequest { op });
    }
    let (htype, hlen) = (bootp[field::HTYPE], bootp[field::HLEN]);
    if (htype, hlen) != (1, 6) {
        return Err(DhcpDrop::BadHardwareAddress { htype, hlen });
    }
    let mut magic = [0u8; 4];
    magic.copy_from_slice(&bootp[field::MAGIC]);
    if magic != MAGIC_COOKIE {
        return Err(DhcpDrop::BadMagicCookie(magic));
    }
    let chaddr = EthernetAddress::from_bytes(&bootp[field::CHADDR..field::CHADDR + 6]);
    if chaddr != port_mac {
        return Err(DhcpDrop::ChaddrMismatch { chaddr, port_mac });
    }
    let opts = walk_options(options, field::OPTIONS)?;
    let raw_type = opts.msg_type.ok_or(DhcpDrop::MissingMessageType)?;
    let giaddr = crate::wire::ipv4_at(bootp, field::GIADDR);
    match relay {
        None if !giaddr.is_unspecified() => return Err(DhcpDrop::Relayed { giaddr }),
        Some(r) if r.giaddr != giaddr => {
            return Err(DhcpDrop::RelayMismatch {
                giaddr,
                relay: r.giaddr,
            })
        }
        _ => {}
    }
    // Only the fixed header and cookie go to dhcproto: its option decoder has
    // `debug_assert!`s on option lengths (e.g. option 81 with length < 3 panics in debug
    // builds, found by the no-panic test), and we already hold every option we act on.
    let header = bootp.get(..field::OPTIONS).unwrap_or(bootp);
    let msg = Message::decode(&mut Decoder::new(header)).map_err(DhcpDrop::Decode)?;
    Ok(ClientRequest {
        msg,
        msg_type: MessageType::from(raw_type),
        opts,
        ip_src: ip.src_addr(),
        ip_dst: ip.dst_addr(),
        udp_src: udp.src_port(),
    })
}

/// Answer one DHCP packet-in for the port described by `ctx`.
///
/// The daemon calls this only for ports on subnets with DHCP enabled, after its rate
/// limiter allowed the packet; everything else (including bad input) is decided here.
pub fn handle_dhcp(
    frame: &[u8],
    ctx: &DhcpPortContext,
    cfg: &DhcpConfig,
) -> Result<DhcpOutcome, DhcpDrop> {
    handle(frame, ctx, cfg, None)
}

/// Answer one relayed DHCP request (giaddr set) for the client port `ctx` (the port whose
/// MAC is the request's chaddr), through `relay`. Everything else is as [`handle_dhcp`];
/// replies go to the relay (giaddr, UDP 67, or the relay's source port when option 82
/// carries the RFC 8357 relay source port sub-option), with option 82 echoed.
pub fn handle_dhcp_relayed(
    frame: &[u8],
    ctx: &DhcpPortContext,
    cfg: &DhcpConfig,
    relay: &DhcpRelay,
) -> Result<DhcpOutcome, DhcpDrop> {
    handle(frame, ctx, cfg, Some(relay))
}

fn handle(
    frame: &[u8],
    ctx: &DhcpPortContext,
    cfg: &DhcpConfig,
    relay: Option<&DhcpRelay>,
) -> Result<DhcpOutcome, DhcpDrop> {
    let req = read_request(frame, ctx.port_mac, relay)?;
    if !ctx.subnet.cidr.contains(&ctx.port_ip) {
        return Err(DhcpDrop::PortIpOutsideSubnet {
            port_ip: ctx.port_ip,
            cidr: ctx.subnet.cidr,
        });
    }
    let reply = |kind| -> Result<DhcpResponse, DhcpDrop> {
        Ok(DhcpResponse::Reply(build_reply(
            &req, ctx, cfg, kind, relay,
        )?))
    };
    let (request, response) = match req.msg_type {
        MessageType::Discover => (DhcpRequestKind::Discover, reply(DhcpReplyKind::Offer)?),
        MessageType::Request => {
            let ciaddr = req.msg.ciaddr();
            let (state, addr) = match (req.opts.server_id, req.opts.requested_ip) {
                (Some(sid), _) if sid != ctx.server_ip => {
                    return Ok(DhcpOutcome {
                        request: DhcpRequestKind::Request(RequestState::Selecting),
                        response: DhcpResponse::NoReply(NoReplyReason::OtherServer),
                    })
                }
                (Some(_), requested) => (
                    RequestState::Selecting,
                    requested.or((!ciaddr.is_unspecified()).then_some(ciaddr)),
                ),
                (None, Some(requested)) => (RequestState::InitReboot, Some(requested)),
                (None, None) if !ciaddr.is_unspecified() => {
                    let state = if req.ip_dst.is_broadcast() {
                        RequestState::Rebinding
                    } else {
                        RequestState::Renewing
                    };
                    (state, Some(ciaddr))
                }
                (None, None) => return Err(DhcpDrop::RequestWithoutAddress),
            };
            let addr = addr.ok_or(DhcpDrop::RequestWithoutAddress)?;
            let kind = if addr == ctx.port_ip {
                DhcpReplyKind::Ack
            } else {
                DhcpReplyKind::Nak
            };
            (DhcpRequestKind::Request(state), reply(kind)?)
        }
        MessageType::Decline => (
            DhcpRequestKind::Decline,
            DhcpResponse::NoReply(NoReplyReason::Decline),
        ),
        MessageType::Release => (
            DhcpRequestKind::Release,
            DhcpResponse::NoReply(NoReplyReason::Release),
        ),
        MessageType::Inform => (DhcpRequestKind::Inform, reply(DhcpReplyKind::Ack)?),
        other => {
            return Err(DhcpDrop::UnexpectedMessageType {
                msg_type: u8::from(other),
            })
        }
    };
    Ok(DhcpOutcome { request, response })
}

/// Option 121 content: the subnet's host routes, then the default route via the gateway
/// (RFC 3442: a client that receives 121 ignores option 3, so the default must be in 121).
pub fn classless_routes(subnet: &DhcpSubnet) -> Vec<(Ipv4Net, Ipv4Addr)> {
    let mut routes: Vec<(Ipv4Net, Ipv4Addr)> = subnet
        .host_routes
        .iter()
        .map(|r| (r.destination.trunc(), r.nexthop))
        .collect();
    if let Some(gw) = subnet.gateway {
        if !routes.iter().any(|(d, _)| d.prefix_len() == 0) {
            routes.push((Ipv4Net::default(), gw));
        }
    }
    routes
}

/// The parameter options (everything but 53/54 and the lease times) this port gets.
fn parameter_options(ctx: &DhcpPortContext, cfg: &DhcpConfig) -> Vec<DhcpOption> {
    let subnet = &ctx.subnet;
    let mut opts = vec![
        DhcpOption::SubnetMask(subnet.cidr.netmask()),
        DhcpOption::BroadcastAddr(subnet.cidr.broadcast()),
    ];
    if let Some(gw) = subnet.gateway {
        opts.push(DhcpOption::Router(vec![gw]));
    }
    let dns = if subnet.dns_nameservers.is_empty() {
        &cfg.default_dns
    } else {
        &subnet.dns_nameservers
    };
    if !dns.is_empty() {
        opts.push(DhcpOption::DomainNameServer(dns.clone()));
    }
    if let Some(domain) = cfg.domain_name.as_ref().filter(|d| !d.is_empty()) {
        opts.push(DhcpOption::DomainName(domain.clone()));
    }
    let mtu = subnet.network_mtu.saturating_sub(cfg.overlay_overhead);
    if mtu >= MIN_MTU {
        opts.push(DhcpOption::InterfaceMtu(mtu));
    }
    let routes = classless_routes(subnet);
    if !routes.is_empty() {
        opts.push(DhcpOption::ClasslessStaticRoute(routes));
    }
    opts
}

/// Order parameter options as the client listed them; unrequested ones follow by code.
fn order_by_prl(opts: &mut [DhcpOption], prl: &[u8]) {
    opts.sort_by_key(|o| {
        let c = u8::from(d4::OptionCode::from(o));
        match prl.iter().position(|&p| p == c) {
            Some(pos) => pos,
            None => 256 + usize::from(c),
        }
    });
}

fn build_reply(
    req: &ClientRequest,
    ctx: &DhcpPortContext,
    cfg: &DhcpConfig,
    kind: DhcpReplyKind,
    relay: Option<&DhcpRelay>,
) -> Result<DhcpReply, DhcpDrop> {
    let inform = req.msg_type == MessageType::Inform;
    let ciaddr = req.msg.ciaddr();
    // RFC 2131 table 3: yiaddr is 0 in NAK and in the ACK to an INFORM; ciaddr is echoed
    // only in an ACK to a REQUEST/INFORM that carried it.
    let yiaddr = match kind {
        DhcpReplyKind::Nak => Ipv4Addr::UNSPECIFIED,
        _ if inform => Ipv4Addr::UNSPECIFIED,
        _ => ctx.port_ip,
    };
    let reply_ciaddr = match kind {
        DhcpReplyKind::Ack => ciaddr,
        _ => Ipv4Addr::UNSPECIFIED,
    };
    let mut msg = Message::new_with_id(
        req.msg.xid(),
        reply_ciaddr,
        yiaddr,
        Ipv4Addr::UNSPECIFIED,
        relay.map_or(Ipv4Addr::UNSPECIFIED, |r| r.giaddr),
        &ctx.port_mac.0,
    );
    let mut flags = req.msg.flags();
    if relay.is_some() && kind == DhcpReplyKind::Nak {
        // RFC 2131 4.3.2: a NAK through a relay asks it to broadcast to the client.
        flags = flags.set_broadcast();
    }
    msg.set_opcode(Opcode::BootReply).set_flags(flags);

    let msg_type = match kind {
        DhcpReplyKind::Offer => MessageType::Offer,
        DhcpReplyKind::Ack => MessageType::Ack,
        DhcpReplyKind::Nak => MessageType::Nak,
    };
    let mut opts = vec![
        DhcpOption::MessageType(msg_type),
        DhcpOption::ServerIdentifier(ctx.server_ip),
    ];
    if kind != DhcpReplyKind::Nak {
        if !inform {
            let lease = cfg.lease_time_secs;
            opts.push(DhcpOption::AddressLeaseTime(lease));
            if lease != u32::MAX {
                opts.push(DhcpOption::Renewal(lease / 2));
                // 7/8 without overflow.
                opts.push(DhcpOption::Rebinding(lease - lease / 8));
            }
        }
        let mut params = parameter_options(ctx, cfg);
        order_by_prl(&mut params, &req.opts.prl);
        opts.extend(params);
    }
    if let (Some(_), Some(info)) = (relay, &req.opts.relay_agent_info) {
        opts.push(DhcpOption::Unknown(d4::UnknownOption::new(
            d4::OptionCode::from(code::RELAY_AGENT_INFORMATION),
            info.clone(),
        )));
    }

    let mut payload = Vec::with_capacity(576);
    let mut e = Encoder::new(&mut payload);
    msg.encode(&mut e).map_err(DhcpDrop::Encode)?;
    for o in &opts {
        o.encode(&mut e).map_err(DhcpDrop::Encode)?;
    }
    DhcpOption::End.encode(&mut e).map_err(DhcpDrop::Encode)?;
    if payload.len() < MIN_BOOTP_LEN {
        payload.resize(MIN_BOOTP_LEN, 0);
    }

    let broadcast = (EthernetAddress::BROADCAST, Ipv4Addr::BROADCAST);
    let mut dst_port = CLIENT_PORT;
    let (eth_dst, ip_dst) = if let Some(r) = relay {
        let source_port = req
            .opts
            .relay_agent_info
            .as_deref()
            .is_some_and(has_relay_source_port);
        dst_port = if source_port {
            req.udp_src
        } else {
            SERVER_PORT
        };
        (r.relay_mac, r.giaddr)
    } else if kind == DhcpReplyKind::Nak {
        // RFC 2131 4.1: with giaddr 0, NAKs are always broadcast.
        broadcast
    } else if !ciaddr.is_unspecified() {
        (ctx.port_mac, ciaddr)
    } else if inform {
        // An INFORM should carry ciaddr; fall back to its source address.
        if crate::wire::is_unicast_host(req.ip_src) {
            (ctx.port_mac, req.ip_src)
        } else {
            broadcast
        }
    } else if req.msg.flags().broadcast() {
        broadcast
    } else {
        (ctx.port_mac, yiaddr)
    };
    let len = payload.len();
    let frame = udp_frame(
        UdpEndpoints {
            eth_src: ctx.server_mac,
            eth_dst,
            ip_src: ctx.server_ip,
            ip_dst,
            src_port: SERVER_PORT,
            dst_port,
        },
        &payload,
    )
    .ok_or(DhcpDrop::ReplyTooLarge { len })?;
    Ok(DhcpReply { kind, frame })
}
