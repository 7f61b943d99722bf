//! Test harness: the real `wyvern-checkpoint` binary, real wyvernd processes, a topology
//! builder and comparison, and an S3 server (moto) from PyPI.
#![allow(dead_code)]

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use wyvern_checkpoint::neutron::{Endpoint, NeutronClient};
use wyvern_checkpoint::service::READY_PREFIX;
use wyvern_testkit::service::{Service, ServiceSpec};
use wyvern_testkit::venv::Venv;
use wyvern_testkit::wyvernd::Wyvernd;

pub const PROVIDER_FS: &str = "cf56bd3e-97a7-4078-b6d5-f36246333fd9";
pub const PROVIDER_S3: &str = "b766f37c-d011-4026-8228-28730d734a3f";
pub const PROJECT: &str = "admin";

/// The wyvernd binary: `$WYVERND` if set, else built on demand with this test's cargo and
/// target dir.
pub fn wyvernd_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("WYVERND") {
            return PathBuf::from(p);
        }
        wyvern_testkit::cascade::workspace_bin(
            "wyvern-daemon",
            "wyvernd",
            Path::new(env!("CARGO_TARGET_TMPDIR")),
        )
        .expect("failed to build wyvernd")
    })
    .clone()
}

pub fn start_wyvernd() -> Wyvernd {
    Wyvernd::start(wyvernd_bin()).expect("failed to start wyvernd")
}

pub fn client(w: &Wyvernd) -> NeutronClient {
    NeutronClient::new(&Endpoint {
        url: w.url(),
        token: None,
    })
}

/// Polls `f` every 50 ms until it returns `Some`, or fails after `timeout`.
pub async fn poll<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A running wyvern-checkpoint; killed and reaped on drop.
pub struct Svc {
    svc: Service,
    pub data_dir: PathBuf,
    pub url: String,
    http: reqwest::Client,
}

impl Svc {
    /// Starts the service against `wyvern_api` with `providers_toml` appended to its config.
    pub fn start(wyvern_api: &str, providers_toml: &str) -> Result<Svc> {
        let scratch = tempfile::Builder::new()
            .prefix("checkpoint-test-")
            .tempdir()?;
        let data_dir = scratch.path().join("data");
        let bank = scratch.path().join("bank");
        let cfg = scratch.path().join("checkpoint.toml");
        std::fs::write(
            &cfg,
            format!(
                "[[providers]]\nid = \"{PROVIDER_FS}\"\nname = \"fs\"\n[providers.bank]\ntype = \"fs\"\npath = \"{}\"\n{providers_toml}",
                bank.display()
            ),
        )?;
        let mut spec = ServiceSpec::new(
            "wyvern-checkpoint",
            env!("CARGO_BIN_EXE_wyvern-checkpoint"),
            READY_PREFIX,
        )
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .args([data_dir.display().to_string()])
        .args(["--wyvern-api", wyvern_api, "--config"])
        .args([cfg.display().to_string()]);
        spec.tail_lines = 200;
        let svc = spec.start(scratch)?;
        let url = svc.ready_line().to_string();
        Ok(Svc {
            svc,
            data_dir,
            url,
            http: reqwest::Client::new(),
        })
    }

    pub fn bank_dir(&self) -> PathBuf {
        self.svc.scratch().join("bank")
    }

    pub fn log_tail(&self) -> String {
        self.svc.log_tail()
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.svc.kill();
    }

    /// Starts again on the same data dir and config (after `kill`).
    pub fn restart(&mut self) -> Result<()> {
        self.svc.restart()?;
        self.url = self.svc.ready_line().to_string();
        Ok(())
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let url = format!("{}/v1/{PROJECT}/{path}", self.url);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .with_context(|| format!("{method} {url} answered {text}"))?
        };
        Ok((status, v))
    }

    pub async fn ok(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (st, v) = self
            .call(method.clone(), path, body)
            .await
            .expect("request failed");
        assert!(
            (200..300).contains(&st),
            "{method} {path} answered {st}: {v}\n{}",
            self.log_tail()
        );
        v
    }

    /// A plan over the whole project; returns its id.
    pub async fn project_plan(&self, provider: &str) -> String {
        let v = self
            .ok(
                reqwest::Method::POST,
                "plans",
                Some(json!({"plan": {"name": "everything", "provider_id": provider,
                    "resources": [{"id": PROJECT, "type": "OS::Keystone::Project", "name": PROJECT}],
                    "parameters": {}}})),
            )
            .await;
        assert_eq!(v["plan"]["status"], "suspended");
        v["plan"]["id"].as_str().expect("plan id").to_string()
    }

    /// Takes a checkpoint and waits for it to leave `protecting`; returns (id, status).
    pub async fn checkpoint(&self, provider: &str, plan: &str) -> (String, String) {
        let v = self
            .ok(
                reqwest::Method::POST,
                &format!("providers/{provider}/checkpoints"),
                Some(json!({"checkpoint": {"plan_id": plan, "extra_info": {}}})),
            )
            .await;
        assert_eq!(v["checkpoint"]["status"], "protecting");
        let id = v["checkpoint"]["id"]
            .as_str()
            .expect("checkpoint id")
            .to_string();
        let status = poll(
            "the checkpoint to finish",
            Duration::from_secs(30),
            || async {
                let v = self
                    .ok(
                        reqwest::Method::GET,
                        &format!("providers/{provider}/checkpoints/{id}"),
                        None,
                    )
                    .await;
                let s = v["checkpoint"]["status"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if s == "error" {
                    // The reason is in the record; the caller's assertion shows only the status.
                    eprintln!("checkpoint {id} failed: {}", v["checkpoint"]["error"]);
                }
                (s != "protecting").then_some(s)
            },
        )
        .await
        .expect("checkpoint never finished");
        (id, status)
    }

    /// Starts a restore and waits for it; returns the restore record.
    pub async fn restore(&self, provider: &str, checkpoint: &str, target: Option<&str>) -> Value {
        let mut r = json!({"provider_id": provider, "checkpoint_id": checkpoint, "parameters": {}});
        if let Some(t) = target {
            r["restore_target"] = json!(t);
        }
        let v = self
            .ok(
                reqwest::Method::POST,
                "restores",
                Some(json!({ "restore": r })),
            )
            .await;
        let id = v["restore"]["id"].as_str().expect("restore id").to_string();
        poll("the restore to finish", Duration::from_secs(60), || async {
            let v = self
                .ok(reqwest::Method::GET, &format!("restores/{id}"), None)
                .await;
            (v["restore"]["status"] != "in_progress").then_some(v["restore"].clone())
        })
        .await
        .expect("restore never finished")
    }
}

// ----- topology ------------------------------------------------------------------------------

/// Two networks, a router joining them (one interface by subnet, one by a port with a chosen
/// IP), a static route, five VM ports with chosen MACs, one with an address pair.
pub async fn build_topology(c: &NeutronClient) -> Result<()> {
    let n1 = c
        .create("networks", "network", json!({"name": "net1", "mtu": 1450}))
        .await?;
    let n2 = c
        .create(
            "networks",
            "network",
            json!({"name": "net2", "port_security_enabled": false}),
        )
        .await?;
    let s1 = c
        .create(
            "subnets",
            "subnet",
            json!({"network_id": n1["id"], "cidr": "10.1.0.0/24", "ip_version": 4, "name": "sub1",
                   "dns_nameservers": ["10.1.0.53"],
                   "host_routes": [{"destination": "172.16.0.0/16", "nexthop": "10.1.0.254"}]}),
        )
        .await?;
    let s2 = c
        .create(
            "subnets",
            "subnet",
            json!({"network_id": n2["id"], "cidr": "10.2.0.0/24", "ip_version": 4, "name": "sub2",
                   "allocation_pools": [{"start": "10.2.0.100", "end": "10.2.0.200"}]}),
        )
        .await?;
    let r = c.create("routers", "router", json!({"name": "r1"})).await?;
    let rid = r["id"].as_str().context("router id")?.to_string();
    c.add_router_interface(&rid, json!({"subnet_id": s1["id"]}))
        .await?;
    let rp = c
        .create(
            "ports",
            "port",
            json!({"network_id": n2["id"], "fixed_ips": [{"subnet_id": s2["id"], "ip_address": "10.2.0.2"}]}),
        )
        .await?;
    c.add_router_interface(&rid, json!({"port_id": rp["id"]}))
        .await?;
    c.update(
        "routers",
        "router",
        &rid,
        json!({"routes": [{"destination": "192.168.50.0/24", "nexthop": "10.2.0.150"}]}),
    )
    .await?;
    for i in 0..5u8 {
        let (net, sub, ip) = if i % 2 == 0 {
            (&n1, &s1, format!("10.1.0.{}", 10 + i))
        } else {
            (&n2, &s2, format!("10.2.0.{}", 150 + i))
        };
        let mut body = json!({"network_id": net["id"], "name": format!("vm{i}"),
            "mac_address": format!("fa:16:3e:00:00:{:02x}", 0x10 + i),
            "fixed_ips": [{"subnet_id": sub["id"], "ip_address": ip}],
            "device_id": format!("vm-{i}"), "device_owner": "compute:nova"});
        if i == 0 {
            body["allowed_address_pairs"] = json!([{"ip_address": "10.1.0.200"}]);
        }
        c.create("ports", "port", body).await?;
    }
    Ok(())
}

/// Many ports on one network (for restores at scale).
pub async fn build_ports(c: &NeutronClient, network: &str, subnet: &str, n: usize) -> Result<()> {
    let items: Vec<Value> = (0..n)
        .map(|i| json!({"network_id": network, "name": format!("p{i}"), "fixed_ips": [{"subnet_id": subnet}]}))
        .collect();
    for chunk in items.chunks(500) {
        c.create_bulk("ports", chunk.to_vec()).await?;
    }
    Ok(())
}

/// Every resource, with what a restore cannot keep (timestamps, revisions, status) removed,
/// sorted by id: two topologies are equal iff their dumps are.
pub async fn dump(c: &NeutronClient) -> Result<Value> {
    let mut out = serde_json::Map::new();
    for col in ["networks", "subnets", "ports", "routers"] {
        let (_, mut items) = c.list(col).await?;
        for it in &mut items {
            if let Some(m) = it.as_object_mut() {
                for k in ["created_at", "updated_at", "revision_number", "status"] {
                    m.remove(k);
                }
            }
        }
        items.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        out.insert(col.into(), Value::Array(items));
    }
    Ok(Value::Object(out))
}

/// Deletes everything: routes, interfaces, routers, ports, subnets, networks.
pub async fn delete_all(c: &NeutronClient) -> Result<()> {
    let (_, routers) = c.list("routers").await?;
    let (_, ports) = c.list("ports").await?;
    for r in &routers {
        let id = r["id"].as_str().context("router id")?;
        c.update("routers", "router", id, json!({"routes": []}))
            .await?;
        for p in ports
            .iter()
            .filter(|p| p["device_id"] == *id && p["device_owner"] == "network:router_interface")
        {
            c.remove_router_interface(id, json!({"port_id": p["id"]}))
                .await?;
        }
        c.delete("routers", id).await?;
    }
    let (_, ports) = c.list("ports").await?;
    for p in &ports {
        c.delete("ports", p["id"].as_str().context("port id")?)
            .await?;
    }
    for col in ["subnets", "networks"] {
        let (_, items) = c.list(col).await?;
        for it in &items {
            c.delete(col, it["id"].as_str().context("id")?).await?;
        }
    }
    Ok(())
}

// ----- S3 (moto) ------------------------------------------------------------------------------

pub const MOTO: &[&str] = &["moto[server]==5.2.5"];

/// A moto S3 server on a free port; killed on drop.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a: SocketAddr| a.port())
        .expect("no free port")
}

impl Moto {
    pub async fn start() -> Result<Moto> {
        let venv = Venv::ensure(Path::new(env!("CARGO_TARGET_TMPDIR")), "moto", MOTO)?;
        let port = free_port();
        let child = Command::new(venv.bin("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("failed to start moto_server")?;
        let m = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        poll("moto to answer", Duration::from_secs(30), || async {
            http.get(format!("{}/", m.endpoint))
                .send()
                .await
                .ok()
                .map(|_| ())
        })
        .await?;
        Ok(m)
    }

    /// Creates a bucket (moto accepts unsigned requests).
    pub async fn bucket(&self, name: &str) -> Result<()> {
        let r = reqwest::Client::new()
            .put(format!("{}/{name}", self.endpoint))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("creating bucket {name} answered {}", r.status());
        }
        Ok(())
    }

    pub fn provider_toml(&self, bucket: &str) -> String {
        format!(
            "[[providers]]\nid = \"{PROVIDER_S3}\"\nname = \"s3\"\n[providers.bank]\ntype = \"s3\"\nbucket = \"{bucket}\"\nendpoint = \"{}\"\naccess_key_id = \"test\"\nsecret_access_key = \"test\"\nallow_http = true\n",
            self.endpoint
        )
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
