//! Banks: where checkpoints live. One layout over any `object_store` (a local directory or an
//! S3 bucket), so both banks share every line of checkpoint logic.
//!
//! Layout under the bank's root:
//! ```text
//! checkpoints/<id>/meta.json       written first: plan, project, created_at, owner
//! checkpoints/<id>/data/<object>   the protected resources, JSON arrays
//! checkpoints/<id>/manifest.json   written LAST: every object's sha256 and size, the cut
//! checkpoints/<id>/error.json      why a checkpoint failed (or was found interrupted)
//! leases/<id>.json                 who is writing <id>, until when (created with put-if-absent)
//! ```
//! A checkpoint is `available` iff its manifest exists: the manifest is written only after
//! every data object was written, so an interrupted checkpoint has no manifest and shows as
//! `protecting` while its lease is live and `error` afterwards, never `available`. Deletion
//! removes the manifest first for the same reason.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::graph::{hex, GraphNode, ResourceRef};

/// Bank configuration (the `bank` table of a provider in the config file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum BankConfig {
    /// A local directory (created if missing).
    Fs { path: std::path::PathBuf },
    /// An S3 bucket (AWS or any S3-compatible server).
    S3 {
        bucket: String,
        #[serde(default)]
        endpoint: Option<String>,
        #[serde(default = "default_region")]
        region: String,
        #[serde(default)]
        access_key_id: Option<String>,
        #[serde(default)]
        secret_access_key: Option<String>,
        /// Allow plain-HTTP endpoints (test servers).
        #[serde(default)]
        allow_http: bool,
        /// Key prefix inside the bucket.
        #[serde(default)]
        prefix: String,
    },
}

fn default_region() -> String {
    "us-east-1".into()
}

/// Bank failures, each naming the object involved.
#[derive(Debug, thiserror::Error)]
pub enum BankError {
    #[error("failed to open bank directory {path}: {source}")]
    OpenFs {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to open local bank {path}: {source}")]
    OpenLocal {
        path: std::path::PathBuf,
        #[source]
        source: Box<object_store::Error>,
    },
    #[error("failed to open S3 bank bucket {bucket}: {source}")]
    OpenS3 {
        bucket: String,
        #[source]
        source: Box<object_store::Error>,
    },
    #[error("failed to write bank object {path}: {source}")]
    Put {
        path: String,
        #[source]
        source: Box<object_store::Error>,
    },
    #[error("failed to read bank object {path}: {source}")]
    Get {
        path: String,
        #[source]
        source: Box<object_store::Error>,
    },
    #[error("failed to delete bank object {path}: {source}")]
    Delete {
        path: String,
        #[source]
        source: Box<object_store::Error>,
    },
    #[error("failed to list bank prefix {path}: {source}")]
    List {
        path: String,
        #[source]
        source: Box<object_store::Error>,
    },
    #[error("failed to decode bank object {path}: {source}")]
    Decode {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("failed to encode bank object {path}: {source}")]
    Encode {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("checkpoint {checkpoint} is leased by {owner} until {expires_at} (unix seconds)")]
    Leased {
        checkpoint: String,
        owner: String,
        expires_at: u64,
    },
    #[error("checkpoint {0} not found in the bank")]
    NotFound(String),
    #[error("failed to make bank file {path} durable (fsync): {source}")]
    Sync {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A lease: who writes a checkpoint, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub owner: String,
    /// The owner's process incarnation: a restarted service recognises its dead leases.
    pub run: String,
    pub expires_at: u64,
}

/// One data object of a checkpoint as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectEntry {
    pub name: String,
    pub sha256: String,
    pub size: u64,
    /// Resources in the object.
    pub count: usize,
}

/// How the protected state was cut (see `graph` module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cut {
    pub source_url: String,
    /// `"store-revision"`: one read of wyvernd's `GET /v2.0/wyvern/topology`;
    /// `"double-read"`: consecutive identical reads of a Neutron API without it.
    pub method: String,
    pub digest: String,
    pub reads: u32,
    /// The source's store revision of the cut (`None` for a double read).
    pub store_revision: Option<u64>,
}

/// The manifest: its presence makes a checkpoint `available`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub checkpoint_id: String,
    pub cut: Cut,
    pub objects: Vec<ObjectEntry>,
    pub resource_graph: Vec<GraphNode>,
    pub finished_at: u64,
}

pub const MANIFEST_FORMAT: &str = "wyvern-checkpoint/1";

/// What is written before any data: enough to list and show a checkpoint in any state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub id: String,
    pub project_id: String,
    pub provider_id: String,
    pub plan_id: String,
    pub plan_name: String,
    pub resources: Vec<ResourceRef>,
    pub created_at: u64,
    #[serde(default)]
    pub extra_info: serde_json::Value,
    pub owner: String,
}

/// Karbor's checkpoint status values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckpointStatus {
    Protecting,
    Available,
    Error,
    Deleting,
}

impl CheckpointStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointStatus::Protecting => "protecting",
            CheckpointStatus::Available => "available",
            CheckpointStatus::Error => "error",
            CheckpointStatus::Deleting => "deleting",
        }
    }
}

/// A checkpoint as read back from the bank.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointRecord {
    pub meta: CheckpointMeta,
    pub status: CheckpointStatus,
    pub manifest: Option<Manifest>,
    pub error: Option<String>,
}

/// A verification failure, naming the object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("object {object} failed verification: {reason}")]
pub struct ObjectFault {
    pub object: String,
    pub reason: String,
}

/// A bank: an object store plus the checkpoint layout.
#[derive(Clone)]
pub struct Bank {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    /// The directory of a filesystem bank. `object_store`'s local store (0.12) renames a
    /// written file into place without fsync, so a crash could lose a checkpoint that was
    /// reported available; the bank fsyncs the file and its directories itself.
    local_root: Option<std::path::PathBuf>,
    /// Printable location for messages.
    pub location: String,
}

impl std::fmt::Debug for Bank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bank({})", self.location)
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Bank {
    pub fn open(cfg: &BankConfig) -> Result<Bank, BankError> {
        match cfg {
            BankConfig::Fs { path } => {
                std::fs::create_dir_all(path).map_err(|source| BankError::OpenFs {
                    path: path.clone(),
                    source,
                })?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(path)
                    .map_err(|source| BankError::OpenLocal {
                        path: path.clone(),
                        source: Box::new(source),
                    })?
                    .with_automatic_cleanup(true);
                Ok(Bank {
                    store: Arc::new(fs),
                    prefix: String::new(),
                    local_root: Some(path.clone()),
                    location: format!("file://{}", path.display()),
                })
            }
            BankConfig::S3 {
                bucket,
                endpoint,
                region,
                access_key_id,
                secret_access_key,
                allow_http,
                prefix,
            } => {
                let mut b = object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name(bucket)
                    .with_region(region)
                    .with_allow_http(*allow_http);
                if let Some(e) = endpoint {
                    b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
                }
                if let Some(k) = access_key_id {
                    b = b.with_access_key_id(k);
                }
                if let Some(s) = secret_access_key {
                    b = b.with_secret_access_key(s);
                }
                let s3 = b.build().map_err(|source| BankError::OpenS3 {
                    bucket: bucket.clone(),
                    source: Box::new(source),
                })?;
                Ok(Bank {
                    store: Arc::new(s3),
                    local_root: None,
                    prefix: prefix.trim_matches('/').to_string(),
                    location: format!("s3://{bucket}/{}", prefix.trim_matches('/')),
                })
            }
        }
    }

    fn path(&self, rel: &str) -> ObjPath {
        if self.prefix.is_empty() {
            ObjPath::from(rel)
        } else {
            ObjPath::from(format!("{}/{rel}", self.prefix))
        }
    }

    pub async fn put(&self, rel: &str, data: Bytes) -> Result<(), BankError> {
        self.store
            .put(&self.path(rel), PutPayload::from_bytes(data))
            .await
            .map_err(|source| BankError::Put {
                path: rel.to_string(),
                source: Box::new(source),
            })?;
        self.make_durable(rel, true).await
    }

    /// On a filesystem bank: fsyncs `rel` (if `file`) and every directory from its parent up
    /// to the bank's root, so the data and the directory entries that name it (a rename, a
    /// new `checkpoints/<id>/data/` directory, a deletion) survive a crash. A no-op on S3,
    /// where a successful PUT is already durable.
    async fn make_durable(&self, rel: &str, file: bool) -> Result<(), BankError> {
        let Some(root) = self.local_root.clone() else {
            return Ok(());
        };
        let target = root.join(self.path(rel).as_ref());
        let what = target.clone();
        let sync = move || -> Result<(), BankError> {
            let fsync = |p: &std::path::Path| {
                std::fs::File::open(p)
                    .and_then(|f| f.sync_all())
                    .map_err(|source| BankError::Sync {
                        path: p.to_path_buf(),
                        source,
                    })
            };
            if file {
                fsync(&target)?;
            }
            let mut dir = target.parent();
            while let Some(d) = dir {
                match fsync(d) {
                    // A deletion's emptied directories are removed too (automatic cleanup):
                    // the first one that still exists holds the entry that changed.
                    Err(BankError::Sync { source, .. })
                        if !file && source.kind() == std::io::ErrorKind::NotFound => {}
                    r => r?,
                }
                if d == root {
                    break;
                }
                dir = d.parent();
            }
            Ok(())
        };
        tokio::task::spawn_blocking(sync)
            .await
            .map_err(|e| BankError::Sync {
                path: what,
                source: std::io::Error::other(e),
            })?
    }

    pub async fn get(&self, rel: &str) -> Result<Option<Bytes>, BankError> {
        match self.store.get(&self.path(rel)).await {
            Ok(r) => r.bytes().await.map(Some).map_err(|source| BankError::Get {
                path: rel.to_string(),
                source: Box::new(source),
            }),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(BankError::Get {
                path: rel.to_string(),
                source: Box::new(source),
            }),
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        rel: &str,
    ) -> Result<Option<T>, BankError> {
        match self.get(rel).await? {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|source| BankError::Decode {
                    path: rel.to_string(),
                    source,
                }),
        }
    }

    async fn put_json<T: Serialize>(&self, rel: &str, v: &T) -> Result<(), BankError> {
        let b = serde_json::to_vec(v).map_err(|source| BankError::Encode {
            path: rel.to_string(),
            source,
        })?;
        self.put(rel, Bytes::from(b)).await
    }

    pub async fn delete(&self, rel: &str) -> Result<(), BankError> {
        match self.store.delete(&self.path(rel)).await {
            Ok(()) => self.make_durable(rel, false).await,
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(BankError::Delete {
                path: rel.to_string(),
                source: Box::new(source),
            }),
        }
    }

    async fn list_names(&self, rel: &str) -> Result<Vec<String>, BankError> {
        let base = self.path(rel);
        let mut out = Vec::new();
        let mut s = self.store.list(Some(&base));
        while let Some(m) = s.next().await {
            let m = m.map_err(|source| BankError::List {
                path: rel.to_string(),
                source: Box::new(source),
            })?;
            let full = m.location.to_string();
            let strip = if self.prefix.is_empty() {
                full.as_str()
            } else {
                full.strip_prefix(&format!("{}/", self.prefix))
                    .unwrap_or(&full)
            };
            out.push(strip.to_string());
        }
        Ok(out)
    }

    // ----- leases -------------------------------------------------------------------------

    fn lease_path(id: &str) -> String {
        format!("leases/{id}.json")
    }

    /// Takes the lease on checkpoint `id` with put-if-absent; refused while another holder's
    /// lease is live. An expired lease is replaced with a conditional put on its ETag
    /// (`If-Match`, S3), so of two services taking over the same expired lease only one wins;
    /// where the store has no conditional update (the local filesystem) the expired lease is
    /// deleted and the create retried once.
    pub async fn acquire_lease(&self, id: &str, lease: &Lease) -> Result<(), BankError> {
        let rel = Self::lease_path(id);
        let path = self.path(&rel);
        let body = serde_json::to_vec(lease).map_err(|source| BankError::Encode {
            path: rel.clone(),
            source,
        })?;
        let put_err = |source| BankError::Put {
            path: rel.clone(),
            source: Box::new(source),
        };
        for _ in 0..2 {
            let create = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            match self
                .store
                .put_opts(&path, PutPayload::from(body.clone()), create)
                .await
            {
                Ok(_) => return self.make_durable(&rel, true).await,
                Err(object_store::Error::AlreadyExists { .. })
                | Err(object_store::Error::Precondition { .. }) => {}
                Err(source) => return Err(put_err(source)),
            }
            // Someone holds (or held) it: read it with its version.
            let got = match self.store.get(&path).await {
                Ok(g) => g,
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(source) => {
                    return Err(BankError::Get {
                        path: rel.clone(),
                        source: Box::new(source),
                    })
                }
            };
            let version = UpdateVersion {
                e_tag: got.meta.e_tag.clone(),
                version: got.meta.version.clone(),
            };
            let bytes = got.bytes().await.map_err(|source| BankError::Get {
                path: rel.clone(),
                source: Box::new(source),
            })?;
            let held: Lease =
                serde_json::from_slice(&bytes).map_err(|source| BankError::Decode {
                    path: rel.clone(),
                    source,
                })?;
            if held == *lease {
                return Ok(());
            }
            if held.expires_at > now_secs() {
                return Err(BankError::Leased {
                    checkpoint: id.to_string(),
                    owner: held.owner,
                    expires_at: held.expires_at,
                });
            }
            let update = PutOptions {
                mode: PutMode::Update(version),
                ..Default::default()
            };
            match self
                .store
                .put_opts(&path, PutPayload::from(body.clone()), update)
                .await
            {
                Ok(_) => return self.make_durable(&rel, true).await,
                // Another service replaced it first: read who holds it now.
                Err(object_store::Error::Precondition { .. })
                | Err(object_store::Error::NotFound { .. }) => continue,
                Err(object_store::Error::NotImplemented) => self.delete(&rel).await?,
                Err(source) => return Err(put_err(source)),
            }
        }
        let held: Option<Lease> = self.get_json(&rel).await?;
        let h = held.unwrap_or(Lease {
            owner: "unknown".into(),
            run: String::new(),
            expires_at: 0,
        });
        Err(BankError::Leased {
            checkpoint: id.to_string(),
            owner: h.owner,
            expires_at: h.expires_at,
        })
    }

    pub async fn read_lease(&self, id: &str) -> Result<Option<Lease>, BankError> {
        self.get_json(&Self::lease_path(id)).await
    }

    pub async fn release_lease(&self, id: &str) -> Result<(), BankError> {
        self.delete(&Self::lease_path(id)).await
    }

    // ----- checkpoints --------------------------------------------------------------------

    fn cp(id: &str, rel: &str) -> String {
        format!("checkpoints/{id}/{rel}")
    }

    pub async fn write_meta(&self, meta: &CheckpointMeta) -> Result<(), BankError> {
        self.put_json(&Self::cp(&meta.id, "meta.json"), meta).await
    }

    /// Writes one data object and returns its manifest entry.
    pub async fn write_object(
        &self,
        id: &str,
        name: &str,
        data: Bytes,
        count: usize,
    ) -> Result<ObjectEntry, BankError> {
        let entry = ObjectEntry {
            name: name.to_string(),
            sha256: hex(&Sha256::digest(&data)),
            size: data.len() as u64,
            count,
        };
        self.put(&Self::cp(id, &format!("data/{name}")), data)
            .await?;
        Ok(entry)
    }

    /// The commit point of a checkpoint.
    pub async fn write_manifest(&self, m: &Manifest) -> Result<(), BankError> {
        self.put_json(&Self::cp(&m.checkpoint_id, "manifest.json"), m)
            .await
    }

    pub async fn write_error(&self, id: &str, reason: &str) -> Result<(), BankError> {
        self.put_json(
            &Self::cp(id, "error.json"),
            &serde_json::json!({"reason": reason, "at": now_secs()}),
        )
        .await
    }

    pub async fn read_object(&self, id: &str, name: &str) -> Result<Option<Bytes>, BankError> {
        self.get(&Self::cp(id, &format!("data/{name}"))).await
    }

    /// Ids of every checkpoint in the bank.
    pub async fn checkpoint_ids(&self) -> Result<Vec<String>, BankError> {
        let mut ids: Vec<String> = self
            .list_names("checkpoints")
            .await?
            .into_iter()
            .filter_map(|p| {
                let rest = p.strip_prefix("checkpoints/")?;
                let (id, file) = rest.split_once('/')?;
                (file == "meta.json").then(|| id.to_string())
            })
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// A checkpoint's current state as the bank shows it (status rules in the module docs).
    ///
    /// The lease is read BEFORE the manifest and the error: a writer writes its manifest (or
    /// its error) before it releases its lease, so "lease live, then no manifest" really is
    /// `protecting`, and a writer that finished in between shows its manifest. (Reading the
    /// lease last would see a finished writer's manifest missing and its lease gone, and call
    /// a good checkpoint `error`.)
    pub async fn checkpoint(&self, id: &str) -> Result<CheckpointRecord, BankError> {
        let lease_live = |l: Option<Lease>| l.is_some_and(|l| l.expires_at > now_secs());
        let live_before = lease_live(self.read_lease(id).await?);
        let [meta_p, manifest_p, error_p, deleting_p] =
            ["meta.json", "manifest.json", "error.json", "deleting"].map(|f| Self::cp(id, f));
        let (meta, manifest, error, deleting) = futures::try_join!(
            self.get_json::<CheckpointMeta>(&meta_p),
            self.get_json::<Manifest>(&manifest_p),
            self.get_json::<serde_json::Value>(&error_p),
            self.get(&deleting_p),
        )?;
        let meta = meta.ok_or_else(|| BankError::NotFound(id.to_string()))?;
        let status = if deleting.is_some() {
            CheckpointStatus::Deleting
        } else if manifest.is_some() {
            CheckpointStatus::Available
        } else if error.is_some() {
            CheckpointStatus::Error
        } else if live_before || lease_live(self.read_lease(id).await?) {
            // The second read covers a writer that took its lease after the first one.
            CheckpointStatus::Protecting
        } else {
            CheckpointStatus::Error
        };
        let error = error.map(|e| e["reason"].as_str().unwrap_or_default().to_string());
        Ok(CheckpointRecord {
            meta,
            status,
            manifest,
            error,
        })
    }

    /// Deletes a checkpoint: marker, then the manifest (so it stops being `available` first),
    /// then the data, the meta and the marker.
    pub async fn delete_checkpoint(&self, id: &str) -> Result<(), BankError> {
        self.put(&Self::cp(id, "deleting"), Bytes::from_static(b"1"))
            .await?;
        self.delete(&Self::cp(id, "manifest.json")).await?;
        let names = self.list_names(&format!("checkpoints/{id}")).await?;
        let last = [Self::cp(id, "meta.json"), Self::cp(id, "deleting")];
        for n in names.iter().filter(|n| !last.contains(n)) {
            self.delete(n).await?;
        }
        for n in &last {
            self.delete(n).await?;
        }
        self.release_lease(id).await
    }

    /// Recomputes every object's hash against the manifest. Returns every fault found.
    pub async fn verify(&self, m: &Manifest) -> Result<Vec<ObjectFault>, BankError> {
        Ok(self.read_verified(m).await?.err().unwrap_or_default())
    }

    /// Reads every object of `m` once (16 at a time) and checks its size and sha256: the
    /// objects in manifest order, or every fault found (sorted by object name). A restore
    /// uses the bytes it verified instead of reading the checkpoint a second time.
    pub async fn read_verified(
        &self,
        m: &Manifest,
    ) -> Result<Result<Vec<Bytes>, Vec<ObjectFault>>, BankError> {
        let results: Vec<Result<Result<Bytes, ObjectFault>, BankError>> =
            futures::stream::iter(m.objects.iter().cloned())
                .map(|o| {
                    let id = m.checkpoint_id.clone();
                    async move {
                        let Some(data) = self.read_object(&id, &o.name).await? else {
                            return Ok(Err(fault(&o, "missing".into())));
                        };
                        if data.len() as u64 != o.size {
                            let why = format!(
                                "size {} differs from the manifest's {} (truncated?)",
                                data.len(),
                                o.size
                            );
                            return Ok(Err(fault(&o, why)));
                        }
                        let h = hex(&Sha256::digest(&data));
                        if h != o.sha256 {
                            let why =
                                format!("sha256 {h} differs from the manifest's {}", o.sha256);
                            return Ok(Err(fault(&o, why)));
                        }
                        Ok(Ok(data))
                    }
                })
                .buffered(16)
                .collect()
                .await;
        let mut objects = Vec::with_capacity(results.len());
        let mut faults = Vec::new();
        for r in results {
            match r? {
                Ok(b) => objects.push(b),
                Err(f) => faults.push(f),
            }
        }
        if faults.is_empty() {
            Ok(Ok(objects))
        } else {
            faults.sort_by(|a, b| a.object.cmp(&b.object));
            Ok(Err(faults))
        }
    }
}

fn fault(o: &ObjectEntry, reason: String) -> ObjectFault {
    ObjectFault {
        object: o.name.clone(),
        reason,
    }
}

/// Default lease time: a checkpoint of 5,000 ports takes well under a second.
pub const LEASE_SECONDS: u64 = 60;

pub fn lease_for(owner: &str, run: &str) -> Lease {
    Lease {
        owner: owner.to_string(),
        run: run.to_string(),
        expires_at: now_secs() + LEASE_SECONDS,
    }
}

/// Helper for callers that time operations.
pub fn elapsed_secs(start: std::time::Instant) -> f64 {
    Duration::as_secs_f64(&start.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protect::{recover, Owner};

    fn meta(id: &str) -> CheckpointMeta {
        CheckpointMeta {
            id: id.into(),
            project_id: "p".into(),
            provider_id: "fs".into(),
            plan_id: "plan".into(),
            plan_name: "plan".into(),
            resources: Vec::new(),
            created_at: now_secs(),
            extra_info: serde_json::Value::Null,
            owner: "svc-a".into(),
        }
    }

    fn bank(dir: &std::path::Path) -> Bank {
        Bank::open(&BankConfig::Fs {
            path: dir.join("bank"),
        })
        .unwrap()
    }

    #[tokio::test]
    async fn a_live_lease_refuses_a_second_writer() {
        let d = tempfile::tempdir().unwrap();
        let b = bank(d.path());
        b.acquire_lease("c1", &lease_for("svc-a", "run1"))
            .await
            .unwrap();
        let e = b
            .acquire_lease("c1", &lease_for("svc-b", "run1"))
            .await
            .unwrap_err();
        assert!(
            matches!(e, BankError::Leased { ref owner, .. } if owner == "svc-a"),
            "{e}"
        );
        // An expired lease is taken over.
        b.release_lease("c1").await.unwrap();
        let mut old = lease_for("svc-a", "run1");
        old.expires_at = 1;
        b.acquire_lease("c1", &old).await.unwrap();
        b.acquire_lease("c1", &lease_for("svc-b", "run2"))
            .await
            .unwrap();
        assert_eq!(b.read_lease("c1").await.unwrap().unwrap().owner, "svc-b");
    }

    #[tokio::test]
    async fn only_the_manifest_makes_a_checkpoint_available() {
        let d = tempfile::tempdir().unwrap();
        let b = bank(d.path());
        b.acquire_lease("c1", &lease_for("svc-a", "run1"))
            .await
            .unwrap();
        b.write_meta(&meta("c1")).await.unwrap();
        let o = b
            .write_object("c1", "networks.json", Bytes::from_static(b"[]"), 0)
            .await
            .unwrap();
        assert_eq!(
            b.checkpoint("c1").await.unwrap().status,
            CheckpointStatus::Protecting
        );

        // The service dies here; its next run marks the checkpoint as error.
        let next = Owner {
            service: "svc-a".into(),
            run: "run2".into(),
        };
        assert_eq!(recover(&b, &next).await.unwrap(), vec!["c1".to_string()]);
        let rec = b.checkpoint("c1").await.unwrap();
        assert_eq!(rec.status, CheckpointStatus::Error);
        assert!(rec.error.unwrap().contains("interrupted"));

        // A complete one is available, verifies, and is deleted manifest first.
        b.write_meta(&meta("c2")).await.unwrap();
        let o2 = b
            .write_object("c2", "networks.json", Bytes::from_static(b"[1]"), 1)
            .await
            .unwrap();
        let m = Manifest {
            format: MANIFEST_FORMAT.into(),
            checkpoint_id: "c2".into(),
            cut: Cut {
                source_url: "x".into(),
                method: "double-read".into(),
                digest: "d".into(),
                reads: 2,
                store_revision: None,
            },
            objects: vec![o2.clone()],
            resource_graph: Vec::new(),
            finished_at: now_secs(),
        };
        b.write_manifest(&m).await.unwrap();
        assert_eq!(
            b.checkpoint("c2").await.unwrap().status,
            CheckpointStatus::Available
        );
        assert!(b.verify(&m).await.unwrap().is_empty());
        b.put(
            "checkpoints/c2/data/networks.json",
            Bytes::from_static(b"[2]"),
        )
        .await
        .unwrap();
        let faults = b.verify(&m).await.unwrap();
        assert_eq!(faults.len(), 1);
        assert_eq!(faults[0].object, "networks.json");
        assert!(faults[0].reason.contains("sha256"));
        assert_eq!(b.checkpoint_ids().await.unwrap(), vec!["c1", "c2"]);
        b.delete_checkpoint("c2").await.unwrap();
        assert_eq!(b.checkpoint_ids().await.unwrap(), vec!["c1"]);
        assert_ne!(o.sha256, o2.sha256);
    }
}
