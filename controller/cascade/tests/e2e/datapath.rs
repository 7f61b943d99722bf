//! A bottom with a datapath: pod A's wyvernd programs a userspace OVS (in its own network
//! namespace). A port created at the top and placed in pod A gets its flows there, its VM
//! (a namespace with a veth on br-int) gets the port's address from the real dhclient, and
//! the bottom's ACTIVE status appears on the top port.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};

use anyhow::Context;
use serde_json::json;
use wyvern_testkit::netns::Netns;
use wyvern_testkit::ovs::OvsSandbox;
use wyvern_testkit::poll::wait_until;
use wyvern_testkit::wyvernd::WyverndOptions;

use crate::common::*;

/// dhclient in a namespace, killed and reaped on drop.
struct Dhclient(Child);

impl Drop for Dhclient {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("failed to run {cmd:?}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_top_port_placed_in_an_ovs_pod_gets_flows_dhcp_and_active_status() {
    let ovs = OvsSandbox::netdev_in_new_netns().expect("OVS starts");
    let a = WyverndOptions::new(wyvernd_bin())
        .switch(&ovs, "br-int", "of.sock")
        .start()
        .expect("wyvernd with OVS starts");
    wait_until("pod A's wyvernd to program br-int", LONG, || {
        ovs.ofctl(&["dump-flows", "br-int", "table=0"])
            .map(|f| f.contains("priority=0"))
            .unwrap_or(false)
    })
    .unwrap();
    let b = WyverndOptions::new(wyvernd_bin()).start().unwrap();
    let sites = Sites::start_with(a, b).await.expect("top starts");
    let top = sites.top();

    let net = top.create("network", json!({"name": "dp"})).await.unwrap();
    top.create(
        "subnet",
        json!({"network_id": id(&net), "cidr": "10.40.0.0/24", "ip_version": 4}),
    )
    .await
    .unwrap();
    let port = top
        .create(
            "port",
            json!({"network_id": id(&net), "name": "vm1", "binding:host_id": "host1@RegionA"}),
        )
        .await
        .unwrap();
    let mac = port["mac_address"].as_str().unwrap().to_owned();
    let ip = port["fixed_ips"][0]["ip_address"]
        .as_str()
        .unwrap()
        .to_owned();
    sites.settled().await.unwrap();

    // The VM: a namespace whose eth0 has the port's MAC, its veth peer on br-int.
    let ovs_ns = ovs.netns().expect("OVS runs in a namespace").to_owned();
    let vm = Netns::new("wyv-casc").unwrap();
    let tap = "tapc1";
    run(Command::new("ip").args([
        "netns",
        "exec",
        &ovs_ns,
        "ip",
        "link",
        "add",
        tap,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        vm.name(),
    ]))
    .unwrap();
    run(Command::new("ip").args(["netns", "exec", &ovs_ns, "ip", "link", "set", tap, "up"]))
        .unwrap();
    vm.exec(&["ip", "link", "set", "eth0", "address", &mac])
        .unwrap();
    vm.exec(&["ip", "link", "set", "eth0", "up"]).unwrap();
    ovs.vsctl(&[
        "add-port",
        "br-int",
        tap,
        "--",
        "set",
        "interface",
        tap,
        &format!("external_ids:iface-id={}", id(&port)),
    ])
    .unwrap();

    // Flows for the port's MAC, installed by the bottom.
    wait_until("the port's flows in pod A's OVS", LONG, || {
        ovs.ofctl(&["dump-flows", "br-int"])
            .map(|f| f.contains(&mac))
            .unwrap_or(false)
    })
    .unwrap();
    // Status flows up: the bottom binds the port, the top shows it ACTIVE.
    eventually("the top port to become ACTIVE", LONG, || async {
        let p = top.get(&format!("/v2.0/ports/{}", id(&port))).await.ok()?;
        (p["port"]["status"] == "ACTIVE").then_some(())
    })
    .await
    .with_context(|| sites.top.log_tail())
    .unwrap();

    // DHCP answers with the address the top allocated.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script.sh");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nenv | grep -E '^(reason|new_)' > {d}/env.tmp && mv {d}/env.tmp {d}/env.$reason\nexit 0\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let conf = dir.path().join("dhclient.conf");
    fs::write(
        &conf,
        "timeout 60;\ninitial-interval 1;\nbackoff-cutoff 2;\n",
    )
    .unwrap();
    let child = vm
        .command("dhclient")
        .args(["-d", "-1", "-cf"])
        .arg(&conf)
        .arg("-sf")
        .arg(&script)
        .arg("-lf")
        .arg(dir.path().join("leases"))
        .arg("-pf")
        .arg(dir.path().join("dhclient.pid"))
        .arg("eth0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dhclient starts");
    let _dhclient = Dhclient(child);
    let bound = dir.path().join("env.BOUND");
    wait_until("dhclient BOUND", LONG, || bound.exists()).unwrap();
    let env = fs::read_to_string(&bound).unwrap();
    assert!(
        env.lines().any(|l| l == format!("new_ip_address={ip}")),
        "leased the top's address {ip}: {env}"
    );
}
