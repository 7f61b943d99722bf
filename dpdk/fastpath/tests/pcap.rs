//! The fast path on real DPDK ports: three pcap PMD ports (the pcap PMD turns files into
//! ports) bound to the switch ports of vm1, vm2 (network 1) and vm3 (network 2, behind the
//! router). A pcap of crafted packets from vm1 goes in; the output pcaps must hold exactly
//! the ARP reply with the router's MAC, the L2 delivery, the routed packet with TTL-1 and
//! rewritten MACs, the flooded ARP; the spoofed packet is dropped and the DHCP DISCOVER
//! punted. One EAL per process: this file is its own test binary with one test.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rte::{Eal, Mempool, PoolConfig};
use wyvern_engine::packet::{decode, encode};
use wyvern_engine::wire::Ipv4Packet;
use wyvern_engine::{Engine, Meta};
use wyvern_fastpath::{Config, FastPath};
use wyvern_pipeline::interp::Packet;
use wyvern_pipeline::{PuntReason, Stage};

#[test]
fn pcap_ports_arp_l2_routing_spoofing_dhcp() -> anyhow::Result<()> {
    // Two networks of two ports, one router: vm1 = ofport 1, vm2 = 2 (net 0), vm3 = 3.
    let t = common::topo::build(2, 2, 1);
    let (vm1, vm2, vm3) = (&t.vms[0], &t.vms[1], &t.vms[2]);
    let gw0 = t.gateways[0].expect("net 0 is routed");
    let gw1 = t.gateways[1].expect("net 1 is routed");
    let engine = Engine::from_ir(&t.flows(), &t.groups())?;

    let arp_gw = encode(&Packet::arp_request(1, vm1.mac, vm1.ip, gw0.ip), 0);
    let l2 = encode(&Packet::ipv4(1, vm1.mac, vm2.mac, vm1.ip, vm2.ip, 64), 0);
    let routed = encode(&Packet::ipv4(1, vm1.mac, gw0.mac, vm1.ip, vm3.ip, 64), 0);
    let spoofed = encode(
        &Packet::ipv4(1, vm1.mac, vm2.mac, "10.0.0.99".parse()?, vm2.ip, 64),
        0,
    );
    let dhcp = encode(&Packet::dhcp_discover(1, vm1.mac), 300);
    let arp_unknown = encode(
        &Packet::arp_request(1, vm1.mac, vm1.ip, "10.0.0.200".parse()?),
        0,
    );
    let input = vec![
        arp_gw.clone(),
        l2.clone(),
        routed.clone(),
        spoofed,
        dhcp.clone(),
        arp_unknown.clone(),
    ];

    let dir = tempfile::tempdir()?;
    let path = |n: &str| dir.path().join(n);
    wyvern_testkit::pcap::write(&path("in0.pcap"), &input)?;
    wyvern_testkit::pcap::write(&path("empty.pcap"), &[])?;
    let run_dir = wyvern_testkit::pcap::DpdkRunDir::new("pcap");
    let vdev = |i: usize, rx: &str| {
        format!(
            "--vdev=net_pcap{i},rx_pcap={},tx_pcap={}",
            path(rx).display(),
            path(&format!("out{i}.pcap")).display()
        )
    };
    let args = vec![
        "--no-huge".to_string(),
        "--no-pci".into(),
        "-m".into(),
        "512".into(),
        "--file-prefix".into(),
        run_dir.prefix.clone(),
        "-l".into(),
        "0".into(),
        "--no-telemetry".into(),
        "--log-level=warning".into(),
        vdev(0, "in0.pcap"),
        vdev(1, "empty.pcap"),
        vdev(2, "empty.pcap"),
    ];
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let eal = Eal::init(&argv)?;
    let pool = Mempool::pktmbuf_pool(
        &eal,
        "fp_pcap",
        &PoolConfig {
            size: 4095,
            cache_size: 64,
            ..Default::default()
        },
    )?;
    let ports = (0..3u16)
        .map(|i| common::start_port(&eal, i, &pool))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let engine = Arc::new(Mutex::new(engine));
    let stats;
    let punts: Vec<_>;
    {
        let (mut fp, punt_rx) = FastPath::new(
            &ports,
            &[vm1.ofport, vm2.ofport, vm3.ofport],
            &pool,
            Arc::clone(&engine),
            Config::default(),
        )?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while fp.stats().rx < input.len() as u64 {
            anyhow::ensure!(
                Instant::now() < deadline,
                "only {} of {} frames received: {:?}",
                fp.stats().rx,
                input.len(),
                fp.stats()
            );
            fp.poll();
        }
        // The input is consumed; a few more rounds find nothing more.
        for _ in 0..100 {
            fp.poll();
        }
        stats = fp.stats();
        punts = punt_rx.try_iter().collect();
    }
    drop(ports); // closes the pcap files
    drop(pool);
    eal.cleanup()?;

    assert_eq!(stats.rx, 6, "{stats:?}");
    assert_eq!(stats.tx, 4, "{stats:?}");
    assert_eq!(stats.drops(), 1, "{stats:?}");
    assert_eq!(stats.dropped_at(Stage::PortSecurity), 1, "the spoofed one");
    assert_eq!(stats.punts, 1);

    let out0 = wyvern_testkit::pcap::read(&path("out0.pcap"))?;
    let out1 = wyvern_testkit::pcap::read(&path("out1.pcap"))?;
    let out2 = wyvern_testkit::pcap::read(&path("out2.pcap"))?;

    // vm1 gets the ARP reply from the router's MAC, and nothing else.
    assert_eq!(out0.len(), 1, "{out0:?}");
    let reply = decode(&out0[0], Meta::default()).unwrap();
    let arp = reply.arp.expect("an ARP reply");
    assert_eq!(arp.op, 2);
    assert_eq!((arp.sha, arp.spa), (gw0.mac, gw0.ip));
    assert_eq!((arp.tha, arp.tpa), (vm1.mac, vm1.ip));
    assert_eq!((reply.eth_src, reply.eth_dst), (gw0.mac, vm1.mac));

    // vm2 gets the L2 unicast unchanged, then the flooded ARP for an unknown address.
    assert_eq!(out1, vec![l2, arp_unknown], "vm2's port");

    // vm3 gets the routed packet: TTL 63, router MAC as source, vm3's as destination.
    assert_eq!(out2.len(), 1, "{out2:?}");
    let r = &out2[0];
    let ip = Ipv4Packet::new_checked(&r[14..])?;
    assert_eq!(ip.ttl(), 63);
    assert!(ip.checksum_ok(), "incrementally updated checksum verifies");
    assert_eq!(&r[0..6], &vm3.mac.0);
    assert_eq!(&r[6..12], &gw1.mac.0);
    assert_eq!(ip.src(), vm1.ip);
    assert_eq!(ip.dst(), vm3.ip);
    assert_eq!(&r[34..], &routed[34..], "payload untouched");

    // The DISCOVER went to the controller with its port key.
    assert_eq!(punts.len(), 1);
    assert_eq!(punts[0].reason, PuntReason::Dhcp);
    assert_eq!(punts[0].in_port, vm1.ofport);
    assert!(punts[0].inport.is_some());
    assert_eq!(punts[0].frame, dhcp);
    Ok(())
}
