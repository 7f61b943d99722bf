//! The embedded store: one redb file, written by a single committer thread that group-commits
//! every transaction queued while the previous fsync ran.
//!
//! Why group commit: a durable redb commit costs one fsync (milliseconds on real disks), so
//! one commit per API write caps the daemon at a few hundred writes per second. Callers
//! instead queue their `Txn` to the committer, which applies everything queued, in order,
//! inside one redb write transaction, commits it once and only then answers each caller.
//! Each successful writing txn still gets its own revision, so the result is exactly the
//! one a one-at-a-time store would give for that order.
//!
//! Layout (three tables):
//! - `kv`: key -> `create_revision | mod_revision | version | value` (u64 little-endian each);
//! - `meta`: `"revision"` (current) and `"compacted"` (highest revision dropped from history);
//! - `history`: revision -> the events of that revision, for watches that resume from the past
//!   (also after a restart). Only the last `history_retention` revisions are kept. A put event
//!   does not repeat its value (it was half of every write's bytes): the value is the `kv`
//!   entry's while that entry's `mod_revision` is the event's revision;
//! - `superseded`: `(revision, key)` -> a value a later write replaced or deleted while its
//!   revision was still in history, moved here by that write (in the same transaction), and
//!   dropped with that revision's history. Creates, the common write, thus store their value
//!   once; an update stores the old value once more, as before.
//!
//! Watches: the committer publishes each committed batch on a bounded broadcast channel after
//! the commit returns; a watcher subscribes first, then catches up from `history`, then follows
//! the broadcast, skipping what it already delivered. A watcher that lags behind the broadcast
//! buffer re-reads `history`, so it never loses events and never slows writers down.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::{
    Compare, Event, EventKind, KeyValue, Op, Revision, Store, StoreError, Txn, TxnResult,
    WatchStream,
};

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const HISTORY: TableDefinition<u64, &[u8]> = TableDefinition::new("history");
const SUPERSEDED: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("superseded");
const META_REVISION: &str = "revision";
const META_COMPACTED: &str = "compacted";

/// How many history revisions one catch-up read of a watcher decodes at most: bounds the
/// memory a slow watcher holds.
const CATCH_UP_CHUNK: u64 = 512;
/// Extra history revisions the committer may drop per commit beyond the new ones, so that a
/// lowered retention converges without one huge commit.
const COMPACT_BUDGET: u64 = 1024;
/// Largest event payload (keys + values) a committed batch carries to live watchers; a
/// bigger batch is announced without its events and watchers read it from history. Bounds
/// the broadcast buffer to `watch_buffer` times this.
const WATCH_INLINE_BYTES: usize = 128 * 1024;
/// Batches smaller than this never make the committer linger (a lone writer pays nothing).
const LINGER_MIN_BATCH: usize = 8;
const LINGER_STEP: std::time::Duration = std::time::Duration::from_micros(50);

/// Tuning of [`RedbStore`]. `Default` gives the values documented on each field.
#[derive(Debug, Clone)]
pub struct RedbOptions {
    /// redb's page cache in bytes (default 64 MiB). The store's main memory cost.
    pub cache_size: usize,
    /// Revisions of history kept for watches (default 100_000); older ones are compacted by
    /// the committer and a watch from before them fails with `Compacted`.
    pub history_retention: u64,
    /// Most transactions applied in one group commit (default 1024).
    pub max_batch: usize,
    /// Transactions that may wait for the committer before `txn()` callers wait to enqueue
    /// (default 4096). Bounds the memory of queued writes.
    pub queue_depth: usize,
    /// Committed batches buffered for live watchers (default 256, each at most 128 KiB of
    /// events, so at most 32 MiB for a stalled watcher). A watcher further behind catches up
    /// from the history table instead.
    pub watch_buffer: usize,
    /// How long the committer may wait for stragglers when fewer transactions are queued than
    /// in its recent batches (default 300 µs; zero disables). Trades a fraction of a
    /// millisecond for fuller batches under steady concurrent load; a lone writer never waits.
    pub linger: std::time::Duration,
}

impl Default for RedbOptions {
    fn default() -> Self {
        Self {
            cache_size: 64 * 1024 * 1024,
            history_retention: 100_000,
            max_batch: 1024,
            queue_depth: 4096,
            watch_buffer: 256,
            linger: std::time::Duration::from_micros(300),
        }
    }
}

/// Failures decoding what the store itself wrote: only a damaged file produces them.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("failed to decode {what}: truncated after {at} bytes")]
    Truncated { what: &'static str, at: usize },
    #[error("failed to decode event kind: unknown tag {0}")]
    UnknownKind(u8),
    #[error("failed to decode event key: not UTF-8")]
    KeyNotUtf8(#[source] std::str::Utf8Error),
    #[error(
        "failed to find the value of {key} at revision {revision} (neither current nor superseded)"
    )]
    MissingValue { key: String, revision: u64 },
}

/// The embedded, durable [`Store`]. Open it with [`RedbStore::open`]; dropping the last `Arc`
/// stops the committer (after it answered everything queued) and ends every watch stream.
/// The file stays open until the watch streams are dropped too.
pub struct RedbStore {
    shared: Arc<Shared>,
    /// `None` only during `Drop`, to close the queue before joining the committer.
    requests: Option<mpsc::Sender<Request>>,
    live: broadcast::Sender<Arc<Committed>>,
    committer: Option<JoinHandle<()>>,
}

/// State readers share with the committer.
struct Shared {
    db: Database,
    /// Highest committed revision; stored after the commit returns, before anyone hears of it.
    revision: AtomicU64,
    /// Highest revision removed from history.
    compacted: AtomicU64,
}

enum Request {
    Txn {
        txn: Txn,
        reply: oneshot::Sender<Result<TxnResult, StoreError>>,
    },
    Compact {
        up_to: Revision,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// One group commit as seen by live watchers: the events of revisions `first..=last`, or
/// none when `inline` is false (too big: watchers read them from history).
struct Committed {
    first: u64,
    last: u64,
    inline: bool,
    events: Vec<Event>,
}

fn backend<E>(op: &'static str) -> impl FnOnce(E) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |e| StoreError::Backend {
        op,
        source: Box::new(e),
    }
}

impl RedbStore {
    /// Opens (creating it if missing) the redb database file at `path` and starts the
    /// committer thread. The parent directory must exist. Only one process may open a file.
    pub fn open(path: &Path, opts: RedbOptions) -> Result<Arc<RedbStore>, StoreError> {
        let open_err = |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Open {
            path: path.display().to_string(),
            source: e,
        };
        let db = Database::builder()
            .set_cache_size(opts.cache_size)
            .create(path)
            .map_err(|e| open_err(Box::new(e)))?;
        let (revision, compacted) = init_tables(&db).map_err(|e| open_err(Box::new(e)))?;
        let shared = Arc::new(Shared {
            db,
            revision: AtomicU64::new(revision),
            compacted: AtomicU64::new(compacted),
        });
        let (tx, rx) = mpsc::channel(opts.queue_depth.max(1));
        let (live, _) = broadcast::channel(opts.watch_buffer.max(1));
        let committer = Committer {
            shared: shared.clone(),
            requests: rx,
            live: live.clone(),
            revision,
            compacted,
            max_batch: opts.max_batch.max(1),
            retention: opts.history_retention.max(1),
            linger: opts.linger,
        };
        let handle = std::thread::Builder::new()
            .name("wyvern-store-commit".into())
            .spawn(move || committer.run())
            .map_err(|e| open_err(Box::new(e)))?;
        tracing::info!(path = %path.display(), revision, compacted, "opened redb store");
        Ok(Arc::new(RedbStore {
            shared,
            requests: Some(tx),
            live,
            committer: Some(handle),
        }))
    }

    async fn send(&self, req: Request) -> Result<(), StoreError> {
        let tx = self.requests.as_ref().ok_or(StoreError::Closed)?;
        tx.send(req).await.map_err(|_| StoreError::Closed)
    }

    /// Runs a blocking redb read off the async workers.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || f(&shared.db))
            .await
            .map_err(backend("join a blocking read"))?
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        // Closing the queue lets the committer answer what is queued, then exit.
        self.requests = None;
        if let Some(handle) = self.committer.take() {
            if handle.join().is_err() {
                tracing::error!("store committer thread panicked");
            }
        }
    }
}

/// Creates the tables if missing and reads the counters.
fn init_tables(db: &Database) -> Result<(u64, u64), redb::Error> {
    let mut w = db.begin_write()?;
    w.set_durability(Durability::Immediate)?;
    let (revision, compacted) = {
        w.open_table(KV)?;
        w.open_table(HISTORY)?;
        w.open_table(SUPERSEDED)?;
        let meta = w.open_table(META)?;
        let rev = meta.get(META_REVISION)?.map(|g| g.value()).unwrap_or(0);
        let comp = meta.get(META_COMPACTED)?.map(|g| g.value()).unwrap_or(0);
        (rev, comp)
    };
    w.commit()?;
    Ok((revision, compacted))
}

#[async_trait]
impl Store for RedbStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let key = key.to_owned();
        self.read(move |db| {
            let r = db
                .begin_read()
                .map_err(backend("begin a read transaction"))?;
            let kv = r.open_table(KV).map_err(backend("open the kv table"))?;
            let found = kv.get(key.as_str()).map_err(backend("read a key"))?;
            match found {
                None => Ok(None),
                Some(g) => Ok(Some(
                    decode_kv(&key, g.value()).map_err(backend("decode a stored key"))?,
                )),
            }
        })
        .await
    }

    async fn range(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError> {
        let prefix = prefix.to_owned();
        self.read(move |db| {
            let r = db
                .begin_read()
                .map_err(backend("begin a read transaction"))?;
            let meta = r.open_table(META).map_err(backend("open the meta table"))?;
            let rev = meta
                .get(META_REVISION)
                .map_err(backend("read the revision"))?
                .map(|g| g.value())
                .unwrap_or(0);
            let kv = r.open_table(KV).map_err(backend("open the kv table"))?;
            let mut out = Vec::new();
            for item in kv
                .range::<&str>(prefix.as_str()..)
                .map_err(backend("range over keys"))?
            {
                let (k, v) = item.map_err(backend("read a key in a range"))?;
                let key = k.value();
                if !key.starts_with(prefix.as_str()) {
                    break;
                }
                out.push(decode_kv(key, v.value()).map_err(backend("decode a stored key"))?);
            }
            Ok((out, Revision(rev)))
        })
        .await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResult, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Txn { txn, reply }).await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream, StoreError> {
        // Subscribe before looking at history: whatever commits after this point reaches us
        // live, whatever committed before is in history (see `Watcher::next_event`).
        let rx = self.live.subscribe();
        let from = match from.0 {
            // As in etcd: revision 0 means "what happens from now on".
            0 => self.shared.revision.load(Ordering::Acquire) + 1,
            n => n,
        };
        let compacted = self.shared.compacted.load(Ordering::Acquire);
        if from <= compacted {
            return Err(StoreError::Compacted {
                requested: Revision(from),
                compacted: Revision(compacted),
            });
        }
        let w = Watcher {
            shared: self.shared.clone(),
            prefix: Arc::from(prefix),
            next: from,
            rx,
            buf: VecDeque::new(),
            done: false,
        };
        Ok(futures::stream::unfold(w, |mut w| async move {
            let item = w.next_event().await?;
            Some((item, w))
        })
        .boxed())
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        Ok(Revision(self.shared.revision.load(Ordering::Acquire)))
    }

    async fn compact(&self, up_to: Revision) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Compact { up_to, reply }).await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

struct Watcher {
    shared: Arc<Shared>,
    prefix: Arc<str>,
    /// Every event with a revision below this one was delivered (or filtered out).
    next: u64,
    rx: broadcast::Receiver<Arc<Committed>>,
    buf: VecDeque<Event>,
    done: bool,
}

impl Watcher {
    /// The next item of the stream; `None` once it ended.
    async fn next_event(&mut self) -> Option<Result<Event, StoreError>> {
        loop {
            if let Some(ev) = self.buf.pop_front() {
                return Some(Ok(ev));
            }
            if self.done {
                return None;
            }
            let current = self.shared.revision.load(Ordering::Acquire);
            if self.next <= current {
                // Behind the committed state: read it from history (initial catch-up, or
                // after lagging behind the broadcast buffer).
                let upto = current.min(self.next + CATCH_UP_CHUNK - 1);
                match self.catch_up(upto).await {
                    Ok(events) => {
                        self.buf.extend(events);
                        self.next = upto + 1;
                    }
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
                continue;
            }
            match self.rx.recv().await {
                Ok(c) if c.last < self.next => {} // already read from history
                Ok(c) if !c.inline => {
                    // Too big to broadcast: `c` is committed, so the loop reads it from history.
                }
                Ok(c) if c.first > self.next => {
                    // Cannot happen with an unbroken broadcast, but history covers it anyway.
                    tracing::warn!(next = self.next, first = c.first, "watch gap, re-reading");
                }
                Ok(c) => {
                    let next = self.next;
                    let prefix = &*self.prefix;
                    self.buf.extend(
                        c.events
                            .iter()
                            .filter(|e| e.kv.mod_revision.0 >= next && e.kv.key.starts_with(prefix))
                            .cloned(),
                    );
                    self.next = c.last + 1;
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(missed = n, "watcher lagged, catching up from history");
                }
                Err(broadcast::error::RecvError::Closed) => self.done = true,
            }
        }
    }

    /// Events under the prefix in revisions `next..=upto`, from one read snapshot.
    async fn catch_up(&self, upto: u64) -> Result<Vec<Event>, StoreError> {
        let shared = self.shared.clone();
        let prefix = self.prefix.clone();
        let next = self.next;
        tokio::task::spawn_blocking(move || read_history(&shared.db, &prefix, next, upto))
            .await
            .map_err(backend("join a history read"))?
    }
}

fn read_history(
    db: &Database,
    prefix: &str,
    next: u64,
    upto: u64,
) -> Result<Vec<Event>, StoreError> {
    let r = db
        .begin_read()
        .map_err(backend("begin a read transaction"))?;
    let meta = r.open_table(META).map_err(backend("open the meta table"))?;
    let compacted = meta
        .get(META_COMPACTED)
        .map_err(backend("read the compacted revision"))?
        .map(|g| g.value())
        .unwrap_or(0);
    if next <= compacted {
        return Err(StoreError::Compacted {
            requested: Revision(next),
            compacted: Revision(compacted),
        });
    }
    let hist = r
        .open_table(HISTORY)
        .map_err(backend("open the history table"))?;
    let kv = r.open_table(KV).map_err(backend("open the kv table"))?;
    let superseded = r
        .open_table(SUPERSEDED)
        .map_err(backend("open the superseded table"))?;
    let mut out = Vec::new();
    for item in hist
        .range(next..=upto)
        .map_err(backend("range over history"))?
    {
        let (rev, blob) = item.map_err(backend("read a history entry"))?;
        let rev = rev.value();
        let mut failed = None;
        decode_events(rev, blob.value(), |e, by_ref| {
            if failed.is_some() || !e.kv.key.starts_with(prefix) {
                return;
            }
            if !by_ref {
                out.push(e);
                return;
            }
            match value_at(&kv, &superseded, &e.kv.key, rev) {
                Ok(value) => out.push(Event {
                    kv: KeyValue { value, ..e.kv },
                    ..e
                }),
                Err(err) => failed = Some(err),
            }
        })
        .map_err(backend("decode a history entry"))?;
        if let Some(e) = failed {
            return Err(e);
        }
    }
    Ok(out)
}

/// The value `key` had at revision `rev`, for a history event that does not carry it: the
/// current one if `rev` is still its last write, else the copy the superseding write kept.
fn value_at(
    kv: &redb::ReadOnlyTable<&str, &[u8]>,
    superseded: &redb::ReadOnlyTable<(u64, &str), &[u8]>,
    key: &str,
    rev: u64,
) -> Result<Bytes, StoreError> {
    if let Some(g) = kv.get(key).map_err(backend("read a key for history"))? {
        let buf = g.value();
        let m = decode_meta(buf).map_err(backend("decode a stored key"))?;
        if m.modified == rev {
            return Ok(Bytes::copy_from_slice(&buf[META_LEN..]));
        }
    }
    match superseded
        .get((rev, key))
        .map_err(backend("read a superseded value"))?
    {
        Some(g) => Ok(Bytes::copy_from_slice(g.value())),
        None => Err(StoreError::Backend {
            op: "resolve a history value",
            source: Box::new(DecodeError::MissingValue {
                key: key.to_owned(),
                revision: rev,
            }),
        }),
    }
}

/// The single writer: owns the request queue and the counters while running.
struct Committer {
    shared: Arc<Shared>,
    requests: mpsc::Receiver<Request>,
    live: broadcast::Sender<Arc<Committed>>,
    revision: u64,
    compacted: u64,
    max_batch: usize,
    retention: u64,
    linger: std::time::Duration,
}

/// What one request of a batch produced, before the commit decides whether it stands.
enum Outcome {
    Txn(TxnResult),
    Compacted,
}

/// The result of applying a batch: per-request outcomes, the new events and counters.
struct Applied {
    outcomes: Vec<Outcome>,
    events: Vec<Event>,
    revision: u64,
    compacted: u64,
}

impl Committer {
    fn run(mut self) {
        let mut batch = Vec::with_capacity(self.max_batch);
        // Recent batch size, decaying slowly: how many callers are usually active.
        let mut peak = 0usize;
        while let Some(first) = self.requests.blocking_recv() {
            batch.push(first);
            self.drain(&mut batch);
            // Callers just answered are resubmitting. When fewer are queued than usual, wait
            // a moment for the rest rather than make them wait a whole commit (this also
            // merges callers that fell into two alternating groups, each half as efficient).
            if peak >= LINGER_MIN_BATCH && batch.len() < peak && !self.linger.is_zero() {
                let until = std::time::Instant::now() + self.linger;
                while batch.len() < peak && std::time::Instant::now() < until {
                    std::thread::sleep(LINGER_STEP);
                    self.drain(&mut batch);
                }
            }
            peak = batch.len().max(peak - peak / 8);
            self.commit_batch(&mut batch);
        }
        tracing::debug!("store committer stopped");
    }

    fn drain(&mut self, batch: &mut Vec<Request>) {
        while batch.len() < self.max_batch {
            match self.requests.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
    }

    fn commit_batch(&mut self, batch: &mut Vec<Request>) {
        match self.apply(batch) {
            Ok(applied) => {
                let first = self.revision + 1;
                self.revision = applied.revision;
                self.compacted = applied.compacted;
                self.shared
                    .compacted
                    .store(applied.compacted, Ordering::Release);
                self.shared
                    .revision
                    .store(applied.revision, Ordering::Release);
                if !applied.events.is_empty() {
                    let size: usize = applied
                        .events
                        .iter()
                        .map(|e| e.kv.key.len() + e.kv.value.len())
                        .sum();
                    let inline = size <= WATCH_INLINE_BYTES;
                    let events = if inline { applied.events } else { Vec::new() };
                    // No receivers is fine: nobody watches.
                    let _ = self.live.send(Arc::new(Committed {
                        first,
                        last: applied.revision,
                        inline,
                        events,
                    }));
                }
                for (req, outcome) in batch.drain(..).zip(applied.outcomes) {
                    // A caller that gave up (dropped its future) is no error here.
                    match (req, outcome) {
                        (Request::Txn { reply, .. }, Outcome::Txn(r)) => {
                            let _ = reply.send(Ok(r));
                        }
                        (Request::Compact { reply, .. }, Outcome::Compacted) => {
                            let _ = reply.send(Ok(()));
                        }
                        (Request::Txn { reply, .. }, Outcome::Compacted) => {
                            let _ = reply.send(Err(internal_mismatch()));
                        }
                        (Request::Compact { reply, .. }, Outcome::Txn(_)) => {
                            let _ = reply.send(Err(internal_mismatch()));
                        }
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, txns = batch.len(), "group commit failed");
                let msg = error_chain(&e);
                for req in batch.drain(..) {
                    let err = || StoreError::Backend {
                        op: "commit a transaction batch",
                        source: msg.clone().into(),
                    };
                    match req {
                        Request::Txn { reply, .. } => {
                            let _ = reply.send(Err(err()));
                        }
                        Request::Compact { reply, .. } => {
                            let _ = reply.send(Err(err()));
                        }
                    }
                }
            }
        }
    }

    /// Applies every request in order inside one durable redb transaction.
    fn apply(&self, batch: &[Request]) -> Result<Applied, StoreError> {
        let t_apply = std::time::Instant::now();
        let mut w = self
            .shared
            .db
            .begin_write()
            .map_err(backend("begin a write transaction"))?;
        w.set_durability(Durability::Immediate)
            .map_err(backend("set durability"))?;
        let mut rev = self.revision;
        let mut compacted = self.compacted;
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut events = Vec::new();
        {
            let mut kv = w.open_table(KV).map_err(backend("open the kv table"))?;
            let mut hist = w
                .open_table(HISTORY)
                .map_err(backend("open the history table"))?;
            let mut sup = w
                .open_table(SUPERSEDED)
                .map_err(backend("open the superseded table"))?;
            for req in batch {
                match req {
                    Request::Txn { txn, .. } => {
                        let mut tables = WriteTables {
                            kv: &mut kv,
                            hist: &mut hist,
                            superseded: &mut sup,
                            compacted,
                        };
                        let r = apply_txn(&mut tables, txn, rev + 1, &mut events)?;
                        rev = r.revision.0;
                        outcomes.push(Outcome::Txn(r));
                    }
                    Request::Compact { up_to, .. } => {
                        let target = up_to.0.min(rev);
                        if target > compacted {
                            drop_history(&mut hist, &mut sup, compacted + 1, target)?;
                            compacted = target;
                        }
                        outcomes.push(Outcome::Compacted);
                    }
                }
            }
            // Retention, a bounded amount per commit.
            let target = rev.saturating_sub(self.retention);
            if target > compacted {
                let budget = (rev - self.revision) + COMPACT_BUDGET;
                let upto = target.min(compacted + budget);
                drop_history(&mut hist, &mut sup, compacted + 1, upto)?;
                compacted = upto;
            }
            let mut meta = w.open_table(META).map_err(backend("open the meta table"))?;
            meta.insert(META_REVISION, rev)
                .map_err(backend("write the revision"))?;
            meta.insert(META_COMPACTED, compacted)
                .map_err(backend("write the compacted revision"))?;
        }
        let t_commit = std::time::Instant::now();
        w.commit().map_err(backend("commit a write transaction"))?;
        tracing::trace!(
            txns = batch.len(),
            apply_us = (t_commit - t_apply).as_micros() as u64,
            commit_us = t_commit.elapsed().as_micros() as u64,
            "group commit"
        );
        Ok(Applied {
            outcomes,
            events,
            revision: rev,
            compacted,
        })
    }
}

fn internal_mismatch() -> StoreError {
    StoreError::Backend {
        op: "match a batch outcome to its request",
        source: "internal error: outcome kind differs from request kind".into(),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Drops the history of revisions `from..=to` and the superseded values only it referred to.
fn drop_history(
    hist: &mut redb::Table<'_, u64, &[u8]>,
    superseded: &mut redb::Table<'_, (u64, &str), &[u8]>,
    from: u64,
    to: u64,
) -> Result<(), StoreError> {
    hist.retain_in(from..=to, |_, _| false)
        .map_err(backend("compact history"))?;
    superseded
        .retain_in((from, "")..(to.saturating_add(1), ""), |_, _| false)
        .map_err(backend("compact superseded values"))
}

/// The tables one transaction writes, and the history watermark: a value replaced at a
/// revision `<= compacted` is referred to by no history entry and need not be kept.
struct WriteTables<'a, 't> {
    kv: &'a mut redb::Table<'t, &'static str, &'static [u8]>,
    hist: &'a mut redb::Table<'t, u64, &'static [u8]>,
    superseded: &'a mut redb::Table<'t, (u64, &'static str), &'static [u8]>,
    compacted: u64,
}

/// Keeps the value (stored as `old`, described by `m`) that a write is about to replace or
/// delete, if history still refers to it.
fn keep_superseded(
    superseded: &mut redb::Table<'_, (u64, &'static str), &'static [u8]>,
    compacted: u64,
    rev: u64,
    key: &str,
    m: &Meta,
    old: &[u8],
) -> Result<(), StoreError> {
    // Written earlier in this same revision: that event keeps its value inline.
    if m.modified > compacted && m.modified != rev {
        superseded
            .insert((m.modified, key), &old[META_LEN..])
            .map_err(backend("keep a superseded value"))?;
    }
    Ok(())
}

/// Applies one txn at candidate revision `rev`; state includes earlier txns of the batch.
fn apply_txn(
    t: &mut WriteTables<'_, '_>,
    txn: &Txn,
    rev: u64,
    events: &mut Vec<Event>,
) -> Result<TxnResult, StoreError> {
    let current = Revision(rev - 1);
    for c in &txn.compares {
        if !compare_holds(t.kv, c)? {
            return Ok(TxnResult {
                succeeded: false,
                revision: current,
            });
        }
    }
    let start = events.len();
    for op in &txn.ops {
        match op {
            Op::Put { key, value } => {
                let prev = match t.kv.get(key.as_str()).map_err(backend("read a key"))? {
                    Some(g) => {
                        let old = g.value();
                        let m = decode_meta(old).map_err(backend("decode a stored key"))?;
                        keep_superseded(t.superseded, t.compacted, rev, key, &m, old)?;
                        Some(m)
                    }
                    None => None,
                };
                let (create, version) = match prev {
                    Some(m) => (m.create, m.version + 1),
                    None => (rev, 1),
                };
                let encoded = encode_kv(create, rev, version, value);
                t.kv.insert(key.as_str(), encoded.as_slice())
                    .map_err(backend("write a key"))?;
                events.push(Event {
                    kind: EventKind::Put,
                    kv: KeyValue {
                        key: key.clone(),
                        value: value.clone(),
                        create_revision: Revision(create),
                        mod_revision: Revision(rev),
                        version,
                    },
                });
            }
            Op::Delete { key } => {
                let old = t.kv.remove(key.as_str()).map_err(backend("delete a key"))?;
                let existed = match old {
                    Some(g) => {
                        let old = g.value();
                        let m = decode_meta(old).map_err(backend("decode a stored key"))?;
                        keep_superseded(t.superseded, t.compacted, rev, key, &m, old)?;
                        true
                    }
                    None => false,
                };
                if existed {
                    events.push(Event {
                        kind: EventKind::Delete,
                        kv: KeyValue {
                            key: key.clone(),
                            value: Bytes::new(),
                            create_revision: Revision(0),
                            mod_revision: Revision(rev),
                            version: 0,
                        },
                    });
                }
            }
        }
    }
    if events.len() == start {
        // Nothing changed (only deletes of absent keys): no new revision.
        return Ok(TxnResult {
            succeeded: true,
            revision: current,
        });
    }
    let mine = &events[start..];
    let blob = encode_events(mine, &by_reference(mine));
    t.hist
        .insert(rev, blob.as_slice())
        .map_err(backend("write a history entry"))?;
    Ok(TxnResult {
        succeeded: true,
        revision: Revision(rev),
    })
}

fn compare_holds(kv: &redb::Table<'_, &str, &[u8]>, c: &Compare) -> Result<bool, StoreError> {
    let key = match c {
        Compare::ModRevision { key, .. } | Compare::Absent { key } | Compare::Exists { key } => key,
    };
    let meta = match kv
        .get(key.as_str())
        .map_err(backend("read a compared key"))?
    {
        Some(g) => Some(decode_meta(g.value()).map_err(backend("decode a stored key"))?),
        None => None,
    };
    Ok(match c {
        Compare::ModRevision { revision, .. } => meta.map_or(0, |m| m.modified) == revision.0,
        Compare::Absent { .. } => meta.is_none(),
        Compare::Exists { .. } => meta.is_some(),
    })
}

// ---- encoding -------------------------------------------------------------------------

/// The revision fields of a stored key.
struct Meta {
    create: u64,
    modified: u64,
    version: u64,
}

const META_LEN: usize = 24;

fn encode_kv(create: u64, modified: u64, version: u64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(META_LEN + value.len());
    out.extend_from_slice(&create.to_le_bytes());
    out.extend_from_slice(&modified.to_le_bytes());
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(value);
    out
}

/// A cursor over bytes that fails (never panics) on truncation.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.at..end];
                self.at = end;
                Ok(s)
            }
            None => Err(DecodeError::Truncated {
                what: self.what,
                at: self.at,
            }),
        }
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
}

fn decode_meta(buf: &[u8]) -> Result<Meta, DecodeError> {
    let mut r = Reader {
        buf,
        at: 0,
        what: "stored key",
    };
    Ok(Meta {
        create: r.u64()?,
        modified: r.u64()?,
        version: r.u64()?,
    })
}

fn decode_kv(key: &str, buf: &[u8]) -> Result<KeyValue, DecodeError> {
    let m = decode_meta(buf)?;
    Ok(KeyValue {
        key: key.to_owned(),
        value: Bytes::copy_from_slice(&buf[META_LEN..]),
        create_revision: Revision(m.create),
        mod_revision: Revision(m.modified),
        version: m.version,
    })
}

const KIND_PUT: u8 = 1;
const KIND_DELETE: u8 = 2;
/// A put whose value is not repeated in history (see the module docs).
const KIND_PUT_REF: u8 = 3;

/// `count u32 | event*`, an event being `kind u8, key_len u32, key, create u64, version u64`
/// followed, except for `KIND_PUT_REF`, by `value_len u32, value`; the revision is the
/// history key. A put is stored by reference when it is the last write of its key in this
/// revision (`by_ref[i]`); an earlier write of the same key in one transaction keeps its
/// value inline, since neither `kv` nor `superseded` can tell the two apart.
fn encode_events(events: &[Event], by_ref: &[bool]) -> Vec<u8> {
    let size: usize = events
        .iter()
        .zip(by_ref)
        .map(|(e, r)| 1 + 4 + e.kv.key.len() + 16 + if *r { 0 } else { 4 + e.kv.value.len() })
        .sum();
    let mut out = Vec::with_capacity(4 + size);
    out.extend_from_slice(&(events.len() as u32).to_le_bytes());
    for (e, r) in events.iter().zip(by_ref) {
        out.push(match (e.kind, r) {
            (EventKind::Put, true) => KIND_PUT_REF,
            (EventKind::Put, false) => KIND_PUT,
            (EventKind::Delete, _) => KIND_DELETE,
        });
        out.extend_from_slice(&(e.kv.key.len() as u32).to_le_bytes());
        out.extend_from_slice(e.kv.key.as_bytes());
        out.extend_from_slice(&e.kv.create_revision.0.to_le_bytes());
        out.extend_from_slice(&e.kv.version.to_le_bytes());
        if !r {
            out.extend_from_slice(&(e.kv.value.len() as u32).to_le_bytes());
            out.extend_from_slice(&e.kv.value);
        }
    }
    out
}

/// Which events of one revision may be stored by reference: puts that are the last event
/// of their key in it.
fn by_reference(events: &[Event]) -> Vec<bool> {
    let mut seen = std::collections::HashSet::with_capacity(events.len());
    let mut out = vec![false; events.len()];
    for (i, e) in events.iter().enumerate().rev() {
        let last = seen.insert(e.kv.key.as_str());
        out[i] = last && e.kind == EventKind::Put;
    }
    out
}

/// Calls `each(event, by_ref)` for every event of one history entry; a `by_ref` event has
/// an empty value that the caller resolves (`value_at`).
fn decode_events(
    rev: u64,
    buf: &[u8],
    mut each: impl FnMut(Event, bool),
) -> Result<(), DecodeError> {
    let mut r = Reader {
        buf,
        at: 0,
        what: "history entry",
    };
    let count = r.u32()?;
    for _ in 0..count {
        let (kind, by_ref) = match r.u8()? {
            KIND_PUT => (EventKind::Put, false),
            KIND_PUT_REF => (EventKind::Put, true),
            KIND_DELETE => (EventKind::Delete, false),
            other => return Err(DecodeError::UnknownKind(other)),
        };
        let key_len = r.u32()? as usize;
        let key = std::str::from_utf8(r.take(key_len)?).map_err(DecodeError::KeyNotUtf8)?;
        let create = r.u64()?;
        let version = r.u64()?;
        let value = if by_ref {
            Bytes::new()
        } else {
            let value_len = r.u32()? as usize;
            Bytes::copy_from_slice(r.take(value_len)?)
        };
        each(
            Event {
                kind,
                kv: KeyValue {
                    key: key.to_owned(),
                    value,
                    create_revision: Revision(create),
                    mod_revision: Revision(rev),
                    version,
                },
            },
            by_ref,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip() {
        let events = vec![
            Event {
                kind: EventKind::Put,
                kv: KeyValue {
                    key: "/a/é".into(),
                    value: Bytes::from_static(b"{\"x\":1}"),
                    create_revision: Revision(3),
                    mod_revision: Revision(7),
                    version: 2,
                },
            },
            Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key: "/b".into(),
                    value: Bytes::new(),
                    create_revision: Revision(0),
                    mod_revision: Revision(7),
                    version: 0,
                },
            },
        ];
        for by_ref in [[false, false], [true, false]] {
            let blob = encode_events(&events, &by_ref);
            let mut back = Vec::new();
            decode_events(7, &blob, |e, r| back.push((e, r))).unwrap();
            assert_eq!(back.len(), 2);
            assert_eq!(back[0].1, by_ref[0]);
            let value = if by_ref[0] {
                Bytes::new()
            } else {
                events[0].kv.value.clone()
            };
            assert_eq!(back[0].0.kv.value, value, "by_ref {by_ref:?}");
            assert_eq!(back[0].0.kv.key, events[0].kv.key);
            assert_eq!(back[0].0.kv.version, 2);
            assert_eq!(back[1], (events[1].clone(), false));
            // Every truncation is an error, never a panic.
            for cut in 0..blob.len() {
                assert!(
                    decode_events(7, &blob[..cut], |_, _| {}).is_err(),
                    "cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn only_the_last_put_of_a_key_is_by_reference() {
        let ev = |key: &str, kind| Event {
            kind,
            kv: KeyValue {
                key: key.into(),
                value: Bytes::new(),
                create_revision: Revision(1),
                mod_revision: Revision(1),
                version: 1,
            },
        };
        let events = [
            ev("/a", EventKind::Put),
            ev("/b", EventKind::Put),
            ev("/a", EventKind::Put),
            ev("/b", EventKind::Delete),
        ];
        assert_eq!(by_reference(&events), vec![false, false, true, false]);
    }

    #[test]
    fn kv_round_trip_and_truncation() {
        let enc = encode_kv(1, 5, 3, b"value");
        let kv = decode_kv("/k", &enc).unwrap();
        assert_eq!(kv.create_revision, Revision(1));
        assert_eq!(kv.mod_revision, Revision(5));
        assert_eq!(kv.version, 3);
        assert_eq!(&kv.value[..], b"value");
        assert!(decode_kv("/k", &enc[..23]).is_err());
    }
}
