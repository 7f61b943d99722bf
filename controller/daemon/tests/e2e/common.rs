//! Helpers of the end-to-end tests: a real wyvernd and a thin JSON client for it. They hide
//! the plumbing only; every assertion lives in the tests.

use std::path::Path;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use wyvern_testkit::wyvernd::{Wyvernd, WyverndOptions};

pub const WYVERND: &str = env!("CARGO_BIN_EXE_wyvernd");
pub const WYVERN: &str = env!("CARGO_BIN_EXE_wyvern");

/// A fresh wyvernd (temp data dir, no auth).
pub fn start() -> Wyvernd {
    Wyvernd::start(WYVERND).expect("wyvernd starts")
}

pub fn options() -> WyverndOptions {
    WyverndOptions::new(WYVERND)
}

/// Writes a token file with an admin and two members of different projects.
pub fn write_token_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("tokens.json");
    let body = json!({"tokens": {
        "admin-token": {"project_id": "admin-project", "roles": ["admin"]},
        "alice-token": {"project_id": "alice-project", "roles": ["member"]},
        "bob-token": {"project_id": "bob-project", "roles": ["member"]},
    }});
    std::fs::write(&path, body.to_string()).expect("token file written");
    path
}

/// A Neutron endpoint as one caller sees it.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub token: Option<String>,
}

/// An answer: status and JSON body (`Null` when empty).
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: StatusCode,
    pub body: Value,
}

impl Resp {
    /// Asserts a success status and returns the body.
    #[track_caller]
    pub fn ok(self, status: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected answer: {}",
            self.body
        );
        self.body
    }

    /// Asserts a Neutron error of this status and type; returns its message.
    #[track_caller]
    pub fn err(self, status: u16, kind: &str) -> String {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected answer: {}",
            self.body
        );
        let e = &self.body["NeutronError"];
        assert_eq!(e["type"], json!(kind), "unexpected error: {}", self.body);
        let msg = e["message"].as_str().unwrap_or_default().to_owned();
        assert!(!msg.is_empty(), "error without message: {}", self.body);
        msg
    }
}

impl Api {
    pub fn new(base: impl Into<String>) -> Self {
        Api {
            http: reqwest::Client::new(),
            base: base.into(),
            token: None,
        }
    }

    pub fn of(w: &Wyvernd) -> Self {
        Api::new(w.url())
    }

    pub fn with_token(&self, token: &str) -> Self {
        Api {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    /// One request; `path` is relative to the root (`/v2.0/networks`).
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(t) = &self.token {
            req = req.header("X-Auth-Token", t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let text = resp.text().await.expect("body read");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("answer is not JSON ({e}): {text}"))
        };
        Resp { status, body }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.call(Method::PUT, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> Resp {
        self.call(Method::DELETE, path, None).await
    }

    /// Creates one resource (`kind` singular) and returns it; asserts 201.
    pub async fn create(&self, kind: &str, attrs: Value) -> Value {
        let body = self
            .post(&format!("/v2.0/{kind}s"), json!({ kind: attrs }))
            .await
            .ok(201);
        body[kind].clone()
    }

    pub async fn network(&self, name: &str) -> Value {
        self.create("network", json!({"name": name})).await
    }

    pub async fn subnet(&self, net: &Value, cidr: &str) -> Value {
        self.create(
            "subnet",
            json!({"network_id": net["id"], "cidr": cidr, "ip_version": 4, "name": format!("sub-{cidr}")}),
        )
        .await
    }

    pub async fn port(&self, net: &Value, name: &str) -> Value {
        self.create("port", json!({"network_id": net["id"], "name": name}))
            .await
    }

    /// The list of a collection (`networks`), asserting 200.
    pub async fn list(&self, plural: &str, query: &str) -> Vec<Value> {
        let path = if query.is_empty() {
            format!("/v2.0/{plural}")
        } else {
            format!("/v2.0/{plural}?{query}")
        };
        let body = self.get(&path).await.ok(200);
        body[plural]
            .as_array()
            .unwrap_or_else(|| panic!("no {plural} list in {body}"))
            .clone()
    }
}

pub fn id(v: &Value) -> &str {
    v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}"))
}

/// The ids of a list, in order.
pub fn ids(items: &[Value]) -> Vec<String> {
    items.iter().map(|v| id(v).to_owned()).collect()
}

/// The IP addresses of a port.
pub fn ips(port: &Value) -> Vec<String> {
    port["fixed_ips"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| f["ip_address"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}
