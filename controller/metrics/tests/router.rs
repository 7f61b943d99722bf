//! The layer and `/metrics` through a real axum router (tower `oneshot`, no sockets).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;
use wyvern_metrics::{metrics_router, new_registry, HttpMetrics};

async fn body_text(res: axum::response::Response) -> String {
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 24)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn requests_are_counted_by_resource_method_and_status() {
    let registry = new_registry().unwrap();
    let http = HttpMetrics::neutron(&registry).unwrap();
    let app = axum::Router::new()
        .route("/v2.0/networks", axum::routing::get(|| async { "[]" }))
        .fallback(|| async { (StatusCode::NOT_FOUND, "no") })
        .layer(http.layer())
        .merge(metrics_router(registry.clone()));

    for path in [
        "/v2.0/networks",
        "/v2.0/networks",
        "/v2.0/ports/0190f3c2-0000-7000-8000-000000000001",
    ] {
        let req = Request::get(path).body(Body::empty()).unwrap();
        app.clone().oneshot(req).await.unwrap();
    }
    let res = app
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = body_text(res).await;
    assert!(
        text.contains(
            r#"wyvern_api_requests_total{method="GET",resource="networks",status="200"} 2"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"wyvern_api_requests_total{method="GET",resource="ports",status="404"} 1"#),
        "{text}"
    );
    assert!(text.contains(
        r#"wyvern_api_request_duration_seconds_count{method="GET",resource="networks"} 2"#
    ));
    // No id ever becomes a label value.
    assert!(!text.contains("0190f3c2"));
    // The process collector is registered.
    assert!(text.contains("process_resident_memory_bytes"), "{text}");
    assert!(text.contains("process_open_fds"));
}

#[test]
fn on_scrape_reads_values_at_collection_time() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let source = Arc::new(AtomicU64::new(5));
    let counter = wyvern_metrics::build::counter("wyvern_test_things_total", "Things.").unwrap();
    let registry = wyvern_metrics::prometheus::Registry::new();
    let (c, s) = (counter.clone(), source.clone());
    registry
        .register(Box::new(wyvern_metrics::OnScrape::new(
            vec![Box::new(counter)],
            move || wyvern_metrics::set_counter(&c, s.load(Ordering::Relaxed)),
        )))
        .unwrap();
    assert!(wyvern_metrics::encode(&registry)
        .unwrap()
        .contains("wyvern_test_things_total 5"));
    source.store(9, Ordering::Relaxed);
    assert!(wyvern_metrics::encode(&registry)
        .unwrap()
        .contains("wyvern_test_things_total 9"));
    // A restarted source never moves a counter down.
    source.store(1, Ordering::Relaxed);
    assert!(wyvern_metrics::encode(&registry)
        .unwrap()
        .contains("wyvern_test_things_total 9"));
}
