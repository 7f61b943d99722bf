//! How the pipeline is laid out on a NIC: the configuration, group numbers, priorities, rule
//! identities and rule kinds. Everything here is derived from the stage declarations
//! (`wyvern_pipeline::STAGES`); nothing keeps a second list of tables.

use std::collections::BTreeMap;
use std::fmt;

use rte::flow::{EthFields, FlowAction, FlowAttr, FlowRule, Item};
use rte::MacAddr;
use wyvern_pipeline::{Match, Owner, Stage};

/// Bits of a group number below the stage index: the logical key (network, router or
/// out-port) the OpenFlow back end keeps in a register. A NIC has no registers to carry it
/// between tables, so it becomes part of the group a rule jumps to.
pub const GROUP_STAGE_SHIFT: u32 = 24;
/// Mask of the key part of a group number (24 bits, the width of a VNI).
pub const GROUP_KEY_MASK: u32 = 0x00ff_ffff;

/// The group holding `stage`'s flows for the logical object `key`: l2_lookup per network,
/// l3_lookup per router, egress per out-port. Classify is group 0, where every packet starts.
pub fn group_of(stage: Stage, key: u32) -> u32 {
    ((stage.index() as u32) << GROUP_STAGE_SHIFT) | (key & GROUP_KEY_MASK)
}

/// The stage and key behind a group number; `None` for numbers no stage owns.
pub fn group_stage(group: u32) -> Option<(Stage, u32)> {
    let idx = (group >> GROUP_STAGE_SHIFT) as usize;
    Stage::ALL.get(idx).map(|s| (*s, group & GROUP_KEY_MASK))
}

/// A readable group name for operators: `l2_lookup/3`, `classify`.
pub fn group_name(group: u32) -> String {
    match group_stage(group) {
        Some((Stage::Classify, 0)) => "classify".to_owned(),
        Some((s, k)) => format!("{s}/{k}"),
        None => format!("group {group}"),
    }
}

/// Group 0 priorities: steering to software beats everything, then the per-port allow rules,
/// then the per-port deny (port security's miss).
pub const ROOT_STEER_PRIORITY: u32 = 0;
pub const ROOT_ALLOW_PRIORITY: u32 = 1;
pub const ROOT_DENY_PRIORITY: u32 = 2;

/// The highest IR priority any stage uses (l3_lookup's ICMP-to-router punt). rte_flow
/// priorities run the other way (0 wins), so a flow's rte priority is `IR_TOP_PRIORITY - p`;
/// a test checks every compiled priority is at most this.
pub const IR_TOP_PRIORITY: u16 = 300;
/// A group's miss rule: below every flow.
pub const MISS_PRIORITY: u32 = IR_TOP_PRIORITY as u32 + 1;

/// The rte_flow priority of an IR flow in a non-root group.
pub fn rte_priority(ir_priority: u16) -> u32 {
    u32::from(IR_TOP_PRIORITY.saturating_sub(ir_priority))
}

/// Where rules live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Switchdev: every rule is a `transfer` rule on the e-switch proxy port (the PF); an
    /// ingress port is matched with `represented_port`, output goes to `represented_port`.
    /// Groups are shared by all ports: one copy of each l2/l3/egress table.
    Transfer { proxy: u16 },
    /// Each DPDK port holds its own chain of `ingress` rules: group 0 for itself and every
    /// group reachable from it (ingress port implied by the port the rule is on).
    PerPort,
}

/// Where packets go that the NIC leaves to software (punts, ARP, DHCP, group misses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoftwarePath {
    /// An RX queue of the port, polled by the software datapath.
    Queue(u16),
    /// A DPDK port (e.g. the representor or proxy software polls).
    Port(u16),
}

/// The offload configuration: how switch ports map to DPDK ports and where rules live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffloadConfig {
    pub mode: Mode,
    /// Switch port (the IR's `PhysInPort`/`Output` number) -> the DPDK ethdev behind it (a VF
    /// representor or a physical port). Switch ports not listed have no device on this NIC.
    pub ports: BTreeMap<u32, u16>,
    pub software: SoftwarePath,
    /// The uplink's DPDK port, matched by VXLAN decap rules in transfer mode.
    pub uplink: Option<u16>,
}

impl OffloadConfig {
    /// Per-port ingress rules, software on RX queue 0.
    pub fn per_port(ports: BTreeMap<u32, u16>) -> Self {
        OffloadConfig {
            mode: Mode::PerPort,
            ports,
            software: SoftwarePath::Queue(0),
            uplink: None,
        }
    }

    /// Transfer rules on `proxy`; software receives on the proxy port.
    pub fn transfer(proxy: u16, ports: BTreeMap<u32, u16>) -> Self {
        OffloadConfig {
            mode: Mode::Transfer { proxy },
            ports,
            software: SoftwarePath::Port(proxy),
            uplink: None,
        }
    }

    /// The DPDK ports rules are installed on.
    pub fn targets(&self) -> Vec<u16> {
        match self.mode {
            Mode::Transfer { proxy } => vec![proxy],
            Mode::PerPort => {
                let mut v: Vec<u16> = self.ports.values().copied().collect();
                v.sort_unstable();
                v.dedup();
                v
            }
        }
    }

    /// Whether the chain on `target` is where the ingress traffic of switch port `ofport`
    /// is decided.
    pub fn serves(&self, target: u16, ofport: u32) -> bool {
        match self.mode {
            // One chain for every switch port; unmapped ones are reported, not skipped.
            Mode::Transfer { proxy } => proxy == target,
            Mode::PerPort => self.ports.get(&ofport) == Some(&target),
        }
    }

    pub(crate) fn attr(&self, group: u32, priority: u32) -> FlowAttr {
        match self.mode {
            Mode::Transfer { .. } => FlowAttr {
                group,
                priority,
                transfer: true,
                ..FlowAttr::default()
            },
            Mode::PerPort => FlowAttr {
                priority,
                ..FlowAttr::ingress(group)
            },
        }
    }

    pub(crate) fn to_software(&self) -> FlowAction {
        match self.software {
            SoftwarePath::Queue(index) => FlowAction::Queue { index },
            SoftwarePath::Port(id) => FlowAction::PortId {
                id: u32::from(id),
                original: false,
            },
        }
    }

    pub(crate) fn output(&self, dpdk: u16) -> FlowAction {
        match self.mode {
            Mode::Transfer { .. } => FlowAction::RepresentedPort {
                ethdev_port_id: dpdk,
            },
            Mode::PerPort => FlowAction::PortId {
                id: u32::from(dpdk),
                original: false,
            },
        }
    }

    /// The item naming the ingress port, where the rule's place does not imply it.
    pub(crate) fn port_item(&self, dpdk: u16) -> Option<Item> {
        match self.mode {
            Mode::Transfer { .. } => Some(Item::RepresentedPort {
                ethdev_port_id: dpdk,
            }),
            Mode::PerPort => None,
        }
    }
}

/// Which part of the IR a rule implements.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// An IR flow, by its key in its table.
    Flow {
        stage: Stage,
        priority: u16,
        matches: Vec<Match>,
    },
    /// A stage's miss behaviour for one group (`scope` = the group's key) or, for
    /// port_security, for one ingress switch port (`scope` = its number).
    Miss { stage: Stage, scope: u32 },
}

/// A rule's stable identity, for desired-versus-installed: the IR owner plus the flow key
/// (or the miss it stands for). Identical across restarts and recompiles.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleId {
    pub owner: Owner,
    pub origin: Origin,
}

impl RuleId {
    pub fn of_flow(f: &wyvern_pipeline::Flow) -> RuleId {
        RuleId {
            owner: f.owner,
            origin: Origin::Flow {
                stage: f.stage,
                priority: f.priority,
                matches: f.matches.clone(),
            },
        }
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Origin::Flow {
                stage,
                priority,
                matches,
            } => {
                write!(f, "{} {stage} prio={priority} ", self.owner)?;
                for (i, m) in matches.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{m:?}")?;
                }
                Ok(())
            }
            Origin::Miss { stage, scope } => write!(f, "{} {stage} miss/{scope}", self.owner),
        }
    }
}

/// The shape of a rule: what the capability probe validates once per port, and what a port
/// that refuses it never sees again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RuleKind {
    /// Group 0: eth / ipv4 / udp -> software (ARP, DHCP; also port security with forwarding
    /// left to software).
    SteerRoot,
    /// Group 0: [port] eth src / ipv4 src -> JUMP to the port's l2 group.
    Classify,
    /// Group 0: [port] eth -> DROP (port security's miss).
    DenyRoot,
    /// Group 0: eth / ipv4 / udp 4789 / vxlan vni -> VXLAN_DECAP, JUMP.
    Decap,
    /// l2 group: eth dst -> JUMP (to egress or l3).
    L2Forward,
    /// l3 group: eth type / ipv4 dst prefix -> DEC_TTL, SET_MAC_SRC, SET_MAC_DST, JUMP egress.
    L3Route,
    /// Non-root group: match -> software (punts, flood).
    SteerGroup,
    /// Non-root group: match -> DROP.
    DropGroup,
    /// egress group: eth -> output to the port.
    Egress,
    /// Non-root group, lowest priority: eth -> DROP or software.
    Miss,
}

impl RuleKind {
    pub const ALL: [RuleKind; 10] = [
        RuleKind::SteerRoot,
        RuleKind::Classify,
        RuleKind::DenyRoot,
        RuleKind::Decap,
        RuleKind::L2Forward,
        RuleKind::L3Route,
        RuleKind::SteerGroup,
        RuleKind::DropGroup,
        RuleKind::Egress,
        RuleKind::Miss,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RuleKind::SteerRoot => "steer_root",
            RuleKind::Classify => "classify",
            RuleKind::DenyRoot => "deny_root",
            RuleKind::Decap => "vxlan_decap",
            RuleKind::L2Forward => "l2_forward",
            RuleKind::L3Route => "l3_route",
            RuleKind::SteerGroup => "steer_group",
            RuleKind::DropGroup => "drop_group",
            RuleKind::Egress => "egress",
            RuleKind::Miss => "miss",
        }
    }
}

impl fmt::Display for RuleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One rule for a NIC: its identity, shape and the rte_flow value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub id: RuleId,
    pub kind: RuleKind,
    pub rule: FlowRule,
}

impl Rule {
    /// The groups this rule jumps to.
    pub fn jump_target(&self) -> Option<u32> {
        self.rule.actions.iter().find_map(|a| match a {
            FlowAction::Jump { group } => Some(*group),
            _ => None,
        })
    }

    /// The `dpdk-testpmd` line(s) creating this rule on `port`.
    pub fn to_testpmd(&self, port: u16) -> String {
        rte::flow::to_testpmd(
            port,
            &self.rule.attr,
            &self.rule.pattern,
            &self.rule.actions,
        )
    }
}

/// An Ethernet item matching only the EtherType.
pub(crate) fn eth_type(t: u16) -> Item {
    Item::Eth {
        spec: EthFields {
            ether_type: t,
            ..EthFields::default()
        },
        mask: EthFields {
            ether_type: 0xffff,
            ..EthFields::default()
        },
    }
}

/// Group (broadcast and multicast) destination addresses: the I/G bit.
pub(crate) fn eth_dst_multicast() -> Item {
    let ig = MacAddr([1, 0, 0, 0, 0, 0]);
    Item::Eth {
        spec: EthFields {
            dst: ig,
            ..EthFields::default()
        },
        mask: EthFields {
            dst: ig,
            ..EthFields::default()
        },
    }
}
