//! `bench-api`: Neutron API throughput, latency, list time and memory of a real wyvernd.
//!
//! One fresh wyvernd (its own temp data dir, durable redb store, no auth) and two networks
//! with a /16 subnet each (100,000 ports do not fit in one /16). Then, with `--clients`
//! concurrent HTTP clients creating ports:
//! 1. create ports until `--list-size` exist (warm-up, also reported);
//! 2. list all of them (`GET /v2.0/ports`, all fields) `--list-runs` times;
//! 3. create ports until `--total-ports` exist: the headline creates/s and p50/p99;
//! 4. read wyvernd's VmRSS from /proc.
//!
//! Prints one JSON document on stdout; progress goes to stderr. Exits non-zero if a request
//! failed (a benchmark of failing requests is no benchmark).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use wyvern_bench::{loadavg_1m, proc_cpu_time, proc_status_kib, Latency};
use wyvern_testkit::wyvernd::WyverndOptions;

#[derive(Debug, Parser)]
#[command(name = "bench-api", about = "Benchmark wyvernd's Neutron API")]
struct Args {
    /// wyvernd binary [default: the wyvernd next to this executable].
    #[arg(long, env = "WYVERND")]
    wyvernd: Option<PathBuf>,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Ports in the store when the list is timed.
    #[arg(long, default_value_t = 10_000)]
    list_size: usize,
    /// How many times the list is timed.
    #[arg(long, default_value_t = 10)]
    list_runs: usize,
    /// Ports in the store when memory is measured; the creates from `list_size` to here are
    /// the throughput measurement.
    #[arg(long, default_value_t = 100_000)]
    total_ports: usize,
    /// Authenticate every request with a Keystone token: a real Keystone (PyPI, in the
    /// target dir's venv) is started, wyvernd runs with `--auth keystone` and its token cache.
    #[arg(long)]
    keystone: bool,
}

/// One create phase's result.
#[derive(Debug, serde::Serialize)]
struct CreatePhase {
    ports: usize,
    seconds: f64,
    creates_per_sec: f64,
    latency: Option<Latency>,
    /// CPU time of this benchmark process (the clients) per acknowledged create: it shares
    /// the machine with wyvernd, so it is reported beside wyvernd's.
    client_cpu_us_per_create: Option<f64>,
    errors: usize,
    first_error: Option<String>,
}

/// One keep-alive HTTP/1.1 connection per client: hyper's connection API directly, so the
/// client spends no CPU on pooling, URL parsing or JSON building per request (it shares the
/// two cores with wyvernd; reqwest cost about twice as much per request).
struct Conn {
    send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> anyhow::Result<Conn> {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("failed to connect to {addr}"))?;
        tcp.set_nodelay(true).context("failed to set TCP_NODELAY")?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .context("failed to start an HTTP/1.1 connection")?;
        tokio::spawn(async move {
            // Ends when the connection closes; a failed request reports its own error.
            let _ = conn.await;
        });
        Ok(Conn { send })
    }

    /// POSTs `body` (already JSON) and returns the status and the whole answer.
    async fn post(
        &mut self,
        req: &RequestTemplate,
        body: Bytes,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        self.send
            .ready()
            .await
            .context("connection closed by wyvernd")?;
        let mut b = hyper::Request::post(req.path.as_str())
            .header(hyper::header::HOST, req.host.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if let Some(t) = &req.token {
            b = b.header("x-auth-token", t.as_str());
        }
        let r = b
            .body(Full::new(body))
            .context("failed to build a request")?;
        let resp = self.send.send_request(r).await.context("POST failed")?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .context("failed to read an answer")?
            .to_bytes();
        Ok((status, body))
    }
}

/// What every create request of a phase shares.
struct RequestTemplate {
    host: String,
    path: String,
    token: Option<String>,
}

/// Creates `count` ports across `networks` with `clients` concurrent clients, each on its own
/// keep-alive connection. The request bodies are rendered before the clock starts.
async fn create_ports(
    addr: SocketAddr,
    token: Option<&str>,
    networks: &[String],
    count: usize,
    clients: usize,
    name_offset: usize,
) -> CreatePhase {
    let next = Arc::new(AtomicUsize::new(0));
    let template = Arc::new(RequestTemplate {
        host: addr.to_string(),
        path: "/v2.0/ports".to_owned(),
        token: token.map(str::to_owned),
    });
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        (0..count)
            .map(|i| {
                let net = &networks[i % networks.len()];
                let n = name_offset + i;
                Bytes::from(format!(
                    r#"{{"port":{{"network_id":"{net}","name":"bench-{n}"}}}}"#
                ))
            })
            .collect(),
    );
    let mut conns = Vec::with_capacity(clients);
    let mut connect_errors = 0usize;
    let mut first_error = None;
    for _ in 0..clients {
        match Conn::open(addr).await {
            Ok(c) => conns.push(c),
            Err(e) => {
                connect_errors += 1;
                first_error.get_or_insert(format!("{e:#}"));
            }
        }
    }
    let cpu0 = proc_cpu_time(std::process::id());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mut conn in conns {
        let (next, bodies, template) = (next.clone(), bodies.clone(), template.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0usize;
            let mut first_error = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let t0 = Instant::now();
                let outcome = match conn.post(&template, bodies[i].clone()).await {
                    Ok((s, _)) if s == StatusCode::CREATED => Ok(()),
                    Ok((s, body)) => Err(format!("HTTP {s}: {}", String::from_utf8_lossy(&body))),
                    Err(e) => Err(format!("{e:#}")),
                };
                match outcome {
                    Ok(()) => lat.push(t0.elapsed()),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                        if conn.send.is_closed() {
                            break;
                        }
                    }
                }
            }
            (lat, errors, first_error)
        }));
    }
    let mut lat = Vec::with_capacity(count);
    let mut errors = connect_errors;
    for t in tasks {
        match t.await {
            Ok((l, e, f)) => {
                lat.extend(l);
                errors += e;
                if first_error.is_none() {
                    first_error = f;
                }
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(format!("client task failed: {e}"));
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let client_cpu_us_per_create = match (cpu0, proc_cpu_time(std::process::id())) {
        (Some(a), Some(b)) if !lat.is_empty() => {
            Some((b - a).as_secs_f64() * 1e6 / lat.len() as f64)
        }
        _ => None,
    };
    CreatePhase {
        ports: lat.len(),
        seconds,
        creates_per_sec: lat.len() as f64 / seconds,
        latency: Latency::of(&mut lat),
        client_cpu_us_per_create,
        errors,
        first_error,
    }
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> anyhow::Result<Value> {
    let resp = http
        .post(&url)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = resp.status();
    let v: Value = resp
        .json()
        .await
        .with_context(|| format!("POST {url}: decode"))?;
    if status != 201 {
        bail!("POST {url}: HTTP {status}: {v}");
    }
    Ok(v)
}

fn default_wyvernd() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("failed to find bench-api's own path")?;
    let dir = me.parent().context("bench-api has no parent dir")?;
    Ok(dir.join("wyvernd"))
}

async fn run(args: Args) -> anyhow::Result<Value> {
    let bin = match args.wyvernd {
        Some(b) => b,
        None => default_wyvernd()?,
    };
    if !bin.exists() {
        bail!(
            "wyvernd not found at {} (build it or pass --wyvernd)",
            bin.display()
        );
    }
    if args.list_size > args.total_ports {
        bail!("--list-size must not exceed --total-ports");
    }
    let mut opts = WyverndOptions::new(&bin).env("RUST_LOG", "warn");
    let mut headers = reqwest::header::HeaderMap::new();
    let mut token_for_creates = None;
    // Kept alive for the whole run (dropping it stops Keystone).
    let _keystone = if args.keystone {
        let ks = wyvern_testkit::keystone::Keystone::start(&bin)?;
        ks.ensure_user("wyvern", "bench-service-pw", "service", &["service"])?;
        let user = ks.ensure_user("bench", "bench-pw", "bench", &["member"])?;
        opts = opts
            .arg("--auth")
            .arg("keystone")
            .arg("--keystone-url")
            .arg(ks.url())
            .arg("--keystone-username")
            .arg("wyvern")
            .arg("--keystone-password")
            .arg("bench-service-pw");
        let token = ks.token(&user)?;
        token_for_creates = Some(token.clone());
        headers.insert(
            "x-auth-token",
            token.parse().context("token is not a header value")?,
        );
        Some(ks)
    } else {
        None
    };
    let w = opts.start()?;
    let pid = w.pid().context("wyvernd has no pid")?;
    let base = w.url();
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(args.clients)
        .tcp_nodelay(true)
        .build()
        .context("failed to build the HTTP client")?;

    let mut networks = Vec::new();
    for (i, cidr) in ["10.100.0.0/16", "10.101.0.0/16"].iter().enumerate() {
        let net = post(
            &http,
            format!("{base}/v2.0/networks"),
            json!({"network": {"name": format!("bench-{i}")}}),
        )
        .await?;
        let id = net["network"]["id"]
            .as_str()
            .context("network without id")?
            .to_owned();
        post(
            &http,
            format!("{base}/v2.0/subnets"),
            json!({"subnet": {"network_id": id, "ip_version": 4, "cidr": cidr}}),
        )
        .await?;
        networks.push(id);
    }
    let rss_empty = proc_status_kib(pid, "VmRSS");

    eprintln!(
        "creating {} ports (warm-up) with {} clients",
        args.list_size, args.clients
    );
    let addr = w.addr();
    let token = token_for_creates.as_deref();
    let warm = create_ports(addr, token, &networks, args.list_size, args.clients, 0).await;
    eprintln!("  {:.0} creates/s", warm.creates_per_sec);

    eprintln!("listing {} ports {} times", args.list_size, args.list_runs);
    let mut list_lat = Vec::new();
    let mut list_bytes = 0;
    let list_cpu0 = proc_cpu_time(pid);
    for _ in 0..args.list_runs {
        let t0 = Instant::now();
        let resp = http
            .get(format!("{base}/v2.0/ports"))
            .send()
            .await
            .context("GET /v2.0/ports")?;
        let status = resp.status();
        let body = resp.bytes().await.context("GET /v2.0/ports: body")?;
        list_lat.push(t0.elapsed());
        if status != 200 {
            bail!("GET /v2.0/ports: HTTP {status}");
        }
        let v: Value = serde_json::from_slice(&body).context("GET /v2.0/ports: not JSON")?;
        let n = v["ports"].as_array().map(Vec::len).unwrap_or(0);
        if n != warm.ports {
            bail!(
                "GET /v2.0/ports returned {n} ports, expected {}",
                warm.ports
            );
        }
        list_bytes = body.len();
    }
    let list_cpu_ms = match (list_cpu0, proc_cpu_time(pid)) {
        (Some(a), Some(b)) => Some((b - a).as_secs_f64() * 1e3 / args.list_runs.max(1) as f64),
        _ => None,
    };
    let list = Latency::of(&mut list_lat);

    let rest = args.total_ports - args.list_size;
    eprintln!(
        "creating {rest} more ports (measured) with {} clients",
        args.clients
    );
    let load_before = loadavg_1m();
    let cpu0 = proc_cpu_time(pid);
    let main = create_ports(addr, token, &networks, rest, args.clients, args.list_size).await;
    let cpu1 = proc_cpu_time(pid);
    let load_after = loadavg_1m();
    // CPU per acknowledged create does not depend on what else runs on the machine.
    let cpu_us_per_create = match (cpu0, cpu1) {
        (Some(a), Some(b)) if main.ports > 0 => {
            Some((b - a).as_secs_f64() * 1e6 / main.ports as f64)
        }
        _ => None,
    };
    eprintln!("  {:.0} creates/s", main.creates_per_sec);
    let rss = proc_status_kib(pid, "VmRSS");
    let hwm = proc_status_kib(pid, "VmHWM");
    let data_bytes = dir_size(w.data_dir());

    let mib = |k: Option<u64>| k.map(|k| k as f64 / 1024.0);
    let list_p50 = list.map(|l| l.p50_ms);
    let create_p99 = main.latency.map(|l| l.p99_ms);
    let stored = warm.ports + main.ports;
    let errors = warm.errors + main.errors;
    Ok(json!({
        "bench": "api",
        "wyvernd": bin.display().to_string(),
        "clients": args.clients,
        "auth": if args.keystone { "keystone (token cache)" } else { "noauth" },
        "durable": true,
        "create": main,
        "create_wyvernd_cpu_us_per_port": cpu_us_per_create,
        "loadavg_1m": {"before": load_before, "after": load_after},
        "create_warmup": warm,
        "list": {"ports": args.list_size, "bytes": list_bytes, "latency": list, "wyvernd_cpu_ms_per_list": list_cpu_ms},
        "memory": {
            "ports_stored": stored,
            "rss_mib": mib(rss),
            "rss_empty_mib": mib(rss_empty),
            "peak_rss_mib": mib(hwm),
            "data_dir_mib": data_bytes as f64 / (1024.0 * 1024.0),
        },
        "targets": {
            "creates_per_sec_min": 5000, "create_p99_ms_max": 20, "list_10k_p50_ms_max": 50, "rss_100k_mib_max": 300,
        },
        "meets": {
            "creates_per_sec": main.creates_per_sec >= 5000.0,
            "create_p99": create_p99.is_some_and(|p| p < 20.0),
            "list_10k": list_p50.is_some_and(|p| p < 50.0),
            "rss_100k": mib(rss).is_some_and(|r| r < 300.0),
        },
        "errors": errors,
    }))
}

fn dir_size(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // One client thread: the clients must leave the second core to wyvernd.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the tokio runtime")?;
    let report = rt.block_on(run(args))?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if report["errors"].as_u64() != Some(0) {
        bail!("{} requests failed", report["errors"]);
    }
    Ok(())
}
