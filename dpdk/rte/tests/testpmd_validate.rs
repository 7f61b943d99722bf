//! The testpmd rendering checked by the real `dpdk-testpmd`: every rendered rule parses
//! (against null ports, which answer ENOSYS after parsing), and the rules the tap PMD
//! supports pass `flow validate` against a tap port.

mod common;

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rte::flow::{
    to_testpmd_verb, EthFields, FlowAction, FlowAttr, FlowRule, Ipv4Fields, Item, TestpmdVerb,
    UdpFields, VxlanEncap,
};
use rte::MacAddr;

const M1: MacAddr = MacAddr([0x00, 0x11, 0x22, 0x33, 0x44, 0x55]);
const M2: MacAddr = MacAddr([0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]);

/// Kills testpmd if the test ends early.
struct Testpmd(Child);
impl Drop for Testpmd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs testpmd interactively on `vdevs`, feeding `commands` then `quit`; returns its output.
fn run_testpmd(prefix: &str, vdevs: &[String], commands: &[String]) -> Option<String> {
    if Command::new("dpdk-testpmd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        return None;
    }
    let out_path = std::env::temp_dir().join(format!("{prefix}.out"));
    let out_file = std::fs::File::create(&out_path).expect("output file");
    let mut cmd = Command::new("dpdk-testpmd");
    cmd.args([
        "--no-huge",
        "--no-pci",
        "-m",
        "512",
        "--file-prefix",
        prefix,
        "-l",
        "0-1",
        "--no-telemetry",
    ]);
    cmd.args(vdevs);
    cmd.args(["--", "-i", "--total-num-mbufs=2048"]);
    cmd.stdin(Stdio::piped())
        .stdout(out_file.try_clone().expect("dup"))
        .stderr(out_file);
    let mut child = Testpmd(cmd.spawn().expect("spawn dpdk-testpmd"));
    {
        let mut stdin = child.0.stdin.take().expect("stdin");
        for c in commands {
            writeln!(stdin, "{c}").expect("write command");
        }
        writeln!(stdin, "quit").expect("write quit");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.0.try_wait().expect("wait").is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dpdk-testpmd did not exit within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = std::fs::read_to_string(&out_path).expect("read output");
    let _ = std::fs::remove_file(&out_path);
    Some(out)
}

/// Rules within what the tap PMD validates (eth / ipv4 / udp with queue or drop).
fn tap_rules() -> Vec<FlowRule> {
    vec![
        FlowRule {
            attr: FlowAttr::ingress(0),
            pattern: vec![Item::eth_dst(M1)],
            actions: vec![FlowAction::Drop],
        },
        FlowRule {
            attr: FlowAttr::ingress(0),
            pattern: vec![Item::eth_any(), Item::ipv4_any(), Item::udp_dst(53)],
            actions: vec![FlowAction::Queue { index: 0 }],
        },
        FlowRule {
            attr: FlowAttr::ingress(0),
            pattern: vec![
                Item::eth_any(),
                Item::ipv4_dst_prefix(Ipv4Addr::new(10, 1, 2, 0), 24),
            ],
            actions: vec![FlowAction::Queue { index: 0 }],
        },
        FlowRule {
            attr: FlowAttr {
                priority: 1,
                ..FlowAttr::ingress(0)
            },
            pattern: vec![
                Item::Eth {
                    spec: EthFields {
                        ether_type: 0x0800,
                        ..Default::default()
                    },
                    mask: EthFields {
                        ether_type: 0xffff,
                        ..Default::default()
                    },
                },
                Item::Ipv4 {
                    spec: Ipv4Fields {
                        src: Ipv4Addr::new(192, 168, 0, 1),
                        ..Default::default()
                    },
                    mask: Ipv4Fields {
                        src: Ipv4Addr::BROADCAST,
                        ..Default::default()
                    },
                },
                Item::Udp {
                    spec: UdpFields {
                        src_port: 68,
                        dst_port: 67,
                    },
                    mask: UdpFields {
                        src_port: 0xffff,
                        dst_port: 0xffff,
                    },
                },
            ],
            actions: vec![FlowAction::Drop],
        },
    ]
}

/// Every item and action kind the renderer knows.
fn all_kinds_rules() -> Vec<FlowRule> {
    let encap = VxlanEncap {
        eth_src: M1,
        eth_dst: M2,
        ip_src: Ipv4Addr::new(172, 31, 0, 1),
        ip_dst: Ipv4Addr::new(172, 31, 0, 2),
        udp_src: 49152,
        udp_dst: 4789,
        vni: 5001,
    };
    let mut rules = tap_rules();
    rules.extend([
        FlowRule {
            attr: FlowAttr::ingress(1),
            pattern: vec![
                Item::eth_dst(M1),
                Item::ipv4_dst_prefix(Ipv4Addr::new(10, 0, 0, 0), 8),
            ],
            actions: vec![
                FlowAction::SetMacSrc(M2),
                FlowAction::SetMacDst(M1),
                FlowAction::DecTtl,
                FlowAction::PortId {
                    id: 1,
                    original: false,
                },
            ],
        },
        FlowRule {
            attr: FlowAttr {
                transfer: true,
                ..Default::default()
            },
            pattern: vec![Item::RepresentedPort { ethdev_port_id: 1 }, Item::eth_any()],
            actions: vec![
                FlowAction::RepresentedPort { ethdev_port_id: 0 },
                FlowAction::Count { id: 0 },
            ],
        },
        FlowRule {
            attr: FlowAttr::ingress(0),
            pattern: vec![
                Item::PortId { id: 1 },
                Item::eth_any(),
                Item::ipv4_any(),
                Item::udp_dst(4789),
                Item::vxlan_vni(100),
            ],
            actions: vec![
                FlowAction::VxlanDecap,
                FlowAction::Jump { group: 2 },
                FlowAction::Count { id: 7 },
            ],
        },
        FlowRule {
            attr: FlowAttr {
                egress: true,
                group: 3,
                ..Default::default()
            },
            pattern: vec![Item::Eth {
                spec: EthFields {
                    src: M1,
                    ..Default::default()
                },
                mask: EthFields {
                    src: MacAddr([0xff, 0xff, 0xff, 0, 0, 0]),
                    ..Default::default()
                },
            }],
            actions: vec![
                FlowAction::VxlanEncap(encap),
                FlowAction::PortId {
                    id: 0,
                    original: true,
                },
            ],
        },
    ]);
    rules
}

fn validate_lines(rules: &[FlowRule]) -> Vec<String> {
    rules
        .iter()
        .flat_map(|r| {
            to_testpmd_verb(TestpmdVerb::Validate, 0, &r.attr, &r.pattern, &r.actions)
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn every_rendered_rule_parses_in_testpmd() {
    let run_dir = common::RunDir::new("tpnull");
    let rules = all_kinds_rules();
    let lines = validate_lines(&rules);
    let vdevs = vec!["--vdev=net_null0".to_owned(), "--vdev=net_null1".to_owned()];
    let Some(out) = run_testpmd(&run_dir.prefix, &vdevs, &lines) else {
        eprintln!("SKIP: dpdk-testpmd is not installed (apt-get install -y dpdk)");
        return;
    };
    assert!(
        !out.contains("Bad arguments"),
        "testpmd refused the syntax of a rendered rule:\n{out}"
    );
    // Parsed rules reach the null PMD, which answers ENOSYS for each.
    let enosys = out
        .matches("Caught PMD error type 1 (cause unspecified): Function not implemented")
        .count();
    assert_eq!(
        enosys,
        rules.len(),
        "each rule must parse and reach the driver:\n{out}"
    );
}

#[test]
fn tap_supported_rules_pass_flow_validate_on_a_tap_port() {
    let run_dir = common::RunDir::new("tptap");
    let iface = format!("dtap{}", std::process::id() % 100_000);
    let rules = tap_rules();
    let lines = validate_lines(&rules);
    let vdevs = vec![format!("--vdev=net_tap0,iface={iface}")];
    let Some(out) = run_testpmd(&run_dir.prefix, &vdevs, &lines) else {
        eprintln!("SKIP: dpdk-testpmd is not installed (apt-get install -y dpdk)");
        return;
    };
    if !out.contains("Port 0: ") {
        eprintln!("SKIP: the tap device {iface} could not be created here (needs /dev/net/tun and CAP_NET_ADMIN):\n{out}");
        return;
    }
    assert!(!out.contains("Bad arguments"), "{out}");
    assert!(
        !out.contains("Caught PMD error"),
        "the tap PMD refused a rule:\n{out}"
    );
    assert_eq!(
        out.matches("Flow rule validated").count(),
        rules.len(),
        "{out}"
    );
}
