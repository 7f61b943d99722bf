//! IR flows and flood groups -> P4Runtime entities for wyvern.p4 (p4/README.md is the
//! table of record). Every table, key, action and parameter is looked up by name in a
//! [`P4InfoIndex`]; only names are fixed here.

use p4runtime_proto::p4::v1::{
    self as p4, field_match, packet_replication_engine_entry, replica, table_action,
};
use wyvern_pipeline::ir::{Action, FieldKind, FloodGroup, Flow, Match};
use wyvern_pipeline::stage::Stage;

use crate::encode::{canonical, prefix_mask, WidthError};
use crate::index::{ActionInfo, IndexError, MatchKind, P4InfoIndex, TableInfo};

/// The control block holding wyvern.p4's tables and actions.
pub const CONTROL: &str = "MyIngress";

/// Why a flow or flood group has no P4Runtime form. Each variant names the flow (its
/// `Display`) so a report points at the IR, not at bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("failed to map [{flow}]: {source}")]
    Index {
        flow: String,
        #[source]
        source: IndexError,
    },
    #[error("failed to map [{flow}]: {source}")]
    Width {
        flow: String,
        #[source]
        source: WidthError,
    },
    #[error("failed to map [{flow}]: no action of wyvern.p4 does this action list")]
    NoP4Action { flow: String },
    #[error("failed to map [{flow}]: key {field} is exact and cannot hold a mask")]
    MaskOnExact { flow: String, field: String },
    #[error("failed to map [{flow}]: key {field} is lpm and the mask is not a prefix")]
    NonPrefixMask { flow: String, field: String },
    #[error("failed to map [{flow}]: key {field} is matched twice")]
    DuplicateKey { flow: String, field: String },
    #[error("failed to map [{flow}]: exact key {field} is not matched")]
    MissingExactKey { flow: String, field: String },
    #[error("failed to map [{flow}]: table {table} needs a priority above 0")]
    ZeroPriority { flow: String, table: String },
    #[error("failed to map [{flow}]: it has the same table key as [{other}]")]
    DuplicateEntry { flow: String, other: String },
    #[error("failed to map flood group of network {network}: group id 0 means \"all groups\" in P4Runtime")]
    GroupIdZero { network: u32 },
}

/// A match value before it meets its key's kind.
#[derive(Debug, Clone, Copy)]
enum Value {
    Full(u128),
    Prefix(u128, u8),
    Masked(u128, u128),
}

fn mac(m: &[u8; 6]) -> u128 {
    m.iter().fold(0u128, |acc, b| (acc << 8) | u128::from(*b))
}

/// The P4 key (name in P4Info) each IR match field is carried in.
pub fn key_name(kind: FieldKind) -> &'static str {
    match kind {
        FieldKind::PhysInPort => "meta.phys_in_port",
        FieldKind::TunnelId => "meta.tunnel_id",
        FieldKind::Network => "meta.network",
        FieldKind::InPort => "meta.inport",
        FieldKind::OutPort => "meta.outport",
        FieldKind::Router => "meta.router",
        FieldKind::EthSrc => "hdr.ethernet.srcAddr",
        FieldKind::EthDst => "hdr.ethernet.dstAddr",
        FieldKind::EthType => "hdr.ethernet.etherType",
        FieldKind::IpProto => "hdr.ipv4.protocol",
        FieldKind::Ipv4Src => "hdr.ipv4.srcAddr",
        FieldKind::Ipv4Dst => "hdr.ipv4.dstAddr",
        FieldKind::IpTtl => "hdr.ipv4.ttl",
        FieldKind::UdpSrc => "hdr.udp.srcPort",
        FieldKind::UdpDst => "hdr.udp.dstPort",
        FieldKind::IcmpType => "hdr.icmp.icmp_type",
        FieldKind::ArpOp => "hdr.arp.op",
        FieldKind::ArpSpa => "hdr.arp.spa",
        FieldKind::ArpTpa => "hdr.arp.tpa",
        FieldKind::ArpSha => "hdr.arp.sha",
    }
}

fn match_value(m: &Match) -> Value {
    match m {
        Match::PhysInPort(v) | Match::TunnelId(v) => Value::Full((*v).into()),
        Match::Network(k) => Value::Full(k.0.into()),
        Match::InPort(k) | Match::OutPort(k) => Value::Full(k.0.into()),
        Match::Router(k) => Value::Full(k.0.into()),
        Match::EthSrc(a) | Match::EthDst(a) | Match::ArpSha(a) => Value::Full(mac(&a.0)),
        // The I/G bit: the low bit of the first octet.
        Match::EthDstMulticast => Value::Masked(1 << 40, 1 << 40),
        Match::EthType(v) | Match::UdpSrc(v) | Match::UdpDst(v) | Match::ArpOp(v) => {
            Value::Full((*v).into())
        }
        Match::IpProto(v) | Match::IpTtl(v) | Match::IcmpType(v) => Value::Full((*v).into()),
        Match::Ipv4Src(n) | Match::Ipv4Dst(n) | Match::ArpSpa(n) => {
            Value::Prefix(u32::from(n.addr()).into(), n.prefix_len())
        }
        Match::ArpTpa(a) => Value::Full(u32::from(*a).into()),
    }
}

/// The P4 action (name without the control) and its arguments for an IR action list.
pub fn p4_action(flow: &Flow) -> Option<(&'static str, Vec<(&'static str, u128)>)> {
    use Action as A;
    Some(match flow.actions.as_slice() {
        [] => ("drop", vec![]),
        [A::SetInPort(p), A::SetNetwork(n), A::Goto(Stage::PortSecurity)] => (
            "set_port_and_network",
            vec![("inport", p.0.into()), ("network", n.0.into())],
        ),
        [A::SetNetwork(n), A::Goto(Stage::L2Lookup)] => {
            ("set_tunnel_network", vec![("network", n.0.into())])
        }
        [A::Goto(Stage::Dispatch)] => ("goto_dispatch", vec![]),
        [A::Goto(Stage::ArpResponder)] => ("goto_arp_responder", vec![]),
        [A::Goto(Stage::Dhcp)] => ("goto_dhcp", vec![]),
        [A::Goto(Stage::L2Lookup)] => ("goto_l2_lookup", vec![]),
        [A::ArpReply { mac: m }] => ("arp_reply", vec![("mac", mac(&m.0))]),
        [A::Punt(r)] => ("punt", vec![("reason", r.code().into())]),
        [A::SetOutPort(p), A::Goto(Stage::Egress)] => {
            ("set_outport", vec![("outport", p.0.into())])
        }
        [A::SetRouter(r), A::Goto(Stage::L3Lookup)] => ("set_router", vec![("router", r.0.into())]),
        [A::Flood(n)] => ("flood", vec![("group", n.0.into())]),
        [A::DecTtl, A::SetEthSrc(s), A::SetEthDst(d), A::SetNetwork(n), A::SetOutPort(p), A::Goto(Stage::Egress)] => {
            (
                "route",
                vec![
                    ("router_mac", mac(&s.0)),
                    ("dst_mac", mac(&d.0)),
                    ("network", n.0.into()),
                    ("outport", p.0.into()),
                ],
            )
        }
        [A::Output(p)] => ("output", vec![("port", (*p).into())]),
        _ => return None,
    })
}

/// The IR action list of a wyvern.p4 action (name without the control), its arguments
/// looked up by parameter name: the inverse of [`p4_action`], for a target that runs table
/// entries in the IR engine (wyvern-p4d). `None` if the action has no IR form
/// (`output_vxlan`) or an argument is missing or too wide for the IR.
pub fn ir_actions(action: &str, arg: impl Fn(&str) -> Option<u128>) -> Option<Vec<Action>> {
    use wyvern_model::MacAddr;
    use wyvern_pipeline::ir::{NetKey, PortKey, PuntReason, RouterKey};
    use Action as A;
    let u32_of = |n: &str| arg(n).and_then(|v| u32::try_from(v).ok());
    let mac_of = |n: &str| {
        let v = arg(n).filter(|v| *v >> 48 == 0)?;
        let b = v.to_be_bytes();
        let mut m = [0u8; 6];
        m.copy_from_slice(&b[10..16]);
        Some(MacAddr(m))
    };
    Some(match action {
        "drop" => vec![],
        "set_port_and_network" => vec![
            A::SetInPort(PortKey(u32_of("inport")?)),
            A::SetNetwork(NetKey(u32_of("network")?)),
            A::Goto(Stage::PortSecurity),
        ],
        "set_tunnel_network" => vec![
            A::SetNetwork(NetKey(u32_of("network")?)),
            A::Goto(Stage::L2Lookup),
        ],
        "goto_dispatch" => vec![A::Goto(Stage::Dispatch)],
        "goto_arp_responder" => vec![A::Goto(Stage::ArpResponder)],
        "goto_dhcp" => vec![A::Goto(Stage::Dhcp)],
        "goto_l2_lookup" => vec![A::Goto(Stage::L2Lookup)],
        "arp_reply" => vec![A::ArpReply {
            mac: mac_of("mac")?,
        }],
        "punt" => vec![A::Punt(PuntReason::from_code(
            u8::try_from(arg("reason")?).ok()?,
        )?)],
        "set_outport" => vec![
            A::SetOutPort(PortKey(u32_of("outport")?)),
            A::Goto(Stage::Egress),
        ],
        "set_router" => vec![
            A::SetRouter(RouterKey(u32_of("router")?)),
            A::Goto(Stage::L3Lookup),
        ],
        "flood" => vec![A::Flood(NetKey(u32_of("group")?))],
        "route" => vec![
            A::DecTtl,
            A::SetEthSrc(mac_of("router_mac")?),
            A::SetEthDst(mac_of("dst_mac")?),
            A::SetNetwork(NetKey(u32_of("network")?)),
            A::SetOutPort(PortKey(u32_of("outport")?)),
            A::Goto(Stage::Egress),
        ],
        "output" => vec![A::Output(u32_of("port")?)],
        _ => return None,
    })
}

/// What a value is for, formatted only when it does not fit (an error).
struct WhatKey<'a>(&'a str, &'a str);
struct WhatParam<'a>(&'a str, &'a str);

impl std::fmt::Display for WhatKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} key {}", self.0, self.1)
    }
}

impl std::fmt::Display for WhatParam<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}({})", self.0, self.1)
    }
}

/// [`canonical`] with the error's description made only on failure.
fn canonical_of(
    value: u128,
    bitwidth: u32,
    what: &dyn std::fmt::Display,
) -> Result<Vec<u8>, WidthError> {
    if bitwidth < 128 && value >> bitwidth != 0 {
        return Err(WidthError {
            what: what.to_string(),
            value,
            bitwidth,
        });
    }
    canonical(value, bitwidth, "")
}

/// The fully qualified table of a stage.
pub fn table_name(stage: Stage) -> String {
    format!("{CONTROL}.{}", stage.name())
}

/// Maps IR objects onto one P4Info's ids.
#[derive(Debug, Clone)]
pub struct Mapper {
    index: P4InfoIndex,
    /// Each stage's table (by [`Stage::index`]), resolved once: mapping a flow then costs
    /// no name lookups. `None` when the P4Info lacks it (reported per flow).
    stage_tables: Vec<Option<TableInfo>>,
    /// wyvern.p4's actions by short name (`route`), resolved once.
    actions: Vec<(String, ActionInfo)>,
}

impl Mapper {
    pub fn new(index: P4InfoIndex) -> Self {
        let stage_tables = wyvern_pipeline::stage::STAGES
            .iter()
            .map(|d| index.table(&table_name(d.stage)).ok().cloned())
            .collect();
        let prefix = format!("{CONTROL}.");
        let actions = index
            .actions()
            .filter_map(|a| Some((a.name.strip_prefix(&prefix)?.to_owned(), a.clone())))
            .collect();
        Mapper {
            index,
            stage_tables,
            actions,
        }
    }

    fn stage_table(&self, stage: Stage) -> Result<&TableInfo, IndexError> {
        self.stage_tables
            .get(stage.index())
            .and_then(Option::as_ref)
            .ok_or_else(|| IndexError::UnknownTable(table_name(stage)))
    }

    fn action_named(&self, short: &str) -> Result<&ActionInfo, IndexError> {
        self.actions
            .iter()
            .find(|(n, _)| n == short)
            .map(|(_, a)| a)
            .ok_or_else(|| IndexError::UnknownAction(format!("{CONTROL}.{short}")))
    }

    pub fn index(&self) -> &P4InfoIndex {
        &self.index
    }

    /// The table entry of a flow: its stage's table, one field match per IR match (wildcards
    /// left out, as the spec requires), the IR priority, and the P4 action.
    pub fn table_entry(&self, flow: &Flow) -> Result<p4::TableEntry, MapError> {
        let ctx = || flow.to_string();
        let ix = |source| MapError::Index {
            flow: ctx(),
            source,
        };
        let wd = |source| MapError::Width {
            flow: ctx(),
            source,
        };
        let table = self.stage_table(flow.stage).map_err(ix)?;
        let tname = || table.name.clone();

        let mut fms: Vec<p4::FieldMatch> = Vec::with_capacity(flow.matches.len());
        let mut seen = Vec::with_capacity(flow.matches.len());
        for m in &flow.matches {
            let field = table.field(key_name(m.kind())).map_err(ix)?;
            if seen.contains(&field.id) {
                return Err(MapError::DuplicateKey {
                    flow: ctx(),
                    field: field.name.clone(),
                });
            }
            seen.push(field.id);
            let w = field.bitwidth;
            let what = WhatKey(&table.name, &field.name);
            let full = prefix_mask(w, w);
            let (value, mask) = match match_value(m) {
                Value::Full(v) => (v, full),
                Value::Prefix(v, p) => (v, prefix_mask(u32::from(p), w)),
                Value::Masked(v, mk) => (v, mk),
            };
            // Checked before masking, so a value wider than its key is never silently cut.
            canonical_of(value, w, &what).map_err(wd)?;
            let kind = match field.kind {
                MatchKind::Exact | MatchKind::Optional | MatchKind::Range if mask != full => {
                    return Err(MapError::MaskOnExact {
                        flow: ctx(),
                        field: field.name.clone(),
                    })
                }
                MatchKind::Exact => field_match::FieldMatchType::Exact(field_match::Exact {
                    value: canonical_of(value, w, &what).map_err(wd)?,
                }),
                MatchKind::Optional => {
                    field_match::FieldMatchType::Optional(field_match::Optional {
                        value: canonical_of(value, w, &what).map_err(wd)?,
                    })
                }
                MatchKind::Range => {
                    let v = canonical_of(value, w, &what).map_err(wd)?;
                    field_match::FieldMatchType::Range(field_match::Range {
                        low: v.clone(),
                        high: v,
                    })
                }
                // A zero mask is a wildcard, which P4Runtime spells by leaving the field out.
                MatchKind::Ternary | MatchKind::Lpm if mask == 0 => continue,
                MatchKind::Ternary => field_match::FieldMatchType::Ternary(field_match::Ternary {
                    value: canonical_of(value & mask, w, &what).map_err(wd)?,
                    mask: canonical_of(mask, w, &what).map_err(wd)?,
                }),
                MatchKind::Lpm => {
                    let plen = mask.count_ones();
                    if prefix_mask(plen, w) != mask {
                        return Err(MapError::NonPrefixMask {
                            flow: ctx(),
                            field: field.name.clone(),
                        });
                    }
                    field_match::FieldMatchType::Lpm(field_match::Lpm {
                        value: canonical_of(value & mask, w, &what).map_err(wd)?,
                        prefix_len: plen as i32,
                    })
                }
            };
            fms.push(p4::FieldMatch {
                field_id: field.id,
                field_match_type: Some(kind),
            });
        }
        for f in &table.fields {
            if f.kind == MatchKind::Exact && !seen.contains(&f.id) {
                return Err(MapError::MissingExactKey {
                    flow: ctx(),
                    field: f.name.clone(),
                });
            }
        }
        fms.sort_by_key(|f| f.field_id);

        let priority = if table.needs_priority() {
            if flow.priority == 0 {
                return Err(MapError::ZeroPriority {
                    flow: ctx(),
                    table: tname(),
                });
            }
            i32::from(flow.priority)
        } else {
            0
        };

        let (aname, args) = p4_action(flow).ok_or_else(|| MapError::NoP4Action { flow: ctx() })?;
        let action = self.action_named(aname).map_err(ix)?;
        if !table.allows_action(action.id) {
            return Err(ix(IndexError::ActionNotInTable {
                table: tname(),
                action: action.name.clone(),
            }));
        }
        let mut params = Vec::with_capacity(args.len());
        for (pname, v) in args {
            let p = action.param(pname).map_err(ix)?;
            params.push(p4::action::Param {
                param_id: p.id,
                value: canonical_of(v, p.bitwidth, &WhatParam(&action.name, pname)).map_err(wd)?,
            });
        }
        params.sort_by_key(|p| p.param_id);

        Ok(p4::TableEntry {
            table_id: table.id,
            r#match: fms,
            action: Some(p4::TableAction {
                r#type: Some(table_action::Type::Action(p4::Action {
                    action_id: action.id,
                    params,
                })),
            }),
            priority,
            ..Default::default()
        })
    }

    /// The multicast group `flood(group)` refers to: id = the network key (it must fit the
    /// `flood` action's `group` parameter), one replica per local port (each must fit the
    /// `output` action's `port`, the target's port width).
    pub fn multicast_group(&self, g: &FloodGroup) -> Result<p4::MulticastGroupEntry, MapError> {
        let ctx = || format!("flood group of network {} ports {:?}", g.network.0, g.ports);
        let ix = |source| MapError::Index {
            flow: ctx(),
            source,
        };
        let wd = |source| MapError::Width {
            flow: ctx(),
            source,
        };
        if g.network.0 == 0 {
            return Err(MapError::GroupIdZero { network: 0 });
        }
        let flood = self.index.action(&format!("{CONTROL}.flood")).map_err(ix)?;
        let gw = flood.param("group").map_err(ix)?.bitwidth;
        canonical(g.network.0.into(), gw, "multicast group id").map_err(wd)?;
        let output = self
            .index
            .action(&format!("{CONTROL}.output"))
            .map_err(ix)?;
        let pw = output.param("port").map_err(ix)?.bitwidth;
        let mut replicas = Vec::with_capacity(g.ports.len());
        for p in &g.ports {
            canonical((*p).into(), pw, "replica port").map_err(wd)?;
            // `egress_port` (a plain integer) is what PI/bmv2 reads; newer targets accept it too.
            #[allow(deprecated)]
            replicas.push(p4::Replica {
                port_kind: Some(replica::PortKind::EgressPort(*p)),
                instance: 0,
                backup_replicas: Vec::new(),
            });
        }
        Ok(p4::MulticastGroupEntry {
            multicast_group_id: g.network.0,
            replicas,
            metadata: Vec::new(),
        })
    }
}

impl Mapper {
    /// A table entry by name, for logs and golden tests:
    /// `MyIngress.egress meta.outport=0x3 -> MyIngress.output(port=0x3)`. Ids the P4Info
    /// does not know are printed as numbers.
    pub fn describe(&self, e: &p4::TableEntry) -> String {
        use std::fmt::Write;
        let hex = |b: &[u8]| {
            let mut s = String::from("0x");
            for x in b {
                let _ = write!(s, "{x:02x}");
            }
            s
        };
        let table = self.index.table_by_id(e.table_id);
        let mut out = table.map_or_else(|| format!("table#{}", e.table_id), |t| t.name.clone());
        for m in &e.r#match {
            let name = table
                .and_then(|t| t.field_by_id(m.field_id))
                .map_or_else(|| format!("field#{}", m.field_id), |f| f.name.clone());
            let v = match &m.field_match_type {
                Some(field_match::FieldMatchType::Exact(x)) => hex(&x.value),
                Some(field_match::FieldMatchType::Ternary(x)) => {
                    format!("{}&&&{}", hex(&x.value), hex(&x.mask))
                }
                Some(field_match::FieldMatchType::Lpm(x)) => {
                    format!("{}/{}", hex(&x.value), x.prefix_len)
                }
                Some(field_match::FieldMatchType::Range(x)) => {
                    format!("{}..{}", hex(&x.low), hex(&x.high))
                }
                Some(field_match::FieldMatchType::Optional(x)) => hex(&x.value),
                _ => "?".into(),
            };
            let _ = write!(out, " {name}={v}");
        }
        if e.priority != 0 {
            let _ = write!(out, " prio={}", e.priority);
        }
        if let Some(p4::TableAction {
            r#type: Some(table_action::Type::Action(a)),
        }) = &e.action
        {
            let action = self.index.action_by_id(a.action_id);
            let name = action.map_or_else(|| format!("action#{}", a.action_id), |x| x.name.clone());
            let params: Vec<String> = a
                .params
                .iter()
                .map(|p| {
                    let n = action
                        .and_then(|x| x.params.iter().find(|q| q.id == p.param_id))
                        .map_or_else(|| format!("param#{}", p.param_id), |q| q.name.clone());
                    format!("{n}={}", hex(&p.value))
                })
                .collect();
            let _ = write!(out, " -> {name}({})", params.join(", "));
        }
        out
    }
}

/// Wraps a table entry as an [`p4::Entity`].
pub fn table_entity(e: p4::TableEntry) -> p4::Entity {
    p4::Entity {
        entity: Some(p4::entity::Entity::TableEntry(e)),
    }
}

/// Wraps a multicast group as an [`p4::Entity`].
pub fn group_entity(g: p4::MulticastGroupEntry) -> p4::Entity {
    p4::Entity {
        entity: Some(p4::entity::Entity::PacketReplicationEngineEntry(
            p4::PacketReplicationEngineEntry {
                r#type: Some(packet_replication_engine_entry::Type::MulticastGroupEntry(
                    g,
                )),
            },
        )),
    }
}
