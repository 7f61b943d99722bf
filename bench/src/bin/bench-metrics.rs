//! `bench-metrics`: what a Prometheus scrape of wyvernd's `/metrics` costs at scale, and that
//! the series count does not grow with ports.
//!
//! A real wyvernd programs a private Open vSwitch (dummy datapath, `type=dummy`
//! interfaces). The same wyvernd is measured twice in one run:
//! 1. baseline: connected to the bridge, no topology;
//! 2. `--networks` x `--ports-per-network` ports (default 100 x 50 = 5,000) with `--routers`
//!    routers, every port bound to an interface, flows installed (read from /metrics itself:
//!    bindings = ports, installed = desired flows).
//!
//! Each time: `--scrapes` sequential `GET /metrics` over one keep-alive connection (the way
//! Prometheus scrapes). Reported: latency p50/p99/max, body size, sample lines (series) and
//! metric families, and wyvernd's CPU time per scrape.
//!
//! Prints one JSON document on stdout; progress on stderr.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::{json, Value};
use wyvern_bench::ovs::{bind, create_interfaces, iface_name, BRIDGE};
use wyvern_bench::{loadavg_1m, proc_cpu_time, prom_sample, Latency};
use wyvern_testkit::ovs::OvsSandbox;
use wyvern_testkit::wyvernd::WyverndOptions;

#[derive(Debug, Parser)]
#[command(
    name = "bench-metrics",
    about = "Benchmark wyvernd's /metrics at scale"
)]
struct Args {
    /// wyvernd binary [default: the wyvernd next to this executable].
    #[arg(long, env = "WYVERND")]
    wyvernd: Option<PathBuf>,
    #[arg(long, default_value_t = 100)]
    networks: usize,
    #[arg(long, default_value_t = 50)]
    ports_per_network: usize,
    #[arg(long, default_value_t = 10)]
    routers: usize,
    /// Networks joined by each router.
    #[arg(long, default_value_t = 10)]
    networks_per_router: usize,
    /// Concurrent API clients while building the topology.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Scrapes per measurement.
    #[arg(long, default_value_t = 200)]
    scrapes: usize,
    /// Give up waiting for any one phase after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
}

fn log(msg: impl AsRef<str>) {
    eprintln!("[bench-metrics] {}", msg.as_ref());
}

/// Neutron calls.
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> anyhow::Result<Value> {
        let resp = self
            .http
            .request(method.clone(), format!("{}/v2.0/{path}", self.base))
            .json(&body)
            .send()
            .await
            .with_context(|| format!("failed to {method} {path}"))?;
        let status = resp.status();
        let v: Value = resp.json().await.context("failed to read the answer")?;
        if !status.is_success() {
            bail!("{method} {path}: {status} {v}");
        }
        Ok(v)
    }
}

fn id_of(v: &Value, kind: &str) -> anyhow::Result<String> {
    v[kind]["id"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no {kind} id in {v}"))
}

/// Builds the topology through the API; returns the port ids.
async fn build(api: &Api, args: &Args) -> anyhow::Result<Vec<String>> {
    use futures::stream::{self, StreamExt, TryStreamExt};
    let nets: Vec<(String, String)> = stream::iter(0..args.networks)
        .map(|i| async move {
            let net = api
                .send(
                    reqwest::Method::POST,
                    "networks",
                    json!({"network": {"name": format!("net{i}")}}),
                )
                .await?;
            let net_id = id_of(&net, "network")?;
            let (a, b) = (1 + i / 256, i % 256);
            let sub = api
                .send(
                    reqwest::Method::POST,
                    "subnets",
                    json!({"subnet": {"network_id": net_id, "cidr": format!("10.{a}.{b}.0/24"),
                                      "ip_version": 4, "gateway_ip": format!("10.{a}.{b}.1")}}),
                )
                .await?;
            anyhow::Ok((net_id, id_of(&sub, "subnet")?))
        })
        .buffered(args.clients)
        .try_collect()
        .await?;
    for r in 0..args.routers {
        let router = api
            .send(
                reqwest::Method::POST,
                "routers",
                json!({"router": {"name": format!("r{r}")}}),
            )
            .await?;
        let rid = id_of(&router, "router")?;
        let start = (r * args.networks_per_router).min(args.networks);
        let end = (start + args.networks_per_router).min(args.networks);
        for net in &nets[start..end] {
            api.send(
                reqwest::Method::PUT,
                &format!("routers/{rid}/add_router_interface"),
                json!({"subnet_id": net.1}),
            )
            .await?;
        }
    }
    let total = args.networks * args.ports_per_network;
    stream::iter(0..total)
        .map(|k| {
            let net_id = nets[k / args.ports_per_network].0.clone();
            async move {
                let p = api
                    .send(
                        reqwest::Method::POST,
                        "ports",
                        json!({"port": {"network_id": net_id, "name": format!("vm{k}")}}),
                    )
                    .await?;
                id_of(&p, "port")
            }
        })
        .buffered(args.clients)
        .try_collect()
        .await
}

/// `scrapes` sequential scrapes on one connection: latency, size, series, CPU.
async fn measure(
    http: &reqwest::Client,
    url: &str,
    scrapes: usize,
    pid: Option<u32>,
) -> anyhow::Result<Value> {
    // One warm-up scrape (connection setup, first-touch allocations).
    let body = http.get(url).send().await?.text().await?;
    let cpu0 = pid.and_then(proc_cpu_time);
    let mut times = Vec::with_capacity(scrapes);
    let mut bytes = body.len();
    for _ in 0..scrapes {
        let t = Instant::now();
        let resp = http.get(url).send().await?;
        if !resp.status().is_success() {
            bail!("GET {url}: {}", resp.status());
        }
        let text = resp.text().await?;
        times.push(t.elapsed());
        bytes = text.len();
    }
    let cpu = match (cpu0, pid.and_then(proc_cpu_time)) {
        (Some(a), Some(b)) => json!((b.saturating_sub(a)).as_secs_f64() * 1e3 / scrapes as f64),
        _ => Value::Null,
    };
    let series = body
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    let families = body.lines().filter(|l| l.starts_with("# TYPE ")).count();
    Ok(json!({
        "scrape": Latency::of(&mut times),
        "body_bytes": bytes,
        "series": series,
        "families": families,
        "wyvernd_cpu_ms_per_scrape": cpu,
    }))
}

async fn run(args: &Args, wyvernd_bin: &Path) -> anyhow::Result<Value> {
    let timeout = Duration::from_secs(args.timeout_secs);
    let sb = OvsSandbox::dummy()?;
    let w = WyverndOptions::new(wyvernd_bin)
        .env("RUST_LOG", "info")
        .arg("--metrics-listen")
        .arg("127.0.0.1:0")
        .switch(&sb, BRIDGE, "wyvernd-of.sock")
        .start()?;
    let url = format!(
        "http://{}/metrics",
        w.metrics_addr(Duration::from_secs(30))?
    );
    let http = reqwest::Client::new();
    let scrape = |http: &reqwest::Client| {
        let (http, url) = (http.clone(), url.clone());
        async move { anyhow::Ok(http.get(&url).send().await?.text().await?) }
    };
    // Baseline: connected, nothing built.
    let deadline = Instant::now() + timeout;
    loop {
        let t = scrape(&http).await?;
        if prom_sample(&t, "wyvern_openflow_connected") == Some(1.0) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the bridge never connected\n{}", w.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    log("baseline: empty topology");
    let empty = measure(&http, &url, args.scrapes, w.pid()).await?;

    let total = args.networks * args.ports_per_network;
    log(format!("creating {total} dummy interfaces"));
    let t = Instant::now();
    create_interfaces(&sb, 0, total, timeout)?;
    let vswitchd_ports_s = t.elapsed().as_secs_f64();
    log(format!("  {vswitchd_ports_s:.1} s"));
    log("building the topology through the API");
    let api = Api {
        http: http.clone(),
        base: w.url(),
    };
    let ports = build(&api, args).await?;
    log(format!("binding {} interfaces", ports.len()));
    let pairs: Vec<(String, String)> = ports
        .iter()
        .enumerate()
        .map(|(i, id)| (iface_name(i), id.clone()))
        .collect();
    bind(&sb, &pairs)?;
    log("waiting until every port is bound and its flows are installed");
    let settled_at = Instant::now();
    let deadline = settled_at + timeout;
    loop {
        let t = scrape(&http).await?;
        let v = |s: &str| prom_sample(&t, s).unwrap_or(-1.0);
        let desired = v("wyvern_openflow_flows{state=\"desired\"}");
        if v("wyvern_port_bindings") == total as f64
            && desired > 0.0
            && v("wyvern_openflow_flows{state=\"installed\"}") == desired
            && v("wyvern_pipeline_installed_revision") == v("wyvern_pipeline_compiled_revision")
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("the topology never settled\n{}", w.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Quiet: port status write-back and the like are done once the store revision held
    // still for two seconds, so the scrapes are measured alone.
    let mut last_rev = -1.0;
    let mut since = Instant::now();
    loop {
        let rev = prom_sample(&scrape(&http).await?, "wyvern_store_revision").unwrap_or(-1.0);
        if rev != last_rev {
            last_rev = rev;
            since = Instant::now();
        } else if since.elapsed() >= Duration::from_secs(2) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the store never went quiet\n{}", w.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    log(format!(
        "settled and quiet {:.1} s after binding; measuring",
        settled_at.elapsed().as_secs_f64()
    ));
    let full = measure(&http, &url, args.scrapes, w.pid()).await?;
    let last = scrape(&http).await?;
    let flows = last
        .lines()
        .filter(|l| l.starts_with("wyvern_pipeline_flows{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    Ok(json!({
        "ports": total,
        "vswitchd_create_interfaces_s": vswitchd_ports_s,
        "bound_ports": prom_sample(&last, "wyvern_port_bindings"),
        "compiled_flows": flows,
        "empty": empty,
        "at_scale": full,
        "series_growth": match (empty["series"].as_u64(), full["series"].as_u64()) {
            (Some(a), Some(b)) => json!(b as i64 - a as i64),
            _ => Value::Null,
        },
    }))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let wyvernd = match &args.wyvernd {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("executable without a directory")?
            .join("wyvernd"),
    };
    if args.ports_per_network > 250 {
        bail!("the /24 addressing holds at most 250 ports per network");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the tokio runtime")?;
    let load_before = loadavg_1m();
    let result = rt.block_on(run(&args, &wyvernd))?;
    let report = json!({
        "benchmark": "bench-metrics",
        "target_ms": 10.0,
        "result": result,
        "loadavg_1m_before": load_before,
        "loadavg_1m_after": loadavg_1m(),
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    Ok(())
}
