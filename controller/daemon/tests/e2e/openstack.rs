//! The real `openstack` CLI (python-openstackclient from PyPI) against wyvernd, through the
//! whole lifecycle. The client comes from the shared OpenStack venv under the target dir
//! (`wyvern_testkit::openstack`), installed during test setup and reused by later runs. If it
//! cannot be installed, the test fails: it never passes without having run the client.

use std::path::Path;

use serde_json::{json, Value};
use wyvern_testkit::openstack::{Os, OsAuth};

use crate::common::*;

fn names(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .expect("a JSON list")
        .iter()
        .filter_map(|o| o["Name"].as_str().map(str::to_owned))
        .collect();
    v.sort();
    v
}

#[test]
fn openstack_cli_drives_the_whole_lifecycle() {
    let venv = Os::venv(Path::new(env!("CARGO_TARGET_TMPDIR")))
        .expect("the openstack CLI installs from PyPI");
    let w = start();
    let os = Os::new(&venv, OsAuth::None { endpoint: w.url() });

    // Networks.
    let net1 = os.json(&["network", "create", "net1"]);
    assert_eq!(net1["name"], json!("net1"));
    assert_eq!(net1["status"], json!("ACTIVE"));
    os.json(&["network", "create", "net2"]);
    assert_eq!(names(&os.json(&["network", "list"])), ["net1", "net2"]);
    os.run(&[
        "network",
        "set",
        "--name",
        "net1b",
        "--description",
        "blue",
        "net1",
    ]);
    let shown = os.json(&["network", "show", "net1b"]);
    assert_eq!(shown["id"], net1["id"]);
    assert_eq!(shown["description"], json!("blue"));

    // Subnets with every option of the issue.
    let sub1 = os.json(&[
        "subnet",
        "create",
        "sub1",
        "--network",
        "net1b",
        "--subnet-range",
        "10.0.1.0/24",
        "--allocation-pool",
        "start=10.0.1.10,end=10.0.1.100",
        "--dns-nameserver",
        "10.0.0.53",
        "--host-route",
        "destination=192.168.0.0/16,gateway=10.0.1.254",
        "--gateway",
        "10.0.1.1",
        "--no-dhcp",
    ]);
    assert_eq!(sub1["cidr"], json!("10.0.1.0/24"));
    assert_eq!(sub1["gateway_ip"], json!("10.0.1.1"));
    assert_eq!(sub1["enable_dhcp"], json!(false));
    assert_eq!(
        sub1["allocation_pools"],
        json!([{"start": "10.0.1.10", "end": "10.0.1.100"}])
    );
    assert_eq!(sub1["dns_nameservers"], json!(["10.0.0.53"]));
    assert_eq!(
        sub1["host_routes"],
        json!([{"destination": "192.168.0.0/16", "nexthop": "10.0.1.254"}])
    );
    let sub2 = os.json(&[
        "subnet",
        "create",
        "sub2",
        "--network",
        "net2",
        "--subnet-range",
        "10.0.2.0/24",
    ]);
    assert_eq!(sub2["gateway_ip"], json!("10.0.2.1"));
    assert_eq!(names(&os.json(&["subnet", "list"])), ["sub1", "sub2"]);
    // IPv6 is refused with the server's message.
    let err = os.fails(&[
        "subnet",
        "create",
        "v6",
        "--network",
        "net2",
        "--ip-version",
        "6",
        "--subnet-range",
        "2001:db8::/64",
    ]);
    assert!(err.contains("IPv6"), "{err}");

    // Ports with a requested IP and MAC.
    let p1 = os.json(&[
        "port",
        "create",
        "p1",
        "--network",
        "net1b",
        "--fixed-ip",
        "subnet=sub1,ip-address=10.0.1.50",
        "--mac-address",
        "fa:16:3e:11:22:33",
    ]);
    assert_eq!(p1["mac_address"], json!("fa:16:3e:11:22:33"));
    assert_eq!(
        p1["fixed_ips"],
        json!([{"subnet_id": sub1["id"], "ip_address": "10.0.1.50"}])
    );
    let rp2 = os.json(&[
        "port",
        "create",
        "rp2",
        "--network",
        "net2",
        "--fixed-ip",
        "subnet=sub2,ip-address=10.0.2.254",
    ]);
    let err = os.fails(&[
        "port",
        "create",
        "dup",
        "--network",
        "net1b",
        "--fixed-ip",
        "subnet=sub1,ip-address=10.0.1.50",
    ]);
    assert!(err.contains("10.0.1.50"), "{err}");

    // Router: interfaces by subnet and by port, a static route.
    let r = os.json(&["router", "create", "r1"]);
    assert_eq!(r["name"], json!("r1"));
    os.run(&["router", "add", "subnet", "r1", "sub1"]);
    os.run(&["router", "add", "port", "r1", "rp2"]);
    let rports = os.json(&["port", "list", "--router", "r1"]);
    let mut rips: Vec<String> = rports
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            p["Fixed IP Addresses"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|f| f["ip_address"].as_str().map(str::to_owned))
        .collect();
    rips.sort();
    assert_eq!(rips, ["10.0.1.1", "10.0.2.254"]);
    os.run(&[
        "router",
        "set",
        "r1",
        "--route",
        "destination=172.16.0.0/16,gateway=10.0.1.50",
    ]);
    let shown = os.json(&["router", "show", "r1"]);
    assert_eq!(
        shown["routes"],
        json!([{"destination": "172.16.0.0/16", "nexthop": "10.0.1.50"}])
    );
    // In use: the router cannot be deleted while it has interfaces.
    os.fails(&["router", "delete", "r1"]);

    // Take it all apart.
    os.run(&["router", "set", "r1", "--no-route"]);
    assert_eq!(os.json(&["router", "show", "r1"])["routes"], json!([]));
    os.run(&["router", "remove", "subnet", "r1", "sub1"]);
    os.run(&["router", "remove", "port", "r1", "rp2"]);
    os.run(&["router", "delete", "r1"]);
    assert_eq!(os.json(&["router", "list"]), json!([]));
    os.run(&["port", "delete", "p1"]);
    if os
        .command(&["port", "show", rp2["id"].as_str().unwrap()])
        .expect("openstack runs")
        .status
        .success()
    {
        os.run(&["port", "delete", "rp2"]);
    }
    assert_eq!(os.json(&["port", "list"]), json!([]));
    os.run(&["subnet", "delete", "sub1", "sub2"]);
    os.run(&["network", "delete", "net1b", "net2"]);
    assert_eq!(os.json(&["network", "list"]), json!([]));
}
