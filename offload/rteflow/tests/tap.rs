//! A real tap port (one EAL per process: one test in this binary). Probing finds what the
//! tap PMD accepts (group 0 with queue/drop) and what it refuses, with its messages; the
//! rules the partitioner then builds from the demo topology for that port are printed as
//! testpmd lines, and those pass `flow validate` in the real `dpdk-testpmd` against a tap
//! port. Skips, saying why, where testpmd or a tap device is unavailable.

mod common;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{demo, ip, port_map, RunDir};
use rte::flow::{FlowPort, TestpmdVerb};
use rte::{Eal, Mempool, PoolConfig, Port, PortConf};
use wyvern_offload_rteflow::*;
use wyvern_pipeline::{Match, Stage};

/// Kills testpmd if the test ends early.
struct Testpmd(Child);
impl Drop for Testpmd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs testpmd interactively on `vdevs`, feeding `commands` then `quit`; its output, or
/// `None` when testpmd is not installed.
fn run_testpmd(prefix: &str, vdevs: &[String], commands: &[String]) -> Option<String> {
    let installed = Command::new("dpdk-testpmd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !installed {
        return None;
    }
    let out_path = std::env::temp_dir().join(format!("{prefix}.out"));
    let out_file = std::fs::File::create(&out_path).unwrap();
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
        .stdout(out_file.try_clone().unwrap())
        .stderr(out_file);
    let mut child = Testpmd(cmd.spawn().unwrap());
    {
        let mut stdin = child.0.stdin.take().unwrap();
        for c in commands {
            writeln!(stdin, "{c}").unwrap();
        }
        writeln!(stdin, "quit").unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "dpdk-testpmd did not exit within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = std::fs::read_to_string(&out_path).unwrap();
    let _ = std::fs::remove_file(&out_path);
    Some(out)
}

#[test]
fn tap_probing_and_testpmd_flow_validate_of_the_rules_built_for_it() {
    let run = RunDir::new("tap");
    let iface = format!("wofft{}", std::process::id() % 100_000);
    let vdev = format!("--vdev=net_tap0,iface={iface}");
    let args = [
        "--no-huge",
        "--no-pci",
        "-m",
        "512",
        "--file-prefix",
        &run.prefix,
        &vdev,
        "-l",
        "0",
        "--no-telemetry",
        "--log-level=warning",
    ];
    let eal = match Eal::init(&args) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("SKIP: EAL with a tap vdev failed here: {e}");
            return;
        }
    };
    if eal.eth_dev_count() == 0 {
        eprintln!("SKIP: the tap device {iface} could not be created here (needs /dev/net/tun and CAP_NET_ADMIN)");
        return;
    }
    // Configured and started, as testpmd has it when it validates.
    let pool = Mempool::pktmbuf_pool(
        &eal,
        "tap_pool",
        &PoolConfig {
            size: 1023,
            cache_size: 0,
            ..Default::default()
        },
    )
    .unwrap();
    let mut p = Port::open(&eal, 0).unwrap();
    p.configure(&PortConf {
        rx_queues: 1,
        tx_queues: 1,
    })
    .unwrap();
    p.setup_rx_queue(0, 256, &pool).unwrap();
    p.setup_tx_queue(0, 256).unwrap();
    p.start().unwrap();

    // Switch port 1 (vm1, port-secured) is the tap.
    let cfg = OffloadConfig::per_port(port_map(1));
    let mut be = RteFlowBackend::new(cfg.clone(), vec![FlowPort::new(&eal, 0).unwrap()]).unwrap();
    let caps = be.caps(0).unwrap().clone();
    eprintln!("{}", caps_summary(&caps));
    assert!(
        caps.has_rte_flow(),
        "the tap PMD implements rte_flow: {caps:?}"
    );
    let supported = caps.supported();
    for k in [RuleKind::SteerRoot, RuleKind::DenyRoot] {
        assert!(supported.contains(&k), "tap should accept {k}: {caps:?}");
    }
    for k in [RuleKind::Classify, RuleKind::L3Route, RuleKind::Egress] {
        assert!(!supported.contains(&k), "tap cannot {k}");
        assert!(
            matches!(caps.allows(k), Err(Reason::RefusedByPort { message, .. }) if !message.is_empty())
        );
    }

    // The partition for this port: port security on the NIC, forwarding in software.
    let d = demo();
    let flows = d.flows();
    let plan = partition(&flows, &cfg, 0, &caps, &Refusals::new());
    let ps = flows
        .iter()
        .find(|f| {
            f.stage == Stage::PortSecurity && f.matches.contains(&Match::Ipv4Src(ip(&d.vm1).into()))
        })
        .unwrap();
    let ids = plan.placement(ps).unwrap().unwrap();
    assert_eq!(plan.rules[&ids[0]].kind, RuleKind::SteerRoot);
    let kinds: Vec<RuleKind> = plan.rules.values().map(|r| r.kind).collect();
    assert!(kinds.contains(&RuleKind::DenyRoot), "{kinds:?}");
    assert_eq!(
        plan.rules.len(),
        4,
        "ARP steer, DHCP steer, vm1 allow, vm1 deny: {kinds:?}"
    );
    eprintln!("{}", print_plan(&plan, &caps));

    // Installing: the tap PMD here cannot create (no TC flower); each refusal is recorded
    // with the driver's message and the rest stays in software.
    let rep = be.apply(&flows);
    eprintln!("apply on tap: {rep:?}");
    assert!(rep.created + rep.refused.len() > 0, "{rep:?}");
    // Never a deny on the NIC without the allow rule above it.
    let allow = plan.rules[&ids[0]].id.clone();
    let on_nic: Vec<RuleId> = be.installed(0).map(|r| r.id.clone()).collect();
    let deny_on_nic = be.installed(0).any(|r| r.kind == RuleKind::DenyRoot);
    assert!(!deny_on_nic || on_nic.contains(&allow), "{on_nic:?}");
    for (id, msg) in &rep.refused {
        assert!(
            msg.contains("failed to create flow rule on port 0"),
            "{id}: {msg}"
        );
    }
    let installed = be.installed(0).count();
    let c = be.counters();
    assert_eq!(c.rules_installed as usize, installed);
    assert_eq!(c.create_refusals as usize, rep.refused.len());
    drop(be);
    p.stop().unwrap();
    drop(p);
    drop(pool);

    // The same rules through the real testpmd's parser and the tap driver's validate.
    let lines = testpmd_lines(plan.rules.values(), 0, TestpmdVerb::Validate);
    let run2 = RunDir::new("taptp");
    let iface2 = format!("woffp{}", std::process::id() % 100_000);
    let Some(out) = run_testpmd(
        &run2.prefix,
        &[format!("--vdev=net_tap0,iface={iface2}")],
        &lines,
    ) else {
        eprintln!("SKIP: dpdk-testpmd is not installed (apt-get install -y dpdk)");
        return;
    };
    if !out.contains("Port 0: ") {
        eprintln!("SKIP: testpmd could not create the tap device {iface2}:\n{out}");
        return;
    }
    assert!(
        !out.contains("Bad arguments"),
        "testpmd refused the syntax:\n{lines:#?}\n{out}"
    );
    assert!(
        !out.contains("Caught PMD error"),
        "the tap PMD refused a rule:\n{lines:#?}\n{out}"
    );
    assert_eq!(
        out.matches("Flow rule validated").count(),
        lines.len(),
        "{lines:#?}\n{out}"
    );
    eprintln!(
        "testpmd validated {} rules:\n{}",
        lines.len(),
        lines.join("\n")
    );
    drop(eal);
}
