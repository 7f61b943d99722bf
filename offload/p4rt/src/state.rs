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
/// serialized (so it orders and hashes without a hand-written comparison). The bytes are
/// the protobuf encoding of a `TableEntry` holding only those fields, so an update's
/// entity is this key followed by its encoded action.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryKey(Vec<u8>);

impl EntryKey {
    /// The key-only `TableEntry` these bytes encode (what a DELETE needs).
    pub fn to_entry(&self) -> p4::TableEntry {
        p4::TableEntry::decode(self.0.as_slice()).unwrap_or_default()
    }
}

/// The canonical form of an entry as written or read: matches sorted by field id,
/// bytestrings canonical, read-only and direct-resource fields cleared. Targets may return
/// padded values or another field order; this makes both sides compare byte for byte.
pub fn normalize(mut e: p4::TableEntry) -> p4::TableEntry {
    for m in &mut e.r#match {
        match &mut m.field_match_type {
            Some(field_match::FieldMatchType::Exact(x)) => canonicalize_in_place(&mut x.value),
            Some(field_match::FieldMatchType::Ternary(x)) => {
                canonicalize_in_place(&mut x.value);
                canonicalize_in_place(&mut x.mask);
            }
            Some(field_match::FieldMatchType::Lpm(x)) => canonicalize_in_place(&mut x.value),
            Some(field_match::FieldMatchType::Range(x)) => {
                canonicalize_in_place(&mut x.low);
                canonicalize_in_place(&mut x.high);
            }
            Some(field_match::FieldMatchType::Optional(x)) => canonicalize_in_place(&mut x.value),
            _ => {}
        }
    }
    if !e.r#match.is_sorted_by_key(|m| m.field_id) {
        e.r#match.sort_by_key(|m| m.field_id);
    }
    if let Some(p4::TableAction {
        r#type: Some(table_action::Type::Action(a)),
    }) = &mut e.action
    {
        for p in &mut a.params {
            canonicalize_in_place(&mut p.value);
        }
        if !a.params.is_sorted_by_key(|p| p.param_id) {
            a.params.sort_by_key(|p| p.param_id);
        }
    }
    e.counter_data = None;
    e.meter_config = None;
    e.meter_counter_data = None;
    e.time_since_last_hit = None;
    e.is_const = false;
    e
}

/// [`canonicalize`] without a new allocation when the value is canonical already (the
/// usual case: the back end writes canonical values and targets return them).
fn canonicalize_in_place(v: &mut Vec<u8>) {
    match v.iter().position(|b| *b != 0) {
        Some(0) => {}
        Some(i) => {
            v.drain(..i);
        }
        None if v.len() == 1 => {}
        None => *v = canonicalize(v),
    }
}

/// The key of a normalized entry, encoded straight from its fields (no copy of them).
pub fn entry_key(e: &p4::TableEntry) -> EntryKey {
    use prost::encoding as enc;
    let mut b =
        Vec::with_capacity(8 + e.r#match.iter().map(|m| m.encoded_len() + 2).sum::<usize>());
    if e.table_id != 0 {
        enc::uint32::encode(1, &e.table_id, &mut b);
    }
    for m in &e.r#match {
        enc::message::encode(2, m, &mut b);
    }
    if e.priority != 0 {
        enc::int32::encode(4, &e.priority, &mut b);
    }
    if e.is_default_action {
        enc::bool::encode(8, &e.is_default_action, &mut b);
    }
    EntryKey(b)
}

/// The encoded action of a normalized entry (empty when it has none).
fn action_bytes(e: &p4::TableEntry) -> Vec<u8> {
    e.action
        .as_ref()
        .map(Message::encode_to_vec)
        .unwrap_or_default()
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

/// A desired entry, encoded once: its action's bytes (the key is the map's key).
#[derive(Debug, Clone)]
struct Want {
    action: Vec<u8>,
    flow: Flow,
}

/// What should be on the target, with the IR object each entry came from.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    entries: BTreeMap<EntryKey, Want>,
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
                                other: o.get().flow.to_string(),
                            });
                        }
                        std::collections::btree_map::Entry::Vacant(v) => {
                            v.insert(Want {
                                action: action_bytes(&e),
                                flow: f.clone(),
                            });
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

/// What is on the target, as last read plus the updates it accepted since: each entry's
/// encoded action by key.
#[derive(Debug, Clone, Default)]
pub struct Installed {
    entries: BTreeMap<EntryKey, Vec<u8>>,
    groups: BTreeMap<u32, p4::MulticastGroupEntry>,
}

impl Installed {
    /// From the entities a Read returned (anything but table entries and multicast groups
    /// is ignored).
    pub fn from_entities(entities: impl IntoIterator<Item = p4::Entity>) -> Self {
        let mut s = Installed::default();
        for e in entities {
            match e.entity {
                Some(p4::entity::Entity::TableEntry(t)) => {
                    // Const entries and default actions belong to the program, not to us.
                    if t.is_const || t.is_default_action {
                        continue;
                    }
                    let t = normalize(t);
                    s.entries.insert(entry_key(&t), action_bytes(&t));
                }
                Some(p4::entity::Entity::PacketReplicationEngineEntry(
                    p4::PacketReplicationEngineEntry {
                        r#type:
                            Some(p4::packet_replication_engine_entry::Type::MulticastGroupEntry(g)),
                    },
                )) => {
                    s.groups.insert(g.multicast_group_id, normalize_group(g));
                }
                _ => {}
            }
        }
        s
    }

    /// Records an update the target accepted.
    pub fn apply(&mut self, p: &Planned, desired: &Desired) {
        let delete = p.kind == update::Type::Delete;
        match &p.item {
            Item::Entry(k) if delete => {
                self.entries.remove(k);
            }
            Item::Entry(k) => {
                if let Some(w) = desired.entries.get(k) {
                    self.entries.insert(k.clone(), w.action.clone());
                }
            }
            Item::Group(id) if delete => {
                self.groups.remove(id);
            }
            Item::Group(id) => {
                if let Some((g, _)) = desired.groups.get(id) {
                    self.groups.insert(*id, g.clone());
                }
            }
        }
    }

    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    pub fn group_count(&self) -> usize {
        self.groups.len()
    }
}

/// What an update writes: a table entry (by key) or a multicast group (by id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Entry(EntryKey),
    Group(u32),
}

/// One update to write. Its bytes and its origin are looked up in the desired and
/// installed state when needed, so planning copies nothing but keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub kind: update::Type,
    pub item: Item,
}

/// `WriteRequest.updates` (field 4) and the fields inside an update, for encoding by hand.
const WRITE_UPDATES: u32 = 4;
const UPDATE_TYPE: u32 = 1;
const UPDATE_ENTITY: u32 = 2;
const ENTITY_TABLE_ENTRY: u32 = 2;
const TABLE_ENTRY_ACTION: u32 = 3;

impl Planned {
    /// Appends this update to `buf` as one `updates` record of a `WriteRequest`: the
    /// entry's key and action bytes as they are stored, no message built.
    pub fn encode_update(&self, desired: &Desired, installed: &Installed, buf: &mut Vec<u8>) {
        use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
        let delimited = |len: usize| 1 + encoded_len_varint(len as u64) + len;
        match &self.item {
            Item::Entry(k) => {
                // A DELETE needs only the key.
                let action: &[u8] = match self.kind {
                    update::Type::Delete => &[],
                    _ => desired.entries.get(k).map_or(&[], |w| w.action.as_slice()),
                };
                let entry_len = k.0.len()
                    + if action.is_empty() {
                        0
                    } else {
                        delimited(action.len())
                    };
                let entity_len = delimited(entry_len);
                let update_len = 1 + encoded_len_varint(self.kind as u64) + delimited(entity_len);
                encode_key(WRITE_UPDATES, WireType::LengthDelimited, buf);
                encode_varint(update_len as u64, buf);
                encode_key(UPDATE_TYPE, WireType::Varint, buf);
                encode_varint(self.kind as u64, buf);
                encode_key(UPDATE_ENTITY, WireType::LengthDelimited, buf);
                encode_varint(entity_len as u64, buf);
                encode_key(ENTITY_TABLE_ENTRY, WireType::LengthDelimited, buf);
                encode_varint(entry_len as u64, buf);
                buf.extend_from_slice(&k.0);
                if !action.is_empty() {
                    encode_key(TABLE_ENTRY_ACTION, WireType::LengthDelimited, buf);
                    encode_varint(action.len() as u64, buf);
                    buf.extend_from_slice(action);
                }
            }
            Item::Group(_) => {
                let u = p4::Update {
                    r#type: self.kind as i32,
                    entity: Some(self.entity(desired, installed)),
                };
                prost::encoding::message::encode(WRITE_UPDATES, &u, buf);
            }
        }
    }

    /// The entity this update writes, as a message (for reports; writing uses
    /// [`Planned::encode_update`]).
    pub fn entity(&self, desired: &Desired, installed: &Installed) -> p4::Entity {
        match &self.item {
            Item::Entry(k) => {
                let mut e = k.to_entry();
                if self.kind != update::Type::Delete {
                    e.action = desired
                        .entries
                        .get(k)
                        .and_then(|w| p4::TableAction::decode(w.action.as_slice()).ok());
                }
                table_entity(e)
            }
            Item::Group(id) => {
                let g = desired
                    .groups
                    .get(id)
                    .map(|(g, _)| g.clone())
                    .or_else(|| installed.groups.get(id).cloned())
                    .unwrap_or_default();
                group_entity(g)
            }
        }
    }

    /// What the update is for: the desired flow or group, or the stale entity it deletes.
    pub fn origin(&self, desired: &Desired, installed: &Installed) -> Origin {
        let desired_origin = match &self.item {
            Item::Entry(k) => desired.entries.get(k).map(|w| Origin::Flow(w.flow.clone())),
            Item::Group(id) => desired
                .groups
                .get(id)
                .map(|(_, g)| Origin::FloodGroup(g.clone())),
        };
        match desired_origin {
            Some(o) if self.kind != update::Type::Delete => o,
            _ => Origin::Stale(Box::new(self.entity(desired, installed))),
        }
    }
}

/// The updates that turn `installed` into `desired`, in a safe order: groups a flood may
/// use first, then entry deletes (freeing table space), modifies, inserts, and last the
/// groups nothing uses any more.
pub fn diff(desired: &Desired, installed: &Installed) -> Vec<Planned> {
    use update::Type::{Delete, Insert, Modify};
    let planned = |kind, item| Planned { kind, item };
    let mut out = Vec::new();
    for (id, (g, _)) in &desired.groups {
        let kind = match installed.groups.get(id) {
            None => Insert,
            Some(have) if have != g => Modify,
            Some(_) => continue,
        };
        out.push(planned(kind, Item::Group(*id)));
    }
    for k in installed.entries.keys() {
        if !desired.entries.contains_key(k) {
            out.push(planned(Delete, Item::Entry(k.clone())));
        }
    }
    let mut inserts = Vec::new();
    for (k, want) in &desired.entries {
        match installed.entries.get(k) {
            None => inserts.push(planned(Insert, Item::Entry(k.clone()))),
            Some(have) if *have != want.action => out.push(planned(Modify, Item::Entry(k.clone()))),
            Some(_) => {}
        }
    }
    out.extend(inserts);
    for id in installed.groups.keys() {
        if !desired.groups.contains_key(id) {
            out.push(planned(Delete, Item::Group(*id)));
        }
    }
    out
}
