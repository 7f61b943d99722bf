//! The service: providers (banks), the source wyvernd, the state file, and the operations the
//! API and the scheduler run (protect, restore, verify, retention).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use uuid::Uuid;
use wyvern_model::Timestamp;

use crate::bank::{now_secs, Bank, BankConfig, BankError, CheckpointMeta, CheckpointRecord};
use crate::cron::Cron;
use crate::metrics::Metrics;
use crate::neutron::{Endpoint, NeutronClient};
use crate::protect::{begin, finish, recover, Owner, ProtectOutcome};
use crate::restore::{load, restore, RestoreOptions};
use crate::state::{
    OperationLog, Plan, RestoreRecord, State, StateError, StateFile, VerificationRecord, MAX_LOGS,
};

/// A provider as configured: Karbor's admin-curated bundle, here one bank.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderConfig {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub bank: BankConfig,
}

/// The line the binary prints on stdout once it serves: this prefix, then its URL.
pub const READY_PREFIX: &str = "wyvern-checkpoint listening on ";

/// Id of the provider used when the config names none (Karbor's "OS Infra Provider" id).
pub const DEFAULT_PROVIDER_ID: &str = "cf56bd3e-97a7-4078-b6d5-f36246333fd9";

/// An opened provider.
#[derive(Debug)]
pub struct Provider {
    pub config: ProviderConfig,
    pub bank: Bank,
}

/// Everything the service needs to start.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub data_dir: PathBuf,
    pub source: Endpoint,
    pub providers: Vec<ProviderConfig>,
}

/// Service-level failures (mapped to HTTP answers by the API).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("failed to create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    State(#[from] StateError),
    #[error("failed to open the bank of provider {provider}: {source}")]
    OpenBank {
        provider: String,
        #[source]
        source: BankError,
    },
    #[error("provider {0} could not be found")]
    ProviderNotFound(String),
    #[error("plan {0} could not be found")]
    PlanNotFound(String),
    #[error("checkpoint {0} could not be found")]
    CheckpointNotFound(String),
    #[error("checkpoint {id} is {status}, not available")]
    CheckpointNotAvailable { id: String, status: String },
    #[error("failed to access the bank: {0}")]
    Bank(#[from] BankError),
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// The running service.
pub struct Service {
    pub providers: BTreeMap<String, Arc<Provider>>,
    pub source: Endpoint,
    pub owner: Owner,
    pub metrics: Metrics,
    state: Mutex<State>,
    file: StateFile,
    /// Per scheduled operation, the flag that stops its loop (a loop is never aborted: a
    /// checkpoint it started finishes and gets its retention).
    schedules: std::sync::Mutex<HashMap<String, Arc<std::sync::atomic::AtomicBool>>>,
}

pub fn timestamp(secs: u64) -> String {
    Timestamp(secs).to_string()
}

fn service_id(dir: &std::path::Path) -> Result<String, ServiceError> {
    let p = dir.join("service-id");
    if let Ok(s) = std::fs::read_to_string(&p) {
        let s = s.trim().to_string();
        if !s.is_empty() {
            return Ok(s);
        }
    }
    let id = Uuid::new_v4().to_string();
    std::fs::write(&p, &id).map_err(|source| ServiceError::DataDir { path: p, source })?;
    Ok(id)
}

impl Service {
    /// Opens state and banks, marks checkpoints a previous run left unfinished as `error`,
    /// and starts the scheduled operations.
    pub async fn open(cfg: ServiceConfig, metrics: Metrics) -> Result<Arc<Service>, ServiceError> {
        std::fs::create_dir_all(&cfg.data_dir).map_err(|source| ServiceError::DataDir {
            path: cfg.data_dir.clone(),
            source,
        })?;
        let file = StateFile::new(&cfg.data_dir);
        let state = file.load()?;
        let owner = Owner {
            service: service_id(&cfg.data_dir)?,
            run: Uuid::new_v4().to_string(),
        };
        let mut provs = cfg.providers.clone();
        if provs.is_empty() {
            provs.push(ProviderConfig {
                id: DEFAULT_PROVIDER_ID.into(),
                name: "wyvern filesystem provider".into(),
                description: "Protects wyvern networks into a local directory bank".into(),
                bank: BankConfig::Fs {
                    path: cfg.data_dir.join("bank"),
                },
            });
        }
        let mut providers = BTreeMap::new();
        for p in provs {
            let bank = Bank::open(&p.bank).map_err(|source| ServiceError::OpenBank {
                provider: p.id.clone(),
                source,
            })?;
            match recover(&bank, &owner).await {
                Ok(marked) if !marked.is_empty() => {
                    tracing::warn!(provider = %p.id, checkpoints = ?marked, "marked interrupted checkpoints as error")
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(provider = %p.id, error = %e, "failed to scan the bank for interrupted checkpoints")
                }
            }
            providers.insert(p.id.clone(), Arc::new(Provider { config: p, bank }));
        }
        let svc = Arc::new(Service {
            providers,
            source: cfg.source,
            owner,
            metrics,
            state: Mutex::new(state),
            file,
            schedules: std::sync::Mutex::new(HashMap::new()),
        });
        let ops: Vec<String> = svc
            .state
            .lock()
            .await
            .scheduled_operations
            .keys()
            .cloned()
            .collect();
        for id in ops {
            svc.schedule(&id).await;
        }
        Ok(svc)
    }

    pub fn provider(&self, id: &str) -> Result<&Arc<Provider>, ServiceError> {
        self.providers
            .get(id)
            .ok_or_else(|| ServiceError::ProviderNotFound(id.to_string()))
    }

    /// Reads the state.
    pub async fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&*self.state.lock().await)
    }

    /// Changes the state and persists it before answering (on a failed save the in-memory
    /// state is rolled back, so memory never runs ahead of disk).
    pub async fn write<T>(
        &self,
        f: impl FnOnce(&mut State) -> Result<T, ServiceError>,
    ) -> Result<T, ServiceError> {
        let mut g = self.state.lock().await;
        let mut next = g.clone();
        let out = f(&mut next)?;
        if next.operation_logs.len() > MAX_LOGS {
            let drop = next.operation_logs.len() - MAX_LOGS;
            next.operation_logs.drain(..drop);
        }
        self.file.save(&next)?;
        *g = next;
        Ok(out)
    }

    async fn log(&self, entry: OperationLog) {
        if let Err(e) = self
            .write(|s| {
                if let Some(old) = s.operation_logs.iter_mut().find(|l| l.id == entry.id) {
                    *old = entry;
                } else {
                    s.operation_logs.push(entry);
                }
                Ok(())
            })
            .await
        {
            tracing::warn!(error = %e, "failed to record an operation log");
        }
    }

    /// Starts a checkpoint of `plan_id` and returns its meta at once (status `protecting`);
    /// the protection runs in the background.
    pub async fn start_checkpoint(
        self: &Arc<Self>,
        project_id: &str,
        provider_id: &str,
        plan_id: &str,
        extra_info: serde_json::Value,
        scheduled_operation_id: Option<String>,
    ) -> Result<
        (
            CheckpointMeta,
            tokio::task::JoinHandle<Option<ProtectOutcome>>,
        ),
        ServiceError,
    > {
        let provider = self.provider(provider_id)?.clone();
        let plan: Plan = self
            .read(|s| s.plans.get(plan_id).cloned())
            .await
            .filter(|p| p.project_id == project_id || project_id.is_empty())
            .ok_or_else(|| ServiceError::PlanNotFound(plan_id.to_string()))?;
        if plan.provider_id != provider_id {
            return Err(ServiceError::Invalid(format!(
                "plan {plan_id} belongs to provider {}, not {provider_id}",
                plan.provider_id
            )));
        }
        let meta = CheckpointMeta {
            id: Uuid::now_v7().to_string(),
            project_id: plan.project_id.clone(),
            provider_id: provider_id.to_string(),
            plan_id: plan.id.clone(),
            plan_name: plan.name.clone(),
            resources: plan.resources.clone(),
            created_at: now_secs(),
            extra_info,
            owner: self.owner.service.clone(),
        };
        let log_id = Uuid::new_v4().to_string();
        let mut log = OperationLog {
            id: log_id,
            project_id: plan.project_id.clone(),
            operation_type: "protect".into(),
            checkpoint_id: Some(meta.id.clone()),
            plan_id: Some(plan.id.clone()),
            provider_id: Some(provider_id.to_string()),
            restore_id: None,
            scheduled_operation_id,
            status: "protecting".into(),
            started_at: timestamp(meta.created_at),
            ended_at: None,
            error_info: None,
            extra_info: serde_json::Value::Null,
        };
        if let Err(e) = begin(&provider.bank, &meta, &self.owner).await {
            return Err(ServiceError::Invalid(format!(
                "failed to start the checkpoint: {e}"
            )));
        }
        self.log(log.clone()).await;
        let svc = self.clone();
        let m = meta.clone();
        let handle = tokio::spawn(async move {
            let src = NeutronClient::new(&svc.source);
            let start = Instant::now();
            let r = finish(&provider.bank, &src, &m).await;
            let secs = start.elapsed().as_secs_f64();
            log.ended_at = Some(timestamp(now_secs()));
            let out = match r {
                Ok(o) => {
                    svc.metrics
                        .checkpoint_done(&provider.config.id, true, secs, o.bytes);
                    log.status = "available".into();
                    log.extra_info = serde_json::json!({"bytes": o.bytes, "seconds": o.seconds});
                    tracing::info!(checkpoint = %m.id, bytes = o.bytes, seconds = o.seconds, "checkpoint available");
                    Some(o)
                }
                Err(e) => {
                    svc.metrics
                        .checkpoint_done(&provider.config.id, false, secs, 0);
                    log.status = "error".into();
                    log.error_info = Some(e.to_string());
                    tracing::warn!(checkpoint = %m.id, error = %e, "checkpoint failed");
                    None
                }
            };
            svc.log(log).await;
            out
        });
        Ok((meta, handle))
    }

    /// Every checkpoint of a provider visible to `project_id` (all for an admin listing with
    /// an empty project), oldest first.
    pub async fn checkpoints(
        &self,
        provider_id: &str,
        project_id: Option<&str>,
    ) -> Result<Vec<CheckpointRecord>, ServiceError> {
        let p = self.provider(provider_id)?;
        let ids = p.bank.checkpoint_ids().await?;
        let recs = futures::future::join_all(ids.iter().map(|id| p.bank.checkpoint(id))).await;
        let mut out = Vec::new();
        for r in recs {
            match r {
                Ok(rec) if project_id.is_none_or(|pid| rec.meta.project_id == pid) => out.push(rec),
                Ok(_) | Err(BankError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        out.sort_by(|a, b| (a.meta.created_at, &a.meta.id).cmp(&(b.meta.created_at, &b.meta.id)));
        Ok(out)
    }

    pub async fn checkpoint(
        &self,
        provider_id: &str,
        id: &str,
    ) -> Result<CheckpointRecord, ServiceError> {
        let p = self.provider(provider_id)?;
        match p.bank.checkpoint(id).await {
            Ok(r) => Ok(r),
            Err(BankError::NotFound(_)) => Err(ServiceError::CheckpointNotFound(id.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn delete_checkpoint(&self, provider_id: &str, id: &str) -> Result<(), ServiceError> {
        self.checkpoint(provider_id, id).await?;
        self.provider(provider_id)?
            .bank
            .delete_checkpoint(id)
            .await?;
        Ok(())
    }

    /// Starts a restore; the record is returned at once with status `in_progress`.
    pub async fn start_restore(
        self: &Arc<Self>,
        project_id: &str,
        provider_id: &str,
        checkpoint_id: &str,
        target: Option<Endpoint>,
        parameters: serde_json::Value,
    ) -> Result<(RestoreRecord, tokio::task::JoinHandle<()>), ServiceError> {
        let provider = self.provider(provider_id)?.clone();
        let rec = self.checkpoint(provider_id, checkpoint_id).await?;
        if rec.manifest.is_none() {
            return Err(ServiceError::CheckpointNotAvailable {
                id: checkpoint_id.to_string(),
                status: rec.status.as_str().into(),
            });
        }
        let record = RestoreRecord {
            id: Uuid::new_v4().to_string(),
            project_id: project_id.to_string(),
            provider_id: provider_id.to_string(),
            checkpoint_id: checkpoint_id.to_string(),
            restore_target: target.as_ref().map(|t| t.url.clone()),
            parameters,
            status: "in_progress".into(),
            resources_status: BTreeMap::new(),
            resources_reason: BTreeMap::new(),
            mappings: Vec::new(),
            created: 0,
            error: None,
            created_at: timestamp(now_secs()),
        };
        self.write(|s| {
            s.restores.insert(record.id.clone(), record.clone());
            Ok(())
        })
        .await?;
        let svc = self.clone();
        let r0 = record.clone();
        let target = target.unwrap_or_else(|| self.source.clone());
        let handle = tokio::spawn(async move {
            let start = Instant::now();
            let client = NeutronClient::new(&target);
            let mut r = r0;
            let outcome = async {
                let (_, contents) = load(&provider.bank, &r.checkpoint_id).await?;
                restore(&contents, &client, &RestoreOptions::default()).await
            }
            .await;
            match outcome {
                Ok(rep) => {
                    r.status = if rep.succeeded() { "success" } else { "fail" }.into();
                    r.created = rep.created.len();
                    r.resources_status = rep.resources_status;
                    r.resources_reason = rep.resources_reason;
                    r.mappings = rep.mappings;
                }
                Err(e) => {
                    r.status = "fail".into();
                    r.error = Some(e.to_string());
                }
            }
            svc.metrics
                .restore_done(r.status == "success", start.elapsed().as_secs_f64());
            tracing::info!(restore = %r.id, status = %r.status, seconds = start.elapsed().as_secs_f64(), "restore finished");
            let log = OperationLog {
                id: Uuid::new_v4().to_string(),
                project_id: r.project_id.clone(),
                operation_type: "restore".into(),
                checkpoint_id: Some(r.checkpoint_id.clone()),
                plan_id: None,
                provider_id: Some(r.provider_id.clone()),
                restore_id: Some(r.id.clone()),
                scheduled_operation_id: None,
                status: r.status.clone(),
                started_at: r.created_at.clone(),
                ended_at: Some(timestamp(now_secs())),
                error_info: r.error.clone(),
                extra_info: serde_json::Value::Null,
            };
            let saved = svc
                .write(|s| {
                    s.restores.insert(r.id.clone(), r);
                    Ok(())
                })
                .await;
            if let Err(e) = saved {
                tracing::warn!(error = %e, "failed to record a restore");
            }
            svc.log(log).await;
        });
        Ok((record, handle))
    }

    /// Verifies a checkpoint (every object's hash) and records the outcome.
    pub async fn verify(
        &self,
        project_id: &str,
        provider_id: &str,
        checkpoint_id: &str,
        parameters: serde_json::Value,
    ) -> Result<VerificationRecord, ServiceError> {
        let p = self.provider(provider_id)?;
        let rec = self.checkpoint(provider_id, checkpoint_id).await?;
        let mut v = VerificationRecord {
            id: Uuid::new_v4().to_string(),
            project_id: project_id.to_string(),
            provider_id: provider_id.to_string(),
            checkpoint_id: checkpoint_id.to_string(),
            parameters,
            status: "success".into(),
            resources_status: BTreeMap::new(),
            resources_reason: BTreeMap::new(),
            created_at: timestamp(now_secs()),
        };
        match &rec.manifest {
            None => {
                v.status = "fail".into();
                v.resources_reason.insert(
                    "manifest.json".into(),
                    format!("checkpoint is {}, it has no manifest", rec.status.as_str()),
                );
            }
            Some(m) => {
                let faults = p.bank.verify(m).await?;
                for o in &m.objects {
                    v.resources_status.insert(o.name.clone(), "verified".into());
                }
                for f in faults {
                    v.status = "fail".into();
                    v.resources_status.insert(f.object.clone(), "error".into());
                    v.resources_reason.insert(f.object, f.reason);
                }
            }
        }
        let out = v.clone();
        self.write(|s| {
            s.verifications.insert(v.id.clone(), v);
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// (Re)starts the loop of one scheduled operation; stops it if the operation is gone or
    /// disabled.
    pub async fn schedule(self: &Arc<Self>, op_id: &str) {
        self.unschedule(op_id);
        let found = self
            .read(|s| {
                let op = s.scheduled_operations.get(op_id)?.clone();
                let tr = s.triggers.get(&op.trigger_id)?.clone();
                Some((op, tr))
            })
            .await;
        let Some((op, trigger)) = found else { return };
        if !op.enabled {
            return;
        }
        let pattern = trigger.properties["pattern"].as_str().unwrap_or_default();
        let cron = match Cron::parse(pattern) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(operation = %op.id, error = %e, "scheduled operation not started");
                return;
            }
        };
        let svc = self.clone();
        let id = op.id.clone();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        tokio::spawn(async move {
            let mut last = now_secs();
            loop {
                let Some(next) = cron.next_after(last) else {
                    return;
                };
                let wait = next.saturating_sub(now_secs());
                tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
                // A sleep can end a little early against the wall clock: wait for the second.
                while now_secs() < next {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                last = next;
                if stopped.load(std::sync::atomic::Ordering::Acquire) {
                    return;
                }
                svc.run_scheduled(&op).await;
            }
        });
        if let Ok(mut g) = self.schedules.lock() {
            g.insert(id, stop);
        }
    }

    /// Stops a scheduled operation's loop.
    pub fn unschedule(&self, op_id: &str) {
        if let Ok(mut g) = self.schedules.lock() {
            if let Some(stop) = g.remove(op_id) {
                stop.store(true, std::sync::atomic::Ordering::Release);
            }
        }
    }

    async fn run_scheduled(self: &Arc<Self>, op: &crate::state::ScheduledOperation) {
        let def = &op.operation_definition;
        let (Some(plan_id), Some(provider_id)) =
            (def["plan_id"].as_str(), def["provider_id"].as_str())
        else {
            tracing::warn!(operation = %op.id, "scheduled operation without plan_id/provider_id");
            return;
        };
        let started = self
            .read(|s| s.plans.get(plan_id).map(|p| p.status == "started"))
            .await;
        if started != Some(true) {
            return;
        }
        let r = self
            .start_checkpoint(
                &op.project_id,
                provider_id,
                plan_id,
                serde_json::json!({"scheduled_operation_id": op.id}),
                Some(op.id.clone()),
            )
            .await;
        let handle = match r {
            Ok((_, h)) => h,
            Err(e) => {
                tracing::warn!(operation = %op.id, error = %e, "scheduled checkpoint not started");
                return;
            }
        };
        let _ = handle.await;
        let keep = def["max_backups"]
            .as_u64()
            .or_else(|| def["max_backups"].as_str().and_then(|s| s.parse().ok()));
        if let Some(keep) = keep.filter(|k| *k > 0) {
            if let Err(e) = self.retain(provider_id, plan_id, keep as usize).await {
                tracing::warn!(operation = %op.id, error = %e, "retention failed");
            }
        }
    }

    /// Retention: keeps the newest `keep` checkpoints of a plan, deletes the rest.
    pub async fn retain(
        &self,
        provider_id: &str,
        plan_id: &str,
        keep: usize,
    ) -> Result<usize, ServiceError> {
        let all: Vec<CheckpointRecord> = self
            .checkpoints(provider_id, None)
            .await?
            .into_iter()
            .filter(|c| c.meta.plan_id == plan_id)
            .collect();
        let excess = all.len().saturating_sub(keep);
        for c in &all[..excess] {
            self.provider(provider_id)?
                .bank
                .delete_checkpoint(&c.meta.id)
                .await?;
        }
        Ok(excess)
    }
}
