//! The capability model: which rule kinds a port accepts, found by validating one
//! representative rule of each kind at startup. A kind the port refuses is never tried again;
//! a port that answers ENOSYS has no rte_flow at all.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use rte::flow::{FlowAction, FlowRule, Item, LoweredRule};
use rte::{MacAddr, RteError};
use wyvern_pipeline::Stage;

use crate::backend::FlowDevice;
use crate::layout::{
    eth_type, group_of, OffloadConfig, RuleKind, MISS_PRIORITY, ROOT_ALLOW_PRIORITY,
    ROOT_DENY_PRIORITY, ROOT_STEER_PRIORITY,
};
use crate::partition::Reason;

/// What a port said about one rule kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KindSupport {
    Supported,
    /// Refused by `rte_flow_validate`, with the driver's message.
    Refused {
        message: String,
    },
}

/// What a port can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSupport {
    /// The driver answered ENOSYS: no rte_flow at all (the null PMD).
    NoRteFlow { message: String },
    /// Per-kind results of the probe.
    Kinds(BTreeMap<RuleKind, KindSupport>),
}

/// The capability model of one port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortCaps {
    pub port: u16,
    pub support: PortSupport,
}

impl PortCaps {
    /// Every kind supported: for planning without a device (benchmarks, golden files).
    pub fn assume_all(port: u16) -> PortCaps {
        PortCaps {
            port,
            support: PortSupport::Kinds(
                RuleKind::ALL
                    .iter()
                    .map(|k| (*k, KindSupport::Supported))
                    .collect(),
            ),
        }
    }

    pub fn has_rte_flow(&self) -> bool {
        matches!(self.support, PortSupport::Kinds(_))
    }

    /// Whether rules of `kind` may be offloaded here; the reason when not.
    pub fn allows(&self, kind: RuleKind) -> Result<(), Reason> {
        match &self.support {
            PortSupport::NoRteFlow { message } => Err(Reason::NoRteFlow {
                port: self.port,
                message: message.clone(),
            }),
            PortSupport::Kinds(k) => match k.get(&kind) {
                Some(KindSupport::Supported) => Ok(()),
                Some(KindSupport::Refused { message }) => Err(Reason::RefusedByPort {
                    port: self.port,
                    kind,
                    message: message.clone(),
                }),
                None => Err(Reason::RefusedByPort {
                    port: self.port,
                    kind,
                    message: "not probed".to_owned(),
                }),
            },
        }
    }

    /// The kinds the port accepts.
    pub fn supported(&self) -> Vec<RuleKind> {
        match &self.support {
            PortSupport::NoRteFlow { .. } => Vec::new(),
            PortSupport::Kinds(k) => k
                .iter()
                .filter(|(_, s)| **s == KindSupport::Supported)
                .map(|(k, _)| *k)
                .collect(),
        }
    }
}

/// Probes `dev` with one representative rule per kind (validate only: nothing is installed).
pub fn probe<D: FlowDevice>(dev: &D, cfg: &OffloadConfig) -> PortCaps {
    let port = dev.port();
    let mut kinds = BTreeMap::new();
    for kind in RuleKind::ALL {
        let rule = representative(kind, cfg, port);
        let result = rule.lower().and_then(|l: LoweredRule| dev.validate(&l));
        let support = match result {
            Ok(()) => KindSupport::Supported,
            Err(e @ RteError::Unsupported { .. }) => {
                return PortCaps {
                    port,
                    support: PortSupport::NoRteFlow {
                        message: e.to_string(),
                    },
                };
            }
            Err(e) => KindSupport::Refused {
                message: e.to_string(),
            },
        };
        kinds.insert(kind, support);
    }
    PortCaps {
        port,
        support: PortSupport::Kinds(kinds),
    }
}

/// A rule of `kind` shaped exactly as the partitioner builds them, on `port`.
pub fn representative(kind: RuleKind, cfg: &OffloadConfig, port: u16) -> FlowRule {
    const MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
    const RMAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);
    let l2 = group_of(Stage::L2Lookup, 1);
    let l3 = group_of(Stage::L3Lookup, 1);
    let egress = group_of(Stage::Egress, 1);
    let port_item: Vec<Item> = cfg.port_item(port).into_iter().collect();
    let eth_src = Item::Eth {
        spec: rte::flow::EthFields {
            src: MAC,
            ether_type: 0x0800,
            ..Default::default()
        },
        mask: rte::flow::EthFields {
            src: MacAddr::BROADCAST,
            ether_type: 0xffff,
            ..Default::default()
        },
    };
    let (attr, pattern, actions) = match kind {
        RuleKind::SteerRoot => (
            cfg.attr(0, ROOT_STEER_PRIORITY),
            vec![
                eth_type(0x0800),
                crate::partition::ipv4_proto(17),
                crate::partition::udp_ports(68, 67),
            ],
            vec![cfg.to_software()],
        ),
        RuleKind::Classify => (
            cfg.attr(0, ROOT_ALLOW_PRIORITY),
            [
                port_item.clone(),
                vec![
                    eth_src,
                    crate::partition::ipv4_src_prefix(Ipv4Addr::new(10, 0, 0, 5), 32),
                ],
            ]
            .concat(),
            vec![FlowAction::Jump { group: l2 }],
        ),
        RuleKind::DenyRoot => (
            cfg.attr(0, ROOT_DENY_PRIORITY),
            [port_item.clone(), vec![Item::eth_any()]].concat(),
            vec![FlowAction::Drop],
        ),
        RuleKind::Decap => (
            cfg.attr(0, ROOT_ALLOW_PRIORITY),
            vec![
                Item::eth_any(),
                Item::ipv4_any(),
                Item::udp_dst(4789),
                Item::vxlan_vni(1),
            ],
            vec![FlowAction::VxlanDecap, FlowAction::Jump { group: l2 }],
        ),
        RuleKind::L2Forward => (
            cfg.attr(l2, crate::layout::rte_priority(100)),
            vec![Item::eth_dst(MAC)],
            vec![FlowAction::Jump { group: egress }],
        ),
        RuleKind::L3Route => (
            cfg.attr(l3, crate::layout::rte_priority(132)),
            vec![
                eth_type(0x0800),
                Item::ipv4_dst_prefix(Ipv4Addr::new(10, 0, 0, 5), 32),
            ],
            vec![
                FlowAction::DecTtl,
                FlowAction::SetMacSrc(RMAC),
                FlowAction::SetMacDst(MAC),
                FlowAction::Jump { group: egress },
            ],
        ),
        RuleKind::SteerGroup => (
            cfg.attr(l3, crate::layout::rte_priority(250)),
            vec![eth_type(0x0800), crate::partition::ipv4_ttl(1)],
            vec![cfg.to_software()],
        ),
        RuleKind::DropGroup => (
            cfg.attr(l3, crate::layout::rte_priority(290)),
            vec![
                eth_type(0x0800),
                Item::ipv4_dst_prefix(Ipv4Addr::new(10, 0, 0, 1), 32),
            ],
            vec![FlowAction::Drop],
        ),
        RuleKind::Egress => (
            cfg.attr(egress, crate::layout::rte_priority(100)),
            vec![Item::eth_any()],
            vec![cfg.output(port)],
        ),
        RuleKind::Miss => (
            cfg.attr(l2, MISS_PRIORITY),
            vec![Item::eth_any()],
            vec![FlowAction::Drop],
        ),
    };
    FlowRule {
        attr,
        pattern,
        actions,
    }
}
