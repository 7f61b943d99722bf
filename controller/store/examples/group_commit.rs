//! Measures durable write throughput of `RedbStore` under concurrency (group commit), and the
//! cost of one fsync'd commit alone for comparison. Prints one JSON object per measurement.
//!
//! `cargo run --release -p wyvern-store --example group_commit -- [seconds] [clients] [dir] [fill]`
//!
//! With `fill` > 0 it then stores `fill` keys in total (~600-byte values), reports the process
//! RSS, and times a `range` over a prefix holding 10,000 of them.

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
    let fill: u64 = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(0);
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

    if fill > 0 {
        let have = lat.len() as u64;
        let todo = fill.saturating_sub(have);
        let per = todo.div_ceil(clients as u64);
        let t = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..clients as u64 {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                for i in c * per..((c + 1) * per).min(todo) {
                    // The first 10,000 go under their own prefix for the list measurement.
                    let kind = if i < 10_000 { "list10k" } else { "ports" };
                    let key = format!("/wyvern/v1/{kind}/{i:08}");
                    let value = Bytes::from(format!(
                        "{{\"id\":\"{key}\",\"pad\":\"{}\"}}",
                        "p".repeat(560)
                    ));
                    store.put(&key, value).await?;
                }
                Ok::<_, wyvern_store::StoreError>(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        let fill_s = t.elapsed().as_secs_f64();
        let mut list_ms = Vec::new();
        let mut count = 0;
        for _ in 0..5 {
            let t = Instant::now();
            let (kvs, _) = store.range("/wyvern/v1/list10k/").await?;
            list_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            count = kvs.len();
        }
        let rss_kb = std::fs::read_to_string("/proc/self/status")?
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0);
        // Bytes this process caused to be written to disk, per stored key.
        let write_bytes = std::fs::read_to_string("/proc/self/io")?
            .lines()
            .find_map(|l| l.strip_prefix("write_bytes:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let (all, _) = store.range("/wyvern/v1/").await?;
        println!(
            "{{\"measure\":\"fill\",\"keys\":{},\"fill_seconds\":{fill_s:.1},\"rss_mb\":{:.1},\"list_keys\":{count},\"list_ms\":{list_ms:?},\"disk_bytes_per_key\":{}}}",
            all.len(),
            rss_kb as f64 / 1024.0,
            write_bytes / (all.len() as u64).max(1)
        );
    }
    Ok(())
}
