//! A host whose registration lapsed for longer than the others' vanish grace gets its ports
//! back: two real wyvernd chassis on a real etcd, each with its own OVS (dummy datapath).
//! host1 binds a port (ACTIVE). host1 is frozen (SIGSTOP) past its lease TTL and host2's
//! grace, so host2, now the janitor, sets host1's port DOWN. Thawed (SIGCONT), host1's lease
//! keeper grants a new lease and puts its registration again; host1 sees its own key created
//! anew and reports its bound port ACTIVE again. Without that report the port would stay
//! DOWN: nothing about host1's binding changed.

#[allow(dead_code)]
#[path = "../metrics/common.rs"]
mod common;
#[allow(dead_code)]
#[path = "../vms/lab.rs"]
mod lab;

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use wyvern_testkit::etcd::Etcd;
use wyvern_testkit::ovs::OvsSandbox;
use wyvern_testkit::wyvernd::{Wyvernd, WyverndOptions};

use common::{BRIDGE, DEADLINE, WYVERND};
use lab::{id, Api};

/// host1's lease (seconds): short, so the test waits little for it to lapse.
const LEASE_TTL: u64 = 2;
/// host2's vanish grace (milliseconds).
const GRACE_MS: u64 = 500;

fn chassis(etcd: &Etcd, ovs: &OvsSandbox, name: &str) -> anyhow::Result<Wyvernd> {
    WyverndOptions::new(WYVERND)
        .etcd_store(etcd.endpoint())
        .switch(ovs, BRIDGE, "wyvernd-of.sock")
        .arg("--chassis-name")
        .arg(name)
        .arg("--chassis-lease-ttl")
        .arg(LEASE_TTL.to_string())
        .arg("--chassis-vanish-grace-ms")
        .arg(GRACE_MS.to_string())
        .start()
}

/// Polls the port until `want` holds for its status; returns the last port seen.
async fn wait_status(api: &Api, port: &str, want: &str, w: &Wyvernd) -> anyhow::Result<Value> {
    let deadline = Instant::now() + DEADLINE;
    let mut last = Value::Null;
    while Instant::now() < deadline {
        last = api.get(&format!("/v2.0/ports/{port}")).await?;
        if last["port"]["status"] == json!(want) {
            return Ok(last);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!(
        "port {port} never became {want}; last: {last}\nlog:\n{}",
        w.log_tail()
    )
}

/// Sends `sig` (`-STOP`, `-CONT`) to the daemon.
fn signal(w: &Wyvernd, sig: &str) -> anyhow::Result<()> {
    let pid = w.pid().context("wyvernd has no pid")?;
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()?
        .success();
    anyhow::ensure!(ok, "kill {sig} {pid} failed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reregistered_host_reports_its_ports_active_again() -> anyhow::Result<()> {
    let etcd = Etcd::start()?;
    let (ovs1, ovs2) = (OvsSandbox::dummy()?, OvsSandbox::dummy()?);
    let host1 = chassis(&etcd, &ovs1, "host1")?;
    let host2 = chassis(&etcd, &ovs2, "host2")?;
    let api = Api::new(host2.url());

    let net = id(&api.create("network", json!({"name": "n1"})).await?);
    api.create(
        "subnet",
        json!({"network_id": net, "cidr": "10.0.1.0/24", "ip_version": 4}),
    )
    .await?;
    let port = id(&api
        .create("port", json!({"network_id": net, "name": "vm1"}))
        .await?);
    ovs1.add_dummy_port(BRIDGE, "vm1", Some(&port))?;
    let p = wait_status(&api, &port, "ACTIVE", &host1).await?;
    assert_eq!(p["port"]["binding:host_id"], json!("host1"));

    // host1 freezes: its lease lapses, host2 holds that back for its grace, then (the only
    // live chassis, so the janitor) sets host1's port DOWN.
    signal(&host1, "-STOP")?;
    let thaw = Thaw(&host1);
    wait_status(&api, &port, "DOWN", &host2).await?;

    // Thawed: a new lease, the registration put again, the port reported ACTIVE again.
    drop(thaw);
    let p = wait_status(&api, &port, "ACTIVE", &host1).await?;
    assert_eq!(p["port"]["binding:host_id"], json!("host1"));
    assert!(
        host1
            .log_tail()
            .contains("own chassis registration re-created"),
        "host1 did not report its re-registration:\n{}",
        host1.log_tail()
    );
    Ok(())
}

/// Thaws the daemon when dropped (also when the test fails while it is frozen).
struct Thaw<'a>(&'a Wyvernd);

impl Drop for Thaw<'_> {
    fn drop(&mut self) {
        let _ = signal(self.0, "-CONT");
    }
}
