//! The cascade's own state: pods, routings and jobs, in Tricircle's JSON shapes, kept in
//! memory in front of the cascade's store (keys under [`STATE_PREFIX`], beside the top
//! topology's keys in the same redb file).
//!
//! Every change goes through [`Ledger::commit`]: the store transaction is written first and
//! memory is updated only once it is durable, under one async lock, so memory never shows
//! a state the store does not hold and a job's transition, the routing it recorded and the
//! watch cursor it advanced land in one transaction.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, MutexGuard, Notify};
use uuid::Uuid;
use wyvern_model::Kind;
use wyvern_store::{Revision, Store, StoreError, Txn};

/// Prefix of every key the cascade itself writes.
pub const STATE_PREFIX: &str = "/cascade/v1/";
const POD_PREFIX: &str = "/cascade/v1/pods/";
const ROUTING_PREFIX: &str = "/cascade/v1/routings/";
const JOB_PREFIX: &str = "/cascade/v1/jobs/";
/// The last top revision whose events were turned into jobs.
const CURSOR_KEY: &str = "/cascade/v1/meta/cursor";
/// Finished (successful) jobs kept for `jobs list`; older ones are dropped with the next
/// transition so the store does not grow without bound.
const KEEP_FINISHED: usize = 2000;

/// A bottom site: one wyvernd with its Neutron API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pod {
    pub pod_id: Uuid,
    pub region_name: String,
    #[serde(default)]
    pub az_name: String,
    #[serde(default)]
    pub dc_name: String,
    #[serde(default)]
    pub pod_az_name: String,
    /// Root URL of the bottom wyvernd's Neutron API, e.g. `http://10.0.0.2:9696`.
    pub api_url: String,
    /// `X-Auth-Token` for the bottom (it must be an admin token so that ids can be chosen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// Top id <-> bottom id of one resource in one pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Routing {
    pub id: Uuid,
    pub top_id: Uuid,
    pub bottom_id: Uuid,
    pub pod_id: Uuid,
    pub project_id: String,
    /// `network`, `subnet`, `port` or `router`.
    pub resource_type: String,
    pub created_at: String,
    pub updated_at: String,
}

/// Tricircle's job states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobStatus {
    New,
    Running,
    Success,
    Fail,
}

/// One unit of bottom work: make resource `resource_id` of `kind` in `pod_id` match the top
/// (create, update or delete, decided when the job runs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: Uuid,
    /// Order of execution within a pod.
    pub seq: u64,
    pub project_id: String,
    /// `<resource type>_sync`, e.g. `port_sync`.
    #[serde(rename = "type")]
    pub job_type: String,
    pub status: JobStatus,
    pub pod_id: Uuid,
    pub resource_type: String,
    pub resource_id: Uuid,
    /// Runs so far (a retried job keeps its place in its pod's queue).
    pub attempts: u32,
    pub timestamp: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_error: String,
}

impl Job {
    pub fn kind(&self) -> Option<Kind> {
        kind_from_type(&self.resource_type)
    }

    /// Tricircle's shape: `resource` names the pod and `<type>_id`.
    pub fn to_api(&self) -> serde_json::Value {
        let mut resource = serde_json::Map::new();
        resource.insert("pod_id".into(), self.pod_id.to_string().into());
        resource.insert(
            format!("{}_id", self.resource_type),
            self.resource_id.to_string().into(),
        );
        serde_json::json!({
            "id": self.id,
            "project_id": self.project_id,
            "type": self.job_type,
            "status": self.status,
            "resource": resource,
            "attempts": self.attempts,
            "timestamp": self.timestamp,
            "last_error": self.last_error,
        })
    }
}

/// `network` -> [`Kind::Network`] etc.
pub fn kind_from_type(t: &str) -> Option<Kind> {
    match t {
        "network" => Some(Kind::Network),
        "subnet" => Some(Kind::Subnet),
        "port" => Some(Kind::Port),
        "router" => Some(Kind::Router),
        _ => None,
    }
}

/// `Kind::Network` -> `network`.
pub fn type_of(kind: Kind) -> &'static str {
    kind.singular()
}

/// Current UTC time as Neutron/Tricircle show it.
pub fn now_string() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    wyvern_model::Timestamp(secs).to_string()
}

/// Why the cascade's state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("failed to load the cascade state from the store: {0}")]
    Load(#[source] StoreError),
    #[error("failed to decode stored cascade object {key}: {source}")]
    Decode {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("failed to commit the cascade state: {0}")]
    Commit(#[source] StoreError),
    #[error("failed to commit the cascade state: the store refused the transaction")]
    Refused,
}

/// The key of a routing: pod, resource type, top id.
pub type RoutingKey = (Uuid, Kind, Uuid);

/// Everything the cascade knows, in memory.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub pods: BTreeMap<Uuid, Pod>,
    pub routings: HashMap<RoutingKey, Routing>,
    /// By `seq`: the execution order.
    pub jobs: BTreeMap<u64, Job>,
    pub cursor: Revision,
    pub next_seq: u64,
}

impl Snapshot {
    pub fn routing(&self, pod: Uuid, kind: Kind, top: Uuid) -> Option<&Routing> {
        self.routings.get(&(pod, kind, top))
    }

    /// Pods holding a copy of `(kind, top)`.
    pub fn pods_with(&self, kind: Kind, top: Uuid) -> Vec<Uuid> {
        self.pods
            .keys()
            .copied()
            .filter(|p| self.routings.contains_key(&(*p, kind, top)))
            .collect()
    }

    pub fn job_by_id(&self, id: Uuid) -> Option<&Job> {
        self.jobs.values().find(|j| j.id == id)
    }

    /// A job for this resource that has not started yet (a new one would do the same work:
    /// jobs read the top when they run).
    fn pending_job(&self, pod: Uuid, kind: Kind, id: Uuid) -> bool {
        self.jobs.values().any(|j| {
            j.status == JobStatus::New
                && j.pod_id == pod
                && j.resource_id == id
                && j.kind() == Some(kind)
        })
    }
}

fn routing_key(r: &RoutingKey) -> String {
    format!("{ROUTING_PREFIX}{}/{}/{}", r.0, type_of(r.1), r.2)
}
fn job_key(seq: u64) -> String {
    format!("{JOB_PREFIX}{seq:020}")
}
fn pod_key(id: Uuid) -> String {
    format!("{POD_PREFIX}{id}")
}

/// A set of changes to the state, committed atomically by [`Ledger::commit`].
#[derive(Debug, Default)]
pub struct Batch {
    pods: Vec<(Uuid, Option<Pod>)>,
    routings: Vec<(RoutingKey, Option<Routing>)>,
    jobs: Vec<(u64, Option<Job>)>,
    cursor: Option<Revision>,
    /// Jobs queued by this batch (`enqueue`), to number them at commit.
    new_jobs: Vec<(Uuid, Kind, Uuid, String)>,
}

impl Batch {
    pub fn put_pod(&mut self, p: Pod) {
        self.pods.push((p.pod_id, Some(p)));
    }
    pub fn delete_pod(&mut self, id: Uuid) {
        self.pods.push((id, None));
    }
    pub fn put_routing(&mut self, kind: Kind, r: Routing) {
        self.routings.push(((r.pod_id, kind, r.top_id), Some(r)));
    }
    pub fn delete_routing(&mut self, key: RoutingKey) {
        self.routings.push((key, None));
    }
    pub fn put_job(&mut self, j: Job) {
        self.jobs.push((j.seq, Some(j)));
    }
    pub fn delete_job(&mut self, seq: u64) {
        self.jobs.push((seq, None));
    }
    pub fn cursor(&mut self, rev: Revision) {
        self.cursor = Some(rev);
    }
    /// Queues a sync job for `(kind, id)` in `pod` unless one is already waiting (in the
    /// store or earlier in this batch).
    pub fn enqueue(&mut self, pod: Uuid, kind: Kind, id: Uuid, project: &str) {
        if !self
            .new_jobs
            .iter()
            .any(|(p, k, i, _)| *p == pod && *k == kind && *i == id)
        {
            self.new_jobs.push((pod, kind, id, project.to_owned()));
        }
    }
    /// `(pod, kind, id)` of the jobs queued so far, in order.
    pub fn queued(&self) -> Vec<(Uuid, Kind, Uuid)> {
        self.new_jobs
            .iter()
            .map(|(p, k, i, _)| (*p, *k, *i))
            .collect()
    }
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
            && self.routings.is_empty()
            && self.jobs.is_empty()
            && self.cursor.is_none()
            && self.new_jobs.is_empty()
    }
}

/// The state plus the store behind it.
pub struct Ledger {
    store: Arc<dyn Store>,
    inner: Mutex<Snapshot>,
    /// Woken whenever jobs are queued or re-queued.
    pub jobs_changed: Notify,
}

impl Ledger {
    /// Loads the state; jobs that were running when the cascade stopped are new again.
    pub async fn open(store: Arc<dyn Store>) -> Result<Arc<Ledger>, StateError> {
        let (kvs, _) = store.range(STATE_PREFIX).await.map_err(StateError::Load)?;
        let mut s = Snapshot::default();
        let decode = |key: &str, v: &[u8]| -> Result<serde_json::Value, StateError> {
            serde_json::from_slice(v).map_err(|source| StateError::Decode {
                key: key.to_owned(),
                source,
            })
        };
        for kv in &kvs {
            let k = kv.key.as_str();
            let bad = |source| StateError::Decode {
                key: k.to_owned(),
                source,
            };
            if k.starts_with(POD_PREFIX) {
                let p: Pod = serde_json::from_slice(&kv.value).map_err(bad)?;
                s.pods.insert(p.pod_id, p);
            } else if k.starts_with(ROUTING_PREFIX) {
                let r: Routing = serde_json::from_slice(&kv.value).map_err(bad)?;
                if let Some(kind) = kind_from_type(&r.resource_type) {
                    s.routings.insert((r.pod_id, kind, r.top_id), r);
                }
            } else if k.starts_with(JOB_PREFIX) {
                let mut j: Job = serde_json::from_slice(&kv.value).map_err(bad)?;
                if j.status == JobStatus::Running {
                    j.status = JobStatus::New;
                }
                s.next_seq = s.next_seq.max(j.seq + 1);
                s.jobs.insert(j.seq, j);
            } else if k == CURSOR_KEY {
                let v = decode(k, &kv.value)?;
                s.cursor = Revision(v.as_u64().unwrap_or(0));
            }
        }
        Ok(Arc::new(Ledger {
            store,
            inner: Mutex::new(s),
            jobs_changed: Notify::new(),
        }))
    }

    /// A consistent view (cloned: callers never hold the lock across I/O).
    pub async fn snapshot(&self) -> Snapshot {
        self.inner.lock().await.clone()
    }

    /// Runs `f` on the state without copying it.
    pub async fn read<R>(&self, f: impl FnOnce(&Snapshot) -> R) -> R {
        let g = self.inner.lock().await;
        f(&g)
    }

    /// The state if nobody holds the lock right now (for scrapes, which must not block).
    pub fn try_read(&self) -> Option<MutexGuard<'_, Snapshot>> {
        self.inner.try_lock().ok()
    }

    /// Holds the state lock: the caller builds a batch from what it sees and commits it with
    /// [`Ledger::commit_locked`] without anyone changing the state in between.
    pub async fn lock(&self) -> MutexGuard<'_, Snapshot> {
        self.inner.lock().await
    }

    /// Commits `batch` (durably) and applies it to memory. Returns the jobs it queued.
    pub async fn commit(&self, batch: Batch) -> Result<Vec<Job>, StateError> {
        let mut g = self.inner.lock().await;
        self.commit_locked(&mut g, batch).await
    }

    /// [`Ledger::commit`] under a lock the caller already holds.
    pub async fn commit_locked(
        &self,
        s: &mut Snapshot,
        mut batch: Batch,
    ) -> Result<Vec<Job>, StateError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_string();
        let mut queued = Vec::new();
        let mut seq = s.next_seq;
        for (pod, kind, id, project) in std::mem::take(&mut batch.new_jobs) {
            if s.pending_job(pod, kind, id) || !s.pods.contains_key(&pod) {
                continue;
            }
            let j = Job {
                id: Uuid::new_v4(),
                seq,
                project_id: project,
                job_type: format!("{}_sync", type_of(kind)),
                status: JobStatus::New,
                pod_id: pod,
                resource_type: type_of(kind).to_owned(),
                resource_id: id,
                attempts: 0,
                timestamp: now.clone(),
                last_error: String::new(),
            };
            seq += 1;
            queued.push(j.clone());
            batch.jobs.push((j.seq, Some(j)));
        }
        // Drop the oldest finished jobs beyond the retention.
        let finished: Vec<u64> = s
            .jobs
            .values()
            .filter(|j| j.status == JobStatus::Success)
            .map(|j| j.seq)
            .collect();
        if finished.len() > KEEP_FINISHED + 100 {
            for seq in &finished[..finished.len() - KEEP_FINISHED] {
                if !batch.jobs.iter().any(|(s, _)| s == seq) {
                    batch.jobs.push((*seq, None));
                }
            }
        }
        let mut txn = Txn::new();
        for (id, p) in &batch.pods {
            txn = match p {
                Some(p) => txn.put(pod_key(*id), json(p)),
                None => txn.delete(pod_key(*id)),
            };
        }
        for (k, r) in &batch.routings {
            txn = match r {
                Some(r) => txn.put(routing_key(k), json(r)),
                None => txn.delete(routing_key(k)),
            };
        }
        for (seq, j) in &batch.jobs {
            txn = match j {
                Some(j) => txn.put(job_key(*seq), json(j)),
                None => txn.delete(job_key(*seq)),
            };
        }
        if let Some(c) = batch.cursor {
            txn = txn.put(CURSOR_KEY, c.0.to_string());
        }
        let r = self.store.txn(txn).await.map_err(StateError::Commit)?;
        if !r.succeeded {
            return Err(StateError::Refused);
        }
        for (id, p) in batch.pods {
            match p {
                Some(p) => {
                    s.pods.insert(id, p);
                }
                None => {
                    s.pods.remove(&id);
                }
            }
        }
        for (k, r) in batch.routings {
            match r {
                Some(r) => {
                    s.routings.insert(k, r);
                }
                None => {
                    s.routings.remove(&k);
                }
            }
        }
        for (seq, j) in batch.jobs {
            match j {
                Some(j) => {
                    s.jobs.insert(seq, j);
                }
                None => {
                    s.jobs.remove(&seq);
                }
            }
        }
        if let Some(c) = batch.cursor {
            s.cursor = c;
        }
        s.next_seq = seq;
        if !queued.is_empty() {
            self.jobs_changed.notify_waiters();
        }
        Ok(queued)
    }

    /// Marks a job running in memory only: after a crash it is simply new again.
    pub async fn mark_running(&self, seq: u64) {
        if let Some(j) = self.inner.lock().await.jobs.get_mut(&seq) {
            j.status = JobStatus::Running;
        }
    }
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    // These types serialize infallibly (no maps with non-string keys).
    serde_json::to_vec(v).unwrap_or_default()
}
