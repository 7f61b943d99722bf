//! Project isolation, list filters, `fields`, sorting and pagination.

use serde_json::{json, Value};

use crate::common::*;

#[tokio::test]
async fn members_never_see_or_touch_other_projects() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = write_token_file(dir.path());
    let w = options().token_file(&tokens).start().unwrap();
    let base = Api::of(&w);
    let (admin, alice, bob) = (
        base.with_token("admin-token"),
        base.with_token("alice-token"),
        base.with_token("bob-token"),
    );

    let a_net = alice.network("alice-net").await;
    assert_eq!(a_net["project_id"], json!("alice-project"));
    assert_eq!(a_net["tenant_id"], json!("alice-project"));
    let a_sub = alice.subnet(&a_net, "10.7.0.0/24").await;
    let a_port = alice.port(&a_net, "alice-vm").await;
    let a_router = alice.create("router", json!({"name": "alice-r"})).await;
    let b_net = bob.network("bob-net").await;
    bob.subnet(&b_net, "10.7.0.0/24").await; // same CIDR, other project: fine
    bob.port(&b_net, "bob-vm").await;

    // Lists: each member sees only its own; the admin sees all.
    for (plural, alice_n, all_n) in [
        ("networks", 1, 2),
        ("subnets", 1, 2),
        ("ports", 1, 2),
        ("routers", 1, 1),
    ] {
        let mine = alice.list(plural, "").await;
        assert_eq!(mine.len(), alice_n, "{plural}: {mine:?}");
        assert!(
            mine.iter()
                .all(|o| o["project_id"] == json!("alice-project")),
            "{plural}: {mine:?}"
        );
        let theirs = bob.list(plural, "").await;
        assert!(
            theirs
                .iter()
                .all(|o| o["project_id"] == json!("bob-project")),
            "{plural}: {theirs:?}"
        );
        assert_eq!(admin.list(plural, "").await.len(), all_n, "{plural}");
    }
    // Filters do not leak either.
    assert!(bob
        .list("ports", &format!("network_id={}", id(&a_net)))
        .await
        .is_empty());

    // Show, update, delete of another project's objects: 404, and nothing changes.
    for (path, kind, member) in [
        (
            format!("/v2.0/networks/{}", id(&a_net)),
            "NetworkNotFound",
            "network",
        ),
        (
            format!("/v2.0/subnets/{}", id(&a_sub)),
            "SubnetNotFound",
            "subnet",
        ),
        (
            format!("/v2.0/ports/{}", id(&a_port)),
            "PortNotFound",
            "port",
        ),
        (
            format!("/v2.0/routers/{}", id(&a_router)),
            "RouterNotFound",
            "router",
        ),
    ] {
        bob.get(&path).await.err(404, kind);
        bob.put(&path, json!({ member: {"name": "pwned"} }))
            .await
            .err(404, kind);
        bob.delete(&path).await.err(404, kind);
        let still = alice.get(&path).await.ok(200);
        assert_ne!(still[member]["name"], json!("pwned"));
    }
    // Nor may bob plug into alice's network or router.
    bob.post("/v2.0/ports", json!({"port": {"network_id": id(&a_net)}}))
        .await
        .err(404, "NetworkNotFound");
    bob.put(
        &format!("/v2.0/routers/{}/add_router_interface", id(&a_router)),
        json!({"subnet_id": id(&a_sub)}),
    )
    .await
    .err(404, "RouterNotFound");
}

/// Creates `n` ports named `port-<i>` on one network and returns (network, ports).
async fn ports(api: &Api, n: usize) -> (Value, Vec<Value>) {
    let net = api.network("q").await;
    let sub = api.subnet(&net, "10.8.0.0/24").await;
    let mut out = Vec::new();
    for i in 0..n {
        out.push(
            api.create(
                "port",
                json!({"network_id": id(&net), "name": format!("port-{i:02}"),
                       "device_id": format!("vm-{}", i % 3), "device_owner": "compute:nova",
                       "fixed_ips": [{"subnet_id": id(&sub), "ip_address": format!("10.8.0.{}", 10 + i)}]}),
            )
            .await,
        );
    }
    (net, out)
}

#[tokio::test]
async fn filters_and_fields() {
    let w = start();
    let api = Api::of(&w);
    let (net, all) = ports(&api, 7).await;
    let other = api.network("other").await;
    api.port(&other, "elsewhere").await;

    assert_eq!(
        api.list("ports", "name=port-03").await,
        vec![all[3].clone()]
    );
    assert_eq!(
        api.list("ports", &format!("network_id={}", id(&net)))
            .await
            .len(),
        7
    );
    assert_eq!(api.list("ports", "device_id=vm-1").await.len(), 2); // 1 and 4
    assert_eq!(
        api.list("ports", "device_owner=compute:nova").await.len(),
        7
    );
    let by_ip = api.list("ports", "fixed_ips=ip_address%3D10.8.0.15").await;
    assert_eq!(ids(&by_ip), vec![id(&all[5]).to_owned()]);
    let sub_id = all[0]["fixed_ips"][0]["subnet_id"].as_str().unwrap();
    assert_eq!(
        api.list("ports", &format!("fixed_ips=subnet_id%3D{sub_id}"))
            .await
            .len(),
        7
    );
    // Repeated filter values are ORed, as in Neutron.
    assert_eq!(
        api.list("ports", "name=port-01&name=port-02").await.len(),
        2
    );
    assert!(api.list("ports", "name=nobody").await.is_empty());

    let slim = api
        .list("ports", "name=port-00&fields=id&fields=name")
        .await;
    assert_eq!(slim, vec![json!({"id": id(&all[0]), "name": "port-00"})]);
    let one = api
        .get(&format!("/v2.0/networks/{}?fields=name", id(&net)))
        .await
        .ok(200);
    assert_eq!(one, json!({"network": {"name": "q"}}));
}

#[tokio::test]
async fn sorting_and_pagination_with_links() {
    let w = start();
    let api = Api::of(&w);
    let (_, all) = ports(&api, 7).await;
    let mut by_name = all.clone();
    by_name.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));

    let desc = api.list("ports", "sort_key=name&sort_dir=desc").await;
    let mut expect = by_name.clone();
    expect.reverse();
    assert_eq!(ids(&desc), ids(&expect));

    // Walk the pages through the `next` links.
    let mut seen = Vec::new();
    let mut path = "/v2.0/ports?sort_key=name&sort_dir=asc&limit=3".to_owned();
    let mut pages = 0;
    loop {
        let body = api.get(&path).await.ok(200);
        let page = body["ports"].as_array().unwrap().clone();
        assert!(page.len() <= 3);
        seen.extend(ids(&page));
        pages += 1;
        let next = body["ports_links"]
            .as_array()
            .and_then(|l| l.iter().find(|l| l["rel"] == json!("next")))
            .and_then(|l| l["href"].as_str())
            .map(str::to_owned);
        match next {
            Some(href) => {
                assert!(href.contains("marker="), "{href}");
                path = href
                    .split_once("/v2.0/")
                    .map(|(_, p)| format!("/v2.0/{p}"))
                    .unwrap();
            }
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(seen, ids(&by_name), "pages cover the list once, in order");
    assert!(pages >= 3);

    // A marker picks up after that object.
    let after = api
        .list(
            "ports",
            &format!("sort_key=name&limit=2&marker={}", id(&by_name[4])),
        )
        .await;
    assert_eq!(ids(&after), ids(&by_name[5..7]));
}
