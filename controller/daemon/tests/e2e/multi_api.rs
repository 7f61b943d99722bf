//! Two wyvernd processes (two API servers) on one real etcd: concurrent port creates on the
//! same network through both never hand out an IP or a MAC twice, every request succeeds
//! (a lost race is re-validated, not answered 500), and each server sees the other's writes.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use wyvern_testkit::etcd::Etcd;
use wyvern_testkit::wyvernd::Wyvernd;

use crate::common::*;

fn on_etcd(etcd: &Etcd) -> Wyvernd {
    options()
        .etcd_store(etcd.endpoint())
        .arg("--metrics-listen")
        .arg("127.0.0.1:0")
        .start()
        .unwrap_or_else(|e| panic!("wyvernd on etcd starts: {e:#}\n{}", etcd.log_tail()))
}

/// Polls `probe` (an async check) until it holds, for at most 10 s.
async fn eventually<F, Fut>(what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !probe().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_api_servers_on_one_etcd_share_ipam() {
    let etcd = Etcd::start().expect("etcd starts");
    let wa = on_etcd(&etcd);
    let wb = on_etcd(&etcd);
    let (a, b) = (Api::of(&wa), Api::of(&wb));

    let net = a.network("shared").await;
    let path = format!("/v2.0/networks/{}", id(&net));
    eventually("B to see the network created through A", || async {
        b.get(&path).await.status.as_u16() == 200
    })
    .await;
    let sub = b.subnet(&net, "10.77.0.0/24").await;
    eventually("A to see the subnet created through B", || async {
        a.list("subnets", "").await.len() == 1
    })
    .await;

    const TASKS: usize = 8;
    const EACH: usize = 12;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let api = if t % 2 == 0 { a.clone() } else { b.clone() };
        let net = net.clone();
        tasks.push(tokio::spawn(async move {
            let mut got: Vec<Value> = Vec::new();
            for i in 0..EACH {
                got.push(api.port(&net, &format!("p{t}-{i}")).await);
            }
            got
        }));
    }
    let (mut seen_ips, mut seen_macs, mut ids) = (HashSet::new(), HashSet::new(), Vec::new());
    for t in tasks {
        for p in t.await.expect("create task") {
            for ip in ips(&p) {
                assert!(seen_ips.insert(ip.clone()), "IP {ip} handed out twice");
            }
            let mac = p["mac_address"].as_str().expect("mac").to_owned();
            assert!(seen_macs.insert(mac.clone()), "MAC {mac} handed out twice");
            assert_eq!(p["fixed_ips"][0]["subnet_id"], sub["id"]);
            ids.push(id(&p).to_owned());
        }
    }
    assert_eq!(seen_ips.len(), TASKS * EACH);

    // Both servers converge on the same set of ports.
    ids.sort();
    for (name, api) in [("A", &a), ("B", &b)] {
        eventually(
            &format!("{name} to list all {} ports", ids.len()),
            || async {
                let mut listed = crate::common::ids(&api.list("ports", "").await);
                listed.sort();
                listed == ids
            },
        )
        .await;
    }

    // A delete through one is seen by the other; its address is free again for both.
    let victim = ids[0].clone();
    a.delete(&format!("/v2.0/ports/{victim}")).await.ok(204);
    eventually("B to see the delete", || async {
        b.get(&format!("/v2.0/ports/{victim}"))
            .await
            .status
            .as_u16()
            == 404
    })
    .await;
}
