//! The packet test: wyvernd programs wyvern-p4d, whose switch ports 1..3 are DPDK
//! pcap ports; with `--hold-rx` the input pcap is read only once the tables hold the
//! topology. The output pcaps must hold the ARP reply with the router's MAC, the L2
//! delivery unchanged, the routed packet with TTL-1 and rewritten MACs, no spoofed packet,
//! and the DHCP OFFER wyvernd's DHCP app made from the PacketIn, sent back as a PacketOut.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use wyvern_testkit::ovs::OvsSandbox;
use wyvern_testkit::poll::wait_until;
use wyvern_testkit::venv::Venv;

use crate::common::Api;
use crate::harness::{self, Demo, P4d, Reader};
use crate::harness::{GW1_IP, GW1_MAC, GW2_MAC, VM1_IP, VM1_MAC, VM2_IP, VM2_MAC, VM3_IP, VM3_MAC};
use crate::packet::{self, Dhcp, Frame};
use wyvern_testkit::pcap::PcapPorts;

const XID: u32 = 0x5157_0001;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wyvernd_programs_p4d_which_forwards_and_answers_dhcp_through_wyvernd() {
    let arp_gw = packet::arp_request(VM1_MAC, VM1_IP, GW1_IP);
    let l2 = packet::udp_packet(VM1_MAC, VM2_MAC, VM1_IP, VM2_IP, 1, 4000, 5000);
    let routed = packet::udp_packet(VM1_MAC, GW1_MAC, VM1_IP, VM3_IP, 2, 4000, 5000);
    let spoofed = packet::udp_packet(
        VM1_MAC,
        VM2_MAC,
        Ipv4Addr::new(10, 0, 1, 99),
        VM2_IP,
        3,
        4000,
        5000,
    );
    let discover = packet::dhcp_discover(VM1_MAC, XID);
    let input = vec![arp_gw, l2.clone(), routed.clone(), spoofed, discover];

    let pcap = PcapPorts::new("p4e2e-fwd", &input, 3).expect("pcap ports");
    let mut args: Vec<String> = vec!["--hold-rx".into(), "--".into()];
    args.extend(pcap.eal_args());
    let p4d = P4d::start(&args).expect("wyvern-p4d with DPDK pcap ports");

    let ovs = OvsSandbox::dummy().expect("OVS sandbox");
    let w = harness::wyvernd(&ovs, &p4d, 10).expect("wyvernd");
    let api = Api::new(w.url());
    let demo = Demo::build(&api, &w.url(), &ovs).await;

    // The tables hold the topology: let the input in.
    let mut reader = Reader::connect(&p4d).await.expect("backup controller");
    reader.wait_for(&demo.needles(), || w.log_tail()).await;
    p4d.release_rx();

    let read = |port: usize| pcap.transmitted(port);
    let done = tokio::task::block_in_place(|| {
        wait_until("the output pcaps", Duration::from_secs(30), || {
            read(0).len() >= 2 && !read(1).is_empty() && !read(2).is_empty()
        })
    });
    let (out0, out1, out2) = (read(0), read(1), read(2));
    assert!(
        done.is_ok(),
        "outputs: {out0:?} {out1:?} {out2:?}\n{}",
        w.log_tail()
    );

    // vm1's port: the ARP reply from the router's MAC, and wyvernd's DHCP OFFER.
    assert_eq!(out0.len(), 2, "{out0:?}");
    let frames: Vec<Frame> = out0.iter().filter_map(|b| Frame::parse(b)).collect();
    let arp = frames
        .iter()
        .find_map(|f| f.arp().map(|a| (f.clone(), a)))
        .expect("an ARP frame to vm1");
    let (frame, arp) = arp;
    assert_eq!(arp.op, 2, "a reply");
    assert_eq!((arp.sha, arp.spa), (GW1_MAC, GW1_IP));
    assert_eq!((arp.tha, arp.tpa), (VM1_MAC, VM1_IP));
    assert_eq!((frame.src, frame.dst), (GW1_MAC, VM1_MAC));
    let offer = frames
        .iter()
        .find_map(|f| {
            let ip = f.ipv4()?;
            let (sport, dport, payload) = ip.udp()?;
            ((sport, dport) == (67, 68)).then(|| (f.src, Dhcp::parse(payload)))
        })
        .expect("a DHCP answer to vm1");
    let (offer_src, offer) = offer;
    let offer = offer.expect("a DHCP message");
    assert_eq!(offer_src, GW1_MAC, "from the gateway");
    assert_eq!(offer.op, 2, "BOOTREPLY");
    assert_eq!(offer.message_type, Some(2), "DHCPOFFER");
    assert_eq!(offer.xid, XID);
    assert_eq!(offer.chaddr, VM1_MAC);
    assert_eq!(offer.yiaddr, VM1_IP, "the port's IP");
    assert_eq!(offer.router, Some(GW1_IP));

    // vm2's port: the L2 unicast, unchanged; the spoofed copy never arrives.
    assert_eq!(out1, vec![l2], "vm2's port");

    // vm3's port: routed, TTL 63, the router's MAC on net2 as source, vm3's as destination.
    assert_eq!(out2.len(), 1, "{out2:?}");
    let f = Frame::parse(&out2[0]).expect("a frame");
    assert_eq!((f.src, f.dst), (GW2_MAC, VM3_MAC));
    let ip = f.ipv4().expect("IPv4");
    assert_eq!(ip.ttl, 63);
    assert!(ip.checksum_ok);
    assert_eq!((ip.src, ip.dst), (VM1_IP, VM3_IP));
    assert_eq!(&out2[0][34..], &routed[34..], "payload untouched");

    // Every update wyvernd wrote was accepted.
    let syncs = harness::logged_syncs(&w);
    assert!(!syncs.is_empty(), "{}", w.log_tail());
    assert!(
        syncs.iter().all(|s| s[3] == 0),
        "refused updates: {syncs:?}"
    );
    // ...and wyvernd's /metrics says so in the offload families.
    let addr = tokio::task::block_in_place(|| {
        wyvern_testkit::poll::wait_for("wyvernd's metrics address", Duration::from_secs(10), || {
            std::fs::read_to_string(w.log_path())
                .ok()?
                .lines()
                .filter(|l| l.contains("serving /metrics"))
                .find_map(|l| {
                    l.split_whitespace()
                        .find_map(|f| f.strip_prefix("addr="))
                        .map(str::to_owned)
                })
        })
    });
    let addr = addr.unwrap_or_else(|e| panic!("{e}\n{}", w.log_tail()));
    let scrape = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("scrape body");
    let sample = |name: &str| -> f64 {
        scrape
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} not in the scrape"))
    };
    assert_eq!(
        sample("wyvern_offload_backend_active{target=\"p4runtime\"}"),
        1.0
    );
    assert!(sample("wyvern_offload_rules_offloaded_total{target=\"p4runtime\"}") > 0.0);
    assert_eq!(
        sample("wyvern_offload_rules_refused_total{reason=\"rejected_by_target\",target=\"p4runtime\"}"),
        0.0
    );
    assert!(
        matches!(
            reader.mastership(),
            wyvern_offload_p4rt::Mastership::Backup { .. }
        ),
        "the reader stayed a backup"
    );

    // The third-party p4runtime-shell, a backup too, reads by name exactly the entries
    // wyvernd wrote (as many as the Rust reader sees), and its write is refused.
    let want = reader.describe_all().await.expect("read all");
    let venv = Venv::ensure(
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        "p4runtime-shell",
        &["p4runtime-shell==0.0.6"],
    )
    .expect("p4runtime-shell venv");
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../offload/p4d/tests/py/shell_peer.py");
    let addr = p4d.addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(venv.python())
            .arg(script)
            .args([addr.as_str(), "2"])
            .output()
    })
    .await
    .expect("join")
    .expect("run p4runtime-shell");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "p4runtime-shell failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("a JSON line")).expect("JSON");
    assert_eq!(v["backup_write"], "PERMISSION_DENIED", "{v}");
    let tables = v["tables"].as_object().expect("tables");
    let by_shell: usize = tables
        .values()
        .map(|e| e.as_array().map_or(0, Vec::len))
        .sum();
    assert!(!want.is_empty());
    assert_eq!(by_shell, want.len(), "{v}");
    let l2 = tables["MyIngress.l2_lookup"].to_string();
    for mac in [VM1_MAC, VM3_MAC] {
        let hex = harness::hex(&mac);
        assert!(l2.contains(&hex), "l2_lookup by name lacks {hex}: {l2}");
    }
}
