//! Service state (plans, triggers, scheduled operations, restores, verifications, operation
//! logs) in one JSON file under the data directory, replaced atomically on every change:
//! write a temporary file, fsync it, rename it over the old one, fsync the directory. A crash
//! leaves either the old or the new state, never half of one.
//!
//! Checkpoints are not here: the bank is their truth (see `bank`), so a service restarted
//! with an empty data directory still lists every checkpoint of its banks.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::graph::ResourceRef;
use crate::restore::{Mapping, ResourceStatus};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("failed to read state file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to parse state file {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("failed to write state file {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to encode the state: {0}")]
    Encode(#[source] serde_json::Error),
}

/// A protection plan (Karbor's shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub project_id: String,
    pub provider_id: String,
    /// `started` or `suspended`.
    pub status: String,
    pub resources: Vec<ResourceRef>,
    #[serde(default)]
    pub parameters: serde_json::Value,
}

/// A trigger (Karbor's `trigger_info`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    pub id: String,
    pub name: String,
    pub project_id: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub properties: serde_json::Value,
}

/// A scheduled operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduledOperation {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub project_id: String,
    pub operation_type: String,
    pub trigger_id: String,
    pub operation_definition: serde_json::Value,
    pub enabled: bool,
}

/// A restore and its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreRecord {
    pub id: String,
    pub project_id: String,
    pub provider_id: String,
    pub checkpoint_id: String,
    pub restore_target: Option<String>,
    pub parameters: serde_json::Value,
    /// `in_progress`, `success` or `fail`.
    pub status: String,
    pub resources_status: BTreeMap<String, ResourceStatus>,
    pub resources_reason: BTreeMap<String, String>,
    #[serde(default)]
    pub mappings: Vec<Mapping>,
    #[serde(default)]
    pub created: usize,
    #[serde(default)]
    pub error: Option<String>,
    pub created_at: String,
}

/// A verification and its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerificationRecord {
    pub id: String,
    pub project_id: String,
    pub provider_id: String,
    pub checkpoint_id: String,
    pub parameters: serde_json::Value,
    /// `in_progress`, `success` or `fail`.
    pub status: String,
    pub resources_status: BTreeMap<String, String>,
    pub resources_reason: BTreeMap<String, String>,
    pub created_at: String,
}

/// One operation log entry (Karbor's `operation_log`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationLog {
    pub id: String,
    pub project_id: String,
    pub operation_type: String,
    pub checkpoint_id: Option<String>,
    pub plan_id: Option<String>,
    pub provider_id: Option<String>,
    pub restore_id: Option<String>,
    pub scheduled_operation_id: Option<String>,
    pub status: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub error_info: Option<String>,
    pub extra_info: serde_json::Value,
}

/// Everything the service remembers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub plans: BTreeMap<String, Plan>,
    pub triggers: BTreeMap<String, Trigger>,
    pub scheduled_operations: BTreeMap<String, ScheduledOperation>,
    pub restores: BTreeMap<String, RestoreRecord>,
    pub verifications: BTreeMap<String, VerificationRecord>,
    pub operation_logs: Vec<OperationLog>,
}

/// Operation logs kept (oldest dropped first).
pub const MAX_LOGS: usize = 10_000;

/// The state file.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(dir: &Path) -> Self {
        StateFile {
            path: dir.join("state.json"),
        }
    }

    pub fn load(&self) -> Result<State, StateError> {
        match std::fs::read(&self.path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|source| StateError::Parse {
                path: self.path.clone(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(source) => Err(StateError::Read {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Replaces the file atomically (module docs).
    pub fn save(&self, s: &State) -> Result<(), StateError> {
        let bytes = serde_json::to_vec(s).map_err(StateError::Encode)?;
        let tmp = self.path.with_extension("json.tmp");
        let werr = |source| StateError::Write {
            path: self.path.clone(),
            source,
        };
        let mut f = std::fs::File::create(&tmp).map_err(werr)?;
        f.write_all(&bytes).map_err(werr)?;
        f.sync_all().map_err(werr)?;
        drop(f);
        std::fs::rename(&tmp, &self.path).map_err(werr)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(werr)?;
        }
        Ok(())
    }
}
