//! The OVS harness against real ovsdb-server and ovs-vswitchd processes.

use std::path::Path;
use std::time::Duration;

use wyvern_testkit::netns::Netns;
use wyvern_testkit::ovs::OvsSandbox;
use wyvern_testkit::poll::wait_until;

fn alive(pid: u32) -> bool {
    // A reaped process has no /proc entry; a zombie would still show state Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

#[test]
fn dummy_sandbox_bridge_ports_flows_restart_and_clean_drop() -> anyhow::Result<()> {
    let mut ovs = OvsSandbox::dummy()?;
    let dir = ovs.run_dir().to_path_buf();
    assert!(ovs.db_socket().exists());

    ovs.add_bridge("br-int", Some("tcp:127.0.0.1:1"))?;
    assert_eq!(
        ovs.vsctl(&["get", "Bridge", "br-int", "datapath_type"])?
            .trim(),
        "dummy"
    );
    assert_eq!(
        ovs.vsctl(&["get", "Bridge", "br-int", "fail_mode"])?.trim(),
        "secure"
    );
    assert_eq!(
        ovs.vsctl(&["get-controller", "br-int"])?.trim(),
        "tcp:127.0.0.1:1"
    );

    let p1 = ovs.add_dummy_port("br-int", "p1", Some("lp-1"))?;
    let p2 = ovs.add_dummy_port("br-int", "p2", None)?;
    assert_ne!(p1, p2);
    assert_eq!(ovs.ofport("p1")?, Some(p1));
    assert_eq!(
        ovs.vsctl(&["get", "Interface", "p1", "external_ids:iface-id"])?
            .trim(),
        "lp-1"
    );

    // fail-mode secure: no flows until someone adds them.
    assert!(ovs.dump_flows("br-int")?.is_empty());
    ovs.ofctl(&[
        "add-flow",
        "br-int",
        "table=0,priority=10,in_port=1,actions=output:2",
    ])?;
    let flows = ovs.dump_flows("br-int")?;
    assert_eq!(
        flows,
        vec!["cookie=0x0, table=0, priority=10,in_port=1 actions=output:2"]
    );
    assert!(ovs.appctl(&["version"])?.contains("Open vSwitch"));
    assert!(ovs.appctl_ovsdb(&["version"])?.contains("Open vSwitch"));

    // A restarted ovs-vswitchd comes back with the ports (from the db) but no flows.
    let old_pid = ovs.vswitchd_pid().expect("running");
    ovs.restart_vswitchd()?;
    let new_pid = ovs.vswitchd_pid().expect("running");
    assert_ne!(old_pid, new_pid);
    assert!(!alive(old_pid), "old ovs-vswitchd must be reaped");
    wait_until("p1 ofport after restart", Duration::from_secs(10), || {
        ovs.ofport("p1").ok().flatten().is_some()
    })?;
    assert!(ovs.dump_flows("br-int")?.is_empty());

    let db_old = ovs.ovsdb_pid().expect("running");
    ovs.restart_ovsdb()?;
    assert!(!alive(db_old));
    assert_eq!(
        ovs.ofport("p2")?,
        Some(p2),
        "database survives an ovsdb-server restart"
    );

    let pids = [
        ovs.vswitchd_pid().expect("running"),
        ovs.ovsdb_pid().expect("running"),
    ];
    drop(ovs);
    for pid in pids {
        assert!(!alive(pid), "pid {pid} still alive after drop");
    }
    assert!(!Path::new(&dir).exists(), "run dir removed");
    Ok(())
}

#[test]
fn two_dummy_sandboxes_run_side_by_side() -> anyhow::Result<()> {
    let a = OvsSandbox::dummy()?;
    let b = OvsSandbox::dummy()?;
    a.add_bridge("br-int", None)?;
    b.add_bridge("br-int", None)?;
    a.add_dummy_port("br-int", "p1", None)?;
    assert!(b.vsctl(&["list-ports", "br-int"])?.trim().is_empty());
    Ok(())
}

#[test]
fn netdev_sandbox_in_its_own_netns_leaves_no_devices() -> anyhow::Result<()> {
    let ovs = OvsSandbox::netdev_in_new_netns()?;
    let ns = ovs.netns().expect("netns").to_owned();
    ovs.add_bridge("br-int", None)?;
    let probe = Netns::new("wyv-probe")?; // just to prove names are unique
    assert_ne!(probe.name(), ns);
    // The userspace datapath made a real tap named br-int, inside the namespace only.
    let links = std::process::Command::new("ip")
        .args(["netns", "exec", &ns, "ip", "-o", "link"])
        .output()?;
    assert!(String::from_utf8_lossy(&links.stdout).contains("br-int"));
    drop(ovs);
    let list = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()?;
    assert!(
        !String::from_utf8_lossy(&list.stdout).contains(&ns),
        "netns deleted"
    );
    Ok(())
}
