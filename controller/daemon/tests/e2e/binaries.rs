//! The `wyvern` CLI and wyvernd's configuration sources, through the real binaries.

use std::process::Command;

use serde_json::{json, Value};

use crate::common::*;

fn wyvern(url: &str, args: &[&str]) -> std::process::Output {
    Command::new(WYVERN)
        .env_remove("WYVERN_TOKEN")
        .env("WYVERN_URL", url)
        .args(args)
        .output()
        .expect("wyvern runs")
}

fn stdout_json(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "wyvern failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test]
async fn wyvern_demo_builds_the_topology_once() {
    let w = start();
    let first = wyvern(&w.url(), &["demo"]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let text = String::from_utf8_lossy(&first.stdout);
    assert!(text.contains("created network demo-net1"), "{text}");
    let again = wyvern(&w.url(), &["demo"]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(
        text.contains("exists  network demo-net1") && !text.contains("created"),
        "{text}"
    );

    let api = Api::of(&w);
    let nets = api.list("networks", "").await;
    assert_eq!(nets.len(), 2);
    let subs = api.list("subnets", "").await;
    let mut cidrs: Vec<&str> = subs.iter().filter_map(|s| s["cidr"].as_str()).collect();
    cidrs.sort();
    assert_eq!(cidrs, ["10.0.1.0/24", "10.0.2.0/24"]);
    let routers = api.list("routers", "").await;
    assert_eq!(routers.len(), 1);
    let rports = api
        .list("ports", &format!("device_id={}", id(&routers[0])))
        .await;
    let mut gws: Vec<String> = rports.iter().flat_map(ips).collect();
    gws.sort();
    assert_eq!(gws, ["10.0.1.1", "10.0.2.1"]);
    let ports = api.list("ports", "").await;
    let mut names: Vec<&str> = ports
        .iter()
        .filter(|p| p["device_owner"] != json!("network:router_interface"))
        .filter_map(|p| p["name"].as_str())
        .collect();
    names.sort();
    assert_eq!(names, ["demo-vm1", "demo-vm2", "demo-vm3"]);

    // The listing commands see the same topology.
    let listed = stdout_json(&wyvern(
        &w.url(),
        &["--json", "port", "list", "--network", "demo-net1"],
    ));
    assert_eq!(
        listed.as_array().unwrap().len(),
        3,
        "two VMs and the router's interface: {listed}"
    );
    let table = wyvern(&w.url(), &["router", "list"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("demo-router"));
}

#[tokio::test]
async fn wyvern_crud_and_readable_errors() {
    let w = start();
    let url = w.url();
    let net = stdout_json(&wyvern(&url, &["--json", "network", "create", "blue"]));
    assert_eq!(net["name"], json!("blue"));
    let sub = stdout_json(&wyvern(
        &url,
        &[
            "--json",
            "subnet",
            "create",
            "blue-sub",
            "--network",
            "blue",
            "--cidr",
            "10.30.0.0/24",
            "--allocation-pool",
            "start=10.30.0.100,end=10.30.0.200",
            "--dns-nameserver",
            "10.30.0.2",
            "--host-route",
            "destination=10.31.0.0/16,gateway=10.30.0.254",
            "--no-dhcp",
        ],
    ));
    assert_eq!(sub["enable_dhcp"], json!(false));
    assert_eq!(
        sub["host_routes"],
        json!([{"destination": "10.31.0.0/16", "nexthop": "10.30.0.254"}])
    );
    let port = stdout_json(&wyvern(
        &url,
        &[
            "--json",
            "port",
            "create",
            "vm",
            "--network",
            "blue",
            "--fixed-ip",
            "subnet=blue-sub,ip-address=10.30.0.150",
        ],
    ));
    assert_eq!(ips(&port), ["10.30.0.150"]);
    stdout_json(&wyvern(&url, &["--json", "router", "create", "r"]));
    let iface = stdout_json(&wyvern(
        &url,
        &[
            "--json",
            "router",
            "add-interface",
            "r",
            "--subnet",
            "blue-sub",
        ],
    ));
    assert_eq!(iface["subnet_id"], sub["id"]);
    let r = stdout_json(&wyvern(
        &url,
        &[
            "--json",
            "router",
            "set-routes",
            "r",
            "--route",
            "destination=10.40.0.0/16,gateway=10.30.0.150",
        ],
    ));
    assert_eq!(
        r["routes"],
        json!([{"destination": "10.40.0.0/16", "nexthop": "10.30.0.150"}])
    );

    // A Neutron error: non-zero exit, type and message on stderr.
    let dup = wyvern(
        &url,
        &[
            "port",
            "create",
            "dup",
            "--network",
            "blue",
            "--fixed-ip",
            "subnet=blue-sub,ip-address=10.30.0.150",
        ],
    );
    assert!(!dup.status.success());
    let err = String::from_utf8_lossy(&dup.stderr);
    assert!(
        err.contains("409") && err.contains("IpAddressAlreadyAllocated"),
        "{err}"
    );
    let gone = wyvern(&url, &["network", "show", "nothing-by-this-name"]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("failed to find network"));

    for args in [
        &["router", "set-routes", "r"][..],
        &["router", "remove-interface", "r", "--subnet", "blue-sub"],
        &["router", "delete", "r"],
        &["port", "delete", "vm"],
        &["subnet", "delete", "blue-sub"],
        &["network", "delete", "blue"],
    ] {
        let out = wyvern(&url, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(Api::of(&w).list("networks", "").await.is_empty());
}

#[tokio::test]
async fn config_precedence_is_flag_then_env_then_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("wyvern.toml");
    std::fs::write(
        &cfg,
        "base_mac = \"02:cc:cc:00:00:00\"\nlog_format = \"json\"\n",
    )
    .unwrap();
    let cfg_arg = cfg.display().to_string();

    let mac_of_first_port = |w: &wyvern_testkit::wyvernd::Wyvernd| {
        let url = w.url();
        async move {
            let api = Api::new(url);
            let net = api.network("n").await;
            api.port(&net, "p").await["mac_address"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };

    // File alone.
    let w = options().arg("--config").arg(&cfg_arg).start().unwrap();
    assert!(mac_of_first_port(&w).await.starts_with("02:cc:cc:"));
    let log = std::fs::read_to_string(w.log_path()).unwrap();
    let first = log.lines().next().expect("a log line");
    serde_json::from_str::<Value>(first)
        .unwrap_or_else(|e| panic!("log_format=json from the file ({e}): {first}"));
    drop(w);
    // Environment beats the file.
    let w = options()
        .arg("--config")
        .arg(&cfg_arg)
        .env("WYVERN_BASE_MAC", "02:ee:ee:00:00:00")
        .start()
        .unwrap();
    assert!(mac_of_first_port(&w).await.starts_with("02:ee:ee:"));
    drop(w);
    // A flag beats both.
    let w = options()
        .arg("--config")
        .arg(&cfg_arg)
        .env("WYVERN_BASE_MAC", "02:ee:ee:00:00:00")
        .arg("--base-mac")
        .arg("02:ff:ff:00:00:00")
        .start()
        .unwrap();
    assert!(mac_of_first_port(&w).await.starts_with("02:ff:ff:"));
}

#[test]
fn wyvernd_refuses_a_bad_config_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "api_listen = \"not an address\"\n").unwrap();
    let out = Command::new(WYVERND)
        .arg("--config")
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("failed to parse config file"), "{err}");
}
