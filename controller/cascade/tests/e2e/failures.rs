//! Failures: a bottom down (its jobs retry and wait, the other pod proceeds, nothing is
//! duplicated once it is back) and the top killed in the middle of a burst of creates.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::*;

async fn net_and_subnet(top: &Api, cidr: &str) -> (Value, Value) {
    let net = top.create("network", json!({"name": "n"})).await.unwrap();
    let sub = top
        .create(
            "subnet",
            json!({"network_id": id(&net), "cidr": cidr, "ip_version": 4}),
        )
        .await
        .unwrap();
    (net, sub)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_down_keeps_its_jobs_pending_while_the_other_pod_proceeds() {
    let mut sites = Sites::start().await.expect("sites start");
    let (top, a) = (sites.top(), sites.bottom_a());
    let (net, _) = net_and_subnet(&top, "10.20.0.0/24").await;
    let port = |name: &str, host: &str| json!({"network_id": id(&net), "name": name, "binding:host_id": host});
    top.create("port", port("a1", "RegionA")).await.unwrap();
    sites.settled().await.unwrap();

    sites.b.kill().unwrap();
    let b1 = top.create("port", port("b1", "h@RegionB")).await.unwrap();
    let b2 = top.create("port", port("b2", "h@RegionB")).await.unwrap();
    let a2 = top.create("port", port("a2", "RegionA")).await.unwrap();

    // Pod A does not wait for pod B.
    eventually("a2 in pod A", LONG, || async {
        a.get(&format!("/v2.0/ports/{}", id(&a2))).await.ok()
    })
    .await
    .unwrap();
    // Pod B's jobs are retried and stay pending.
    let pod_b = sites.pod_b.clone();
    eventually("pod B's jobs to be retried", LONG, || async {
        let jobs = sites.jobs(&format!("?pod_id={pod_b}")).await.ok()?;
        jobs.iter()
            .any(|j| j["status"] == "New" && j["attempts"].as_u64().unwrap_or(0) >= 2)
            .then_some(())
    })
    .await
    .unwrap();
    eventually("pod B reported down", LONG, || async {
        let m = sites.metrics().await.ok()?;
        m.contains("wyvern_cascade_pod_up{region=\"RegionB\"} 0")
            .then_some(m)
    })
    .await
    .and_then(|m| {
        anyhow::ensure!(
            m.contains("wyvern_cascade_job_retries_total{type="),
            "no retries counted: {m}"
        );
        anyhow::ensure!(
            m.contains("wyvern_cascade_jobs{status=\"new\""),
            "no pending jobs shown: {m}"
        );
        Ok(())
    })
    .unwrap();
    // An update while the pod is down.
    top.expect(
        Method::PUT,
        &format!("/v2.0/ports/{}", id(&b1)),
        Some(json!({"port": {"name": "b1-renamed"}})),
        200,
    )
    .await
    .unwrap();
    let pending = sites
        .jobs(&format!("?pod_id={pod_b}&status=New"))
        .await
        .unwrap();
    assert!(!pending.is_empty(), "pod B's jobs wait");
    assert!(
        sites.jobs("?status=Fail").await.unwrap().is_empty(),
        "nothing failed"
    );

    // Back (on a new port, as a moved site would be): the jobs finish.
    sites.b.restart().unwrap();
    let url = sites.b.url();
    sites.set_pod_url(&sites.pod_b, &url).await.unwrap();
    sites.settled().await.unwrap();
    let b = sites.bottom_b();
    assert_eq!(
        b.list("networks").await.unwrap().len(),
        1,
        "one network copy"
    );
    assert_eq!(b.list("subnets").await.unwrap().len(), 1, "one subnet copy");
    let ports = b.list("ports").await.unwrap();
    let top_ports = top.list("ports").await.unwrap();
    let want: Vec<Value> = top_ports
        .iter()
        .filter(|p| p["id"] == b1["id"] || p["id"] == b2["id"])
        .cloned()
        .collect();
    assert_eq!(port_keys(&ports), port_keys(&want), "b1 and b2 once each");
    let renamed = ports.iter().find(|p| p["id"] == b1["id"]).unwrap();
    assert_eq!(
        renamed["name"], "b1-renamed",
        "the update made while down arrived"
    );
    assert_eq!(
        ids(&a.list("ports").await.unwrap()).len(),
        2,
        "pod A holds a1 and a2 only"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_killed_mid_burst_every_acknowledged_port_reaches_its_pod_once() {
    let mut sites = Sites::start().await.expect("sites start");
    let top = sites.top();
    let (net, _) = net_and_subnet(&top, "10.30.0.0/22").await;
    let acked = Arc::new(std::sync::Mutex::new(Vec::<(String, usize)>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let interrupted = Arc::new(AtomicUsize::new(0));
    // Eight clients create ports back to back until the top dies under them.
    let mut tasks = Vec::new();
    for w in 0..8usize {
        let (top, acked, count, interrupted) = (
            top.clone(),
            acked.clone(),
            count.clone(),
            interrupted.clone(),
        );
        let net = id(&net);
        tasks.push(tokio::spawn(async move {
            for i in 0..1000usize {
                let which = (w + i) % 2;
                let host = if which == 0 { "RegionA" } else { "RegionB" };
                let body = json!({"port": {"network_id": net, "name": format!("p{w}-{i}"), "binding:host_id": host}});
                match top.call(Method::POST, "/v2.0/ports", Some(body)).await {
                    Ok((201, v)) => {
                        acked.lock().unwrap().push((id(&v["port"]), which));
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    _ => {
                        interrupted.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                }
            }
        }));
    }
    const KILL_AT: usize = 150;
    eventually("the burst to be under way", LONG, || async {
        (count.load(Ordering::SeqCst) >= KILL_AT).then_some(())
    })
    .await
    .unwrap();
    sites.top.kill().unwrap();
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= KILL_AT);
    assert_eq!(
        interrupted.load(Ordering::SeqCst),
        8,
        "the kill interrupted every client"
    );

    sites.top.restart().unwrap();
    let top = sites.top();
    sites.settled().await.unwrap();
    let top_ports = top.list("ports").await.unwrap();
    for (pid, _) in &acked {
        assert!(
            top_ports.iter().any(|p| id(p) == *pid),
            "acknowledged port {pid} is durable"
        );
    }
    for (bottom, which, region) in [
        (sites.bottom_a(), 0, "RegionA"),
        (sites.bottom_b(), 1, "RegionB"),
    ] {
        let ports = bottom.list("ports").await.unwrap();
        let want: Vec<Value> = top_ports
            .iter()
            .filter(|p| p["binding:host_id"] == region)
            .cloned()
            .collect();
        assert_eq!(
            port_keys(&ports),
            port_keys(&want),
            "{region} holds each placed port once"
        );
        for (pid, w) in &acked {
            if *w == which {
                assert!(
                    ports.iter().any(|p| id(p) == *pid),
                    "{pid} reached {region}"
                );
            }
        }
        assert_eq!(bottom.list("networks").await.unwrap().len(), 1);
        assert_eq!(bottom.list("subnets").await.unwrap().len(), 1);
    }
}
