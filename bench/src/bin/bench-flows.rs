//! `bench-flows`: how fast wyvernd gets a large topology's flows into a real Open vSwitch,
//! against two baselines measured in the same run.
//!
//! Topology: `--networks` networks with a /24 subnet each and `--ports-per-network` ports,
//! `--routers` routers each joining `--networks-per-router` networks; every port bound to a
//! `type=dummy` interface of `ovs-vswitchd --enable-dummy` (the default: 100 x 50 = 5,000).
//!
//! Phases:
//! 1. `vswitchd_ports`: ovs-vswitchd creates the dummy interfaces (no iface-id yet), in one
//!    transaction. Reported on its own: it is OVS's cost, the same for every controller.
//! 2. wyvernd (`--openflow-lanes` from `--lanes`), connected to the bridge: the topology
//!    through the Neutron API, then one OVSDB transaction sets every interface's
//!    `external_ids:iface-id` (the last write). Reported:
//!    API time, bind time, and from the last write until the flow table holds its final
//!    flows (flow count unchanged for `--stable-ms`; the time is when that count first
//!    appeared).
//! 3. Incremental: `--samples` times, one more port through the API and bound to a spare
//!    interface; time until the switch holds its egress flow, and the switch's
//!    acknowledgement of each port's bundle (bundle open to barrier reply, from `ovs-ofctl
//!    snoop`). Between samples, three bare barriers on a service connection measure the
//!    switch's own floor for any acknowledgement (`switch_floor_barrier_rtt_ms`).
//! 4. Raw floor (baseline a): wyvernd stopped, the installed flows dumped to a file, the
//!    bridge emptied, `ovs-ofctl --bundle add-flows` of that file timed (best of 3); then
//!    the same file split over `--lanes` + 1 concurrent `ovs-ofctl` processes (best of 3),
//!    the floor for wyvernd's lanes (ovs-vswitchd reads 50 messages per connection per
//!    main-loop iteration, and an iteration costs milliseconds with 5,000 ports).
//! 5. Cold full sync: bridge emptied again, wyvernd started on its data dir: time from the
//!    start until the switch holds every flow again. It includes the switch's reconnect
//!    back-off (`max_backoff=1000`: at most 1 s), so it is an upper bound.
//! 6. OVN (baseline b, unless `--no-ovn`): ovsdb-server (NB+SB), ovn-northd and ovn-controller
//!    against a second OVS sandbox with the same interfaces; ovn-nbctl builds the same
//!    topology (with DHCP options and port security), one transaction binds the interfaces,
//!    then `ovn-nbctl --wait=hv sync`, and the flow count settles.
//!
//! Prints one JSON document on stdout; progress on stderr.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::{json, Value};
use wyvern_bench::ovs::{
    bind, create_interfaces, flow_count, flow_count_of, iface_name, seconds_of_day_now,
    vsctl_batch, wait_count, wait_settled, BundleTiming, Snoop, BRIDGE,
};
use wyvern_bench::{loadavg_1m, prom_sample, prom_sum};
use wyvern_openflow::{ListenAddr, Switch, SwitchConfig};
use wyvern_testkit::ovs::OvsSandbox;
use wyvern_testkit::wyvernd::{Wyvernd, WyverndOptions};

#[derive(Debug, Parser)]
#[command(name = "bench-flows", about = "Benchmark wyvernd's flow installation")]
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
    #[arg(long, default_value_t = 10)]
    networks_per_router: usize,
    /// Concurrent API clients while building the topology. Each write is answered after
    /// the store's group-commit fsync, so a few clients are bound by fsync latency (8
    /// clients: 47.6 s for the default topology under load; 64: 6.9 s).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Incremental one-port samples.
    #[arg(long, default_value_t = 10)]
    samples: usize,
    /// The flow table counts as settled once its flow count held this long.
    #[arg(long, default_value_t = 1500)]
    stable_ms: u64,
    /// Skip the OVN baseline.
    #[arg(long)]
    no_ovn: bool,
    /// wyvernd's `--openflow-lanes`: extra OpenFlow connections for bulk syncs (0: the
    /// bridge's own connection only). The raw floor is also timed with as many parallel
    /// `ovs-ofctl` processes.
    #[arg(long, default_value_t = 7)]
    lanes: usize,
    /// Give up waiting for any one phase after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
}

fn log(msg: impl AsRef<str>) {
    eprintln!("[bench-flows] {}", msg.as_ref());
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e6
}

/// Runs a command; fails with its stderr.
fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("failed to run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The topology's shape, shared by the wyvern and OVN runs.
struct Shape {
    networks: usize,
    ports_per_network: usize,
    routers: usize,
    networks_per_router: usize,
}

impl Shape {
    fn ports(&self) -> usize {
        self.networks * self.ports_per_network
    }
    fn cidr(&self, net: usize) -> (String, String) {
        let (a, b) = (1 + net / 256, net % 256);
        (format!("10.{a}.{b}.0/24"), format!("10.{a}.{b}.1"))
    }
    fn ip(&self, net: usize, port: usize) -> String {
        let (a, b) = (1 + net / 256, net % 256);
        format!("10.{a}.{b}.{}", port + 2)
    }
    /// The networks of router `r`.
    fn router_networks(&self, r: usize) -> std::ops::Range<usize> {
        let start = (r * self.networks_per_router).min(self.networks);
        start..(start + self.networks_per_router).min(self.networks)
    }
}

/// Neutron calls with a few concurrent clients.
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let resp = self
            .http
            .post(format!("{}/v2.0/{path}", self.base))
            .json(&body)
            .send()
            .await
            .with_context(|| format!("failed to POST {path}"))?;
        let status = resp.status();
        let v: Value = resp.json().await.context("failed to read the answer")?;
        if !status.is_success() {
            bail!("POST {path}: {status} {v}");
        }
        Ok(v)
    }

    async fn put(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let resp = self
            .http
            .put(format!("{}/v2.0/{path}", self.base))
            .json(&body)
            .send()
            .await
            .with_context(|| format!("failed to PUT {path}"))?;
        let status = resp.status();
        let v: Value = resp.json().await.context("failed to read the answer")?;
        if !status.is_success() {
            bail!("PUT {path}: {status} {v}");
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

/// Builds the topology through the API; returns the port ids in network-major order.
async fn build_wyvern(api: &Api, shape: &Shape, clients: usize) -> anyhow::Result<Vec<String>> {
    use futures::stream::{self, StreamExt, TryStreamExt};
    let nets: Vec<(String, String)> = stream::iter(0..shape.networks)
        .map(|i| async move {
            let net = api
                .post("networks", json!({"network": {"name": format!("net{i}")}}))
                .await?;
            let net_id = id_of(&net, "network")?;
            let (cidr, gw) = shape.cidr(i);
            let sub = api
                .post(
                    "subnets",
                    json!({"subnet": {"network_id": net_id, "cidr": cidr, "ip_version": 4,
                                      "gateway_ip": gw, "name": format!("sub{i}")}}),
                )
                .await?;
            anyhow::Ok((net_id, id_of(&sub, "subnet")?))
        })
        .buffered(clients)
        .try_collect()
        .await?;
    for r in 0..shape.routers {
        let router = api
            .post("routers", json!({"router": {"name": format!("r{r}")}}))
            .await?;
        let rid = id_of(&router, "router")?;
        for n in shape.router_networks(r) {
            api.put(
                &format!("routers/{rid}/add_router_interface"),
                json!({"subnet_id": nets[n].1}),
            )
            .await?;
        }
    }
    let ports: Vec<String> = stream::iter(0..shape.ports())
        .map(|k| {
            let net_id = nets[k / shape.ports_per_network].0.clone();
            async move {
                let p = api
                    .post(
                        "ports",
                        json!({"port": {"network_id": net_id, "name": format!("vm{k}")}}),
                    )
                    .await?;
                id_of(&p, "port")
            }
        })
        .buffered(clients)
        .try_collect()
        .await?;
    Ok(ports)
}

/// The flows of the bridge as `ovs-ofctl add-flows` reads them.
fn dump_for_reinstall(sb: &OvsSandbox, dir: &Path) -> anyhow::Result<(PathBuf, PathBuf, usize)> {
    let flows = sb.ofctl(&["dump-flows", "--no-stats", BRIDGE])?;
    let lines: Vec<&str> = flows
        .lines()
        .map(str::trim)
        .filter(|l| {
            l.starts_with("cookie=") || l.starts_with("table=") || l.starts_with("priority=")
        })
        .collect();
    let flow_file = dir.join("flows.txt");
    std::fs::write(&flow_file, lines.join("\n") + "\n")?;
    let groups = sb.ofctl(&["dump-groups", BRIDGE])?;
    let glines: Vec<&str> = groups
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("group_id="))
        .collect();
    let group_file = dir.join("groups.txt");
    std::fs::write(&group_file, glines.join("\n") + "\n")?;
    Ok((flow_file, group_file, lines.len()))
}

fn empty_bridge(sb: &OvsSandbox) -> anyhow::Result<()> {
    sb.ofctl(&["del-flows", BRIDGE])?;
    sb.ofctl(&["del-groups", BRIDGE])?;
    let n = flow_count(sb)?;
    if n != 0 {
        bail!("{n} flows left after del-flows");
    }
    Ok(())
}

/// The wyvern half: phases 1 to 5.
async fn bench_wyvern(args: &Args, shape: &Shape, wyvernd_bin: &Path) -> anyhow::Result<Value> {
    let timeout = Duration::from_secs(args.timeout_secs);
    let stable = Duration::from_millis(args.stable_ms);
    let sb = OvsSandbox::dummy()?;
    let data = tempfile::tempdir()?;
    let metrics_port = wyvern_bench::free_local_port()?;
    let metrics_url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let opts = WyverndOptions::new(wyvernd_bin)
        .data_dir(data.path().join("data"))
        .env("RUST_LOG", "warn")
        .switch(&sb, BRIDGE, "wyvernd-of.sock")
        .arg("--metrics-listen")
        .arg(format!("127.0.0.1:{metrics_port}"))
        .arg("--openflow-lanes")
        .arg(args.lanes.to_string());
    let mut w: Wyvernd = opts.start()?;
    wyvern_testkit::poll::wait_until("wyvernd's bridge", timeout, || {
        flow_count(&sb).map(|n| n > 0).unwrap_or(false)
    })?;

    // Reconnect within a second once wyvernd is back (the cold sync below restarts it).
    vsctl_batch(
        &sb,
        &[vec![
            "set".into(),
            "controller".into(),
            BRIDGE.into(),
            "max_backoff=1000".into(),
        ]],
        false,
    )?;
    let total_ifaces = shape.ports() + args.samples;
    log(format!("creating {total_ifaces} dummy interfaces"));
    let t = Instant::now();
    create_interfaces(&sb, 0, total_ifaces, timeout)?;
    let vswitchd_ports = secs(t.elapsed());
    log(format!("  {vswitchd_ports} s"));

    log("building the topology through the API");
    let api = Api {
        http: reqwest::Client::new(),
        base: w.url(),
    };
    let t0 = Instant::now();
    let ports = build_wyvern(&api, shape, args.clients).await?;
    let api_secs = secs(t0.elapsed());
    log(format!(
        "  {api_secs} s; binding {} interfaces",
        ports.len()
    ));
    let pairs: Vec<(String, String)> = ports
        .iter()
        .enumerate()
        .map(|(i, id)| (iface_name(i), id.clone()))
        .collect();
    let tb = Instant::now();
    bind(&sb, &pairs)?;
    let last_write = Instant::now();
    let bind_secs = secs(last_write - tb);
    // Every bound port has its egress flow (table 7, plus the miss flow) before the table
    // may count as settled: bindings can arrive after a quiet moment.
    let want_egress = shape.ports() as u64 + 1;
    let deadline = Instant::now() + timeout;
    while flow_count_of(&sb, Some("table=7"))? != want_egress {
        if Instant::now() > deadline {
            bail!("not every port got its egress flow");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let (flows, at) = wait_settled(&sb, stable, timeout, 1)?;
    let after_write = secs(at.saturating_duration_since(last_write));
    let e2e = secs(at - t0);
    log(format!(
        "  {flows} flows, {after_write} s after the last write"
    ));

    // Incremental: one port at a time.
    // The bulk bind makes wyvernd write back 5,000 port statuses (each a store event and a
    // compile): the samples start once the store revision held still, not behind that queue.
    let quiet_deadline = Instant::now() + timeout;
    let (mut last_rev, mut since) = (None, Instant::now());
    loop {
        let text = reqwest::get(&metrics_url).await?.text().await?;
        let rev = wyvern_bench::prom_sample(&text, "wyvern_store_revision");
        if rev != last_rev {
            (last_rev, since) = (rev, Instant::now());
        } else if since.elapsed() >= Duration::from_secs(2) {
            break;
        }
        if Instant::now() > quiet_deadline {
            bail!("wyvernd's store never went quiet");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    log("incremental ports");
    let metrics_before = wyvernd_timings(&metrics_url).await?;
    let snoop = Snoop::start(&sb)?;
    // The switch's floor, probed between the samples on its own service connection: a bare
    // barrier (no flow-mod before it) is answered in the main-loop iteration that reads it,
    // after that iteration's per-port work, so no controller's bundle can be acknowledged
    // faster. Timed here to the microsecond (the snoop's timestamps have 1 ms resolution).
    let (probe, _probe_events) = Switch::connect(
        &ListenAddr::Unix(sb.run_dir().join(format!("{BRIDGE}.mgmt"))),
        &SwitchConfig::default(),
    )
    .await
    .context("failed to connect to the bridge's management socket")?;
    let mut floor: Vec<f64> = Vec::new();
    let mut inc = Vec::new();
    for s in 0..args.samples {
        let net_id = {
            // Any network: look one up through a port's network.
            let v = api
                .http
                .get(format!(
                    "{}/v2.0/ports/{}",
                    api.base,
                    ports[s * 7 % ports.len()]
                ))
                .send()
                .await?
                .json::<Value>()
                .await?;
            v["port"]["network_id"]
                .as_str()
                .context("port without network")?
                .to_owned()
        };
        let t_api = Instant::now();
        let p = api
            .post(
                "ports",
                json!({"port": {"network_id": net_id, "name": format!("inc{s}")}}),
            )
            .await?;
        let pid = id_of(&p, "port")?;
        let api_done = Instant::now();
        let iface = iface_name(shape.ports() + s);
        let ofport = sb
            .ofport(&iface)?
            .context("spare interface without ofport")?;
        let t_bind = Instant::now();
        let bind_at_s = seconds_of_day_now();
        bind(&sb, &[(iface, pid)])?;
        let bind_done = Instant::now();
        let needle = format!("actions=output:{ofport}");
        let deadline = Instant::now() + timeout;
        // Only the port's own egress flow is asked for (out_port): dumping all of table 7
        // in a loop kept ovs-vswitchd busy formatting 5,000 flows while the bundle waited.
        let filter = format!("table=7,out_port={ofport}");
        let seen = loop {
            let out = sb.ofctl(&["dump-flows", "--no-stats", BRIDGE, &filter])?;
            if out.lines().any(|l| l.trim_end().ends_with(&needle)) {
                break Instant::now();
            }
            if Instant::now() > deadline {
                bail!("port {ofport}'s egress flow never arrived");
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        for k in 0..3 {
            // Spaced 20 to 59 ms apart so each probe finds the switch idle, as a port's
            // bundle does.
            tokio::time::sleep(Duration::from_millis(20 + ((s * 3 + k) * 13 % 40) as u64)).await;
            let t = Instant::now();
            probe.barrier().await.context("barrier probe failed")?;
            floor.push(secs(t.elapsed()) * 1e3);
        }
        inc.push(json!({
            "api_create_ms": secs(api_done - t_api) * 1e3,
            "bind_write_ms": secs(bind_done - t_bind) * 1e3,
            "bind_to_flows_ms": secs(seen - t_bind) * 1e3,
            "api_to_flows_ms": secs(seen - t_api) * 1e3,
            "bind_at_s": bind_at_s,
            "seen_at_s": bind_at_s + secs(seen - t_bind),
        }));
    }
    drop(probe);
    floor.sort_by(f64::total_cmp);
    let (flows_with_inc, _) = wait_settled(&sb, stable, timeout, 1)?;
    let bundles = snoop.bundles();
    drop(snoop);
    let split = split_bind_to_flows(&mut inc, &bundles);
    let metrics_after = wyvernd_timings(&metrics_url).await?;
    let mut acks: Vec<f64> = bundles.iter().map(|b| b.barrier_reply_ms).collect();
    acks.sort_by(f64::total_cmp);
    let mut commits: Vec<f64> = bundles.iter().filter_map(|b| b.commit_reply_ms).collect();
    commits.sort_by(f64::total_cmp);
    let mean_ms = |what: &str| {
        let d = |k: &str| {
            metrics_after[k].as_f64().unwrap_or(0.0) - metrics_before[k].as_f64().unwrap_or(0.0)
        };
        let n = d(&format!("{what}_count"));
        (n > 0.0).then(|| json!({"count": n, "mean_ms": d(&format!("{what}_sum")) * 1e3 / n}))
    };
    let within: serde_json::Map<String, Value> = SYNC_BOUNDS
        .iter()
        .map(|le| {
            let k = format!("sync_le_{le}");
            let d = metrics_after[&k].as_f64().unwrap_or(0.0)
                - metrics_before[&k].as_f64().unwrap_or(0.0);
            (
                format!("{}ms", le.parse::<f64>().unwrap_or(0.0) * 1e3),
                json!(d),
            )
        })
        .collect();
    let wyvernd_side = json!({
        "ofctrl_sync": mean_ms("wyvern_openflow_sync_duration_seconds"),
        "ofctrl_syncs_within": within,
        "compile": mean_ms("wyvern_pipeline_compile_duration_seconds"),
    });

    // Raw floor: the same flows through ovs-ofctl, wyvernd out of the way.
    log("raw ovs-ofctl floor");
    w.stop()?;
    let dir = tempfile::tempdir()?;
    let (flow_file, group_file, dumped) = dump_for_reinstall(&sb, dir.path())?;
    if dumped as u64 != flows_with_inc {
        bail!("dumped {dumped} flows, want {flows_with_inc}");
    }
    // The controller stays configured (removing it would make OVS flush the table, and
    // re-adding it costs a reconfiguration of every port); nobody is connected now.
    let mut raw = Vec::new();
    for _ in 0..3 {
        empty_bridge(&sb)?;
        sb.ofctl(&["add-groups", BRIDGE, &group_file.display().to_string()])?;
        let t = Instant::now();
        sb.ofctl(&[
            "--bundle",
            "add-flows",
            BRIDGE,
            &flow_file.display().to_string(),
        ])?;
        raw.push(secs(t.elapsed()));
        let n = flow_count(&sb)?;
        if n != flows_with_inc {
            bail!("raw install left {n} flows, want {flows_with_inc}");
        }
    }
    let raw_best = raw.iter().cloned().fold(f64::MAX, f64::min);
    // The same flows over 1 + lanes connections at once (groups first), the floor of
    // what lanes can do.
    let mut raw_parallel = Vec::new();
    if args.lanes > 0 {
        let text = std::fs::read_to_string(&flow_file)?;
        let n = args.lanes + 1;
        let mut parts = vec![String::new(); n];
        for (i, line) in text.lines().enumerate() {
            parts[i % n].push_str(line);
            parts[i % n].push('\n');
        }
        let mut files = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            let f = dir.path().join(format!("flows-{i}.txt"));
            std::fs::write(&f, p)?;
            files.push(f);
        }
        for _ in 0..3 {
            empty_bridge(&sb)?;
            sb.ofctl(&["add-groups", BRIDGE, &group_file.display().to_string()])?;
            let t = Instant::now();
            let children = files
                .iter()
                .map(|f| {
                    Command::new("ovs-ofctl")
                        .env("OVS_RUNDIR", sb.run_dir())
                        .args(["-O", "OpenFlow13", "--bundle", "add-flows", BRIDGE])
                        .arg(f)
                        .stdout(Stdio::null())
                        .spawn()
                        .context("failed to start ovs-ofctl")
                })
                .collect::<anyhow::Result<Vec<Child>>>()?;
            for mut c in children {
                if !c.wait()?.success() {
                    bail!("parallel ovs-ofctl add-flows failed");
                }
            }
            raw_parallel.push(secs(t.elapsed()));
            let n = flow_count(&sb)?;
            if n != flows_with_inc {
                bail!("parallel raw install left {n} flows, want {flows_with_inc}");
            }
        }
    }
    let raw_parallel_best = raw_parallel.iter().cloned().reduce(f64::min);

    // Cold full sync: empty bridge, wyvernd starts (and sets the controller again).
    log("cold full sync");
    empty_bridge(&sb)?;
    let t = Instant::now();
    w.restart()?;
    let serving = secs(t.elapsed());
    let at = wait_count(&sb, flows_with_inc, timeout)?;
    let cold = secs(at - t);
    let (settled, _) = wait_settled(&sb, stable, timeout, 1)?;
    if settled != flows_with_inc {
        bail!("cold sync settled at {settled} flows, want {flows_with_inc}");
    }
    let rss = w
        .pid()
        .and_then(|p| wyvern_bench::proc_status_kib(p, "VmRSS"));
    w.stop()?;

    let mut inc_sorted: Vec<f64> = inc
        .iter()
        .filter_map(|v| v["bind_to_flows_ms"].as_f64())
        .collect();
    inc_sorted.sort_by(f64::total_cmp);
    Ok(json!({
        "vswitchd_create_interfaces_s": vswitchd_ports,
        "api_build_s": api_secs,
        "bind_transaction_s": bind_secs,
        "last_write_to_installed_s": after_write,
        "e2e_s": e2e,
        "flows": flows,
        "flows_after_incremental": flows_with_inc,
        "dumped_flows": dumped,
        "incremental": inc,
        "incremental_bind_to_flows_median_ms": inc_sorted.get(inc_sorted.len() / 2),
        "incremental_bind_to_flows_split_median_ms": split,
        "incremental_switch_ack_ms": acks,
        "incremental_switch_ack_median_ms": acks.get(acks.len() / 2),
        "incremental_switch_commit_reply_median_ms": commits.get(commits.len() / 2),
        "switch_floor_barrier_rtt_ms": floor,
        "switch_floor_barrier_rtt_median_ms": floor.get(floor.len() / 2),
        "switch_floor_barrier_rtt_p90_ms": floor.get(floor.len() * 9 / 10),
        "incremental_bundles": bundles,
        "incremental_wyvernd_side": wyvernd_side,
        "raw_ofctl_bundle_add_flows_s": raw,
        "raw_best_s": raw_best,
        "lanes": args.lanes,
        "raw_parallel_ofctl_s": raw_parallel,
        "raw_parallel_best_s": raw_parallel_best,
        "cold_over_raw_parallel": raw_parallel_best.map(|r| cold / r),
        "cold_full_sync_s": cold,
        "cold_sync_wyvernd_serving_s": serving,
        "cold_over_raw": cold / raw_best,
        "wyvernd_rss_kib": rss,
    }))
}

/// Splits each sample's bind-to-flows time at the bind's bundle (the first the switch read
/// after the bind's OVSDB commit): bind -> the switch reads the OPEN (wyvernd hearing of the
/// bind from ovsdb-server, compiling, writing, and the switch getting to read it), OPEN ->
/// BARRIER_REPLY (the switch's ack), and BARRIER_REPLY -> the bench's `dump-flows` poll
/// seeing the flow; and bind -> BARRIER_REPLY, the port's time to acknowledged flows without
/// the poll (each `ovs-ofctl` run costs the switch several main-loop iterations). Adds them
/// to each sample and returns their medians.
fn split_bind_to_flows(inc: &mut [Value], bundles: &[BundleTiming]) -> Value {
    let mut parts: [Vec<f64>; 4] = Default::default();
    for sample in inc.iter_mut() {
        let (Some(bind), Some(seen)) = (sample["bind_at_s"].as_f64(), sample["seen_at_s"].as_f64())
        else {
            continue;
        };
        // Snoop's clock has 1 ms steps: a bundle read within that step of the bind counts.
        let Some(b) = bundles.iter().find(|b| b.open_at_s >= bind - 0.001) else {
            continue;
        };
        let reply_at = b.open_at_s + b.barrier_reply_ms / 1e3;
        let ms = [
            (b.open_at_s - bind) * 1e3,
            b.barrier_reply_ms,
            (seen - reply_at) * 1e3,
            (reply_at - bind) * 1e3,
        ];
        sample["bind_to_bundle_open_ms"] = json!(ms[0]);
        sample["bundle_open_to_barrier_reply_ms"] = json!(ms[1]);
        sample["barrier_reply_to_seen_ms"] = json!(ms[2]);
        sample["bind_to_barrier_reply_ms"] = json!(ms[3]);
        for (v, m) in parts.iter_mut().zip(ms) {
            v.push(m);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    };
    let [a, b, c, d] = &mut parts;
    json!({
        "bind_to_bundle_open": median(a),
        "bundle_open_to_barrier_reply": median(b),
        "barrier_reply_to_seen": median(c),
        "bind_to_barrier_reply": median(d),
    })
}

/// wyvernd's own timing histograms (sum and count of ofctrl syncs and compiles), read from
/// its /metrics: the controller's side of an incremental change.
/// Bucket bounds of `wyvern_openflow_sync_duration_seconds` the benchmark reports.
const SYNC_BOUNDS: [&str; 4] = ["0.0025", "0.005", "0.01", "0.025"];

async fn wyvernd_timings(url: &str) -> anyhow::Result<Value> {
    let text = reqwest::get(url).await?.text().await?;
    let mut out = serde_json::Map::new();
    for h in [
        "wyvern_openflow_sync_duration_seconds",
        "wyvern_pipeline_compile_duration_seconds",
    ] {
        for part in ["sum", "count"] {
            let name = format!("{h}_{part}");
            out.insert(name.clone(), json!(prom_sum(&text, &name)));
        }
    }
    // How many ofctrl syncs (bundle written to barrier reply, the controller's view of the
    // switch's acknowledgement) finished within each bound.
    for le in SYNC_BOUNDS {
        let name = format!("wyvern_openflow_sync_duration_seconds_bucket{{le=\"{le}\"}}");
        out.insert(
            format!("sync_le_{le}"),
            json!(prom_sample(&text, &name).unwrap_or(0.0)),
        );
    }
    Ok(Value::Object(out))
}

/// A daemon the benchmark started; killed and reaped on drop.
struct Daemon(Child, &'static str);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        log(format!("stopped {}", self.1));
    }
}

fn spawn(name: &'static str, cmd: &mut Command) -> anyhow::Result<Daemon> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("failed to start {name}"))?;
    Ok(Daemon(child, name))
}

fn mac(i: usize) -> String {
    format!(
        "fa:16:3f:{:02x}:{:02x}:{:02x}",
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    )
}

/// The OVN baseline: phase 6.
fn bench_ovn(args: &Args, shape: &Shape) -> anyhow::Result<Value> {
    let timeout = Duration::from_secs(args.timeout_secs);
    let stable = Duration::from_millis(args.stable_ms);
    let sb = OvsSandbox::dummy()?;
    let ovn_dir = tempfile::Builder::new()
        .prefix("wyv-ovn-")
        .tempdir_in("/tmp")?;
    let d = ovn_dir.path();
    let env = |c: &mut Command| {
        c.env("OVS_RUNDIR", d)
            .env("OVS_LOGDIR", d)
            .env("OVN_RUNDIR", d)
            .env("OVN_LOGDIR", d)
            .env("OVN_DBDIR", d);
    };
    for (db, schema) in [("nb", "ovn-nb"), ("sb", "ovn-sb")] {
        run(Command::new("ovsdb-tool")
            .arg("create")
            .arg(d.join(format!("{db}.db")))
            .arg(format!("/usr/share/ovn/{schema}.ovsschema")))?;
    }
    let sock = d.join("ovn.sock");
    let db = format!("unix:{}", sock.display());
    let mut c = Command::new("ovsdb-server");
    env(&mut c);
    c.arg(format!("--remote=punix:{}", sock.display()))
        .arg(format!("--pidfile={}", d.join("ovn-ovsdb.pid").display()))
        .arg(format!("--unixctl={}", d.join("ovn-ovsdb.ctl").display()))
        .arg(format!("--log-file={}", d.join("ovn-ovsdb.log").display()))
        .arg(d.join("nb.db"))
        .arg(d.join("sb.db"));
    let _ovsdb = spawn("ovn ovsdb-server", &mut c)?;
    let nbctl = |extra: &[String]| -> anyhow::Result<String> {
        let mut c = Command::new("ovn-nbctl");
        env(&mut c);
        run(c.arg(format!("--db={db}")).arg("--timeout=600").args(extra))
    };
    wyvern_testkit::poll::wait_until("OVN databases", timeout, || nbctl(&["show".into()]).is_ok())?;
    let mut c = Command::new("ovn-northd");
    env(&mut c);
    c.arg(format!("--ovnnb-db={db}"))
        .arg(format!("--ovnsb-db={db}"))
        .arg(format!("--log-file={}", d.join("ovn-northd.log").display()))
        .arg(format!("--pidfile={}", d.join("ovn-northd.pid").display()));
    let _northd = spawn("ovn-northd", &mut c)?;

    sb.add_bridge(BRIDGE, None)?;
    sb.vsctl(&[
        "set",
        "open",
        ".",
        "external_ids:system-id=bench-hv1",
        &format!("external_ids:ovn-remote={db}"),
        "external_ids:ovn-encap-type=geneve",
        "external_ids:ovn-encap-ip=127.0.0.1",
        "external_ids:ovn-bridge-datapath-type=dummy",
    ])?;
    let mut c = Command::new("ovn-controller");
    env(&mut c);
    c.env("OVS_RUNDIR", sb.run_dir())
        .arg(sb.db_target())
        .arg(format!(
            "--log-file={}",
            d.join("ovn-controller.log").display()
        ))
        .arg(format!(
            "--pidfile={}",
            d.join("ovn-controller.pid").display()
        ));
    let _controller = spawn("ovn-controller", &mut c)?;
    wyvern_testkit::poll::wait_until("ovn-controller to register its chassis", timeout, || {
        let mut c = Command::new("ovn-sbctl");
        env(&mut c);
        run(c
            .arg(format!("--db={db}"))
            .args(["--bare", "--columns=name", "list", "Chassis"]))
        .map(|s| s.contains("bench-hv1"))
        .unwrap_or(false)
    })?;
    let (base_flows, _) = wait_settled(&sb, stable, timeout, 1)?;

    log(format!("OVN: creating {} dummy interfaces", shape.ports()));
    let t = Instant::now();
    create_interfaces(&sb, 0, shape.ports(), timeout)?;
    let vswitchd_ports = secs(t.elapsed());

    log("OVN: building the topology with ovn-nbctl");
    let t0 = Instant::now();
    let mut nbctl_calls = 0;
    for n in 0..shape.networks {
        let (cidr, gw) = shape.cidr(n);
        let router_mac = mac(0x80_0000 + n);
        let dhcp = nbctl(&[
            "create".into(),
            "DHCP_Options".into(),
            format!("cidr={cidr}"),
            format!(
                "options={{lease_time=\"43200\",router=\"{gw}\",server_id=\"{gw}\",server_mac=\"{router_mac}\"}}"
            ),
        ])?;
        let dhcp = dhcp.trim().to_owned();
        let ls = format!("ls{n}");
        let mut cmd: Vec<String> = vec!["ls-add".into(), ls.clone()];
        for p in 0..shape.ports_per_network {
            let k = n * shape.ports_per_network + p;
            let lsp = format!("lsp{k}");
            let addr = format!("{} {}", mac(k), shape.ip(n, p));
            for c in [
                vec!["lsp-add".into(), ls.clone(), lsp.clone()],
                vec!["lsp-set-addresses".into(), lsp.clone(), addr.clone()],
                vec!["lsp-set-port-security".into(), lsp.clone(), addr],
                vec!["lsp-set-dhcpv4-options".into(), lsp.clone(), dhcp.clone()],
            ] {
                cmd.push("--".into());
                cmd.extend(c);
            }
        }
        nbctl(&cmd)?;
        nbctl_calls += 2;
    }
    for r in 0..shape.routers {
        let lr = format!("lr{r}");
        let mut cmd: Vec<String> = vec!["lr-add".into(), lr.clone()];
        for n in shape.router_networks(r) {
            let (cidr, gw) = shape.cidr(n);
            let prefix = cidr.rsplit('/').next().unwrap_or("24");
            let lrp = format!("lrp{n}");
            for c in [
                vec![
                    "lrp-add".into(),
                    lr.clone(),
                    lrp.clone(),
                    mac(0x80_0000 + n),
                    format!("{gw}/{prefix}"),
                ],
                vec!["lsp-add".into(), format!("ls{n}"), format!("rp{n}")],
                vec!["lsp-set-type".into(), format!("rp{n}"), "router".into()],
                vec![
                    "lsp-set-addresses".into(),
                    format!("rp{n}"),
                    "router".into(),
                ],
                vec![
                    "lsp-set-options".into(),
                    format!("rp{n}"),
                    format!("router-port={lrp}"),
                ],
            ] {
                cmd.push("--".into());
                cmd.extend(c);
            }
        }
        nbctl(&cmd)?;
        nbctl_calls += 1;
    }
    let nb_secs = secs(t0.elapsed());
    log(format!("  {nb_secs} s; binding"));
    let pairs: Vec<(String, String)> = (0..shape.ports())
        .map(|k| (iface_name(k), format!("lsp{k}")))
        .collect();
    let tb = Instant::now();
    bind(&sb, &pairs)?;
    let last_write = Instant::now();
    let bind_secs = secs(last_write - tb);
    nbctl(&["--wait=hv".into(), "sync".into()])?;
    let synced = Instant::now();
    let (flows, at) = wait_settled(&sb, stable, timeout, base_flows + 1)?;
    let done = at.max(synced);
    let bound = {
        let mut c = Command::new("ovn-sbctl");
        env(&mut c);
        run(c.arg(format!("--db={db}")).args([
            "--bare",
            "--columns=chassis",
            "find",
            "Port_Binding",
            "type=\"\"",
        ]))?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
    };
    Ok(json!({
        "vswitchd_create_interfaces_s": vswitchd_ports,
        "nbctl_build_s": nb_secs,
        "nbctl_calls": nbctl_calls,
        "bind_transaction_s": bind_secs,
        "wait_hv_sync_after_last_write_s": secs(synced - last_write),
        "last_write_to_installed_s": secs(done.saturating_duration_since(last_write)),
        "e2e_s": secs(done - t0),
        "flows": flows,
        "ports_bound_to_chassis": bound,
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
    let shape = Shape {
        networks: args.networks,
        ports_per_network: args.ports_per_network,
        routers: args.routers,
        networks_per_router: args.networks_per_router,
    };
    if shape.ports_per_network > 250 || shape.networks > 256 * 200 {
        bail!("the /24 addressing holds at most 250 ports per network");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the tokio runtime")?;
    let load_before = loadavg_1m();
    let wyvern = rt.block_on(bench_wyvern(&args, &shape, &wyvernd))?;
    let ovn = if args.no_ovn {
        Value::Null
    } else {
        match bench_ovn(&args, &shape) {
            Ok(v) => v,
            Err(e) => json!({ "error": format!("{e:#}") }),
        }
    };
    let ratio = |a: &Value, b: &Value| match (a.as_f64(), b.as_f64()) {
        (Some(a), Some(b)) if b > 0.0 => json!(a / b),
        _ => Value::Null,
    };
    let report = json!({
        "benchmark": "bench-flows",
        "topology": {
            "networks": shape.networks,
            "ports": shape.ports(),
            "routers": shape.routers,
            "networks_per_router": shape.networks_per_router,
        },
        "wyvern": wyvern,
        "ovn": ovn,
        "summary": {
            "cold_full_sync_over_raw": wyvern["cold_over_raw"],
            "cold_full_sync_over_raw_parallel": wyvern["cold_over_raw_parallel"],
            "ovn_e2e_over_wyvern_e2e": ratio(&ovn["e2e_s"], &wyvern["e2e_s"]),
            "ovn_after_last_write_over_wyvern": ratio(&ovn["last_write_to_installed_s"], &wyvern["last_write_to_installed_s"]),
            "incremental_bind_to_flows_median_ms": wyvern["incremental_bind_to_flows_median_ms"],
            "incremental_switch_ack_median_ms": wyvern["incremental_switch_ack_median_ms"],
            "incremental_ofctrl_sync_mean_ms": wyvern["incremental_wyvernd_side"]["ofctrl_sync"]["mean_ms"],
            "incremental_ofctrl_syncs_within": wyvern["incremental_wyvernd_side"]["ofctrl_syncs_within"],
            "switch_floor_barrier_rtt_median_ms": wyvern["switch_floor_barrier_rtt_median_ms"],
        },
        "loadavg_1m_before": load_before,
        "loadavg_1m_after": loadavg_1m(),
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bind_is_split_at_the_first_bundle_read_after_it() {
        let bundle = |open_at_s, barrier_reply_ms| BundleTiming {
            open_at_s,
            messages: 10,
            commit_reply_ms: None,
            barrier_reply_ms,
        };
        // The API create's bundle comes before the bind; the bind's is read 0.3 s later.
        let bundles = [bundle(99.5, 4.0), bundle(100.3, 10.0)];
        let mut inc = vec![
            json!({"bind_at_s": 100.0, "seen_at_s": 100.35}),
            json!({"bind_at_s": 200.0, "seen_at_s": 200.1}),
        ];
        let split = split_bind_to_flows(&mut inc, &bundles);
        let near = |v: &Value, want: f64| (v.as_f64().unwrap() - want).abs() < 1e-6;
        assert!(near(&inc[0]["bind_to_bundle_open_ms"], 300.0), "{inc:?}");
        assert!(near(&inc[0]["bundle_open_to_barrier_reply_ms"], 10.0));
        assert!(near(&inc[0]["barrier_reply_to_seen_ms"], 40.0));
        assert!(near(&inc[0]["bind_to_barrier_reply_ms"], 310.0));
        // No bundle after the second bind: left unsplit, not matched to an earlier one.
        assert!(inc[1].get("bind_to_bundle_open_ms").is_none());
        assert!(near(&split["bind_to_bundle_open"], 300.0), "{split}");
    }
}
