//! Real pings between VMs through flows only: within a subnet, across the router (TTL 63),
//! to the gateway, TTL expiry at the router; spoofing; router interface removal; reactive
//! mode.

use crate::lab::*;

/// Everything a VM user expects of the two networks and the router. Returns nothing: each
/// step asserts.
fn connectivity(lab: &Lab) -> anyhow::Result<()> {
    let (vm1, vm2, vm3) = (lab.vm("vm1"), lab.vm("vm2"), lab.vm("vm3"));
    let (ip1, ip2, ip3) = (
        vm1.ip().to_string(),
        vm2.ip().to_string(),
        vm3.ip().to_string(),
    );

    // Same subnet: switched, TTL untouched.
    let p = vm1.ping_until_ok(&ip2)?;
    assert_eq!(p.ttl, Some(64), "vm1 -> vm2: {}", p.text);
    // Across the router, both ways: one hop, TTL 63.
    let p = vm1.ping_until_ok(&ip3)?;
    assert_eq!(p.ttl, Some(63), "vm1 -> vm3: {}", p.text);
    let p = vm3.ping_until_ok(&ip2)?;
    assert_eq!(p.ttl, Some(63), "vm3 -> vm2: {}", p.text);
    // The gateways answer echo (the controller answers, from the router IP).
    let p = vm1.ping_until_ok(GW_A)?;
    assert!(p.text.contains(&format!("from {GW_A}")), "{}", p.text);
    let p = vm3.ping_until_ok(GW_B)?;
    assert!(p.text.contains(&format!("from {GW_B}")), "{}", p.text);
    // The router's far interface answers too.
    vm1.ping_until_ok(GW_B)?;

    // TTL 1 across the router: time exceeded, from the gateway the packet was sent to.
    let p = vm1.ping_once(&ip3, Some(1))?;
    assert!(!p.ok, "a TTL-1 ping crossed the router: {}", p.text);
    assert!(
        p.text.contains(&format!("From {GW_A}")) && p.text.contains("Time to live exceeded"),
        "vm1 -> vm3 ttl 1: {}",
        p.text
    );
    let p = vm3.ping_once(&ip1, Some(1))?;
    assert!(
        p.text.contains(&format!("From {GW_B}")) && p.text.contains("Time to live exceeded"),
        "vm3 -> vm1 ttl 1: {}",
        p.text
    );
    // TTL 2 is enough for one hop.
    let p = vm3.ping_once(&ip1, Some(2))?;
    assert!(p.ok, "vm3 -> vm1 ttl 2: {}", p.text);
    Ok(())
}

#[tokio::test]
async fn proactive_pings_within_across_to_gateway_and_ttl_expiry() -> anyhow::Result<()> {
    let mut lab = Lab::start(L3Mode::Proactive).await?;
    lab.lease_all()?;
    connectivity(&lab)?;
    let flows = lab.flow_count()?;
    eprintln!("flow count, proactive, after the connectivity checks: {flows}");
    assert!(lab.wyvernd_alive().await);
    Ok(())
}

#[tokio::test]
async fn reactive_mode_routes_the_first_packet_through_the_controller() -> anyhow::Result<()> {
    let mut lab = Lab::start(L3Mode::Reactive).await?;
    lab.lease_all()?;
    // Before any routed traffic: no per-destination route flows (`dec_ttl` flows) at all.
    let flows_before = lab.flow_count()?;
    let dump = lab.ovs.ofctl(&["dump-flows", "br-int"])?;
    let reactive_routes = |dump: &str| {
        dump.lines()
            .filter(|l| l.contains("dec_ttl") && l.contains("idle_timeout="))
            .count()
    };
    assert_eq!(reactive_routes(&dump), 0, "routes before traffic:\n{dump}");
    assert!(
        !dump.contains("dec_ttl"),
        "reactive mode installed a proactive route:\n{dump}"
    );

    connectivity(&lab)?;

    // Each destination got its route with an idle timeout: vm3 (from vm1), vm2 and vm1
    // (from vm3). Never more than one per destination.
    let dump = lab.ovs.ofctl(&["dump-flows", "br-int"])?;
    let n = reactive_routes(&dump);
    assert_eq!(n, 3, "reactive routes after traffic:\n{dump}");
    let flows_after = lab.flow_count()?;
    eprintln!("flow count, reactive: {flows_before} before routed traffic, {flows_after} after");
    assert_eq!(flows_after, flows_before + 3);

    // The first packet is never lost: with vm3's route deleted from the switch, one single
    // ping (no retry) crosses the router on the packet-out that carries the route's own
    // actions, and the route is back.
    let ip3 = lab.vm("vm3").ip().to_string();
    lab.ovs
        .ofctl(&["del-flows", "br-int", &format!("table=6,ip,nw_dst={ip3}")])?;
    let dump = lab.ovs.ofctl(&["dump-flows", "br-int"])?;
    assert_eq!(reactive_routes(&dump), 2, "route not deleted:\n{dump}");
    let p = lab.vm("vm1").ping_once(&ip3, None)?;
    assert!(p.ok, "first packet to vm3 lost: {}", p.text);
    assert_eq!(p.ttl, Some(63), "vm1 -> vm3 first packet: {}", p.text);
    let dump = lab.ovs.ofctl(&["dump-flows", "br-int"])?;
    assert_eq!(reactive_routes(&dump), 3, "route not reinstalled:\n{dump}");
    assert!(lab.wyvernd_alive().await);
    Ok(())
}

#[tokio::test]
async fn vm_that_changes_its_mac_or_ip_loses_connectivity() -> anyhow::Result<()> {
    let mut lab = Lab::start(L3Mode::Proactive).await?;
    lab.lease_all()?;
    let (vm1, vm2, vm3) = (lab.vm("vm1"), lab.vm("vm2"), lab.vm("vm3"));
    let (ip1, ip2, ip3) = (
        vm1.ip().to_string(),
        vm2.ip().to_string(),
        vm3.ip().to_string(),
    );
    vm1.ping_until_ok(&ip2)?;
    vm1.ping_until_ok(&ip3)?;
    vm1.ping_until_ok(GW_A)?;

    // A MAC that is not the port's: port security drops everything it sends.
    let mac = vm1.mac();
    vm1.exec(&["ip", "link", "set", "eth0", "address", "fa:16:3e:99:99:99"])?;
    vm1.exec(&["ip", "neigh", "flush", "dev", "eth0"])?;
    for dst in [ip2.as_str(), ip3.as_str(), GW_A] {
        assert_eq!(
            vm1.ping_burst(dst)?,
            0,
            "vm1 with a foreign MAC reached {dst}"
        );
    }
    assert_eq!(
        vm2.ping_burst(&ip1)?,
        0,
        "vm2 reached vm1 with a foreign MAC"
    );
    vm1.exec(&["ip", "link", "set", "eth0", "address", &mac])?;
    vm1.ping_until_ok(&ip2)?;
    vm1.ping_until_ok(&ip3)?;

    // An IP that is not the port's, in the same subnet.
    let spoof = "10.0.1.200";
    vm1.exec(&["ip", "addr", "del", &format!("{ip1}/24"), "dev", "eth0"])?;
    vm1.exec(&["ip", "addr", "add", &format!("{spoof}/24"), "dev", "eth0"])?;
    vm1.exec(&["ip", "route", "replace", "default", "via", GW_A])?;
    vm1.exec(&["ip", "neigh", "flush", "dev", "eth0"])?;
    for dst in [ip2.as_str(), ip3.as_str(), GW_A] {
        assert_eq!(
            vm1.ping_burst(dst)?,
            0,
            "vm1 with a foreign IP reached {dst}"
        );
    }
    assert_eq!(vm2.ping_burst(spoof)?, 0, "vm2 reached the spoofed IP");
    vm1.exec(&["ip", "addr", "del", &format!("{spoof}/24"), "dev", "eth0"])?;
    vm1.exec(&["ip", "addr", "add", &format!("{ip1}/24"), "dev", "eth0"])?;
    vm1.exec(&["ip", "route", "replace", "default", "via", GW_A])?;
    vm1.ping_until_ok(&ip2)?;
    let p = vm1.ping_until_ok(&ip3)?;
    assert_eq!(p.ttl, Some(63));
    // The other VMs were never affected.
    vm3.ping_until_ok(&ip2)?;
    Ok(())
}

#[tokio::test]
async fn removing_the_router_interface_cuts_only_cross_subnet_traffic() -> anyhow::Result<()> {
    let mut lab = Lab::start(L3Mode::Proactive).await?;
    lab.lease_all()?;
    let (vm1, vm2, vm3) = (lab.vm("vm1"), lab.vm("vm2"), lab.vm("vm3"));
    let (ip1, ip2, ip3) = (
        vm1.ip().to_string(),
        vm2.ip().to_string(),
        vm3.ip().to_string(),
    );
    vm1.ping_until_ok(&ip3)?;
    vm1.ping_until_ok(&ip2)?;

    lab.remove_interface(Net::A).await?;
    // The API answers before the flows are gone: wait until routing stops.
    vm1.ping_until_lost(&ip3)?;
    assert_eq!(vm1.ping_burst(&ip3)?, 0, "vm1 still reaches vm3");
    assert_eq!(vm3.ping_burst(&ip1)?, 0, "vm3 still reaches vm1");
    assert_eq!(
        vm2.ping_burst(GW_A)?,
        0,
        "the removed gateway still answers"
    );
    // Everything else still works.
    let p = vm1.ping_until_ok(&ip2)?;
    assert_eq!(p.ttl, Some(64));
    vm2.ping_until_ok(&ip1)?;
    vm3.ping_until_ok(GW_B)?;

    lab.add_interface(Net::A).await?;
    // The gateway comes back as a new port with a new MAC (as in Neutron). A real VM
    // relearns it once its ARP entry goes stale (30 s and more); flush it to stay fast.
    for vm in [vm1, vm2] {
        vm.exec(&["ip", "neigh", "flush", "dev", "eth0"])?;
    }
    let p = vm1.ping_until_ok(&ip3)?;
    assert_eq!(p.ttl, Some(63));
    let p = vm3.ping_until_ok(&ip2)?;
    assert_eq!(p.ttl, Some(63));
    vm2.ping_until_ok(GW_A)?;
    Ok(())
}
