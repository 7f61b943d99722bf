//! The processes of the P4 tests: the real wyvern-p4d (control plane only, or forwarding on
//! DPDK pcap ports), the real wyvernd pointed at it and at a private Open vSwitch (where
//! the port bindings come from), and a backup P4Runtime controller that reads the target's
//! tables back by name.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use wyvern_offload_p4rt::{Mastership, P4rtBackend, P4rtConfig};
use wyvern_testkit::ovs::OvsSandbox;
use wyvern_testkit::poll::wait_for;
use wyvern_testkit::wyvernd::{Wyvernd, WyverndOptions};

use crate::common::{id, ip_of, mac_of, Api, BRIDGE, DEADLINE, WYVERND};
use crate::packet::{fmt_mac, Mac};

pub const P4INFO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../p4/wyvern.p4info.txtpb");

/// The wyvern-p4d binary (`WYVERN_TEST_WYVERN_P4D`, else the workspace build, else built).
fn p4d_binary() -> anyhow::Result<PathBuf> {
    wyvern_testkit::cascade::workspace_bin(
        "wyvern-p4d",
        "wyvern-p4d",
        Path::new(env!("CARGO_TARGET_TMPDIR")),
    )
}

/// wyvern-p4d on a free port, killed on drop.
pub struct P4d {
    child: Child,
    pub addr: String,
}

impl P4d {
    /// Starts wyvern-p4d (`--device-id 1`) with `extra` arguments; returns once it serves.
    /// `WYVERN_P4D_LOG=1` shows its log.
    pub fn start(extra: &[String]) -> anyhow::Result<P4d> {
        let log = std::env::var_os("WYVERN_P4D_LOG").is_some();
        let mut child = Command::new(p4d_binary()?)
            .args(["--grpc-listen", "127.0.0.1:0", "--device-id", "1"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(if log { Stdio::inherit() } else { Stdio::null() })
            .spawn()
            .context("failed to start wyvern-p4d")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        // The first line comes once the server is bound; EOF if the process failed.
        BufReader::new(stdout).read_line(&mut line)?;
        match line.trim().strip_prefix("wyvern-p4d listening on ") {
            Some(a) => Ok(P4d {
                addr: a.to_owned(),
                child,
            }),
            None => {
                let _ = child.kill();
                let status = child.wait()?;
                anyhow::bail!("wyvern-p4d did not start ({status}): {line:?}")
            }
        }
    }

    /// Lets a `--hold-rx` target read its input ports.
    pub fn release_rx(&self) {
        let status = Command::new("kill")
            .args(["-USR1", &self.child.id().to_string()])
            .status()
            .expect("kill -USR1 runs");
        assert!(status.success(), "SIGUSR1 to wyvern-p4d");
    }
}

impl Drop for P4d {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// wyvernd with the P4 back end pointed at `p4d` (election id `election`), OpenFlow on
/// `ovs`'s bridge, bindings from `ovs`'s OVSDB. The sync log lines (debug) are on, so a
/// test can count the updates each sync wrote.
pub fn wyvernd(ovs: &OvsSandbox, p4d: &P4d, election: u64) -> anyhow::Result<Wyvernd> {
    WyverndOptions::new(WYVERND)
        .switch(ovs, BRIDGE, &format!("wyvernd-of-{election}.sock"))
        .arg("--p4runtime")
        .arg(p4d.addr.clone())
        .arg("--p4info")
        .arg(P4INFO)
        .arg("--device-id")
        .arg("1")
        .arg("--p4-election-id")
        .arg(election.to_string())
        .env("RUST_LOG", "info,wyvern_local::p4=debug")
        .start()
}

/// A VM's logical port and the switch port it is bound to (OVS ofport = P4 port).
#[derive(Debug, Clone)]
pub struct Vm {
    pub mac: Mac,
    pub ip: Ipv4Addr,
    pub ofport: u32,
}

/// Binds `port` to a dummy interface on switch port `ofport` (`ofport_request`).
pub fn plug(ovs: &OvsSandbox, port: &Value, iface: &str, ofport: u32) -> Vm {
    wait_for("wyvernd to create the bridge", DEADLINE, || {
        ovs.vsctl(&["br-exists", BRIDGE]).ok()
    })
    .expect("br-int");
    let ext = format!("external_ids:iface-id={}", id(port));
    let req = format!("ofport_request={ofport}");
    ovs.vsctl(&[
        "add-port",
        BRIDGE,
        iface,
        "--",
        "set",
        "interface",
        iface,
        "type=dummy",
        &req,
        &ext,
    ])
    .expect("add-port");
    let got = wait_for("an ofport", DEADLINE, || ovs.ofport(iface).ok().flatten()).unwrap();
    assert_eq!(got, ofport, "ofport_request honoured");
    Vm {
        mac: mac_of(port),
        ip: ip_of(port),
        ofport,
    }
}

pub const VM1_MAC: Mac = [0xfa, 0x16, 0x3e, 0x00, 0x01, 0x01];
pub const VM2_MAC: Mac = [0xfa, 0x16, 0x3e, 0x00, 0x01, 0x02];
pub const VM3_MAC: Mac = [0xfa, 0x16, 0x3e, 0x00, 0x02, 0x03];
pub const GW1_MAC: Mac = [0xfa, 0x16, 0x3e, 0x00, 0x01, 0xfe];
pub const GW2_MAC: Mac = [0xfa, 0x16, 0x3e, 0x00, 0x02, 0xfe];
pub const VM1_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 11);
pub const VM2_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 12);
pub const VM3_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 13);
pub const GW1_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);
pub const GW2_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 1);

/// A fixed id: the same on every run and in every wyvernd.
pub fn uuid(n: u8) -> String {
    format!("5eed0000-0000-4000-8000-0000000000{n:02x}")
}

/// The demo topology of the OpenFlow tests: net1 10.0.1.0/24 (vm1, vm2) and net2
/// 10.0.2.0/24 (vm3), joined by router r1 (gateways 10.0.1.1 and 10.0.2.1). The VMs are
/// switch ports 1, 2, 3. Every id and address is chosen by the test: a pcap written before
/// wyvernd runs needs them, and two wyvernds given the same requests compile the same
/// pipeline.
pub struct Demo {
    pub gw1: Value,
    pub gw2: Value,
    pub vm1: Vm,
    pub vm2: Vm,
    pub vm3: Vm,
}

impl Demo {
    /// Creates the topology through `api` (at `base`) and binds the VMs on `ovs`.
    pub async fn build(api: &Api, base: &str, ovs: &OvsSandbox) -> Demo {
        let net1 = api
            .create("network", json!({"id": uuid(0x11), "name": "net1"}))
            .await;
        let net2 = api
            .create("network", json!({"id": uuid(0x12), "name": "net2"}))
            .await;
        let subnet = |n: u8, net: &Value, cidr: &str, gw: Ipv4Addr| {
            api.create(
                "subnet",
                json!({"id": uuid(n), "network_id": net["id"], "cidr": cidr, "ip_version": 4,
                       "gateway_ip": gw.to_string(), "name": format!("sub-{cidr}")}),
            )
        };
        let sub1 = subnet(0x21, &net1, "10.0.1.0/24", GW1_IP).await;
        let sub2 = subnet(0x22, &net2, "10.0.2.0/24", GW2_IP).await;
        let port = |n: u8, net: &Value, sub: &Value, name: &str, mac: Mac, ip: Ipv4Addr| {
            api.create(
                "port",
                json!({"id": uuid(n), "network_id": net["id"], "name": name,
                       "mac_address": fmt_mac(&mac),
                       "fixed_ips": [{"subnet_id": sub["id"], "ip_address": ip.to_string()}]}),
            )
        };
        let router = api
            .create("router", json!({"id": uuid(0x31), "name": "r1"}))
            .await;
        // The interfaces by subnet (a gateway address is only for the router's own
        // port), then their MACs set to the fixed ones.
        let http = reqwest::Client::new();
        let mut gws = Vec::new();
        for (sub, mac) in [(&sub1, GW1_MAC), (&sub2, GW2_MAC)] {
            let gw = api.add_interface(&router, sub).await;
            let r = http
                .put(format!("{base}/v2.0/ports/{}", id(&gw)))
                .json(&json!({"port": {"mac_address": fmt_mac(&mac)}}))
                .send()
                .await
                .expect("PUT port");
            assert!(
                r.status().is_success(),
                "set the gateway MAC: {}",
                r.status()
            );
            let gw: Value = r.json().await.expect("JSON");
            assert_eq!(mac_of(&gw["port"]), mac);
            gws.push(gw["port"].clone());
        }
        let gw2 = gws.pop().expect("gw2");
        let gw1 = gws.pop().expect("gw1");
        let p1 = port(0x51, &net1, &sub1, "vm1", VM1_MAC, VM1_IP).await;
        let p2 = port(0x52, &net1, &sub1, "vm2", VM2_MAC, VM2_IP).await;
        let p3 = port(0x53, &net2, &sub2, "vm3", VM3_MAC, VM3_IP).await;
        let demo = Demo {
            vm1: plug(ovs, &p1, "vm1", 1),
            vm2: plug(ovs, &p2, "vm2", 2),
            vm3: plug(ovs, &p3, "vm3", 3),
            gw1,
            gw2,
        };
        assert_eq!((demo.vm1.mac, demo.vm1.ip), (VM1_MAC, VM1_IP));
        assert_eq!((demo.vm3.mac, demo.vm3.ip), (VM3_MAC, VM3_IP));
        demo
    }

    /// Substrings of the described entries (see `Reader::describe_all`) that must all be
    /// on the target before the test packets go in: each VM classified, its addresses
    /// allowed, delivered to and routed to; the gateways' ARP answers; DHCP punted.
    pub fn needles(&self) -> Vec<(String, String)> {
        let mut n = Vec::new();
        for vm in [&self.vm1, &self.vm2, &self.vm3] {
            n.push((
                "MyIngress.classify".into(),
                format!("meta.phys_in_port=0x{:02x} ", vm.ofport),
            ));
            n.push(("MyIngress.port_security".into(), hex(&vm.ip.octets())));
            n.push(("MyIngress.l2_lookup".into(), hex(&vm.mac)));
            n.push(("MyIngress.l3_lookup".into(), hex(&vm.ip.octets())));
            n.push(("MyIngress.dhcp".into(), "MyIngress.punt".into()));
        }
        for gw in [&self.gw1, &self.gw2] {
            n.push(("MyIngress.arp_responder".into(), hex(&ip_of(gw).octets())));
        }
        n
    }
}

/// `0x` and lower-case hex, as `Mapper::describe` prints values.
pub fn hex(b: &[u8]) -> String {
    let mut s = String::from("0x");
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// A backup controller (election id 1) of the target: reads its tables by name.
pub struct Reader {
    backend: P4rtBackend,
}

impl Reader {
    pub async fn connect(p4d: &P4d) -> anyhow::Result<Reader> {
        let p4info = p4runtime_proto::parse_p4info(&std::fs::read_to_string(P4INFO)?)?;
        let (mut backend, _packet_ins) = P4rtBackend::connect(
            &format!("http://{}", p4d.addr),
            P4rtConfig::new(1, 1, p4info, vec![]),
        )
        .await?;
        backend.wait_for_mastership(Duration::from_secs(10)).await?;
        Ok(Reader { backend })
    }

    pub fn mastership(&self) -> Mastership {
        self.backend.mastership()
    }

    /// Every table entry of the target, described (`table key=value.. -> action(..)`), sorted.
    pub async fn describe_all(&mut self) -> anyhow::Result<Vec<String>> {
        let entities = self.backend.read_all().await?;
        let mut d: Vec<String> = entities
            .iter()
            .filter_map(|e| match &e.entity {
                Some(p4runtime_proto::p4::v1::entity::Entity::TableEntry(t)) => {
                    Some(self.backend.mapper().describe(t))
                }
                _ => None,
            })
            .collect();
        d.sort();
        Ok(d)
    }

    /// Polls the target until an entry of each `(table, substring)` is there; returns the
    /// entries then.
    pub async fn wait_for(
        &mut self,
        needles: &[(String, String)],
        log: impl Fn() -> String,
    ) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let d = self.describe_all().await.expect("Read");
            let missing: Vec<&(String, String)> = needles
                .iter()
                .filter(|(t, s)| !d.iter().any(|e| e.starts_with(t.as_str()) && e.contains(s)))
                .collect();
            if missing.is_empty() {
                return d;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "missing on the target: {missing:?}\nentries: {d:#?}\n{}",
                log()
            );
            // Polling a remote table with a deadline (not synchronisation by sleeping).
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The P4 syncs wyvernd logged so far: (inserted, modified, deleted, refused) each.
pub fn logged_syncs(w: &Wyvernd) -> Vec<[u64; 4]> {
    let text = std::fs::read_to_string(w.log_path()).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("P4Runtime sync"))
        .filter_map(|l| {
            let field = |name: &str| -> Option<u64> {
                l.split_whitespace()
                    .find_map(|f| f.strip_prefix(name))
                    .and_then(|v| v.parse().ok())
            };
            Some([
                field("inserted=")?,
                field("modified=")?,
                field("deleted=")?,
                field("refused=")?,
            ])
        })
        .collect()
}

impl Reader {
    /// Waits until the target's entries stay the same over several reads (at least
    /// 500 ms apart end to end): the controller has nothing left to write.
    pub async fn settled(&mut self, log: impl Fn() -> String) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let mut last = self.describe_all().await.expect("Read");
        let mut since = tokio::time::Instant::now();
        let mut same = 0;
        loop {
            // Polling a remote table with a deadline (not synchronisation by sleeping).
            tokio::time::sleep(Duration::from_millis(100)).await;
            let d = self.describe_all().await.expect("Read");
            if d == last {
                same += 1;
            } else {
                (last, same, since) = (d, 0, tokio::time::Instant::now());
            }
            if same >= 3 && since.elapsed() >= Duration::from_millis(500) {
                return last;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the target's tables never settled\n{}",
                log()
            );
        }
    }
}
