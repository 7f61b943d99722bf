//! `bench-checkpoint`: checkpoint and restore time of a project with `--ports` ports, into a
//! filesystem bank and into an S3 bank (moto from PyPI, or `--s3-endpoint`).
//!
//! A real wyvernd holds the project (one network, one /16 subnet, a router with an interface,
//! `--ports` VM ports). For each bank, `--runs` times: take a checkpoint (lease, one read of
//! wyvernd's `GET /v2.0/wyvern/topology` at one store revision, data objects, manifest),
//! verify it (every hash), and
//! restore it into a fresh, empty wyvernd (ids, MACs and IPs kept; bulk port creates).
//! Targets: checkpoint under 1 s, restore under 5 s. Prints one JSON document on stdout;
//! progress on stderr. Exits non-zero if a restore did not succeed or differs.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::{json, Value};
use wyvern_checkpoint::bank::{now_secs, Bank, BankConfig, CheckpointMeta};
use wyvern_checkpoint::graph::{ResourceRef, ResourceType};
use wyvern_checkpoint::neutron::{Endpoint, NeutronClient};
use wyvern_checkpoint::protect::{protect, Owner};
use wyvern_checkpoint::restore::{load, restore, RestoreOptions};
use wyvern_testkit::venv::Venv;
use wyvern_testkit::wyvernd::{Wyvernd, WyverndOptions};

#[derive(Debug, Parser)]
#[command(
    name = "bench-checkpoint",
    about = "Checkpoint and restore time of a project"
)]
struct Args {
    /// wyvernd binary [default: the wyvernd next to this executable].
    #[arg(long, env = "WYVERND")]
    wyvernd: Option<PathBuf>,
    /// VM ports in the project.
    #[arg(long, default_value_t = 5000)]
    ports: usize,
    /// Runs per bank.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// An existing S3 endpoint (bucket `wyvern-bench` must exist) instead of moto.
    #[arg(long)]
    s3_endpoint: Option<String>,
    /// Skip the S3 bank.
    #[arg(long)]
    no_s3: bool,
    /// Ports per bulk create on restore [default: the service's].
    #[arg(long)]
    bulk: Option<usize>,
    /// Bulk creates in flight on restore [default: the service's].
    #[arg(long)]
    bulk_in_flight: Option<usize>,
}

fn exe_dir() -> anyhow::Result<PathBuf> {
    Ok(std::env::current_exe()?
        .parent()
        .context("the executable has no directory")?
        .to_path_buf())
}

struct Moto(Child);
impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_moto() -> anyhow::Result<(Moto, String)> {
    // <target>/release -> venvs under <target>/tmp, shared with the tests.
    let target_tmp = exe_dir()?.parent().context("no target dir")?.join("tmp");
    let venv = Venv::ensure(&target_tmp, "moto", &["moto[server]==5.2.5"])?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new(venv.bin("moto_server"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("failed to start moto_server")?;
    let moto = Moto(child);
    let endpoint = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("{endpoint}/")).send().await.is_err() {
        if Instant::now() > deadline {
            bail!("moto did not answer");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok((moto, endpoint))
}

async fn build_project(c: &NeutronClient, ports: usize) -> anyhow::Result<()> {
    let n = c
        .create("networks", "network", json!({"name": "bench"}))
        .await?;
    let s = c
        .create(
            "subnets",
            "subnet",
            json!({"network_id": n["id"], "cidr": "10.0.0.0/16", "ip_version": 4}),
        )
        .await?;
    let r = c
        .create("routers", "router", json!({"name": "bench"}))
        .await?;
    c.add_router_interface(
        r["id"].as_str().unwrap_or_default(),
        json!({"subnet_id": s["id"]}),
    )
    .await?;
    let items: Vec<Value> = (0..ports)
        .map(|i| json!({"network_id": n["id"], "name": format!("vm{i}"), "device_owner": "compute:nova", "device_id": format!("vm-{i}")}))
        .collect();
    for chunk in items.chunks(500) {
        c.create_bulk("ports", chunk.to_vec()).await?;
    }
    Ok(())
}

/// The project's resources without what a restore may not keep.
async fn dump(c: &NeutronClient) -> anyhow::Result<Value> {
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

fn stats(v: &[f64]) -> Value {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    json!({"runs": v, "min": s.first(), "median": s.get(s.len() / 2), "max": s.last()})
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin = match &args.wyvernd {
        Some(b) => b.clone(),
        None => exe_dir()?.join("wyvernd"),
    };
    if !bin.exists() {
        bail!(
            "{} not found (build it: cargo build --release -p wyvern-daemon)",
            bin.display()
        );
    }
    let src = WyverndOptions::new(&bin).start()?;
    let sc = NeutronClient::new(&Endpoint {
        url: src.url(),
        token: None,
    });
    eprintln!("building a project with {} ports", args.ports);
    let t = Instant::now();
    build_project(&sc, args.ports).await?;
    let build_s = t.elapsed().as_secs_f64();
    let original = dump(&sc).await?;

    let scratch = tempfile::tempdir()?;
    let mut banks: Vec<(&str, BankConfig)> = vec![(
        "fs",
        BankConfig::Fs {
            path: scratch.path().join("bank"),
        },
    )];
    let mut _moto = None;
    if !args.no_s3 {
        let endpoint = match &args.s3_endpoint {
            Some(e) => e.clone(),
            None => {
                let (m, e) = start_moto().await?;
                _moto = Some(m);
                let r = reqwest::Client::new()
                    .put(format!("{e}/wyvern-bench"))
                    .send()
                    .await?;
                if !r.status().is_success() {
                    bail!("creating the bucket answered {}", r.status());
                }
                e
            }
        };
        banks.push((
            "s3",
            BankConfig::S3 {
                bucket: "wyvern-bench".into(),
                endpoint: Some(endpoint),
                region: "us-east-1".into(),
                access_key_id: Some("bench".into()),
                secret_access_key: Some("bench".into()),
                allow_http: true,
                prefix: String::new(),
            },
        ));
    }

    let owner = Owner {
        service: "bench".into(),
        run: "bench".into(),
    };
    let mut results = serde_json::Map::new();
    let mut mismatches: Vec<String> = Vec::new();
    for (name, cfg) in &banks {
        let bank = Bank::open(cfg)?;
        let (mut cp_s, mut verify_s, mut restore_s, mut bytes) = (vec![], vec![], vec![], 0u64);
        let mut cut_method = String::new();
        for run in 0..args.runs {
            let meta = CheckpointMeta {
                id: uuid_v7(),
                project_id: "admin".into(),
                provider_id: (*name).into(),
                plan_id: "bench".into(),
                plan_name: "bench".into(),
                resources: vec![ResourceRef {
                    id: "admin".into(),
                    ty: ResourceType::Project,
                    name: String::new(),
                    extra_info: None,
                }],
                created_at: now_secs(),
                extra_info: Value::Null,
                owner: owner.service.clone(),
            };
            let t = Instant::now();
            let out = protect(&bank, &sc, &meta, &owner).await?;
            cp_s.push(t.elapsed().as_secs_f64());
            bytes = out.bytes;
            cut_method = out.manifest.cut.method.clone();
            let t = Instant::now();
            let (_, contents) = load(&bank, &meta.id).await?;
            verify_s.push(t.elapsed().as_secs_f64());
            let mut dst: Wyvernd = WyverndOptions::new(&bin).start()?;
            let dc = NeutronClient::new(&Endpoint {
                url: dst.url(),
                token: None,
            });
            let t = Instant::now();
            let dflt = RestoreOptions::default();
            let opts = RestoreOptions {
                bulk: args.bulk.unwrap_or(dflt.bulk),
                bulk_in_flight: args.bulk_in_flight.unwrap_or(dflt.bulk_in_flight),
                ..dflt
            };
            let rep = restore(&contents, &dc, &opts).await?;
            restore_s.push(t.elapsed().as_secs_f64());
            if !rep.succeeded() {
                bail!(
                    "restore into a fresh wyvernd failed: {:?}",
                    rep.resources_reason.iter().next()
                );
            }
            let got = dump(&dc).await?;
            if got != original {
                let diff = ["networks", "subnets", "ports", "routers"]
                    .iter()
                    .find_map(|c| {
                        let (a, b) = (original[c].as_array()?, got[c].as_array()?);
                        if a.len() != b.len() {
                            return Some(format!("{c}: {} vs {} items", a.len(), b.len()));
                        }
                        a.iter()
                            .zip(b)
                            .find(|(x, y)| x != y)
                            .map(|(x, y)| format!("{c}: {x} vs {y}"))
                    })
                    .unwrap_or_default();
                mismatches.push(format!("{name} run {run}: {diff}"));
            }
            let _ = dst.stop();
            eprintln!(
                "{name} run {run}: checkpoint {:.3}s, load+verify {:.3}s, restore {:.3}s",
                cp_s[run], verify_s[run], restore_s[run]
            );
        }
        results.insert(
            (*name).to_string(),
            json!({
                "checkpoint_seconds": stats(&cp_s),
                "load_verify_seconds": stats(&verify_s),
                "restore_seconds": stats(&restore_s),
                "checkpoint_bytes": bytes,
                "cut_method": cut_method,
                "checkpoint_target_met": cp_s.iter().all(|s| *s < 1.0),
                "restore_target_met": restore_s.iter().all(|s| *s < 5.0),
            }),
        );
    }
    let doc = json!({
        "bench": "checkpoint",
        "ports": args.ports,
        "resources": original["ports"].as_array().map(|a| a.len()).unwrap_or(0) + 3,
        "build_seconds": build_s,
        "banks": results,
        "targets": {"checkpoint_seconds": 1.0, "restore_seconds": 5.0},
        "restored_equal": mismatches.is_empty(),
        "mismatches": mismatches,
        "host": {"cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1), "loadavg_1m": wyvern_bench::loadavg_1m()},
    });
    println!("{}", serde_json::to_string_pretty(&doc)?);
    if !doc["restored_equal"].as_bool().unwrap_or(false) {
        bail!("a restored project differs from the original");
    }
    Ok(())
}

fn uuid_v7() -> String {
    uuid::Uuid::now_v7().to_string()
}
