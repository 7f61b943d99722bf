//! A reconnecting monitor of the `Interface` table.
//!
//! Consistency: after every (re)connect the monitor sends a full `Snapshot`, then
//! incremental `Changed` batches in server order. A consumer that replaces its state on
//! `Snapshot` and applies `Changed` holds exactly the server's table, whatever happened while
//! the connection was down (`Disconnected` tells it the view may be stale until the next
//! snapshot).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::client::{Client, ClientError, Remote};
use crate::ops::{parse_opt_int, parse_opt_string, parse_string_map, DatumError};
use crate::vswitch::{InterfaceType, DB};

const MONITOR_ID: &str = "wyvern-interfaces";
const COLUMNS: [&str; 6] = [
    "name",
    "type",
    "ofport",
    "external_ids",
    "admin_state",
    "link_state",
];

/// One row of the `Interface` table, as far as port binding cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceState {
    pub uuid: Uuid,
    pub name: String,
    pub iface_type: InterfaceType,
    /// `None` until ovs-vswitchd assigns one (the column is `[]`, or `-1` on failure).
    pub ofport: Option<u32>,
    pub external_ids: BTreeMap<String, String>,
    /// `admin_state == "up"`; `None` while unknown.
    pub admin_up: Option<bool>,
    /// `link_state == "up"`; `None` while unknown.
    pub link_up: Option<bool>,
}

impl InterfaceState {
    /// The logical port this interface carries (`external_ids:iface-id`).
    pub fn iface_id(&self) -> Option<&str> {
        self.external_ids.get("iface-id").map(String::as_str)
    }

    /// Decodes a full row (the `new` side of a `monitor` v1 update).
    pub fn from_row(uuid: Uuid, row: &Value) -> Result<Self, DatumError> {
        // A column absent from the row reads as the empty set.
        let empty = json!(["set", []]);
        let c = |name: &str| row.get(name).unwrap_or(&empty);
        let state = |column: &'static str| -> Result<Option<bool>, DatumError> {
            Ok(parse_opt_string(column, c(column))?.map(|s| s == "up"))
        };
        let ofport = parse_opt_int("ofport", c("ofport"))?
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| *p > 0);
        Ok(Self {
            uuid,
            name: parse_opt_string("name", c("name"))?.unwrap_or_default(),
            iface_type: InterfaceType::from_db(
                &parse_opt_string("type", c("type"))?.unwrap_or_default(),
            ),
            ofport,
            external_ids: match row.get("external_ids") {
                None => BTreeMap::new(),
                Some(v) => parse_string_map("external_ids", v)?,
            },
            admin_up: state("admin_state")?,
            link_up: state("link_state")?,
        })
    }
}

/// A change to one interface row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterfaceChange {
    /// Inserted or modified: the full new row.
    Upsert(InterfaceState),
    Removed(Uuid),
}

/// What the monitor reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterfaceEvent {
    /// The whole table, after each (re)connect.
    Snapshot(Vec<InterfaceState>),
    /// Changes since the previous event, in server order.
    Changed(Vec<InterfaceChange>),
    /// The connection was lost; a `Snapshot` follows when it is back.
    Disconnected,
}

/// Reconnect pacing.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(2),
        }
    }
}

/// Handle to the monitor task; dropping it stops the task.
#[derive(Debug)]
pub struct InterfaceMonitor {
    events: mpsc::Receiver<InterfaceEvent>,
    task: JoinHandle<()>,
}

impl InterfaceMonitor {
    /// Starts monitoring `remote`'s Interface table, reconnecting with `backoff`.
    pub fn spawn(remote: Remote, backoff: Backoff) -> Self {
        let (tx, rx) = mpsc::channel(256);
        let task = tokio::spawn(run(remote, backoff, tx));
        Self { events: rx, task }
    }

    /// The next event; `None` only if the task ended (it does not, short of a panic).
    pub async fn next(&mut self) -> Option<InterfaceEvent> {
        self.events.recv().await
    }
}

impl Drop for InterfaceMonitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts monitoring with the default backoff.
pub fn monitor_interfaces(remote: Remote) -> InterfaceMonitor {
    InterfaceMonitor::spawn(remote, Backoff::default())
}

/// Why one monitored session ended.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("failed to start the Interface monitor")]
    Client(#[from] ClientError),
    #[error("failed to decode an Interface update")]
    Datum(#[from] DatumError),
    #[error("failed to deliver events: consumer gone")]
    ConsumerGone,
}

async fn run(remote: Remote, backoff: Backoff, tx: mpsc::Sender<InterfaceEvent>) {
    let mut delay = backoff.initial;
    loop {
        let mut synced = false;
        match session(&remote, &tx, &mut synced).await {
            Err(SessionError::ConsumerGone) => return,
            Err(e) => tracing::debug!(%remote, error = %e, "OVSDB interface monitor session ended"),
            Ok(()) => tracing::debug!(%remote, "OVSDB interface monitor connection closed"),
        }
        if synced {
            // Report the loss once per outage (the consumer saw a snapshot), and retry fast.
            delay = backoff.initial;
            if tx.send(InterfaceEvent::Disconnected).await.is_err() {
                return;
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(backoff.max);
    }
}

/// One connection: snapshot, then updates until the connection ends.
async fn session(
    remote: &Remote,
    tx: &mpsc::Sender<InterfaceEvent>,
    synced: &mut bool,
) -> Result<(), SessionError> {
    let (client, mut notes) = Client::connect(remote).await?;
    let requests = json!({ "Interface": { "columns": COLUMNS } });
    let initial_updates = client.monitor(DB, MONITOR_ID, requests).await?;
    let snapshot = decode_updates(&initial_updates)?
        .into_iter()
        .filter_map(|c| match c {
            InterfaceChange::Upsert(s) => Some(s),
            InterfaceChange::Removed(_) => None,
        })
        .collect();
    tx.send(InterfaceEvent::Snapshot(snapshot))
        .await
        .map_err(|_| SessionError::ConsumerGone)?;
    *synced = true;
    while let Some(note) = notes.recv().await {
        if note.method != "update" {
            continue;
        }
        let Some(updates) = note.params.get(1) else {
            continue;
        };
        let changes = decode_updates(updates)?;
        if !changes.is_empty() {
            tx.send(InterfaceEvent::Changed(changes))
                .await
                .map_err(|_| SessionError::ConsumerGone)?;
        }
    }
    drop(client);
    Ok(())
}

/// Decodes `{"Interface": {uuid: {"old": .., "new": ..}}}` into changes.
pub fn decode_updates(updates: &Value) -> Result<Vec<InterfaceChange>, DatumError> {
    let mut out = Vec::new();
    let Some(rows) = updates.get("Interface").and_then(Value::as_object) else {
        return Ok(out);
    };
    for (uuid, update) in rows {
        let uuid = Uuid::parse_str(uuid).map_err(|_| DatumError::Shape {
            column: "_uuid",
            expected: "a uuid",
            got: uuid.clone(),
        })?;
        match update.get("new") {
            Some(new) if !new.is_null() => out.push(InterfaceChange::Upsert(
                InterfaceState::from_row(uuid, new)?,
            )),
            _ => out.push(InterfaceChange::Removed(uuid)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_insert_modify_delete() {
        let u1 = Uuid::new_v4();
        let u2 = Uuid::new_v4();
        let updates = json!({"Interface": {
            u1.to_string(): {"new": {"name": "p1", "type": "dummy", "ofport": ["set", []],
                "external_ids": ["map", [["iface-id", "lp1"]]],
                "admin_state": "up", "link_state": ["set", []]}},
            u2.to_string(): {"old": {"name": "p2"}},
        }});
        let mut changes = decode_updates(&updates).expect("valid");
        changes.sort_by_key(|c| matches!(c, InterfaceChange::Removed(_)));
        let InterfaceChange::Upsert(p1) = &changes[0] else {
            panic!("expected upsert first");
        };
        assert_eq!(p1.ofport, None);
        assert_eq!(p1.iface_id(), Some("lp1"));
        assert_eq!(p1.iface_type, InterfaceType::Dummy);
        assert_eq!(p1.admin_up, Some(true));
        assert_eq!(p1.link_up, None);
        assert_eq!(changes[1], InterfaceChange::Removed(u2));
        let bad = json!({"Interface": {u1.to_string(): {"new": {"ofport": "x"}}}});
        assert!(decode_updates(&bad).is_err());
        let neg = json!({"Interface": {u1.to_string(): {"new": {"ofport": -1}}}});
        let decoded = decode_updates(&neg).expect("valid");
        let [InterfaceChange::Upsert(s)] = decoded.as_slice() else {
            panic!("one upsert");
        };
        assert_eq!(s.ofport, None, "-1 means no ofport");
    }
}
