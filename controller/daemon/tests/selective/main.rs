//! Selective sync proven by counts: a real wyvernd on a real etcd (as a chassis, so it
//! syncs selectively by default) with a private OVS (dummy datapath). The store holds 20
//! networks, each with a subnet and a VM port, and a router joining networks 1 and 2; the
//! host binds a port on network 1 only (a real OVS interface with `external_ids:iface-id`).
//! Its `/metrics` must show networks 1 and 2, their subnets and ports, the router, and
//! nothing of networks 3..20; binding a port on network 5 adds network 5, unbinding it drops
//! it again.

#[allow(dead_code)]
#[path = "../metrics/common.rs"]
mod common;
#[allow(dead_code)]
#[path = "../vms/lab.rs"]
mod lab;

use std::net::SocketAddr;

use anyhow::Context;
use serde_json::json;
use wyvern_testkit::etcd::Etcd;
use wyvern_testkit::ovs::OvsSandbox;
use wyvern_testkit::poll::wait_for;
use wyvern_testkit::wyvernd::{Wyvernd, WyverndOptions};

use common::{http_get, sample, BRIDGE, DEADLINE, WYVERN, WYVERND};
use lab::{id, Api};

/// What the host holds, from one scrape: (networks, subnets, ports, routers, partitions,
/// watches).
type Counts = (i64, i64, i64, i64, i64, i64);

fn counts(metrics: SocketAddr) -> anyhow::Result<Counts> {
    let (status, text) = http_get(metrics, "/metrics")?;
    anyhow::ensure!(status == 200, "GET /metrics: HTTP {status}");
    let get = |series: &str| {
        sample(&text, series)
            .map(|v| v as i64)
            .with_context(|| format!("no {series} in the scrape"))
    };
    Ok((
        get("wyvern_sync_objects_held{kind=\"network\"}")?,
        get("wyvern_sync_objects_held{kind=\"subnet\"}")?,
        get("wyvern_sync_objects_held{kind=\"port\"}")?,
        get("wyvern_sync_objects_held{kind=\"router\"}")?,
        get("wyvern_sync_partitions")?,
        get("wyvern_sync_watches")?,
    ))
}

/// Polls /metrics until the counts are `want`.
fn wait_counts(metrics: SocketAddr, want: Counts, what: &str, w: &Wyvernd) -> anyhow::Result<()> {
    let mut last = None;
    wait_for(what, DEADLINE, || {
        let c = counts(metrics).ok()?;
        last = Some(c);
        (c == want).then_some(())
    })
    .with_context(|| {
        format!(
            "last counts (networks, subnets, ports, routers, partitions, watches): {last:?}, want {want:?}\n{}",
            w.log_tail()
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_holds_only_the_networks_its_ports_reach() -> anyhow::Result<()> {
    let etcd = Etcd::start()?;
    let ovs = OvsSandbox::dummy()?;
    let wyvernd = WyverndOptions::new(WYVERND)
        .etcd_store(etcd.endpoint())
        .arg("--metrics-listen")
        .arg("127.0.0.1:0")
        .switch(&ovs, BRIDGE, "wyvernd-of.sock")
        .arg("--chassis-name")
        .arg("host1")
        .start()?;
    let metrics = wyvernd.metrics_addr(DEADLINE)?;
    let api = Api::new(wyvernd.url());

    // 20 networks with a subnet and a VM port each; a router joins networks 1 and 2.
    let mut nets = Vec::new();
    for i in 1..=20 {
        let n = id(&api
            .create("network", json!({"name": format!("net{i}")}))
            .await?);
        let s = id(&api
            .create(
                "subnet",
                json!({"network_id": n, "cidr": format!("10.0.{i}.0/24"), "ip_version": 4}),
            )
            .await?);
        let p = id(&api
            .create("port", json!({"network_id": n, "name": format!("vm{i}")}))
            .await?);
        nets.push((n, s, p));
    }
    let router = id(&api.create("router", json!({"name": "r1"})).await?);
    for (_, s, _) in &nets[..2] {
        api.put(
            &format!("/v2.0/routers/{router}/add_router_interface"),
            json!({"subnet_id": s}),
        )
        .await?;
    }
    // Nothing bound yet: only the global watches, nothing held.
    wait_counts(
        metrics,
        (0, 0, 0, 0, 0, 3),
        "an empty held topology",
        &wyvernd,
    )?;

    // A port on network 1: networks 1 and 2 (through the router), their subnets, a VM port
    // each plus the router's two interfaces, the router; 3 global watches + 2 partitions.
    ovs.add_dummy_port(BRIDGE, "vm1", Some(&nets[0].2))?;
    wait_counts(
        metrics,
        (2, 2, 4, 1, 2, 5),
        "networks 1 and 2 held",
        &wyvernd,
    )?;
    let port = api.get(&format!("/v2.0/ports/{}", nets[0].2)).await?;
    assert_eq!(port["port"]["binding:host_id"], json!("host1"));
    // Everything is in the store, of course (20 networks, 20 subnets, 22 ports).
    let (status, text) = http_get(metrics, "/metrics")?;
    assert_eq!(status, 200);
    assert_eq!(sample(&text, "wyvern_sync_selective"), Some(1.0));
    assert_eq!(
        sample(&text, "wyvern_store_keys{kind=\"network\"}"),
        Some(20.0)
    );
    assert_eq!(
        sample(&text, "wyvern_store_keys{kind=\"port\"}"),
        Some(22.0)
    );
    // The flows name only held networks: none of network 3's port MAC, say.
    let net3_port = api.get(&format!("/v2.0/ports/{}", nets[2].2)).await?;
    let mac3 = net3_port["port"]["mac_address"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let net2_port = api.get(&format!("/v2.0/ports/{}", nets[1].2)).await?;
    let mac2 = net2_port["port"]["mac_address"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let flows = ovs.dump_flows(BRIDGE)?.join("\n");
    assert!(
        flows.contains(&mac2),
        "network 2's port (through the router) has flows"
    );
    assert!(
        !flows.contains(&mac3),
        "network 3's port has flows on this host"
    );

    // A port on network 5 binds: network 5 is held too.
    ovs.add_dummy_port(BRIDGE, "vm5", Some(&nets[4].2))?;
    wait_counts(metrics, (3, 3, 5, 1, 3, 6), "network 5 held", &wyvernd)?;
    // ... and unbinds: network 5 is dropped again.
    ovs.vsctl(&["del-port", BRIDGE, "vm5"])?;
    wait_counts(metrics, (2, 2, 4, 1, 2, 5), "network 5 dropped", &wyvernd)?;

    // `wyvern status` shows the same.
    let out = std::process::Command::new(WYVERN)
        .args([
            "status",
            "--metrics-url",
            &format!("http://{metrics}/metrics"),
        ])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("sync       selective, held: network 2, port 4, router 1, subnet 2; 5 watches, 2 network partitions"),
        "wyvern status: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
