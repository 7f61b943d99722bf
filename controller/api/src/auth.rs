//! Who is calling: turns request headers into a [`RequestContext`].
//!
//! Two modes today, one enum so that Keystone token validation can be added as a third
//! variant without touching the handlers:
//! - [`Auth::NoAuth`]: every request is an admin of `default_project` (one-host setups,
//!   Neutron's `auth_strategy = noauth`). A `tenant_id`/`project_id` in a create body still
//!   chooses the owner, as admins may.
//! - [`Auth::TokenFile`]: `X-Auth-Token` is required and looked up in a token table loaded
//!   from a JSON file; a missing or unknown token is a 401. The `admin` role makes the caller
//!   an admin.
//!
//! Token file format (JSON):
//! ```json
//! {"tokens": {
//!     "s3cr3t-admin": {"project_id": "admin-project", "roles": ["admin"]},
//!     "s3cr3t-alice": {"project_id": "alice-project", "roles": ["member"]}
//! }}
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::HeaderMap;
use serde::Deserialize;
use wyvern_model::{RequestContext, Timestamp};

/// One token's identity.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TokenInfo {
    pub project_id: String,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// The parsed token file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct TokenTable {
    pub tokens: HashMap<String, TokenInfo>,
}

/// Why a token file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("failed to read token file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to parse token file {path} (expected {{\"tokens\": {{TOKEN: {{\"project_id\": ..., \"roles\": [...]}}}}}}): {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// How requests are authenticated.
#[derive(Debug, Clone)]
pub enum Auth {
    /// No authentication: every caller is an admin of `default_project`.
    NoAuth { default_project: String },
    /// `X-Auth-Token` checked against a table (see [`Auth::load_token_file`]).
    TokenFile(Arc<TokenTable>),
}

/// Why a request was not authenticated (answered with 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unauthenticated {
    #[error("Authentication required: the X-Auth-Token header is missing")]
    MissingToken,
    #[error("Authentication failed: the token is not valid")]
    InvalidToken,
}

impl Auth {
    /// Token mode from a JSON token file (format in the module docs).
    pub fn load_token_file(path: &Path) -> Result<Auth, AuthError> {
        let bytes = std::fs::read(path).map_err(|source| AuthError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let table: TokenTable =
            serde_json::from_slice(&bytes).map_err(|source| AuthError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Auth::TokenFile(Arc::new(table)))
    }

    /// The caller's context, or why there is none.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        now: Timestamp,
    ) -> Result<RequestContext, Unauthenticated> {
        match self {
            Auth::NoAuth { default_project } => {
                Ok(RequestContext::admin(default_project.clone(), now))
            }
            Auth::TokenFile(table) => {
                let token = headers
                    .get("x-auth-token")
                    .and_then(|v| v.to_str().ok())
                    .filter(|t| !t.is_empty())
                    .ok_or(Unauthenticated::MissingToken)?;
                let info = table
                    .tokens
                    .get(token)
                    .ok_or(Unauthenticated::InvalidToken)?;
                Ok(RequestContext {
                    project_id: info.project_id.clone(),
                    roles: info.roles.clone(),
                    is_admin: info.roles.iter().any(|r| r == "admin"),
                    now,
                })
            }
        }
    }
}
