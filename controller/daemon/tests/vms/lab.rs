//! The lab: userspace OVS in its own namespace, wyvernd on unix sockets, the Neutron topology
//! built over HTTP, and VMs (namespaces with a veth on br-int and the port's MAC) that run
//! the real `dhclient` and `ping`. Helpers hide plumbing only; assertions live in the tests.
//!
//! Drop order is the field order: VMs (dhclient killed, namespace deleted, which deletes the
//! veth pair), then wyvernd, then OVS, then the scratch dir.

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use reqwest::Method;
use serde_json::{json, Value};
use wyvern_testkit::netns::{run, Netns};
use wyvern_testkit::ovs::OvsSandbox;
use wyvern_testkit::poll::{wait_for, wait_until};
use wyvern_testkit::wyvernd::{Wyvernd, WyverndOptions};

pub const WYVERND: &str = env!("CARGO_BIN_EXE_wyvernd");

/// Deadline for anything that crosses the whole stack (a loaded 2-core box runs several
/// labs at once).
pub const LONG: Duration = Duration::from_secs(90);

/// DNS servers wyvernd hands out on subnets without their own (`--dhcp-dns`).
pub const DEFAULT_DNS: &str = "192.0.2.53 192.0.2.54";
/// `--dhcp-domain`.
pub const DOMAIN: &str = "wyvern.test";
/// `--overlay-overhead`: the DHCP MTU is the network MTU less this.
pub const OVERHEAD: u32 = 50;
/// MTU of network A (network B keeps the default, 1450).
pub const MTU_A: u32 = 1400;
pub const MTU_B: u32 = 1450;
pub const GW_A: &str = "10.0.1.1";
pub const GW_B: &str = "10.0.2.1";
/// Subnet A's own DNS server.
pub const DNS_A: &str = "10.0.1.53";

/// How wyvernd routes: proactive flows, or the first packet through the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L3Mode {
    Proactive,
    Reactive,
}

impl L3Mode {
    fn arg(self) -> &'static str {
        match self {
            L3Mode::Proactive => "proactive",
            L3Mode::Reactive => "reactive",
        }
    }
}

/// A Neutron endpoint (no auth: wyvernd runs with `--auth noauth`).
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    pub fn new(base: String) -> Self {
        Api {
            http: reqwest::Client::new(),
            base,
        }
    }

    /// One request; the status and JSON body (`Null` when empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .with_context(|| format!("failed to call {path}"))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.context("failed to read the body")?;
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).with_context(|| format!("answer is not JSON: {text}"))?
        };
        Ok((status, body))
    }

    /// A call that must answer `want`; returns the body.
    pub async fn expect(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        want: u16,
    ) -> anyhow::Result<Value> {
        let (status, body) = self.call(method.clone(), path, body).await?;
        if status != want {
            bail!("{method} {path}: status {status}, want {want}: {body}");
        }
        Ok(body)
    }

    /// Creates one resource (`kind` singular) and returns it.
    pub async fn create(&self, kind: &str, attrs: Value) -> anyhow::Result<Value> {
        let body = self
            .expect(
                Method::POST,
                &format!("/v2.0/{kind}s"),
                Some(json!({ kind: attrs })),
                201,
            )
            .await?;
        Ok(body[kind].clone())
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.expect(Method::GET, path, None, 200).await
    }

    pub async fn put(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.expect(Method::PUT, path, Some(body), 200).await
    }
}

/// The `id` of a resource.
pub fn id(v: &Value) -> String {
    v["id"].as_str().unwrap_or_default().to_owned()
}

/// The first fixed IP of a port.
pub fn port_ip(port: &Value) -> Ipv4Addr {
    port["fixed_ips"][0]["ip_address"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(Ipv4Addr::UNSPECIFIED)
}

pub fn port_mac(port: &Value) -> String {
    port["mac_address"].as_str().unwrap_or_default().to_owned()
}

/// Which network a VM sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Net {
    A,
    B,
}

/// OVS + wyvernd + the two-network, one-router topology + three VMs: vm1 and vm2 on A
/// (10.0.1.0/24, MTU 1400, own DNS), vm3 on B (10.0.2.0/24, default DNS).
pub struct Lab {
    pub vms: Vec<Vm>,
    pub wyvernd: Wyvernd,
    pub ovs: OvsSandbox,
    pub api: Api,
    pub net_a: Value,
    pub net_b: Value,
    pub sub_a: Value,
    pub sub_b: Value,
    pub router: String,
    pub dir: tempfile::TempDir,
}

impl Lab {
    /// Builds everything, attaches the three VMs and waits until their ports are ACTIVE.
    /// DHCP is left to the test.
    pub async fn start(mode: L3Mode) -> anyhow::Result<Lab> {
        Self::start_with(mode, 3).await
    }

    /// As `start`, with `vms` VMs (1..=3; the first two on A, the third on B).
    pub async fn start_with(mode: L3Mode, vms: usize) -> anyhow::Result<Lab> {
        let dir = tempfile::Builder::new()
            .prefix("wyv-vms-")
            .tempdir_in("/tmp")
            .context("failed to create the lab dir")?;
        let ovs = OvsSandbox::netdev_in_new_netns().context("failed to start OVS")?;
        // ovs-vswitchd only connects to unix sockets inside its run dir.
        let of_sock = ovs.run_dir().join("of.sock");
        let wyvernd = WyverndOptions::new(WYVERND)
            .arg("--ovsdb")
            .arg(ovs.db_target())
            .arg("--datapath-type")
            .arg("netdev")
            .arg("--openflow-listen")
            .arg(format!("unix:{}", of_sock.display()))
            .arg("--bridge")
            .arg("br-int")
            .arg("--l3-mode")
            .arg(mode.arg())
            .arg("--dhcp-dns")
            .arg(DEFAULT_DNS.replace(' ', ","))
            .arg("--dhcp-domain")
            .arg(DOMAIN)
            .arg("--overlay-overhead")
            .arg(OVERHEAD.to_string())
            .start()
            .context("failed to start wyvernd")?;
        let api = Api::new(wyvernd.url());
        // wyvernd creates br-int and connects: the table-0 miss flow shows it programs it.
        wait_until("wyvernd to program br-int", LONG, || {
            ovs.ofctl(&["dump-flows", "br-int", "table=0"])
                .map(|f| f.contains("priority=0"))
                .unwrap_or(false)
        })
        .with_context(|| wyvernd.log_tail())?;

        let net_a = api
            .create("network", json!({"name": "net-a", "mtu": MTU_A}))
            .await?;
        let net_b = api.create("network", json!({"name": "net-b"})).await?;
        let sub_a = api
            .create(
                "subnet",
                json!({"network_id": id(&net_a), "cidr": "10.0.1.0/24", "ip_version": 4,
                       "name": "sub-a", "dns_nameservers": [DNS_A]}),
            )
            .await?;
        let sub_b = api
            .create(
                "subnet",
                json!({"network_id": id(&net_b), "cidr": "10.0.2.0/24", "ip_version": 4,
                       "name": "sub-b"}),
            )
            .await?;
        let router = id(&api.create("router", json!({"name": "r1"})).await?);
        let mut lab = Lab {
            vms: Vec::new(),
            wyvernd,
            ovs,
            api,
            net_a,
            net_b,
            sub_a,
            sub_b,
            router,
            dir,
        };
        lab.add_interface(Net::A).await?;
        lab.add_interface(Net::B).await?;
        for (i, net) in [Net::A, Net::A, Net::B].into_iter().take(vms).enumerate() {
            lab.add_vm(&format!("vm{}", i + 1), net).await?;
        }
        Ok(lab)
    }

    pub fn subnet(&self, net: Net) -> &Value {
        match net {
            Net::A => &self.sub_a,
            Net::B => &self.sub_b,
        }
    }

    pub fn network(&self, net: Net) -> &Value {
        match net {
            Net::A => &self.net_a,
            Net::B => &self.net_b,
        }
    }

    /// `add_router_interface` by subnet (the router takes the gateway IP).
    pub async fn add_interface(&self, net: Net) -> anyhow::Result<Value> {
        self.api
            .put(
                &format!("/v2.0/routers/{}/add_router_interface", self.router),
                json!({"subnet_id": id(self.subnet(net))}),
            )
            .await
    }

    /// `remove_router_interface` by subnet.
    pub async fn remove_interface(&self, net: Net) -> anyhow::Result<Value> {
        self.api
            .put(
                &format!("/v2.0/routers/{}/remove_router_interface", self.router),
                json!({"subnet_id": id(self.subnet(net))}),
            )
            .await
    }

    /// Creates a port on `net`, a namespace with a veth whose OVS end is on br-int with
    /// `external_ids:iface-id`, and waits until wyvernd reports the port ACTIVE.
    pub async fn add_vm(&mut self, name: &str, net: Net) -> anyhow::Result<()> {
        let port = self
            .api
            .create(
                "port",
                json!({"network_id": id(self.network(net)), "name": name}),
            )
            .await?;
        let vm = Vm::attach(&self.ovs, self.dir.path(), name, self.vms.len() + 1, port)?;
        let path = format!("/v2.0/ports/{}", id(&vm.port));
        let deadline = Instant::now() + LONG;
        let mut pause = Duration::from_millis(10);
        loop {
            let p = self.api.get(&path).await?;
            if p["port"]["status"] == json!("ACTIVE") {
                break;
            }
            if Instant::now() >= deadline {
                bail!(
                    "port of {name} never became ACTIVE: {p}\n{}",
                    self.wyvernd.log_tail()
                );
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
        self.vms.push(vm);
        Ok(())
    }

    pub fn vm(&self, name: &str) -> &Vm {
        self.vms
            .iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("no VM {name}"))
    }

    pub fn vm_mut(&mut self, name: &str) -> &mut Vm {
        self.vms
            .iter_mut()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("no VM {name}"))
    }

    /// Starts dhclient in every VM and waits for all leases.
    pub fn lease_all(&mut self) -> anyhow::Result<()> {
        for vm in &mut self.vms {
            vm.start_dhclient()?;
        }
        for vm in &self.vms {
            vm.wait_bound(LONG)
                .with_context(|| self.wyvernd.log_tail())?;
        }
        Ok(())
    }

    /// `ovs-ofctl dump-aggregate br-int`: the number of flows.
    pub fn flow_count(&self) -> anyhow::Result<u64> {
        let out = self.ovs.ofctl(&["dump-aggregate", "br-int"])?;
        out.split_whitespace()
            .find_map(|w| w.strip_prefix("flow_count="))
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("no flow_count in {out}"))
    }

    /// Whether wyvernd still runs and answers the API.
    pub async fn wyvernd_alive(&self) -> bool {
        let running = self.wyvernd.pid().is_some_and(|pid| {
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| !s.contains(") Z "))
                .unwrap_or(false)
        });
        running && self.api.get("/v2.0/networks").await.is_ok()
    }
}

/// A VM: a namespace whose `eth0` has the port's MAC, its veth peer on br-int, and possibly
/// a dhclient (`-d`, a child of the test, killed on drop).
pub struct Vm {
    dhclient: Option<Child>,
    pub ns: Netns,
    pub name: String,
    pub tap: String,
    pub port: Value,
    pub dir: PathBuf,
}

impl Vm {
    pub fn attach(
        ovs: &OvsSandbox,
        lab_dir: &Path,
        name: &str,
        n: usize,
        port: Value,
    ) -> anyhow::Result<Vm> {
        let ovs_ns = ovs.netns().context("OVS runs in no namespace")?;
        let ns = Netns::new(&format!("wyv-{name}"))?;
        let dir = lab_dir.join(name);
        fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
        let tap = format!("tap{n}");
        let vm = Vm {
            dhclient: None,
            ns,
            name: name.to_owned(),
            tap: tap.clone(),
            port,
            dir,
        };
        run(Command::new("ip")
            .args([
                "netns", "exec", ovs_ns, "ip", "link", "add", &tap, "type", "veth", "peer", "name",
                "eth0", "netns",
            ])
            .arg(vm.ns.name()))?;
        run(Command::new("ip").args(["netns", "exec", ovs_ns, "ip", "link", "set", &tap, "up"]))?;
        vm.exec(&["ip", "link", "set", "eth0", "address", &vm.mac()])?;
        vm.exec(&["ip", "link", "set", "eth0", "up"])?;
        ovs.vsctl(&[
            "add-port",
            "br-int",
            &tap,
            "--",
            "set",
            "interface",
            &tap,
            &format!("external_ids:iface-id={}", id(&vm.port)),
        ])?;
        Ok(vm)
    }

    pub fn mac(&self) -> String {
        port_mac(&self.port)
    }

    pub fn ip(&self) -> Ipv4Addr {
        port_ip(&self.port)
    }

    /// Runs `argv` in the VM; stdout, or an error on a non-zero exit.
    pub fn exec(&self, argv: &[&str]) -> anyhow::Result<String> {
        self.ns.exec(argv)
    }

    /// Runs `argv` in the VM and returns its output whatever the exit status.
    pub fn output(&self, argv: &[&str]) -> anyhow::Result<Output> {
        let (program, args) = argv.split_first().context("empty argv")?;
        self.ns
            .command(program)
            .args(args)
            .output()
            .with_context(|| format!("failed to run {argv:?} in {}", self.name))
    }

    /// Starts `dhclient -d -1` with its own config, script, lease and pid files. The script
    /// applies the lease the way dhclient-script would (address, MTU, default route) and
    /// records what dhclient got in `env.<reason>`; it never touches the host's files.
    pub fn start_dhclient(&mut self) -> anyhow::Result<()> {
        let conf = self.dir.join("dhclient.conf");
        fs::write(
            &conf,
            "option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;\n\
             timeout 60;\ninitial-interval 1;\nbackoff-cutoff 2;\n\
             request subnet-mask, broadcast-address, routers, domain-name, \
             domain-name-servers, interface-mtu, rfc3442-classless-static-routes;\n",
        )
        .context("failed to write dhclient.conf")?;
        let script = self.dir.join("script.sh");
        fs::write(
            &script,
            format!(
                r#"#!/bin/sh
D={dir}
env | grep -E '^(reason|interface|new_)' | sort > "$D/env.$reason.tmp" && mv "$D/env.$reason.tmp" "$D/env.$reason"
case "$reason" in
  BOUND|RENEW|REBIND|REBOOT)
    ip addr replace "$new_ip_address/$new_subnet_mask" broadcast "$new_broadcast_address" dev "$interface"
    [ -n "$new_interface_mtu" ] && ip link set dev "$interface" mtu "$new_interface_mtu"
    ip route replace default via "$new_routers" dev "$interface"
    ;;
esac
exit 0
"#,
                dir = self.dir.display()
            ),
        )
        .context("failed to write the dhclient script")?;
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755))
            .context("failed to chmod the dhclient script")?;
        let _ = fs::remove_file(self.dir.join("env.BOUND"));
        let log = fs::File::create(self.dir.join("dhclient.log"))
            .context("failed to create dhclient.log")?;
        let child = self
            .ns
            .command("dhclient")
            .args(["-d", "-1", "-v", "-cf"])
            .arg(&conf)
            .arg("-sf")
            .arg(&script)
            .arg("-lf")
            .arg(self.dir.join("leases"))
            .arg("-pf")
            .arg(self.dir.join("dhclient.pid"))
            .arg("eth0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .context("failed to start dhclient")?;
        self.dhclient = Some(child);
        Ok(())
    }

    /// Stops dhclient (if running) and reaps it.
    pub fn stop_dhclient(&mut self) {
        if let Some(mut c) = self.dhclient.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for dhclient's BOUND and returns what it got (`new_*` variables).
    pub fn wait_bound(&self, timeout: Duration) -> anyhow::Result<BTreeMap<String, String>> {
        wait_for(&format!("dhclient BOUND in {}", self.name), timeout, || {
            self.env("BOUND")
        })
        .with_context(|| {
            format!(
                "dhclient log of {}:\n{}",
                self.name,
                fs::read_to_string(self.dir.join("dhclient.log")).unwrap_or_default()
            )
        })
    }

    /// The variables dhclient passed to the script for `reason`, once it ran.
    pub fn env(&self, reason: &str) -> Option<BTreeMap<String, String>> {
        let text = fs::read_to_string(self.dir.join(format!("env.{reason}"))).ok()?;
        Some(
            text.lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
                .collect(),
        )
    }

    /// The lease file dhclient wrote.
    pub fn lease_file(&self) -> String {
        fs::read_to_string(self.dir.join("leases")).unwrap_or_default()
    }

    /// One `ping -c 1` with a 2 s wait (and `-t ttl` if given).
    pub fn ping_once(&self, dst: &str, ttl: Option<u8>) -> anyhow::Result<Ping> {
        let ttl_s = ttl.map(|t| t.to_string());
        let mut argv = vec!["ping", "-n", "-c", "1", "-W", "2"];
        if let Some(t) = &ttl_s {
            argv.extend(["-t", t.as_str()]);
        }
        argv.push(dst);
        let out = self.output(&argv)?;
        Ok(Ping::parse(
            out.status.success(),
            &String::from_utf8_lossy(&out.stdout),
        ))
    }

    /// Pings until a reply arrives (flows and ARP may still be settling); the reply.
    pub fn ping_until_ok(&self, dst: &str) -> anyhow::Result<Ping> {
        let mut last = String::new();
        wait_for(
            &format!("{} to ping {dst}", self.name),
            LONG,
            || match self.ping_once(dst, None) {
                Ok(p) if p.ok => Some(p),
                Ok(p) => {
                    last = p.text;
                    None
                }
                Err(e) => {
                    last = e.to_string();
                    None
                }
            },
        )
        .with_context(|| format!("last ping output: {last}"))
    }

    /// Pings until one fails (a change is still propagating); the failed ping.
    pub fn ping_until_lost(&self, dst: &str) -> anyhow::Result<Ping> {
        wait_for(
            &format!("{} to lose {dst}", self.name),
            LONG,
            || match self.ping_once(dst, None) {
                Ok(p) if !p.ok => Some(p),
                _ => None,
            },
        )
    }

    /// Three pings, each may take 1 s: how many replies came back.
    pub fn ping_burst(&self, dst: &str) -> anyhow::Result<u32> {
        let out = self.output(&["ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", dst])?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text
            .split(',')
            .find_map(|part| part.trim().strip_suffix(" received"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0))
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.stop_dhclient();
    }
}

/// What one ping saw.
#[derive(Debug, Clone)]
pub struct Ping {
    pub ok: bool,
    /// The TTL of the echo reply.
    pub ttl: Option<u8>,
    pub text: String,
}

impl Ping {
    fn parse(ok: bool, text: &str) -> Ping {
        let ttl = text
            .lines()
            .find(|l| l.contains("bytes from"))
            .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("ttl=")))
            .and_then(|t| t.parse().ok());
        Ping {
            ok: ok && ttl.is_some(),
            ttl,
            text: text.to_owned(),
        }
    }
}
