//! The northbound service: the in-memory topology in front of the store.
//!
//! # Consistency
//! Every write runs in three steps:
//! 1. Under the topology's write lock (held for microseconds, never across an await), the
//!    operation is validated against the in-memory [`Topology`], its [`Change`] is applied to
//!    the topology at once, and the change is queued on an ordered channel to the committer.
//!    Because validation and application happen under one lock, two writes of this service
//!    can never both take the same IP or MAC, and the queue order is the order in which the
//!    changes were applied in memory.
//! 2. The lock is released; the caller awaits its commit.
//! 3. The committer task takes everything queued (up to `max_batch`), merges it into ONE
//!    store transaction (one fsync for the whole batch: group commit above the store, so any
//!    `Store` implementation benefits) and answers every caller only once the store says the
//!    batch is durable. While one batch is being committed, the next one accumulates.
//!
//! # Several API servers on one store (etcd)
//! Each service validates against its own memory, so two services could each hand out the
//! same IP. Every batch therefore also writes the head key [`HEAD_KEY`] (first op; value
//! `<writer id>/<batch seq>`) under the guard "the head's mod revision is the one my memory
//! reflects". All writers go through this one key, so a batch commits only if no other
//! writer committed since this service last caught up: optimistic concurrency over the
//! whole topology, which keeps every model invariant (unique IPs and MACs, no port on a
//! deleted network, ...), not only the ones a per-key guard could express. With one writer
//! (the embedded store) the guard always holds and costs one small key per batch.
//!
//! A follower task watches the store from the revision the topology was loaded at and
//! applies what other writers committed (a revision whose head names another writer, or
//! that has no head). It recognises this service's own revisions by the head value and
//! skips them (they are in memory already). Memory is "store at `head`" plus the changes of
//! this service not yet known committed (`unconfirmed`, in order). When another writer's
//! revision arrives while some are unconfirmed, those are undone (applied inverses, newest
//! first) before the foreign change is applied: they were validated without it, and their
//! batch is bound to fail its guard anyway. The generation number then moves on, so queued
//! writes of the old generation are refused without being sent.
//!
//! A refused write (failed guard, or stale generation) is retried by `write_many` itself:
//! it waits until the follower has applied the store up to the revision that beat it, then
//! validates the operation again on the new state (the operations must be `Clone` for
//! that; they are re-run, never replayed) for up to [`RETRY_BUDGET`], so a busy cluster
//! costs latency, not errors. A loser also puts a contention key ([`CONTEND_PREFIX`]); the
//! winner then holds its next batch back until the loser committed (at most a few tens of
//! ms), so two busy writers alternate instead of the one whose queue refills first
//! winning every round. A store error (outcome unknown) undoes the
//! unconfirmed changes and answers 500; if the write did land, the follower applies it
//! like any other writer's.
//!
//! # Cost of a write
//! The topology keeps every object's JSON (`Topology::enable_json_cache`), built once when a
//! change is applied under the lock; the store value, the write's answer and every later list
//! reuse those bytes. Only one batch is committed at a time on purpose: on this kind of
//! machine the daemon is CPU-bound, not fsync-bound (fdatasync ~0.6 ms, batches of 30-60
//! writes), and a second batch in flight would halve the batch size (more commits, more CPU
//! per write) and would need the store to refuse batch k+1 when batch k failed, since k+1
//! was validated against k's changes.
//!
//! Reads see the in-memory topology, which may briefly include writes whose commit is still
//! in flight (they are acknowledged only once durable; if their commit fails they vanish
//! with the undo). Every acknowledged write is durable, which is what clients rely on.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};
use wyvern_model::{is_old_layout_key, parse_key, Change, Kind, ModelConfig, ModelError, Topology};
use wyvern_store::{Compare, Event, EventKind, Revision, Store, StoreError, Txn};

/// The key every batch of every northbound writer puts first (outside `wyvern_model::KEY_PREFIX`, so
/// model mirrors never see it); its mod revision is the optimistic-concurrency guard.
pub const HEAD_KEY: &str = "/wyvern/head";
/// Everything the follower watches and a load reads: the model and the head.
const SYNC_PREFIX: &str = "/wyvern/";
/// A writer whose batch lost the head race puts `<this><writer id>`: the winner then
/// yields its next batch until the loser committed (or [`YIELD_FOR`] passed), so that two
/// busy writers alternate instead of one starving the other.
pub const CONTEND_PREFIX: &str = "/wyvern/contend/";
/// Longest a writer holds its next batch back for a contending writer.
const YIELD_FOR: Duration = Duration::from_millis(50);
/// How long one write keeps retrying lost races before a conflict is reported.
pub const RETRY_BUDGET: Duration = Duration::from_secs(15);
/// How long a refused write waits for the follower to catch up before trying again.
const CATCH_UP_WAIT: Duration = Duration::from_secs(2);

/// Settings of the northbound service.
#[derive(Debug, Clone)]
pub struct NbConfig {
    /// MAC prefix, MTU and limits of the logical model.
    pub model: ModelConfig,
    /// Most API writes merged into one store transaction (default 512).
    pub max_batch: usize,
}

impl Default for NbConfig {
    fn default() -> Self {
        NbConfig {
            model: ModelConfig::default(),
            max_batch: 512,
        }
    }
}

/// Why a request failed beyond validation.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Refused by the model (validation, not found, in use, policy).
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("failed to load the topology from the store: {0}")]
    Load(#[source] StoreError),
    #[error("failed to decode the stored topology: {0}")]
    Decode(#[source] wyvern_model::ApplyError),
    #[error("failed to load the topology: the store holds the old per-kind layout (key {0}); this version keeps subnets and ports under /wyvern/v1/net/<network>/ (docs/multi-host.md): recreate the store or migrate it")]
    OldLayout(String),
    #[error("failed to commit the change to the store: {0}")]
    Commit(String),
    #[error("failed to commit the change: other writers kept changing the topology for {RETRY_BUDGET:?}")]
    Conflict,
    #[error("failed to commit the change: an earlier commit failed and the topology was reloaded")]
    Stale,
    #[error("failed to commit the change: the northbound service is shutting down")]
    Closed,
}

/// Why one attempt of a write was refused (internal: `write_many` retries these).
enum Refused {
    /// The guard failed: another writer committed; the store was at `at`.
    Conflict {
        at: Revision,
    },
    /// Computed on a state that was since undone.
    Stale,
    Fatal(ApiError),
}

struct State {
    topo: Topology,
    /// Mod revision of [`HEAD_KEY`] that `topo` reflects: the guard of the next batch.
    head: Revision,
    /// Events at or below this revision are in `topo` already (the last full load).
    base: Revision,
    /// Changes applied to `topo` whose commit is not yet known, in application order.
    unconfirmed: VecDeque<(u64, Change)>,
    /// Bumped whenever unconfirmed changes are undone; older queued writes are refused.
    generation: u64,
    next_pending: u64,
    /// Batches sent to the store and not yet resolved: batch seq -> their pending ids.
    in_flight: HashMap<u64, Vec<u64>>,
    /// Own batches the committer saw succeed and the follower has not seen yet.
    committed_unseen: HashSet<u64>,
    /// Own batches the follower saw before the committer heard back.
    seen_own: HashSet<u64>,
    /// Another writer lost a race to us: hold our next batch back until this instant (or
    /// until a foreign revision lands).
    yield_until: Option<tokio::time::Instant>,
}

impl State {
    /// Undoes every unconfirmed change (newest first) and invalidates queued writes.
    fn undo_unconfirmed(&mut self) {
        while let Some((_, change)) = self.unconfirmed.pop_back() {
            self.topo.apply(&change.inverse());
        }
        self.in_flight.clear();
        self.generation += 1;
    }

    /// A batch is known committed: its changes are now part of the store state.
    fn confirm(&mut self, seq: u64, rev: Revision) -> bool {
        let Some(ids) = self.in_flight.remove(&seq) else {
            return false;
        };
        for id in ids {
            match self.unconfirmed.front() {
                Some((front, _)) if *front == id => {
                    self.unconfirmed.pop_front();
                }
                // Cannot happen (batches leave the queue in order); stay correct anyway.
                _ => self.unconfirmed.retain(|(p, _)| *p != id),
            }
        }
        self.head = self.head.max(rev);
        true
    }
}

struct Pending {
    id: u64,
    change: Change,
    /// The JSON of each op's `new` object, as the topology cached it when the change was
    /// applied (aligned with `change.ops`; `None` for deletes and superseded versions).
    values: Vec<Option<Bytes>>,
    generation: u64,
    done: oneshot::Sender<Result<Revision, Refused>>,
}

/// What the committer and the follower share.
struct Shared {
    state: RwLock<State>,
    store: Arc<dyn Store>,
    model: ModelConfig,
    /// Random per service instance: tells this service's head values from others'.
    writer: String,
    /// The highest store revision the follower has applied (or loaded).
    synced: watch::Sender<Revision>,
}

impl Shared {
    fn lock(&self) -> RwLockWriteGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied change (apply does not
        // panic on valid changes); keep serving rather than poisoning every later request.
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the topology with the store's and forgets every unconfirmed change. Retries
    /// until the store answers: serving from a topology known to be wrong would acknowledge
    /// writes that depend on lost ones.
    async fn reload(&self, why: &str) {
        let mut delay = Duration::from_millis(50);
        loop {
            match load(&*self.store, &self.model).await {
                Ok(l) => {
                    let mut st = self.lock();
                    st.topo = l.topo;
                    st.head = l.head;
                    st.base = l.revision;
                    st.unconfirmed.clear();
                    st.in_flight.clear();
                    st.committed_unseen.clear();
                    st.seen_own.clear();
                    st.generation += 1;
                    drop(st);
                    self.synced.send_modify(|r| *r = (*r).max(l.revision));
                    tracing::info!(revision = %l.revision, reason = why, "reloaded the topology");
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "failed to reload the topology; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// The topology, the store behind it and the tasks that link them. Cheap to share.
pub struct NbService {
    shared: Arc<Shared>,
    queue: mpsc::UnboundedSender<Pending>,
    cfg: NbConfig,
    /// Dropping it stops the follower.
    _stop: oneshot::Sender<()>,
}

struct Loaded {
    topo: Topology,
    head: Revision,
    revision: Revision,
}

/// Reads the whole topology (and the head) from the store in one snapshot.
async fn load(store: &dyn Store, cfg: &ModelConfig) -> Result<Loaded, ApiError> {
    let (kvs, rev) = store.range(SYNC_PREFIX).await.map_err(ApiError::Load)?;
    let mut topo = Topology::new(cfg.clone());
    // Every object's JSON is built once, here or when it is written: the store write, the
    // write's answer and every list reuse it.
    topo.enable_json_cache();
    if let Some(kv) = kvs.iter().find(|kv| is_old_layout_key(&kv.key)) {
        return Err(ApiError::OldLayout(kv.key.clone()));
    }
    // Parents first so that indexes see them (the mirror tolerates any order; this is tidier).
    // Index keys are not objects (`parse_key` is `None` for them).
    for kind in [Kind::Network, Kind::Subnet, Kind::Router, Kind::Port] {
        let objects = kvs
            .iter()
            .filter(|kv| parse_key(&kv.key).is_some_and(|(k, _)| k == kind));
        for kv in objects {
            topo.apply_put(&kv.key, &kv.value)
                .map_err(ApiError::Decode)?;
        }
    }
    let head = kvs
        .iter()
        .find(|kv| kv.key == HEAD_KEY)
        .map_or(Revision(0), |kv| kv.mod_revision);
    Ok(Loaded {
        topo,
        head,
        revision: rev,
    })
}

impl NbService {
    /// Loads the topology from `store` and starts the committer and the follower. Must run
    /// inside a tokio runtime; both stop when the service is dropped.
    pub async fn open(store: Arc<dyn Store>, cfg: NbConfig) -> Result<Arc<NbService>, ApiError> {
        let l = load(&*store, &cfg.model).await?;
        tracing::info!(objects = l.topo.len(), revision = %l.revision, "loaded topology from store");
        // Watch before anything else can commit past the snapshot: the follower resumes
        // exactly after it.
        let stream = match store.watch(SYNC_PREFIX, Revision(l.revision.0 + 1)).await {
            Ok(s) => Some(s),
            // A store that cannot watch at all (test doubles): this service is its only
            // writer, so there is nothing to follow.
            Err(StoreError::Closed) => {
                tracing::warn!("the store cannot watch; other writers' changes will not be seen");
                None
            }
            Err(e) => return Err(ApiError::Load(e)),
        };
        let (synced, _) = watch::channel(l.revision);
        let shared = Arc::new(Shared {
            state: RwLock::new(State {
                topo: l.topo,
                head: l.head,
                base: l.revision,
                unconfirmed: VecDeque::new(),
                generation: 0,
                next_pending: 0,
                in_flight: HashMap::new(),
                committed_unseen: HashSet::new(),
                seen_own: HashSet::new(),
                yield_until: None,
            }),
            store,
            model: cfg.model.clone(),
            writer: uuid::Uuid::new_v4().simple().to_string(),
            synced,
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let committer = Committer {
            shared: shared.clone(),
            max_batch: cfg.max_batch.max(1),
            seq: 0,
        };
        tokio::spawn(committer.run(rx));
        let (stop, stopped) = oneshot::channel();
        if let Some(stream) = stream {
            tokio::spawn(follow(shared.clone(), stream, stopped));
        }
        Ok(Arc::new(NbService {
            shared,
            queue: tx,
            cfg,
            _stop: stop,
        }))
    }

    pub fn config(&self) -> &NbConfig {
        &self.cfg
    }

    fn read_lock(&self) -> RwLockReadGuard<'_, State> {
        self.shared.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the current topology under the read lock. Keep `f` short: clone the `Arc`s
    /// you need and do the heavy work (serialization) after it returns.
    pub fn read<R>(&self, f: impl FnOnce(&Topology) -> R) -> R {
        f(&self.read_lock().topo)
    }

    /// The highest store revision this service has applied (its own writes and, through the
    /// follower, everyone else's).
    pub fn synced_revision(&self) -> Revision {
        *self.shared.synced.borrow()
    }

    /// The whole topology exactly as the store holds it at one revision, and that revision.
    /// Read from the store (one range read), not from memory: memory may hold writes whose
    /// commit is still in flight, so it has no store revision to name. This is the
    /// consistent cut a checkpoint needs (`GET /v2.0/wyvern/topology`).
    pub async fn read_committed(&self) -> Result<(Topology, Revision), ApiError> {
        let l = load(&*self.shared.store, &self.shared.model).await?;
        Ok((l.topo, l.revision))
    }

    /// Validates and applies one operation, then waits until its change is durable. The
    /// operation may run more than once (see the module docs), hence `Clone`.
    pub async fn write<R, F>(&self, op: F) -> Result<R, ApiError>
    where
        F: FnOnce(&Topology) -> Result<(Change, R), ModelError> + Clone,
    {
        let mut out = self.write_many(vec![op]).await?;
        out.pop().ok_or(ApiError::Closed)
    }

    /// Validates and applies several operations atomically (Neutron's bulk create): each one
    /// sees the ones before it; if any is refused, none is kept. When another writer wins a
    /// race the operations run again on the new state (for up to [`RETRY_BUDGET`]).
    pub async fn write_many<R, F>(&self, ops: Vec<F>) -> Result<Vec<R>, ApiError>
    where
        F: FnOnce(&Topology) -> Result<(Change, R), ModelError> + Clone,
    {
        let start = tokio::time::Instant::now();
        let mut attempt = 0u32;
        while start.elapsed() < RETRY_BUDGET {
            attempt += 1;
            let (results, answer) = match self.attempt(ops.clone())? {
                Attempt::Done(results) => return Ok(results),
                Attempt::Queued(results, answer) => (results, answer),
            };
            match answer.await.map_err(|_| ApiError::Closed)? {
                Ok(_) => return Ok(results),
                Err(Refused::Fatal(e)) => return Err(e),
                Err(Refused::Stale) => {
                    tracing::debug!(attempt, "write computed on undone state; retrying");
                }
                Err(Refused::Conflict { at }) => {
                    tracing::debug!(attempt, revision = %at, "another writer won; retrying");
                    // Retry on a state that includes the winner, or after a bounded wait.
                    let mut synced = self.shared.synced.subscribe();
                    let _ =
                        tokio::time::timeout(CATCH_UP_WAIT, synced.wait_for(|r| *r >= at)).await;
                }
            }
        }
        Err(ApiError::Conflict)
    }

    /// One validation + application + enqueue under the lock.
    fn attempt<R, F>(&self, ops: Vec<F>) -> Result<Attempt<R>, ApiError>
    where
        F: FnOnce(&Topology) -> Result<(Change, R), ModelError>,
    {
        let (done, answer) = oneshot::channel();
        let mut st = self.shared.lock();
        let mut total = Change::default();
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            match op(&st.topo) {
                Ok((c, r)) => {
                    st.topo.apply(&c);
                    total.extend(c);
                    results.push(r);
                }
                Err(e) => {
                    st.topo.apply(&total.inverse());
                    return Err(e.into());
                }
            }
        }
        if total.is_empty() {
            return Ok(Attempt::Done(results));
        }
        let values = total
            .ops
            .iter()
            .map(|op| {
                op.new
                    .as_ref()
                    .and_then(|o| st.topo.cached_json(o))
                    .cloned()
            })
            .collect();
        let id = st.next_pending;
        st.next_pending += 1;
        st.unconfirmed.push_back((id, total.clone()));
        let generation = st.generation;
        // Sent under the lock: queue order == application order.
        if let Err(mpsc::error::SendError(p)) = self.queue.send(Pending {
            id,
            change: total,
            values,
            generation,
            done,
        }) {
            st.unconfirmed.pop_back();
            st.topo.apply(&p.change.inverse());
            return Err(ApiError::Closed);
        }
        Ok(Attempt::Queued(results, answer))
    }
}

enum Attempt<R> {
    /// Nothing to write (a no-op change).
    Done(Vec<R>),
    Queued(Vec<R>, oneshot::Receiver<Result<Revision, Refused>>),
}

struct Committer {
    shared: Arc<Shared>,
    max_batch: usize,
    seq: u64,
}

impl Committer {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Pending>) {
        let mut batch = Vec::with_capacity(self.max_batch);
        while rx.recv_many(&mut batch, self.max_batch).await > 0 {
            self.yield_to_contender().await;
            // Writes that arrived while yielding join this batch.
            while batch.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
            self.seq += 1;
            let seq = self.seq;
            // Under the lock: drop writes of an undone generation, register the batch and
            // take the guard that matches the state they were validated on.
            let (live, guard) = {
                let mut st = self.shared.lock();
                let generation = st.generation;
                let (live, stale): (Vec<Pending>, Vec<Pending>) =
                    batch.drain(..).partition(|p| p.generation == generation);
                for p in stale {
                    let _ = p.done.send(Err(Refused::Stale));
                }
                if !live.is_empty() {
                    st.in_flight
                        .insert(seq, live.iter().map(|p| p.id).collect());
                }
                (live, st.head)
            };
            if live.is_empty() {
                continue;
            }
            let head_value = format!("{}/{seq}", self.shared.writer);
            let txn = merge(&live, guard, head_value);
            let outcome = self.shared.store.txn(txn).await;
            match outcome {
                Ok(r) if r.succeeded => {
                    let known = {
                        let mut st = self.shared.lock();
                        if st.confirm(seq, r.revision) {
                            st.committed_unseen.insert(seq);
                            true
                        } else {
                            st.seen_own.remove(&seq)
                        }
                    };
                    if !known {
                        // Undone in memory (a writer without a head raced us) yet
                        // committed: memory lacks a durable change.
                        self.shared.reload("own commit landed after an undo").await;
                    }
                    for p in live {
                        let _ = p.done.send(Ok(r.revision));
                    }
                }
                Ok(r) => {
                    tracing::debug!(
                        writes = live.len(),
                        revision = %r.revision,
                        "head guard failed: another writer committed first"
                    );
                    self.undo_if_current(seq);
                    for p in live {
                        let _ = p.done.send(Err(Refused::Conflict { at: r.revision }));
                    }
                    // Ask the winner for a turn (best effort: only fairness depends on it).
                    let key = format!("{CONTEND_PREFIX}{}", self.shared.writer);
                    if let Err(e) = self
                        .shared
                        .store
                        .put(&key, Bytes::from(seq.to_string()))
                        .await
                    {
                        tracing::debug!(error = %e, "failed to signal contention");
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, writes = live.len(), "store commit failed; undoing");
                    self.undo_if_current(seq);
                    let msg = e.to_string();
                    for p in live {
                        let _ = p
                            .done
                            .send(Err(Refused::Fatal(ApiError::Commit(msg.clone()))));
                    }
                }
            }
        }
    }

    /// Holds the next batch back while another writer that lost a race to us retries,
    /// until a foreign revision lands or the yield expires.
    async fn yield_to_contender(&self) {
        let (until, from) = {
            let mut st = self.shared.lock();
            match st.yield_until.take() {
                Some(t) if t > tokio::time::Instant::now() => (t, st.head),
                _ => return,
            }
        };
        let mut synced = self.shared.synced.subscribe();
        let shared = self.shared.clone();
        let _ = tokio::time::timeout_at(
            until,
            synced.wait_for(move |_| shared.state.read().map(|st| st.head > from).unwrap_or(true)),
        )
        .await;
    }

    /// Undoes the unconfirmed changes unless the follower already did (batch no longer in
    /// flight).
    fn undo_if_current(&self, seq: u64) {
        let mut st = self.shared.lock();
        if st.in_flight.contains_key(&seq) {
            st.undo_unconfirmed();
        }
    }
}

/// One store transaction for a batch of changes: the head first, under the head guard.
fn merge(batch: &[Pending], guard: Revision, head_value: String) -> Txn {
    let mut txn = Txn::new()
        .when(Compare::ModRevision {
            key: HEAD_KEY.to_owned(),
            revision: guard,
        })
        .put(HEAD_KEY, head_value);
    for p in batch {
        for (i, op) in p.change.ops.iter().enumerate() {
            let key = op.key();
            txn = match &op.new {
                Some(obj) => {
                    let value = match p.values.get(i) {
                        Some(Some(v)) => v.clone(),
                        _ => Bytes::from(obj.to_json()),
                    };
                    txn.put(key, value)
                }
                None => txn.delete(key),
            };
            // The selective-sync indexes, in the same transaction as the object.
            for (key, value) in op.index_writes() {
                txn = match value {
                    Some(v) => txn.put(key, v),
                    None => txn.delete(key),
                };
            }
        }
    }
    txn
}

/// Whose revision the follower is in the middle of.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    Own,
    Foreign,
    /// A contention signal: no model change, nothing to undo.
    Signal,
}

/// Applies other writers' revisions to the topology until the service is dropped.
async fn follow(
    shared: Arc<Shared>,
    mut stream: wyvern_store::WatchStream,
    mut stop: oneshot::Receiver<()>,
) {
    let mut current: Option<(Revision, Origin)> = None;
    loop {
        let item = tokio::select! {
            _ = &mut stop => return,
            item = stream.next() => item,
        };
        let mut events = Vec::new();
        match item {
            None => return, // the store shut down
            Some(Ok(ev)) => events.push(ev),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "topology watch ended; resyncing");
                shared.reload("watch ended").await;
                current = None;
                let from = Revision(shared.lock().base.0 + 1);
                stream = loop {
                    match shared.store.watch(SYNC_PREFIX, from).await {
                        Ok(s) => break s,
                        Err(StoreError::Closed) => return,
                        Err(e) => {
                            tracing::error!(error = %e, "failed to watch the topology; retrying");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                };
                continue;
            }
        }
        // Everything already delivered goes under one lock: a revision's events together.
        while let Some(Some(Ok(ev))) = stream.next().now_or_never() {
            events.push(ev);
        }
        let mut last = None;
        {
            let mut st = shared.lock();
            for ev in &events {
                last = Some(ev.revision());
                apply_event(&shared, &mut st, &mut current, ev);
            }
        }
        if let Some(rev) = last {
            shared.synced.send_modify(|r| *r = (*r).max(rev));
        }
    }
}

fn apply_event(
    shared: &Shared,
    st: &mut State,
    current: &mut Option<(Revision, Origin)>,
    ev: &Event,
) {
    let rev = ev.revision();
    if rev <= st.base {
        return; // in the loaded snapshot
    }
    let origin = match *current {
        Some((r, o)) if r == rev => o,
        _ => {
            // A new revision; its head (if any) is its first event.
            let origin = if let Some(w) = ev.kv.key.strip_prefix(CONTEND_PREFIX) {
                if w != shared.writer && ev.kind == EventKind::Put {
                    st.yield_until = Some(tokio::time::Instant::now() + YIELD_FOR);
                }
                Origin::Signal
            } else if ev.kv.key == HEAD_KEY && ev.kind == EventKind::Put {
                match own_seq(&shared.writer, &ev.kv.value) {
                    Some(seq) if st.confirm(seq, rev) => {
                        st.seen_own.insert(seq);
                        Origin::Own
                    }
                    Some(seq) if st.committed_unseen.remove(&seq) => Origin::Own,
                    _ => Origin::Foreign,
                }
            } else {
                Origin::Foreign
            };
            if origin == Origin::Foreign && !st.unconfirmed.is_empty() {
                // Validated without this revision: undo, their batch fails its guard.
                st.undo_unconfirmed();
            }
            *current = Some((rev, origin));
            origin
        }
    };
    if ev.kv.key == HEAD_KEY {
        st.head = st.head.max(rev);
        return;
    }
    // Index keys come with their objects; only objects are applied.
    if origin != Origin::Foreign || parse_key(&ev.kv.key).is_none() {
        return;
    }
    let res = match ev.kind {
        EventKind::Put => st.topo.apply_put(&ev.kv.key, &ev.kv.value),
        EventKind::Delete => st.topo.apply_delete(&ev.kv.key),
    };
    if let Err(e) = res {
        tracing::warn!(key = %ev.kv.key, error = %e, "failed to apply another writer's change");
    }
}

/// The batch seq of a head value written by `writer`, if it is ours.
fn own_seq(writer: &str, value: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(value).ok()?;
    let (w, seq) = s.split_once('/')?;
    if w != writer {
        return None;
    }
    seq.parse().ok()
}
