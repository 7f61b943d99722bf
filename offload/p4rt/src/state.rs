//! Desired versus installed, as ofctrl keeps them: entries are identified by their key
//! (table, matches, priority), compared by their action, and only the difference is
//! written. Nothing is ever wiped to converge.

use std::collections::BTreeMap;

use p4runtime_proto::p4::v1::{self as p4, field_match, replica, table_action, update};
use prost::Message;
use wyvern_pipeline::ir::{FloodGroup, Flow};

use crate::encode::canonicalize;
use crate::mapping::{group_entity, table_entity, MapError, Mapper};

/// What an update is for, so a failure is reported against the IR object behind it.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    Flow(Flow),
    FloodGroup(FloodGroup),
    /// An entry on the target that nothing desires any more (its deletion).
    Stale(Box<p4::Entity>),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Flow(flow) => write!(f, "flow [{flow}]"),
            Origin::FloodGroup(g) => {
                write!(f, "flood group of network {} {:?}", g.network.0, g.ports)
            }
            Origin::Stale(e) => write!(f, "stale entity {e:?}"),
        }
    }
}

/// The identity of a table entry: its table, matches and priority in canonical form,
/// serialized (so it orders and hashes without a hand-written comparison).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryKey(Vec<u8>);

/// The canonical form of an entry as written or read: matches sorted by field id,
/// bytestrings canonical, read-only and direct-resource fields cleared. Targets may return
/// padded values or another field order; this makes both sides compare byte for byte.
pub fn normalize(mut e: p4::TableEntry) -> p4::TableEntry {
    for m in &mut e.r#match {
        match &mut m.field_match_type {
            Some(field_match::FieldMatchType::Exact(x)) => x.value = canonicalize(&x.value),
            Some(field_match::FieldMatchType::Ternary(x)) => {
                x.value = canonicalize(&x.value);
                x.mask = canonicalize(&x.mask);
            }
            Some(field_match::FieldMatchType::Lpm(x)) => x.value = canonicalize(&x.value),
            Some(field_match::FieldMatchType::Range(x)) => {
                x.low = canonicalize(&x.low);
                x.high = canonicalize(&x.high);
            }
            Some(field_match::FieldMatchType::Optional(x)) => x.value = canonicalize(&x.value),
            _ => {}
        }
    }
    e.r#match.sort_by_key(|m| m.field_id);
    if let Some(p4::TableAction {
        r#type: Some(table_action::Type::Action(a)),
    }) = &mut e.action
    {
        for p in &mut a.params {
            p.value = canonicalize(&p.value);
        }
        a.params.sort_by_key(|p| p.param_id);
    }
    e.counter_data = None;
    e.meter_config = None;
    e.meter_counter_data = None;
    e.time_since_last_hit = None;
    e.is_const = false;
    e
}

/// The key of a normalized entry.
pub fn entry_key(e: &p4::TableEntry) -> EntryKey {
    let k = p4::TableEntry {
        table_id: e.table_id,
        r#match: e.r#match.clone(),
        priority: e.priority,
        is_default_action: e.is_default_action,
        ..Default::default()
    };
    EntryKey(k.encode_to_vec())
}

/// A multicast group with its replicas in a stable order.
pub fn normalize_group(mut g: p4::MulticastGroupEntry) -> p4::MulticastGroupEntry {
    g.replicas.sort_by_key(|r| {
        let port = match &r.port_kind {
            #[allow(deprecated)]
            Some(replica::PortKind::EgressPort(p)) => canonicalize(&p.to_be_bytes()),
            Some(replica::PortKind::Port(b)) => canonicalize(b),
            None => Vec::new(),
        };
        (port, r.instance)
    });
    g
}

/// What should be on the target, with the IR object each entry came from.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    entries: BTreeMap<EntryKey, (p4::TableEntry, Flow)>,
    groups: BTreeMap<u32, (p4::MulticastGroupEntry, FloodGroup)>,
}

impl Desired {
    /// Maps every flow and group; returns every mapping error (the rest is still desired,
    /// so one bad flow does not stop the others).
    pub fn build(mapper: &Mapper, flows: &[Flow], groups: &[FloodGroup]) -> (Self, Vec<MapError>) {
        let mut d = Desired::default();
        let mut errors = Vec::new();
        for f in flows {
            match mapper.table_entry(f) {
                Ok(e) => {
                    let e = normalize(e);
                    // Two flows on one key would overwrite each other silently; the first
                    // stays and the second is an error (the IR should never produce it).
                    match d.entries.entry(entry_key(&e)) {
                        std::collections::btree_map::Entry::Occupied(o) => {
                            errors.push(MapError::DuplicateEntry {
                                flow: f.to_string(),
                                other: o.get().1.to_string(),
                            });
                        }
                        std::collections::btree_map::Entry::Vacant(v) => {
                            v.insert((e, f.clone()));
                        }
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        for g in groups {
            match mapper.multicast_group(g) {
                Ok(m) => {
                    d.groups
                        .insert(m.multicast_group_id, (normalize_group(m), g.clone()));
                }
                Err(e) => errors.push(e),
            }
        }
        (d, errors)
    }

    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    pub fn group_count(&self) -> usize {
        self.groups.len()
    }
}

/// What is on the target, as last read plus the updates it accepted since.
#[derive(Debug, Clone, Default)]
pub struct Installed {
    entries: BTreeMap<EntryKey, p4::TableEntry>,
    groups: BTreeMap<u32, p4::MulticastGroupEntry>,
}

impl Installed {
    /// From the entities a Read returned (anything but table entries and multicast groups
    /// is ignored).
    pub fn from_entities(entities: impl IntoIterator<Item = p4::Entity>) -> Self {
        let mut s = Installed::default();
        for e in entities {
            s.insert(e);
        }
        s
    }

    fn insert(&mut self, e: p4::Entity) {
        match e.entity {
            Some(p4::entity::Entity::TableEntry(t)) => {
                // Const entries and default actions belong to the program, not to us.
                if t.is_const || t.is_default_action {
                    return;
                }
                let t = normalize(t);
                self.entries.insert(entry_key(&t), t);
            }
            Some(p4::entity::Entity::PacketReplicationEngineEntry(
                p4::PacketReplicationEngineEntry {
                    r#type: Some(p4::packet_replication_engine_entry::Type::MulticastGroupEntry(g)),
                },
            )) => {
                self.groups.insert(g.multicast_group_id, normalize_group(g));
            }
            _ => {}
        }
    }

    /// Records an update the target accepted.
    pub fn apply(&mut self, u: &p4::Update) {
        let Some(e) = u.entity.clone() else { return };
        if u.r#type == update::Type::Delete as i32 {
            match e.entity {
                Some(p4::entity::Entity::TableEntry(t)) => {
                    self.entries.remove(&entry_key(&normalize(t)));
                }
                Some(p4::entity::Entity::PacketReplicationEngineEntry(
                    p4::PacketReplicationEngineEntry {
                        r#type:
                            Some(p4::packet_replication_engine_entry::Type::MulticastGroupEntry(g)),
                    },
                )) => {
                    self.groups.remove(&g.multicast_group_id);
                }
                _ => {}
            }
        } else {
            self.insert(e);
        }
    }

    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    pub fn group_count(&self) -> usize {
        self.groups.len()
    }
}

/// One update to write, and what it is for.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub update: p4::Update,
    pub origin: Origin,
}

fn planned(kind: update::Type, entity: p4::Entity, origin: Origin) -> Planned {
    Planned {
        update: p4::Update {
            r#type: kind as i32,
            entity: Some(entity),
        },
        origin,
    }
}

/// The updates that turn `installed` into `desired`, in a safe order: groups a flood may
/// use first, then entry deletes (freeing table space), modifies, inserts, and last the
/// groups nothing uses any more.
pub fn diff(desired: &Desired, installed: &Installed) -> Vec<Planned> {
    use update::Type::{Delete, Insert, Modify};
    let mut out = Vec::new();
    for (id, (g, origin)) in &desired.groups {
        let kind = match installed.groups.get(id) {
            None => Insert,
            Some(have) if have != g => Modify,
            Some(_) => continue,
        };
        out.push(planned(
            kind,
            group_entity(g.clone()),
            Origin::FloodGroup(origin.clone()),
        ));
    }
    for (k, have) in &installed.entries {
        if !desired.entries.contains_key(k) {
            let e = table_entity(have.clone());
            out.push(planned(Delete, e.clone(), Origin::Stale(Box::new(e))));
        }
    }
    let mut inserts = Vec::new();
    for (k, (want, flow)) in &desired.entries {
        match installed.entries.get(k) {
            None => inserts.push(planned(
                Insert,
                table_entity(want.clone()),
                Origin::Flow(flow.clone()),
            )),
            Some(have) if have.action != want.action => out.push(planned(
                Modify,
                table_entity(want.clone()),
                Origin::Flow(flow.clone()),
            )),
            Some(_) => {}
        }
    }
    out.extend(inserts);
    for (id, have) in &installed.groups {
        if !desired.groups.contains_key(id) {
            let e = group_entity(have.clone());
            out.push(planned(Delete, e.clone(), Origin::Stale(Box::new(e))));
        }
    }
    out
}
