//! The northbound service: the in-memory topology in front of the store.
//!
//! # Consistency
//! Every write runs in three steps:
//! 1. Under the topology's write lock (held for microseconds, never across an await), the
//!    operation is validated against the in-memory [`Topology`], its [`Change`] is applied to
//!    the topology at once, and the change is queued on an ordered channel to the committer.
//!    Because validation and application happen under one lock, two writes can never both
//!    take the same IP or MAC, and the queue order is the order in which the changes were
//!    applied in memory.
//! 2. The lock is released; the caller awaits its commit.
//! 3. The committer task takes everything queued (up to `max_batch`), merges it into ONE
//!    store transaction (one fsync for the whole batch: group commit above the store, so any
//!    `Store` implementation benefits) and answers every caller only once the store says the
//!    batch is durable. While one batch is being committed, the next one accumulates.
//!
//! The merged transaction carries guards: `Compare::Absent` on each created key and
//! `Compare::Exists` on each updated or deleted key (only on a key's first appearance in the
//! batch: later ops on the same key depend on the earlier ones). With a single writer these
//! always hold; with several writers on one store (etcd later) they turn a lost race into a
//! failed transaction instead of silent corruption.
//!
//! If a commit fails (I/O error or a failed guard), memory is ahead of the store: the
//! committer reloads the topology from the store and bumps a generation number. Every write
//! queued before the reload was computed on state that may contain the failed change, so it
//! is refused (500) instead of committed; writes computed after the reload proceed. Callers
//! of failed writes get a 500 and nothing of their change is in the store.
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
//! with the reload). Every acknowledged write is durable, which is what clients rely on.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use wyvern_model::{Change, ModelConfig, ModelError, Topology, KEY_PREFIX};
use wyvern_store::{Compare, Revision, Store, StoreError, Txn};

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
    #[error("failed to commit the change to the store: {0}")]
    Commit(String),
    #[error("failed to commit the change: a store guard did not hold (another writer changed the same objects)")]
    Conflict,
    #[error("failed to commit the change: an earlier commit failed and the topology was reloaded")]
    Stale,
    #[error("failed to commit the change: the northbound service is shutting down")]
    Closed,
}

struct State {
    topo: Topology,
}

struct Pending {
    change: Change,
    /// The JSON of each op's `new` object, as the topology cached it when the change was
    /// applied (aligned with `change.ops`; `None` for deletes and superseded versions).
    values: Vec<Option<Bytes>>,
    generation: u64,
    done: oneshot::Sender<Result<Revision, ApiError>>,
}

/// The topology, the store behind it and the committer that links them. Cheap to share.
pub struct NbService {
    state: Arc<RwLock<State>>,
    generation: Arc<AtomicU64>,
    queue: mpsc::UnboundedSender<Pending>,
    cfg: NbConfig,
}

/// Reads the whole topology from the store.
async fn load(store: &dyn Store, cfg: &ModelConfig) -> Result<(Topology, Revision), ApiError> {
    let (kvs, rev) = store.range(KEY_PREFIX).await.map_err(ApiError::Load)?;
    let mut topo = Topology::new(cfg.clone());
    // Every object's JSON is built once, here or when it is written: the store write, the
    // write's answer and every list reuse it.
    topo.enable_json_cache();
    // Parents first so that indexes see them (the mirror tolerates any order; this is tidier).
    for kind in ["networks/", "subnets/", "routers/", "ports/"] {
        let prefix = format!("{KEY_PREFIX}{kind}");
        for kv in kvs.iter().filter(|kv| kv.key.starts_with(&prefix)) {
            topo.apply_put(&kv.key, &kv.value)
                .map_err(ApiError::Decode)?;
        }
    }
    Ok((topo, rev))
}

impl NbService {
    /// Loads the topology from `store` and starts the committer. Must run inside a tokio
    /// runtime; the committer stops when the service is dropped.
    pub async fn open(store: Arc<dyn Store>, cfg: NbConfig) -> Result<Arc<NbService>, ApiError> {
        let (topo, rev) = load(&*store, &cfg.model).await?;
        tracing::info!(objects = topo.len(), revision = %rev, "loaded topology from store");
        let state = Arc::new(RwLock::new(State { topo }));
        let generation = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::unbounded_channel();
        let committer = Committer {
            store,
            state: state.clone(),
            generation: generation.clone(),
            model: cfg.model.clone(),
            max_batch: cfg.max_batch.max(1),
        };
        tokio::spawn(committer.run(rx));
        Ok(Arc::new(NbService {
            state,
            generation,
            queue: tx,
            cfg,
        }))
    }

    pub fn config(&self) -> &NbConfig {
        &self.cfg
    }

    fn read_lock(&self) -> RwLockReadGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied change (apply does not
        // panic on valid changes); keep serving rather than poisoning every later request.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_lock(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the current topology under the read lock. Keep `f` short: clone the `Arc`s
    /// you need and do the heavy work (serialization) after it returns.
    pub fn read<R>(&self, f: impl FnOnce(&Topology) -> R) -> R {
        f(&self.read_lock().topo)
    }

    /// Validates and applies one operation, then waits until its change is durable.
    pub async fn write<R>(
        &self,
        op: impl FnOnce(&Topology) -> Result<(Change, R), ModelError>,
    ) -> Result<R, ApiError> {
        let mut out = self.write_many(vec![op]).await?;
        out.pop().ok_or(ApiError::Closed)
    }

    /// Validates and applies several operations atomically (Neutron's bulk create): each one
    /// sees the ones before it; if any is refused, none is kept.
    pub async fn write_many<R, F>(&self, ops: Vec<F>) -> Result<Vec<R>, ApiError>
    where
        F: FnOnce(&Topology) -> Result<(Change, R), ModelError>,
    {
        let (done, answer) = oneshot::channel();
        let results = {
            let mut st = self.write_lock();
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
                return Ok(results);
            }
            let generation = self.generation.load(Ordering::Acquire);
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
            // Sent under the lock: queue order == application order.
            if self
                .queue
                .send(Pending {
                    change: total,
                    values,
                    generation,
                    done,
                })
                .is_err()
            {
                return Err(ApiError::Closed);
            }
            results
        };
        answer.await.map_err(|_| ApiError::Closed)??;
        Ok(results)
    }
}

struct Committer {
    store: Arc<dyn Store>,
    state: Arc<RwLock<State>>,
    generation: Arc<AtomicU64>,
    model: ModelConfig,
    max_batch: usize,
}

impl Committer {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<Pending>) {
        let mut batch = Vec::with_capacity(self.max_batch);
        while rx.recv_many(&mut batch, self.max_batch).await > 0 {
            let generation = self.generation.load(Ordering::Acquire);
            let (live, stale): (Vec<Pending>, Vec<Pending>) =
                batch.drain(..).partition(|p| p.generation == generation);
            for p in stale {
                let _ = p.done.send(Err(ApiError::Stale));
            }
            if live.is_empty() {
                continue;
            }
            let txn = merge(&live);
            let outcome = self.store.txn(txn).await;
            match outcome {
                Ok(r) if r.succeeded => {
                    for p in live {
                        let _ = p.done.send(Ok(r.revision));
                    }
                }
                Ok(_) => {
                    tracing::error!(
                        writes = live.len(),
                        "store guard failed; reloading the topology"
                    );
                    self.reload().await;
                    for p in live {
                        let _ = p.done.send(Err(ApiError::Conflict));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, writes = live.len(), "store commit failed; reloading the topology");
                    let msg = e.to_string();
                    self.reload().await;
                    for p in live {
                        let _ = p.done.send(Err(ApiError::Commit(msg.clone())));
                    }
                }
            }
        }
    }

    /// Replaces the in-memory topology with the store's and invalidates queued writes. The
    /// committer is the only writer, so the store cannot change while it reads. If even the
    /// read fails, retry: serving from a topology known to be ahead of the store would
    /// acknowledge writes that depend on lost ones.
    async fn reload(&self) {
        let mut delay = std::time::Duration::from_millis(50);
        loop {
            match load(&*self.store, &self.model).await {
                Ok((topo, rev)) => {
                    let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
                    st.topo = topo;
                    self.generation.fetch_add(1, Ordering::AcqRel);
                    tracing::info!(revision = %rev, "reloaded topology after a failed commit");
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "failed to reload the topology; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(5));
                }
            }
        }
    }
}

/// One store transaction for a batch of changes, with guards on each key's first touch.
fn merge(batch: &[Pending]) -> Txn {
    let mut txn = Txn::new();
    let mut touched: HashSet<String> = HashSet::new();
    for p in batch {
        for (i, op) in p.change.ops.iter().enumerate() {
            let key = op.key();
            if touched.insert(key.clone()) {
                txn = txn.when(match op.old {
                    None => Compare::Absent { key: key.clone() },
                    Some(_) => Compare::Exists { key: key.clone() },
                });
            }
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
        }
    }
    txn
}
