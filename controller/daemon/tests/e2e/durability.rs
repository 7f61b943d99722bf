//! Persistence across a graceful restart, and the crash test: SIGKILL in the middle of a
//! concurrent write load loses no acknowledged write and leaves nothing half-written.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use wyvern_testkit::poll::wait_until;

use crate::common::*;

/// Every object of every kind, sorted by id, for before/after comparisons.
async fn snapshot(api: &Api) -> Vec<(String, Vec<Value>)> {
    let mut out = Vec::new();
    for plural in ["networks", "subnets", "ports", "routers"] {
        let mut items = api.list(plural, "").await;
        items.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        out.push((plural.to_owned(), items));
    }
    out
}

#[tokio::test]
async fn topology_survives_a_graceful_restart() {
    let mut w = start();
    let api = Api::of(&w);
    let n1 = api.network("n1").await;
    let n2 = api.network("n2").await;
    let s1 = api.subnet(&n1, "10.10.1.0/24").await;
    let s2 = api.subnet(&n2, "10.10.2.0/24").await;
    api.port(&n1, "a").await;
    api.port(&n2, "b").await;
    let r = api.create("router", json!({"name": "r"})).await;
    for s in [&s1, &s2] {
        api.put(
            &format!("/v2.0/routers/{}/add_router_interface", id(&r)),
            json!({"subnet_id": id(s)}),
        )
        .await
        .ok(200);
    }
    api.put(
        &format!("/v2.0/routers/{}", id(&r)),
        json!({"router": {"routes": [{"destination": "10.20.0.0/16", "nexthop": "10.10.1.99"}]}}),
    )
    .await
    .ok(200);
    let before = snapshot(&api).await;

    let status = w.stop().unwrap();
    assert!(
        status.success(),
        "SIGTERM must end wyvernd with 0, got {status}"
    );
    let log = std::fs::read_to_string(w.log_path()).unwrap();
    assert!(log.contains("shut down"), "no shutdown in the log:\n{log}");

    w.restart().unwrap();
    let api = Api::of(&w);
    assert_eq!(snapshot(&api).await, before);
    // Allocation state came back too: the next port does not reuse a taken IP or MAC.
    let c = api.port(&n1, "c").await;
    let taken: HashSet<String> = before[2].1.iter().flat_map(ips).collect();
    assert!(!taken.contains(&ips(&c)[0]), "{c}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_write_load_loses_no_acknowledged_write() {
    let mut w = start();
    let api = Api::of(&w);
    let net = api.network("load").await;
    let sub = api
        .create(
            "subnet",
            json!({"network_id": id(&net), "ip_version": 4, "cidr": "10.128.0.0/16", "name": "load"}),
        )
        .await;

    // 16 writers create ports until the daemon dies; each keeps what was acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let acked_count = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for t in 0..16 {
        let api = api.clone();
        let (stop, acked_count) = (stop.clone(), acked_count.clone());
        let net_id = id(&net).to_owned();
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..100_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let body = json!({"port": {"network_id": net_id, "name": format!("w{t}-{i}")}});
                let resp = api
                    .http
                    .post(format!("{}/v2.0/ports", api.base))
                    .json(&body)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                let Ok(resp) = resp else { break };
                if resp.status() != 201 {
                    break;
                }
                // A 201 whose body never arrived is not an acknowledgement we can check.
                let Ok(v) = resp.json::<Value>().await else {
                    break;
                };
                acked.push(v["port"].clone());
                acked_count.fetch_add(1, Ordering::Relaxed);
            }
            acked
        }));
    }
    // Kill mid-load: once a good number of writes were acknowledged.
    let counter = acked_count.clone();
    tokio::task::spawn_blocking(move || {
        wait_until(
            "500 acknowledged port creates",
            Duration::from_secs(60),
            || counter.load(Ordering::Relaxed) >= 500,
        )
    })
    .await
    .unwrap()
    .unwrap();
    w.kill().unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for h in writers {
        acked.extend(h.await.unwrap());
    }
    assert!(acked.len() >= 500);

    w.restart().unwrap();
    let api = Api::of(&w);
    let nets = api.list("networks", "").await;
    let subs = api.list("subnets", "").await;
    let ports = api.list("ports", "").await;
    assert_eq!(ids(&nets), vec![id(&net).to_owned()]);
    assert_eq!(ids(&subs), vec![id(&sub).to_owned()]);

    // Every acknowledged create is there, byte for byte.
    let stored: HashMap<&str, &Value> = ports.iter().map(|p| (id(p), p)).collect();
    for a in &acked {
        match stored.get(id(a)) {
            Some(p) => assert_eq!(*p, a, "port changed across the crash"),
            None => panic!(
                "acknowledged port {} lost ({} acknowledged, {} stored)",
                id(a),
                acked.len(),
                ports.len()
            ),
        }
    }
    // Nothing half-written: every port is whole and consistent with the others.
    let mut seen_ips = HashSet::new();
    let mut seen_macs = HashSet::new();
    for p in &ports {
        assert_eq!(p["network_id"], json!(id(&net)), "{p}");
        let fixed = p["fixed_ips"].as_array().expect("fixed_ips");
        assert_eq!(fixed.len(), 1, "{p}");
        assert_eq!(fixed[0]["subnet_id"], json!(id(&sub)), "{p}");
        let ip = fixed[0]["ip_address"].as_str().unwrap();
        assert!(ip.starts_with("10.128."), "{p}");
        assert!(seen_ips.insert(ip.to_owned()), "IP {ip} allocated twice");
        assert!(
            seen_macs.insert(p["mac_address"].as_str().unwrap().to_owned()),
            "MAC reused: {p}"
        );
        assert!(
            p["name"].as_str().is_some_and(|n| n.starts_with('w')),
            "{p}"
        );
    }
    // And the daemon goes on: new writes after the crash are accepted and do not collide.
    let fresh = api.port(&net, "after-crash").await;
    assert!(!seen_ips.contains(&ips(&fresh)[0]));
}
