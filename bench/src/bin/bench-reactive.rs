//! `bench-reactive`: the cost of the first routed packet in reactive L3 mode.
//!
//! Topology: userspace OVS (own namespace), wyvernd `--l3-mode reactive`, two networks
//! joined by a router, one VM namespace on each (static addresses; DHCP plays no part).
//!
//! Method. Before each sample the forward route flow (`table=l3_lookup, ip,
//! nw_dst=<vm b>`) is deleted with `ovs-ofctl del-flows`, so the destination is new again
//! for the switch (wyvernd keeps no memory of reactive flows: it installs on every miss).
//! Then VM a sends three pings 20 ms apart. Ping 1 goes: upcall, packet-in to wyvernd,
//! route computed, flow-mod + packet-out + barrier in one write (the packet-out carries the
//! route's actions, so nothing waits for the barrier), to VM b, and the reply back over the
//! already installed return route. Pings 2 and 3 take the installed flow.
//!
//! Three numbers, each answering a different question:
//! - `controller_install` (the issue's definition, "from packet-in to flow installed and
//!   packet released"): measured inside wyvernd, from the packet-in decoded off the
//!   OpenFlow connection to the switch's reply to the barrier sent after the flow-mod and
//!   packet-out (OpenFlow answers a barrier only once everything before it is processed).
//!   Raw samples: wyvernd's debug line `install_us=` per first packet (the same values feed
//!   the histogram `wyvern_reactive_route_install_duration_seconds` on /metrics). The time
//!   the barrier-reply waiter takes to wake is included, so this is an upper bound.
//! - `first_packet_cost` (end to end, what a VM sees): RTT(1) - min(RTT(2), RTT(3)). It
//!   adds OVS's slow-path upcall, the megaflow revalidation the deletion causes and the
//!   packet's own trip to the controller and back to the datapath, beyond the above.
//! - `upcall_only_cost_proactive` (the switch's part alone): the same three pings in
//!   proactive mode after `ovs-appctl dpctl/del-flows` (the datapath's megaflows flushed,
//!   the OpenFlow tables intact).
//!
//! A lost first ping is counted (it must never happen). The same topology in proactive
//! mode also gives the flow count. Prints one JSON document on stdout.

#[path = "../vmlab.rs"]
mod vmlab;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use serde_json::{json, Value};
use vmlab::{default_wyvernd, Lab};
use wyvern_bench::Latency;
use wyvern_testkit::poll::wait_for;

#[derive(Debug, Parser)]
#[command(
    name = "bench-reactive",
    about = "Reactive L3 first-packet latency of wyvernd"
)]
struct Args {
    /// wyvernd binary [default: the wyvernd next to this executable].
    #[arg(long, env = "WYVERND")]
    wyvernd: Option<PathBuf>,
    /// Samples (first packets) to take.
    #[arg(long, default_value_t = 200)]
    samples: usize,
}

const IP_A: &str = "10.0.1.10";
const IP_B: &str = "10.0.2.10";

/// Networks, subnets, router, two ports (fixed IPs), two VM namespaces; returns the lab
/// with namespaces 0 = a, 1 = b, configured and bound, and the flow count before the
/// first routed packet.
async fn build(wyvernd: &PathBuf, mode: &str) -> anyhow::Result<(Lab, u64)> {
    // The apps' debug lines carry the controller-side samples (one per first packet).
    let mut lab = Lab::start_logging(
        wyvernd,
        &["--l3-mode", mode],
        "warn,wyvern_local::apps=debug",
    )?;
    let router = lab.create("router", json!({"name": "r"})).await?;
    let rid = router["id"].as_str().unwrap_or_default().to_owned();
    for (i, (cidr, ip)) in [("10.0.1.0/24", IP_A), ("10.0.2.0/24", IP_B)]
        .into_iter()
        .enumerate()
    {
        let net = lab
            .create("network", json!({"name": format!("n{i}")}))
            .await?;
        let sub = lab
            .create(
                "subnet",
                json!({"network_id": net["id"], "cidr": cidr, "ip_version": 4}),
            )
            .await?;
        lab.call(
            reqwest::Method::PUT,
            &format!("/v2.0/routers/{rid}/add_router_interface"),
            Some(json!({"subnet_id": sub["id"]})),
            200,
        )
        .await?;
        let port = lab
            .create(
                "port",
                json!({"network_id": net["id"],
                       "fixed_ips": [{"subnet_id": sub["id"], "ip_address": ip}]}),
            )
            .await?;
        let mac = port["mac_address"].as_str().unwrap_or_default().to_owned();
        let iface = format!(
            "external_ids:iface-id={}",
            port["id"].as_str().unwrap_or_default()
        );
        let n = lab.add_ns("wyv-br", &format!("tap{i}"), "br-int", &mac, &[iface])?;
        let ns = &lab.namespaces[n];
        ns.exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
        let gw = if i == 0 { "10.0.1.1" } else { "10.0.2.1" };
        ns.exec(&["ip", "route", "add", "default", "via", gw])?;
    }
    lab.wait_active(2).await?;
    let flows_before = flow_count(&lab)?;
    // Warm-up: ARP for the gateways, both routes installed (or proactive ones used).
    let a = &lab.namespaces[0];
    wait_for("a first routed ping", vmlab::LONG, || {
        a.exec(&["ping", "-n", "-c", "1", "-W", "1", IP_B]).ok()
    })?;
    Ok((lab, flows_before))
}

/// What `sample` measured: first-ping RTTs, steady RTTs, first-packet costs, lost firsts.
type Samples = (Vec<Duration>, Vec<Duration>, Vec<Duration>, usize);

/// Per sample: `reset`, then three pings 20 ms apart; the first ping's RTT, the steady RTT
/// (min of pings 2 and 3), and how many first pings were lost.
fn sample(
    lab: &Lab,
    n: usize,
    mut reset: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Samples> {
    let a = &lab.namespaces[0];
    let (mut first, mut steady, mut cost, mut lost) = (Vec::new(), Vec::new(), Vec::new(), 0);
    for i in 0..n {
        reset()?;
        let out = a
            .command("ping")
            .args(["-n", "-c", "3", "-i", "0.02", "-W", "1", IP_B])
            .output()?;
        let r = rtts(&String::from_utf8_lossy(&out.stdout));
        let get = |s| r.iter().find(|(q, _)| *q == s).map(|(_, d)| *d);
        let Some(base) = get(2).into_iter().chain(get(3)).min() else {
            anyhow::bail!("sample {i}: no steady-state reply: {r:?}");
        };
        steady.push(base);
        match get(1) {
            Some(f) => {
                first.push(f);
                cost.push(f.saturating_sub(base));
            }
            None => lost += 1,
        }
    }
    Ok((first, steady, cost, lost))
}

/// RTTs by icmp_seq from ping's output.
fn rtts(text: &str) -> Vec<(u32, Duration)> {
    text.lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| {
            let seq = l
                .split_whitespace()
                .find_map(|w| w.strip_prefix("icmp_seq="))?
                .parse()
                .ok()?;
            let ms: f64 = l
                .split_whitespace()
                .find_map(|w| w.strip_prefix("time="))?
                .parse()
                .ok()?;
            Some((seq, Duration::from_secs_f64(ms / 1000.0)))
        })
        .collect()
}

/// The controller-side samples in wyvernd's log, oldest first: `key` is `install_us`
/// (the whole), `queued_us` (reader to apps), `route_us` (route and encoding) or
/// `switch_us` (handed to the writer until the barrier reply).
fn log_samples(lab: &Lab, key: &str) -> anyhow::Result<Vec<Duration>> {
    let path = lab.wyvernd.log_path();
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read wyvernd's log {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let us = l
                .split_whitespace()
                .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))?;
            us.parse().ok().map(Duration::from_micros)
        })
        .collect())
}

fn flow_count(lab: &Lab) -> anyhow::Result<u64> {
    let out = lab.ovs.ofctl(&["dump-aggregate", "br-int"])?;
    out.split_whitespace()
        .find_map(|w| w.strip_prefix("flow_count="))
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no flow_count in {out}"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let wyvernd = default_wyvernd(args.wyvernd)?;

    let l3_table = "table=6";
    let (proactive, proactive_flows) = build(&wyvernd, "proactive").await?;
    let (_, _, mut upcall, upcall_lost) = sample(&proactive, args.samples, || {
        proactive.ovs.appctl(&["dpctl/del-flows"]).map(|_| ())
    })?;
    drop(proactive);

    let (lab, reactive_before) = build(&wyvernd, "reactive").await?;
    let reactive_flows = flow_count(&lab)?;
    let warmup_installs = log_samples(&lab, "install_us")?.len();
    let (mut first, mut steady, mut overhead, lost_first) = sample(&lab, args.samples, || {
        lab.ovs
            .ofctl(&[
                "del-flows",
                "br-int",
                &format!("{l3_table},ip,nw_dst={IP_B}"),
            ])
            .map(|_| ())
    })?;
    // The last barrier reply may still be on its way when the last ping returns.
    let want = warmup_installs + args.samples - lost_first;
    let _ = wyvern_testkit::poll::wait_until(
        "every install sample logged",
        Duration::from_secs(5),
        || log_samples(&lab, "install_us").is_ok_and(|s| s.len() >= want),
    );
    let measured = |key| -> anyhow::Result<Option<Latency>> {
        let mut v: Vec<Duration> = log_samples(&lab, key)?
            .into_iter()
            .skip(warmup_installs)
            .collect();
        Ok(Latency::of(&mut v))
    };
    let dump = lab.ovs.ofctl(&["dump-flows", "br-int", l3_table])?;
    let reinstalled = dump.contains(&format!("nw_dst={IP_B}")) && dump.contains("idle_timeout=");
    let out: Value = json!({
        "benchmark": "reactive_first_packet",
        "method": "per sample: delete the l3_lookup flow for the destination, ping 3 times 20 ms apart. controller_install (the issue's metric): inside wyvernd, packet-in decoded -> barrier reply after flow-mod + packet-out (raw samples from wyvernd's install_us= log lines). first_packet_cost (end to end): RTT(1) - min(RTT(2), RTT(3)), adds the switch's upcall and revalidation. upcall_only_cost_proactive (switch alone): the same after flushing only the datapath megaflows in proactive mode",
        "samples": args.samples,
        "controller_install": measured("install_us")?,
        "controller_install_parts": {
            "queued_reader_to_apps": measured("queued_us")?,
            "route_and_encode": measured("route_us")?,
            "written_to_barrier_reply": measured("switch_us")?,
        },
        "first_packet_cost": Latency::of(&mut overhead),
        "first_packet_rtt": Latency::of(&mut first),
        "steady_rtt": Latency::of(&mut steady),
        "lost_first_packets": lost_first,
        "flow_reinstalled_with_idle_timeout": reinstalled,
        "upcall_only_cost_proactive": Latency::of(&mut upcall),
        "upcall_only_lost_first_packets": upcall_lost,
        "target_p99_ms": 1.0,
        "flow_count": {
            "proactive": proactive_flows,
            "reactive_before_traffic": reactive_before,
            "reactive_after_two_routes": reactive_flows,
            "reactive_after_samples": flow_count(&lab)?,
        },
        "loadavg_1m": wyvern_bench::loadavg_1m(),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
