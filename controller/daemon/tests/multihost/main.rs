//! Many hosts end to end: three hosts, each a network namespace with its own ovsdb-server
//! and ovs-vswitchd (userspace datapath) plus its own wyvernd, one etcd for all, a Linux
//! bridge in a fourth namespace as the underlay, and VMs (namespaces running the real
//! `dhclient` and `ping`) on each host. wyvernd itself runs in the root namespace: it
//! reaches its host only through the unix sockets in that host's OVS run dir, and etcd on
//! loopback.
//!
//! Drop order is field order: VMs, tcpdump, hosts (wyvernd, then OVS and its namespace),
//! the underlay, etcd, the scratch dir.

#[allow(dead_code)]
#[path = "../vms/lab.rs"]
mod lab;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use wyvern_testkit::etcd::Etcd;
use wyvern_testkit::netns::{run, Netns};
use wyvern_testkit::ovs::OvsSandbox;
use wyvern_testkit::poll::{wait_for, wait_until};
use wyvern_testkit::wyvernd::{Wyvernd, WyverndOptions};

use lab::{id, Api, Vm, LONG, WYVERND};

/// Seconds a dead host's registration outlives it (short, so the test sees it expire).
const LEASE_TTL: u64 = 3;
/// How long a vanished chassis is held back before the others believe it (wyvernd's
/// `--chassis-vanish-grace-ms`).
const VANISH_GRACE_MS: u64 = 1000;

/// One compute host: its OVS (in its own namespace), its wyvernd, its underlay address.
struct Host {
    name: String,
    wyvernd: Wyvernd,
    ovs: OvsSandbox,
    api: Api,
    /// The underlay veth's peer in the underlay namespace (where captures run).
    under_if: String,
}

impl Host {
    fn start(n: usize, etcd: &Etcd, under: &Netns) -> anyhow::Result<Host> {
        let name = format!("host{n}");
        let ovs = OvsSandbox::netdev_in_new_netns().context("failed to start OVS")?;
        let ns = ovs.netns().context("OVS runs in no namespace")?.to_owned();
        let ip = format!("172.31.0.{n}");
        // The underlay: a veth from the host to the underlay bridge.
        let under_if = format!("p{n}");
        under.exec(&[
            "ip", "link", "add", &under_if, "type", "veth", "peer", "name", "u0", "netns", &ns,
        ])?;
        under.exec(&["ip", "link", "set", &under_if, "master", "br0", "up"])?;
        let host_exec = |argv: &[&str]| -> anyhow::Result<String> {
            let mut full = vec!["netns", "exec", ns.as_str()];
            full.extend_from_slice(argv);
            run(Command::new("ip").args(&full))
        };
        host_exec(&["ip", "link", "set", "u0", "up"])?;
        // Userspace tunnelling: the endpoint address sits on an OVS bridge that holds the
        // physical (here: veth) port; OVS learns the route from it.
        ovs.vsctl(&[
            "add-br",
            "br-phy",
            "--",
            "set",
            "bridge",
            "br-phy",
            "datapath_type=netdev",
            "--",
            "add-port",
            "br-phy",
            "u0",
        ])?;
        host_exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "br-phy"])?;
        host_exec(&["ip", "link", "set", "br-phy", "up"])?;
        let of_sock = ovs.run_dir().join("of.sock");
        let wyvernd = WyverndOptions::new(WYVERND)
            .etcd_store(etcd.endpoint())
            .arg("--ovsdb")
            .arg(ovs.db_target())
            .arg("--datapath-type")
            .arg("netdev")
            .arg("--openflow-listen")
            .arg(format!("unix:{}", of_sock.display()))
            .arg("--bridge")
            .arg("br-int")
            .arg("--overlay-overhead")
            .arg("50")
            .arg("--chassis-name")
            .arg(&name)
            .arg("--tunnel-ip")
            .arg(&ip)
            .arg("--chassis-lease-ttl")
            .arg(LEASE_TTL.to_string())
            .arg("--chassis-vanish-grace-ms")
            .arg(VANISH_GRACE_MS.to_string())
            .start()
            .context("failed to start wyvernd")?;
        wait_until("wyvernd to program br-int", LONG, || {
            ovs.ofctl(&["dump-flows", "br-int", "table=0"])
                .map(|f| f.contains("priority=0"))
                .unwrap_or(false)
        })
        .with_context(|| wyvernd.log_tail())?;
        wait_until("the tunnel port on br-int", LONG, || {
            ovs.ofport("wyvern-vxlan").ok().flatten() == Some(60000)
        })
        .with_context(|| wyvernd.log_tail())?;
        let api = Api::new(wyvernd.url());
        Ok(Host {
            name,
            wyvernd,
            ovs,
            api,
            under_if,
        })
    }

    /// br-int's flows with their age: (seconds installed, normalized flow).
    fn flows_with_age(&self) -> anyhow::Result<Vec<(f64, String)>> {
        let dump = self.ovs.ofctl(&["dump-flows", "br-int"])?;
        let mut out = Vec::new();
        for line in dump.lines().filter(|l| l.contains("duration=")) {
            let age = line
                .split(", ")
                .find_map(|f| f.trim().strip_prefix("duration="))
                .and_then(|d| d.trim_end_matches('s').parse().ok())
                .context("flow without duration")?;
            let norm = wyvern_testkit::ovs::normalize_flow_dump(line).join("");
            out.push((age, norm));
        }
        out.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(out)
    }
}

impl Host {
    /// The lines of wyvernd's current log mentioning any of `words`, for failure messages.
    fn log_about(&self, words: &[&str]) -> String {
        std::fs::read_to_string(self.wyvernd.log_path())
            .unwrap_or_default()
            .lines()
            .filter(|l| words.iter().any(|w| l.contains(w)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `etcdctl get --prefix --keys-only`.
fn etcd_keys(etcd: &Etcd, prefix: &str) -> String {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            &etcd.endpoint(),
            "get",
            "--prefix",
            "--keys-only",
            prefix,
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// A tcpdump on an underlay port, killed on drop.
struct Capture {
    child: Child,
    file: std::path::PathBuf,
}

impl Capture {
    fn start(under: &Netns, iface: &str, file: std::path::PathBuf) -> anyhow::Result<Capture> {
        let out = std::fs::File::create(&file).context("failed to create the capture file")?;
        let child = under
            .command("tcpdump")
            .args(["-l", "-n", "-v", "-i", iface, "udp", "port", "4789"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::null())
            .spawn()
            .context("failed to start tcpdump")?;
        Ok(Capture { child, file })
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.file).unwrap_or_default()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct MultiHost {
    vms: Vec<(usize, Vm)>,
    hosts: Vec<Host>,
    under: Netns,
    etcd: Etcd,
    dir: tempfile::TempDir,
}

impl MultiHost {
    fn start(n: usize) -> anyhow::Result<MultiHost> {
        let dir = tempfile::Builder::new()
            .prefix("wyv-mh-")
            .tempdir_in("/tmp")
            .context("failed to create the scratch dir")?;
        let etcd = Etcd::start()?;
        let under = Netns::new("wyv-under")?;
        under.exec(&["ip", "link", "add", "br0", "type", "bridge"])?;
        under.exec(&["ip", "link", "set", "br0", "up"])?;
        let mut hosts = Vec::new();
        for i in 1..=n {
            hosts.push(Host::start(i, &etcd, &under)?);
        }
        Ok(MultiHost {
            vms: Vec::new(),
            hosts,
            under,
            etcd,
            dir,
        })
    }

    fn api(&self) -> &Api {
        &self.hosts[0].api
    }

    /// A port on `network` (created through host 1's API), a VM for it on `host` (0-based),
    /// and the wait until that host bound it: ACTIVE with `binding:host_id` = the host.
    async fn add_vm(&mut self, name: &str, host: usize, network: &str) -> anyhow::Result<()> {
        let port = self
            .api()
            .create("port", json!({"network_id": network, "name": name}))
            .await?;
        let n = self.vms.len() + 1;
        let vm = Vm::attach(&self.hosts[host].ovs, self.dir.path(), name, n, port)?;
        let want = self.hosts[host].name.clone();
        let p = self
            .wait_port(&id(&vm.port), |p| {
                p["status"] == json!("ACTIVE") && p["binding:host_id"] == json!(want)
            })
            .await
            .with_context(|| self.hosts[host].wyvernd.log_tail())?;
        assert_eq!(p["binding:host_id"], json!(self.hosts[host].name));
        self.vms.push((host, vm));
        Ok(())
    }

    fn vm(&self, name: &str) -> &Vm {
        self.vms
            .iter()
            .map(|(_, v)| v)
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("no VM {name}"))
    }

    /// Polls the port through host 1's API until `ok` holds; the port.
    async fn wait_port(&self, port: &str, ok: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        let deadline = Instant::now() + LONG;
        let mut pause = Duration::from_millis(10);
        loop {
            let p = self.api().get(&format!("/v2.0/ports/{port}")).await?;
            if ok(&p["port"]) {
                return Ok(p["port"].clone());
            }
            if Instant::now() >= deadline {
                bail!("port {port} never reached the expected state: {p}");
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }
}

/// Three hosts, two networks joined by a distributed router, VMs spread over the hosts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_overlay_dhcp_routing_and_host_failure() -> anyhow::Result<()> {
    let mut mh = MultiHost::start(3)?;
    let api = mh.api().clone();
    // Every host sees every chassis.
    let chassis = wait_for("three chassis registered", LONG, || {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args([
                "--endpoints",
                &mh.etcd.endpoint(),
                "get",
                "--prefix",
                "--keys-only",
                "/wyvern/chassis/",
            ])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (text.lines().filter(|l| !l.is_empty()).count() == 3).then_some(text)
    })?;
    assert!(chassis.contains("/wyvern/chassis/host2"), "{chassis}");

    let net_a = id(&api.create("network", json!({"name": "net-a"})).await?);
    let net_b = id(&api.create("network", json!({"name": "net-b"})).await?);
    let sub_a = api
        .create(
            "subnet",
            json!({"network_id": net_a, "cidr": "10.0.1.0/24", "ip_version": 4}),
        )
        .await?;
    let sub_b = api
        .create(
            "subnet",
            json!({"network_id": net_b, "cidr": "10.0.2.0/24", "ip_version": 4}),
        )
        .await?;
    let router = id(&api.create("router", json!({"name": "r1"})).await?);
    for s in [&sub_a, &sub_b] {
        api.put(
            &format!("/v2.0/routers/{router}/add_router_interface"),
            json!({"subnet_id": id(s)}),
        )
        .await?;
    }
    mh.add_vm("vm1", 0, &net_a).await?;
    mh.add_vm("vm2", 1, &net_a).await?;
    mh.add_vm("vm3", 2, &net_b).await?;

    // DHCP from each VM's own host (the DHCP flow exists only where the port is bound).
    for (_, vm) in &mut mh.vms {
        vm.start_dhclient()?;
    }
    for (h, vm) in &mh.vms {
        let lease = vm
            .wait_bound(LONG)
            .with_context(|| mh.hosts[*h].wyvernd.log_tail())?;
        assert_eq!(
            lease.get("new_ip_address").map(String::as_str),
            Some(vm.ip().to_string().as_str()),
            "{} got the wrong address",
            vm.name
        );
    }

    let cap = Capture::start(&mh.under, &mh.hosts[1].under_if, mh.dir.path().join("cap1"))?;
    // Within a network, across hosts.
    let (vm1, vm2, vm3) = (mh.vm("vm1"), mh.vm("vm2"), mh.vm("vm3"));
    let p = vm1.ping_until_ok(&vm2.ip().to_string())?;
    assert_eq!(p.ttl, Some(64), "same network: not routed\n{}", p.text);
    // Across the router, across hosts: one hop.
    let p = vm1.ping_until_ok(&vm3.ip().to_string())?;
    assert_eq!(p.ttl, Some(63), "routed once\n{}", p.text);
    let p = vm3.ping_until_ok(&vm2.ip().to_string())?;
    assert_eq!(p.ttl, Some(63), "routed once\n{}", p.text);
    // The underlay saw VXLAN with network A's VNI.
    let vni = format!("vni {}", wyvern_pipeline::vni_of(&net_a.parse()?));
    wait_until("VXLAN on the underlay", LONG, || cap.text().contains(&vni))
        .with_context(|| format!("capture on host2's underlay port:\n{}", cap.text()))?;
    drop(cap);

    // Host 3's wyvernd dies: the others keep talking.
    let before = mh.hosts[2].flows_with_age()?;
    mh.hosts[2].wyvernd.kill()?;
    let killed = Instant::now();
    let (vm1, vm2) = (mh.vm("vm1"), mh.vm("vm2"));
    assert_eq!(
        vm1.ping_burst(&vm2.ip().to_string())?,
        3,
        "vm1 -> vm2 with host3 dead"
    );
    // Its chassis lease expires, the others hold that back for the vanish grace, and then
    // its port goes DOWN (written by a surviving host).
    let vm3_port = id(&mh.vm("vm3").port);
    mh.wait_port(&vm3_port, |p| p["status"] == json!("DOWN"))
        .await
        .with_context(|| {
            format!(
                "chassis keys: {}\nhost1's log about chassis and ports:\n{}",
                etcd_keys(&mh.etcd, "/wyvern/chassis/"),
                mh.hosts[0].log_about(&["chassis", "port status", "lease"])
            )
        })?;
    let down_after = killed.elapsed();
    assert!(
        down_after >= Duration::from_secs(LEASE_TTL - 1) + Duration::from_millis(VANISH_GRACE_MS),
        "DOWN after {down_after:?}: before the lease could expire and the grace pass"
    );
    assert_eq!(
        vm1.ping_burst(&vm2.ip().to_string())?,
        3,
        "vm1 -> vm2 after host3 expired"
    );

    // Restart: host 3 converges without a flush (no flow of its switch was replaced).
    let restarted = Instant::now();
    mh.hosts[2].wyvernd.restart()?;
    mh.wait_port(&vm3_port, |p| p["status"] == json!("ACTIVE"))
        .await
        .with_context(|| mh.hosts[2].wyvernd.log_tail())?;
    let vm1 = mh.vm("vm1");
    let p = vm1.ping_until_ok(&mh.vm("vm3").ip().to_string())?;
    assert_eq!(p.ttl, Some(63));
    let since = restarted.elapsed().as_secs_f64();
    let after = mh.hosts[2].flows_with_age()?;
    let names = |v: &[(f64, String)]| v.iter().map(|f| f.1.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&before),
        names(&after),
        "host3's flows changed across its restart"
    );
    for (age, flow) in &after {
        assert!(
            *age + 0.5 >= since,
            "flow re-installed after the restart ({age}s old, restart {since}s ago): {flow}"
        );
    }
    Ok(())
}
