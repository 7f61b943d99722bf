//! Shared plumbing: two bottom wyvernd sites + one top wyvern-cascade, HTTP helpers and
//! polling with a deadline.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use reqwest::Method;
use serde_json::{json, Value};
use wyvern_testkit::cascade::{workspace_bin, Cascade};
use wyvern_testkit::wyvernd::{Wyvernd, WyverndOptions};

pub const CASCADE: &str = env!("CARGO_BIN_EXE_wyvern-cascade");
/// Deadline for anything crossing the top, the jobs and a bottom (a loaded 2-core box).
pub const LONG: Duration = Duration::from_secs(60);

/// The bottoms' wyvernd, built once per test process.
pub fn wyvernd_bin() -> std::path::PathBuf {
    static BIN: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        // A prebuilt one (CI builds the workspace first) saves a cargo invocation.
        if let Some(p) = std::env::var_os("WYVERN_TEST_WYVERND") {
            return p.into();
        }
        workspace_bin(
            "wyvern-daemon",
            "wyvernd",
            Path::new(env!("CARGO_TARGET_TMPDIR")),
        )
        .expect("wyvernd builds")
    })
    .clone()
}

/// A JSON HTTP endpoint (Neutron or admin).
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    pub base: String,
}

impl Api {
    pub fn new(base: String) -> Api {
        Api {
            http: reqwest::Client::new(),
            base,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .timeout(Duration::from_secs(20));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("failed to call {path}"))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.context("failed to read the body")?;
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).with_context(|| format!("not JSON: {text}"))?
        };
        Ok((status, v))
    }

    pub async fn expect(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        want: u16,
    ) -> anyhow::Result<Value> {
        let (status, v) = self.call(method.clone(), path, body).await?;
        if status != want {
            bail!("{method} {path}: HTTP {status}, want {want}: {v}");
        }
        Ok(v)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.expect(Method::GET, path, None, 200).await
    }

    /// Creates a Neutron resource (`kind` singular) and returns it.
    pub async fn create(&self, kind: &str, attrs: Value) -> anyhow::Result<Value> {
        let v = self
            .expect(
                Method::POST,
                &format!("/v2.0/{kind}s"),
                Some(json!({ kind: attrs })),
                201,
            )
            .await?;
        Ok(v[kind].clone())
    }

    /// Every object of a Neutron collection.
    pub async fn list(&self, coll: &str) -> anyhow::Result<Vec<Value>> {
        let v = self.get(&format!("/v2.0/{coll}")).await?;
        Ok(v[coll].as_array().cloned().unwrap_or_default())
    }
}

pub fn id(v: &Value) -> String {
    v["id"].as_str().unwrap_or_default().to_owned()
}

/// Polls `probe` until it returns `Some`, or fails after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(v) = probe().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Two bottom sites (pods `RegionA`/az `az-a` and `RegionB`/az `az-b`) under one top.
pub struct Sites {
    pub top: Cascade,
    pub a: Wyvernd,
    pub b: Wyvernd,
    pub pod_a: String,
    pub pod_b: String,
}

impl Sites {
    pub async fn start() -> anyhow::Result<Sites> {
        Self::start_with(
            WyverndOptions::new(wyvernd_bin()).start()?,
            WyverndOptions::new(wyvernd_bin()).start()?,
        )
        .await
    }

    /// With bottoms the caller started (e.g. one with OVS).
    pub async fn start_with(a: Wyvernd, b: Wyvernd) -> anyhow::Result<Sites> {
        let top = Cascade::start(CASCADE, &["--status-interval-ms", "100"])?;
        let admin = Api::new(top.admin_url());
        let mut pods = Vec::new();
        for (region, az, url) in [("RegionA", "az-a", a.url()), ("RegionB", "az-b", b.url())] {
            let p = admin
                .expect(
                    Method::POST,
                    "/v1.0/pods",
                    Some(json!({"pod": {"region_name": region, "az_name": az, "api_url": url}})),
                    200,
                )
                .await?;
            pods.push(p["pod"]["pod_id"].as_str().unwrap_or_default().to_owned());
        }
        Ok(Sites {
            top,
            a,
            b,
            pod_a: pods[0].clone(),
            pod_b: pods[1].clone(),
        })
    }

    pub fn top(&self) -> Api {
        Api::new(self.top.api_url())
    }
    pub fn admin(&self) -> Api {
        Api::new(self.top.admin_url())
    }
    pub fn bottom_a(&self) -> Api {
        Api::new(self.a.url())
    }
    pub fn bottom_b(&self) -> Api {
        Api::new(self.b.url())
    }

    pub async fn routings(&self) -> anyhow::Result<Vec<Value>> {
        let v = self.admin().get("/v1.0/routings").await?;
        Ok(v["routings"].as_array().cloned().unwrap_or_default())
    }

    pub async fn jobs(&self, query: &str) -> anyhow::Result<Vec<Value>> {
        let v = self.admin().get(&format!("/v1.0/jobs{query}")).await?;
        Ok(v["jobs"].as_array().cloned().unwrap_or_default())
    }

    /// Waits until no job is New or Running; fails if any job failed.
    pub async fn settled(&self) -> anyhow::Result<()> {
        eventually("every job to finish", LONG, || async {
            let jobs = self.jobs("").await.ok()?;
            jobs.iter()
                .all(|j| j["status"] == "Success" || j["status"] == "Fail")
                .then_some(())
        })
        .await
        .with_context(|| self.top.log_tail())?;
        let failed = self.jobs("?status=Fail").await?;
        if !failed.is_empty() {
            bail!("failed jobs: {failed:#?}\n{}", self.top.log_tail());
        }
        Ok(())
    }

    /// The Prometheus text of the admin listener's `/metrics`.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let url = format!("{}/metrics", self.top.admin_url());
        Ok(reqwest::get(&url).await?.text().await?)
    }

    pub async fn set_pod_url(&self, pod: &str, url: &str) -> anyhow::Result<()> {
        self.admin()
            .expect(
                Method::PUT,
                &format!("/v1.0/pods/{pod}"),
                Some(json!({"pod": {"api_url": url}})),
                200,
            )
            .await?;
        Ok(())
    }
}

/// `(id, ip, mac)` of each port of a list, sorted.
pub fn port_keys(ports: &[Value]) -> Vec<(String, String, String)> {
    let mut v: Vec<_> = ports
        .iter()
        .map(|p| {
            (
                id(p),
                p["fixed_ips"][0]["ip_address"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                p["mac_address"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

pub fn ids(list: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(id).collect();
    v.sort();
    v
}
