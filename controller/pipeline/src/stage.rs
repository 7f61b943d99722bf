//! The one declaration of the pipeline's stages. Everything else (OpenFlow table numbers,
//! P4 table names, rte_flow groups, docs) derives from [`STAGES`]; nothing keeps a second
//! list in sync by hand.

use crate::ir::FieldKind;

/// A stage of the logical pipeline, in packet order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    Classify,
    PortSecurity,
    Dispatch,
    ArpResponder,
    Dhcp,
    L2Lookup,
    L3Lookup,
    Egress,
}

/// What happens to a packet that matches no flow of a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// Dropped (and counted by the back end's table-miss counters).
    Drop,
    /// Continues at the given stage.
    Continue(Stage),
}

/// A stage's contract: which fields its flows may match, where they may go next, and what a
/// miss does. Compiled flows are checked against it before any back end sees them.
#[derive(Debug, Clone, Copy)]
pub struct StageDecl {
    pub stage: Stage,
    /// Stable name, used as the P4 table name and in golden files.
    pub name: &'static str,
    pub purpose: &'static str,
    pub matches: &'static [FieldKind],
    pub next: &'static [Stage],
    pub miss: Miss,
}

use FieldKind as F;

/// Every stage, in packet order. A stage's index here is its position in the pipeline.
pub const STAGES: [StageDecl; 8] = [
    StageDecl {
        stage: Stage::Classify,
        name: "classify",
        purpose: "map a local switch port (or tunnel + VNI) to a logical in-port and network",
        matches: &[F::PhysInPort, F::TunnelId],
        next: &[Stage::PortSecurity, Stage::L2Lookup],
        miss: Miss::Drop,
    },
    StageDecl {
        stage: Stage::PortSecurity,
        name: "port_security",
        purpose: "admit only the port's own MAC and IPs (and allowed address pairs); DHCP from 0.0.0.0",
        matches: &[
            F::InPort,
            F::EthSrc,
            F::EthType,
            F::Ipv4Src,
            F::Ipv4Dst,
            F::IpProto,
            F::UdpSrc,
            F::UdpDst,
            F::ArpSha,
            F::ArpSpa,
        ],
        next: &[Stage::Dispatch],
        miss: Miss::Drop,
    },
    StageDecl {
        stage: Stage::Dispatch,
        name: "dispatch",
        purpose: "send ARP requests and DHCP requests to their stage",
        matches: &[F::EthType, F::ArpOp, F::IpProto, F::UdpSrc, F::UdpDst],
        next: &[Stage::ArpResponder, Stage::Dhcp, Stage::L2Lookup],
        miss: Miss::Continue(Stage::L2Lookup),
    },
    StageDecl {
        stage: Stage::ArpResponder,
        name: "arp_responder",
        purpose: "answer ARP requests for router and known port IPs in place",
        matches: &[F::Network, F::InPort, F::EthType, F::ArpOp, F::ArpTpa],
        next: &[Stage::L2Lookup],
        miss: Miss::Continue(Stage::L2Lookup),
    },
    StageDecl {
        stage: Stage::Dhcp,
        name: "dhcp",
        purpose: "punt DHCP from ports on DHCP-enabled subnets to the controller",
        matches: &[F::InPort, F::EthType, F::IpProto, F::UdpSrc, F::UdpDst],
        next: &[Stage::L2Lookup],
        miss: Miss::Continue(Stage::L2Lookup),
    },
    StageDecl {
        stage: Stage::L2Lookup,
        name: "l2_lookup",
        purpose: "known MAC: logical out-port; router MAC: l3; broadcast: flood",
        matches: &[F::Network, F::EthDst],
        next: &[Stage::L3Lookup, Stage::Egress],
        miss: Miss::Drop,
    },
    StageDecl {
        stage: Stage::L3Lookup,
        name: "l3_lookup",
        purpose: "ICMP to router IPs and expiring TTLs to the controller; route by destination: decrement TTL, rewrite MACs, set network and out-port",
        matches: &[F::Router, F::EthType, F::IpProto, F::Ipv4Dst, F::IpTtl],
        next: &[Stage::Egress],
        miss: Miss::Drop,
    },
    StageDecl {
        stage: Stage::Egress,
        name: "egress",
        purpose: "deliver to the out-port's switch port or tunnel",
        matches: &[F::OutPort],
        next: &[],
        miss: Miss::Drop,
    },
];

impl Stage {
    /// All stages in packet order.
    pub const ALL: [Stage; 8] = [
        Stage::Classify,
        Stage::PortSecurity,
        Stage::Dispatch,
        Stage::ArpResponder,
        Stage::Dhcp,
        Stage::L2Lookup,
        Stage::L3Lookup,
        Stage::Egress,
    ];

    /// Position in the pipeline (0-based); back ends derive their table numbers from it.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn decl(self) -> &'static StageDecl {
        &STAGES[self.index()]
    }

    pub fn name(self) -> &'static str {
        self.decl().name
    }

    pub fn from_name(name: &str) -> Option<Stage> {
        STAGES.iter().find(|d| d.name == name).map(|d| d.stage)
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarations_are_in_order_and_only_go_forward() {
        for (i, d) in STAGES.iter().enumerate() {
            assert_eq!(d.stage.index(), i, "{} declared out of order", d.name);
            assert_eq!(Stage::ALL[i], d.stage);
            assert_eq!(Stage::from_name(d.name), Some(d.stage));
            for n in d.next {
                assert!(n.index() > i, "{} may not go back to {}", d.name, n);
            }
            if let Miss::Continue(n) = d.miss {
                assert!(
                    d.next.contains(&n),
                    "{}'s miss target must be a declared next stage",
                    d.name
                );
            }
        }
    }
}
