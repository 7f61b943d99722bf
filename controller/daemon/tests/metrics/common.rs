//! One host: a private OVS (dummy datapath) programmed by a real wyvernd that runs the demo
//! topology with its three VM ports plugged in. Process plumbing only; assertions live in
//! the tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use wyvern_testkit::ovs::OvsSandbox;
use wyvern_testkit::poll::wait_for;
use wyvern_testkit::wyvernd::{Wyvernd, WyverndOptions};

pub const WYVERND: &str = env!("CARGO_BIN_EXE_wyvernd");
pub const WYVERN: &str = env!("CARGO_BIN_EXE_wyvern");
pub const BRIDGE: &str = "br-int";
/// Generous: the machine is small and shared.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// The repository's docs/ directory.
pub fn docs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs")
}

/// wyvernd with the demo topology on a private OVS.
pub struct Host {
    pub wyvernd: Wyvernd,
    pub ovs: OvsSandbox,
    pub metrics: SocketAddr,
}

impl Host {
    /// Starts OVS and wyvernd (metrics on a free port), creates the demo topology with
    /// `wyvern demo`, plugs its VM ports and waits until their flows are installed.
    pub fn start() -> Host {
        let ovs = OvsSandbox::dummy().expect("OVS sandbox starts");
        let wyvernd = WyverndOptions::new(WYVERND)
            .arg("--metrics-listen")
            .arg("127.0.0.1:0")
            .switch(&ovs, BRIDGE, "wyvernd-of.sock")
            .start()
            .expect("wyvernd starts");
        let metrics = wyvernd
            .metrics_addr(DEADLINE)
            .expect("wyvernd logs its metrics address");
        let host = Host {
            wyvernd,
            ovs,
            metrics,
        };
        let out = host.wyvern(&["demo"]);
        assert!(out.status.success(), "wyvern demo failed: {out:?}");
        let ports = host.vm_ports();
        assert!(ports.len() >= 3, "the demo has three VM ports: {ports:?}");
        for (i, id) in ports.iter().enumerate() {
            host.ovs
                .add_dummy_port(BRIDGE, &format!("vm{i}"), Some(id))
                .expect("VM port plugged");
        }
        // Settled: every VM port bound, the bridge connected, and what ofctrl wants is what
        // the switch holds (read from /metrics itself, then checked against the switch).
        wait_for(
            "the VM ports bound and their flows installed",
            DEADLINE,
            || {
                let text = host.scrape().ok()?;
                let v = |name: &str| sample(&text, name);
                let desired = v("wyvern_openflow_flows{state=\"desired\"}")?;
                (v("wyvern_port_bindings")? >= ports.len() as f64
                    && v("wyvern_openflow_connected")? == 1.0
                    && desired > 0.0
                    && v("wyvern_openflow_flows{state=\"installed\"}")? == desired
                    && v("wyvern_pipeline_installed_revision")?
                        == v("wyvern_pipeline_compiled_revision")?)
                .then_some(())
            },
        )
        .with_context(|| host.wyvernd.log_tail())
        .unwrap();
        host
    }

    /// Runs the `wyvern` CLI against this wyvernd.
    pub fn wyvern(&self, args: &[&str]) -> std::process::Output {
        Command::new(WYVERN)
            .arg("--url")
            .arg(self.wyvernd.url())
            .args(args)
            .env_remove("WYVERN_TOKEN")
            .output()
            .expect("wyvern runs")
    }

    /// Ids of the demo's VM ports (not router interfaces).
    pub fn vm_ports(&self) -> Vec<String> {
        let out = self.wyvern(&["--json", "port", "list"]);
        assert!(out.status.success(), "wyvern port list: {out:?}");
        let v: Value = serde_json::from_slice(&out.stdout).expect("port list is JSON");
        let list = v
            .get("ports")
            .and_then(Value::as_array)
            .or_else(|| v.as_array())
            .cloned()
            .unwrap_or_default();
        list.iter()
            .filter(|p| p["device_owner"].as_str() != Some("network:router_interface"))
            .filter_map(|p| p["id"].as_str().map(str::to_owned))
            .collect()
    }

    pub fn flow_dump(&self) -> anyhow::Result<Vec<String>> {
        self.ovs.dump_flows(BRIDGE)
    }

    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.metrics)
    }

    /// One scrape of /metrics, as text.
    pub fn scrape(&self) -> anyhow::Result<String> {
        let (status, body) = http_get(self.metrics, "/metrics")?;
        anyhow::ensure!(status == 200, "GET /metrics: HTTP {status}");
        Ok(body)
    }
}

/// The value of the sample written exactly `series` (name plus `{labels}` as wyvernd
/// prints them, sorted by label name) in a text-format scrape.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?;
        let v = rest.strip_prefix(' ')?;
        v.trim().parse().ok()
    })
}

/// A plain HTTP/1.0 GET (no client library needed for loopback tests): status and body.
pub fn http_get(addr: SocketAddr, path_and_query: &str) -> anyhow::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("failed to connect to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path_and_query} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("failed to find the end of the HTTP head")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("failed to read the HTTP status")?;
    Ok((status, body.to_owned()))
}

/// Percent-encodes a query parameter value.
pub fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Runs a command and returns (success, stdout + stderr) for assertions.
pub fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("command runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
