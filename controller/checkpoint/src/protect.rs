//! Taking a checkpoint: lease, meta, consistent cut, data objects, manifest (the commit point).

use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;

use crate::bank::{
    lease_for, now_secs, Bank, BankError, CheckpointMeta, Cut, Manifest, ObjectEntry,
    MANIFEST_FORMAT,
};
use crate::graph::{ReadError, SelectError, Snapshot};
use crate::neutron::NeutronClient;

/// Ports per data object: big enough to keep the object count low on S3, small enough that
/// objects are written in parallel.
pub const PORTS_PER_OBJECT: usize = 1000;

/// Why a checkpoint failed.
#[derive(Debug, thiserror::Error)]
pub enum ProtectError {
    #[error("failed to protect checkpoint {id}: {source}")]
    Bank {
        id: String,
        #[source]
        source: BankError,
    },
    #[error("failed to read the protected resources for checkpoint {id}: {source}")]
    Read {
        id: String,
        #[source]
        source: ReadError,
    },
    #[error("failed to resolve the plan of checkpoint {id}: {source}")]
    Select {
        id: String,
        #[source]
        source: SelectError,
    },
    #[error("failed to encode {object} of checkpoint {id}: {source}")]
    Encode {
        id: String,
        object: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Who takes checkpoints: a service id (stable across restarts) and this run's id.
#[derive(Debug, Clone)]
pub struct Owner {
    pub service: String,
    pub run: String,
}

/// What a finished checkpoint reports.
#[derive(Debug, Clone, Serialize)]
pub struct ProtectOutcome {
    pub manifest: Manifest,
    pub bytes: u64,
    pub seconds: f64,
}

fn encode<T: Serialize>(id: &str, object: &str, v: &T) -> Result<Bytes, ProtectError> {
    serde_json::to_vec(v)
        .map(Bytes::from)
        .map_err(|source| ProtectError::Encode {
            id: id.to_string(),
            object: object.to_string(),
            source,
        })
}

/// Takes checkpoint `meta.id` of `meta.resources` from `source` into `bank`. The caller has
/// written nothing yet; on failure the checkpoint is marked `error` (best effort: a crash
/// leaves no manifest, which reads as `error` once the lease is gone).
pub async fn protect(
    bank: &Bank,
    source: &NeutronClient,
    meta: &CheckpointMeta,
    owner: &Owner,
) -> Result<ProtectOutcome, ProtectError> {
    begin(bank, meta, owner).await?;
    finish(bank, source, meta).await
}

/// First half of [`protect`]: takes the lease and writes the meta, so the checkpoint is
/// listed (as `protecting`) from here on. The service answers a create after this.
pub async fn begin(bank: &Bank, meta: &CheckpointMeta, owner: &Owner) -> Result<(), ProtectError> {
    let bank_err = |source| ProtectError::Bank {
        id: meta.id.clone(),
        source,
    };
    bank.acquire_lease(&meta.id, &lease_for(&owner.service, &owner.run))
        .await
        .map_err(bank_err)?;
    bank.write_meta(meta).await.map_err(bank_err)
}

/// Second half of [`protect`]: the cut, the objects, the manifest; on failure the checkpoint
/// is marked `error`; the lease is released either way.
pub async fn finish(
    bank: &Bank,
    source: &NeutronClient,
    meta: &CheckpointMeta,
) -> Result<ProtectOutcome, ProtectError> {
    let id = meta.id.clone();
    let r = protect_inner(bank, source, meta).await;
    if let Err(e) = &r {
        if let Err(e2) = bank.write_error(&id, &e.to_string()).await {
            tracing::warn!(checkpoint = %id, error = %e2, "failed to record a checkpoint error");
        }
    }
    if let Err(e) = bank.release_lease(&id).await {
        tracing::warn!(checkpoint = %id, error = %e, "failed to release a checkpoint lease");
    }
    r
}

async fn protect_inner(
    bank: &Bank,
    source: &NeutronClient,
    meta: &CheckpointMeta,
) -> Result<ProtectOutcome, ProtectError> {
    let start = Instant::now();
    let id = meta.id.as_str();
    let snap = Snapshot::read(source)
        .await
        .map_err(|source| ProtectError::Read {
            id: id.to_string(),
            source,
        })?;
    let sel = snap
        .select(&meta.resources)
        .map_err(|source| ProtectError::Select {
            id: id.to_string(),
            source,
        })?;
    let mut objects: Vec<(String, Bytes, usize)> = Vec::new();
    let nets: Vec<_> = sel
        .networks
        .iter()
        .filter_map(|i| snap.networks.get(i))
        .collect();
    objects.push((
        "networks.json".into(),
        encode(id, "networks.json", &nets)?,
        nets.len(),
    ));
    let subs: Vec<_> = sel
        .subnets
        .iter()
        .filter_map(|i| snap.subnets.get(i))
        .collect();
    objects.push((
        "subnets.json".into(),
        encode(id, "subnets.json", &subs)?,
        subs.len(),
    ));
    let rts: Vec<_> = sel
        .routers
        .iter()
        .filter_map(|i| snap.routers.get(i))
        .collect();
    objects.push((
        "routers.json".into(),
        encode(id, "routers.json", &rts)?,
        rts.len(),
    ));
    let ports: Vec<_> = sel.ports.iter().filter_map(|i| snap.ports.get(i)).collect();
    for (i, chunk) in ports.chunks(PORTS_PER_OBJECT).enumerate() {
        let name = format!("ports-{i:04}.json");
        let data = encode(id, &name, &chunk)?;
        objects.push((name, data, chunk.len()));
    }
    let bytes: u64 = objects.iter().map(|o| o.1.len() as u64).sum();
    let writes = objects
        .into_iter()
        .map(|(name, data, count)| async move { bank.write_object(id, &name, data, count).await });
    let entries: Vec<ObjectEntry> =
        futures::future::try_join_all(writes)
            .await
            .map_err(|source| ProtectError::Bank {
                id: id.to_string(),
                source,
            })?;
    let manifest = Manifest {
        format: MANIFEST_FORMAT.into(),
        checkpoint_id: id.to_string(),
        cut: Cut {
            source_url: source.base().to_string(),
            method: snap.method.as_str().into(),
            digest: snap.digest.clone(),
            reads: snap.reads,
            store_revision: snap.store_revision,
        },
        objects: entries,
        resource_graph: sel.resource_graph(&snap),
        finished_at: now_secs(),
    };
    bank.write_manifest(&manifest)
        .await
        .map_err(|source| ProtectError::Bank {
            id: id.to_string(),
            source,
        })?;
    Ok(ProtectOutcome {
        manifest,
        bytes,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Marks checkpoints this service left unfinished (a crash or SIGKILL) as `error`: no
/// manifest and a lease of ours from an earlier run. Returns the ids marked.
pub async fn recover(bank: &Bank, owner: &Owner) -> Result<Vec<String>, BankError> {
    let mut marked = Vec::new();
    for id in bank.checkpoint_ids().await? {
        let rec = bank.checkpoint(&id).await?;
        if rec.manifest.is_some() || rec.error.is_some() {
            continue;
        }
        let stale = match bank.read_lease(&id).await? {
            Some(l) => {
                (l.owner == owner.service && l.run != owner.run) || l.expires_at <= now_secs()
            }
            None => true,
        };
        if stale {
            bank.write_error(
                &id,
                "interrupted: the service stopped before the manifest was written",
            )
            .await?;
            bank.release_lease(&id).await?;
            marked.push(id);
        }
    }
    Ok(marked)
}
