//! An interpreter that runs one packet through a compiled pipeline: the reference semantics
//! every back end must agree with. Unit tests use it to ask "where does this packet go",
//! `wyvern trace` prints its steps, and tests compare it with `ovs-appctl ofproto/trace`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use wyvern_model::MacAddr;

use crate::ir::{
    Action, FloodGroup, Flow, Match, NetKey, PortKey, PuntReason, RouterKey, ARP_OP_REPLY,
    ETH_TYPE_ARP, ETH_TYPE_IPV4,
};
use crate::stage::{Miss, Stage};

/// The ARP part of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpFields {
    pub op: u16,
    pub sha: MacAddr,
    pub spa: Ipv4Addr,
    pub tha: MacAddr,
    pub tpa: Ipv4Addr,
}

/// The IPv4 part of a packet (and its UDP ports or ICMP type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Fields {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub ttl: u8,
    pub udp: Option<(u16, u16)>,
    pub icmp_type: Option<u8>,
}

/// The header fields the pipeline looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    pub in_port: u32,
    pub tun_id: Option<u32>,
    pub eth_src: MacAddr,
    pub eth_dst: MacAddr,
    pub eth_type: u16,
    pub arp: Option<ArpFields>,
    pub ipv4: Option<Ipv4Fields>,
}

impl Packet {
    /// An ARP request `who has tpa, tell spa`.
    pub fn arp_request(in_port: u32, sha: MacAddr, spa: Ipv4Addr, tpa: Ipv4Addr) -> Self {
        Packet {
            in_port,
            tun_id: None,
            eth_src: sha,
            eth_dst: MacAddr([0xff; 6]),
            eth_type: ETH_TYPE_ARP,
            arp: Some(ArpFields {
                op: 1,
                sha,
                spa,
                tha: MacAddr([0; 6]),
                tpa,
            }),
            ipv4: None,
        }
    }

    /// An IPv4 packet of protocol `proto` (UDP ports or ICMP type filled by the caller).
    pub fn ipv4(
        in_port: u32,
        src_mac: MacAddr,
        dst_mac: MacAddr,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        ttl: u8,
    ) -> Self {
        Packet {
            in_port,
            tun_id: None,
            eth_src: src_mac,
            eth_dst: dst_mac,
            eth_type: ETH_TYPE_IPV4,
            arp: None,
            ipv4: Some(Ipv4Fields {
                src,
                dst,
                proto: 1,
                ttl,
                udp: None,
                icmp_type: Some(8),
            }),
        }
    }

    /// A DHCP request from a client without an address (0.0.0.0 -> 255.255.255.255, 68 -> 67).
    pub fn dhcp_discover(in_port: u32, mac: MacAddr) -> Self {
        Packet {
            in_port,
            tun_id: None,
            eth_src: mac,
            eth_dst: MacAddr([0xff; 6]),
            eth_type: ETH_TYPE_IPV4,
            arp: None,
            ipv4: Some(Ipv4Fields {
                src: Ipv4Addr::UNSPECIFIED,
                dst: Ipv4Addr::BROADCAST,
                proto: 17,
                ttl: 64,
                udp: Some((68, 67)),
                icmp_type: None,
            }),
        }
    }
}

/// Logical state carried between stages (registers and metadata in a switch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Registers {
    pub network: Option<NetKey>,
    pub inport: Option<PortKey>,
    pub outport: Option<PortKey>,
    pub router: Option<RouterKey>,
}

/// Where a packet ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Sent out of these switch ports (one copy each), as modified.
    Output { ports: Vec<u32>, packet: Packet },
    /// Sent to the controller.
    Punt {
        reason: PuntReason,
        inport: Option<PortKey>,
        packet: Packet,
    },
    /// Dropped at this stage, by a flow (`by_flow`) or by the stage's miss.
    Drop { stage: Stage, by_flow: bool },
}

/// One stage visited and the flow that matched (None: table miss).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub stage: Stage,
    pub flow: Option<Flow>,
}

/// The full story of one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    pub steps: Vec<Step>,
    pub verdict: Verdict,
    pub registers: Registers,
}

/// A compiled pipeline ready to run packets: flows per stage ordered by priority.
#[derive(Debug, Clone, Default)]
pub struct Interpreter {
    tables: BTreeMap<Stage, Vec<Flow>>,
    groups: BTreeMap<NetKey, Vec<u32>>,
}

impl Interpreter {
    pub fn new<'a>(
        flows: impl IntoIterator<Item = &'a Flow>,
        groups: impl IntoIterator<Item = &'a FloodGroup>,
    ) -> Self {
        let mut tables: BTreeMap<Stage, Vec<Flow>> = BTreeMap::new();
        for f in flows {
            tables.entry(f.stage).or_default().push(f.clone());
        }
        for t in tables.values_mut() {
            // Highest priority first; ties keep a deterministic order.
            t.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.cmp(b)));
        }
        let groups = groups
            .into_iter()
            .map(|g| (g.network, g.ports.clone()))
            .collect();
        Interpreter { tables, groups }
    }

    /// Runs one packet from classify to its verdict.
    pub fn run(&self, packet: Packet) -> Trace {
        let mut pkt = packet;
        let mut regs = Registers::default();
        let mut steps = Vec::new();
        let mut stage = Stage::Classify;
        loop {
            let flow = self.tables.get(&stage).and_then(|t| {
                t.iter()
                    .find(|f| f.matches.iter().all(|m| matches(m, &pkt, &regs)))
            });
            steps.push(Step {
                stage,
                flow: flow.cloned(),
            });
            let Some(flow) = flow else {
                match stage.decl().miss {
                    Miss::Drop => {
                        return Trace {
                            steps,
                            verdict: Verdict::Drop {
                                stage,
                                by_flow: false,
                            },
                            registers: regs,
                        }
                    }
                    Miss::Continue(next) => {
                        stage = next;
                        continue;
                    }
                }
            };
            let mut next = None;
            let mut verdict = None;
            for a in &flow.actions {
                match *a {
                    Action::SetNetwork(k) => regs.network = Some(k),
                    Action::SetInPort(k) => regs.inport = Some(k),
                    Action::SetOutPort(k) => regs.outport = Some(k),
                    Action::SetRouter(k) => regs.router = Some(k),
                    Action::SetEthSrc(m) => pkt.eth_src = m,
                    Action::SetEthDst(m) => pkt.eth_dst = m,
                    Action::DecTtl => match pkt.ipv4.as_mut() {
                        Some(ip) if ip.ttl > 1 => ip.ttl -= 1,
                        _ => {
                            verdict = Some(Verdict::Drop {
                                stage,
                                by_flow: true,
                            });
                            break;
                        }
                    },
                    Action::ArpReply { mac } => {
                        let mut out = pkt;
                        if let Some(arp) = pkt.arp {
                            out.eth_dst = pkt.eth_src;
                            out.eth_src = mac;
                            out.arp = Some(ArpFields {
                                op: ARP_OP_REPLY,
                                sha: mac,
                                spa: arp.tpa,
                                tha: arp.sha,
                                tpa: arp.spa,
                            });
                        }
                        verdict = Some(Verdict::Output {
                            ports: vec![pkt.in_port],
                            packet: out,
                        });
                    }
                    Action::Punt(reason) => {
                        verdict = Some(Verdict::Punt {
                            reason,
                            inport: regs.inport,
                            packet: pkt,
                        });
                    }
                    Action::Output(port) => {
                        // A switch never sends a packet back out of its in-port unless asked to.
                        let ports = if port == pkt.in_port {
                            vec![]
                        } else {
                            vec![port]
                        };
                        verdict = Some(Verdict::Output { ports, packet: pkt });
                    }
                    Action::Flood(net) => {
                        let ports = self
                            .groups
                            .get(&net)
                            .map(|ps| ps.iter().copied().filter(|p| *p != pkt.in_port).collect())
                            .unwrap_or_default();
                        verdict = Some(Verdict::Output { ports, packet: pkt });
                    }
                    Action::Goto(s) => next = Some(s),
                    // One host is modelled: copies into the overlay leave it.
                    Action::Tunnel { .. } => {}
                }
            }
            match (verdict, next) {
                (Some(v), _) => {
                    return Trace {
                        steps,
                        verdict: v,
                        registers: regs,
                    }
                }
                (None, Some(s)) => stage = s,
                (None, None) => {
                    return Trace {
                        steps,
                        verdict: Verdict::Drop {
                            stage,
                            by_flow: true,
                        },
                        registers: regs,
                    }
                }
            }
        }
    }
}

fn matches(m: &Match, p: &Packet, r: &Registers) -> bool {
    let ip = p.ipv4.as_ref();
    let arp = p.arp.as_ref();
    match *m {
        Match::PhysInPort(port) => p.in_port == port,
        Match::TunnelId(v) => p.tun_id == Some(v),
        Match::Network(k) => r.network == Some(k),
        Match::InPort(k) => r.inport == Some(k),
        Match::OutPort(k) => r.outport == Some(k),
        Match::Router(k) => r.router == Some(k),
        Match::EthSrc(mac) => p.eth_src == mac,
        Match::EthDst(mac) => p.eth_dst == mac,
        Match::EthDstMulticast => p.eth_dst.is_multicast(),
        Match::EthType(t) => p.eth_type == t,
        Match::IpProto(proto) => ip.is_some_and(|i| i.proto == proto),
        Match::Ipv4Src(net) => ip.is_some_and(|i| net.contains(&i.src)),
        Match::Ipv4Dst(net) => ip.is_some_and(|i| net.contains(&i.dst)),
        Match::IpTtl(t) => ip.is_some_and(|i| i.ttl == t),
        Match::UdpSrc(port) => ip.and_then(|i| i.udp).is_some_and(|(s, _)| s == port),
        Match::UdpDst(port) => ip.and_then(|i| i.udp).is_some_and(|(_, d)| d == port),
        Match::IcmpType(t) => ip.and_then(|i| i.icmp_type) == Some(t),
        Match::ArpOp(op) => arp.is_some_and(|a| a.op == op),
        Match::ArpSpa(net) => arp.is_some_and(|a| net.contains(&a.spa)),
        Match::ArpTpa(addr) => arp.is_some_and(|a| a.tpa == addr),
        Match::ArpSha(mac) => arp.is_some_and(|a| a.sha == mac),
    }
}
