//! Shared by bench-dhcp and bench-reactive: a userspace OVS in its own namespace, a real
//! wyvernd on unix sockets, a JSON client, and namespaces with a veth on a bridge.
//! Everything is stopped and deleted on drop.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use wyvern_testkit::netns::Netns;
use wyvern_testkit::ovs::OvsSandbox;
use wyvern_testkit::poll::wait_until;
use wyvern_testkit::wyvernd::{Wyvernd, WyverndOptions};

pub const LONG: Duration = Duration::from_secs(120);

/// The wyvernd next to this executable, unless given.
pub fn default_wyvernd(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    let me = std::env::current_exe().context("failed to find this executable")?;
    Ok(me.with_file_name("wyvernd"))
}

/// Namespaces first (their veths go with them), then wyvernd, then OVS.
#[allow(dead_code)] // each benchmark uses its own part of the lab
pub struct Lab {
    pub namespaces: Vec<Netns>,
    pub wyvernd: Wyvernd,
    pub ovs: OvsSandbox,
    pub http: reqwest::Client,
    pub base: String,
}

impl Lab {
    /// OVS (netdev, own namespace) and wyvernd with `extra` flags; waits until br-int is
    /// programmed.
    #[allow(dead_code)] // bench-reactive starts its labs with `start_logging`
    pub fn start(wyvernd: &PathBuf, extra: &[&str]) -> anyhow::Result<Lab> {
        Lab::start_logging(wyvernd, extra, "warn")
    }

    /// [`Lab::start`] with wyvernd's `RUST_LOG` set to `rust_log` (a benchmark that reads
    /// samples from wyvernd's log turns on the lines it needs).
    pub fn start_logging(wyvernd: &PathBuf, extra: &[&str], rust_log: &str) -> anyhow::Result<Lab> {
        let ovs = OvsSandbox::netdev_in_new_netns().context("failed to start OVS")?;
        // ovs-vswitchd only connects to unix sockets inside its run dir.
        let of = format!("unix:{}", ovs.run_dir().join("of.sock").display());
        let mut opts = WyverndOptions::new(wyvernd)
            .arg("--ovsdb")
            .arg(ovs.db_target())
            .arg("--datapath-type")
            .arg("netdev")
            .arg("--openflow-listen")
            .arg(of)
            .arg("--bridge")
            .arg("br-int")
            .env("RUST_LOG", rust_log);
        for a in extra {
            opts = opts.arg(*a);
        }
        let wyvernd = opts.start().context("failed to start wyvernd")?;
        wait_until("wyvernd to program br-int", LONG, || {
            ovs.ofctl(&["dump-flows", "br-int", "table=0"])
                .map(|f| f.contains("priority=0"))
                .unwrap_or(false)
        })
        .with_context(|| wyvernd.log_tail())?;
        let base = wyvernd.url();
        Ok(Lab {
            namespaces: Vec::new(),
            wyvernd,
            ovs,
            http: reqwest::Client::new(),
            base,
        })
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        want: u16,
    ) -> anyhow::Result<Value> {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("failed to call {path}"))?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        if status != want {
            bail!("{path}: status {status}, want {want}: {text}");
        }
        Ok(if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)?
        })
    }

    pub async fn create(&self, kind: &str, attrs: Value) -> anyhow::Result<Value> {
        let body = self
            .call(
                reqwest::Method::POST,
                &format!("/v2.0/{kind}s"),
                Some(json!({ kind: attrs })),
                201,
            )
            .await?;
        Ok(body[kind].clone())
    }

    /// Waits until `n` ports are ACTIVE (bound on br-int).
    pub async fn wait_active(&self, n: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + LONG;
        let mut pause = Duration::from_millis(20);
        loop {
            let v = self
                .call(
                    reqwest::Method::GET,
                    "/v2.0/ports?status=ACTIVE&fields=id",
                    None,
                    200,
                )
                .await?;
            let active = v["ports"].as_array().map_or(0, Vec::len);
            if active >= n {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("only {active} of {n} ports became ACTIVE");
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(250));
        }
    }

    /// A namespace whose `eth0` (with `mac`) is a veth to `tap` on `bridge`, with `ovs-vsctl`
    /// extras (e.g. `external_ids:iface-id=...`) on the interface. Returns its index.
    pub fn add_ns(
        &mut self,
        prefix: &str,
        tap: &str,
        bridge: &str,
        mac: &str,
        iface_extra: &[String],
    ) -> anyhow::Result<usize> {
        let ovs_ns = self
            .ovs
            .netns()
            .context("OVS runs in no namespace")?
            .to_owned();
        let ns = Netns::new(prefix)?;
        run(Command::new("ip")
            .args([
                "netns", "exec", &ovs_ns, "ip", "link", "add", tap, "type", "veth",
            ])
            .args(["peer", "name", "eth0", "netns", ns.name()]))?;
        run(Command::new("ip").args(["netns", "exec", &ovs_ns, "ip", "link", "set", tap, "up"]))?;
        ns.exec(&["ip", "link", "set", "eth0", "address", mac])?;
        ns.exec(&["ip", "link", "set", "eth0", "up"])?;
        let mut args: Vec<String> = vec![
            "add-port".into(),
            bridge.into(),
            tap.into(),
            "--".into(),
            "set".into(),
            "interface".into(),
            tap.into(),
        ];
        if iface_extra.is_empty() {
            args.push("external_ids:bench=1".into());
        }
        args.extend(iface_extra.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.ovs.vsctl(&args)?;
        self.namespaces.push(ns);
        Ok(self.namespaces.len() - 1)
    }
}

pub fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("failed to spawn {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
