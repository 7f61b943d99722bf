//! The consistent cut: one read of wyvernd's `GET /v2.0/wyvern/topology` is a state the store
//! held, even while writes race it.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use common::*;
use serde_json::json;
use wyvern_checkpoint::graph::{CutMethod, Snapshot};
use wyvern_checkpoint::neutron::NeutronClient;

/// Every reference in `s` resolves inside `s`: a port's network and its fixed IPs' subnets,
/// a subnet's network. A cut mixing two states (ports read after a create, subnets before
/// it; or ports before a delete, subnets after it) breaks this.
fn dangling(s: &Snapshot) -> Vec<String> {
    let mut bad = Vec::new();
    for sub in s.subnets.values() {
        if !s.networks.contains_key(&sub.network_id) {
            bad.push(format!(
                "subnet {} without network {}",
                sub.id, sub.network_id
            ));
        }
    }
    for p in s.ports.values() {
        if !s.networks.contains_key(&p.network_id) {
            bad.push(format!("port {} without network {}", p.id, p.network_id));
        }
        for ip in &p.fixed_ips {
            if !s.subnets.contains_key(&ip.subnet_id) {
                bad.push(format!("port {} without subnet {}", p.id, ip.subnet_id));
            }
        }
    }
    bad
}

/// One round of the racing writer: network, subnet, port created, then the previous
/// round's port, subnet and network deleted, each a separate write.
async fn churn(c: &NeutronClient, stop: &AtomicBool, rounds: &AtomicU64) -> anyhow::Result<()> {
    let mut prev: Option<(String, String, String)> = None;
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let net = c
            .create("networks", "network", json!({"name": format!("churn-{i}")}))
            .await?;
        let net = net["id"].as_str().unwrap_or_default().to_string();
        let sub = c
            .create(
                "subnets",
                "subnet",
                json!({"network_id": net, "ip_version": 4, "cidr": format!("10.{}.{}.0/24", 100 + i % 100, i % 250)}),
            )
            .await?;
        let sub = sub["id"].as_str().unwrap_or_default().to_string();
        let port = c
            .create(
                "ports",
                "port",
                json!({"network_id": net, "fixed_ips": [{"subnet_id": sub}]}),
            )
            .await?;
        let port = port["id"].as_str().unwrap_or_default().to_string();
        if let Some((n, s, p)) = prev.replace((net, sub, port)) {
            c.delete("ports", &p).await?;
            c.delete("subnets", &s).await?;
            c.delete("networks", &n).await?;
        }
        i += 1;
        rounds.store(i, Ordering::Relaxed);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_read_cut_is_never_mixed_while_writes_race() {
    let w = start_wyvernd();
    let c = client(&w);
    build_topology(&c).await.unwrap();

    // Quiet: the one-read cut equals the four Neutron lists, object for object.
    let s = Snapshot::read(&c).await.unwrap();
    assert_eq!(s.method, CutMethod::StoreRevision);
    assert_eq!(s.reads, 1);
    let d = Snapshot::read_double(&c).await.unwrap();
    assert_eq!(d.method, CutMethod::DoubleRead);
    assert_eq!(
        serde_json::to_value(s.ports.values().collect::<Vec<_>>()).unwrap(),
        serde_json::to_value(d.ports.values().collect::<Vec<_>>()).unwrap()
    );
    assert_eq!(
        (
            s.networks.keys().collect::<Vec<_>>(),
            s.subnets.keys().collect::<Vec<_>>(),
            s.routers.keys().collect::<Vec<_>>()
        ),
        (
            d.networks.keys().collect::<Vec<_>>(),
            d.subnets.keys().collect::<Vec<_>>(),
            d.routers.keys().collect::<Vec<_>>()
        )
    );
    let quiet_rev = s.store_revision.unwrap();

    // The answer names its revision in a header too, and a write moves it.
    let http = reqwest::Client::new();
    let get = || http.get(format!("{}/v2.0/wyvern/topology", w.url())).send();
    let r = get().await.unwrap();
    assert_eq!(r.status(), 200);
    let header: u64 = r.headers()["x-wyvern-revision"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["topology"]["revision"], header);
    assert_eq!(header, quiet_rev);
    let r = http
        .post(format!("{}/v2.0/wyvern/topology", w.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);

    // Racing: a writer churns networks/subnets/ports while cuts are taken.
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let writer = {
        let (c, stop, rounds) = (c.clone(), stop.clone(), rounds.clone());
        tokio::spawn(async move { churn(&c, &stop, &rounds).await })
    };
    let mut revisions = BTreeSet::new();
    let mut last = quiet_rev;
    let mut cuts = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while (revisions.len() < 20 || rounds.load(Ordering::Relaxed) < 5)
        && std::time::Instant::now() < deadline
    {
        let s = Snapshot::read(&c).await.unwrap();
        cuts += 1;
        let rev = s.store_revision.unwrap();
        assert!(rev >= last, "revision went back: {last} -> {rev}");
        last = rev;
        revisions.insert(rev);
        let bad = dangling(&s);
        assert!(bad.is_empty(), "mixed cut at revision {rev}: {bad:?}");
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap().unwrap();
    // The race really happened: the writer made progress and the cuts saw many states.
    assert!(
        revisions.len() >= 20 && rounds.load(Ordering::Relaxed) >= 5,
        "{cuts} cuts saw {} revisions over {} writer rounds",
        revisions.len(),
        rounds.load(Ordering::Relaxed)
    );
}
