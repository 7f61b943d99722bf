//! The OpenFlow back end of the pipeline: IR flows to OpenFlow 1.3 tables, registers,
//! cookies and flood groups for Open vSwitch.
//!
//! # Layout
//! Table numbers are the stages' positions in [`wyvern_pipeline::STAGES`]: table 0 is
//! `classify`, table 7 is `egress`. Logical state lives in Nicira registers:
//!
//! | register | holds | set by |
//! |---|---|---|
//! | `reg4` | network key (24 bits; the VNI between hosts) | classify, l3_lookup |
//! | `reg5` | router key | l2_lookup (packet to a router MAC) |
//! | `reg6` | logical in-port key | classify |
//! | `reg7` | logical out-port key | l2_lookup, l3_lookup |
//!
//! Registers start at zero for every packet (OVS clears them on ingress), so key 0 is never
//! allocated. The flood group of a network has the network key as its group id.
//!
//! Cookies: the owner's 32-bit tag in the upper half ([`wyvern_pipeline::Owner::tag`]); the
//! lower half is 0. No generation number: a restarted controller computes the same cookies,
//! so flows that are right stay untouched.
//!
//! Punts use Nicira's `controller2` action with the reason code as userdata; the logical
//! in-port arrives in the packet-in's `reg6`.

use wyvern_openflow::ofctrl::{DesiredFlow, FlowKey, GroupSpec, Update};
use wyvern_openflow::wire::{Action as OfAction, Bucket, ControllerAction, GroupType};
use wyvern_openflow::{
    Field, FieldRange, Instructions, MacAddr as OfMac, Match as OfMatch, PortNo,
};
use wyvern_pipeline::{Action, Delta, FloodGroup, Flow, Match, Miss, Owner, Stage, STAGES};

pub const REG_NETWORK: u8 = 4;
pub const REG_ROUTER: u8 = 5;
pub const REG_INPORT: u8 = 6;
pub const REG_OUTPORT: u8 = 7;

/// Why an IR flow could not be expressed in OpenFlow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfMapError {
    #[error("failed to map flow [{flow}]: arp_reply needs an exact arp_tpa match")]
    ArpReplyWithoutTarget { flow: String },
}

/// The table a stage's flows go to.
pub fn table_of(stage: Stage) -> u8 {
    // Eight stages: the index always fits.
    stage.index() as u8
}

/// The stage behind a table number, for reading dumps and traces.
pub fn stage_of(table_id: u8) -> Option<Stage> {
    Stage::ALL.get(usize::from(table_id)).copied()
}

pub fn cookie_of(owner: Owner) -> u64 {
    u64::from(owner.tag()) << 32
}

fn mac(m: wyvern_model::MacAddr) -> OfMac {
    OfMac(m.0)
}

fn set_reg(reg: u8, value: u32) -> OfAction {
    OfAction::SetField {
        field: Field::Reg(reg),
        value: value.into(),
    }
}

fn set_field(field: Field, value: u64) -> OfAction {
    OfAction::SetField { field, value }
}

fn mv(src: Field, dst: Field) -> OfAction {
    OfAction::RegMove {
        src: FieldRange::full(src),
        dst: FieldRange::full(dst),
    }
}

/// The OpenFlow match of an IR flow.
pub fn map_match(flow: &Flow) -> OfMatch {
    let mut m = OfMatch::new();
    for f in &flow.matches {
        m = match *f {
            Match::PhysInPort(p) => m.in_port(p),
            Match::TunnelId(v) => m.tun_id(v.into()),
            Match::Network(k) => m.reg(REG_NETWORK, k.0),
            Match::InPort(k) => m.reg(REG_INPORT, k.0),
            Match::OutPort(k) => m.reg(REG_OUTPORT, k.0),
            Match::Router(k) => m.reg(REG_ROUTER, k.0),
            Match::EthSrc(a) => m.eth_src(mac(a)),
            Match::EthDst(a) => m.eth_dst(mac(a)),
            Match::EthDstMulticast => {
                m.eth_dst_masked(OfMac([1, 0, 0, 0, 0, 0]), OfMac([1, 0, 0, 0, 0, 0]))
            }
            Match::EthType(t) => m.eth_type(t),
            Match::IpProto(p) => m.ip_proto(p),
            Match::Ipv4Src(n) => m.with_masked(
                Field::Ipv4Src,
                u32::from(n.addr()).into(),
                u32::from(n.netmask()).into(),
            ),
            Match::Ipv4Dst(n) => m.with_masked(
                Field::Ipv4Dst,
                u32::from(n.addr()).into(),
                u32::from(n.netmask()).into(),
            ),
            Match::IpTtl(t) => m.with(Field::IpTtl, t.into()),
            Match::UdpSrc(p) => m.with(Field::UdpSrc, p.into()),
            Match::UdpDst(p) => m.with(Field::UdpDst, p.into()),
            Match::IcmpType(t) => m.with(Field::Icmpv4Type, t.into()),
            Match::ArpOp(o) => m.with(Field::ArpOp, o.into()),
            Match::ArpSpa(n) => m.with_masked(
                Field::ArpSpa,
                u32::from(n.addr()).into(),
                u32::from(n.netmask()).into(),
            ),
            Match::ArpTpa(a) => m.with(Field::ArpTpa, u32::from(a).into()),
            Match::ArpSha(a) => m.with(Field::ArpSha, mac(a).to_u64()),
        };
    }
    m
}

/// Maps one IR flow to its OpenFlow flow.
pub fn map_flow(flow: &Flow) -> Result<DesiredFlow, OfMapError> {
    let mut actions = Vec::new();
    let mut goto = None;
    for a in &flow.actions {
        match *a {
            Action::SetNetwork(k) => actions.push(set_reg(REG_NETWORK, k.0)),
            Action::SetInPort(k) => actions.push(set_reg(REG_INPORT, k.0)),
            Action::SetOutPort(k) => actions.push(set_reg(REG_OUTPORT, k.0)),
            Action::SetRouter(k) => actions.push(set_reg(REG_ROUTER, k.0)),
            Action::SetEthSrc(m) => actions.push(set_field(Field::EthSrc, mac(m).to_u64())),
            Action::SetEthDst(m) => actions.push(set_field(Field::EthDst, mac(m).to_u64())),
            Action::DecTtl => actions.push(OfAction::DecNwTtl),
            Action::ArpReply { mac: m } => {
                // The requested address is the flow's exact arp_tpa; it becomes the sender.
                let target = flow.matches.iter().find_map(|x| match x {
                    Match::ArpTpa(a) => Some(*a),
                    _ => None,
                });
                let Some(target) = target else {
                    return Err(OfMapError::ArpReplyWithoutTarget {
                        flow: flow.to_string(),
                    });
                };
                actions.extend([
                    mv(Field::EthSrc, Field::EthDst),
                    set_field(Field::EthSrc, mac(m).to_u64()),
                    set_field(Field::ArpOp, 2),
                    mv(Field::ArpSha, Field::ArpTha),
                    set_field(Field::ArpSha, mac(m).to_u64()),
                    mv(Field::ArpSpa, Field::ArpTpa),
                    set_field(Field::ArpSpa, u32::from(target).into()),
                    OfAction::Output {
                        port: PortNo::IN_PORT,
                        max_len: 0,
                    },
                ]);
            }
            Action::Punt(reason) => actions.push(OfAction::Controller(ControllerAction {
                userdata: vec![reason.code()],
                ..ControllerAction::default()
            })),
            Action::Output(p) => actions.push(OfAction::Output {
                port: PortNo(p),
                max_len: 0,
            }),
            Action::Flood(k) => actions.push(OfAction::Group(k.0)),
            Action::Goto(s) => goto = Some(table_of(s)),
            Action::Tunnel { port, vni, remote } => actions.extend([
                set_field(Field::TunId, vni.into()),
                set_field(Field::TunIpv4Dst, u32::from(remote).into()),
                OfAction::Output {
                    port: PortNo(port),
                    max_len: 0,
                },
            ]),
        }
    }
    let mut instructions = if actions.is_empty() {
        Instructions::default()
    } else {
        Instructions::apply(actions)
    };
    if let Some(t) = goto {
        instructions = instructions.with_goto(t);
    }
    Ok(DesiredFlow::new(
        table_of(flow.stage),
        flow.priority,
        map_match(flow),
        instructions,
    )
    .with_cookie(cookie_of(flow.owner)))
}

/// The table, priority and match of an IR flow: what identifies it in the switch.
pub fn map_key(flow: &Flow) -> FlowKey {
    FlowKey {
        table: table_of(flow.stage),
        priority: flow.priority,
        match_: map_match(flow),
    }
}

/// The priority-0 flow of every table: what a stage's declaration says a miss does. Drops
/// are explicit flows so that their packet counters show what each stage dropped.
pub fn miss_flows() -> Vec<DesiredFlow> {
    STAGES
        .iter()
        .map(|d| {
            let instructions = match d.miss {
                Miss::Drop => Instructions::default(),
                Miss::Continue(next) => Instructions::goto(table_of(next)),
            };
            DesiredFlow::new(table_of(d.stage), 0, OfMatch::new(), instructions)
                .with_cookie(cookie_of(Owner::Static))
        })
        .collect()
}

/// A network's flood group: an ALL group with one bucket per local port.
pub fn map_group(g: &FloodGroup) -> GroupSpec {
    GroupSpec {
        group_id: g.network.0,
        group_type: GroupType::All,
        buckets: g
            .ports
            .iter()
            .map(|p| {
                Bucket::all(vec![OfAction::Output {
                    port: PortNo(*p),
                    max_len: 0,
                }])
            })
            .collect(),
    }
}

/// Maps a whole compiled pipeline (plus miss flows) to OpenFlow.
pub fn map_all<'a>(
    flows: impl IntoIterator<Item = &'a Flow>,
    groups: impl IntoIterator<Item = &'a FloodGroup>,
) -> Result<(Vec<DesiredFlow>, Vec<GroupSpec>), OfMapError> {
    let mut out = miss_flows();
    for f in flows {
        out.push(map_flow(f)?);
    }
    Ok((out, groups.into_iter().map(map_group).collect()))
}

/// Maps a compile delta to an ofctrl update. A flow removed and re-added under the same key
/// (its actions changed) becomes one replacement, never a delete followed by an add.
pub fn map_delta(delta: &Delta) -> Result<Update, OfMapError> {
    let mut update = Update::default();
    let mut added = std::collections::HashSet::new();
    for f in &delta.added {
        let d = map_flow(f)?;
        added.insert(d.key.clone());
        update.add_flows.push(d);
    }
    for f in &delta.removed {
        let k = map_key(f);
        if !added.contains(&k) {
            update.remove_flows.push(k);
        }
    }
    update.add_groups = delta.groups_set.iter().map(map_group).collect();
    update.remove_groups = delta.groups_removed.iter().map(|k| k.0).collect();
    Ok(update)
}
