//! The target-neutral IR: flows with a stage, a priority, typed matches, typed actions and
//! the model object that owns them.
//!
//! Matches are either logical (network, logical ports, router: keys a back end keeps in
//! registers or metadata) or header fields. Actions are small and typed; composite ones
//! such as [`Action::ArpReply`] say what happens, and each back end decides how (field moves
//! in OpenFlow, an action in P4, software on a NIC).

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use uuid::Uuid;
use wyvern_model::MacAddr;

use crate::stage::Stage;

/// A logical network's key: the VNI on the wire between hosts, metadata on a switch.
/// 24 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NetKey(pub u32);

/// A logical port's key, unique on this host. 16 bits are plenty per host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortKey(pub u32);

/// A logical router's key, unique on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouterKey(pub u32);

pub const ETH_TYPE_IPV4: u16 = 0x0800;
pub const ETH_TYPE_ARP: u16 = 0x0806;
pub const IP_PROTO_ICMP: u8 = 1;
pub const IP_PROTO_UDP: u8 = 17;
pub const ARP_OP_REQUEST: u16 = 1;
pub const ARP_OP_REPLY: u16 = 2;
pub const DHCP_CLIENT_PORT: u16 = 68;
pub const DHCP_SERVER_PORT: u16 = 67;
pub const ICMP_ECHO_REQUEST: u8 = 8;

/// One matched field with its value. Prefix matches carry their mask in the `Ipv4Net`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Match {
    /// The switch port a packet came in on (an OpenFlow port number).
    PhysInPort(u32),
    /// The tunnel key (VNI) of a packet that came in over a tunnel.
    TunnelId(u32),
    Network(NetKey),
    InPort(PortKey),
    OutPort(PortKey),
    Router(RouterKey),
    EthSrc(MacAddr),
    EthDst(MacAddr),
    /// Any group address (broadcast or multicast): the I/G bit of the destination MAC.
    EthDstMulticast,
    EthType(u16),
    IpProto(u8),
    Ipv4Src(Ipv4Net),
    Ipv4Dst(Ipv4Net),
    IpTtl(u8),
    UdpSrc(u16),
    UdpDst(u16),
    IcmpType(u8),
    ArpOp(u16),
    ArpSpa(Ipv4Net),
    ArpTpa(Ipv4Addr),
    ArpSha(MacAddr),
}

/// The kind of a [`Match`], without its value: what stage declarations list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FieldKind {
    PhysInPort,
    TunnelId,
    Network,
    InPort,
    OutPort,
    Router,
    EthSrc,
    EthDst,
    EthType,
    IpProto,
    Ipv4Src,
    Ipv4Dst,
    IpTtl,
    UdpSrc,
    UdpDst,
    IcmpType,
    ArpOp,
    ArpSpa,
    ArpTpa,
    ArpSha,
}

impl Match {
    pub fn kind(&self) -> FieldKind {
        match self {
            Match::PhysInPort(_) => FieldKind::PhysInPort,
            Match::TunnelId(_) => FieldKind::TunnelId,
            Match::Network(_) => FieldKind::Network,
            Match::InPort(_) => FieldKind::InPort,
            Match::OutPort(_) => FieldKind::OutPort,
            Match::Router(_) => FieldKind::Router,
            Match::EthSrc(_) => FieldKind::EthSrc,
            Match::EthDst(_) | Match::EthDstMulticast => FieldKind::EthDst,
            Match::EthType(_) => FieldKind::EthType,
            Match::IpProto(_) => FieldKind::IpProto,
            Match::Ipv4Src(_) => FieldKind::Ipv4Src,
            Match::Ipv4Dst(_) => FieldKind::Ipv4Dst,
            Match::IpTtl(_) => FieldKind::IpTtl,
            Match::UdpSrc(_) => FieldKind::UdpSrc,
            Match::UdpDst(_) => FieldKind::UdpDst,
            Match::IcmpType(_) => FieldKind::IcmpType,
            Match::ArpOp(_) => FieldKind::ArpOp,
            Match::ArpSpa(_) => FieldKind::ArpSpa,
            Match::ArpTpa(_) => FieldKind::ArpTpa,
            Match::ArpSha(_) => FieldKind::ArpSha,
        }
    }
}

/// Why a packet goes to the controller. Back ends carry it with the packet (OpenFlow
/// controller userdata, the P4 `packet_in` header) together with the logical in-port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PuntReason {
    /// A DHCP request for the DHCP app.
    Dhcp = 1,
    /// A routed packet whose destination has no flow yet (reactive L3, unknown host).
    L3Miss = 2,
    /// TTL would expire at the router: the app answers ICMP time-exceeded.
    TtlExpired = 3,
    /// ICMP addressed to a router interface: the app answers echo requests.
    IcmpToRouter = 4,
}

impl PuntReason {
    pub fn code(self) -> u8 {
        self as u8
    }
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => PuntReason::Dhcp,
            2 => PuntReason::L3Miss,
            3 => PuntReason::TtlExpired,
            4 => PuntReason::IcmpToRouter,
            _ => return None,
        })
    }
}

/// What a flow does. The last action of a non-dropping flow is a terminal one:
/// [`Action::Goto`], an output, [`Action::ArpReply`] or [`Action::Punt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    SetNetwork(NetKey),
    SetInPort(PortKey),
    SetOutPort(PortKey),
    SetRouter(RouterKey),
    SetEthSrc(MacAddr),
    SetEthDst(MacAddr),
    DecTtl,
    /// Turn an ARP request into the reply for `mac` (the requested IP's owner) and send it
    /// back out of the port it came in on.
    ArpReply {
        mac: MacAddr,
    },
    /// To the controller, with the reason and the logical in-port.
    Punt(PuntReason),
    /// Out of a switch port.
    Output(u32),
    /// To every port of the network (a flood group), except the one it came in on.
    Flood(NetKey),
    /// Continue at a later stage.
    Goto(Stage),
    /// A copy out of the flow-based tunnel switch port `port` to the chassis at `remote`,
    /// with the network's VNI as key (not terminal: several may precede a flood).
    Tunnel {
        port: u32,
        vni: u32,
        remote: Ipv4Addr,
    },
}

impl Action {
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Action::ArpReply { .. }
                | Action::Punt(_)
                | Action::Output(_)
                | Action::Flood(_)
                | Action::Goto(_)
        )
    }
}

/// The model object a flow was compiled from. Incremental compilation replaces all flows of
/// an owner at once; back ends put a hash of it in cookies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Owner {
    /// Flows every pipeline has regardless of the topology.
    Static,
    Network(Uuid),
    Port(Uuid),
    Router(Uuid),
}

impl Owner {
    /// A stable 32-bit tag for cookies: kind in the top 2 bits, a hash of the id below.
    pub fn tag(&self) -> u32 {
        let (kind, id) = match self {
            Owner::Static => return 0,
            Owner::Network(id) => (1u32, id),
            Owner::Port(id) => (2, id),
            Owner::Router(id) => (3, id),
        };
        // FNV-1a over the UUID bytes: stable across runs and hosts (no random seed).
        let mut h: u32 = 0x811c_9dc5;
        for b in id.as_bytes() {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
        (kind << 30) | (h & 0x3fff_ffff)
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Static => f.write_str("static"),
            Owner::Network(id) => write!(f, "network:{id}"),
            Owner::Port(id) => write!(f, "port:{id}"),
            Owner::Router(id) => write!(f, "router:{id}"),
        }
    }
}

/// One flow of the IR. Matches are kept sorted so equal flows compare equal.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Flow {
    pub stage: Stage,
    pub priority: u16,
    pub matches: Vec<Match>,
    pub actions: Vec<Action>,
    pub owner: Owner,
}

impl Flow {
    pub fn new(stage: Stage, priority: u16, owner: Owner) -> Self {
        Flow {
            stage,
            priority,
            matches: Vec::new(),
            actions: Vec::new(),
            owner,
        }
    }
    pub fn m(mut self, m: Match) -> Self {
        self.matches.push(m);
        self.matches.sort();
        self
    }
    pub fn a(mut self, a: Action) -> Self {
        self.actions.push(a);
        self
    }
    /// The identity of a flow in its table: two flows with the same key cannot coexist.
    pub fn key(&self) -> (Stage, u16, &[Match]) {
        (self.stage, self.priority, &self.matches)
    }
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} prio={} ", self.stage, self.priority)?;
        for (i, m) in self.matches.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            fmt_match(f, m)?;
        }
        f.write_str(" actions=")?;
        for (i, a) in self.actions.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            fmt_action(f, a)?;
        }
        write!(f, " owner={}", self.owner)
    }
}

fn fmt_match(f: &mut fmt::Formatter<'_>, m: &Match) -> fmt::Result {
    match m {
        Match::PhysInPort(p) => write!(f, "phys_in_port={p}"),
        Match::TunnelId(v) => write!(f, "tun_id={v}"),
        Match::Network(k) => write!(f, "network={}", k.0),
        Match::InPort(k) => write!(f, "inport={}", k.0),
        Match::OutPort(k) => write!(f, "outport={}", k.0),
        Match::Router(k) => write!(f, "router={}", k.0),
        Match::EthSrc(m) => write!(f, "eth_src={m}"),
        Match::EthDst(m) => write!(f, "eth_dst={m}"),
        Match::EthDstMulticast => write!(f, "eth_dst=01:00:00:00:00:00/01:00:00:00:00:00"),
        Match::EthType(t) => write!(f, "eth_type=0x{t:04x}"),
        Match::IpProto(p) => write!(f, "ip_proto={p}"),
        Match::Ipv4Src(n) => write!(f, "ipv4_src={n}"),
        Match::Ipv4Dst(n) => write!(f, "ipv4_dst={n}"),
        Match::IpTtl(t) => write!(f, "ip_ttl={t}"),
        Match::UdpSrc(p) => write!(f, "udp_src={p}"),
        Match::UdpDst(p) => write!(f, "udp_dst={p}"),
        Match::IcmpType(t) => write!(f, "icmp_type={t}"),
        Match::ArpOp(o) => write!(f, "arp_op={o}"),
        Match::ArpSpa(n) => write!(f, "arp_spa={n}"),
        Match::ArpTpa(a) => write!(f, "arp_tpa={a}"),
        Match::ArpSha(m) => write!(f, "arp_sha={m}"),
    }
}

fn fmt_action(f: &mut fmt::Formatter<'_>, a: &Action) -> fmt::Result {
    match a {
        Action::SetNetwork(k) => write!(f, "set_network({})", k.0),
        Action::SetInPort(k) => write!(f, "set_inport({})", k.0),
        Action::SetOutPort(k) => write!(f, "set_outport({})", k.0),
        Action::SetRouter(k) => write!(f, "set_router({})", k.0),
        Action::SetEthSrc(m) => write!(f, "set_eth_src({m})"),
        Action::SetEthDst(m) => write!(f, "set_eth_dst({m})"),
        Action::DecTtl => f.write_str("dec_ttl"),
        Action::ArpReply { mac } => write!(f, "arp_reply({mac})"),
        Action::Punt(r) => write!(f, "punt({r:?})"),
        Action::Output(p) => write!(f, "output({p})"),
        Action::Flood(k) => write!(f, "flood({})", k.0),
        Action::Goto(s) => write!(f, "goto({s})"),
        Action::Tunnel { port, vni, remote } => write!(f, "tunnel({port},vni={vni},{remote})"),
    }
}

/// The flood set of a network on this host: where broadcast goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FloodGroup {
    pub network: NetKey,
    /// Local switch ports of the network's bound ports, sorted.
    pub ports: Vec<u32>,
    pub owner: Owner,
}
