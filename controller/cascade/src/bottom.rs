//! A bottom site's Neutron API, as the jobs need it: show, create (with the top's id),
//! update, delete, router interface removal and a port status list.
//!
//! Outcomes are classified for the job runner: an unreachable pod (connection refused,
//! timeout, 5xx) is retried; a refusal (4xx) fails the job.

use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;
use wyvern_model::Kind;

use crate::state::Pod;

/// Why a bottom call did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum BottomError {
    /// The pod could not be reached or answered with a server error: retry later.
    #[error("failed to reach pod {pod} ({what}): {reason}")]
    Unreachable {
        pod: String,
        what: String,
        reason: String,
    },
    /// The pod refused the request: retrying would not help.
    #[error("pod {pod} refused {what}: HTTP {status}: {body}")]
    Refused {
        pod: String,
        what: String,
        status: u16,
        body: String,
    },
}

impl BottomError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, BottomError::Unreachable { .. })
    }
}

/// A client for one pod (cheap: shares the connection pool).
#[derive(Clone)]
pub struct Bottom {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    name: String,
}

/// Builds the HTTP client every pod shares.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(2))
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default()
}

impl Bottom {
    pub fn new(http: reqwest::Client, pod: &Pod) -> Bottom {
        Bottom {
            http,
            base: pod.api_url.trim_end_matches('/').to_owned(),
            token: pod.token.clone(),
            name: pod.region_name.clone(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), BottomError> {
        let what = format!("{method} {path}");
        let mut req = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .header("accept", "application/json");
        if let Some(t) = &self.token {
            req = req.header("x-auth-token", t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let unreachable = |reason: String| BottomError::Unreachable {
            pod: self.name.clone(),
            what: what.clone(),
            reason,
        };
        let resp = req.send().await.map_err(|e| unreachable(e.to_string()))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| unreachable(e.to_string()))?;
        if status >= 500 {
            return Err(unreachable(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&bytes)
            )));
        }
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, v))
    }

    fn refused(&self, what: String, status: u16, body: &Value) -> BottomError {
        BottomError::Refused {
            pod: self.name.clone(),
            what,
            status,
            body: body.to_string(),
        }
    }

    /// The bottom object, or `None` when the pod does not have it.
    pub async fn show(&self, kind: Kind, id: Uuid) -> Result<Option<Value>, BottomError> {
        let path = format!("/v2.0/{}/{id}", kind.as_str());
        let (status, v) = self.call(reqwest::Method::GET, &path, None).await?;
        match status {
            200 => Ok(Some(v[kind.singular()].clone())),
            404 => Ok(None),
            s => Err(self.refused(format!("GET {path}"), s, &v)),
        }
    }

    /// Creates with the body's `id`. Returns `false` if the id already existed (409).
    pub async fn create(&self, kind: Kind, body: Value) -> Result<bool, BottomError> {
        let path = format!("/v2.0/{}", kind.as_str());
        let wrapped = json!({ kind.singular(): body });
        let (status, v) = self
            .call(reqwest::Method::POST, &path, Some(&wrapped))
            .await?;
        match status {
            200 | 201 => Ok(true),
            409 if v.to_string().contains("already exists") => Ok(false),
            s => Err(self.refused(format!("POST {path}"), s, &v)),
        }
    }

    pub async fn update(&self, kind: Kind, id: Uuid, body: Value) -> Result<(), BottomError> {
        let path = format!("/v2.0/{}/{id}", kind.as_str());
        let wrapped = json!({ kind.singular(): body });
        let (status, v) = self
            .call(reqwest::Method::PUT, &path, Some(&wrapped))
            .await?;
        match status {
            200 => Ok(()),
            s => Err(self.refused(format!("PUT {path}"), s, &v)),
        }
    }

    /// Deletes; an absent object counts as deleted.
    pub async fn delete(&self, kind: Kind, id: Uuid) -> Result<(), BottomError> {
        let path = format!("/v2.0/{}/{id}", kind.as_str());
        let (status, v) = self.call(reqwest::Method::DELETE, &path, None).await?;
        match status {
            200 | 204 | 404 => Ok(()),
            s => Err(self.refused(format!("DELETE {path}"), s, &v)),
        }
    }

    /// Detaches (and so deletes) a router interface port; absent router or port is done.
    pub async fn remove_interface(&self, router: Uuid, port: Uuid) -> Result<(), BottomError> {
        let path = format!("/v2.0/routers/{router}/remove_router_interface");
        let body = json!({ "port_id": port });
        let (status, v) = self.call(reqwest::Method::PUT, &path, Some(&body)).await?;
        match status {
            200 | 404 => Ok(()),
            s => Err(self.refused(format!("PUT {path}"), s, &v)),
        }
    }

    /// `(port id, status)` of every bottom port.
    pub async fn port_statuses(&self) -> Result<Vec<(Uuid, String)>, BottomError> {
        let path = "/v2.0/ports?fields=id&fields=status";
        let (status, v) = self.call(reqwest::Method::GET, path, None).await?;
        if status != 200 {
            return Err(self.refused(format!("GET {path}"), status, &v));
        }
        Ok(v["ports"]
            .as_array()
            .map(|ports| {
                ports
                    .iter()
                    .filter_map(|p| {
                        let id = p["id"].as_str()?.parse().ok()?;
                        Some((id, p["status"].as_str()?.to_owned()))
                    })
                    .collect()
            })
            .unwrap_or_default())
    }
}
