//! A small Neutron v2.0 HTTP client, the one the `wyvern` CLI uses.
//!
//! Resources travel as JSON objects rather than typed structs on purpose: the CLI shows
//! whatever the server returns (including fields it does not know about), and the server's
//! model is the single source of truth for the schema.

use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};

/// A Neutron resource kind the CLI can manage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Network,
    Subnet,
    Port,
    Router,
}

impl Kind {
    /// The JSON member name of one resource (`network`).
    pub fn singular(self) -> &'static str {
        match self {
            Kind::Network => "network",
            Kind::Subnet => "subnet",
            Kind::Port => "port",
            Kind::Router => "router",
        }
    }

    /// The collection name, used in URLs and list bodies (`networks`).
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Network => "networks",
            Kind::Subnet => "subnets",
            Kind::Port => "ports",
            Kind::Router => "routers",
        }
    }
}

/// Errors of the client. A Neutron error keeps the server's type and message, so that the
/// CLI can print them as the server meant them.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("failed to {method} {url}: {source}")]
    Transport {
        method: Method,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("failed to {method} {url}: HTTP {status} {kind}: {message}")]
    Neutron {
        method: Method,
        url: String,
        status: StatusCode,
        kind: String,
        message: String,
    },
    #[error("failed to {method} {url}: HTTP {status}: {body}")]
    Http {
        method: Method,
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("failed to decode the answer of {method} {url}: {detail}")]
    Decode {
        method: Method,
        url: String,
        detail: String,
    },
    #[error("failed to find {kind} {name:?}")]
    NotFound { kind: &'static str, name: String },
    #[error("failed to pick {kind} {name:?}: {count} have that name, use the id")]
    Ambiguous {
        kind: &'static str,
        name: String,
        count: usize,
    },
}

/// A Neutron API endpoint with an optional token.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// `base` is the endpoint root (`http://127.0.0.1:9696`), without `/v2.0`.
    pub fn new(base: &str, token: Option<String>) -> Self {
        Client {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
            token,
        }
    }

    /// Sends one request to `/v2.0/<path>` and decodes the JSON answer (`Null` for 204).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ClientError> {
        let url = format!("{}/v2.0/{}", self.base, path.trim_start_matches('/'));
        let mut req = self.http.request(method.clone(), &url);
        if let Some(t) = &self.token {
            req = req.header("X-Auth-Token", t);
        }
        if let Some(b) = &body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|source| ClientError::Transport {
            method: method.clone(),
            url: url.clone(),
            source,
        })?;
        let status = resp.status();
        let text = resp.text().await.map_err(|source| ClientError::Transport {
            method: method.clone(),
            url: url.clone(),
            source,
        })?;
        if !status.is_success() {
            return Err(neutron_error(method, url, status, &text));
        }
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| ClientError::Decode {
            method,
            url,
            detail: e.to_string(),
        })
    }

    /// Lists a collection; `query` is appended as is (`name=x&network_id=y`).
    pub async fn list(&self, kind: Kind, query: &str) -> Result<Vec<Value>, ClientError> {
        let path = if query.is_empty() {
            kind.plural().to_owned()
        } else {
            format!("{}?{}", kind.plural(), query)
        };
        let v = self.request(Method::GET, &path, None).await?;
        match v.get(kind.plural()).and_then(Value::as_array) {
            Some(items) => Ok(items.clone()),
            None => Err(ClientError::Decode {
                method: Method::GET,
                url: path,
                detail: format!("no {:?} list in the answer", kind.plural()),
            }),
        }
    }

    pub async fn show(&self, kind: Kind, id: &str) -> Result<Value, ClientError> {
        let path = format!("{}/{}", kind.plural(), id);
        let v = self.request(Method::GET, &path, None).await?;
        unwrap_member(v, kind, Method::GET, path)
    }

    /// Creates one resource from the attributes in `attrs`.
    pub async fn create(
        &self,
        kind: Kind,
        attrs: Map<String, Value>,
    ) -> Result<Value, ClientError> {
        let v = self
            .request(
                Method::POST,
                kind.plural(),
                Some(json!({ kind.singular(): attrs })),
            )
            .await?;
        unwrap_member(v, kind, Method::POST, kind.plural().to_owned())
    }

    pub async fn update(
        &self,
        kind: Kind,
        id: &str,
        attrs: Map<String, Value>,
    ) -> Result<Value, ClientError> {
        let path = format!("{}/{}", kind.plural(), id);
        let v = self
            .request(Method::PUT, &path, Some(json!({ kind.singular(): attrs })))
            .await?;
        unwrap_member(v, kind, Method::PUT, path)
    }

    pub async fn delete(&self, kind: Kind, id: &str) -> Result<(), ClientError> {
        self.request(Method::DELETE, &format!("{}/{}", kind.plural(), id), None)
            .await
            .map(|_| ())
    }

    /// `add_router_interface` / `remove_router_interface`; `body` is `{"subnet_id": ..}`
    /// or `{"port_id": ..}`.
    pub async fn router_interface(
        &self,
        router_id: &str,
        add: bool,
        body: Value,
    ) -> Result<Value, ClientError> {
        let action = if add {
            "add_router_interface"
        } else {
            "remove_router_interface"
        };
        self.request(
            Method::PUT,
            &format!("routers/{router_id}/{action}"),
            Some(body),
        )
        .await
    }

    /// Finds a resource by id or by unique name, the way the openstack CLI does.
    pub async fn resolve(&self, kind: Kind, name_or_id: &str) -> Result<Value, ClientError> {
        match self.show(kind, name_or_id).await {
            Ok(v) => return Ok(v),
            Err(ClientError::Neutron { status, .. }) | Err(ClientError::Http { status, .. })
                if status == StatusCode::NOT_FOUND || status == StatusCode::BAD_REQUEST => {}
            Err(e) => return Err(e),
        }
        let mut found = self.find_by_name(kind, name_or_id).await?;
        match found.len() {
            0 => Err(ClientError::NotFound {
                kind: kind.singular(),
                name: name_or_id.to_owned(),
            }),
            1 => Ok(found.remove(0)),
            count => Err(ClientError::Ambiguous {
                kind: kind.singular(),
                name: name_or_id.to_owned(),
                count,
            }),
        }
    }

    /// Every resource of `kind` with exactly this name.
    pub async fn find_by_name(&self, kind: Kind, name: &str) -> Result<Vec<Value>, ClientError> {
        let query = format!("name={}", url_encode(name));
        let items = self.list(kind, &query).await?;
        // Filter again client-side: correctness must not depend on the server's filter.
        Ok(items
            .into_iter()
            .filter(|v| v.get("name").and_then(Value::as_str) == Some(name))
            .collect())
    }
}

fn unwrap_member(v: Value, kind: Kind, method: Method, url: String) -> Result<Value, ClientError> {
    match v {
        Value::Object(mut m) => m
            .remove(kind.singular())
            .ok_or_else(|| ClientError::Decode {
                method,
                url,
                detail: format!("no {:?} member in the answer", kind.singular()),
            }),
        _ => Err(ClientError::Decode {
            method,
            url,
            detail: "the answer is not a JSON object".to_owned(),
        }),
    }
}

fn neutron_error(method: Method, url: String, status: StatusCode, body: &str) -> ClientError {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let err = parsed.as_ref().and_then(|v| v.get("NeutronError"));
    match err {
        Some(e) => ClientError::Neutron {
            method,
            url,
            status,
            kind: e
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("Error")
                .to_owned(),
            message: e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
        },
        None => ClientError::Http {
            method,
            url,
            status,
            body: body.chars().take(500).collect(),
        },
    }
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neutron_errors_keep_type_and_message() {
        let e = neutron_error(
            Method::POST,
            "u".into(),
            StatusCode::CONFLICT,
            r#"{"NeutronError":{"type":"MacAddressInUse","message":"Unable to complete","detail":""}}"#,
        );
        let text = e.to_string();
        assert!(text.contains("409"), "{text}");
        assert!(
            text.contains("MacAddressInUse: Unable to complete"),
            "{text}"
        );
        let e = neutron_error(Method::GET, "u".into(), StatusCode::BAD_GATEWAY, "oops");
        assert!(e.to_string().contains("HTTP 502 Bad Gateway: oops"));
    }

    #[test]
    fn url_encode_escapes_reserved() {
        assert_eq!(url_encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(url_encode("net-1_x.y~"), "net-1_x.y~");
    }
}
