//! bench-p4d: entries/s written through gRPC into the real wyvern-p4d process (entries
//! translated and installed in the engine, not just stored), for the 5,000-port topology,
//! per batch size; plus the restart Read + diff time. JSON on stdout.
//!
//! ```text
//! cargo build --release -p wyvern-p4d --bins --examples
//! target/release/examples/write_rate 5000 100,1000,5000
//! ```
//! The wyvern-p4d binary is taken from the same profile directory as this example.

#[path = "../../p4rt/tests/common/mod.rs"]
mod common;
#[path = "../tests/harness/mod.rs"]
mod harness;

use std::time::{Duration, Instant};

use wyvern_offload_p4rt::{P4rtBackend, P4rtConfig};

/// The target's entries/s goal (issue 7).
const TARGET_RATE: f64 = 100_000.0;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (ports, batches) = common::rate_args()?;

    let (flows, groups) = common::scale(ports);
    let mut runs = Vec::new();
    for batch in &batches {
        let p4d = harness::P4d::start(&[])?;
        let mut cfg = P4rtConfig::new(1, 1, common::p4info(), b"{}".to_vec());
        cfg.batch_size = *batch;
        let (mut b, _pin) = P4rtBackend::connect(&p4d.url(), cfg).await?;
        b.wait_until_primary(Duration::from_secs(10)).await?;
        b.set_pipeline().await?;
        let unmapped = b.set_desired(&flows, &groups).len();
        let t = Instant::now();
        let r = b.sync().await?;
        let secs = t.elapsed().as_secs_f64();
        anyhow::ensure!(
            r.failures.is_empty(),
            "refused updates: {}",
            r.failures.len()
        );
        let t = Instant::now();
        drop(b.reconnect(&p4d.url()).await?);
        b.wait_until_primary(Duration::from_secs(10)).await?;
        let r2 = b.sync().await?;
        let resync = t.elapsed().as_secs_f64();
        anyhow::ensure!(r2.updates() == 0, "resync wrote {}", r2.updates());
        let rate = r.updates() as f64 / secs;
        runs.push(serde_json::json!({
            "batch_size": batch,
            "updates": r.updates(),
            "unmapped_flows": unmapped,
            "write_requests": r.write_requests,
            "sync_seconds": secs,
            "entries_per_second": rate,
            "meets_100k_target": rate >= TARGET_RATE,
            "restart_read_diff_seconds": resync,
        }));
        drop(b);
        p4d.stop()?;
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "tool": "bench-p4d",
            "target": "wyvern-p4d (separate process, entries installed in wyvern-engine)",
            "ports": ports,
            "ir_flows": flows.len(),
            "flood_groups": groups.len(),
            "runs": runs,
        }))?
    );
    Ok(())
}
