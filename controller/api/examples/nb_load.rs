//! Quick load check of the API over the real redb store: 64 HTTP clients creating ports,
//! then a list of 10,000 ports, then RSS after filling to `--ports` (default 100,000).
//! Prints one JSON line. Run with `cargo run --release -p wyvern-api --example nb_load`.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wyvern_api::{router, serve, Auth, NbConfig, NbService};
use wyvern_store::{RedbOptions, RedbStore};

/// User + system CPU seconds of this process (server and client together).
fn cpu_secs() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = s
        .rsplit_once(')')
        .map_or("", |(_, r)| r)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn rss_mb() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let total: usize = std::env::args()
        .skip_while(|a| a != "--ports")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir()?;
    let store = RedbStore::open(&dir.path().join("wyvern.redb"), RedbOptions::default())?;
    let svc = NbService::open(store, NbConfig::default()).await?;
    let app = router(
        svc.clone(),
        Auth::NoAuth {
            default_project: "bench".into(),
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, app, async move {
        let _ = stop_rx.await;
    }));
    let base = format!("http://{addr}/v2.0");
    let client = reqwest::Client::new();
    let net: Value = client
        .post(format!("{base}/networks"))
        .json(&json!({"network": {"name": "bench"}}))
        .send()
        .await?
        .json()
        .await?;
    let nid = net["network"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    client
        .post(format!("{base}/subnets"))
        .json(&json!({"subnet": {"network_id": nid, "cidr": "10.0.0.0/8"}}))
        .send()
        .await?
        .error_for_status()?;

    // Phase 1: 64 clients, 10 seconds.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (client, base, nid) = (client.clone(), base.clone(), nid.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let r = client
                    .post(format!("{base}/ports"))
                    .json(&json!({"port": {"network_id": nid}}))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().as_u16() == 201 => lat.push(t.elapsed()),
                    Ok(r) => eprintln!("create failed: {}", r.status()),
                    Err(e) => eprintln!("create failed: {e}"),
                }
            }
            lat
        }));
    }
    let start = Instant::now();
    let cpu0 = cpu_secs();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await?);
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu_ms_per_create = (cpu_secs() - cpu0) * 1000.0 / lat.len().max(1) as f64;
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let created = lat.len();

    // Phase 2: list 10,000 ports (or all, if fewer were created).
    // Best of five: the machine may be shared.
    let mut list_ms = f64::MAX;
    let mut listed = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let body = client
            .get(format!("{base}/ports?limit=10000"))
            .send()
            .await?
            .bytes()
            .await?;
        list_ms = list_ms.min(t.elapsed().as_secs_f64() * 1000.0);
        listed = serde_json::from_slice::<Value>(&body)?["ports"]
            .as_array()
            .map_or(0, |a| a.len());
    }

    // Phase 3: fill to `total` ports with bulk creates, then measure RSS.
    let mut have = svc.read(|t| t.ports().count());
    while have < total {
        let n = (total - have).min(500);
        let ports: Vec<Value> = (0..n).map(|_| json!({"network_id": nid})).collect();
        client
            .post(format!("{base}/ports"))
            .json(&json!({ "ports": ports }))
            .send()
            .await?
            .error_for_status()?;
        have += n;
    }
    let rss = rss_mb();
    println!(
        "{}",
        json!({"creates": created, "creates_per_s": created as f64 / secs, "p50_ms": pct(0.5), "p99_ms": pct(0.99), "cpu_ms_per_create_incl_client": cpu_ms_per_create,
               "list_ports": listed, "list_ms": list_ms, "ports_stored": have, "rss_mb_in_process_with_client": rss})
    );
    let _ = stop_tx.send(());
    server.await??;
    Ok(())
}
