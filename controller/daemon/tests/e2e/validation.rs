//! Every refusal of issue 3, with its Neutron error type and HTTP status, through the real
//! daemon.

use reqwest::Method;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn ipv6_is_refused_clearly() {
    let w = start();
    let api = Api::of(&w);
    let net = api.network("v6").await;
    let msg = api
        .post(
            "/v2.0/subnets",
            json!({"subnet": {"network_id": id(&net), "ip_version": 6, "cidr": "2001:db8::/64"}}),
        )
        .await
        .err(400, "InvalidInput");
    assert!(msg.contains("IPv6"), "{msg}");
    let msg = api
        .post(
            "/v2.0/subnets",
            json!({"subnet": {"network_id": id(&net), "ip_version": 4, "cidr": "2001:db8::/64"}}),
        )
        .await;
    assert_eq!(msg.status, 400, "{:?}", msg.body);
    assert!(api.list("subnets", "").await.is_empty());
}

#[tokio::test]
async fn ipam_conflicts_are_409() {
    let w = start();
    let api = Api::of(&w);
    let net = api.network("n").await;
    let sub = api.subnet(&net, "10.1.0.0/24").await;
    let p = api
        .create(
            "port",
            json!({"network_id": id(&net), "fixed_ips": [{"subnet_id": id(&sub), "ip_address": "10.1.0.20"}]}),
        )
        .await;

    // Duplicate IP.
    api.post(
        "/v2.0/ports",
        json!({"port": {"network_id": id(&net), "fixed_ips": [{"subnet_id": id(&sub), "ip_address": "10.1.0.20"}]}}),
    )
    .await
    .err(409, "IpAddressAlreadyAllocated");
    // The gateway address is reserved for a router interface.
    let msg = api
        .post(
            "/v2.0/ports",
            json!({"port": {"network_id": id(&net), "fixed_ips": [{"ip_address": "10.1.0.1"}]}}),
        )
        .await
        .err(400, "InvalidInput");
    assert!(msg.contains("gateway"), "{msg}");
    // MAC in use on the network (allowed on another network, as in Neutron).
    let mac = p["mac_address"].clone();
    api.post(
        "/v2.0/ports",
        json!({"port": {"network_id": id(&net), "mac_address": mac}}),
    )
    .await
    .err(409, "MacAddressInUse");
    let other = api.network("other").await;
    api.post(
        "/v2.0/ports",
        json!({"port": {"network_id": id(&other), "mac_address": mac}}),
    )
    .await
    .ok(201);
    // An IP outside the subnet.
    api.post(
        "/v2.0/ports",
        json!({"port": {"network_id": id(&net), "fixed_ips": [{"subnet_id": id(&sub), "ip_address": "10.2.0.5"}]}}),
    )
    .await
    .err(400, "InvalidIpForSubnet");
}

#[tokio::test]
async fn pool_and_gateway_rules() {
    let w = start();
    let api = Api::of(&w);
    let net = api.network("n").await;
    let subnet = |extra: serde_json::Value| {
        let mut s = json!({"network_id": id(&net), "ip_version": 4, "cidr": "10.3.0.0/24"});
        for (k, v) in extra.as_object().unwrap() {
            s[k] = v.clone();
        }
        json!({ "subnet": s })
    };
    api.post(
        "/v2.0/subnets",
        subnet(json!({"gateway_ip": "10.3.0.50", "allocation_pools": [{"start": "10.3.0.10", "end": "10.3.0.100"}]})),
    )
    .await
    .err(409, "GatewayConflictWithAllocationPools");
    api.post(
        "/v2.0/subnets",
        subnet(json!({"allocation_pools": [
            {"start": "10.3.0.10", "end": "10.3.0.100"},
            {"start": "10.3.0.90", "end": "10.3.0.120"}]})),
    )
    .await
    .err(409, "OverlappingAllocationPools");
    api.post(
        "/v2.0/subnets",
        subnet(json!({"allocation_pools": [{"start": "10.3.0.10", "end": "10.3.1.100"}]})),
    )
    .await
    .err(400, "OutOfBoundsAllocationPool");
    assert!(
        api.list("subnets", "").await.is_empty(),
        "no refused subnet was stored"
    );
    // Overlapping subnets on one network.
    api.post("/v2.0/subnets", subnet(json!({}))).await.ok(201);
    api.post(
        "/v2.0/subnets",
        json!({"subnet": {"network_id": id(&net), "ip_version": 4, "cidr": "10.3.0.128/25"}}),
    )
    .await
    .err(400, "InvalidInput");
}

#[tokio::test]
async fn a_router_refuses_overlapping_subnets() {
    let w = start();
    let api = Api::of(&w);
    let a = api.network("a").await;
    let b = api.network("b").await;
    let sa = api.subnet(&a, "10.4.0.0/24").await;
    let sb = api.subnet(&b, "10.4.0.0/16").await;
    let r = api.create("router", json!({"name": "r"})).await;
    let add = format!("/v2.0/routers/{}/add_router_interface", id(&r));
    api.put(&add, json!({"subnet_id": id(&sa)})).await.ok(200);
    let msg = api
        .put(&add, json!({"subnet_id": id(&sb)}))
        .await
        .err(400, "BadRequest");
    assert!(msg.contains("overlaps"), "{msg}");
    // The same subnet twice is refused too.
    api.put(&add, json!({"subnet_id": id(&sa)}))
        .await
        .err(400, "BadRequest");
}

#[tokio::test]
async fn deletes_in_use_are_409() {
    let w = start();
    let api = Api::of(&w);
    let net = api.network("n").await;
    let sub = api.subnet(&net, "10.5.0.0/24").await;
    let port = api.port(&net, "vm").await;
    let r = api.create("router", json!({"name": "r"})).await;
    let iface = api
        .put(
            &format!("/v2.0/routers/{}/add_router_interface", id(&r)),
            json!({"subnet_id": id(&sub)}),
        )
        .await
        .ok(200);

    api.delete(&format!("/v2.0/networks/{}", id(&net)))
        .await
        .err(409, "NetworkInUse");
    api.delete(&format!("/v2.0/subnets/{}", id(&sub)))
        .await
        .err(409, "SubnetInUse");
    api.delete(&format!("/v2.0/routers/{}", id(&r)))
        .await
        .err(409, "RouterInUse");
    // A router's interface port is deleted through the router, not the port API.
    api.delete(&format!(
        "/v2.0/ports/{}",
        iface["port_id"].as_str().unwrap()
    ))
    .await
    .err(409, "L3PortInUse");
    // A route needing the interface keeps it attached.
    api.put(
        &format!("/v2.0/routers/{}", id(&r)),
        json!({"router": {"routes": [{"destination": "10.99.0.0/16", "nexthop": "10.5.0.77"}]}}),
    )
    .await
    .ok(200);
    api.put(
        &format!("/v2.0/routers/{}/remove_router_interface", id(&r)),
        json!({"subnet_id": id(&sub)}),
    )
    .await
    .err(409, "RouterInterfaceInUseByRoute");
    // A route whose next hop is on no attached subnet is refused.
    api.put(
        &format!("/v2.0/routers/{}", id(&r)),
        json!({"router": {"routes": [{"destination": "10.98.0.0/16", "nexthop": "192.0.2.1"}]}}),
    )
    .await
    .err(400, "InvalidRoutes");
    // Everything is still there.
    api.get(&format!("/v2.0/ports/{}", id(&port))).await.ok(200);
    api.get(&format!("/v2.0/networks/{}", id(&net)))
        .await
        .ok(200);
}

#[tokio::test]
async fn unknown_ids_are_404_and_bad_bodies_400() {
    let w = start();
    let api = Api::of(&w);
    let missing = "3f1c2a4e-0000-4000-8000-000000000000";
    for (plural, kind) in [
        ("networks", "NetworkNotFound"),
        ("subnets", "SubnetNotFound"),
        ("ports", "PortNotFound"),
        ("routers", "RouterNotFound"),
    ] {
        api.get(&format!("/v2.0/{plural}/{missing}"))
            .await
            .err(404, kind);
        api.delete(&format!("/v2.0/{plural}/{missing}"))
            .await
            .err(404, kind);
    }
    api.post("/v2.0/ports", json!({"port": {"network_id": missing}}))
        .await
        .err(404, "NetworkNotFound");

    // Malformed JSON.
    let resp = api
        .http
        .request(Method::POST, format!("{}/v2.0/networks", api.base))
        .header("Content-Type", "application/json")
        .body("{\"network\": {\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.expect("a Neutron error body");
    assert!(body["NeutronError"]["type"].is_string(), "{body}");
    // Wrong member name, unknown attribute, missing required attribute.
    api.post("/v2.0/networks", json!({"netwrk": {"name": "x"}}))
        .await
        .err(400, "HTTPBadRequest");
    api.post("/v2.0/networks", json!({"network": {"nmae": "x"}}))
        .await
        .err(400, "HTTPBadRequest");
    api.post(
        "/v2.0/subnets",
        json!({"subnet": {"ip_version": 4, "cidr": "10.0.0.0/24"}}),
    )
    .await
    .err(400, "HTTPBadRequest");
    assert!(api.list("networks", "").await.is_empty());
}

#[tokio::test]
async fn token_mode_requires_a_valid_token_and_policy_applies() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = write_token_file(dir.path());
    let w = options().token_file(&tokens).start().unwrap();
    let anon = Api::of(&w);
    anon.get("/v2.0/networks")
        .await
        .err(401, "HTTPUnauthorized");
    anon.with_token("nope")
        .get("/v2.0/networks")
        .await
        .err(401, "HTTPUnauthorized");
    // The version document stays public (clients probe it before authenticating).
    anon.get("/").await.ok(200);

    let alice = anon.with_token("alice-token");
    // Shared networks are admin-only.
    alice
        .post(
            "/v2.0/networks",
            json!({"network": {"name": "s", "shared": true}}),
        )
        .await
        .err(403, "PolicyNotAuthorized");
    // A member may not create in another project.
    alice
        .post(
            "/v2.0/networks",
            json!({"network": {"name": "x", "project_id": "bob-project"}}),
        )
        .await
        .err(403, "PolicyNotAuthorized");
    // A member may not add a subnet to an admin's shared network.
    let admin = anon.with_token("admin-token");
    let shared = admin
        .create("network", json!({"name": "public", "shared": true}))
        .await;
    alice
        .post(
            "/v2.0/subnets",
            json!({"subnet": {"network_id": id(&shared), "ip_version": 4, "cidr": "10.6.0.0/24"}}),
        )
        .await
        .err(403, "PolicyNotAuthorized");
}
