//! Turns store events into model changes, using the mirrored topology for the old side of
//! each change (the compiler needs both to know which owners a change touches).

use wyvern_model::{parse_key, Change, ChangeOp, Kind, Object, Topology};
use wyvern_store::{Event, EventKind, KeyValue};

/// Prefix of every logical object in the store.
pub const MODEL_PREFIX: &str = "/wyvern/v1/";

/// Why an event could not be mirrored. The event is skipped (and counted); the rest goes on.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("failed to parse store key {0:?} as a model key")]
    Key(String),
    #[error("failed to decode the value of {key}: {source}")]
    Value {
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The object stored at `kv`, if `kv` is a model object.
pub fn decode(kv: &KeyValue) -> Result<Option<(Kind, Object)>, MirrorError> {
    let Some((kind, _)) = parse_key(&kv.key) else {
        // Other things share the prefix (allocation locks and the like): not model objects.
        return Ok(None);
    };
    Object::from_json(kind, &kv.value)
        .map(|o| Some((kind, o)))
        .map_err(|source| MirrorError::Value {
            key: kv.key.clone(),
            source,
        })
}

fn current(topo: &Topology, kind: Kind, id: &uuid::Uuid) -> Option<Object> {
    match kind {
        Kind::Network => topo.get_network(id).cloned().map(Object::Network),
        Kind::Subnet => topo.get_subnet(id).cloned().map(Object::Subnet),
        Kind::Port => topo.get_port(id).cloned().map(Object::Port),
        Kind::Router => topo.get_router(id).cloned().map(Object::Router),
    }
}

/// Builds one change from a batch of events, in order. Each op's `old` is the state after
/// the earlier events of the batch, so a batch that creates and updates one object works.
pub fn change_from_events(
    topo: &Topology,
    events: &[Event],
    errors: &mut Vec<MirrorError>,
) -> Change {
    let mut change = Change::default();
    for ev in events {
        let Some((kind, id)) = parse_key(&ev.kv.key) else {
            continue;
        };
        let earlier = change
            .ops
            .iter()
            .rev()
            .find(|op| op.kind == kind && op.id == id)
            .map(|op| op.new.clone());
        let old = match earlier {
            Some(state) => state,
            None => current(topo, kind, &id),
        };
        let new = match ev.kind {
            EventKind::Delete => None,
            EventKind::Put => match decode(&ev.kv) {
                Ok(Some((_, obj))) => Some(obj),
                Ok(None) => continue,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            },
        };
        if old.is_none() && new.is_none() {
            continue;
        }
        change.ops.push(ChangeOp { kind, id, old, new });
    }
    change
}
