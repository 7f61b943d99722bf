//! P4Info resolved by name at run time: p4c assigns ids by hashing names (and probing on
//! collisions), so ids are only ever read from the P4Info the target runs, never written
//! into code.

use std::collections::HashMap;

use p4runtime_proto::p4::config::v1::{match_field, P4Info, Preamble};

/// How a table key matches (P4Info `MatchField.match_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    Exact,
    Ternary,
    Lpm,
    Range,
    Optional,
}

impl MatchKind {
    /// Whether entries of a table with such a key carry a priority (P4Runtime 9.1).
    pub fn needs_priority(self) -> bool {
        matches!(
            self,
            MatchKind::Ternary | MatchKind::Range | MatchKind::Optional
        )
    }
}

/// A table key field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldInfo {
    pub id: u32,
    pub name: String,
    pub bitwidth: u32,
    pub kind: MatchKind,
}

/// An action parameter or a packet-io metadata field: an id and a width.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamInfo {
    pub id: u32,
    pub name: String,
    pub bitwidth: u32,
}

#[derive(Debug, Clone)]
pub struct TableInfo {
    pub id: u32,
    pub name: String,
    /// In P4Info order (the table's key order).
    pub fields: Vec<FieldInfo>,
    action_ids: Vec<u32>,
    pub const_default_action_id: u32,
    /// The id of the table's direct counter, if it has one.
    pub direct_counter_id: Option<u32>,
    pub size: i64,
}

impl TableInfo {
    pub fn field(&self, name: &str) -> Result<&FieldInfo, IndexError> {
        self.fields
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| IndexError::UnknownField {
                table: self.name.clone(),
                field: name.to_string(),
            })
    }

    pub fn field_by_id(&self, id: u32) -> Option<&FieldInfo> {
        self.fields.iter().find(|f| f.id == id)
    }

    /// Whether entries need a priority (any ternary, range or optional key).
    pub fn needs_priority(&self) -> bool {
        self.fields.iter().any(|f| f.kind.needs_priority())
    }

    pub fn allows_action(&self, action_id: u32) -> bool {
        self.action_ids.contains(&action_id)
    }
}

#[derive(Debug, Clone)]
pub struct ActionInfo {
    pub id: u32,
    pub name: String,
    /// In declaration order (the order P4 action parameters are listed in).
    pub params: Vec<ParamInfo>,
}

impl ActionInfo {
    pub fn param(&self, name: &str) -> Result<&ParamInfo, IndexError> {
        self.params
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| IndexError::UnknownParam {
                action: self.name.clone(),
                param: name.to_string(),
            })
    }
}

/// A `@controller_header` (packet_in or packet_out) and its fields.
#[derive(Debug, Clone)]
pub struct PacketMetaInfo {
    pub id: u32,
    pub name: String,
    pub fields: Vec<ParamInfo>,
}

impl PacketMetaInfo {
    pub fn field(&self, name: &str) -> Result<&ParamInfo, IndexError> {
        self.fields.iter().find(|p| p.name == name).ok_or_else(|| {
            IndexError::UnknownPacketMetadata {
                header: self.name.clone(),
                field: name.to_string(),
            }
        })
    }
}

/// Why a name could not be resolved, naming what was looked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("failed to build the P4Info index: {kind} without a preamble")]
    MissingPreamble { kind: &'static str },
    #[error("failed to build the P4Info index: match field {field} of table {table} has no known match type")]
    UnknownMatchType { table: String, field: String },
    #[error("failed to build the P4Info index: bit width {bitwidth} of {what} is not in 1..=128")]
    BadBitwidth { what: String, bitwidth: i32 },
    #[error("failed to resolve table {0} in the P4Info")]
    UnknownTable(String),
    #[error("failed to resolve match field {field} of table {table} in the P4Info")]
    UnknownField { table: String, field: String },
    #[error("failed to resolve action {0} in the P4Info")]
    UnknownAction(String),
    #[error("failed to resolve parameter {param} of action {action} in the P4Info")]
    UnknownParam { action: String, param: String },
    #[error("failed to use action {action} in table {table}: the table does not list it")]
    ActionNotInTable { table: String, action: String },
    #[error("failed to resolve controller header {0} in the P4Info")]
    UnknownPacketHeader(String),
    #[error("failed to resolve field {field} of controller header {header} in the P4Info")]
    UnknownPacketMetadata { header: String, field: String },
}

/// Tables, actions, counters and packet-io headers of one P4Info, by name.
#[derive(Debug, Clone)]
pub struct P4InfoIndex {
    tables: HashMap<String, TableInfo>,
    table_names: HashMap<u32, String>,
    actions: HashMap<String, ActionInfo>,
    action_names: HashMap<u32, String>,
    packet_meta: HashMap<String, PacketMetaInfo>,
}

fn preamble<'a>(p: &'a Option<Preamble>, kind: &'static str) -> Result<&'a Preamble, IndexError> {
    p.as_ref().ok_or(IndexError::MissingPreamble { kind })
}

fn width(what: impl Fn() -> String, bitwidth: i32) -> Result<u32, IndexError> {
    if (1..=128).contains(&bitwidth) {
        Ok(bitwidth as u32)
    } else {
        Err(IndexError::BadBitwidth {
            what: what(),
            bitwidth,
        })
    }
}

impl P4InfoIndex {
    pub fn new(info: &P4Info) -> Result<Self, IndexError> {
        let mut direct_counters = HashMap::new();
        for dc in &info.direct_counters {
            let pre = preamble(&dc.preamble, "direct counter")?;
            direct_counters.insert(dc.direct_table_id, pre.id);
        }
        let mut tables = HashMap::new();
        let mut table_names = HashMap::new();
        for t in &info.tables {
            let pre = preamble(&t.preamble, "table")?;
            let mut fields = Vec::with_capacity(t.match_fields.len());
            for mf in &t.match_fields {
                let kind = match mf.r#match {
                    Some(match_field::Match::MatchType(k)) => {
                        match match_field::MatchType::try_from(k) {
                            Ok(match_field::MatchType::Exact) => Some(MatchKind::Exact),
                            Ok(match_field::MatchType::Ternary) => Some(MatchKind::Ternary),
                            Ok(match_field::MatchType::Lpm) => Some(MatchKind::Lpm),
                            Ok(match_field::MatchType::Range) => Some(MatchKind::Range),
                            Ok(match_field::MatchType::Optional) => Some(MatchKind::Optional),
                            _ => None,
                        }
                    }
                    _ => None,
                };
                let kind = kind.ok_or_else(|| IndexError::UnknownMatchType {
                    table: pre.name.clone(),
                    field: mf.name.clone(),
                })?;
                fields.push(FieldInfo {
                    id: mf.id,
                    name: mf.name.clone(),
                    bitwidth: width(|| format!("{}.{}", pre.name, mf.name), mf.bitwidth)?,
                    kind,
                });
            }
            table_names.insert(pre.id, pre.name.clone());
            tables.insert(
                pre.name.clone(),
                TableInfo {
                    id: pre.id,
                    name: pre.name.clone(),
                    fields,
                    action_ids: t.action_refs.iter().map(|r| r.id).collect(),
                    const_default_action_id: t.const_default_action_id,
                    direct_counter_id: direct_counters.get(&pre.id).copied(),
                    size: t.size,
                },
            );
        }
        let mut actions = HashMap::new();
        let mut action_names = HashMap::new();
        for a in &info.actions {
            let pre = preamble(&a.preamble, "action")?;
            let params = a
                .params
                .iter()
                .map(|p| {
                    Ok(ParamInfo {
                        id: p.id,
                        name: p.name.clone(),
                        bitwidth: width(|| format!("{}({})", pre.name, p.name), p.bitwidth)?,
                    })
                })
                .collect::<Result<_, IndexError>>()?;
            action_names.insert(pre.id, pre.name.clone());
            actions.insert(
                pre.name.clone(),
                ActionInfo {
                    id: pre.id,
                    name: pre.name.clone(),
                    params,
                },
            );
        }
        let mut packet_meta = HashMap::new();
        for m in &info.controller_packet_metadata {
            let pre = preamble(&m.preamble, "controller packet metadata")?;
            let fields = m
                .metadata
                .iter()
                .map(|f| {
                    Ok(ParamInfo {
                        id: f.id,
                        name: f.name.clone(),
                        bitwidth: width(|| format!("{}.{}", pre.name, f.name), f.bitwidth)?,
                    })
                })
                .collect::<Result<_, IndexError>>()?;
            packet_meta.insert(
                pre.name.clone(),
                PacketMetaInfo {
                    id: pre.id,
                    name: pre.name.clone(),
                    fields,
                },
            );
        }
        Ok(P4InfoIndex {
            tables,
            table_names,
            actions,
            action_names,
            packet_meta,
        })
    }

    /// A table by its fully qualified name (`MyIngress.classify`).
    pub fn table(&self, name: &str) -> Result<&TableInfo, IndexError> {
        self.tables
            .get(name)
            .ok_or_else(|| IndexError::UnknownTable(name.to_string()))
    }

    pub fn table_by_id(&self, id: u32) -> Option<&TableInfo> {
        self.table_names.get(&id).and_then(|n| self.tables.get(n))
    }

    /// An action by its fully qualified name (`MyIngress.route`).
    pub fn action(&self, name: &str) -> Result<&ActionInfo, IndexError> {
        self.actions
            .get(name)
            .ok_or_else(|| IndexError::UnknownAction(name.to_string()))
    }

    pub fn action_by_id(&self, id: u32) -> Option<&ActionInfo> {
        self.action_names.get(&id).and_then(|n| self.actions.get(n))
    }

    /// A `@controller_header` by name (`packet_in`, `packet_out`).
    pub fn packet_header(&self, name: &str) -> Result<&PacketMetaInfo, IndexError> {
        self.packet_meta
            .get(name)
            .ok_or_else(|| IndexError::UnknownPacketHeader(name.to_string()))
    }

    pub fn tables(&self) -> impl Iterator<Item = &TableInfo> {
        self.tables.values()
    }

    pub fn actions(&self) -> impl Iterator<Item = &ActionInfo> {
        self.actions.values()
    }
}
