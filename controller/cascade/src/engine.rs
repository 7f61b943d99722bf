//! The cascade's loops: the watcher turning top changes into jobs, one worker per pod
//! running that pod's jobs in order, and one status poller per pod bringing port status up.
//!
//! # Why nothing is lost or duplicated
//! - The watcher follows the top store's watch from the persisted cursor and writes the jobs
//!   of a batch of events together with the new cursor in one transaction. After a crash it
//!   resumes from the cursor; events handled twice only queue jobs that find nothing to do.
//! - A job looks up the routing, then the bottom object by id (bottom ids equal top ids),
//!   before creating; a create that races with an earlier, unacknowledged one gets a 409
//!   "already exists" and counts as done. The routing is recorded in the same transaction
//!   that marks the job done.
//! - A pod's jobs run one at a time in queue order. A job that cannot reach its pod stays
//!   at the head of that pod's queue and is retried with backoff, so later jobs of the pod
//!   (which may depend on it) wait, while other pods' workers are independent.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use uuid::Uuid;
use wyvern_api::NbService;
use wyvern_model::{Kind, KEY_PREFIX};
use wyvern_store::{Revision, Store, StoreError};

use crate::bottom::{Bottom, BottomError};
use crate::metrics::Metrics;
use crate::state::{Batch, Job, JobStatus, Ledger, Routing};
use crate::sync;

/// Shared handles of the running service.
pub struct Engine {
    pub svc: Arc<NbService>,
    pub store: Arc<dyn Store>,
    pub ledger: Arc<Ledger>,
    pub http: reqwest::Client,
    pub metrics: Metrics,
    /// How often each pod's port status is read.
    pub status_interval: Duration,
    /// Longest pause between retries of a job whose pod is unreachable.
    pub max_backoff: Duration,
}

impl Engine {
    /// Starts the watcher and the supervisor of per-pod tasks.
    pub fn start(self: &Arc<Self>) {
        let e = self.clone();
        tokio::spawn(async move { e.watch_loop().await });
        let e = self.clone();
        tokio::spawn(async move { e.supervise().await });
    }

    /// Queues a sync of everything `pod` should hold (a new pod, a redo of a whole pod).
    pub async fn resync_pod(&self, pod: Uuid) -> Result<(), crate::state::StateError> {
        let mut g = self.ledger.lock().await;
        let mut b = Batch::default();
        self.svc.read(|t| sync::resync_pod(&mut b, t, &g, pod));
        self.ledger.commit_locked(&mut g, b).await.map(|_| ())
    }

    async fn watch_loop(self: Arc<Self>) {
        let mut fps = sync::Fingerprints::default();
        let mut pause = Duration::from_millis(100);
        loop {
            match self.follow(&mut fps).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "top watch interrupted; resuming from the cursor");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Follows the top store from the cursor; returns `Ok` when the store shuts down.
    async fn follow(&self, fps: &mut sync::Fingerprints) -> Result<(), String> {
        let cursor = self.ledger.read(|s| s.cursor).await;
        let mut stream = match cursor {
            Revision(0) => self.resync_all().await?,
            c => match self.store.watch(KEY_PREFIX, Revision(c.0 + 1)).await {
                Ok(s) => s,
                Err(StoreError::Compacted { .. }) => self.resync_all().await?,
                Err(e) => return Err(e.to_string()),
            },
        };
        loop {
            let Some(first) = stream.next().await else {
                return Ok(());
            };
            let mut events = vec![first];
            while events.len() < 1024 {
                match stream.next().now_or_never() {
                    Some(Some(ev)) => events.push(ev),
                    _ => break,
                }
            }
            let mut last = Revision(0);
            let mut changed = Vec::with_capacity(events.len());
            for ev in events {
                match ev {
                    Ok(ev) => {
                        last = ev.revision();
                        if let Some(kc) = wyvern_model::parse_key(&ev.kv.key) {
                            changed.push(kc);
                        }
                    }
                    // Resumed from the cursor by `watch_loop`, which resyncs if needed.
                    Err(StoreError::Compacted { .. }) => {
                        return Err("watch fell behind the history".into());
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
            let mut g = self.ledger.lock().await;
            let mut b = Batch::default();
            self.svc.read(|t| {
                for (kind, id) in changed {
                    sync::on_change(&mut b, fps, t, &g, kind, id);
                }
            });
            // The last revision may continue in the next read of the stream: resume at it.
            b.cursor(Revision(last.0.saturating_sub(1).max(g.cursor.0)));
            let queued = self
                .ledger
                .commit_locked(&mut g, b)
                .await
                .map_err(|e| e.to_string())?;
            drop(g);
            for j in &queued {
                self.metrics.job_queued(&j.job_type);
            }
        }
    }

    /// Queues a sync of every pod from the top's current state and watches from there.
    async fn resync_all(&self) -> Result<wyvern_store::WatchStream, String> {
        let rev = self.store.revision().await.map_err(|e| e.to_string())?;
        let stream = self
            .store
            .watch(KEY_PREFIX, Revision(rev.0 + 1))
            .await
            .map_err(|e| e.to_string())?;
        let mut g = self.ledger.lock().await;
        let mut b = Batch::default();
        let pods: Vec<Uuid> = g.pods.keys().copied().collect();
        self.svc.read(|t| {
            for p in pods {
                sync::resync_pod(&mut b, t, &g, p);
            }
        });
        b.cursor(rev);
        self.ledger
            .commit_locked(&mut g, b)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(revision = %rev, "queued a full resync of every pod");
        Ok(stream)
    }

    /// Keeps one worker and one status poller per pod.
    async fn supervise(self: Arc<Self>) {
        let mut tasks: HashMap<Uuid, (tokio::task::JoinHandle<()>, tokio::task::JoinHandle<()>)> =
            HashMap::new();
        loop {
            let notified = self.ledger.jobs_changed.notified();
            let pods: Vec<Uuid> = self.ledger.read(|s| s.pods.keys().copied().collect()).await;
            tasks.retain(|id, (w, p)| {
                let keep = pods.contains(id);
                if !keep {
                    w.abort();
                    p.abort();
                }
                keep
            });
            for pod in pods {
                tasks.entry(pod).or_insert_with(|| {
                    let e = self.clone();
                    let w = tokio::spawn(async move { e.worker(pod).await });
                    let e = self.clone();
                    let p = tokio::spawn(async move { e.status_poller(pod).await });
                    (w, p)
                });
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
        }
    }

    /// Runs `pod`'s jobs in order.
    async fn worker(self: Arc<Self>, pod: Uuid) {
        loop {
            let notified = self.ledger.jobs_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next = self
                .ledger
                .read(|s| {
                    s.jobs
                        .values()
                        .find(|j| j.pod_id == pod && j.status == JobStatus::New)
                        .cloned()
                })
                .await;
            let Some(job) = next else {
                let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
                continue;
            };
            self.ledger.mark_running(job.seq).await;
            let outcome = self.run_job(&job).await;
            if let Err(e) = self.finish(job, outcome).await {
                tracing::error!(error = %e, "failed to record a job's outcome; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    async fn finish(
        &self,
        mut job: Job,
        outcome: Result<Done, BottomError>,
    ) -> Result<(), crate::state::StateError> {
        job.attempts += 1;
        let mut b = Batch::default();
        let mut backoff = None;
        match outcome {
            Ok(done) => {
                job.status = JobStatus::Success;
                job.last_error.clear();
                if let Some(kind) = job.kind() {
                    match done {
                        Done::Present(Some(r)) => b.put_routing(kind, r),
                        Done::Absent(true) => b.delete_routing((job.pod_id, kind, job.resource_id)),
                        _ => {}
                    }
                }
                self.metrics.job_done(&job.job_type, "success");
            }
            Err(e) if e.is_retryable() => {
                job.status = JobStatus::New;
                job.last_error = e.to_string();
                let shift = job.attempts.min(8);
                backoff = Some((Duration::from_millis(50) * (1 << shift)).min(self.max_backoff));
                self.metrics.retry(&job.job_type);
                tracing::debug!(job = %job.id, error = %e, "pod unreachable; will retry");
            }
            Err(e) => {
                job.status = JobStatus::Fail;
                job.last_error = e.to_string();
                tracing::warn!(job = %job.id, error = %e, "job failed");
                self.metrics.job_done(&job.job_type, "fail");
            }
        }
        // A job deleted through the admin API meanwhile stays deleted.
        let mut g = self.ledger.lock().await;
        if g.jobs.contains_key(&job.seq) {
            b.put_job(job);
            self.ledger.commit_locked(&mut g, b).await?;
        }
        drop(g);
        if let Some(d) = backoff {
            tokio::time::sleep(d).await;
        }
        Ok(())
    }

    /// One attempt of a job.
    async fn run_job(&self, job: &Job) -> Result<Done, BottomError> {
        let kind = job.kind().ok_or_else(|| BottomError::Refused {
            pod: job.pod_id.to_string(),
            what: format!("job {}", job.id),
            status: 400,
            body: format!("unknown resource type {}", job.resource_type),
        })?;
        let (pod, routing, want) = self
            .ledger
            .read(|s| {
                let pod = s.pods.get(&job.pod_id).cloned();
                let routing = s.routing(job.pod_id, kind, job.resource_id).cloned();
                let want = self.svc.read(|t| {
                    if sync::wanted(t, s, job.pod_id, kind, job.resource_id) {
                        sync::bottom_body(t, s, job.pod_id, kind, job.resource_id)
                    } else {
                        None
                    }
                });
                (pod, routing, want)
            })
            .await;
        let pod = pod.ok_or_else(|| BottomError::Refused {
            pod: job.pod_id.to_string(),
            what: format!("job {}", job.id),
            status: 404,
            body: "the pod was deleted".into(),
        })?;
        let bottom = Bottom::new(self.http.clone(), &pod);
        let bottom_id = routing.as_ref().map_or(job.resource_id, |r| r.bottom_id);
        match want {
            Some((body, fields)) => {
                match bottom.show(kind, bottom_id).await? {
                    Some(cur) => {
                        if let Some(upd) = sync::diff(&body, &cur, fields) {
                            bottom.update(kind, bottom_id, upd).await?;
                        }
                    }
                    None => {
                        bottom
                            .create(kind, sync::create_body(kind, body.clone()))
                            .await?;
                        if kind == Kind::Router {
                            if let Some(upd) =
                                sync::diff(&body, &serde_json::json!({"routes": []}), &["routes"])
                            {
                                bottom.update(kind, bottom_id, upd).await?;
                            }
                        }
                    }
                }
                let routing = match routing {
                    Some(_) => None,
                    None => {
                        let now = crate::state::now_string();
                        Some(Routing {
                            id: Uuid::new_v4(),
                            top_id: job.resource_id,
                            bottom_id,
                            pod_id: job.pod_id,
                            project_id: body["project_id"].as_str().unwrap_or("").to_owned(),
                            resource_type: job.resource_type.clone(),
                            created_at: now.clone(),
                            updated_at: now,
                        })
                    }
                };
                Ok(Done::Present(routing))
            }
            None => {
                let Some(_) = routing else {
                    return Ok(Done::Absent(false));
                };
                if kind == Kind::Port {
                    if let Some(cur) = bottom.show(kind, bottom_id).await? {
                        if cur["device_owner"] == wyvern_model::DEVICE_OWNER_ROUTER_INTERFACE {
                            if let Ok(r) = cur["device_id"].as_str().unwrap_or("").parse() {
                                bottom.remove_interface(r, bottom_id).await?;
                                return Ok(Done::Absent(true));
                            }
                        }
                    }
                }
                bottom.delete(kind, bottom_id).await?;
                Ok(Done::Absent(true))
            }
        }
    }

    /// Brings the status of the pod's ports up to the top ports placed there.
    async fn status_poller(self: Arc<Self>, pod_id: Uuid) {
        let mut up: Option<bool> = None;
        loop {
            tokio::time::sleep(self.status_interval).await;
            let Some(pod) = self.ledger.read(|s| s.pods.get(&pod_id).cloned()).await else {
                return;
            };
            let bottom = Bottom::new(self.http.clone(), &pod);
            let statuses = match bottom.port_statuses().await {
                Ok(s) => s,
                Err(e) => {
                    if up != Some(false) {
                        tracing::warn!(pod = %pod.region_name, error = %e, "pod unreachable");
                        self.metrics.pod_up(&pod.region_name, false);
                        up = Some(false);
                    }
                    continue;
                }
            };
            if up != Some(true) {
                tracing::info!(pod = %pod.region_name, "pod reachable");
                self.metrics.pod_up(&pod.region_name, true);
                up = Some(true);
            }
            let changes: Vec<(Uuid, String)> = self
                .ledger
                .read(|s| {
                    self.svc.read(|t| {
                        statuses
                            .into_iter()
                            .filter(|(id, st)| {
                                s.routing(pod_id, Kind::Port, *id).is_some()
                                    && t.get_port(id).is_some_and(|p| {
                                        sync::placement(p, s) == Some(pod_id) && p.status != *st
                                    })
                            })
                            .collect()
                    })
                })
                .await;
            for (id, st) in changes {
                if let Err(e) = set_port_status(&self.svc, id, &st).await {
                    tracing::warn!(port = %id, error = %e, "failed to set the top port's status");
                }
            }
        }
    }
}

/// What a successful job did.
pub enum Done {
    /// The bottom holds the object; a routing to record if there was none.
    Present(Option<Routing>),
    /// The bottom does not hold the object; `true` if a routing must be removed.
    Absent(bool),
}

/// Writes a top port's status the way wyvernd's daemon does (a model change through the
/// northbound service), if it differs.
pub async fn set_port_status(
    svc: &NbService,
    port: Uuid,
    status: &str,
) -> Result<(), wyvern_api::ApiError> {
    svc.write(|topo| {
        let mut change = wyvern_model::Change::default();
        if let Some(old) = topo.get_port(&port) {
            if old.status != status && !old.is_router_interface() {
                let mut p = (**old).clone();
                p.status = status.to_owned();
                p.revision_number += 1;
                change.ops.push(wyvern_model::ChangeOp {
                    kind: Kind::Port,
                    id: port,
                    old: Some(wyvern_model::Object::Port(old.clone())),
                    new: Some(wyvern_model::Object::Port(Arc::new(p))),
                });
            }
        }
        Ok((change, ()))
    })
    .await
}
