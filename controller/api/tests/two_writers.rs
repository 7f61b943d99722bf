//! Two northbound services (two API servers) on ONE store, each with its own in-memory
//! topology: concurrent port creates on the same network through both never hand out an
//! IP or a MAC twice (the head guard makes the loser re-validate), no request fails, and
//! each service sees the other's writes through its watch. The store is the embedded one
//! shared in-process; the etcd version of this story is the daemon's e2e test.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt;
use wyvern_api::{router, Auth, NbConfig, NbService};
use wyvern_store::{RedbOptions, RedbStore, Store};

struct Node {
    svc: Arc<NbService>,
    app: axum::Router,
}

impl Node {
    async fn open(store: Arc<dyn Store>) -> Node {
        let svc = NbService::open(store, NbConfig::default())
            .await
            .expect("open the northbound service");
        let app = router(
            svc.clone(),
            Auth::NoAuth {
                default_project: "demo".into(),
            },
        );
        Node { svc, app }
    }

    async fn req(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let body = body.map_or_else(Body::empty, |v| Body::from(v.to_string()));
        let resp = self
            .app
            .clone()
            .oneshot(
                Request::builder()
                    .method(method)
                    .uri(path)
                    .header("host", "test:9696")
                    .body(body)
                    .expect("request"),
            )
            .await
            .expect("answer");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body");
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("JSON answer")
        };
        (status, v)
    }

    async fn create(&self, kind: &str, body: Value) -> Value {
        let (s, v) = self
            .req(
                "POST",
                &format!("/v2.0/{kind}s"),
                Some(json!({ kind: body })),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v[kind].clone()
    }

    fn port_count(&self) -> usize {
        self.svc.read(|t| t.ports().count())
    }
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_services_on_one_store_never_hand_out_an_address_twice() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn Store> =
        RedbStore::open(&dir.path().join("s.redb"), RedbOptions::default()).expect("open store");
    let a = Arc::new(Node::open(store.clone()).await);
    let b = Arc::new(Node::open(store.clone()).await);

    // A network created through A is usable through B once B's follower applied it.
    let n = a.create("network", json!({"name": "shared"})).await;
    let nid = n["id"].as_str().expect("id").to_owned();
    wait_until("B to see A's network", || {
        b.svc.read(|t| t.networks().count()) == 1
    })
    .await;
    // A small subnet: the allocators of both services race for the same few addresses.
    b.create("subnet", json!({"network_id": nid, "cidr": "10.9.0.0/24"}))
        .await;
    wait_until("A to see B's subnet", || {
        a.svc.read(|t| t.subnets().count()) == 1
    })
    .await;

    let mut tasks = Vec::new();
    for i in 0..16 {
        let node = if i % 2 == 0 { a.clone() } else { b.clone() };
        let nid = nid.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..10 {
                let (s, v) = node
                    .req(
                        "POST",
                        "/v2.0/ports",
                        Some(json!({"port": {"network_id": nid}})),
                    )
                    .await;
                assert_eq!(
                    s,
                    StatusCode::CREATED,
                    "a racing create must be retried: {v}"
                );
                got.push((
                    v["port"]["fixed_ips"][0]["ip_address"]
                        .as_str()
                        .expect("ip")
                        .to_owned(),
                    v["port"]["mac_address"].as_str().expect("mac").to_owned(),
                ));
            }
            got
        }));
    }
    let (mut ips, mut macs) = (HashSet::new(), HashSet::new());
    for t in tasks {
        for (ip, mac) in t.await.expect("task") {
            assert!(ips.insert(ip.clone()), "IP {ip} handed out twice");
            assert!(macs.insert(mac.clone()), "MAC {mac} handed out twice");
        }
    }
    assert_eq!(ips.len(), 160);

    // Both services converge on the store's 160 ports.
    wait_until("both services to hold 160 ports", || {
        a.port_count() == 160 && b.port_count() == 160
    })
    .await;
    let (kvs, _) = store.range(wyvern_model::NET_PREFIX).await.expect("range");
    let ports = kvs
        .iter()
        .filter(|kv| {
            matches!(
                wyvern_model::parse_key(&kv.key),
                Some((wyvern_model::Kind::Port, _))
            )
        })
        .count();
    assert_eq!(ports, 160);
    let (s, v) = b.req("GET", "/v2.0/ports", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["ports"].as_array().map(Vec::len), Some(160));
}
