//! OpenStack's own network API tests (PyPI `tempest`) against wyvernd behind a real Keystone:
//! wyvernd is the `network` endpoint of Keystone's catalog and `api_extensions` is what
//! wyvernd itself lists. A fixed, fast subset runs with every `cargo test`; the whole
//! `tempest.api.network` suite runs with `bench/run-tempest.sh` (an ignored test here).
//!
//! The report names every skipped test with tempest's reason (almost always an extension
//! wyvernd does not list, or a feature switched off in the config: IPv6, external networks).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::keystone::Cloud;
use wyvern_testkit::keystone::{ADMIN_PASSWORD, REGION};

/// The CI subset: network, subnet, port and router lifecycles, tags, extensions, versions,
/// external networks, the agent list and router gateway errors.
const SUBSET: &str = r"^tempest\.api\.network\.(test_networks\.NetworksTest\.|test_ports\.PortsTestJSON\.|test_routers\.RoutersTest\.test_(create_show_list_update_delete_router|add_remove_router_interface_with_subnet_id|router_interface_port_update_with_fixed_ip)|test_tags\.TagsTest\.|test_extensions\.|test_versions\.|admin\.test_external_network_extension\.|test_agent_management_negative\.|test_routers_negative\.RoutersNegativeTest\.test_router_add_gateway_)";

/// Counts and details of one tempest run.
#[derive(Debug, Default)]
struct Outcome {
    passed: usize,
    skipped: usize,
    failed: usize,
    /// reason -> tests
    skips: BTreeMap<String, Vec<String>>,
    failures: Vec<String>,
    output: String,
}

fn parse(output: &str) -> Outcome {
    let mut o = Outcome {
        output: output.to_string(),
        ..Outcome::default()
    };
    let count = |key: &str| -> usize {
        output
            .lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    o.passed = count("- Passed:");
    o.skipped = count("- Skipped:");
    o.failed = count("- Failed:");
    for line in output.lines() {
        // `{0} tempest.api.network.x.Class.test_y [0.1s] ... ok` (or SKIPPED: why / FAILED)
        let Some((name, rest)) = line.split_once(" ... ") else {
            continue;
        };
        let name = name
            .trim_start_matches(|c: char| c == '{' || c.is_ascii_digit() || c == '}')
            .trim();
        let name = name.split(" [").next().unwrap_or(name).to_string();
        if let Some(why) = rest.strip_prefix("SKIPPED: ") {
            o.skips
                .entry(why.trim().to_string())
                .or_default()
                .push(name);
        } else if rest.starts_with("FAILED") {
            o.failures.push(name);
        }
    }
    o
}

impl Outcome {
    fn report(&self) -> String {
        let mut r = format!(
            "tempest: {} passed, {} skipped, {} failed\n",
            self.passed, self.skipped, self.failed
        );
        for (why, tests) in &self.skips {
            r.push_str(&format!("skipped ({}): {why}\n", tests.len()));
            for t in tests {
                r.push_str(&format!("    {t}\n"));
            }
        }
        for f in &self.failures {
            r.push_str(&format!("FAILED: {f}\n"));
        }
        r
    }
}

/// Configures tempest against `c` and runs `regex`.
async fn run_tempest(c: &Cloud, regex: &str, concurrency: usize) -> Outcome {
    // The Keystone is shared with other tests (the CLI test registers `network`), and tempest
    // takes the first catalog service of its type: a type of this run's own.
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let catalog_type = format!("network-tempest-{}", RUNS.fetch_add(1, Ordering::Relaxed));
    c.ks.register_endpoint(&catalog_type, "wyvern-tempest", &c.w.url())
        .expect("wyvernd in the catalog");
    let admin = c.admin();
    let exts = admin.get("/v2.0/extensions").await.ok(200);
    let aliases: Vec<&str> = exts["extensions"]
        .as_array()
        .expect("extension list")
        .iter()
        .filter_map(|e| e["alias"].as_str())
        .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let ws = dir.path().join("ws");
    let tempest = c.ks.venv().bin("tempest");
    let out = Command::new(&tempest)
        .arg("init")
        .arg("--workspace-path")
        .arg(dir.path().join("workspace.yaml"))
        .arg(&ws)
        .output()
        .expect("tempest init runs");
    assert!(
        out.status.success(),
        "tempest init failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    write_conf(
        &ws.join("etc/tempest.conf"),
        &c.ks.url(),
        &aliases.join(","),
        &catalog_type,
        &ws,
    );
    let out = Command::new(&tempest)
        .current_dir(&ws)
        .args(["run", "--regex", regex, "--concurrency"])
        .arg(concurrency.to_string())
        .output()
        .expect("tempest run runs");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let o = parse(&text);
    let report = o.report();
    println!("{report}");
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let _ = std::fs::write(target.join("tempest-report.txt"), &report);
    let _ = std::fs::write(target.join("tempest-output.txt"), &text);
    o
}

fn write_conf(path: &Path, keystone: &str, extensions: &str, catalog_type: &str, ws: &Path) {
    let conf = format!(
        "[DEFAULT]\nlog_dir = {ws}\nlog_file = tempest.log\n\
         [auth]\nadmin_username = admin\nadmin_password = {ADMIN_PASSWORD}\n\
         admin_project_name = admin\nadmin_domain_name = Default\n\
         use_dynamic_credentials = true\ncreate_isolated_networks = false\n\
         [identity]\nuri_v3 = {keystone}\nauth_version = v3\nregion = {REGION}\n\
         [identity-feature-enabled]\napi_v3 = true\n\
         [network]\ncatalog_type = {catalog_type}\nregion = {REGION}\n\
         project_network_cidr = 10.100.0.0/16\nproject_network_mask_bits = 28\n\
         [network-feature-enabled]\napi_extensions = {extensions}\nipv6 = false\n\
         ipv6_subnet_attributes = false\nport_security = true\nfloating_ips = false\n\
         [service_available]\nneutron = true\nnova = false\ncinder = false\n\
         glance = false\nswift = false\n\
         [validation]\nrun_validation = false\n",
        ws = ws.display()
    );
    std::fs::write(path, conf).expect("tempest.conf written");
}

#[tokio::test]
async fn tempest_network_subset_passes() {
    let c = Cloud::start(10);
    let o = run_tempest(&c, SUBSET, 2).await;
    assert!(o.passed >= 20, "too few tempest tests ran:\n{}", o.output);
    assert_eq!(o.failed, 0, "{}\n{}", o.report(), o.output);
}

/// The whole `tempest.api.network` suite (or `TEMPEST_REGEX`): `bench/run-tempest.sh`.
#[tokio::test]
#[ignore = "several minutes: run with bench/run-tempest.sh"]
async fn tempest_network_full() {
    let regex =
        std::env::var("TEMPEST_REGEX").unwrap_or_else(|_| r"^tempest\.api\.network".to_string());
    let c = Cloud::start(10);
    let o = run_tempest(&c, &regex, 2).await;
    assert!(o.passed > 0, "no tempest test passed:\n{}", o.output);
    assert_eq!(o.failed, 0, "{}", o.report());
}
