//! The switch stays exactly right through restarts: of ovs-vswitchd (flows lost, wyvernd
//! reinstalls them) and of wyvernd (flows kept, wyvernd must touch none of them).

use std::collections::BTreeSet;
use std::time::Instant;

use uuid::Uuid;
use wyvern_pipeline::Owner;

use crate::common::{id, mac_of, Demo, Host};
use crate::packet::{self};

/// The cookie field of a normalized flow line.
pub fn cookie(flow: &str) -> &str {
    flow.split(", ")
        .next()
        .and_then(|f| f.strip_prefix("cookie="))
        .unwrap_or_else(|| panic!("no cookie in {flow}"))
}

/// The cookie wyvern gives the flows of `owner`, as ovs-ofctl prints it.
pub fn cookie_of(owner: Owner) -> String {
    format!("{:#x}", wyvern_ofpipe::cookie_of(owner))
}

pub fn uuid(v: &serde_json::Value) -> Uuid {
    id(v).parse().expect("ids are UUIDs")
}

/// Sends traffic through vm1's, vm2's and vm3's flows and waits for it to arrive.
fn send_traffic(host: &Host, demo: &Demo, ip_id: u16) {
    let (vm1, vm2, vm3) = (&demo.vm1, &demo.vm2, &demo.vm3);
    host.inject(
        vm1,
        &packet::udp_packet(vm1.mac, vm2.mac, vm1.ip, vm2.ip, ip_id, 5000, 6000),
    );
    host.inject(
        vm1,
        &packet::icmp_echo(vm1.mac, mac_of(&demo.gw1), vm1.ip, vm3.ip, 64, ip_id),
    );
    for vm in [vm2, vm3] {
        host.wait_received(vm, "test traffic", |f| {
            f.ipv4().filter(|ip| ip.id == ip_id).map(|_| ())
        });
    }
}

#[tokio::test]
async fn after_vswitchd_restart_the_switch_holds_exactly_the_desired_flows() {
    let mut host = Host::start();
    let demo = Demo::build(&host).await;
    let before = host.settled_flows();
    let groups_before = host.groups();
    assert!(before.len() > 20, "a real pipeline: {before:#?}");

    let restarted = Instant::now();
    host.ovs.restart_vswitchd().expect("ovs-vswitchd restarts");

    // ovs-vswitchd keeps no flows across a restart: everything now in the table came from
    // wyvernd after the restart, and it must be the same set, no more, no less.
    host.wait_flows("the flows from before the restart", |f| f == before);
    assert_eq!(host.settled_flows(), before, "and they stay so");
    assert_eq!(host.groups(), groups_before, "flood groups restored");
    let age = restarted.elapsed().as_secs_f64();
    for (flow, _, duration) in host.flow_stats() {
        assert!(duration <= age + 0.5, "{flow} survived the restart?");
    }
    // And they forward.
    send_traffic(&host, &demo, 31);
}

#[tokio::test]
async fn after_wyvernd_restart_correct_flows_are_untouched() {
    let mut host = Host::start();
    let demo = Demo::build(&host).await;
    send_traffic(&host, &demo, 41);
    // Counters of the flows the traffic took; OVS credits them shortly after forwarding.
    let classify_vm1 = format!("in_port={}", demo.vm1.ofport);
    let counted = |stats: &[(String, u64, f64)]| {
        stats
            .iter()
            .find(|(f, _, _)| crate::common::has_field(f, &classify_vm1))
            .map(|(_, n, _)| *n)
            .unwrap_or(0)
    };
    wyvern_testkit::poll::wait_until(
        "vm1's classify flow to count 2",
        crate::common::DEADLINE,
        || counted(&host.flow_stats()) == 2,
    )
    .unwrap();
    let before_flows = host.settled_flows();
    let before = host.flow_stats();
    let groups_before = host.groups();

    host.restart_wyvernd();

    // Proof that the new wyvernd has synced with the switch: a change made through it
    // arrives (ofctrl sends updates after the sync that follows the connection).
    host.wait_connected();
    let net3 = host.api.network("net3").await;
    host.api.subnet(&net3, "10.0.3.0/24", "10.0.3.1").await;
    let p4 = host.api.port(&net3, "vm4").await;
    let vm4 = host.plug(&p4, "vm4");
    host.wait_flows("vm4's flows", |f| {
        f.iter()
            .any(|l| crate::common::has_field(l, &format!("actions=output:{}", vm4.ofport)))
    });
    let after_flows = host.settled_flows();
    let after = host.flow_stats();

    let new_owners: BTreeSet<String> = [
        cookie_of(Owner::Network(uuid(&net3))),
        cookie_of(Owner::Port(uuid(&p4))),
    ]
    .into();
    let (new, old): (Vec<String>, Vec<String>) = after_flows
        .into_iter()
        .partition(|f| new_owners.contains(cookie(f)));
    assert!(!new.is_empty(), "net3 and vm4 got flows");
    assert_eq!(
        old, before_flows,
        "every flow from before is there, unchanged"
    );
    // Not deleted and re-added either: their counters and ages carried on.
    for (flow, n, d) in &before {
        let (_, n2, d2) = after
            .iter()
            .find(|(f, _, _)| f == flow)
            .unwrap_or_else(|| panic!("{flow} is gone"));
        assert_eq!(n2, n, "packet counter of {flow} reset");
        assert!(d2 >= d, "{flow} was re-added ({d2}s old, was {d}s)");
    }
    let groups_after = host.groups();
    for g in &groups_before {
        assert!(groups_after.contains(g), "group {g} changed");
    }
    assert_eq!(
        groups_after.len(),
        groups_before.len() + 1,
        "net3's flood group"
    );
    // The old topology still forwards, through the same flows.
    send_traffic(&host, &demo, 42);
}
