//! Router-level tests of Neutron's default policy (admin, member, reader; owner-or-admin;
//! shared networks) and of the tag API, with token-file auth (Keystone's own tests live in
//! the daemon's e2e suite).

mod common;

use axum::http::StatusCode;
use common::{assert_error, Api};
use serde_json::{json, Value};
use wyvern_api::Auth;

fn auth(dir: &tempfile::TempDir) -> Auth {
    let path = dir.path().join("tokens.json");
    std::fs::write(
        &path,
        r#"{"tokens": {"adm": {"project_id": "admins", "roles": ["admin", "member", "reader"]},
                       "ma": {"project_id": "pa", "roles": ["member", "reader"]},
                       "ra": {"project_id": "pa", "roles": ["reader"]},
                       "mb": {"project_id": "pb", "roles": ["member", "reader"]}}}"#,
    )
    .unwrap();
    Auth::load_token_file(&path).unwrap()
}

async fn create(api: &Api, tok: &str, kind: &str, body: Value) -> Value {
    let (st, v) = api
        .req(
            "POST",
            &format!("/v2.0/{kind}s"),
            Some(tok),
            Some(json!({ kind: body })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v[kind].clone()
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn reader_reads_but_never_writes() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::new(auth(&dir)).await;
    let net = create(&api, "ma", "network", json!({"name": "a"})).await;
    let nid = id(&net);
    let sub = create(
        &api,
        "ma",
        "subnet",
        json!({"network_id": nid, "cidr": "10.1.0.0/24"}),
    )
    .await;
    let port = create(&api, "ma", "port", json!({"network_id": nid})).await;
    let router = create(&api, "ma", "router", json!({"name": "r"})).await;

    // The reader of the same project sees everything of it...
    for (coll, n) in [
        ("networks", 1),
        ("subnets", 1),
        ("ports", 1),
        ("routers", 1),
    ] {
        let (st, v) = api
            .req("GET", &format!("/v2.0/{coll}"), Some("ra"), None)
            .await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(v[coll].as_array().unwrap().len(), n, "{coll}: {v}");
    }
    // ...and may change nothing: 403 on its own project's objects.
    let denied = [
        ("POST", "/v2.0/networks".to_string(), json!({"network": {}})),
        (
            "POST",
            "/v2.0/subnets".to_string(),
            json!({"subnet": {"network_id": nid, "cidr": "10.2.0.0/24"}}),
        ),
        (
            "POST",
            "/v2.0/ports".to_string(),
            json!({"port": {"network_id": nid}}),
        ),
        ("POST", "/v2.0/routers".to_string(), json!({"router": {}})),
        (
            "PUT",
            format!("/v2.0/networks/{nid}"),
            json!({"network": {"name": "x"}}),
        ),
        (
            "PUT",
            format!("/v2.0/subnets/{}", id(&sub)),
            json!({"subnet": {"name": "x"}}),
        ),
        (
            "PUT",
            format!("/v2.0/ports/{}", id(&port)),
            json!({"port": {"name": "x"}}),
        ),
        (
            "PUT",
            format!("/v2.0/routers/{}", id(&router)),
            json!({"router": {"name": "x"}}),
        ),
        (
            "PUT",
            format!("/v2.0/routers/{}/add_router_interface", id(&router)),
            json!({"subnet_id": id(&sub)}),
        ),
        ("PUT", format!("/v2.0/networks/{nid}/tags/t1"), Value::Null),
    ];
    for (m, path, body) in denied {
        let body = (!body.is_null()).then_some(body);
        assert_error(
            api.req(m, &path, Some("ra"), body).await,
            403,
            "PolicyNotAuthorized",
        );
    }
    for path in [
        format!("/v2.0/ports/{}", id(&port)),
        format!("/v2.0/routers/{}", id(&router)),
        format!("/v2.0/subnets/{}", id(&sub)),
        format!("/v2.0/networks/{nid}"),
    ] {
        assert_error(
            api.req("DELETE", &path, Some("ra"), None).await,
            403,
            "PolicyNotAuthorized",
        );
    }
    // Nothing changed.
    let (_, v) = api
        .req("GET", &format!("/v2.0/networks/{nid}"), Some("ra"), None)
        .await;
    assert_eq!(v["network"]["name"], "a");
    assert_eq!(v["network"]["revision_number"], 1);
}

#[tokio::test]
async fn members_act_only_for_their_project_and_use_shared_networks() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::new(auth(&dir)).await;
    let a = create(&api, "ma", "network", json!({"name": "a"})).await;
    // Another project's objects do not exist for b (404, nothing leaks)...
    assert_error(
        api.req(
            "PUT",
            &format!("/v2.0/networks/{}", id(&a)),
            Some("mb"),
            Some(json!({"network": {"name": "x"}})),
        )
        .await,
        404,
        "NetworkNotFound",
    );
    assert_error(
        api.req(
            "DELETE",
            &format!("/v2.0/networks/{}", id(&a)),
            Some("mb"),
            None,
        )
        .await,
        404,
        "NetworkNotFound",
    );
    // ...nor may b create objects owned by a (403 as issue 12 asks; Neutron answers 400).
    assert_error(
        api.req(
            "POST",
            "/v2.0/routers",
            Some("mb"),
            Some(json!({"router": {"tenant_id": "pa"}})),
        )
        .await,
        403,
        "PolicyNotAuthorized",
    );
    // The admin may create for a project, and share.
    let shared = create(
        &api,
        "adm",
        "network",
        json!({"name": "pub", "shared": true, "project_id": "admins"}),
    )
    .await;
    create(
        &api,
        "adm",
        "subnet",
        json!({"network_id": id(&shared), "cidr": "10.9.0.0/24"}),
    )
    .await;
    // A shared network is visible to every project, and b may put ports on it.
    let (_, v) = api.req("GET", "/v2.0/networks", Some("mb"), None).await;
    let names: Vec<&str> = v["networks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["pub"]);
    let port = create(&api, "mb", "port", json!({"network_id": id(&shared)})).await;
    assert_eq!(port["project_id"], "pb");
    assert_eq!(port["fixed_ips"].as_array().unwrap().len(), 1);
    // b's port is b's: a does not see it, b may delete it.
    let (_, v) = api.req("GET", "/v2.0/ports", Some("ma"), None).await;
    assert_eq!(v["ports"], json!([]));
    // But only the owner (or admin) changes the shared network itself.
    assert_error(
        api.req(
            "PUT",
            &format!("/v2.0/networks/{}", id(&shared)),
            Some("mb"),
            Some(json!({"network": {"name": "mine"}})),
        )
        .await,
        403,
        "PolicyNotAuthorized",
    );
    let (st, _) = api
        .req(
            "DELETE",
            &format!("/v2.0/ports/{}", id(&port)),
            Some("mb"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn tag_api_lifecycle_and_filters() {
    let api = Api::noauth().await;
    let n1 = id(&api.create("network", json!({"name": "n1"})).await);
    let n2 = id(&api.create("network", json!({"name": "n2"})).await);
    let tags = |n: &str| format!("/v2.0/networks/{n}/tags");

    let (st, v) = api
        .req("PUT", &format!("{}/red", tags(&n1)), None, None)
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, _) = api.get(&format!("{}/red", tags(&n1))).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_error(
        api.get(&format!("{}/blue", tags(&n1))).await,
        404,
        "TagNotFound",
    );
    let (st, v) = api
        .put(&tags(&n2), json!({"tags": ["blue", "red", "blue"]}))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v, json!({"tags": ["blue", "red"]}));
    let (_, v) = api.get(&tags(&n2)).await;
    assert_eq!(v, json!({"tags": ["blue", "red"]}));
    // Tags are shown on the object and bump its revision.
    let (_, v) = api.get(&format!("/v2.0/networks/{n2}")).await;
    assert_eq!(v["network"]["tags"], json!(["blue", "red"]));
    assert_eq!(v["network"]["revision_number"], 2);

    let names = |v: &Value| -> Vec<String> {
        let mut n: Vec<String> = v["networks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap().to_string())
            .collect();
        n.sort();
        n
    };
    let (_, v) = api.get("/v2.0/networks?tags=red,blue").await;
    assert_eq!(names(&v), vec!["n2"]);
    let (_, v) = api.get("/v2.0/networks?tags-any=red").await;
    assert_eq!(names(&v), vec!["n1", "n2"]);
    let (_, v) = api.get("/v2.0/networks?not-tags=blue").await;
    assert_eq!(names(&v), vec!["n1"]);
    let (_, v) = api.get("/v2.0/networks?not-tags-any=red").await;
    assert!(names(&v).is_empty());

    let (st, _) = api.delete(&format!("{}/red", tags(&n2))).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_error(
        api.delete(&format!("{}/red", tags(&n2))).await,
        404,
        "TagNotFound",
    );
    let (st, _) = api.delete(&tags(&n1)).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (_, v) = api.get(&tags(&n1)).await;
    assert_eq!(v, json!({"tags": []}));
    // Other resources carry tags too; bad tags and unknown objects are refused.
    let r = id(&api.create("router", json!({})).await);
    let (st, _) = api
        .req("PUT", &format!("/v2.0/routers/{r}/tags/x%20y"), None, None)
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (_, v) = api.get(&format!("/v2.0/routers/{r}")).await;
    assert_eq!(v["router"]["tags"], json!(["x y"]));
    assert_error(
        api.put(&tags(&n1), json!({"tags": ["a,b"]})).await,
        400,
        "InvalidInput",
    );
    assert_error(
        api.get("/v2.0/networks/00000000-0000-0000-0000-000000000000/tags")
            .await,
        404,
        "NetworkNotFound",
    );
    // Only the network tag extension is advertised (no subnet pools for tag-ext).
    let (_, v) = api.get("/v2.0/extensions").await;
    let aliases: Vec<&str> = v["extensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["alias"].as_str().unwrap())
        .collect();
    assert!(aliases.contains(&"tag"));
    assert!(!aliases.contains(&"standard-attr-tag"));
}

/// `external-net`: only an admin sets `router:external` (403 for members); every project
/// sees external networks (and can filter on the attribute) but not their subnets, and may
/// not put ports on them. `agent`: the list is empty for everyone (no Neutron agents).
#[tokio::test]
async fn external_networks_and_the_empty_agent_list() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::new(auth(&dir)).await;
    assert_error(
        api.req(
            "POST",
            "/v2.0/networks",
            Some("ma"),
            Some(json!({"network": {"router:external": true}})),
        )
        .await,
        403,
        "PolicyNotAuthorized",
    );
    let ext = create(
        &api,
        "adm",
        "network",
        json!({"name": "public", "router:external": true}),
    )
    .await;
    assert_eq!(ext["router:external"], true);
    create(
        &api,
        "adm",
        "subnet",
        json!({"network_id": id(&ext), "cidr": "192.0.2.0/24"}),
    )
    .await;
    let own = create(&api, "ma", "network", json!({"name": "own"})).await;
    assert_eq!(own["router:external"], false);
    let (_, v) = api
        .req(
            "GET",
            "/v2.0/networks?router:external=True",
            Some("ma"),
            None,
        )
        .await;
    let ids: Vec<&str> = v["networks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![id(&ext).as_str()]);
    let (st, v) = api
        .req(
            "GET",
            &format!("/v2.0/networks/{}", id(&ext)),
            Some("mb"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["network"]["router:external"], true);
    let (_, v) = api.req("GET", "/v2.0/subnets", Some("mb"), None).await;
    assert_eq!(v["subnets"], json!([]));
    assert_error(
        api.req(
            "POST",
            "/v2.0/ports",
            Some("mb"),
            Some(json!({"port": {"network_id": id(&ext)}})),
        )
        .await,
        403,
        "PolicyNotAuthorized",
    );
    // A router gateway: unknown network 404, not external 400, external still 400 (no
    // gateways yet).
    let r = create(&api, "ma", "router", json!({"name": "r"})).await;
    let gw = |net: String| json!({"router": {"external_gateway_info": {"network_id": net}}});
    let path = format!("/v2.0/routers/{}", id(&r));
    assert_error(
        api.req("PUT", &path, Some("ma"), Some(gw(uuid_zero())))
            .await,
        404,
        "NetworkNotFound",
    );
    assert_error(
        api.req("PUT", &path, Some("ma"), Some(gw(id(&own)))).await,
        400,
        "BadRequest",
    );
    assert_error(
        api.req("PUT", &path, Some("ma"), Some(gw(id(&ext)))).await,
        400,
        "InvalidInput",
    );
    for tok in ["ma", "ra", "adm"] {
        let (st, v) = api.req("GET", "/v2.0/agents", Some(tok), None).await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(v["agents"], json!([]));
    }
    let (_, v) = api.req("GET", "/v2.0/extensions", Some("ma"), None).await;
    let aliases: Vec<&str> = v["extensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["alias"].as_str().unwrap())
        .collect();
    assert!(aliases.contains(&"external-net") && aliases.contains(&"agent"));
    assert!(!aliases.contains(&"ext-gw-mode"));
}

fn uuid_zero() -> String {
    "00000000-0000-0000-0000-000000000000".into()
}
