//! Real packets through the pipeline wyvernd installed: injected on one dummy port, read
//! back from the capture of the port the switch sent them to.

use std::net::Ipv4Addr;

use crate::common::{ip_of, mac_of, Demo, Host};
use crate::packet::{self, fmt_mac, Dhcp, BROADCAST, PROTO_ICMP, PROTO_UDP};

#[tokio::test]
async fn arp_request_for_the_gateway_is_answered_out_of_the_in_port() {
    let host = Host::start();
    let demo = Demo::build(&host).await;
    let (vm1, gw_ip, gw_mac) = (&demo.vm1, ip_of(&demo.gw1), mac_of(&demo.gw1));

    host.inject(vm1, &packet::arp_request(vm1.mac, vm1.ip, gw_ip));

    let reply = host.wait_received(vm1, "an ARP reply on vm1", |f| {
        f.arp().filter(|a| a.op == 2).map(|a| (f.clone(), a))
    });
    let (frame, arp) = reply;
    assert_eq!(frame.src, gw_mac, "reply from the router interface's MAC");
    assert_eq!(frame.dst, vm1.mac, "reply to the asker");
    assert_eq!(arp.sha, gw_mac, "answer: the gateway is at the router MAC");
    assert_eq!(arp.spa, gw_ip);
    assert_eq!((arp.tha, arp.tpa), (vm1.mac, vm1.ip));
    // Answered in place: nobody else saw the request or the reply.
    for vm in [&demo.vm2, &demo.vm3] {
        assert!(
            host.received(vm).is_empty(),
            "{} got {:?}",
            vm.iface,
            host.received(vm)
        );
    }
    let trace = host.datapath_actions(&format!(
        "in_port={},arp,arp_op=1,dl_src={m},dl_dst=ff:ff:ff:ff:ff:ff,arp_sha={m},arp_spa={},arp_tpa={gw_ip}",
        vm1.ofport,
        vm1.ip,
        m = fmt_mac(&vm1.mac),
    ));
    assert!(
        trace.ends_with(&format!(",{}", host.dp_port(&vm1.iface))),
        "the reply leaves by the in-port only: {trace}"
    );
}

#[tokio::test]
async fn unicast_within_a_network_leaves_on_the_destination_port_only() {
    let host = Host::start();
    let demo = Demo::build(&host).await;
    let (vm1, vm2) = (&demo.vm1, &demo.vm2);

    host.inject(
        vm1,
        &packet::udp_packet(vm1.mac, vm2.mac, vm1.ip, vm2.ip, 4242, 5000, 6000),
    );

    let ip = host.wait_received(vm2, "the datagram on vm2", |f| {
        f.ipv4()
            .filter(|ip| ip.id == 4242)
            .map(|ip| (f.clone(), ip))
    });
    let (frame, ip) = ip;
    assert_eq!(
        (frame.src, frame.dst),
        (vm1.mac, vm2.mac),
        "L2: MACs untouched"
    );
    assert_eq!(
        (ip.src, ip.dst, ip.ttl),
        (vm1.ip, vm2.ip, 64),
        "L2: no TTL change"
    );
    assert_eq!(ip.udp().map(|u| (u.0, u.1)), Some((5000, 6000)));
    // The switch outputs all copies of one packet in one pass: by now any copy to another
    // port would be in its capture.
    assert!(host.received(vm1).is_empty(), "no hairpin to the sender");
    assert!(host.received(&demo.vm3).is_empty(), "nothing leaks to net2");
    let actions = host.datapath_actions(&format!(
        "in_port={},udp,dl_src={},dl_dst={},nw_src={},nw_dst={},nw_ttl=64,udp_src=5000,udp_dst=6000",
        vm1.ofport,
        fmt_mac(&vm1.mac),
        fmt_mac(&vm2.mac),
        vm1.ip,
        vm2.ip
    ));
    assert_eq!(actions, host.dp_port(&vm2.iface).to_string());
}

#[tokio::test]
async fn routed_packet_leaves_with_ttl_minus_one_and_the_router_macs() {
    let host = Host::start();
    let demo = Demo::build(&host).await;
    let (vm1, vm3) = (&demo.vm1, &demo.vm3);
    let gw1_mac = mac_of(&demo.gw1);
    let gw2_mac = mac_of(&demo.gw2);

    host.inject(
        vm1,
        &packet::icmp_echo(vm1.mac, gw1_mac, vm1.ip, vm3.ip, 64, 777),
    );

    let (frame, ip) = host.wait_received(vm3, "the routed echo on vm3", |f| {
        f.ipv4().filter(|ip| ip.id == 777).map(|ip| (f.clone(), ip))
    });
    assert_eq!(
        frame.src, gw2_mac,
        "source MAC: the router interface on vm3's subnet"
    );
    assert_eq!(frame.dst, vm3.mac, "destination MAC: vm3's port");
    assert_eq!(ip.ttl, 63, "TTL decremented once");
    assert_eq!((ip.src, ip.dst, ip.proto), (vm1.ip, vm3.ip, PROTO_ICMP));
    assert!(ip.checksum_ok, "header checksum updated with the TTL");
    assert_eq!(ip.payload.first(), Some(&8), "still an echo request");
    assert!(host.received(&demo.vm2).is_empty(), "nothing to vm2");
    assert!(
        host.received(vm1).is_empty(),
        "nothing back to vm1 (the controller did not answer for vm3)"
    );
}

#[tokio::test]
async fn spoofed_source_mac_or_ip_is_dropped() {
    let host = Host::start();
    let demo = Demo::build(&host).await;
    let (vm1, vm2) = (&demo.vm1, &demo.vm2);
    let spoofed_mac = packet::parse_mac("fa:16:3e:66:66:66");
    let spoofed_ip = Ipv4Addr::new(10, 0, 1, 250);
    let drops = || port_security_drops(&host);
    let drops_before = drops();

    host.inject(
        vm1,
        &packet::udp_packet(spoofed_mac, vm2.mac, vm1.ip, vm2.ip, 1, 5000, 6000),
    );
    host.inject(
        vm1,
        &packet::udp_packet(vm1.mac, vm2.mac, spoofed_ip, vm2.ip, 2, 5000, 6000),
    );
    // Another VM's MAC and IP are spoofing too.
    host.inject(
        vm1,
        &packet::udp_packet(vm2.mac, vm2.mac, vm2.ip, vm2.ip, 3, 5000, 6000),
    );
    // A legitimate packet after them: packets from one port are handled in order, so once
    // it arrived, the spoofed ones were handled.
    host.inject(
        vm1,
        &packet::udp_packet(vm1.mac, vm2.mac, vm1.ip, vm2.ip, 4, 5000, 6000),
    );
    host.wait_received(vm2, "the legitimate datagram", |f| {
        f.ipv4().filter(|ip| ip.id == 4)
    });

    let ids: Vec<u16> = host
        .received(vm2)
        .iter()
        .filter_map(|f| f.ipv4())
        .map(|ip| ip.id)
        .collect();
    assert_eq!(ids, vec![4], "only the legitimate datagram got through");
    for vm in [vm1, &demo.vm3] {
        assert!(host.received(vm).is_empty(), "{} got something", vm.iface);
    }
    // The drops happened in port security's miss flow, whose counter says so.
    wyvern_testkit::poll::wait_until(
        "port security's miss flow to count 3 packets",
        crate::common::DEADLINE,
        || drops() == drops_before + 3,
    )
    .unwrap_or_else(|e| panic!("{e}: counter at {}", drops()));
    for (src_mac, src_ip) in [(spoofed_mac, vm1.ip), (vm1.mac, spoofed_ip)] {
        let actions = host.datapath_actions(&format!(
            "in_port={},udp,dl_src={},dl_dst={},nw_src={src_ip},nw_dst={},udp_src=5000,udp_dst=6000",
            vm1.ofport,
            fmt_mac(&src_mac),
            fmt_mac(&vm2.mac),
            vm2.ip
        ));
        assert_eq!(actions, "drop");
    }
}

/// n_packets of port security's priority-0 (drop) flow.
fn port_security_drops(host: &Host) -> u64 {
    host.flow_stats()
        .into_iter()
        .find(|(f, _, _)| f.contains("table=1, priority=0 "))
        .map(|(_, n, _)| n)
        .expect("port security has a miss flow")
}

#[tokio::test]
async fn dhcp_discover_is_punted_and_answered_with_the_ports_address() {
    let host = Host::start();
    let demo = Demo::build(&host).await;
    let vm1 = &demo.vm1;

    let trace = host.trace(&format!(
        "in_port={},udp,dl_src={m},dl_dst=ff:ff:ff:ff:ff:ff,nw_src=0.0.0.0,nw_dst=255.255.255.255,udp_src=68,udp_dst=67",
        vm1.ofport,
        m = fmt_mac(&vm1.mac)
    ));
    assert!(
        trace.contains("controller("),
        "DHCP goes to the controller:\n{trace}"
    );

    host.inject(vm1, &packet::dhcp_discover(vm1.mac, 0x5eed_0001));

    let (frame, ip, dhcp) = host.wait_received(vm1, "a DHCPOFFER on vm1", |f| {
        let ip = f.ipv4()?;
        let (sport, dport, body) = ip.udp()?;
        let dhcp = Dhcp::parse(body).filter(|_| (sport, dport) == (67, 68))?;
        Some((f.clone(), ip.clone(), dhcp))
    });
    assert_eq!(dhcp.message_type, Some(2), "a DHCPOFFER");
    assert_eq!(
        (dhcp.op, dhcp.xid),
        (2, 0x5eed_0001),
        "a reply to our request"
    );
    assert_eq!(dhcp.chaddr, vm1.mac);
    assert_eq!(dhcp.yiaddr, vm1.ip, "offers the port's fixed IP");
    assert_eq!(
        dhcp.router,
        Some(Ipv4Addr::new(10, 0, 1, 1)),
        "router option: the gateway"
    );
    assert_eq!(ip.proto, PROTO_UDP);
    assert_eq!(ip.src, ip_of(&demo.gw1), "sent from the gateway address");
    assert!(
        frame.dst == vm1.mac || frame.dst == BROADCAST,
        "to the client: {}",
        fmt_mac(&frame.dst)
    );
    // The request itself was not flooded to the other port of the network.
    assert!(host.received(&demo.vm2).is_empty(), "vm2 saw DHCP traffic");
}
