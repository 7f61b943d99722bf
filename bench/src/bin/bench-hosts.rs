//! `bench-hosts`: many simulated hosts on one etcd: how long a port create at the API takes
//! to reach every interested host's compiled pipeline, and what that costs etcd and memory.
//!
//! One real etcd (Debian's 3.4, testkit's harness) and one real wyvernd API server on it
//! (`--store etcd`, no `--ovsdb`: API only). The topology is written through the Neutron API.
//! Then, per mode, a worker process (this binary re-run with `--worker`, so that memory and
//! threads of one mode never leak into the other's numbers) runs `--hosts` simulated hosts:
//! each has its OWN etcd connection and watch(es), its own `Topology` mirror and its own
//! compile-only pipeline (`wyvern_pipeline::Compiler`, no switch, no OpenFlow mapping), and
//! is given its local ports directly (bound to switch ports 1..n, as if OVS had reported
//! them). Each host also has the overlay view of every other host (chassis keys are written
//! once by the harness; the hosts do not follow them: the chassis path is not measured).
//!
//! Modes:
//! - `full`: what the local controller does today: one range + one watch of `/wyvern/v1/`,
//!   every event mirrored and compiled (`wyvern_local::mirror`, as `LocalController` does).
//!   Memory makes 1,000 full mirrors of 20,000 ports impossible on a small machine, so full
//!   mode runs `--full-hosts` hosts (default 20) and reports per-host figures.
//! - `selective`: selective sync (`wyvern_local::selective`), each host watching only what
//!   its ports reach.
//!
//! Topology (defaults: 20,000 ports, 1,000 hosts): ports / `--ports-per-network` (40)
//! networks, grouped `--networks-per-project` (5) to a project with one router joining all
//! of the project's networks (a /24 subnet each). Hosts are split into one group per project
//! (1,000 hosts / 100 projects = 10); each network's ports sit on `--hosts-per-network` (4)
//! hosts of its project's group (windows spaced so that every group host carries ports of 2
//! networks), round-robin. So every host has 20 ports on 2 networks; through the project's
//! router it reaches all 5 of its project's networks. Every port has `binding:host_id` =
//! its host (the chassis name), so remote ports compile to tunnel egress.
//!
//! The measurement: `--creates` port creates, one at a time, each on a different network
//! (round-robin over networks), bound to one of the network's hosts. Each simulated host
//! timestamps the moment its incremental compile of the change containing the new port
//! returns. Latency is reported from the request being SENT and, separately, from the HTTP
//! 201 being received, to the LAST interested host's compile (interested: the hosts with
//! ports on a network the router of the port's project reaches = the project's host group);
//! in full mode also to the last of all hosts (every full mirror compiles every port).
//! Also: events delivered per host (watch events, during sync and during the creates),
//! objects and flows held per host, etcd's own `/metrics` before/after (puts, txns, watch
//! events sent, watchers, watch streams, gRPC bytes), process RSS delta / hosts.
//!
//! Prints one JSON document on stdout; progress on stderr. Small run: `--hosts 50 --ports
//! 1000` (seconds). The big one: `flock -o /work/notes/bench.lock bench-hosts`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use uuid::Uuid;
use wyvern_bench::{prom_sum, Latency};
use wyvern_local::chassis::{Chassis, CHASSIS_PREFIX, TUNNEL_OFPORT};
use wyvern_local::mirror::{change_from_events, decode, MODEL_PREFIX};
use wyvern_local::selective::SelectiveSync;
use wyvern_model::{Change, Kind, ModelConfig, Object, Topology};
use wyvern_pipeline::{Bindings, CompileConfig, Compiler, Overlay};
use wyvern_store::{Revision, Store};
use wyvern_store_etcd::{EtcdOptions, EtcdStore};
use wyvern_testkit::etcd::Etcd;
use wyvern_testkit::wyvernd::WyverndOptions;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Full,
    Selective,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Selective => "selective",
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "bench-hosts",
    about = "Simulated hosts on one etcd: port create to compiled pipeline on every interested host"
)]
struct Args {
    /// wyvernd binary [default: the wyvernd next to this executable].
    #[arg(long, env = "WYVERND")]
    wyvernd: Option<PathBuf>,
    /// Simulated hosts (selective mode).
    #[arg(long, default_value_t = 1000)]
    hosts: usize,
    /// Simulated hosts in full mode (each holds the whole topology).
    #[arg(long, default_value_t = 20)]
    full_hosts: usize,
    /// VM ports in the topology.
    #[arg(long, default_value_t = 20000)]
    ports: usize,
    #[arg(long, default_value_t = 40)]
    ports_per_network: usize,
    #[arg(long, default_value_t = 5)]
    networks_per_project: usize,
    #[arg(long, default_value_t = 4)]
    hosts_per_network: usize,
    /// Measured port creates per mode.
    #[arg(long, default_value_t = 200)]
    creates: usize,
    /// Modes to run, in order, against the same etcd and topology.
    #[arg(long, value_delimiter = ',', default_value = "full,selective")]
    modes: Vec<Mode>,
    /// Hosts syncing (range + compile) at the same time while a mode starts.
    #[arg(long, default_value_t = 16)]
    sync_concurrency: usize,
    /// Internal: run one mode's hosts against an existing setup (`--plan`).
    #[arg(long, hide = true)]
    worker: Option<Mode>,
    #[arg(long, hide = true)]
    plan: Option<PathBuf>,
}

/// What the coordinator built and a worker needs: where things are and who holds what.
#[derive(Debug, Serialize, Deserialize)]
struct Plan {
    api: String,
    etcd: String,
    hosts: Vec<HostPlan>,
    networks: Vec<NetPlan>,
    /// Host indices with ports on each project's networks.
    projects: Vec<Vec<u32>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct HostPlan {
    name: String,
    tunnel_ip: Ipv4Addr,
    local_ports: Vec<Uuid>,
}

#[derive(Debug, Serialize, Deserialize)]
struct NetPlan {
    id: Uuid,
    project: u32,
    hosts: Vec<u32>,
}

fn exe_dir() -> anyhow::Result<PathBuf> {
    Ok(std::env::current_exe()?
        .parent()
        .context("the executable has no directory")?
        .to_path_buf())
}

fn sim_name(i: usize) -> String {
    format!("sim-{i:05}")
}

fn tunnel_ip(i: usize) -> Ipv4Addr {
    let i = i as u32 + 1;
    Ipv4Addr::new(172, 16 + (i >> 16) as u8, (i >> 8) as u8, i as u8)
}

// ---------------------------------------------------------------------------------------
// The coordinator: etcd, wyvernd, the topology, then one worker process per mode.

async fn post(http: &reqwest::Client, url: &str, body: Value) -> anyhow::Result<Value> {
    let r = http.post(url).json(&body).send().await?;
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if status.as_u16() != 201 {
        bail!("POST {url} answered {status}: {v}");
    }
    Ok(v)
}

fn id_of(v: &Value, what: &str) -> anyhow::Result<Uuid> {
    v[what]["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no {what} id in {v}"))
}

/// Topology layout: which hosts carry which networks.
struct Layout {
    projects: usize,
    /// Per network: its project and its hosts.
    networks: Vec<(usize, Vec<u32>)>,
    groups: Vec<Vec<u32>>,
}

fn layout(args: &Args) -> anyhow::Result<Layout> {
    if args.ports_per_network == 0 || args.networks_per_project == 0 || args.hosts == 0 {
        bail!("--ports-per-network, --networks-per-project and --hosts must be positive");
    }
    let nets = args.ports.div_ceil(args.ports_per_network);
    let projects = nets.div_ceil(args.networks_per_project);
    // Host groups: hosts split evenly over projects (projects share hosts when fewer).
    let groups: Vec<Vec<u32>> = (0..projects)
        .map(|p| {
            if args.hosts >= projects {
                let (a, b) = (p * args.hosts / projects, (p + 1) * args.hosts / projects);
                (a as u32..b as u32).collect()
            } else {
                vec![(p % args.hosts) as u32]
            }
        })
        .collect();
    let mut networks = Vec::with_capacity(nets);
    for n in 0..nets {
        let (p, j) = (n / args.networks_per_project, n % args.networks_per_project);
        let g = &groups[p];
        let k = args.hosts_per_network.clamp(1, g.len());
        // Windows spaced evenly over the group, so every group host gets some networks.
        let start = j * g.len() / args.networks_per_project;
        networks.push((p, (0..k).map(|t| g[(start + t) % g.len()]).collect()));
    }
    Ok(Layout {
        projects,
        networks,
        groups,
    })
}

async fn build_topology(args: &Args, api: &str, etcd: &str) -> anyhow::Result<Plan> {
    let http = reqwest::Client::new();
    let lay = layout(args)?;
    let v2 = format!("{api}/v2.0");
    // Networks and subnets, then one router per project with all its subnets.
    let mut net_ids = Vec::with_capacity(lay.networks.len());
    let mut subnet_ids = Vec::with_capacity(lay.networks.len());
    let made: Vec<(Uuid, Uuid)> = futures::stream::iter(0..lay.networks.len())
        .map(|n| {
            let (http, v2) = (http.clone(), v2.clone());
            async move {
                let net = post(
                    &http,
                    &format!("{v2}/networks"),
                    json!({"network": {"name": format!("net{n}")}}),
                )
                .await?;
                let nid = id_of(&net, "network")?;
                let cidr = format!("10.{}.{}.0/24", n / 256, n % 256);
                let sub = post(
                    &http,
                    &format!("{v2}/subnets"),
                    json!({"subnet": {"network_id": nid, "cidr": cidr, "ip_version": 4}}),
                )
                .await?;
                anyhow::Ok((nid, id_of(&sub, "subnet")?))
            }
        })
        .buffered(16)
        .try_collect()
        .await?;
    for (n, s) in made {
        net_ids.push(n);
        subnet_ids.push(s);
    }
    futures::stream::iter(0..lay.projects)
        .map(|p| {
            let (http, v2) = (http.clone(), v2.clone());
            let subs: Vec<Uuid> = lay
                .networks
                .iter()
                .enumerate()
                .filter(|(_, (proj, _))| *proj == p)
                .map(|(n, _)| subnet_ids[n])
                .collect();
            async move {
                let r = post(
                    &http,
                    &format!("{v2}/routers"),
                    json!({"router": {"name": format!("router{p}")}}),
                )
                .await?;
                let rid = id_of(&r, "router")?;
                for s in subs {
                    let resp = http
                        .put(format!("{v2}/routers/{rid}/add_router_interface"))
                        .json(&json!({"subnet_id": s}))
                        .send()
                        .await?;
                    if !resp.status().is_success() {
                        bail!("add_router_interface answered {}", resp.status());
                    }
                }
                anyhow::Ok(())
            }
        })
        .buffer_unordered(8)
        .try_collect::<Vec<()>>()
        .await?;
    // Ports, round-robin over each network's hosts, in bulk.
    let mut hosts: Vec<HostPlan> = (0..args.hosts)
        .map(|i| HostPlan {
            name: sim_name(i),
            tunnel_ip: tunnel_ip(i),
            local_ports: Vec::new(),
        })
        .collect();
    let mut items: Vec<(u32, Value)> = Vec::with_capacity(args.ports);
    for i in 0..args.ports {
        let n = i / args.ports_per_network;
        let within = i % args.ports_per_network;
        let hs = &lay.networks[n].1;
        let h = hs[within % hs.len()];
        items.push((
            h,
            json!({"network_id": net_ids[n], "name": format!("vm{i}"),
                   "device_owner": "compute:nova", "device_id": format!("vm-{i}"),
                   "binding:host_id": sim_name(h as usize)}),
        ));
    }
    let chunks: Vec<Vec<(u32, Value)>> = items.chunks(500).map(|c| c.to_vec()).collect();
    let results: Vec<Vec<(u32, Uuid)>> = futures::stream::iter(chunks)
        .map(|chunk| {
            let (http, v2) = (http.clone(), v2.clone());
            async move {
                let body: Vec<Value> = chunk.iter().map(|(_, v)| v.clone()).collect();
                let v = post(&http, &format!("{v2}/ports"), json!({ "ports": body })).await?;
                let ports = v["ports"].as_array().context("no ports in a bulk answer")?;
                if ports.len() != chunk.len() {
                    bail!(
                        "bulk create returned {} of {} ports",
                        ports.len(),
                        chunk.len()
                    );
                }
                let mut out = Vec::with_capacity(chunk.len());
                for ((h, _), p) in chunk.iter().zip(ports) {
                    let id = p["id"]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                        .context("a port without id")?;
                    out.push((*h, id));
                }
                anyhow::Ok(out)
            }
        })
        .buffered(4)
        .try_collect()
        .await?;
    for (h, id) in results.into_iter().flatten() {
        hosts[h as usize].local_ports.push(id);
    }
    let mut projects: Vec<Vec<u32>> = vec![Vec::new(); lay.projects];
    for (p, hs) in &lay.networks {
        projects[*p].extend(hs);
    }
    for p in &mut projects {
        p.sort_unstable();
        p.dedup();
    }
    let _ = lay.groups;
    Ok(Plan {
        api: api.to_owned(),
        etcd: etcd.to_owned(),
        hosts,
        networks: lay
            .networks
            .iter()
            .enumerate()
            .map(|(n, (p, hs))| NetPlan {
                id: net_ids[n],
                project: *p as u32,
                hosts: hs.clone(),
            })
            .collect(),
        projects,
    })
}

/// Chassis registrations for every simulated host (plain puts: the hosts do not follow
/// them, their overlay is built from the plan).
async fn register_chassis(store: &EtcdStore, plan: &Plan) -> anyhow::Result<()> {
    futures::stream::iter(&plan.hosts)
        .map(|h| async move {
            let c = Chassis {
                name: h.name.clone(),
                tunnel_ip: Some(h.tunnel_ip),
                offload: vec![],
                datapath: "netdev".into(),
            };
            store
                .put(&format!("{CHASSIS_PREFIX}{}", h.name), c.encode().into())
                .await
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

async fn coordinator(args: Args) -> anyhow::Result<()> {
    let bin = match &args.wyvernd {
        Some(b) => b.clone(),
        None => exe_dir()?.join("wyvernd"),
    };
    if !bin.exists() {
        bail!(
            "{} not found (build it: cargo build --release -p wyvern-daemon --bin wyvernd)",
            bin.display()
        );
    }
    let etcd = Etcd::start()?;
    let wyvernd = WyverndOptions::new(&bin)
        .etcd_store(etcd.endpoint())
        .start()
        .with_context(|| etcd.log_tail())?;
    let store = EtcdStore::connect(EtcdOptions {
        endpoints: vec![etcd.endpoint()],
        ..Default::default()
    })
    .await?;
    eprintln!(
        "building the topology: {} ports over {} hosts",
        args.ports, args.hosts
    );
    let t = Instant::now();
    let plan = build_topology(&args, &wyvernd.url(), &etcd.endpoint()).await?;
    let build_s = t.elapsed().as_secs_f64();
    register_chassis(&store, &plan).await?;
    eprintln!(
        "topology built in {build_s:.1}s: {} networks, {} projects",
        plan.networks.len(),
        plan.projects.len()
    );
    let scratch = tempfile::tempdir()?;
    let plan_path = scratch.path().join("plan.json");
    std::fs::write(&plan_path, serde_json::to_vec(&plan)?)?;

    let mut modes = serde_json::Map::new();
    for mode in &args.modes {
        let hosts = match mode {
            Mode::Full => args.full_hosts.min(args.hosts),
            Mode::Selective => args.hosts,
        };
        eprintln!("mode {}: {hosts} hosts", mode.as_str());
        let out = tokio::process::Command::new(std::env::current_exe()?)
            .arg("--worker")
            .arg(mode.as_str())
            .arg("--plan")
            .arg(&plan_path)
            .args(["--hosts", &hosts.to_string()])
            .args(["--creates", &args.creates.to_string()])
            .args(["--sync-concurrency", &args.sync_concurrency.to_string()])
            .stderr(std::process::Stdio::inherit())
            .output()
            .await
            .context("failed to run a worker")?;
        if !out.status.success() {
            bail!("the {} worker failed: {}", mode.as_str(), out.status);
        }
        let v: Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("worker output: {}", String::from_utf8_lossy(&out.stdout)))?;
        modes.insert(mode.as_str().into(), v);
    }
    let lay = layout(&args)?;
    let hosts_with_ports = plan
        .hosts
        .iter()
        .filter(|h| !h.local_ports.is_empty())
        .count();
    let doc = json!({
        "bench": "hosts",
        "topology": {
            "ports": args.ports,
            "networks": plan.networks.len(),
            "projects": lay.projects,
            "routers": lay.projects,
            "networks_per_project": args.networks_per_project,
            "ports_per_network": args.ports_per_network,
            "hosts_per_network": args.hosts_per_network,
            "hosts": args.hosts,
            "hosts_with_ports": hosts_with_ports,
            "hosts_per_project": plan.projects.iter().map(Vec::len).max(),
            "description": "one router per project joining its networks (a /24 subnet each); each project owns a group of hosts; each network's ports are spread round-robin over hosts_per_network hosts of its project's group; every port has binding:host_id = its host",
            "build_seconds": build_s,
        },
        "measured": "latency from the port create request being sent (and, separately, from its HTTP 201 being received) until the last interested host's incremental compile of the change holding the port returned; interested = hosts with ports on the networks the port's router reaches (its project's host group)",
        "target": {"p99_ms": 1000.0, "hosts": 1000},
        "modes": modes,
        "etcd": {"version": "3.4 (Debian etcd-server)", "members": 1},
        "host": {"cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1), "loadavg_1m": wyvern_bench::loadavg_1m()},
    });
    println!("{}", serde_json::to_string_pretty(&doc)?);
    drop(wyvernd);
    drop(etcd);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The worker: many simulated hosts in this process.

/// What one simulated host did, readable while it runs.
#[derive(Debug, Default)]
struct HostStats {
    /// Watch events delivered to this host.
    events: AtomicU64,
    /// Incremental compiles (one per delivered burst of events).
    compiles: AtomicU64,
    compile_ns: AtomicU64,
    /// Objects the host's topology holds, flows it has compiled, watches it has open.
    objects: AtomicU64,
    flows: AtomicU64,
    watches: AtomicU64,
}

/// A probe port reached one host's compiled pipeline.
struct Seen {
    probe: u32,
    host: u32,
    at: Instant,
}

/// The probe number of a port named `<prefix><n>` created by `change`.
fn probes_in(change: &Change, prefix: &str) -> Vec<u32> {
    change
        .ops
        .iter()
        .filter(|op| op.kind == Kind::Port && op.old.is_none())
        .filter_map(|op| match &op.new {
            Some(Object::Port(p)) => p.name.strip_prefix(prefix)?.parse().ok(),
            _ => None,
        })
        .collect()
}

struct Sim {
    idx: u32,
    store: Arc<dyn Store>,
    bindings: Bindings,
    stats: Arc<HostStats>,
    seen: mpsc::UnboundedSender<Seen>,
    prefix: Arc<str>,
}

impl Sim {
    fn compiled(&self, change: &Change, compiler: &Compiler, started: Instant) {
        let now = Instant::now();
        for probe in probes_in(change, &self.prefix) {
            let _ = self.seen.send(Seen {
                probe,
                host: self.idx,
                at: now,
            });
        }
        self.stats.compiles.fetch_add(1, Ordering::Relaxed);
        self.stats
            .compile_ns
            .fetch_add((now - started).as_nanos() as u64, Ordering::Relaxed);
        self.stats
            .flows
            .store(compiler.flow_count() as u64, Ordering::Relaxed);
    }

    /// Full mirror: what `LocalController` does today. Returns after the initial compile
    /// (through `ready`) and then follows the watch until the process ends.
    async fn run_full(self, ready: tokio::sync::oneshot::Sender<anyhow::Result<()>>) {
        let init = async {
            let (kvs, rev) = self.store.range(MODEL_PREFIX).await?;
            let mut topo = Topology::new(ModelConfig::default());
            for kv in &kvs {
                if let Ok(Some(_)) = decode(kv) {
                    topo.apply_put(&kv.key, &kv.value)?;
                }
            }
            drop(kvs);
            let mut compiler = Compiler::new(CompileConfig::default());
            compiler.full(&topo, &self.bindings)?;
            let _ = compiler.take_key_changes();
            let watch = self.store.watch(MODEL_PREFIX, Revision(rev.0 + 1)).await?;
            self.stats
                .objects
                .store(topo.len() as u64, Ordering::Relaxed);
            self.stats
                .flows
                .store(compiler.flow_count() as u64, Ordering::Relaxed);
            self.stats.watches.store(1, Ordering::Relaxed);
            anyhow::Ok((topo, compiler, watch))
        }
        .await;
        let (mut topo, mut compiler, mut watch) = match init {
            Ok(x) => {
                let _ = ready.send(Ok(()));
                x
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        while let Some(first) = watch.next().await {
            let Ok(first) = first else {
                eprintln!("host {}: watch ended", self.idx);
                return;
            };
            let mut batch = vec![first];
            while let Some(Some(Ok(ev))) = futures::FutureExt::now_or_never(watch.next()) {
                batch.push(ev);
            }
            self.stats
                .events
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            let started = Instant::now();
            let mut errors = Vec::new();
            let change = change_from_events(&topo, &batch, &mut errors);
            topo.apply(&change);
            if let Err(e) = compiler.update(&topo, &self.bindings, &change) {
                eprintln!("host {}: compile failed: {e}", self.idx);
            }
            let _ = compiler.take_key_changes();
            self.stats
                .objects
                .store(topo.len() as u64, Ordering::Relaxed);
            self.compiled(&change, &compiler, started);
        }
    }
}

impl Sim {
    /// Selective sync (`wyvern_local::selective`): the host names its local ports and holds
    /// what they reach. Returns after the initial compile (through `ready`), then follows.
    async fn run_selective(self, ready: tokio::sync::oneshot::Sender<anyhow::Result<()>>) {
        let init = async {
            let mut sync = SelectiveSync::start(self.store.clone()).await?;
            sync.set_local_ports(self.bindings.iter().map(|(p, _)| *p));
            while !sync.is_settled() {
                match sync.next().await {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.into()),
                    None => bail!("the selective sync stopped"),
                }
            }
            let mut compiler = Compiler::new(CompileConfig::default());
            compiler.full(sync.topology(), &self.bindings)?;
            let _ = compiler.take_key_changes();
            self.held(&sync, &compiler);
            anyhow::Ok((sync, compiler))
        }
        .await;
        let (mut sync, mut compiler) = match init {
            Ok(x) => {
                let _ = ready.send(Ok(()));
                x
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        while let Some(update) = sync.next().await {
            let update = match update {
                Ok(u) => u,
                Err(e) => {
                    eprintln!("host {}: selective sync: {e}", self.idx);
                    continue;
                }
            };
            if update.change.is_empty() {
                continue;
            }
            let started = Instant::now();
            if let Err(e) = compiler.update(sync.topology(), &self.bindings, &update.change) {
                eprintln!("host {}: compile failed: {e}", self.idx);
            }
            let _ = compiler.take_key_changes();
            self.compiled(&update.change, &compiler, started);
            self.held(&sync, &compiler);
        }
    }

    fn held(&self, sync: &SelectiveSync, compiler: &Compiler) {
        let h = sync.held();
        let s = &self.stats;
        s.events.store(h.events, Ordering::Relaxed);
        s.objects.store(
            (h.networks + h.subnets + h.ports + h.routers) as u64,
            Ordering::Relaxed,
        );
        s.watches.store(h.watches as u64, Ordering::Relaxed);
        s.flows
            .store(compiler.flow_count() as u64, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
struct Spread {
    min: f64,
    mean: f64,
    max: f64,
}

fn spread(v: impl IntoIterator<Item = f64>) -> Option<Spread> {
    let v: Vec<f64> = v.into_iter().collect();
    if v.is_empty() {
        return None;
    }
    Some(Spread {
        min: v.iter().copied().fold(f64::INFINITY, f64::min),
        mean: v.iter().sum::<f64>() / v.len() as f64,
        max: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    })
}

/// The etcd series this benchmark reports (counters as deltas, gauges as values).
const ETCD_COUNTERS: &[&str] = &[
    "etcd_mvcc_put_total",
    "etcd_mvcc_txn_total",
    "etcd_mvcc_range_total",
    "etcd_debugging_mvcc_events_total",
    "etcd_network_client_grpc_sent_bytes_total",
    "etcd_network_client_grpc_received_bytes_total",
    "etcd_server_proposals_committed_total",
    "process_cpu_seconds_total",
];
const ETCD_GAUGES: &[&str] = &[
    "etcd_debugging_mvcc_watcher_total",
    "etcd_debugging_mvcc_watch_stream_total",
    "etcd_debugging_mvcc_slow_watcher_total",
    "process_resident_memory_bytes",
];

async fn scrape(http: &reqwest::Client, etcd: &str) -> anyhow::Result<String> {
    Ok(http
        .get(format!("{etcd}/metrics"))
        .send()
        .await?
        .text()
        .await?)
}

fn etcd_delta(before: &str, after: &str) -> Value {
    let mut m = serde_json::Map::new();
    for c in ETCD_COUNTERS {
        m.insert((*c).into(), json!(prom_sum(after, c) - prom_sum(before, c)));
    }
    for g in ETCD_GAUGES {
        m.insert((*g).into(), json!(prom_sum(after, g)));
    }
    Value::Object(m)
}

fn rss_kib() -> u64 {
    wyvern_bench::proc_status_kib(std::process::id(), "VmRSS").unwrap_or(0)
}

async fn worker(mode: Mode, args: &Args) -> anyhow::Result<Value> {
    let plan_path = args.plan.as_ref().context("--worker needs --plan")?;
    let plan: Plan = serde_json::from_slice(&std::fs::read(plan_path)?)?;
    let n = args.hosts.min(plan.hosts.len());
    let http = reqwest::Client::new();
    let prefix: Arc<str> = Arc::from(format!("probe-{}-", mode.as_str()));
    let remotes: BTreeMap<String, Ipv4Addr> = plan.hosts[..n]
        .iter()
        .map(|h| (h.name.clone(), h.tunnel_ip))
        .collect();
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    let stats: Vec<Arc<HostStats>> = (0..n).map(|_| Arc::default()).collect();

    let rss0 = rss_kib();
    let m0 = scrape(&http, &plan.etcd).await?;
    let t = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(args.sync_concurrency.max(1)));
    let mut starting = Vec::with_capacity(n);
    for (i, h) in plan.hosts[..n].iter().enumerate() {
        let mut bindings = Bindings::new();
        for (k, p) in h.local_ports.iter().enumerate() {
            bindings.bind(*p, k as u32 + 1);
        }
        let mut remotes = remotes.clone();
        remotes.remove(&h.name);
        bindings.set_overlay(Some(Overlay {
            chassis: h.name.clone(),
            remotes,
            tunnel_ofport: TUNNEL_OFPORT,
        }));
        let (seen, st, etcd, sem) = (
            seen_tx.clone(),
            stats[i].clone(),
            plan.etcd.clone(),
            sem.clone(),
        );
        let prefix = prefix.clone();
        starting.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await?;
            // Each simulated host has its own connection, like a real one.
            let store: Arc<dyn Store> = EtcdStore::connect(EtcdOptions {
                endpoints: vec![etcd],
                ..Default::default()
            })
            .await?;
            let sim = Sim {
                idx: i as u32,
                store,
                bindings,
                stats: st,
                seen,
                prefix,
            };
            let (tx, rx) = tokio::sync::oneshot::channel();
            match mode {
                Mode::Full => {
                    tokio::spawn(sim.run_full(tx));
                }
                Mode::Selective => {
                    tokio::spawn(sim.run_selective(tx));
                }
            }
            rx.await.context("a host died while syncing")?
        }));
    }
    for s in starting {
        s.await??;
    }
    drop(seen_tx);
    let sync_s = t.elapsed().as_secs_f64();
    let rss1 = rss_kib();
    let m1 = scrape(&http, &plan.etcd).await?;
    let ev_sync: Vec<u64> = stats
        .iter()
        .map(|s| s.events.load(Ordering::Relaxed))
        .collect();
    eprintln!(
        "{}: {n} hosts synced in {sync_s:.1}s, RSS +{} MiB",
        mode.as_str(),
        rss1.saturating_sub(rss0) / 1024
    );

    // The creates: one at a time, round-robin over networks (stride to spread projects).
    let mut from_send = Vec::new();
    let mut from_201 = Vec::new();
    let mut to_all = Vec::new();
    let mut fanout = Vec::new();
    let mut incomplete = 0usize;
    // Only networks with a host in this run (full mode runs fewer hosts than the plan).
    let candidates: Vec<&NetPlan> = plan
        .networks
        .iter()
        .filter(|net| {
            plan.projects[net.project as usize]
                .iter()
                .any(|h| (*h as usize) < n)
        })
        .collect();
    if candidates.is_empty() {
        bail!("no network has a port on the first {n} hosts");
    }
    let stride = (candidates.len() / 7).max(1) | 1;
    for k in 0..args.creates {
        let net = candidates[(k * stride) % candidates.len()];
        let host = net.hosts[k % net.hosts.len()] as usize;
        let interested: HashSet<u32> = plan.projects[net.project as usize]
            .iter()
            .copied()
            .filter(|h| (*h as usize) < n)
            .collect();
        let expect_all = match mode {
            Mode::Full => n,
            Mode::Selective => interested.len(),
        };
        let body = json!({"port": {"network_id": net.id, "name": format!("{prefix}{k}"),
            "device_owner": "compute:nova", "device_id": format!("probe-{k}"),
            "binding:host_id": plan.hosts[host].name}});
        let sent = Instant::now();
        let r = http
            .post(format!("{}/v2.0/ports", plan.api))
            .json(&body)
            .send()
            .await?;
        let got_201 = Instant::now();
        if r.status().as_u16() != 201 {
            bail!("probe create answered {}", r.status());
        }
        let _ = r.bytes().await;
        let mut at: HashMap<u32, Instant> = HashMap::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while at.len() < expect_all {
            match tokio::time::timeout_at(deadline, seen_rx.recv()).await {
                Ok(Some(s)) if s.probe == k as u32 => {
                    at.entry(s.host).or_insert(s.at);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        let last_interested = interested.iter().filter_map(|h| at.get(h)).max();
        if interested.iter().all(|h| at.contains_key(h)) {
            if let Some(last) = last_interested {
                from_send.push(*last - sent);
                from_201.push(last.saturating_duration_since(got_201));
            }
        } else {
            incomplete += 1;
        }
        if mode == Mode::Full && at.len() == n {
            if let Some(last) = at.values().max() {
                to_all.push(*last - sent);
            }
        }
        fanout.push(at.len() as f64);
    }
    let m2 = scrape(&http, &plan.etcd).await?;
    let ev_total: Vec<u64> = stats
        .iter()
        .map(|s| s.events.load(Ordering::Relaxed))
        .collect();
    let per_host = |f: &dyn Fn(&HostStats) -> u64| spread(stats.iter().map(|s| f(s) as f64));
    let compiles: u64 = stats
        .iter()
        .map(|s| s.compiles.load(Ordering::Relaxed))
        .sum();
    let compile_ns: u64 = stats
        .iter()
        .map(|s| s.compile_ns.load(Ordering::Relaxed))
        .sum();
    let creates = args.creates.max(1) as f64;
    let probe_etcd = etcd_delta(&m1, &m2);
    let per_create = |k: &str| probe_etcd[k].as_f64().unwrap_or(0.0) / creates;
    Ok(json!({
        "mode": mode.as_str(),
        "hosts": n,
        "sync_seconds": sync_s,
        "creates": args.creates,
        "create_to_interested_hosts_compiled": {
            "from_request_sent": Latency::of(&mut from_send),
            "from_201_received": Latency::of(&mut from_201),
            "incomplete": incomplete,
        },
        "create_to_all_hosts_compiled_from_request_sent": Latency::of(&mut to_all),
        "p99_target_met": Latency::of(&mut from_send.clone()).is_some_and(|l| l.p99_ms < 1000.0) && incomplete == 0,
        "fanout_hosts_compiled_per_create": spread(fanout.iter().copied()),
        "interested_hosts_per_create": spread(plan.projects.iter().map(|p| p.iter().filter(|h| (**h as usize) < n).count() as f64)),
        "events_per_host": {
            "initial_sync": spread(ev_sync.iter().map(|e| *e as f64)),
            "during_creates": spread(ev_total.iter().zip(&ev_sync).map(|(a, b)| (a - b) as f64)),
            "per_create_mean": ev_total.iter().zip(&ev_sync).map(|(a, b)| (a - b) as f64).sum::<f64>() / n.max(1) as f64 / creates,
        },
        "held_per_host": {
            "objects": per_host(&|s| s.objects.load(Ordering::Relaxed)),
            "flows": per_host(&|s| s.flows.load(Ordering::Relaxed)),
            "watches": per_host(&|s| s.watches.load(Ordering::Relaxed)),
        },
        "incremental_compile_mean_ms": if compiles > 0 { compile_ns as f64 / compiles as f64 / 1e6 } else { 0.0 },
        "memory": {
            "rss_before_kib": rss0,
            "rss_synced_kib": rss1,
            "per_host_kib": rss1.saturating_sub(rss0) as f64 / n.max(1) as f64,
        },
        "etcd": {
            "initial_sync": etcd_delta(&m0, &m1),
            "during_creates": probe_etcd,
            "per_create": {
                "puts": per_create("etcd_mvcc_put_total"),
                "watch_events_sent": per_create("etcd_debugging_mvcc_events_total"),
                "grpc_sent_bytes": per_create("etcd_network_client_grpc_sent_bytes_total"),
            },
        },
    }))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args.worker {
        Some(mode) => {
            let v = rt.block_on(worker(mode, &args))?;
            println!("{}", serde_json::to_string(&v)?);
            // The hosts' tasks never end on their own.
            rt.shutdown_timeout(Duration::from_millis(100));
            Ok(())
        }
        None => rt.block_on(coordinator(args)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_gives_every_host_ports_on_two_networks() {
        let args = Args::parse_from(["bench-hosts", "--hosts", "1000", "--ports", "20000"]);
        let lay = layout(&args).unwrap();
        assert_eq!(lay.networks.len(), 500);
        assert_eq!(lay.projects, 100);
        let mut per_host = vec![0usize; 1000];
        for (_, hs) in &lay.networks {
            assert_eq!(hs.len(), 4);
            for h in hs {
                per_host[*h as usize] += 1;
            }
        }
        assert!(per_host.iter().all(|n| *n == 2), "{per_host:?}");
    }
}
