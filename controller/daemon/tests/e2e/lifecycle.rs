//! The whole life of a topology through the real daemon's Neutron API.

use serde_json::{json, Value};

use crate::common::*;

#[tokio::test]
async fn version_documents_answer_at_root_and_v2() {
    let w = start();
    let api = Api::of(&w);
    let root = api.get("/").await.ok(200);
    let versions = root["versions"].as_array().expect("versions list");
    assert!(
        versions
            .iter()
            .any(|v| v["id"] == json!("v2.0") && v["status"] == json!("CURRENT")),
        "{root}"
    );
    let v2 = api.get("/v2.0/").await.ok(200);
    let names: Vec<&str> = v2["resources"]
        .as_array()
        .expect("resources list")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    for n in ["network", "subnet", "port", "router"] {
        assert!(names.contains(&n), "{n} missing from {v2}");
    }
}

#[tokio::test]
async fn full_lifecycle_networks_subnets_ports_routers() {
    let w = start();
    let api = Api::of(&w);

    // Networks: create, show, update, list.
    let net1 = api.network("net1").await;
    let net2 = api.network("net2").await;
    assert_eq!(net1["status"], json!("ACTIVE"));
    assert_eq!(net1["admin_state_up"], json!(true));
    let shown = api
        .get(&format!("/v2.0/networks/{}", id(&net1)))
        .await
        .ok(200);
    assert_eq!(shown["network"]["name"], json!("net1"));
    let renamed = api
        .put(
            &format!("/v2.0/networks/{}", id(&net1)),
            json!({"network": {"name": "net1b"}}),
        )
        .await
        .ok(200);
    assert_eq!(renamed["network"]["name"], json!("net1b"));
    assert_eq!(api.list("networks", "").await.len(), 2);

    // Subnets with pools, DNS and host routes.
    let sub1 = api
        .create(
            "subnet",
            json!({
                "network_id": id(&net1), "ip_version": 4, "cidr": "10.0.1.0/24", "name": "sub1",
                "gateway_ip": "10.0.1.1",
                "allocation_pools": [{"start": "10.0.1.10", "end": "10.0.1.100"}],
                "dns_nameservers": ["10.0.0.53"],
                "host_routes": [{"destination": "192.168.0.0/16", "nexthop": "10.0.1.254"}],
            }),
        )
        .await;
    assert_eq!(sub1["gateway_ip"], json!("10.0.1.1"));
    assert_eq!(
        sub1["allocation_pools"],
        json!([{"start": "10.0.1.10", "end": "10.0.1.100"}])
    );
    assert_eq!(sub1["dns_nameservers"], json!(["10.0.0.53"]));
    assert_eq!(sub1["enable_dhcp"], json!(true));
    let sub2 = api.subnet(&net2, "10.0.2.0/24").await;
    assert_eq!(sub2["gateway_ip"], json!("10.0.2.1"));
    let net1_now = api
        .get(&format!("/v2.0/networks/{}", id(&net1)))
        .await
        .ok(200);
    assert_eq!(net1_now["network"]["subnets"], json!([id(&sub1)]));

    // Ports: allocated from the pool, requested IP, requested MAC.
    let p1 = api.port(&net1, "p1").await;
    let p1_ip: std::net::Ipv4Addr = ips(&p1)[0].parse().unwrap();
    assert!(
        (std::net::Ipv4Addr::new(10, 0, 1, 10)..=std::net::Ipv4Addr::new(10, 0, 1, 100))
            .contains(&p1_ip),
        "{p1_ip} outside the pool"
    );
    assert!(
        p1["mac_address"].as_str().unwrap().starts_with("fa:16:3e:"),
        "{p1}"
    );
    let p2 = api
        .create(
            "port",
            json!({"network_id": id(&net1), "name": "p2", "mac_address": "fa:16:3e:12:34:56",
                   "fixed_ips": [{"subnet_id": id(&sub1), "ip_address": "10.0.1.50"}]}),
        )
        .await;
    assert_eq!(ips(&p2), vec!["10.0.1.50"]);
    assert_eq!(p2["mac_address"], json!("fa:16:3e:12:34:56"));
    let p2b = api
        .put(
            &format!("/v2.0/ports/{}", id(&p2)),
            json!({"port": {"device_id": "vm-2", "device_owner": "compute:nova"}}),
        )
        .await
        .ok(200);
    assert_eq!(p2b["port"]["device_id"], json!("vm-2"));

    // A router joining both networks: by subnet, and by port.
    let r = api.create("router", json!({"name": "r1"})).await;
    let rid = id(&r).to_owned();
    let iface1 = api
        .put(
            &format!("/v2.0/routers/{rid}/add_router_interface"),
            json!({"subnet_id": id(&sub1)}),
        )
        .await
        .ok(200);
    assert_eq!(iface1["subnet_id"], json!(id(&sub1)));
    let rport1 = api
        .get(&format!(
            "/v2.0/ports/{}",
            iface1["port_id"].as_str().unwrap()
        ))
        .await
        .ok(200)["port"]
        .clone();
    assert_eq!(
        ips(&rport1),
        vec!["10.0.1.1"],
        "the router takes the gateway IP"
    );
    assert_eq!(rport1["device_id"], json!(rid));
    assert_eq!(rport1["device_owner"], json!("network:router_interface"));

    let gw2 = api
        .create(
            "port",
            json!({"network_id": id(&net2), "name": "r1-net2",
                   "fixed_ips": [{"subnet_id": id(&sub2), "ip_address": "10.0.2.254"}]}),
        )
        .await;
    let iface2 = api
        .put(
            &format!("/v2.0/routers/{rid}/add_router_interface"),
            json!({"port_id": id(&gw2)}),
        )
        .await
        .ok(200);
    assert_eq!(iface2["port_id"], json!(id(&gw2)));
    let router_ports = api.list("ports", &format!("device_id={rid}")).await;
    assert_eq!(router_ports.len(), 2);

    // Static routes through an attached subnet.
    let routed = api
        .put(
            &format!("/v2.0/routers/{rid}"),
            json!({"router": {"routes": [{"destination": "172.16.0.0/16", "nexthop": "10.0.1.50"}]}}),
        )
        .await
        .ok(200);
    assert_eq!(
        routed["router"]["routes"],
        json!([{"destination": "172.16.0.0/16", "nexthop": "10.0.1.50"}])
    );
    let shown = api.get(&format!("/v2.0/routers/{rid}")).await.ok(200);
    assert_eq!(shown["router"]["routes"], routed["router"]["routes"]);

    // Deletes in dependency order, each gone afterwards.
    api.put(
        &format!("/v2.0/routers/{rid}"),
        json!({"router": {"routes": []}}),
    )
    .await
    .ok(200);
    api.put(
        &format!("/v2.0/routers/{rid}/remove_router_interface"),
        json!({"subnet_id": id(&sub1)}),
    )
    .await
    .ok(200);
    api.get(&format!("/v2.0/ports/{}", rport1["id"].as_str().unwrap()))
        .await
        .err(404, "PortNotFound");
    api.put(
        &format!("/v2.0/routers/{rid}/remove_router_interface"),
        json!({"port_id": id(&gw2)}),
    )
    .await
    .ok(200);
    // As in Neutron, removing an interface by port deletes that port.
    api.get(&format!("/v2.0/ports/{}", id(&gw2)))
        .await
        .err(404, "PortNotFound");
    api.delete(&format!("/v2.0/routers/{rid}")).await.ok(204);
    for p in [&p1, &p2] {
        api.delete(&format!("/v2.0/ports/{}", id(p))).await.ok(204);
    }
    for s in [&sub1, &sub2] {
        api.delete(&format!("/v2.0/subnets/{}", id(s)))
            .await
            .ok(204);
    }
    for n in [&net1, &net2] {
        api.delete(&format!("/v2.0/networks/{}", id(n)))
            .await
            .ok(204);
        api.get(&format!("/v2.0/networks/{}", id(n)))
            .await
            .err(404, "NetworkNotFound");
    }
    for plural in ["networks", "subnets", "ports", "routers"] {
        assert_eq!(
            api.list(plural, "").await,
            Vec::<Value>::new(),
            "{plural} left over"
        );
    }
}

#[tokio::test]
async fn deleting_a_network_takes_its_subnets_with_it() {
    let w = start();
    let api = Api::of(&w);
    let net = api.network("n").await;
    let sub = api.subnet(&net, "10.9.0.0/24").await;
    api.delete(&format!("/v2.0/networks/{}", id(&net)))
        .await
        .ok(204);
    api.get(&format!("/v2.0/subnets/{}", id(&sub)))
        .await
        .err(404, "SubnetNotFound");
}
