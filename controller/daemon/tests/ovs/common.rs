//! One host of the tests: a private Open vSwitch (dummy datapath) programmed by a real
//! wyvernd, a thin Neutron client, and VMs as dummy ports that capture what they are sent.
//! The helpers hide process plumbing; every assertion lives in the tests.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};
use wyvern_testkit::ovs::OvsSandbox;
use wyvern_testkit::poll::{wait_for, wait_until};
use wyvern_testkit::wyvernd::{Wyvernd, WyverndOptions};

use crate::packet::{parse_mac, Frame, Mac};

pub const WYVERND: &str = env!("CARGO_BIN_EXE_wyvernd");
pub const BRIDGE: &str = "br-int";

/// Generous: the machine is small and shared; a healthy run takes a fraction of this.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A thin Neutron client.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    pub fn new(base: String) -> Api {
        Api {
            http: reqwest::Client::new(),
            base,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method.clone(), format!("{}/v2.0/{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path} failed: {e}"));
        let status = resp.status();
        let text = resp.text().await.expect("body read");
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("answer is JSON")
        }
    }

    /// Creates one resource (`kind` singular) and returns it.
    pub async fn create(&self, kind: &str, attrs: Value) -> Value {
        let body = self
            .call(
                reqwest::Method::POST,
                &format!("{kind}s"),
                Some(json!({ kind: attrs })),
            )
            .await;
        body[kind].clone()
    }

    pub async fn network(&self, name: &str) -> Value {
        self.create("network", json!({ "name": name })).await
    }

    pub async fn subnet(&self, net: &Value, cidr: &str, gateway: &str) -> Value {
        self.create(
            "subnet",
            json!({"network_id": net["id"], "cidr": cidr, "ip_version": 4,
                   "gateway_ip": gateway, "name": format!("sub-{cidr}")}),
        )
        .await
    }

    pub async fn port(&self, net: &Value, name: &str) -> Value {
        self.create("port", json!({ "network_id": net["id"], "name": name }))
            .await
    }

    pub async fn router(&self, name: &str) -> Value {
        self.create("router", json!({ "name": name })).await
    }

    /// Attaches `subnet` to `router`; returns the router interface port.
    pub async fn add_interface(&self, router: &Value, subnet: &Value) -> Value {
        let r = self
            .call(
                reqwest::Method::PUT,
                &format!("routers/{}/add_router_interface", id(router)),
                Some(json!({ "subnet_id": subnet["id"] })),
            )
            .await;
        let port_id = r["port_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no port_id in {r}"));
        self.call(reqwest::Method::GET, &format!("ports/{port_id}"), None)
            .await["port"]
            .clone()
    }
}

pub fn id(v: &Value) -> &str {
    v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}"))
}

pub fn mac_of(port: &Value) -> Mac {
    parse_mac(
        port["mac_address"]
            .as_str()
            .unwrap_or_else(|| panic!("no MAC in {port}")),
    )
}

pub fn ip_of(port: &Value) -> Ipv4Addr {
    port["fixed_ips"][0]["ip_address"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no IPv4 address in {port}"))
}

/// A logical port plugged into the bridge as a dummy interface that records what it sends.
#[derive(Debug, Clone)]
pub struct Vm {
    pub iface: String,
    pub mac: Mac,
    pub ip: Ipv4Addr,
    pub ofport: u32,
    pub pcap: PathBuf,
}

/// A switch with wyvernd in charge of it.
pub struct Host {
    pub ovs: OvsSandbox,
    pub wyvernd: Wyvernd,
    pub api: Api,
}

impl Host {
    /// Starts OVS, then wyvernd pointed at it, and waits until wyvernd created the bridge,
    /// the bridge connected, and the static flows arrived.
    pub fn start() -> Host {
        let ovs = OvsSandbox::dummy().expect("OVS sandbox starts");
        let wyvernd = WyverndOptions::new(WYVERND)
            .switch(&ovs, BRIDGE, "wyvernd-of.sock")
            .start()
            .expect("wyvernd starts");
        let api = Api::new(wyvernd.url());
        let host = Host { ovs, wyvernd, api };
        host.wait_connected();
        // Table 0's miss flow is static: its presence means the first sync arrived.
        host.wait_flows("the static flows", |f| {
            f.iter()
                .any(|l| l.contains("table=0, priority=0 actions=drop"))
        });
        host
    }

    /// Waits until the bridge reports its controller connected.
    pub fn wait_connected(&self) {
        wait_until("br-int connected to wyvernd", DEADLINE, || {
            self.ovs
                .vsctl(&["--bare", "--columns=is_connected", "list", "Controller"])
                .map(|s| s.trim() == "true")
                .unwrap_or(false)
        })
        .with_context(|| self.logs())
        .unwrap();
    }

    /// Both daemons' log tails, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "{}\n--- ovs-vswitchd log tail ---\n{}",
            self.wyvernd.log_tail(),
            self.ovs.log_tail("ovs-vswitchd")
        )
    }

    /// The bridge's flows, normalized (no counters, no durations) and sorted.
    pub fn flows(&self) -> Vec<String> {
        self.ovs.dump_flows(BRIDGE).expect("dump-flows")
    }

    /// The bridge's groups, sorted.
    pub fn groups(&self) -> Vec<String> {
        let out = self
            .ovs
            .ofctl(&["dump-groups", BRIDGE])
            .expect("dump-groups");
        let mut g: Vec<String> = out
            .lines()
            .skip(1)
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect();
        g.sort();
        g
    }

    /// Every flow with its counters: normalized flow -> (n_packets, duration seconds).
    pub fn flow_stats(&self) -> Vec<(String, u64, f64)> {
        let out = self.ovs.ofctl(&["dump-flows", BRIDGE]).expect("dump-flows");
        let mut v: Vec<(String, u64, f64)> = out
            .lines()
            .filter(|l| l.contains("cookie="))
            .map(|l| {
                let field = |name: &str| {
                    l.split([',', ' '])
                        .find_map(|f| f.trim().strip_prefix(name))
                        .unwrap_or_else(|| panic!("no {name} in {l}"))
                        .to_owned()
                };
                let n: u64 = field("n_packets=").parse().expect("n_packets");
                let d: f64 = field("duration=")
                    .trim_end_matches('s')
                    .parse()
                    .expect("duration");
                let norm = wyvern_testkit::ovs::normalize_flow_dump(l);
                (norm.into_iter().next().unwrap_or_default(), n, d)
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Polls the flow dump until `cond` holds; returns that dump.
    #[track_caller]
    pub fn wait_flows(&self, what: &str, cond: impl Fn(&[String]) -> bool) -> Vec<String> {
        wait_for(what, DEADLINE, || {
            let f = self.ovs.dump_flows(BRIDGE).ok()?;
            cond(&f).then_some(f)
        })
        .with_context(|| self.logs())
        .unwrap()
    }

    /// Waits until the flow table holds and then keeps the same flows over several dumps
    /// (at least 300 ms apart end to end): the controller has nothing left to send.
    pub fn settled_flows(&self) -> Vec<String> {
        let mut last: Vec<String> = Vec::new();
        let mut since = Instant::now();
        let mut same = 0;
        wait_for("the flow table to settle", DEADLINE, || {
            let f = self.flows();
            if f == last {
                same += 1;
            } else {
                last = f;
                same = 0;
                since = Instant::now();
            }
            (same >= 3 && since.elapsed() >= Duration::from_millis(300)).then(|| last.clone())
        })
        .with_context(|| self.logs())
        .unwrap()
    }

    /// Plugs `port` into the bridge as dummy interface `iface` (bound by iface-id), with a
    /// capture of what the switch sends it.
    pub fn plug(&self, port: &Value, iface: &str) -> Vm {
        let pcap = self.ovs.run_dir().join(format!("{iface}.pcap"));
        let tx = format!("options:tx_pcap={}", pcap.display());
        let ext = format!("external_ids:iface-id={}", id(port));
        self.ovs
            .vsctl(&[
                "add-port",
                BRIDGE,
                iface,
                "--",
                "set",
                "interface",
                iface,
                "type=dummy",
                &tx,
                &ext,
            ])
            .expect("add-port");
        let ofport = wait_for("an ofport", DEADLINE, || {
            self.ovs.ofport(iface).ok().flatten()
        })
        .unwrap();
        Vm {
            iface: iface.to_owned(),
            mac: mac_of(port),
            ip: ip_of(port),
            ofport,
            pcap,
        }
    }

    /// Injects a frame as if `vm` sent it.
    pub fn inject(&self, vm: &Vm, frame: &[u8]) {
        self.ovs
            .appctl(&[
                "netdev-dummy/receive",
                &vm.iface,
                &crate::packet::hex(frame),
            ])
            .expect("netdev-dummy/receive");
    }

    /// The frames the switch sent to `vm` so far.
    pub fn received(&self, vm: &Vm) -> Vec<Frame> {
        crate::packet::read_pcap(&vm.pcap)
            .iter()
            .filter_map(|b| Frame::parse(b))
            .collect()
    }

    /// Waits for a frame to `vm` that `pick` accepts, and returns `pick`'s value.
    #[track_caller]
    pub fn wait_received<T>(&self, vm: &Vm, what: &str, pick: impl Fn(&Frame) -> Option<T>) -> T {
        wait_for(what, DEADLINE, || self.received(vm).iter().find_map(&pick))
            .with_context(|| self.logs())
            .unwrap()
    }

    /// `ofproto/trace` of a flow given in ovs-ofctl syntax.
    pub fn trace(&self, flow: &str) -> String {
        self.ovs
            .appctl(&["ofproto/trace", BRIDGE, flow])
            .expect("ofproto/trace")
    }

    /// The `Datapath actions:` line of a trace.
    pub fn datapath_actions(&self, flow: &str) -> String {
        let t = self.trace(flow);
        t.lines()
            .find_map(|l| l.strip_prefix("Datapath actions: "))
            .unwrap_or_else(|| panic!("no datapath actions in trace:\n{t}"))
            .trim()
            .to_owned()
    }

    /// Datapath port number of an interface (`ovs-appctl dpif/show`: `name ofport/dpport`).
    pub fn dp_port(&self, iface: &str) -> u32 {
        let out = self.ovs.appctl(&["dpif/show"]).expect("dpif/show");
        out.lines()
            .find_map(|l| {
                let l = l.trim();
                let rest = l.strip_prefix(iface)?.strip_prefix(' ')?;
                let nums = rest.split_whitespace().next()?;
                nums.split('/').nth(1)?.trim_end_matches(':').parse().ok()
            })
            .unwrap_or_else(|| panic!("{iface} not in dpif/show:\n{out}"))
    }

    /// Stops wyvernd gracefully and starts it again on the same data dir.
    pub fn restart_wyvernd(&mut self) {
        self.wyvernd.stop().expect("wyvernd stops");
        self.wyvernd.restart().expect("wyvernd restarts");
        self.api = Api::new(self.wyvernd.url());
    }
}

/// The demo topology: net1 10.0.1.0/24 (vm1, vm2) and net2 10.0.2.0/24 (vm3), joined by a
/// router with gateways 10.0.1.1 and 10.0.2.1.
pub struct Demo {
    pub net1: Value,
    /// Router interface ports on net1 and net2.
    pub gw1: Value,
    pub gw2: Value,
    pub vm1: Vm,
    pub vm2: Vm,
    pub vm3: Vm,
}

impl Demo {
    /// Builds the topology through the API, plugs the three VMs, and waits until the switch
    /// holds their flows.
    pub async fn build(host: &Host) -> Demo {
        let api = &host.api;
        let net1 = api.network("net1").await;
        let net2 = api.network("net2").await;
        let sub1 = api.subnet(&net1, "10.0.1.0/24", "10.0.1.1").await;
        let sub2 = api.subnet(&net2, "10.0.2.0/24", "10.0.2.1").await;
        let router = api.router("r1").await;
        let gw1 = api.add_interface(&router, &sub1).await;
        let gw2 = api.add_interface(&router, &sub2).await;
        let p1 = api.port(&net1, "vm1").await;
        let p2 = api.port(&net1, "vm2").await;
        let p3 = api.port(&net2, "vm3").await;
        let demo = Demo {
            vm1: host.plug(&p1, "vm1"),
            vm2: host.plug(&p2, "vm2"),
            vm3: host.plug(&p3, "vm3"),
            net1,
            gw1,
            gw2,
        };
        demo.wait_programmed(host);
        demo
    }

    pub fn vms(&self) -> [&Vm; 3] {
        [&self.vm1, &self.vm2, &self.vm3]
    }

    /// Waits until every VM is classified and delivered, every VM has its host route and
    /// every gateway its ARP responder flow.
    pub fn wait_programmed(&self, host: &Host) {
        let mut needles = Vec::new();
        for vm in self.vms() {
            needles.push(format!("in_port={}", vm.ofport));
            needles.push(format!("actions=output:{}", vm.ofport));
            needles.push(format!("nw_dst={}", vm.ip));
        }
        for gw in [&self.gw1, &self.gw2] {
            needles.push(format!("arp_tpa={}", ip_of(gw)));
        }
        host.wait_flows("the demo topology's flows", |flows| {
            needles
                .iter()
                .all(|n| flows.iter().any(|f| has_field(f, n)))
        });
    }
}

/// Whether a flow line has `field` (`name=value`) as a whole field: followed by a space, a
/// comma or the end, so `in_port=1` does not match `in_port=10`.
pub fn has_field(flow: &str, field: &str) -> bool {
    flow.match_indices(field).any(|(i, _)| {
        let before_ok = i == 0 || matches!(flow.as_bytes()[i - 1], b' ' | b',' | b':');
        let after = flow.as_bytes().get(i + field.len());
        before_ok && matches!(after, None | Some(b' ') | Some(b','))
    })
}
