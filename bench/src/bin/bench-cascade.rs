//! `bench-cascade`: the cascade service's top API throughput with two pods, and the time
//! from a top port create to the bottom's flows.
//!
//! Setup: pod A is a wyvernd programming a dummy-datapath OVS sandbox, pod B a plain
//! wyvernd; the top is wyvern-cascade with both registered. One network with a /16 subnet.
//! 1. `--ports` port creates at the top with `--clients` concurrent clients, placed
//!    alternately in A and B: top creates/s and latency (the user's view), then the time
//!    until every job finished (the bottoms' copies, same ids, IPs and MACs).
//! 2. `--samples` times, one at a time: an OVS interface is bound to a chosen port id first
//!    (the top accepts an admin-chosen id), then the port is created at the top placed in
//!    A; the time until `ovs-ofctl dump-flows br-int` shows the port's MAC (polled every
//!    2 ms) is one sample. A direct create on pod A's wyvernd, the same way, is the
//!    same-run baseline: the difference is what the cascade adds.
//!
//! Binaries default to the ones next to this executable (`cargo build --release -p
//! wyvern-daemon -p wyvern-cascade -p wyvern-bench`). One JSON document on stdout.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::{json, Value};
use wyvern_bench::{loadavg_1m, Latency};
use wyvern_testkit::cascade::Cascade;
use wyvern_testkit::ovs::OvsSandbox;
use wyvern_testkit::wyvernd::WyverndOptions;

#[derive(Debug, Parser)]
#[command(name = "bench-cascade", about = "Benchmark the cascade service")]
struct Args {
    #[arg(long, env = "WYVERND")]
    wyvernd: Option<PathBuf>,
    #[arg(long, env = "WYVERN_CASCADE")]
    cascade: Option<PathBuf>,
    /// Ports created at the top in the throughput phase.
    #[arg(long, default_value_t = 2000)]
    ports: usize,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Create-to-flows samples.
    #[arg(long, default_value_t = 30)]
    samples: usize,
}

fn next_to_me(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("failed to find my own path")?;
    Ok(me.parent().context("no parent dir")?.join(name))
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> anyhow::Result<(u16, Value)> {
    let mut req = http.request(method, url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("failed to call {url}"))?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

async fn expect(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
    want: u16,
) -> anyhow::Result<Value> {
    let (s, v) = call(http, method.clone(), url, body).await?;
    if s != want {
        bail!("{method} {url}: HTTP {s}: {v}");
    }
    Ok(v)
}

/// Waits until no job of the cascade is New or Running.
async fn settle(http: &reqwest::Client, admin: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let v = expect(
            http,
            reqwest::Method::GET,
            &format!("{admin}/v1.0/jobs"),
            None,
            200,
        )
        .await?;
        let jobs = v["jobs"].as_array().cloned().unwrap_or_default();
        let failed = jobs.iter().filter(|j| j["status"] == "Fail").count();
        if failed > 0 {
            bail!("{failed} jobs failed");
        }
        if jobs.iter().all(|j| j["status"] == "Success") {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("jobs did not settle in {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls the flow table until `mac` appears; the elapsed time since `t0`.
fn wait_mac(ovs: &OvsSandbox, mac: &str, t0: Instant) -> anyhow::Result<Duration> {
    let deadline = t0 + Duration::from_secs(30);
    loop {
        if ovs.ofctl(&["dump-flows", "br-int"])?.contains(mac) {
            return Ok(t0.elapsed());
        }
        if Instant::now() > deadline {
            bail!("flows for {mac} never appeared");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn new_id() -> String {
    // A random UUID v4 without a uuid dependency: 16 bytes from /dev/urandom.
    let mut b = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// One create-to-flows sample against `api` (the top or pod A directly).
async fn sample(
    http: &reqwest::Client,
    ovs: &OvsSandbox,
    api: &str,
    net: &str,
    n: usize,
    placed: bool,
) -> anyhow::Result<Duration> {
    let pid = new_id();
    let iface = format!("lat{n}");
    ovs.add_dummy_port("br-int", &iface, Some(&pid))?;
    let mut port = json!({"id": pid, "network_id": net, "name": iface});
    if placed {
        port["binding:host_id"] = json!("h1@RegionA");
    }
    let t0 = Instant::now();
    let v = expect(
        http,
        reqwest::Method::POST,
        &format!("{api}/v2.0/ports"),
        Some(json!({ "port": port })),
        201,
    )
    .await?;
    let mac = v["port"]["mac_address"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    wait_mac(ovs, &mac, t0)
}

async fn run(args: Args) -> anyhow::Result<Value> {
    let wyvernd = args.wyvernd.map_or_else(|| next_to_me("wyvernd"), Ok)?;
    let cascade = args
        .cascade
        .map_or_else(|| next_to_me("wyvern-cascade"), Ok)?;
    let ovs = OvsSandbox::dummy().context("failed to start OVS")?;
    let a = WyverndOptions::new(&wyvernd)
        .switch(&ovs, "br-int", "of.sock")
        .start()?;
    wyvern_testkit::poll::wait_until("pod A's flows", Duration::from_secs(60), || {
        ovs.ofctl(&["dump-flows", "br-int", "table=0"])
            .map(|f| f.contains("priority=0"))
            .unwrap_or(false)
    })?;
    let b = WyverndOptions::new(&wyvernd).start()?;
    let top = Cascade::start(&cascade, &["--status-interval-ms", "200"])?;
    let http = reqwest::Client::new();
    let (api, admin) = (top.api_url(), top.admin_url());
    for (region, url) in [("RegionA", a.url()), ("RegionB", b.url())] {
        expect(
            &http,
            reqwest::Method::POST,
            &format!("{admin}/v1.0/pods"),
            Some(json!({"pod": {"region_name": region, "api_url": url}})),
            200,
        )
        .await?;
    }
    let net = expect(
        &http,
        reqwest::Method::POST,
        &format!("{api}/v2.0/networks"),
        Some(json!({"network": {"name": "bench"}})),
        201,
    )
    .await?;
    let net = net["network"]["id"].as_str().unwrap_or_default().to_owned();
    expect(
        &http,
        reqwest::Method::POST,
        &format!("{api}/v2.0/subnets"),
        Some(json!({"subnet": {"network_id": net, "cidr": "10.128.0.0/16", "ip_version": 4}})),
        201,
    )
    .await?;

    // 1. Throughput at the top.
    eprintln!(
        "creating {} ports at the top with {} clients",
        args.ports, args.clients
    );
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let (http, api, net, next) = (http.clone(), api.clone(), net.clone(), next.clone());
        let total = args.ports;
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let host = if i % 2 == 0 { "RegionA" } else { "RegionB" };
                let body = json!({"port": {"network_id": net, "name": format!("p{i}"), "binding:host_id": host}});
                let t = Instant::now();
                match call(&http, reqwest::Method::POST, &format!("{api}/v2.0/ports"), Some(body)).await {
                    Ok((201, _)) => lat.push(t.elapsed()),
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        lat.extend(l);
        errors += e;
    }
    let top_secs = start.elapsed().as_secs_f64();
    if errors > 0 {
        bail!("{errors} top creates failed");
    }
    settle(&http, &admin, Duration::from_secs(600)).await?;
    let settled_secs = start.elapsed().as_secs_f64();
    let count = |url: String| {
        let http = http.clone();
        async move {
            let v = expect(
                &http,
                reqwest::Method::GET,
                &format!("{url}/v2.0/ports?fields=id"),
                None,
                200,
            )
            .await?;
            anyhow::Ok(v["ports"].as_array().map_or(0, Vec::len))
        }
    };
    let (in_a, in_b) = (count(a.url()).await?, count(b.url()).await?);
    if in_a + in_b != args.ports {
        bail!("bottoms hold {in_a} + {in_b} ports, want {}", args.ports);
    }
    eprintln!("top {top_secs:.2} s, all copies {settled_secs:.2} s");

    // 2. Create-to-flows latency: through the top vs directly on pod A.
    let mut via_top = Vec::new();
    let mut direct = Vec::new();
    for n in 0..args.samples {
        via_top.push(sample(&http, &ovs, &api, &net, 2 * n, true).await?);
        direct.push(sample(&http, &ovs, &a.url(), &net, 2 * n + 1, false).await?);
    }
    Ok(json!({
        "benchmark": "cascade",
        "pods": 2,
        "clients": args.clients,
        "top_creates": {
            "ports": args.ports,
            "seconds": top_secs,
            "creates_per_sec": args.ports as f64 / top_secs,
            "latency": Latency::of(&mut lat),
        },
        "bottom_copies": {
            "seconds_until_all_jobs_done": settled_secs,
            "ports_per_sec": args.ports as f64 / settled_secs,
            "pod_a_ports": in_a,
            "pod_b_ports": in_b,
        },
        "create_to_flows": {
            "samples": args.samples,
            "via_top": Latency::of(&mut via_top),
            "direct_on_pod_baseline": Latency::of(&mut direct),
        },
        "loadavg_1m": loadavg_1m(),
        "binaries": {"wyvernd": Path::new(&wyvernd).display().to_string(), "cascade": cascade.display().to_string()},
    }))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(v) => {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench-cascade failed: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
