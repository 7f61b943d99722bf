//! Forwards bursts between two null PMD ports (0 -> 1, 1 -> 0) on one core for N seconds
//! and prints the rate as JSON: the I/O ceiling of the `rte` burst primitives, to compare
//! with `dpdk/bench-testpmd.sh` (dpdk-testpmd io forwarding on the same ports).
//!
//! `cargo run --release -p rte --example null_fwd -- --seconds 5 --burst 32`

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rte::{free_bulk, Eal, Mbuf, Mempool, PoolConfig, Port, PortConf};

struct Args {
    seconds: f64,
    burst: u16,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        seconds: 5.0,
        burst: 32,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let v = it.next().with_context(|| format!("{a} needs a value"))?;
        match a.as_str() {
            "--seconds" => args.seconds = v.parse().context("--seconds")?,
            "--burst" => args.burst = v.parse().context("--burst")?,
            _ => bail!("unknown argument {a} (use --seconds N --burst N)"),
        }
    }
    Ok(args)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let prefix = format!("null-fwd-{}", std::process::id());
    let result = run(&args, &prefix);
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
    let out = result?;
    println!("{out}");
    Ok(())
}

fn run(args: &Args, prefix: &str) -> Result<serde_json::Value> {
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
    let pool = Mempool::pktmbuf_pool(
        &eal,
        "fwd_pool",
        &PoolConfig {
            size: 16383,
            cache_size: 256,
            ..Default::default()
        },
    )?;
    let mut ports = Vec::new();
    for id in [0u16, 1] {
        let mut p = Port::open(&eal, id)?;
        p.configure(&PortConf {
            rx_queues: 1,
            tx_queues: 1,
        })?;
        p.setup_rx_queue(0, 1024, &pool)?;
        p.setup_tx_queue(0, 1024)?;
        p.start()?;
        ports.push(p);
    }
    let (p0, p1) = (&ports[0], &ports[1]);
    let burst = args.burst;
    let mut b0: Vec<Mbuf<'_>> = Vec::with_capacity(burst as usize);
    let mut b1: Vec<Mbuf<'_>> = Vec::with_capacity(burst as usize);
    let (mut rx, mut tx, mut dropped) = (0u64, 0u64, 0u64);
    let duration = Duration::from_secs_f64(args.seconds);
    let start = Instant::now();
    let mut iter = 0u32;
    loop {
        let n = p0.rx_burst(0, &mut b0, burst);
        if n > 0 {
            rx += n as u64;
            tx += p1.tx_burst(0, &mut b0) as u64;
            if !b0.is_empty() {
                dropped += b0.len() as u64;
                free_bulk(&mut b0);
            }
        }
        let n = p1.rx_burst(0, &mut b1, burst);
        if n > 0 {
            rx += n as u64;
            tx += p0.tx_burst(0, &mut b1) as u64;
            if !b1.is_empty() {
                dropped += b1.len() as u64;
                free_bulk(&mut b1);
            }
        }
        iter = iter.wrapping_add(1);
        if iter.is_multiple_of(4096) && start.elapsed() >= duration {
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let s0 = p0.stats()?;
    let s1 = p1.stats()?;
    drop((b0, b1));
    Ok(serde_json::json!({
        "tool": "rte null_fwd",
        "ports": 2,
        "cores": 1,
        "burst": burst,
        "seconds": secs,
        "rx_packets": rx,
        "tx_packets": tx,
        "dropped": dropped,
        "mpps": rx as f64 / secs / 1e6,
        "port_stats": {
            "0": {"ipackets": s0.ipackets, "opackets": s0.opackets},
            "1": {"ipackets": s1.ipackets, "opackets": s1.opackets},
        },
    }))
}
