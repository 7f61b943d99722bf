//! Incremental updates: adding one port sends that port's flow-mods and nothing else,
//! counted on the wire with `ovs-ofctl snoop` (which sees every message between the bridge
//! and wyvernd).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use wyvern_pipeline::Owner;

use crate::common::{has_field, mac_of, Demo, Host, Vm, BRIDGE, DEADLINE};
use crate::packet;
use crate::resync::{cookie, cookie_of, uuid};

/// `ovs-ofctl snoop` on the bridge's controller connection, its output in a file; killed
/// and reaped on drop.
struct Snoop {
    child: Child,
    out: PathBuf,
}

impl Snoop {
    fn start(host: &Host) -> Snoop {
        let dir = host.ovs.run_dir();
        let out = dir.join("snoop.txt");
        let file = std::fs::File::create(&out).expect("snoop output file");
        let child = Command::new("ovs-ofctl")
            .args(["-O", "OpenFlow13", "snoop"])
            .arg(format!(
                "unix:{}",
                dir.join(format!("{BRIDGE}.snoop")).display()
            ))
            .env("OVS_RUNDIR", dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone().expect("dup")))
            .stderr(Stdio::from(file))
            .spawn()
            .expect("ovs-ofctl snoop starts");
        Snoop { child, out }
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for Snoop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends an ICMP echo to the gateway (a packet-in for the ICMP app) tagged with `id`, and
/// waits for the echo reply: a marker in the snoop stream.
fn ping_gateway(host: &Host, demo: &Demo, vm: &Vm, id: u16) {
    let gw = crate::common::ip_of(&demo.gw1);
    host.inject(
        vm,
        &packet::icmp_echo(vm.mac, mac_of(&demo.gw1), vm.ip, gw, 64, id),
    );
    host.wait_received(vm, "the gateway's echo reply", |f| {
        f.ipv4()
            .filter(|ip| ip.src == gw && ip.payload.first() == Some(&0))
            .filter(|ip| ip.payload.get(4..6) == Some(&id.to_be_bytes()[..]))
            .map(|_| ())
    });
}

#[tokio::test]
async fn adding_one_port_sends_only_that_ports_flow_mods() {
    let host = Host::start();
    let demo = Demo::build(&host).await;
    let before = host.settled_flows();
    let groups_before = host.groups();

    let snoop = Snoop::start(&host);
    // Snoop attaches asynchronously: wait until it shows a packet-in we caused.
    wyvern_testkit::poll::wait_until("snoop to see a packet-in", DEADLINE, || {
        ping_gateway(&host, &demo, &demo.vm1, 0x7001);
        snoop.text().contains("PACKET_IN")
    })
    .unwrap();
    let start_mark = snoop.text().len();

    let p4 = host.api.port(&demo.net1, "vm4").await;
    let vm4 = host.plug(&p4, "vm4");
    host.wait_flows("vm4's flows", |f| {
        f.iter()
            .any(|l| has_field(l, &format!("actions=output:{}", vm4.ofport)))
    });
    let after = host.settled_flows();
    // A second marker: everything wyvernd sent for vm4 is in the capture before it.
    ping_gateway(&host, &demo, &demo.vm2, 0x7002);
    wyvern_testkit::poll::wait_until("snoop to see the second packet-in", DEADLINE, || {
        snoop.text()[start_mark..].matches("PACKET_IN").count() >= 1
            && snoop.text()[start_mark..].contains("PACKET_OUT")
    })
    .unwrap();
    let text = snoop.text()[start_mark..].to_owned();
    drop(snoop);

    // The flow table: before plus vm4's flows, nothing removed.
    let vm4_cookie = cookie_of(Owner::Port(uuid(&p4)));
    let before_set: BTreeSet<&String> = before.iter().collect();
    let after_set: BTreeSet<&String> = after.iter().collect();
    let added: Vec<&&String> = after_set.difference(&before_set).collect();
    let removed: Vec<&&String> = before_set.difference(&after_set).collect();
    assert!(removed.is_empty(), "flows removed: {removed:#?}");
    assert!(
        added.len() >= 5,
        "vm4 has flows in several tables: {added:#?}"
    );
    for f in &added {
        assert_eq!(
            cookie(f),
            vm4_cookie,
            "a flow not owned by vm4 changed: {f}"
        );
    }

    // The wire: every flow-mod wyvernd sent is an add of one of those flows, and the only
    // other change is net1's flood group gaining vm4.
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let flow_mods: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("OFPT_FLOW_MOD"))
        .collect();
    assert_eq!(
        flow_mods.len(),
        added.len(),
        "one flow-mod per new flow; saw:\n{}\nsnoop:\n{text}",
        flow_mods.join("\n")
    );
    for l in &flow_mods {
        assert!(l.contains("): ADD "), "only adds: {l}");
        assert!(
            l.contains(&format!("cookie:{vm4_cookie} ")),
            "vm4's cookie: {l}"
        );
    }
    let group_mods: Vec<&str> = lines
        .windows(2)
        .filter(|w| w[0].starts_with("OFPT_GROUP_MOD"))
        .map(|w| w[1])
        .collect();
    assert_eq!(group_mods.len(), 1, "one group-mod; snoop:\n{text}");
    assert!(
        group_mods[0].starts_with("MOD ")
            && group_mods[0].contains(&format!("actions=output:{}", vm4.ofport)),
        "{}",
        group_mods[0]
    );
    // Everything went in atomic bundles, each acknowledged by a barrier.
    let opens = text.matches("type=OPEN_REQUEST").count();
    let commits = text.matches("type=COMMIT_REPLY").count();
    let barriers = text.matches("OFPT_BARRIER_REPLY").count();
    assert!(
        opens >= 1 && opens == commits && barriers >= commits,
        "snoop:\n{text}"
    );
    let in_bundles = text.matches("ONFT_BUNDLE_ADD_MESSAGE").count();
    assert_eq!(
        in_bundles,
        flow_mods.len() + group_mods.len(),
        "snoop:\n{text}"
    );
    // One group changes: net1's flood group gains vm4.
    let groups_after = host.groups();
    let changed: Vec<&String> = groups_after
        .iter()
        .filter(|g| !groups_before.contains(g))
        .collect();
    assert_eq!(changed.len(), 1, "{changed:#?}");
    assert!(
        changed[0].contains(&format!("output:{}", vm4.ofport)),
        "{}",
        changed[0]
    );
}
