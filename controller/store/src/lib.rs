//! Revisioned key-value store for the logical topology: the `Store` trait, its embedded
//! redb implementation and a conformance suite every implementation must pass.
//!
//! The model follows etcd's v3 data model on purpose, so that the embedded store and the
//! etcd store are interchangeable: one global revision counter bumped by every committed
//! transaction, per-key `create_revision`/`mod_revision`/`version`, transactions guarded by
//! comparisons on those revisions (compare-and-swap), and watches that replay ordered
//! events from any revision still in the history.

use std::fmt;

use async_trait::async_trait;
/// The value type of keys, re-exported so that `Store` wrappers need no `bytes` dependency.
pub use bytes::Bytes;
use futures::stream::BoxStream;

pub mod conformance;
pub mod redb_store;

pub use redb_store::{RedbOptions, RedbStore};

/// A point in the store's history. Every committed transaction that changes something gets
/// the next revision; revision 0 means "nothing yet".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision(pub u64);

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One stored key with its value and the revisions that describe its history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// Revision of the transaction that created this key (since its last deletion).
    pub create_revision: Revision,
    /// Revision of the transaction that last wrote this key.
    pub mod_revision: Revision,
    /// Number of writes since creation (1 after the create).
    pub version: u64,
}

/// A guard of a transaction. All guards must hold for the transaction's operations to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key's `mod_revision` equals the given one; `Revision(0)` means "the key is absent".
    ModRevision { key: String, revision: Revision },
    /// The key does not exist.
    Absent { key: String },
    /// The key exists (any revision).
    Exists { key: String },
}

/// A write inside a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put {
        key: String,
        value: Bytes,
    },
    /// Deleting an absent key is not an error and produces no event.
    Delete {
        key: String,
    },
}

/// An atomic unit of work: if every `compare` holds, all `ops` apply at one new revision;
/// otherwise nothing changes. Either way the answer says which, and at what revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub ops: Vec<Op>,
}

impl Txn {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn when(mut self, c: Compare) -> Self {
        self.compares.push(c);
        self
    }
    pub fn put(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.ops.push(Op::Put {
            key: key.into(),
            value: value.into(),
        });
        self
    }
    pub fn delete(mut self, key: impl Into<String>) -> Self {
        self.ops.push(Op::Delete { key: key.into() });
        self
    }
}

/// The outcome of a transaction. When it returns `Ok`, the result is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnResult {
    /// Whether all comparisons held and the operations were applied.
    pub succeeded: bool,
    /// The store's revision after the transaction (the new one if it wrote something).
    pub revision: Revision,
}

/// What happened to one key, as seen by a watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change. Events of one transaction share its revision and arrive in op order; events
/// arrive in revision order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// For a put, the new key-value; for a delete, the key with an empty value and
    /// `mod_revision` set to the deleting revision.
    pub kv: KeyValue,
}

impl Event {
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// A stream of watch events. It ends only when the store shuts down; an `Err` item is the
/// last one (for example `Compacted` when the watcher fell too far behind).
pub type WatchStream = BoxStream<'static, Result<Event, StoreError>>;

/// Everything that can go wrong in a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The requested start revision is older than the retained history; resync with a
    /// fresh `range` and watch from its revision.
    #[error("failed to watch from revision {requested}: history compacted up to {compacted}")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    #[error("failed to open store at {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("failed to {op}: {source}")]
    Backend {
        op: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("store is shut down")]
    Closed,
}

/// A revisioned key-value store. Keys are `/wyvern/v1/<kind>/<id>`-style strings ordered
/// bytewise; values are opaque bytes (JSON in practice).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The value of one key, if present.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Every key starting with `prefix`, in key order, with the revision at which this
    /// consistent snapshot was taken (pass `revision + 1` to `watch` to follow it).
    ///
    /// `prefix` is a raw string prefix compared byte for byte: `"/a/b"` also matches
    /// `"/a/bc"`; ask for `"/a/b/"` to get only the keys below `/a/b`. `""` matches all.
    async fn range(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError>;

    /// Apply a guarded transaction atomically. Returns once the result is durable.
    async fn txn(&self, txn: Txn) -> Result<TxnResult, StoreError>;

    /// Events for keys under `prefix` (a raw prefix, as in `range`) from revision `from`
    /// (inclusive) onwards, in revision order. `Revision(0)` means "from the next revision
    /// on", as in etcd. Fails with `Compacted` when `from` is no longer in the history; the
    /// stream itself ends with `Compacted` if it falls behind the retained history.
    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream, StoreError>;

    /// The current revision.
    async fn revision(&self) -> Result<Revision, StoreError>;

    /// Discard the history of every revision up to and including `up_to` (clamped to the
    /// current revision). Afterwards `watch` from any revision `<= up_to` fails with
    /// `Compacted`. Data (the latest value of each key) is never affected. (etcd's
    /// `Compact(rev)` keeps `rev` itself, so an etcd store passes `up_to + 1`.)
    ///
    /// Provided so that existing implementations keep compiling; the default refuses.
    async fn compact(&self, up_to: Revision) -> Result<(), StoreError> {
        Err(StoreError::Backend {
            op: "compact history",
            source: format!("compaction to revision {up_to} is not supported by this store").into(),
        })
    }

    /// Unconditional put; returns the new revision.
    async fn put(&self, key: &str, value: Bytes) -> Result<Revision, StoreError> {
        Ok(self.txn(Txn::new().put(key, value)).await?.revision)
    }

    /// Unconditional delete; returns the revision after it.
    async fn delete(&self, key: &str) -> Result<Revision, StoreError> {
        Ok(self.txn(Txn::new().delete(key)).await?.revision)
    }

    /// Puts `key` = `value` and keeps it only while its writer lives: the key disappears
    /// (a delete event) about `ttl` after the returned guard is dropped or the process dies.
    /// How hosts announce themselves (chassis registration).
    ///
    /// The default, for a store only one process uses (redb), is a plain put that the guard
    /// does not remove: with one host there is nobody to tell, and a restarted host
    /// overwrites its own key.
    async fn put_leased(
        &self,
        key: &str,
        value: Bytes,
        ttl: std::time::Duration,
    ) -> Result<LeaseGuard, StoreError> {
        let _ = ttl;
        self.put(key, value).await?;
        Ok(LeaseGuard::default())
    }
}

/// Keeps a leased key alive; dropping it releases the lease (see [`Store::put_leased`]).
#[derive(Default)]
pub struct LeaseGuard {
    on_drop: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl LeaseGuard {
    /// A guard that runs `release` when dropped (stops keep-alives, revokes the lease).
    pub fn new(release: impl FnOnce() + Send + Sync + 'static) -> Self {
        LeaseGuard {
            on_drop: Some(Box::new(release)),
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if let Some(f) = self.on_drop.take() {
            f();
        }
    }
}

impl fmt::Debug for LeaseGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaseGuard")
            .field("releases", &self.on_drop.is_some())
            .finish()
    }
}
