//! Measures durable write throughput of `RedbStore` under concurrency (group commit), and the
//! cost of one fsync'd commit alone for comparison. Prints one JSON object per measurement.
//!
//! `cargo run --release -p wyvern-store --example group_commit -- [seconds] [clients] [dir]`

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use wyvern_store::{RedbOptions, RedbStore, Store};

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx].as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let secs: f64 = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(3.0);
    let clients: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(64);
    let dir = match args.get(3) {
        Some(d) => PathBuf::from(d),
        None => std::env::temp_dir(),
    };
    let tmp = tempfile::tempdir_in(&dir)?;

    // 1. fsync alone: raw write + fdatasync of 4 KiB, then one-at-a-time redb commits.
    {
        let path = tmp.path().join("raw");
        let mut f = std::fs::File::create(&path)?;
        let buf = vec![7u8; 4096];
        let n = 200;
        let t = Instant::now();
        for _ in 0..n {
            f.write_all(&buf)?;
            f.sync_data()?;
        }
        let per = t.elapsed().as_secs_f64() * 1000.0 / n as f64;
        println!("{{\"measure\":\"fdatasync_4k\",\"ms_per_op\":{per:.3}}}");
    }
    {
        let store = RedbStore::open(&tmp.path().join("serial.redb"), RedbOptions::default())?;
        let value = Bytes::from(vec![b'x'; 600]);
        let n = 200;
        let t = Instant::now();
        for i in 0..n {
            store
                .put(&format!("/bench/serial/{i}"), value.clone())
                .await?;
        }
        let per = t.elapsed().as_secs_f64() * 1000.0 / n as f64;
        println!(
            "{{\"measure\":\"redb_serial_commit\",\"ms_per_txn\":{per:.3},\"txns_per_s\":{:.0}}}",
            1000.0 / per
        );
    }

    // 2. Group commit: `clients` tasks putting ~600-byte values under distinct keys.
    let store = RedbStore::open(&tmp.path().join("group.redb"), RedbOptions::default())?;
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let key = format!("/wyvern/v1/ports/{c:04}-{i:08}");
                let value = Bytes::from(format!(
                    "{{\"id\":\"{key}\",\"pad\":\"{}\"}}",
                    "p".repeat(560)
                ));
                let t = Instant::now();
                store.put(&key, value).await?;
                lat.push(t.elapsed());
                i += 1;
            }
            Ok::<_, wyvern_store::StoreError>(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort();
    println!(
        "{{\"measure\":\"group_commit\",\"clients\":{clients},\"txns\":{},\"seconds\":{elapsed:.2},\"txns_per_s\":{:.0},\"p50_ms\":{:.2},\"p99_ms\":{:.2},\"max_ms\":{:.2},\"revision\":{}}}",
        lat.len(),
        lat.len() as f64 / elapsed,
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0),
        store.revision().await?,
    );
    Ok(())
}
