//! wyvern-p4d forwarding real packets on DPDK pcap ports, programmed only through
//! P4Runtime by the P4Runtime back end. vm1, vm2 (network 0) and vm3 (network 1, behind
//! the router) are switch ports 1..3 (pcap ports `net_pcap0..2`). With `--hold-rx` the
//! input pcap is read only after the tables are written (SIGUSR1). The output pcaps must
//! hold: the ARP reply with the router's MAC, the L2 delivery unchanged, the routed packet
//! with TTL-1 and rewritten MACs; the spoofed packet is dropped; the DHCP DISCOVER comes to
//! the controller as a PacketIn with its port, and the controller's PacketOut (the answer)
//! leaves on that port.

#[path = "../../p4rt/tests/common/mod.rs"]
mod common;
#[path = "../../../dpdk/fastpath/tests/common/mod.rs"]
mod fp;
mod harness;

use std::time::Duration;

use wyvern_engine::packet::{decode, encode};
use wyvern_engine::wire::Ipv4Packet;
use wyvern_engine::Meta;
use wyvern_offload_p4rt::{Mastership, P4rtBackend, P4rtConfig, PacketOut};
use wyvern_pipeline::{Packet, PuntReason};
use wyvern_testkit::pcap::PcapPorts;
use wyvern_testkit::poll::wait_until;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcap_ports_arp_l2_routing_spoofing_dhcp_through_p4runtime() {
    let t = fp::topo::build(2, 2, 1);
    let (vm1, vm2, vm3) = (&t.vms[0], &t.vms[1], &t.vms[2]);
    assert_eq!((vm1.ofport, vm2.ofport, vm3.ofport), (1, 2, 3));
    let gw0 = t.gateways[0].expect("net 0 is routed");
    let gw1 = t.gateways[1].expect("net 1 is routed");
    let (flows, groups) = (t.flows(), t.groups());

    let arp_gw = encode(&Packet::arp_request(1, vm1.mac, vm1.ip, gw0.ip), 0);
    let l2 = encode(&Packet::ipv4(1, vm1.mac, vm2.mac, vm1.ip, vm2.ip, 64), 0);
    let routed = encode(&Packet::ipv4(1, vm1.mac, gw0.mac, vm1.ip, vm3.ip, 64), 0);
    let spoofed = encode(
        &Packet::ipv4(
            1,
            vm1.mac,
            vm2.mac,
            "10.0.0.99".parse().unwrap(),
            vm2.ip,
            64,
        ),
        0,
    );
    let dhcp = encode(&Packet::dhcp_discover(1, vm1.mac), 300);
    let input = vec![arp_gw, l2.clone(), routed.clone(), spoofed, dhcp.clone()];

    let pcap = PcapPorts::new("p4d-pcap", &input, 3).expect("pcap ports");
    let mut args: Vec<String> = vec!["--hold-rx".into(), "--".into()];
    args.extend(pcap.eal_args());
    let p4d = harness::P4d::start(&args).expect("wyvern-p4d with DPDK");

    let mut cfg = P4rtConfig::new(1, 1, common::p4info(), b"{}".to_vec());
    cfg.batch_size = 100;
    let (mut b, mut pin) = P4rtBackend::connect(&p4d.url(), cfg)
        .await
        .expect("connect");
    assert_eq!(
        b.wait_for_mastership(Duration::from_secs(10))
            .await
            .expect("arbitration"),
        Mastership::Primary
    );
    b.ensure_pipeline().await.expect("pipeline");
    assert!(b.set_desired(&flows, &groups).is_empty());
    let r = b.sync().await.expect("sync");
    assert!(r.failures.is_empty(), "{:?}", r.failures);

    // Tables written: let the input in.
    // SAFETY: signals our own child by pid.
    unsafe { libc::kill(p4d.pid() as i32, libc::SIGUSR1) };

    // The DISCOVER arrives as a PacketIn from switch port 1; the answer goes back out of it.
    let p = tokio::time::timeout(Duration::from_secs(10), pin.recv())
        .await
        .expect("a PacketIn in time")
        .expect("stream open");
    assert_eq!(p.payload, dhcp);
    let punt = p.punt().expect("packet_in fields");
    assert_eq!((punt.reason, punt.ingress_port), (PuntReason::Dhcp, 1));
    let answer = encode(&Packet::ipv4(0, gw0.mac, vm1.mac, gw0.ip, vm1.ip, 64), 10);
    b.send_packet(PacketOut::to_port(1, answer.clone()))
        .await
        .expect("packet out");

    let read = |port: usize| pcap.transmitted(port);
    let done = tokio::task::block_in_place(|| {
        wait_until("the output pcaps", Duration::from_secs(10), || {
            read(0).len() >= 2 && !read(1).is_empty() && !read(2).is_empty()
        })
    });
    let (out0, out1, out2) = (read(0), read(1), read(2));
    assert!(
        done.is_ok(),
        "outputs: {} {} {}",
        out0.len(),
        out1.len(),
        out2.len()
    );
    drop(b);
    assert!(p4d.stop().expect("stop").success(), "clean exit");

    // vm1: the ARP reply from the router's MAC, then the controller's answer.
    assert_eq!(out0.len(), 2, "{out0:?}");
    let reply = decode(&out0[0], Meta::default()).expect("a frame");
    let arp = reply.arp.expect("an ARP reply");
    assert_eq!(arp.op, 2);
    assert_eq!((arp.sha, arp.spa), (gw0.mac, gw0.ip));
    assert_eq!((arp.tha, arp.tpa), (vm1.mac, vm1.ip));
    assert_eq!((reply.eth_src, reply.eth_dst), (gw0.mac, vm1.mac));
    assert_eq!(out0[1], answer, "the PacketOut, as sent");

    // vm2: the L2 unicast, unchanged; the spoofed copy never arrives.
    assert_eq!(out1, vec![l2], "vm2's port");

    // vm3: routed, TTL 63, router MAC as source, vm3's as destination.
    assert_eq!(out2.len(), 1, "{out2:?}");
    let f = &out2[0];
    let ip = Ipv4Packet::new_checked(&f[14..]).expect("IPv4");
    assert_eq!(ip.ttl(), 63);
    assert!(ip.checksum_ok());
    assert_eq!(&f[0..6], &vm3.mac.0);
    assert_eq!(&f[6..12], &gw1.mac.0);
    assert_eq!((ip.src(), ip.dst()), (vm1.ip, vm3.ip));
    assert_eq!(&f[34..], &routed[34..], "payload untouched");
}
