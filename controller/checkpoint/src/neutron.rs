//! A small Neutron v2.0 client over reqwest: what protecting and restoring a project needs.
//!
//! The checkpoint service talks to wyvernd (or any Neutron) only through its public API, so a
//! checkpoint can be restored into another site given that site's URL and credentials.

use serde_json::Value;

/// Why a Neutron request failed.
#[derive(Debug, thiserror::Error)]
pub enum NeutronError {
    #[error("failed to send {method} {url}: {source}")]
    Send {
        method: &'static str,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("failed to read the answer of {method} {url}: {source}")]
    Body {
        method: &'static str,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{method} {url} answered {status}: {ty}: {message}")]
    Status {
        method: &'static str,
        url: String,
        status: u16,
        /// `NeutronError.type` (e.g. `IpAddressAlreadyAllocated`), empty if absent.
        ty: String,
        message: String,
    },
    #[error("failed to decode the answer of {method} {url}: {source}")]
    Decode {
        method: &'static str,
        url: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("the answer of {method} {url} has no {key:?}")]
    MissingKey {
        method: &'static str,
        url: String,
        key: String,
    },
}

impl NeutronError {
    /// The Neutron error type of a refused request (`None` for transport errors).
    pub fn neutron_type(&self) -> Option<&str> {
        match self {
            NeutronError::Status { ty, .. } => Some(ty),
            _ => None,
        }
    }
    pub fn status(&self) -> Option<u16> {
        match self {
            NeutronError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Where a Neutron API is and how to authenticate to it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Endpoint {
    /// Base URL, e.g. `http://127.0.0.1:9696` (with or without a trailing `/v2.0`).
    pub url: String,
    /// `X-Auth-Token` to send; `None` for a no-auth wyvernd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// A Neutron v2.0 client.
#[derive(Debug, Clone)]
pub struct NeutronClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl NeutronClient {
    pub fn new(ep: &Endpoint) -> Self {
        let base = ep.url.trim_end_matches('/');
        let base = base.strip_suffix("/v2.0").unwrap_or(base).to_string();
        NeutronClient {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .unwrap_or_default(),
            base,
            token: ep.token.clone(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2.0/{path}", self.base)
    }

    async fn send(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<bytes::Bytes, NeutronError> {
        let url = self.url(path);
        let m = match method {
            "POST" => reqwest::Method::POST,
            "PUT" => reqwest::Method::PUT,
            "DELETE" => reqwest::Method::DELETE,
            _ => reqwest::Method::GET,
        };
        let mut req = self.http.request(m, &url);
        if let Some(t) = &self.token {
            req = req.header("X-Auth-Token", t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|source| NeutronError::Send {
            method,
            url: url.clone(),
            source,
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|source| NeutronError::Body {
            method,
            url: url.clone(),
            source,
        })?;
        if !status.is_success() {
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let e = &v["NeutronError"];
            return Err(NeutronError::Status {
                method,
                url,
                status: status.as_u16(),
                ty: e["type"].as_str().unwrap_or_default().to_string(),
                message: e["message"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned()),
            });
        }
        Ok(bytes)
    }

    fn decode(method: &'static str, url: String, bytes: &[u8]) -> Result<Value, NeutronError> {
        serde_json::from_slice(bytes).map_err(|source| NeutronError::Decode {
            method,
            url,
            source,
        })
    }

    fn take(
        method: &'static str,
        url: String,
        mut v: Value,
        key: &str,
    ) -> Result<Value, NeutronError> {
        match v.get_mut(key) {
            Some(x) => Ok(x.take()),
            None => Err(NeutronError::MissingKey {
                method,
                url,
                key: key.to_string(),
            }),
        }
    }

    /// `GET /v2.0/{collection}`, the answer's bytes unparsed (a consistent cut compares and
    /// hashes raw answers and parses only the one it keeps).
    pub async fn list_bytes(&self, collection: &str) -> Result<bytes::Bytes, NeutronError> {
        self.send("GET", collection, None).await
    }

    /// `GET /v2.0/{path}`, the answer's bytes unparsed.
    pub async fn get_bytes(&self, path: &str) -> Result<bytes::Bytes, NeutronError> {
        self.send("GET", path, None).await
    }

    /// `GET /v2.0/{collection}` as raw bytes (for digests) and parsed items.
    pub async fn list(&self, collection: &str) -> Result<(bytes::Bytes, Vec<Value>), NeutronError> {
        let bytes = self.send("GET", collection, None).await?;
        let url = self.url(collection);
        let v = Self::decode("GET", url.clone(), &bytes)?;
        let items = match Self::take("GET", url, v, collection)? {
            Value::Array(a) => a,
            _ => Vec::new(),
        };
        Ok((bytes, items))
    }

    /// `POST /v2.0/{plural}` with `{"<singular>": body}`; the created object.
    pub async fn create(
        &self,
        plural: &str,
        singular: &str,
        body: Value,
    ) -> Result<Value, NeutronError> {
        let v = self
            .send("POST", plural, Some(&serde_json::json!({ singular: body })))
            .await?;
        let url = self.url(plural);
        Self::take(
            "POST",
            url.clone(),
            Self::decode("POST", url, &v)?,
            singular,
        )
    }

    /// Neutron's bulk create: `POST /v2.0/{plural}` with `{"<plural>": [...]}` (all or nothing).
    pub async fn create_bulk(
        &self,
        plural: &str,
        items: Vec<Value>,
    ) -> Result<Vec<Value>, NeutronError> {
        let v = self
            .send("POST", plural, Some(&serde_json::json!({ plural: items })))
            .await?;
        let url = self.url(plural);
        match Self::take("POST", url.clone(), Self::decode("POST", url, &v)?, plural)? {
            Value::Array(a) => Ok(a),
            _ => Ok(Vec::new()),
        }
    }

    /// `PUT /v2.0/{plural}/{id}` with `{"<singular>": body}`.
    pub async fn update(
        &self,
        plural: &str,
        singular: &str,
        id: &str,
        body: Value,
    ) -> Result<Value, NeutronError> {
        let path = format!("{plural}/{id}");
        let v = self
            .send("PUT", &path, Some(&serde_json::json!({ singular: body })))
            .await?;
        let url = self.url(&path);
        Self::take("PUT", url.clone(), Self::decode("PUT", url, &v)?, singular)
    }

    /// `PUT /v2.0/routers/{id}/add_router_interface`.
    pub async fn add_router_interface(
        &self,
        router_id: &str,
        body: Value,
    ) -> Result<Value, NeutronError> {
        let path = format!("routers/{router_id}/add_router_interface");
        let v = self.send("PUT", &path, Some(&body)).await?;
        Self::decode("PUT", self.url(&path), &v)
    }

    /// `DELETE /v2.0/{plural}/{id}`; a 404 counts as done.
    pub async fn delete(&self, plural: &str, id: &str) -> Result<(), NeutronError> {
        match self.send("DELETE", &format!("{plural}/{id}"), None).await {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `PUT /v2.0/routers/{id}/remove_router_interface`.
    pub async fn remove_router_interface(
        &self,
        router_id: &str,
        body: Value,
    ) -> Result<(), NeutronError> {
        let path = format!("routers/{router_id}/remove_router_interface");
        self.send("PUT", &path, Some(&body)).await.map(|_| ())
    }
}
