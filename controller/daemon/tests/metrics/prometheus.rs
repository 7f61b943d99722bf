//! The real Prometheus server scraping wyvernd with the shipped scrape config and rules.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use anyhow::Context;
use serde_json::Value;
use wyvern_testkit::poll::wait_for;

use crate::common::{docs_dir, http_get, run, url_encode, Host, DEADLINE};

/// A Prometheus server on a free port with its own storage, stopped on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus with docs/prometheus/prometheus.yml, its target rewritten to
    /// `target` and its intervals shortened to 1 s (the only changes), and its rules.
    fn start(target: SocketAddr) -> Prometheus {
        let dir = tempfile::Builder::new()
            .prefix("prometheus-test-")
            .tempdir()
            .expect("temp dir");
        let shipped = std::fs::read_to_string(docs_dir().join("prometheus/prometheus.yml"))
            .expect("shipped scrape config");
        let mut config = shipped.clone();
        for (from, to) in [
            ("- 127.0.0.1:9464", format!("- {target}")),
            ("scrape_interval: 15s", "scrape_interval: 1s".to_owned()),
            (
                "evaluation_interval: 15s",
                "evaluation_interval: 1s".to_owned(),
            ),
            ("scrape_timeout: 5s", "scrape_timeout: 1s".to_owned()),
        ] {
            assert!(config.contains(from), "the shipped config has {from:?}");
            config = config.replace(from, &to);
        }
        std::fs::write(dir.path().join("prometheus.yml"), config).expect("config written");
        std::fs::copy(
            docs_dir().join("prometheus/alerts.yml"),
            dir.path().join("alerts.yml"),
        )
        .expect("rules copied");
        // A free port: bind, read, release (Prometheus cannot report a port-0 address).
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("prometheus starts (apt-get install prometheus)");
        let p = Prometheus { child, addr, dir };
        wait_for("Prometheus to be ready", DEADLINE, || {
            http_get(p.addr, "/-/ready").ok().filter(|(s, _)| *s == 200)
        })
        .with_context(|| p.log())
        .unwrap();
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `GET /api/v1/<path>` as JSON, `data` only; `Err` with Prometheus's message.
    fn api(&self, path_and_query: &str) -> anyhow::Result<Value> {
        let (status, body) = http_get(self.addr, &format!("/api/v1/{path_and_query}"))?;
        let v: Value = serde_json::from_str(&body)
            .with_context(|| format!("failed to parse the answer of {path_and_query}: {body}"))?;
        anyhow::ensure!(
            status == 200 && v["status"] == "success",
            "{path_and_query}: HTTP {status}: {body}"
        );
        Ok(v["data"].clone())
    }

    /// An instant query: labels -> value of every series of the result.
    fn query(&self, q: &str) -> anyhow::Result<Vec<(BTreeMap<String, String>, f64)>> {
        let data = self.api(&format!("query?query={}", url_encode(q)))?;
        let result = data["result"].as_array().cloned().unwrap_or_default();
        Ok(result
            .iter()
            .filter_map(|r| {
                let labels = r["metric"]
                    .as_object()?
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect();
                let value = r["value"][1].as_str()?.parse().ok()?;
                Some((labels, value))
            })
            .collect())
    }

    /// The single value of `q`, once it has one.
    fn value(&self, q: &str) -> f64 {
        wait_for(
            &format!("Prometheus to have a value for {q}"),
            DEADLINE,
            || {
                let r = self.query(q).ok()?;
                (r.len() == 1).then(|| r[0].1)
            },
        )
        .with_context(|| self.log())
        .unwrap()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn prometheus_scrapes_wyvernd_with_the_shipped_config() {
    let host = Host::start();
    let prom = Prometheus::start(host.metrics);

    // The target is scraped successfully.
    wait_for("a successful scrape of wyvernd", DEADLINE, || {
        let t = prom.api("targets").ok()?;
        let active = t["activeTargets"].as_array()?.clone();
        active
            .iter()
            .find(|a| a["labels"]["job"] == "wyvernd" && a["health"] == "up")
            .cloned()
    })
    .with_context(|| prom.log())
    .unwrap();
    assert_eq!(prom.value(r#"up{job="wyvernd"}"#), 1.0);

    // Key series with sane values.
    assert_eq!(
        prom.value("wyvern_openflow_connected"),
        1.0,
        "bridge connected"
    );
    let flows = prom.value("sum(wyvern_pipeline_flows)");
    assert!(flows > 0.0, "flows compiled: {flows}");
    assert_eq!(
        prom.value(r#"wyvern_openflow_flows{state="installed"}"#),
        prom.value(r#"wyvern_openflow_flows{state="desired"}"#),
        "everything desired is installed"
    );
    assert_eq!(prom.value("wyvern_openflow_sync_differences"), 0.0);
    // ...and that is what the switch really holds.
    let on_switch = host.flow_dump().unwrap().len() as f64;
    assert_eq!(
        prom.value(r#"wyvern_openflow_flows{state="installed"}"#),
        on_switch,
        "installed flows as exported vs ovs-ofctl dump-flows"
    );
    assert!(prom.value(r#"wyvern_openflow_flow_mods_total{command="add"}"#) >= flows);
    assert!(prom.value(r#"wyvern_store_keys{kind="port"}"#) >= 3.0);
    assert_eq!(prom.value(r#"wyvern_store_keys{kind="router"}"#), 1.0);
    assert!(prom.value("wyvern_port_bindings") >= 3.0);
    assert!(prom.value("wyvern_store_revision") > 0.0);
    assert!(prom.value("process_resident_memory_bytes") > 1e6);
    assert!(prom.value("process_open_fds") > 0.0);
    let stages = prom
        .query(r#"wyvern_pipeline_flows{backend="openflow"} > 0"#)
        .unwrap();
    assert!(stages.len() >= 4, "flows in several stages: {stages:?}");

    // API requests are counted by resource: the count grows after requests.
    let q = r#"sum(wyvern_api_requests_total{resource="networks",method="GET",status="200"})"#;
    let before = prom.value(q);
    for _ in 0..5 {
        let (status, _) = http_get(host.wyvernd.addr(), "/v2.0/networks").unwrap();
        assert_eq!(status, 200);
    }
    wait_for(
        "the request count to grow by 5 in Prometheus",
        DEADLINE,
        || {
            let r = prom.query(q).ok()?;
            (r.first()?.1 >= before + 5.0).then_some(())
        },
    )
    .with_context(|| prom.log())
    .unwrap();
    // No raw id ever became a label value.
    let resources = prom
        .query("count by (resource) (wyvern_api_requests_total)")
        .unwrap();
    for (labels, _) in &resources {
        let r = &labels["resource"];
        assert!(
            r.chars()
                .all(|c| c.is_ascii_lowercase() || c == '-' || c == '_'),
            "resource label {r:?}"
        );
    }

    // The shipped rules load and evaluate on real data without errors, and none fires on a
    // healthy host.
    wait_for("every alert rule evaluated", DEADLINE, || {
        let rules = prom.api("rules").ok()?;
        let all: Vec<Value> = rules["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        (all.len() == 7
            && all
                .iter()
                .all(|r| r["health"] == "ok" && r["lastEvaluation"] != "0001-01-01T00:00:00Z"))
        .then_some(())
    })
    .with_context(|| prom.log())
    .unwrap();
    let alerts = prom.api("alerts").unwrap();
    assert_eq!(
        alerts["alerts"].as_array().map(Vec::len),
        Some(0),
        "no alert on a healthy host: {alerts}"
    );

    // Every dashboard query is valid PromQL that Prometheus evaluates against wyvernd.
    for (dashboard, expr) in crate::docs::dashboard_queries() {
        // Grafana's `label_values(metric, label)` is not PromQL: ask for the same series.
        let expr = match expr
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
            .and_then(|r| r.split_once(','))
        {
            Some((metric, label)) => format!("count by ({}) ({metric})", label.trim()),
            None => expr,
        };
        let q = expr
            .replace("$__rate_interval", "1m")
            .replace("$__interval", "1m")
            .replace("$instance", ".*")
            .replace("$job", "wyvernd");
        prom.query(&q)
            .unwrap_or_else(|e| panic!("{dashboard}: query {expr:?} fails: {e}"));
    }
}

#[test]
fn promtool_checks_config_rules_and_rule_tests() {
    let dir = docs_dir().join("prometheus");
    for args in [
        vec!["check", "config", "prometheus.yml"],
        vec!["check", "rules", "alerts.yml"],
        vec!["test", "rules", "alerts_test.yml"],
    ] {
        let (ok, out) = run(Command::new("promtool").args(&args).current_dir(&dir));
        assert!(ok, "promtool {args:?} failed:\n{out}");
        assert!(out.contains("SUCCESS"), "promtool {args:?}:\n{out}");
    }
}

#[test]
fn promtool_check_metrics_accepts_wyvernd_output() {
    let host = Host::start();
    let text = host.scrape().unwrap();
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(text.as_bytes()).expect("metrics written");
    }
    let out = child.wait_with_output().expect("promtool finishes");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool check metrics:\n{report}");
    assert!(report.trim().is_empty(), "lint findings:\n{report}");
}
