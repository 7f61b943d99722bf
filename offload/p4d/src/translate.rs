//! P4Runtime table entries -> engine entries, resolved through the P4Info the controller
//! committed. The names are wyvern.p4's (`wyvern_offload_p4rt::mapping` is the table of
//! record: key names via `key_name`, actions via `ir_actions`); ids come only from the
//! P4Info. Every check here is one the spec asks a target to make, with its error code.

use std::borrow::Cow;

use p4runtime_proto::google::rpc::Code;
use p4runtime_proto::p4::v1::{self as p4, field_match, table_action};
use wyvern_engine::key::{full_mask, FIELDS};
use wyvern_engine::{Entry, FieldMatch};
use wyvern_offload_p4rt::encode::{decode, prefix_mask};
use wyvern_offload_p4rt::index::{MatchKind, P4InfoIndex, TableInfo};
use wyvern_offload_p4rt::mapping::{ir_actions, key_name, CONTROL};
use wyvern_offload_p4rt::state::normalize;
use wyvern_pipeline::{FieldKind, Stage};

/// Why an entry was refused; [`TranslateError::code`] is the per-update code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    #[error("failed to find table id {0} in the P4Info")]
    UnknownTable(u32),
    #[error("failed to run table {0}: it is not a stage of the wyvern pipeline")]
    NotAStage(String),
    #[error("failed to match on field id {field_id}: table {table} has no such key")]
    UnknownField { table: String, field_id: u32 },
    #[error("failed to match on {field} of {table}: the engine has no such field")]
    FieldNotInEngine { table: String, field: String },
    #[error("failed to match on {field} of {table}: given twice")]
    DuplicateField { table: String, field: String },
    #[error(
        "failed to match on {field} of {table}: it is {want:?}, the entry gives another match kind"
    )]
    WrongMatchKind {
        table: String,
        field: String,
        want: MatchKind,
    },
    #[error("failed to match on {field} of {table}: a value or mask wider than {bitwidth} bits")]
    TooWide {
        table: String,
        field: String,
        bitwidth: u32,
    },
    #[error("failed to match on {field} of {table}: value bits outside the mask are set")]
    ValueOutsideMask { table: String, field: String },
    #[error("failed to match on {field} of {table}: a wildcard must be omitted, not sent")]
    DontCareGiven { table: String, field: String },
    #[error("failed to match on {field} of {table}: prefix length {prefix_len} is not in 1..={bitwidth}")]
    BadPrefixLen {
        table: String,
        field: String,
        prefix_len: i32,
        bitwidth: u32,
    },
    #[error("failed to match on {field} of {table}: range and unset matches are not supported")]
    UnsupportedMatch { table: String, field: String },
    #[error("failed to build an entry of {table}: exact key {field} is missing")]
    MissingExact { table: String, field: String },
    #[error("failed to build an entry of {table}: priority {priority} (tables with ternary keys need > 0, others 0)")]
    BadPriority { table: String, priority: i32 },
    #[error("failed to build an entry of {table}: no action")]
    NoAction { table: String },
    #[error("failed to build an entry of {table}: only direct actions are supported (no action profiles)")]
    IndirectAction { table: String },
    #[error(
        "failed to build an entry of {table}: action id {action_id} is not one of its actions"
    )]
    ActionNotInTable { table: String, action_id: u32 },
    #[error(
        "failed to build action {action}: parameter id {param_id} is unknown, repeated or too wide"
    )]
    BadParam { action: String, param_id: u32 },
    #[error("failed to build action {action}: parameter {param} is missing")]
    MissingParam { action: String, param: String },
    #[error("failed to run action {action}: it has no form in the engine")]
    NoEngineForm { action: String },
    #[error("failed to write the default entry of {table}: its default action is const")]
    ConstDefault { table: String },
}

impl TranslateError {
    /// The canonical code the spec gives this failure.
    pub fn code(&self) -> Code {
        match self {
            TranslateError::UnknownTable(_) => Code::NotFound,
            TranslateError::IndirectAction { .. }
            | TranslateError::NoEngineForm { .. }
            | TranslateError::UnsupportedMatch { .. } => Code::Unimplemented,
            TranslateError::ConstDefault { .. } => Code::PermissionDenied,
            _ => Code::InvalidArgument,
        }
    }
}

/// An entry ready for the engine, with its canonical P4Runtime form (what Read returns).
#[derive(Debug, Clone)]
pub struct Translated {
    pub stage: Stage,
    /// The engine's key and priority; actions empty when none were given (DELETE).
    pub entry: Entry,
    pub canonical: p4::TableEntry,
}

/// The stage a table of the committed P4Info runs.
pub fn stage_of(table: &TableInfo) -> Option<Stage> {
    table
        .name
        .strip_prefix(CONTROL)
        .and_then(|n| n.strip_prefix('.'))
        .and_then(Stage::from_name)
}

/// The engine field a P4 key is carried in.
pub fn field_of(p4_name: &str) -> Option<FieldKind> {
    FIELDS.iter().copied().find(|f| key_name(*f) == p4_name)
}

fn fits(v: u128, bitwidth: u32) -> bool {
    bitwidth >= 128 || v >> bitwidth == 0
}

/// Translates one table entry. `need_action` is false for DELETE (the key suffices).
pub fn translate(
    index: &P4InfoIndex,
    e: &p4::TableEntry,
    need_action: bool,
) -> Result<Translated, TranslateError> {
    translate_cow(index, Cow::Borrowed(e), need_action)
}

/// [`translate`] of an entry the caller gives away (a Write's): its canonical form is
/// made in place, not copied.
pub fn translate_owned(
    index: &P4InfoIndex,
    e: p4::TableEntry,
    need_action: bool,
) -> Result<Translated, TranslateError> {
    translate_cow(index, Cow::Owned(e), need_action)
}

fn translate_cow(
    index: &P4InfoIndex,
    entry: Cow<'_, p4::TableEntry>,
    need_action: bool,
) -> Result<Translated, TranslateError> {
    let e: &p4::TableEntry = &entry;
    let table = index
        .table_by_id(e.table_id)
        .ok_or(TranslateError::UnknownTable(e.table_id))?;
    let tname = || table.name.clone();
    if e.is_default_action {
        return Err(TranslateError::ConstDefault { table: tname() });
    }
    let stage = stage_of(table).ok_or_else(|| TranslateError::NotAStage(tname()))?;

    let mut key = Vec::with_capacity(e.r#match.len());
    let mut seen: Vec<u32> = Vec::with_capacity(e.r#match.len());
    let mut lpm_len = 0;
    for m in &e.r#match {
        let f = table
            .field_by_id(m.field_id)
            .ok_or_else(|| TranslateError::UnknownField {
                table: tname(),
                field_id: m.field_id,
            })?;
        let fname = || f.name.clone();
        if seen.contains(&f.id) {
            return Err(TranslateError::DuplicateField {
                table: tname(),
                field: fname(),
            });
        }
        seen.push(f.id);
        let kind = field_of(&f.name).ok_or_else(|| TranslateError::FieldNotInEngine {
            table: tname(),
            field: fname(),
        })?;
        let w = f.bitwidth;
        let too_wide = || TranslateError::TooWide {
            table: tname(),
            field: fname(),
            bitwidth: w,
        };
        let value_of = |b: &[u8]| decode(b).filter(|v| fits(*v, w)).ok_or_else(too_wide);
        let wrong = || TranslateError::WrongMatchKind {
            table: tname(),
            field: fname(),
            want: f.kind,
        };
        use field_match::FieldMatchType as T;
        let (value, mask) = match (&m.field_match_type, f.kind) {
            (Some(T::Exact(x)), MatchKind::Exact) => (value_of(&x.value)?, prefix_mask(w, w)),
            (Some(T::Optional(x)), MatchKind::Optional) => (value_of(&x.value)?, prefix_mask(w, w)),
            (Some(T::Ternary(x)), MatchKind::Ternary) => {
                let mask = value_of(&x.mask)?;
                if mask == 0 {
                    return Err(TranslateError::DontCareGiven {
                        table: tname(),
                        field: fname(),
                    });
                }
                (value_of(&x.value)?, mask)
            }
            (Some(T::Lpm(x)), MatchKind::Lpm) => {
                if x.prefix_len <= 0 || x.prefix_len as u32 > w {
                    return Err(TranslateError::BadPrefixLen {
                        table: tname(),
                        field: fname(),
                        prefix_len: x.prefix_len,
                        bitwidth: w,
                    });
                }
                lpm_len = x.prefix_len as u32;
                (value_of(&x.value)?, prefix_mask(lpm_len, w))
            }
            (Some(T::Range(_)) | None, _) | (_, MatchKind::Range) => {
                return Err(TranslateError::UnsupportedMatch {
                    table: tname(),
                    field: fname(),
                })
            }
            _ => return Err(wrong()),
        };
        if value & !mask != 0 {
            return Err(TranslateError::ValueOutsideMask {
                table: tname(),
                field: fname(),
            });
        }
        // The engine's fields may be wider than the program's (logical keys are 32 bits
        // there): a full mask over the P4 width is an exact match in the engine.
        let engine_mask = if mask == prefix_mask(w, w) {
            full_mask(kind)
        } else {
            mask as u64
        };
        key.push(FieldMatch::ternary(kind, value as u64, engine_mask));
    }
    for f in &table.fields {
        if f.kind == MatchKind::Exact && !seen.contains(&f.id) {
            return Err(TranslateError::MissingExact {
                table: tname(),
                field: f.name.clone(),
            });
        }
    }
    let needs_priority = table.needs_priority();
    if (needs_priority && e.priority <= 0) || (!needs_priority && e.priority != 0) {
        return Err(TranslateError::BadPriority {
            table: tname(),
            priority: e.priority,
        });
    }
    // Without a priority, a table with an LPM key picks the longest prefix: that is the
    // engine's priority order.
    let priority = if needs_priority {
        e.priority as u32
    } else {
        lpm_len
    };

    let actions = match &e.action {
        None if !need_action => Vec::new(),
        None => return Err(TranslateError::NoAction { table: tname() }),
        Some(p4::TableAction {
            r#type: Some(table_action::Type::Action(a)),
        }) => {
            let actions = ir_of(index, table, a)?;
            if need_action {
                actions
            } else {
                Vec::new()
            }
        }
        Some(_) => return Err(TranslateError::IndirectAction { table: tname() }),
    };
    let mut canonical = normalize(entry.into_owned());
    canonical.idle_timeout_ns = 0;
    Ok(Translated {
        stage,
        entry: Entry::new(priority, key, actions),
        canonical,
    })
}

/// The IR actions of a P4 action call, every parameter checked against the P4Info.
fn ir_of(
    index: &P4InfoIndex,
    table: &TableInfo,
    a: &p4::Action,
) -> Result<Vec<wyvern_pipeline::Action>, TranslateError> {
    if !table.allows_action(a.action_id) {
        return Err(TranslateError::ActionNotInTable {
            table: table.name.clone(),
            action_id: a.action_id,
        });
    }
    let info = index
        .action_by_id(a.action_id)
        .ok_or_else(|| TranslateError::ActionNotInTable {
            table: table.name.clone(),
            action_id: a.action_id,
        })?;
    let mut args: Vec<(&str, u128)> = Vec::with_capacity(a.params.len());
    for p in &a.params {
        let bad = || TranslateError::BadParam {
            action: info.name.clone(),
            param_id: p.param_id,
        };
        let pi = info
            .params
            .iter()
            .find(|x| x.id == p.param_id)
            .ok_or_else(bad)?;
        if args.iter().any(|(n, _)| *n == pi.name) {
            return Err(bad());
        }
        let v = decode(&p.value)
            .filter(|v| fits(*v, pi.bitwidth))
            .ok_or_else(bad)?;
        args.push((pi.name.as_str(), v));
    }
    if let Some(missing) = info
        .params
        .iter()
        .find(|p| !args.iter().any(|(n, _)| *n == p.name))
    {
        return Err(TranslateError::MissingParam {
            action: info.name.clone(),
            param: missing.name.clone(),
        });
    }
    let short = info
        .name
        .strip_prefix(CONTROL)
        .and_then(|n| n.strip_prefix('.'))
        .unwrap_or(&info.name);
    ir_actions(short, |n| {
        args.iter().find(|(a, _)| *a == n).map(|(_, v)| *v)
    })
    .ok_or_else(|| TranslateError::NoEngineForm {
        action: info.name.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_engine_field_has_a_p4_key_name_and_back() {
        for f in FIELDS {
            assert_eq!(field_of(key_name(f)), Some(f));
        }
        assert_eq!(field_of("hdr.nothing"), None);
    }

    #[test]
    fn values_must_fit_their_width() {
        assert!(fits(0x1ff, 9));
        assert!(!fits(0x200, 9));
        assert!(fits(u128::MAX, 128));
    }
}
