//! Entries/s written through gRPC by `P4rtBackend::sync` for a large topology, per batch
//! size, into the in-process FakeP4rtTarget (which only stores entries: this measures the
//! back end and the gRPC path, not a forwarding target). JSON on stdout.
//! `cargo run --release -p wyvern-offload-p4rt --example sync_rate -- 5000 100,1000,5000`

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::fake::FakeP4rtTarget;
use wyvern_offload_p4rt::{MapError, P4rtBackend, P4rtConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (ports, batches) = common::rate_args()?;

    let t = Instant::now();
    let (flows, groups) = common::scale(ports);
    let compile_secs = t.elapsed().as_secs_f64();
    let mut results = Vec::new();
    let mut unmapped = 0;
    let mut unmapped_kinds = std::collections::BTreeMap::<String, usize>::new();
    for batch in &batches {
        let target = FakeP4rtTarget::start(1).await?;
        let mut cfg = P4rtConfig::new(1, 1, common::p4info(), b"{}".to_vec());
        cfg.batch_size = *batch;
        let (mut b, _pin) = P4rtBackend::connect(&target.url(), cfg).await?;
        b.wait_until_primary(std::time::Duration::from_secs(10))
            .await?;
        b.set_pipeline().await?;
        let t = Instant::now();
        let errors = b.set_desired(&flows, &groups);
        let map_secs = t.elapsed().as_secs_f64();
        unmapped = errors.len();
        unmapped_kinds.clear();
        for e in &errors {
            let k = match e {
                MapError::Width { source, .. } => format!("width: {}", source.what),
                other => format!("{other:?}")
                    .split([' ', '{'])
                    .next()
                    .unwrap_or("")
                    .to_string(),
            };
            *unmapped_kinds.entry(k).or_default() += 1;
        }
        let t = Instant::now();
        let r = b.sync().await?;
        let secs = t.elapsed().as_secs_f64();
        anyhow::ensure!(
            r.failures.is_empty(),
            "refused updates: {:?}",
            r.failures.len()
        );
        let t = Instant::now();
        let again = b.reconnect(&target.url()).await;
        drop(again);
        b.wait_until_primary(std::time::Duration::from_secs(10))
            .await?;
        let r2 = b.sync().await?;
        let resync_secs = t.elapsed().as_secs_f64();
        anyhow::ensure!(r2.updates() == 0, "resync wrote {}", r2.updates());
        results.push(serde_json::json!({
            "batch_size": batch,
            "updates": r.updates(),
            "write_requests": r.write_requests,
            "map_seconds": map_secs,
            "sync_seconds": secs,
            "entries_per_second": r.updates() as f64 / secs,
            "restart_read_diff_seconds": resync_secs,
        }));
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "tool": "wyvern-offload-p4rt sync_rate",
            "target": "FakeP4rtTarget (in-process, stores entries)",
            "ports": ports,
            "ir_flows": flows.len(),
            "flood_groups": groups.len(),
            "unmapped_flows": unmapped,
            "unmapped_by_reason": unmapped_kinds,
            "compile_seconds": compile_secs,
            "runs": results,
        }))?
    );
    Ok(())
}
