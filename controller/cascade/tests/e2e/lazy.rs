//! The real `openstack` CLI against the top: a network reaches a pod only with a port placed
//! there, each bottom holds exactly what its ports need (same ids, IPs, MACs), the routings
//! are complete, and deleting at the top removes every bottom copy.

use std::path::Path;

use serde_json::Value;
use wyvern_testkit::openstack::{Os, OsAuth};

use crate::common::*;

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openstack_cli_creates_lazily_in_each_pod_and_deletes_everywhere() {
    let venv = Os::venv(Path::new(env!("CARGO_TARGET_TMPDIR")))
        .expect("the openstack CLI installs from PyPI");
    let sites = Sites::start().await.expect("two bottoms and a top start");
    let os = Os::new(
        &venv,
        OsAuth::None {
            endpoint: sites.top.api_url(),
        },
    );
    let (top, a, b) = (sites.top(), sites.bottom_a(), sites.bottom_b());

    let net = os.json(&["network", "create", "net1"]);
    let net_id = net["id"].as_str().expect("network id").to_owned();
    let sub = os.json(&[
        "subnet",
        "create",
        "sub1",
        "--network",
        "net1",
        "--subnet-range",
        "10.10.0.0/24",
    ]);
    let sub_id = sub["id"].as_str().expect("subnet id").to_owned();
    let router = os.json(&["router", "create", "r1"]);
    let router_id = router["id"].as_str().expect("router id").to_owned();
    os.run(&["router", "add", "subnet", "r1", "sub1"]);

    // Nothing is placed yet: the network lives only at the top.
    sites.settled().await.expect("jobs settle");
    for bottom in [&a, &b] {
        assert!(bottom.list("networks").await.unwrap().is_empty());
        assert!(bottom.list("routers").await.unwrap().is_empty());
    }
    assert!(sites.routings().await.unwrap().is_empty());

    let pa = os.json(&[
        "port",
        "create",
        "--network",
        "net1",
        "--host",
        "host1@RegionA",
        "pa",
    ]);
    let pb = os.json(&[
        "port",
        "create",
        "--network",
        "net1",
        "--host",
        "az-b",
        "pb",
    ]);
    let pu = os.json(&["port", "create", "--network", "net1", "pu"]);
    sites.settled().await.expect("jobs settle");

    let top_ports = top.list("ports").await.unwrap();
    let interface: Vec<Value> = top_ports
        .iter()
        .filter(|p| p["device_owner"] == "network:router_interface")
        .cloned()
        .collect();
    assert_eq!(interface.len(), 1, "one router interface at the top");
    let top_sub = top.get(&format!("/v2.0/subnets/{sub_id}")).await.unwrap()["subnet"].clone();
    for (bottom, placed, host) in [(&a, &pa, "host1"), (&b, &pb, "")] {
        let nets = bottom.list("networks").await.unwrap();
        assert_eq!(ids(&nets), vec![net_id.clone()], "the network, same id");
        let subs = bottom.list("subnets").await.unwrap();
        assert_eq!(ids(&subs), vec![sub_id.clone()]);
        for attr in ["cidr", "gateway_ip", "allocation_pools", "enable_dhcp"] {
            assert_eq!(subs[0][attr], top_sub[attr], "subnet {attr} agrees");
        }
        assert_eq!(
            ids(&bottom.list("routers").await.unwrap()),
            vec![router_id.clone()]
        );
        let ports = bottom.list("ports").await.unwrap();
        let want: Vec<Value> = top_ports
            .iter()
            .filter(|p| p["id"] == placed["id"] || p["device_owner"] == "network:router_interface")
            .cloned()
            .collect();
        assert_eq!(
            port_keys(&ports),
            port_keys(&want),
            "exactly its port and the router interface, same IPs and MACs"
        );
        let bp = ports.iter().find(|p| p["id"] == placed["id"]).unwrap();
        assert_eq!(bp["binding:host_id"], host);
        let bi = ports
            .iter()
            .find(|p| p["device_owner"] == "network:router_interface")
            .unwrap();
        assert_eq!(bi["device_id"], router_id.as_str());
        assert!(
            !ports.iter().any(|p| p["id"] == pu["id"]),
            "unplaced port stays at the top"
        );
    }

    // Routings: per pod network, subnet, router, interface port and its own port.
    let routings = sites.routings().await.unwrap();
    assert_eq!(routings.len(), 10, "{routings:#?}");
    for r in &routings {
        assert_eq!(r["top_id"], r["bottom_id"]);
    }
    for pod in [&sites.pod_a, &sites.pod_b] {
        let mut types: Vec<String> = routings
            .iter()
            .filter(|r| r["pod_id"] == pod.as_str())
            .map(|r| r["resource_type"].as_str().unwrap().to_owned())
            .collect();
        types.sort();
        assert_eq!(types, vec!["network", "port", "port", "router", "subnet"]);
    }

    // An update at the top reaches the pod holding the copy.
    os.run(&["port", "set", "--name", "pa-renamed", "pa"]);
    eventually("the rename to reach pod A", LONG, || async {
        let p = a.get(&format!("/v2.0/ports/{}", id(&pa))).await.ok()?;
        (p["port"]["name"] == "pa-renamed").then_some(())
    })
    .await
    .unwrap();

    // Delete everything at the top: every bottom copy goes.
    os.run(&["port", "delete", "pa-renamed", "pb", "pu"]);
    os.run(&["router", "remove", "subnet", "r1", "sub1"]);
    os.run(&["router", "delete", "r1"]);
    os.run(&["subnet", "delete", "sub1"]);
    os.run(&["network", "delete", "net1"]);
    sites.settled().await.expect("jobs settle");
    for bottom in [&a, &b] {
        for coll in ["ports", "subnets", "networks", "routers"] {
            assert_eq!(
                bottom.list(coll).await.unwrap(),
                Vec::<Value>::new(),
                "{coll} left in a bottom"
            );
        }
    }
    assert!(sites.routings().await.unwrap().is_empty());
    let done = sorted(
        sites
            .jobs("?status=Success")
            .await
            .unwrap()
            .iter()
            .map(|j| j["type"].as_str().unwrap().to_owned())
            .collect(),
    );
    assert!(done.contains(&"port_sync".to_owned()), "{done:?}");
}
