//! `wyvern status` summarises one host from its /metrics.

use serde_json::Value;

use crate::common::Host;

#[test]
fn wyvern_status_summarises_a_running_host() {
    let host = Host::start();
    let url = host.metrics_url();
    let out = host.wyvern(&["status", "--metrics-url", &url]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "wyvern status: {out:?}");
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{text}"))
            .to_owned()
    };
    assert!(line("openflow").contains(" connected,"), "{text}");
    assert!(line("openflow").contains(" 0 sync differences"), "{text}");
    let flows: u64 = line("pipeline")
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("flow count in {text}"));
    assert!(flows > 0, "{text}");
    assert!(line("store").contains("1 routers"), "{text}");
    assert!(line("offload").contains("no back end active"), "{text}");

    let out = host.wyvern(&["--json", "status", "--metrics-url", &url]);
    assert!(out.status.success(), "wyvern --json status: {out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("status --json is JSON");
    assert_eq!(v["openflow"]["connected"], true);
    assert_eq!(v["pipeline"]["flows"].as_f64(), Some(flows as f64));
    assert!(
        v["store"]["keys"]["port"].as_f64().unwrap_or(0.0) >= 3.0,
        "{v}"
    );
    assert!(
        v["pipeline"]["bound_ports"].as_f64().unwrap_or(0.0) >= 3.0,
        "{v}"
    );

    // A wrong endpoint is an error with the URL, not a crash.
    let out = host.wyvern(&["status", "--metrics-url", "http://127.0.0.1:1/metrics"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("127.0.0.1:1"));
}
