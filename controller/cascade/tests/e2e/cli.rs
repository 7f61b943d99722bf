//! `wyvern cascade ...` (the real `wyvern` binary) against a running top.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};
use wyvern_testkit::cascade::workspace_bin;

use crate::common::*;

fn wyvern(admin: &str, args: &[&str]) -> (bool, String) {
    let bin = workspace_bin(
        "wyvern-daemon",
        "wyvern",
        Path::new(env!("CARGO_TARGET_TMPDIR")),
    )
    .expect("wyvern builds");
    let out = Command::new(bin)
        .env_remove("WYVERN_CASCADE_URL")
        .args(["cascade", "--admin-url", admin])
        .args(args)
        .output()
        .expect("wyvern runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wyvern_cascade_lists_pods_routings_and_jobs_and_redoes_a_job() {
    let sites = Sites::start().await.expect("sites start");
    let admin = sites.top.admin_url();
    let (ok, out) = wyvern(&admin, &["pod", "list"]);
    assert!(
        ok && out.contains("RegionA") && out.contains("RegionB"),
        "{out}"
    );

    let top = sites.top();
    let net = top.create("network", json!({})).await.unwrap();
    top.create(
        "subnet",
        json!({"network_id": id(&net), "cidr": "10.50.0.0/24"}),
    )
    .await
    .unwrap();
    top.create(
        "port",
        json!({"network_id": id(&net), "binding:host_id": "RegionA"}),
    )
    .await
    .unwrap();
    sites.settled().await.unwrap();

    let (ok, out) = wyvern(&admin, &["--json", "routing", "list"]);
    assert!(ok, "{out}");
    let routings: Value = serde_json::from_str(&out).expect("JSON routings");
    assert_eq!(routings.as_array().map(Vec::len), Some(3), "{out}");

    let (ok, out) = wyvern(&admin, &["--json", "job", "list", "--status", "Success"]);
    assert!(ok, "{out}");
    let jobs: Value = serde_json::from_str(&out).expect("JSON jobs");
    let job = jobs[0]["id"].as_str().expect("a finished job").to_owned();
    let (ok, out) = wyvern(&admin, &["job", "redo", &job]);
    assert!(ok, "{out}");
    sites.settled().await.unwrap();
    assert_eq!(
        sites.routings().await.unwrap().len(),
        3,
        "a redo duplicates nothing"
    );
    assert_eq!(sites.bottom_a().list("ports").await.unwrap().len(), 1);

    // A pod holding copies cannot be deleted; an empty one can.
    let (ok, out) = wyvern(&admin, &["pod", "delete", &sites.pod_a]);
    assert!(!ok && out.contains("409"), "{out}");
    let (ok, out) = wyvern(&admin, &["pod", "delete", &sites.pod_b]);
    assert!(ok, "{out}");
    let (_, out) = wyvern(&admin, &["pod", "list"]);
    assert!(!out.contains("RegionB"), "{out}");
}
