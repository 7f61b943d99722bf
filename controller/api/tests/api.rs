//! Router-level tests of the Neutron API: shapes, status codes, every validation error with its
//! Neutron type, list semantics, project isolation, durability and failure handling.

mod common;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::http::StatusCode;
use common::{assert_error, Api, MemStore};
use serde_json::{json, Value};
use wyvern_api::Auth;

#[tokio::test]
async fn version_documents_and_unknown_routes() {
    let api = Api::noauth().await;
    let (s, v) = api.get("/").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v,
        json!({"versions": [{"id": "v2.0", "status": "CURRENT", "links": [{"href": "http://test:9696/v2.0/", "rel": "self"}]}]})
    );
    let (s, v) = api.get("/v2.0/").await;
    assert_eq!(s, StatusCode::OK);
    let colls: Vec<&str> = v["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["collection"].as_str().unwrap())
        .collect();
    assert_eq!(colls, vec!["networks", "subnets", "ports", "routers"]);
    assert_eq!(
        v["resources"][0]["links"][0]["href"],
        "http://test:9696/v2.0/networks"
    );
    let (s, v) = api.get("/v2.0/extensions").await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["extensions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["alias"] == "router"));
    assert_eq!(
        api.get("/v2.0/extensions/extraroute").await.0,
        StatusCode::OK
    );
    assert_error(
        api.get("/v2.0/extensions/qos").await,
        404,
        "ExtensionNotFound",
    );
    assert_error(api.get("/v2.0/bananas").await, 404, "HTTPNotFound");
    assert_error(api.get("/v3/networks").await, 404, "HTTPNotFound");
    assert_error(api.get("/v2.0/networks/x/y/z").await, 404, "HTTPNotFound");
    assert_error(
        api.delete("/v2.0/networks").await,
        405,
        "HTTPMethodNotAllowed",
    );
    // The .json suffix is accepted.
    let (s, v) = api.get("/v2.0/networks.json").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v, json!({"networks": []}));
}

#[tokio::test]
async fn network_lifecycle_and_persistence() {
    let api = Api::noauth().await;
    let n = api
        .create("network", json!({"name": "net1", "admin_state_up": true}))
        .await;
    let id = n["id"].as_str().unwrap().to_string();
    assert_eq!(n["tenant_id"], "demo");
    assert_eq!(n["project_id"], "demo");
    assert_eq!(n["status"], "ACTIVE");
    assert_eq!(n["subnets"], json!([]));
    assert_eq!(n["mtu"], 1450);
    assert_eq!(n["revision_number"], 1);
    assert!(api
        .store
        .keys()
        .contains(&format!("/wyvern/v1/networks/{id}")));

    let s = api
        .create(
            "subnet",
            json!({"network_id": id, "cidr": "10.0.0.0/24", "ip_version": 4}),
        )
        .await;
    let (st, v) = api.get(&format!("/v2.0/networks/{id}")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["network"]["subnets"], json!([s["id"]]));

    let (st, v) = api
        .put(
            &format!("/v2.0/networks/{id}"),
            json!({"network": {"name": "renamed", "admin_state_up": false}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["network"]["name"], "renamed");
    assert_eq!(v["network"]["revision_number"], 2);
    assert_eq!(
        api.store
            .value(&format!("/wyvern/v1/networks/{id}"))
            .unwrap()["name"],
        "renamed"
    );

    let (st, v) = api.delete(&format!("/v2.0/networks/{id}")).await;
    assert_eq!((st, v), (StatusCode::NO_CONTENT, Value::Null));
    assert_error(
        api.get(&format!("/v2.0/networks/{id}")).await,
        404,
        "NetworkNotFound",
    );
    assert!(
        api.store.keys().is_empty(),
        "network and its subnet are gone: {:?}",
        api.store.keys()
    );
}

#[tokio::test]
async fn restart_reloads_topology_and_ipam_continues() {
    let store = Arc::new(MemStore::default());
    let auth = Auth::NoAuth {
        default_project: "demo".into(),
    };
    let net_id;
    {
        let api = Api::over(store.clone(), auth.clone()).await;
        let n = api.create("network", json!({"name": "n"})).await;
        net_id = n["id"].as_str().unwrap().to_string();
        api.create(
            "subnet",
            json!({"network_id": net_id, "cidr": "10.0.0.0/24"}),
        )
        .await;
        for _ in 0..3 {
            api.create("port", json!({"network_id": net_id})).await;
        }
    }
    let api = Api::over(store, auth).await;
    let (_, v) = api.get("/v2.0/ports").await;
    assert_eq!(v["ports"].as_array().unwrap().len(), 3);
    let p = api.create("port", json!({"network_id": net_id})).await;
    assert_eq!(p["fixed_ips"][0]["ip_address"], "10.0.0.5");
}

#[tokio::test]
async fn malformed_bodies_are_400_never_panics() {
    let api = Api::noauth().await;
    for body in [
        "",
        "{",
        "not json",
        "[1,2]",
        "{\"network\": 5}",
        "{\"net\": {}}",
        "{\"networks\": []}",
        "{\"networks\": 3}",
    ] {
        let got = api
            .req(
                "POST",
                "/v2.0/networks",
                None,
                Some(Value::String(body.into())),
            )
            .await;
        assert_error(got, 400, "HTTPBadRequest");
    }
    let n = api.create("network", json!({})).await;
    let path = format!("/v2.0/networks/{}", n["id"].as_str().unwrap());
    assert_error(
        api.req("PUT", &path, None, Some(Value::String("{oops".into())))
            .await,
        400,
        "HTTPBadRequest",
    );
    assert_error(
        api.put(&path, json!({"network": {"id": "x"}})).await,
        400,
        "HTTPBadRequest",
    );
    assert_error(
        api.put(&path, json!({"network": {"tenant_id": "x"}})).await,
        400,
        "HTTPBadRequest",
    );
    assert_error(
        api.put("/v2.0/routers/x/add_router_interface", json!("{"))
            .await,
        400,
        "HTTPBadRequest",
    );
    assert_error(
        api.post(
            "/v2.0/networks",
            json!({"network": {"name": "a", "color": "red"}}),
        )
        .await,
        400,
        "HTTPBadRequest",
    );
    assert_error(
        api.post(
            "/v2.0/networks",
            json!({"network": {"admin_state_up": "perhaps"}}),
        )
        .await,
        400,
        "HTTPBadRequest",
    );
    assert_error(
        api.get("/v2.0/networks?limit=-3").await,
        400,
        "HTTPBadRequest",
    );
    assert_error(
        api.get("/v2.0/networks?sort_key=name&sort_dir=sideways")
            .await,
        400,
        "HTTPBadRequest",
    );
}

#[tokio::test]
async fn validation_errors_have_neutron_types_and_statuses() {
    let api = Api::noauth().await;
    let n = api.create("network", json!({"name": "n"})).await;
    let nid = n["id"].as_str().unwrap().to_string();
    let subnet = |extra: Value| {
        let mut b = json!({"network_id": nid, "cidr": "10.0.0.0/24", "ip_version": 4});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        json!({ "subnet": b })
    };
    assert_error(
        api.post(
            "/v2.0/subnets",
            subnet(json!({"ip_version": 6, "cidr": "fd00::/64"})),
        )
        .await,
        400,
        "InvalidInput",
    );
    assert_error(
        api.post("/v2.0/subnets", subnet(json!({"cidr": "10.0.0.0/99"})))
            .await,
        400,
        "HTTPBadRequest",
    );
    assert_error(
        api.post(
            "/v2.0/subnets",
            subnet(json!({"allocation_pools": [{"start": "10.0.0.1", "end": "10.0.0.9"}]})),
        )
        .await,
        409,
        "GatewayConflictWithAllocationPools",
    );
    assert_error(
        api.post(
            "/v2.0/subnets",
            subnet(json!({"allocation_pools": [{"start": "10.0.0.5", "end": "10.0.0.9"}, {"start": "10.0.0.9", "end": "10.0.0.20"}]})),
        )
        .await,
        409,
        "OverlappingAllocationPools",
    );
    assert_error(
        api.post(
            "/v2.0/subnets",
            subnet(json!({"allocation_pools": [{"start": "10.0.0.5", "end": "10.0.9.9"}]})),
        )
        .await,
        400,
        "OutOfBoundsAllocationPool",
    );
    assert_error(
        api.post(
            "/v2.0/subnets",
            subnet(json!({"network_id": "2b0f1d55-0000-4000-8000-000000000000"})),
        )
        .await,
        404,
        "NetworkNotFound",
    );
    let s = api
        .create(
            "subnet",
            json!({"network_id": nid, "cidr": "10.0.0.0/24", "allocation_pools": [{"start": "10.0.0.10", "end": "10.0.0.11"}],
                   "dns_nameservers": ["8.8.8.8"], "host_routes": [{"destination": "10.9.0.0/16", "nexthop": "10.0.0.254"}],
                   "gateway_ip": "10.0.0.1", "enable_dhcp": false}),
        )
        .await;
    assert_eq!(
        s["allocation_pools"],
        json!([{"start": "10.0.0.10", "end": "10.0.0.11"}])
    );
    assert_eq!(
        s["host_routes"],
        json!([{"destination": "10.9.0.0/16", "nexthop": "10.0.0.254"}])
    );
    assert_eq!(s["enable_dhcp"], false);
    let sid = s["id"].as_str().unwrap().to_string();
    assert_error(
        api.post("/v2.0/subnets", subnet(json!({"cidr": "10.0.0.0/25"})))
            .await,
        400,
        "InvalidInput",
    );

    let p1 = api.create("port", json!({"network_id": nid, "fixed_ips": [{"subnet_id": sid, "ip_address": "10.0.0.50"}], "mac_address": "fa:16:3e:00:00:01"})).await;
    assert_eq!(
        p1["fixed_ips"],
        json!([{"subnet_id": sid, "ip_address": "10.0.0.50"}])
    );
    assert_eq!(p1["mac_address"], "fa:16:3e:00:00:01");
    let port = |body: Value| json!({ "port": body });
    assert_error(
        api.post(
            "/v2.0/ports",
            port(json!({"network_id": nid, "fixed_ips": [{"ip_address": "10.0.0.50"}]})),
        )
        .await,
        409,
        "IpAddressAlreadyAllocated",
    );
    assert_error(
        api.post(
            "/v2.0/ports",
            port(json!({"network_id": nid, "mac_address": "fa:16:3e:00:00:01"})),
        )
        .await,
        409,
        "MacAddressInUse",
    );
    assert_error(
        api.post("/v2.0/ports", port(json!({"network_id": nid, "fixed_ips": [{"subnet_id": sid, "ip_address": "10.1.0.5"}]}))).await,
        400,
        "InvalidIpForSubnet",
    );
    assert_error(
        api.post(
            "/v2.0/ports",
            port(json!({"network_id": nid, "fixed_ips": [{"ip_address": "192.168.1.1"}]})),
        )
        .await,
        400,
        "InvalidIpForNetwork",
    );
    api.create("port", json!({"network_id": nid})).await;
    api.create("port", json!({"network_id": nid})).await;
    assert_error(
        api.post("/v2.0/ports", port(json!({"network_id": nid})))
            .await,
        409,
        "IpAddressGenerationFailure",
    );
    assert_error(
        api.post(
            "/v2.0/ports",
            port(json!({"network_id": nid, "mac_address": "xx"})),
        )
        .await,
        400,
        "HTTPBadRequest",
    );
    assert_error(
        api.post("/v2.0/ports", port(json!({"name": "no network"})))
            .await,
        400,
        "HTTPBadRequest",
    );

    assert_error(
        api.delete(&format!("/v2.0/networks/{nid}")).await,
        409,
        "NetworkInUse",
    );
    assert_error(
        api.delete(&format!("/v2.0/subnets/{sid}")).await,
        409,
        "SubnetInUse",
    );
    assert_error(
        api.put(
            &format!("/v2.0/subnets/{sid}"),
            json!({"subnet": {"gateway_ip": "10.0.0.10"}}),
        )
        .await,
        409,
        "GatewayConflictWithAllocationPools",
    );
    assert_error(
        api.put(
            &format!("/v2.0/subnets/{sid}"),
            json!({"subnet": {"cidr": "10.0.0.0/16"}}),
        )
        .await,
        400,
        "HTTPBadRequest",
    );

    let r = api.create("router", json!({"name": "r"})).await;
    let rid = r["id"].as_str().unwrap().to_string();
    assert_eq!(r["external_gateway_info"], Value::Null);
    assert_eq!(r["routes"], json!([]));
    assert_error(
        api.post("/v2.0/routers", json!({"router": {"routes": []}}))
            .await,
        400,
        "HTTPBadRequest",
    );
    let (st, info) = api
        .put(
            &format!("/v2.0/routers/{rid}/add_router_interface"),
            json!({"subnet_id": sid}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{info}");
    assert_eq!(info["id"], rid);
    assert_eq!(info["subnet_id"], sid);
    assert_eq!(info["network_id"], nid);
    assert_eq!(info["subnet_ids"], json!([sid]));
    let rport = info["port_id"].as_str().unwrap().to_string();
    let (_, v) = api.get(&format!("/v2.0/ports/{rport}")).await;
    assert_eq!(v["port"]["device_owner"], "network:router_interface");
    assert_eq!(v["port"]["fixed_ips"][0]["ip_address"], "10.0.0.1");
    assert_error(
        api.put(
            &format!("/v2.0/routers/{rid}/add_router_interface"),
            json!({"subnet_id": sid}),
        )
        .await,
        400,
        "BadRequest",
    );
    assert_error(
        api.put(
            &format!("/v2.0/routers/{rid}/add_router_interface"),
            json!({}),
        )
        .await,
        400,
        "BadRequest",
    );
    assert_error(
        api.delete(&format!("/v2.0/ports/{rport}")).await,
        409,
        "L3PortInUse",
    );
    assert_error(
        api.delete(&format!("/v2.0/routers/{rid}")).await,
        409,
        "RouterInUse",
    );
    assert_error(
        api.put(&format!("/v2.0/routers/{rid}"), json!({"router": {"routes": [{"destination": "172.16.0.0/12", "nexthop": "10.200.0.1"}]}})).await,
        400,
        "InvalidRoutes",
    );
    let (st, v) = api
        .put(&format!("/v2.0/routers/{rid}"), json!({"router": {"routes": [{"destination": "172.16.0.0/12", "nexthop": "10.0.0.254"}]}}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        v["router"]["routes"],
        json!([{"destination": "172.16.0.0/12", "nexthop": "10.0.0.254"}])
    );
    assert_error(
        api.put(
            &format!("/v2.0/routers/{rid}/remove_router_interface"),
            json!({"subnet_id": sid}),
        )
        .await,
        409,
        "RouterInterfaceInUseByRoute",
    );
    api.put(
        &format!("/v2.0/routers/{rid}"),
        json!({"router": {"routes": []}}),
    )
    .await;
    let (st, _) = api
        .put(
            &format!("/v2.0/routers/{rid}/remove_router_interface"),
            json!({"subnet_id": sid}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_error(
        api.get(&format!("/v2.0/ports/{rport}")).await,
        404,
        "PortNotFound",
    );
    assert_error(
        api.put(
            &format!("/v2.0/routers/{rid}/remove_router_interface"),
            json!({"subnet_id": sid}),
        )
        .await,
        404,
        "RouterInterfaceNotFoundForSubnet",
    );
    assert_error(
        api.put(
            &format!("/v2.0/routers/{rid}/remove_router_interface"),
            json!({"port_id": rport}),
        )
        .await,
        404,
        "RouterInterfaceNotFound",
    );
    assert_error(
        api.get("/v2.0/routers/not-a-uuid").await,
        404,
        "RouterNotFound",
    );
    assert_error(
        api.get("/v2.0/subnets/by-name").await,
        404,
        "SubnetNotFound",
    );
    assert_eq!(
        api.delete(&format!("/v2.0/routers/{rid}")).await.0,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn filters_fields_sorting_and_pagination() {
    let api = Api::noauth().await;
    let mut ids = Vec::new();
    for (i, name) in ["delta", "alpha", "echo", "charlie", "bravo"]
        .iter()
        .enumerate()
    {
        let n = api
            .create(
                "network",
                json!({"name": name, "admin_state_up": i % 2 == 0}),
            )
            .await;
        ids.push(n["id"].as_str().unwrap().to_string());
    }
    let names = |v: &Value, coll: &str| -> Vec<String> {
        v[coll]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, v) = api.get("/v2.0/networks?name=alpha").await;
    assert_eq!(names(&v, "networks"), vec!["alpha"]);
    let (_, v) = api
        .get("/v2.0/networks?name=alpha&name=echo&sort_key=name")
        .await;
    assert_eq!(names(&v, "networks"), vec!["alpha", "echo"]);
    let (_, v) = api
        .get("/v2.0/networks?admin_state_up=False&sort_key=name&sort_dir=desc")
        .await;
    assert_eq!(names(&v, "networks"), vec!["charlie", "alpha"]);
    let (_, v) = api.get("/v2.0/networks?name=nothing").await;
    assert_eq!(v, json!({"networks": []}));
    let (_, v) = api
        .get("/v2.0/networks?fields=id&fields=name&name=bravo")
        .await;
    let keys: HashSet<&str> = v["networks"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(keys, HashSet::from(["id", "name"]));
    let (_, v) = api
        .get(&format!("/v2.0/networks/{}?fields=name", ids[0]))
        .await;
    assert_eq!(v, json!({"network": {"name": "delta"}}));
    assert_error(
        api.get("/v2.0/networks?sort_key=bogus").await,
        400,
        "HTTPBadRequest",
    );
    assert_error(
        api.get("/v2.0/networks?sort_key=subnets").await,
        400,
        "HTTPBadRequest",
    );

    // Pagination, sorted by name: follow the next links to the end, then go back.
    let mut seen = Vec::new();
    let mut url = "/v2.0/networks?sort_key=name&sort_dir=asc&limit=2".to_string();
    let mut pages = 0;
    loop {
        let (st, v) = api.get(&url).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        seen.extend(names(&v, "networks"));
        pages += 1;
        let next = v["networks_links"]
            .as_array()
            .and_then(|l| l.iter().find(|l| l["rel"] == "next"))
            .cloned();
        match next {
            Some(l) => {
                url = l["href"]
                    .as_str()
                    .unwrap()
                    .strip_prefix("http://test:9696")
                    .unwrap()
                    .to_string()
            }
            None => {
                let prev = v["networks_links"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|l| l["rel"] == "previous")
                    .unwrap();
                let (_, back) = api
                    .get(
                        prev["href"]
                            .as_str()
                            .unwrap()
                            .strip_prefix("http://test:9696")
                            .unwrap(),
                    )
                    .await;
                assert_eq!(names(&back, "networks"), vec!["charlie", "delta"]);
                break;
            }
        }
        assert!(pages < 10);
    }
    assert_eq!(seen, vec!["alpha", "bravo", "charlie", "delta", "echo"]);
    assert_eq!(pages, 3);
    // Default order is by id, paginated on the fast path.
    let mut sorted = ids.clone();
    sorted.sort();
    let (_, v) = api.get("/v2.0/networks?limit=3").await;
    let got: Vec<&str> = v["networks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        got,
        sorted[..3].iter().map(|s| s.as_str()).collect::<Vec<_>>()
    );
    assert_eq!(
        v["networks_links"][0]["href"],
        format!(
            "http://test:9696/v2.0/networks?limit=3&marker={}",
            sorted[2]
        )
    );
    let (_, v) = api
        .get(&format!("/v2.0/networks?limit=3&marker={}", sorted[2]))
        .await;
    assert_eq!(v["networks"].as_array().unwrap().len(), 2);
    assert!(v["networks_links"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["rel"] == "previous"));
    let (_, v) = api
        .get(&format!(
            "/v2.0/networks?limit=2&marker={}&page_reverse=True",
            sorted[4]
        ))
        .await;
    let got: Vec<&str> = v["networks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec![sorted[2].as_str(), sorted[3].as_str()]);
    assert_error(
        api.get("/v2.0/networks?limit=2&marker=4d2a9b1e-0000-4000-8000-000000000000")
            .await,
        404,
        "NetworkNotFound",
    );

    // Port filters: network_id, device_id, device_owner, fixed_ips.
    let net = &ids[0];
    let s = api
        .create("subnet", json!({"network_id": net, "cidr": "10.3.0.0/24"}))
        .await;
    let sid = s["id"].as_str().unwrap();
    api.create(
        "port",
        json!({"network_id": net, "device_id": "vm-1", "device_owner": "compute:nova"}),
    )
    .await;
    api.create(
        "port",
        json!({"network_id": net, "device_id": "vm-2", "fixed_ips": [{"ip_address": "10.3.0.77"}]}),
    )
    .await;
    let (_, v) = api.get("/v2.0/ports?device_id=vm-1").await;
    assert_eq!(v["ports"].as_array().unwrap().len(), 1);
    assert_eq!(v["ports"][0]["device_owner"], "compute:nova");
    let (_, v) = api
        .get("/v2.0/ports?device_owner=compute:nova&device_owner=")
        .await;
    assert_eq!(v["ports"].as_array().unwrap().len(), 2);
    let (_, v) = api
        .get("/v2.0/ports?fixed_ips=ip_address%3D10.3.0.77")
        .await;
    assert_eq!(v["ports"].as_array().unwrap().len(), 1);
    assert_eq!(v["ports"][0]["device_id"], "vm-2");
    let (_, v) = api
        .get(&format!(
            "/v2.0/ports?fixed_ips=subnet_id%3D{sid}&network_id={net}"
        ))
        .await;
    assert_eq!(v["ports"].as_array().unwrap().len(), 2);
    let (_, v) = api
        .get(&format!(
            "/v2.0/ports?fixed_ips=subnet_id%3D{sid}&fixed_ips=ip_address%3D10.3.0.2"
        ))
        .await;
    assert_eq!(v["ports"].as_array().unwrap().len(), 1);
    let (_, v) = api.get(&format!("/v2.0/ports?network_id={}", ids[1])).await;
    assert_eq!(v["ports"], json!([]));
    // Filtered pagination (typed filters, fast path): pages of one, links carry the filter,
    // and a marker that the filter excludes still positions the page.
    let (_, all) = api.get(&format!("/v2.0/ports?network_id={net}")).await;
    let all: Vec<String> = all["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(all.len(), 2);
    let (_, v) = api
        .get(&format!("/v2.0/ports?network_id={net}&limit=1"))
        .await;
    assert_eq!(v["ports"][0]["id"], all[0].as_str());
    assert_eq!(
        v["ports_links"][0]["href"],
        format!(
            "http://test:9696/v2.0/ports?network_id={net}&limit=1&marker={}",
            all[0]
        )
    );
    let (_, v) = api
        .get(&format!("/v2.0/ports?device_id=vm-2&marker={}", all[0]))
        .await;
    assert_eq!(v["ports"].as_array().unwrap().len(), 1);
    assert_eq!(v["ports"][0]["id"], all[1].as_str());
    let (_, v) = api
        .get(&format!("/v2.0/ports?device_id=vm-1&marker={}", all[0]))
        .await;
    assert_eq!(v["ports"], json!([]));
    let (_, v) = api
        .get(&format!("/v2.0/subnets?network_id={net}&fields=cidr"))
        .await;
    assert_eq!(v, json!({"subnets": [{"cidr": "10.3.0.0/24"}]}));
}

#[tokio::test]
async fn bulk_create_is_all_or_nothing() {
    let api = Api::noauth().await;
    let (st, v) = api
        .post(
            "/v2.0/networks",
            json!({"networks": [{"name": "a"}, {"name": "b"}]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["networks"].as_array().unwrap().len(), 2);
    let nid = v["networks"][0]["id"].as_str().unwrap().to_string();
    api.create("subnet", json!({"network_id": nid, "cidr": "10.0.0.0/24"}))
        .await;
    // The second port asks for the address the first one gets: the whole bulk fails.
    let got = api
        .post("/v2.0/ports", json!({"ports": [{"network_id": nid}, {"network_id": nid, "fixed_ips": [{"ip_address": "10.0.0.2"}]}]}))
        .await;
    assert_error(got, 409, "IpAddressAlreadyAllocated");
    let (_, v) = api.get("/v2.0/ports").await;
    assert_eq!(v["ports"], json!([]));
    let (st, v) = api
        .post(
            "/v2.0/ports",
            json!({"ports": [{"network_id": nid}, {"network_id": nid}]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let ips: Vec<&str> = v["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["fixed_ips"][0]["ip_address"].as_str().unwrap())
        .collect();
    assert_eq!(ips, vec!["10.0.0.2", "10.0.0.3"]);
}

fn token_auth(dir: &tempfile::TempDir) -> Auth {
    let path = dir.path().join("tokens.json");
    std::fs::write(
        &path,
        r#"{"tokens": {"adm": {"project_id": "admins", "roles": ["admin"]},
                       "ta": {"project_id": "pa", "roles": ["member"]},
                       "tb": {"project_id": "pb"}}}"#,
    )
    .unwrap();
    Auth::load_token_file(&path).unwrap()
}

#[tokio::test]
async fn tokens_are_required_and_projects_isolated() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::new(token_auth(&dir)).await;
    // The version document is public; everything under /v2.0 needs a valid token.
    assert_eq!(api.get("/").await.0, StatusCode::OK);
    assert_error(api.get("/v2.0/networks").await, 401, "HTTPUnauthorized");
    assert_error(
        api.req("GET", "/v2.0/networks", Some("nope"), None).await,
        401,
        "HTTPUnauthorized",
    );

    let (st, a) = api
        .req(
            "POST",
            "/v2.0/networks",
            Some("ta"),
            Some(json!({"network": {"name": "a-net"}})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(a["network"]["project_id"], "pa");
    let aid = a["network"]["id"].as_str().unwrap().to_string();
    let (st, s) = api
        .req(
            "POST",
            "/v2.0/subnets",
            Some("ta"),
            Some(json!({"subnet": {"network_id": aid, "cidr": "10.0.0.0/24"}})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let sid = s["subnet"]["id"].as_str().unwrap().to_string();
    let (_, p) = api
        .req(
            "POST",
            "/v2.0/ports",
            Some("ta"),
            Some(json!({"port": {"network_id": aid}})),
        )
        .await;
    let pid = p["port"]["id"].as_str().unwrap().to_string();
    let (_, r) = api
        .req(
            "POST",
            "/v2.0/routers",
            Some("ta"),
            Some(json!({"router": {}})),
        )
        .await;
    let rid = r["router"]["id"].as_str().unwrap().to_string();
    let (st, b) = api
        .req(
            "POST",
            "/v2.0/networks",
            Some("tb"),
            Some(json!({"network": {"name": "b-net"}})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let bid = b["network"]["id"].as_str().unwrap().to_string();

    for coll in ["networks", "subnets", "ports", "routers"] {
        let (_, v) = api
            .req("GET", &format!("/v2.0/{coll}"), Some("tb"), None)
            .await;
        assert!(
            v[coll]
                .as_array()
                .unwrap()
                .iter()
                .all(|o| o["project_id"] == "pb"),
            "{coll}: {v}"
        );
        let (_, v) = api
            .req(
                "GET",
                &format!("/v2.0/{coll}?tenant_id=pa"),
                Some("tb"),
                None,
            )
            .await;
        assert_eq!(v[coll], json!([]), "{coll}");
    }
    for (coll, id, ty) in [
        ("networks", &aid, "NetworkNotFound"),
        ("subnets", &sid, "SubnetNotFound"),
        ("ports", &pid, "PortNotFound"),
        ("routers", &rid, "RouterNotFound"),
    ] {
        let path = format!("/v2.0/{coll}/{id}");
        assert_error(api.req("GET", &path, Some("tb"), None).await, 404, ty);
        let body = json!({ coll.trim_end_matches('s'): {"name": "stolen"} });
        assert_error(api.req("PUT", &path, Some("tb"), Some(body)).await, 404, ty);
        assert_error(api.req("DELETE", &path, Some("tb"), None).await, 404, ty);
    }
    assert_error(
        api.req(
            "POST",
            "/v2.0/ports",
            Some("tb"),
            Some(json!({"port": {"network_id": aid}})),
        )
        .await,
        404,
        "NetworkNotFound",
    );
    assert_error(
        api.req(
            "PUT",
            &format!("/v2.0/routers/{rid}/add_router_interface"),
            Some("tb"),
            Some(json!({"subnet_id": sid})),
        )
        .await,
        404,
        "RouterNotFound",
    );
    assert_error(
        api.req(
            "POST",
            "/v2.0/networks",
            Some("tb"),
            Some(json!({"network": {"project_id": "pa"}})),
        )
        .await,
        403,
        "PolicyNotAuthorized",
    );
    assert_error(
        api.req(
            "POST",
            "/v2.0/networks",
            Some("tb"),
            Some(json!({"network": {"shared": true}})),
        )
        .await,
        403,
        "PolicyNotAuthorized",
    );

    // The admin sees everyone's objects and may create for another project.
    let (_, v) = api.req("GET", "/v2.0/networks", Some("adm"), None).await;
    let mut got: Vec<&str> = v["networks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    got.sort();
    let mut want = vec![aid.as_str(), bid.as_str()];
    want.sort();
    assert_eq!(got, want);
    let (st, v) = api
        .req(
            "POST",
            "/v2.0/networks",
            Some("adm"),
            Some(json!({"network": {"tenant_id": "pb", "shared": true}})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(v["network"]["tenant_id"], "pb");
    // pa sees the shared network but may not change it.
    let shared = v["network"]["id"].as_str().unwrap().to_string();
    let (_, v) = api.req("GET", "/v2.0/networks", Some("ta"), None).await;
    assert_eq!(v["networks"].as_array().unwrap().len(), 2);
    assert_error(
        api.req(
            "PUT",
            &format!("/v2.0/networks/{shared}"),
            Some("ta"),
            Some(json!({"network": {"name": "x"}})),
        )
        .await,
        403,
        "PolicyNotAuthorized",
    );
}

#[tokio::test]
async fn failed_commit_answers_500_and_leaves_nothing_behind() {
    let api = Api::noauth().await;
    let n = api.create("network", json!({"name": "kept"})).await;
    api.store.fail_next.store(true, Ordering::SeqCst);
    let got = api
        .post("/v2.0/networks", json!({"network": {"name": "lost"}}))
        .await;
    assert_error(got, 500, "HTTPInternalServerError");
    let (_, v) = api.get("/v2.0/networks").await;
    assert_eq!(
        v["networks"].as_array().unwrap().len(),
        1,
        "the failed create is not visible: {v}"
    );
    assert_eq!(v["networks"][0]["id"], n["id"]);
    api.create("network", json!({"name": "after"})).await;
    assert_eq!(api.store.keys().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_port_creates_get_unique_addresses_and_are_group_committed() {
    let api = Arc::new(Api::noauth().await);
    let n = api.create("network", json!({"name": "big"})).await;
    let nid = n["id"].as_str().unwrap().to_string();
    api.create("subnet", json!({"network_id": nid, "cidr": "10.8.0.0/16"}))
        .await;
    let before = api.store.txns.load(Ordering::SeqCst);
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (api, nid) = (api.clone(), nid.clone());
        tasks.push(tokio::spawn(async move {
            let mut ips = Vec::new();
            for _ in 0..20 {
                let p = api.create("port", json!({"network_id": nid})).await;
                ips.push((
                    p["fixed_ips"][0]["ip_address"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                    p["mac_address"].as_str().unwrap().to_string(),
                ));
            }
            ips
        }));
    }
    let mut ips = HashSet::new();
    let mut macs = HashSet::new();
    for t in tasks {
        for (ip, mac) in t.await.unwrap() {
            assert!(ips.insert(ip.clone()), "duplicate ip {ip}");
            assert!(macs.insert(mac.clone()), "duplicate mac {mac}");
        }
    }
    assert_eq!(ips.len(), 1280);
    let ports_in_store = api
        .store
        .keys()
        .iter()
        .filter(|k| {
            matches!(
                wyvern_model::parse_key(k),
                Some((wyvern_model::Kind::Port, _))
            )
        })
        .count();
    assert_eq!(ports_in_store, 1280);
    // Each port also has its port -> network index entry (written in the same transaction).
    let indexed = api
        .store
        .keys()
        .iter()
        .filter(|k| k.starts_with(wyvern_model::PORT_NETWORK_PREFIX))
        .count();
    assert_eq!(indexed, 1280);
    let txns = api.store.txns.load(Ordering::SeqCst) - before;
    assert!(txns <= 1280, "{txns} store transactions for 1280 writes");
}
