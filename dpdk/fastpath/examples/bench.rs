//! Fast-path throughput on one core, as JSON: the compiled pipeline of a 5,000-port
//! topology (100 networks x 50 ports, 10 routers) on two null PMD ports, and in the same
//! run `dpdk-testpmd --forward-mode=io` on the same null ports (dpdk/bench-testpmd.sh),
//! the ceiling.
//!
//! The null PMD hands out 64-byte frames of unspecified content, so every received frame
//! is overwritten with a template packet before it enters the pipeline (a 60-byte copy,
//! counted in our time): mode `l2` sends vm(net 0, port 0) <-> vm(net 0, port 1) unicast
//! (classify, port_security, dispatch, l2_lookup, egress); mode `routed` sends
//! vm(net 0) <-> vm(net 10) through router 0 (adds l3_lookup: TTL-1 with an incremental
//! checksum and both MACs rewritten). Each mode runs with the engine's exact-match flow
//! cache (repeated keys replay the recorded walk) and without it (every packet walks the
//! tables). The engine-only rate (no DPDK) is reported too, and each window's CPU share
//! (this machine is shared: `mpps_per_cpu_second` is the rate per second actually run).
//!
//! `cargo run --release -p wyvern-fastpath --example bench -- --seconds 5`

#[path = "../tests/common/topo.rs"]
mod topo;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rte::{Eal, Mempool, PoolConfig, Port, PortConf};
use serde_json::{json, Value};
use wyvern_engine::cache::DEFAULT_CACHE_SLOTS;
use wyvern_engine::packet::encode;
use wyvern_engine::{Engine, Meta, Verdict};
use wyvern_fastpath::{Config, FastPath, RxGenerator};
use wyvern_pipeline::interp::Packet;
use wyvern_pipeline::Stage;

struct Args {
    seconds: f64,
    burst: u16,
    nets: usize,
    ports_per_net: usize,
    routers: usize,
    testpmd: bool,
    /// Flow-cache settings to run: true = on, false = off.
    caches: Vec<bool>,
    /// Modes to run (l2, routed); empty = all.
    only: Vec<String>,
    engine_only: bool,
    /// Run the fast path on DPDK null ports (false: the engine alone).
    dpdk: bool,
    /// Distinct flows per direction (UDP source ports cycled through the templates).
    flows: usize,
    /// Prefill the pools with the templates and write only the words that change (true),
    /// or write each whole template into every frame (false, the session-4 generator).
    prefill: bool,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        seconds: 5.0,
        burst: 32,
        nets: 100,
        ports_per_net: 50,
        routers: 10,
        testpmd: true,
        caches: vec![true, false],
        only: Vec::new(),
        engine_only: true,
        dpdk: true,
        flows: 1,
        prefill: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        if k == "--no-testpmd" {
            a.testpmd = false;
            continue;
        }
        if k == "--no-engine-only" {
            a.engine_only = false;
            continue;
        }
        if k == "--engine-only" {
            // The engine alone (no DPDK, no testpmd): quick and deterministic enough for
            // instruction counts under cachegrind.
            a.dpdk = false;
            a.testpmd = false;
            continue;
        }
        let v = it.next().with_context(|| format!("{k} needs a value"))?;
        match k.as_str() {
            "--seconds" => a.seconds = v.parse()?,
            "--burst" => a.burst = v.parse()?,
            "--nets" => a.nets = v.parse()?,
            "--ports-per-net" => a.ports_per_net = v.parse()?,
            "--routers" => a.routers = v.parse()?,
            "--flows" => a.flows = v.parse()?,
            "--rx-write" => {
                a.prefill = match v.as_str() {
                    "prefill" => true,
                    "whole" => false,
                    _ => bail!("--rx-write takes prefill or whole"),
                }
            }
            "--modes" => a.only = v.split(',').map(str::to_owned).collect(),
            "--cache" => {
                a.caches = match v.as_str() {
                    "on" => vec![true],
                    "off" => vec![false],
                    "both" => vec![true, false],
                    _ => bail!("--cache takes on, off or both"),
                }
            }
            _ => bail!("unknown argument {k}"),
        }
    }
    if a.flows == 0 || a.flows > 60_000 {
        bail!("--flows must be 1 to 60000 (UDP source ports)");
    }
    if a.routers == 0 || a.nets <= a.routers || a.ports_per_net < 2 {
        bail!("need at least 2 ports per network and more networks than routers (routed mode)");
    }
    Ok(a)
}

/// One direction pair of template frames and the switch ports the DPDK ports stand for.
struct Mode {
    name: &'static str,
    ofports: [u32; 2],
    /// Per direction: the frames cycled through (one per flow).
    templates: [Vec<Vec<u8>>; 2],
    /// Stages a frame of this mode visits.
    stages: &'static [&'static str],
}

fn modes(t: &topo::Built, routers: usize, ppn: usize, flows: usize) -> Result<Vec<Mode>> {
    let a = &t.vms[0];
    let b = &t.vms[1];
    // Network `routers` is the next one on router 0 (network n sits on router n % routers).
    let c = &t.vms[routers * ppn];
    let gw_a = t.gateways[0].context("network 0 has a router")?;
    let gw_c = t.gateways[routers].context("network with vm c has a router")?;
    // One flow: an ICMP echo (the session-1 template). More: UDP from source ports
    // 10000, 10001, ... to port 5000, each a distinct exact-match cache key.
    let frames = |p: Packet| -> Vec<Vec<u8>> {
        if flows == 1 {
            return vec![encode(&p, 0)];
        }
        (0..flows)
            .map(|i| {
                let mut q = p;
                if let Some(ip) = q.ipv4.as_mut() {
                    ip.proto = 17;
                    ip.icmp_type = None;
                    ip.udp = Some((10_000 + i as u16, 5000));
                }
                encode(&q, 0)
            })
            .collect()
    };
    Ok(vec![
        Mode {
            name: "l2",
            ofports: [a.ofport, b.ofport],
            templates: [
                frames(Packet::ipv4(a.ofport, a.mac, b.mac, a.ip, b.ip, 64)),
                frames(Packet::ipv4(b.ofport, b.mac, a.mac, b.ip, a.ip, 64)),
            ],
            stages: &[
                "classify",
                "port_security",
                "dispatch",
                "l2_lookup",
                "egress",
            ],
        },
        Mode {
            name: "routed",
            ofports: [a.ofport, c.ofport],
            templates: [
                frames(Packet::ipv4(a.ofport, a.mac, gw_a.mac, a.ip, c.ip, 64)),
                frames(Packet::ipv4(c.ofport, c.mac, gw_c.mac, c.ip, a.ip, 64)),
            ],
            stages: &[
                "classify",
                "port_security",
                "dispatch",
                "l2_lookup",
                "l3_lookup",
                "egress",
            ],
        },
    ])
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let t0 = Instant::now();
    let t = topo::build(args.nets, args.ports_per_net, args.routers);
    let build_s = t0.elapsed().as_secs_f64();
    let flows = t.flows();
    let groups = t.groups();
    let t1 = Instant::now();
    let engine = Engine::from_ir(&flows, &groups)?;
    let engine_build_s = t1.elapsed().as_secs_f64();
    let tables: serde_json::Map<String, Value> = Stage::ALL
        .iter()
        .map(|s| {
            let sh = engine.shape(*s);
            (
                s.name().to_string(),
                json!({"entries": sh.entries, "subtables": sh.subtables, "kind": format!("{:?}", sh.kind)}),
            )
        })
        .collect();
    let modes: Vec<Mode> = modes(&t, args.routers, args.ports_per_net, args.flows)?
        .into_iter()
        .filter(|m| args.only.is_empty() || args.only.iter().any(|o| o == m.name))
        .collect();
    let engine = Arc::new(Mutex::new(engine));

    // Engine alone: the same templates processed from a buffer, no DPDK.
    let mut engine_only = serde_json::Map::new();
    let runs: Vec<(&Mode, bool)> = modes
        .iter()
        .flat_map(|m| args.caches.iter().map(move |c| (m, *c)))
        .collect();
    for &(m, cache) in runs.iter().filter(|_| args.engine_only) {
        let mut eng = engine.lock().map_err(|_| anyhow::anyhow!("engine lock"))?;
        eng.set_flow_cache(if cache { DEFAULT_CACHE_SLOTS } else { 0 });
        let n = 5_000_000u64;
        let tpl = &m.templates[0];
        // Bursts like the fast path's: each frame rewritten from its template, then the
        // burst through `process_burst`.
        let burst = usize::from(args.burst);
        let mut bufs: Vec<Vec<u8>> = vec![tpl[0].clone(); burst];
        let mut verdicts = Vec::with_capacity(burst);
        let meta = Meta {
            in_port: m.ofports[0],
            tun_id: None,
        };
        let cpu_before = thread_cpu_seconds();
        let start = Instant::now();
        let mut outputs = 0u64;
        let mut next = 0usize;
        for _ in 0..n / burst as u64 {
            for b in bufs.iter_mut() {
                b.copy_from_slice(&tpl[next]);
                next += 1;
                if next == tpl.len() {
                    next = 0;
                }
            }
            eng.process_burst(&mut bufs, meta, &mut verdicts);
            outputs += verdicts
                .iter()
                .filter(|v| matches!(v, Verdict::Output(_)))
                .count() as u64;
        }
        let n = n / burst as u64 * burst as u64;
        let s = start.elapsed().as_secs_f64();
        if outputs != n {
            bail!(
                "engine-only {}: {} of {n} frames were output",
                m.name,
                outputs
            );
        }
        engine_only.insert(
            format!("{}{}", m.name, if cache { "" } else { "_no_cache" }),
            {
                let cpu = thread_cpu_seconds().zip(cpu_before).map(|(a, b)| a - b);
                json!({
                    "mpps": n as f64 / s / 1e6,
                    "ns_per_packet": s * 1e9 / n as f64,
                    "cpu_share": cpu.map(|c| c / s),
                    "cpu_ns_per_packet": cpu.map(|c| c * 1e9 / n as f64),
                })
            },
        );
    }

    let prefix = format!("fp-bench-{}", std::process::id());
    let fastpath = if args.dpdk {
        let result = run_dpdk(&args, &prefix, &engine, &modes);
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
        result?
    } else {
        Value::Array(Vec::new())
    };

    let testpmd = if args.testpmd {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../bench-testpmd.sh");
        let secs = format!("{}", args.seconds.ceil() as u64);
        let out = Command::new("bash")
            .arg(script)
            .arg(&secs)
            .output()
            .context("failed to run dpdk/bench-testpmd.sh")?;
        if !out.status.success() {
            bail!(
                "bench-testpmd.sh failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let line = String::from_utf8_lossy(&out.stdout);
        let v: Value = serde_json::from_str(line.trim()).context("testpmd JSON")?;
        Some(v)
    } else {
        None
    };
    let ceiling = testpmd
        .as_ref()
        .and_then(|v| v["mpps"].as_f64())
        .filter(|m| *m > 0.0);
    let mut fp = fastpath;
    if let (Some(c), Some(list)) = (ceiling, fp.as_array_mut()) {
        for m in list {
            let mpps = m["mpps"].as_f64().unwrap_or(0.0);
            m["ratio_to_testpmd_io"] = json!(mpps / c);
        }
    }
    let out = json!({
        "bench": "wyvern-fastpath",
        "loadavg_at_end": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        "cores": 1,
        "burst": args.burst,
        "seconds_per_mode": args.seconds,
        "flows_per_direction": args.flows,
        "topology": {
            "networks": args.nets,
            "ports": t.vms.len(),
            "routers": args.routers,
            "flows": flows.len(),
            "flood_groups": groups.len(),
            "build_seconds": build_s,
            "engine_build_seconds": engine_build_s,
        },
        "tables": tables,
        "rx_rewrite": if args.prefill {
            "each port's mbuf pool prefilled once with its direction's first template (null PMD, copy=0, delivers that data); per frame the generator writes only the 8-byte words in rx_write_words (bit w = bytes 8w..8w+8) from the frame's template: words where the direction's templates differ (UDP source port with --flows) and words the pipeline rewrote (routed: MACs, TTL, IP checksum), so each frame is exactly its template (frames_checked_against_templates)"
        } else {
            "each null-PMD frame is overwritten with the mode's whole template (64 bytes) before processing"
        },
        "engine_only": engine_only,
        "fastpath": fp,
        "testpmd_io": testpmd,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn run_dpdk(
    args: &Args,
    prefix: &str,
    engine: &Arc<Mutex<Engine>>,
    modes: &[Mode],
) -> Result<Value> {
    let eal = Eal::init(&[
        "--no-huge",
        "--no-pci",
        "-m",
        "512",
        "--file-prefix",
        prefix,
        "--vdev=net_null0",
        "--vdev=net_null1",
        "-l",
        "0",
        "--no-telemetry",
        "--log-level=warning",
    ])?;
    // One pool per port, so each can hold its direction's template (8191 mbufs each, 16,382
    // in all; testpmd runs with 16,384 in one pool). Per-lcore cache 250 and bursts of 32:
    // testpmd's defaults.
    let pools = [0, 1]
        .map(|i| {
            Mempool::pktmbuf_pool(
                &eal,
                &format!("fp_bench{i}"),
                &PoolConfig {
                    size: POOL_SIZE,
                    cache_size: 250,
                    ..Default::default()
                },
            )
        })
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let mut ports = Vec::new();
    for id in [0u16, 1] {
        let mut p = Port::open(&eal, id)?;
        p.configure(&PortConf {
            rx_queues: 1,
            tx_queues: 1,
        })?;
        p.setup_rx_queue(0, 1024, &pools[usize::from(id)])?;
        p.setup_tx_queue(0, 1024)?;
        p.start()?;
        ports.push(p);
    }
    let mut results = Vec::new();
    for (m, cache) in modes
        .iter()
        .flat_map(|m| args.caches.iter().map(move |c| (m, *c)))
    {
        engine
            .lock()
            .map_err(|_| anyhow::anyhow!("engine lock"))?
            .set_flow_cache(if cache { DEFAULT_CACHE_SLOTS } else { 0 });
        // What each received frame gets written (see `RxGenerator`): with prefilled pools
        // only the words that differ between a direction's templates and the words the
        // pipeline rewrites (found by running each template through the engine once).
        let generators: Vec<RxGenerator> = if args.prefill {
            let mut eng = engine.lock().map_err(|_| anyhow::anyhow!("engine lock"))?;
            (0..2)
                .map(|d| {
                    let mut rewritten = 0u8;
                    for t in &m.templates[d] {
                        let mut f = t.clone();
                        f.resize(RxGenerator::FIXED.max(f.len()), 0);
                        eng.process(&mut f, m.ofports[d]);
                        for (w, (a, b)) in f
                            .chunks(8)
                            .zip(t.chunks(8))
                            .take(RxGenerator::FIXED / 8)
                            .enumerate()
                        {
                            if a[..b.len()] != *b {
                                rewritten |= 1 << w;
                            }
                        }
                    }
                    let mask = RxGenerator::diff_mask(&m.templates[d], rewritten);
                    RxGenerator::words(&m.templates[d], mask)
                })
                .collect()
        } else {
            (0..2)
                .map(|d| RxGenerator::whole(&m.templates[d]))
                .collect()
        };
        if args.prefill {
            for (d, pool) in pools.iter().enumerate() {
                let first = &m.templates[d][0];
                let n = pool.prefill_data(NULL_FRAME, |_, data| {
                    data.fill(0);
                    let k = first.len().min(data.len());
                    data[..k].copy_from_slice(&first[..k]);
                })?;
                if n != POOL_SIZE as usize {
                    bail!("prefilled {n} of {POOL_SIZE} mbufs of pool {d}: some are held");
                }
            }
        }
        for p in ports.iter_mut() {
            p.reset_stats()?;
        }
        let (mut fp, _punts) = FastPath::new(
            &ports,
            &m.ofports,
            &pools[0],
            Arc::clone(engine),
            Config {
                burst: args.burst,
                ..Config::default()
            },
        )?;
        for (d, g) in generators.iter().enumerate() {
            fp.set_rx_generator(d, g.clone());
        }
        // Warm-up, then the measured window.
        let warm = Instant::now();
        while warm.elapsed() < Duration::from_millis(300) {
            fp.poll();
        }
        let before = fp.stats();
        let cache_before = engine
            .lock()
            .map_err(|_| anyhow::anyhow!("engine lock"))?
            .cache_stats();
        let cpu_before = thread_cpu_seconds();
        let start = Instant::now();
        let limit = Duration::from_secs_f64(args.seconds);
        // The rate of every 100 ms slice too: on a shared machine the best slice is the
        // closest to what an idle core does (the mean includes other tenants' bursts).
        let slice = Duration::from_millis(100);
        let mut slices: Vec<f64> = Vec::new();
        let (mut slice_start, mut slice_rx) = (start, before.rx);
        let mut i = 0u32;
        loop {
            fp.poll();
            i = i.wrapping_add(1);
            if i.is_multiple_of(256) {
                let now = Instant::now();
                if now - slice_start >= slice {
                    let rx = fp.stats().rx;
                    slices.push((rx - slice_rx) as f64 / (now - slice_start).as_secs_f64() / 1e6);
                    (slice_start, slice_rx) = (now, rx);
                }
                if now - start >= limit {
                    break;
                }
            }
        }
        slices.sort_by(f64::total_cmp);
        let best_slice = slices.last().copied();
        let median_slice = slices.get(slices.len() / 2).copied();
        let secs = start.elapsed().as_secs_f64();
        let cpu = thread_cpu_seconds().zip(cpu_before).map(|(a, b)| a - b);
        let s = fp.stats();
        let cache_after = engine
            .lock()
            .map_err(|_| anyhow::anyhow!("engine lock"))?
            .cache_stats();
        drop(fp);
        let cache_hits = cache_after.hits - cache_before.hits;
        let cache_misses = cache_after.misses - cache_before.misses;
        let cache_lookups = cache_hits + cache_misses;
        let rx = s.rx - before.rx;
        let tx = s.tx - before.tx;
        let st = [ports[0].stats()?, ports[1].stats()?];
        // Proof that the frames went where they should: everything received on one port
        // (warm-up included) left through the other, nothing dropped, punted or refused.
        let drops = s.drops();
        if st[0].ipackets != st[1].opackets
            || st[1].ipackets != st[0].opackets
            || drops != 0
            || s.punts + s.punt_dropped + s.tx_full + s.no_port != 0
        {
            bail!(
                "{} (cache {cache}): frames went astray: ports {st:?}, fast path {s:?}",
                m.name
            );
        }
        // Proof that the frames were the templates: mbufs that went through the pipeline
        // all run long, received again and given the generator's write, are byte for byte
        // the template the generator chose.
        let checked = check_frames(&ports, &generators, m)?;
        results.push(json!({
            "mode": m.name,
            "flow_cache": cache,
            "flows_per_direction": args.flows,
            "cache_hit_rate": (cache_lookups > 0).then(|| cache_hits as f64 / cache_lookups as f64),
            "cache_misses": cache_misses,
            "stages": m.stages,
            "mpps": rx as f64 / secs / 1e6,
            "ns_per_frame": secs * 1e9 / rx.max(1) as f64,
            "mpps_best_100ms": best_slice,
            "mpps_median_100ms": median_slice,
            "cpu_share": cpu.map(|c| c / secs),
            "mpps_per_cpu_second": cpu.map(|c| rx as f64 / c / 1e6),
            "seconds": secs,
            "rx": rx,
            "tx": tx,
            "tx_fraction": tx as f64 / rx.max(1) as f64,
            "drops": s.drops() - before.drops(),
            "punts": s.punts - before.punts,
            "tx_full": s.tx_full - before.tx_full,
            "port_ipackets": [st[0].ipackets, st[1].ipackets],
            "port_opackets": [st[0].opackets, st[1].opackets],
            "rx_write_bytes_per_frame": generators.iter().map(|g| g.mask().count_ones() * 8).collect::<Vec<_>>(),
            "rx_write_words": generators.iter().map(|g| format!("{:08b}", g.mask())).collect::<Vec<_>>(),
            "frames_checked_against_templates": checked,
        }));
    }
    drop(ports);
    drop(pools);
    eal.cleanup()?;
    Ok(Value::Array(results))
}

/// Mbufs per pool.
const POOL_SIZE: u32 = 8191;
/// The null PMD's frame length (its default `size`).
const NULL_FRAME: usize = 64;

/// Receives a few bursts on each port, applies a copy of that port's generator and checks
/// every frame against the template it was given; returns the number of frames checked.
fn check_frames(ports: &[Port], generators: &[RxGenerator], m: &Mode) -> Result<usize> {
    let mut checked = 0;
    let mut burst = Vec::with_capacity(32);
    for (d, port) in ports.iter().enumerate() {
        let mut g = generators[d].clone();
        let tpl = &m.templates[d];
        // The copy starts where the run's generator stopped; find it by the first frame.
        let mut k = 0usize;
        for round in 0..8 {
            port.rx_burst(0, &mut burst, 32);
            for (j, f) in burst.iter_mut().enumerate() {
                g.write(f.data_mut());
                let data = f.data();
                if round == 0 && j == 0 {
                    k = tpl
                        .iter()
                        .position(|t| data.starts_with(t))
                        .context("a received frame is none of the templates")?;
                }
                let want = &tpl[k];
                if !data.starts_with(want) || data[want.len()..].iter().any(|b| *b != 0) {
                    bail!(
                        "{}: port {d} frame {j} of round {round} is not template {k}: {:02x?}",
                        m.name,
                        data
                    );
                }
                k = (k + 1) % tpl.len();
                checked += 1;
            }
            rte::free_bulk(&mut burst);
        }
    }
    Ok(checked)
}

/// CPU time (user + system) of the calling thread, from /proc: the machine may be shared,
/// so the report says how much of the window this thread really ran.
fn thread_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the command name (which may contain spaces) start after ") ".
    let rest = stat.rsplit_once(") ")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}
