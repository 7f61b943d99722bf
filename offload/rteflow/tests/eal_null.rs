//! The real EAL with null PMD ports (one EAL per process: one test in this binary). The
//! null PMD answers rte_flow with ENOSYS: probing finds no rte_flow, and the back end keeps
//! every flow in software with that reason, installing nothing.

mod common;

use common::{demo, port_map, RunDir};
use rte::flow::FlowPort;
use rte::Eal;
use wyvern_offload_rteflow::*;

#[test]
fn null_ports_have_no_rte_flow_and_everything_stays_in_software() {
    let run = RunDir::new("null");
    let args = [
        "--no-huge",
        "--no-pci",
        "-m",
        "512",
        "--file-prefix",
        &run.prefix,
        "--vdev=net_null0",
        "--vdev=net_null1",
        "--vdev=net_null2",
        "-l",
        "0",
        "--no-telemetry",
        "--log-level=warning",
    ];
    let eal = Eal::init(&args).expect("EAL init");
    assert_eq!(eal.port_ids(), vec![0, 1, 2]);
    let devs: Vec<FlowPort> = (0..3).map(|p| FlowPort::new(&eal, p).unwrap()).collect();
    let cfg = OffloadConfig::per_port(port_map(3));
    let mut be = RteFlowBackend::new(cfg, devs).expect("backend");

    for port in 0..3 {
        let caps = be.caps(port).unwrap();
        match &caps.support {
            PortSupport::NoRteFlow { message } => assert!(
                message.contains("Function not implemented") && message.contains("errno 38"),
                "{message}"
            ),
            other => panic!("port {port}: {other:?}"),
        }
    }

    let d = demo();
    let flows = d.flows();
    let rep = be.apply(&flows);
    assert_eq!((rep.created, rep.destroyed), (0, 0));
    assert!(rep.refused.is_empty());
    let mut placed = 0;
    for port in 0..3u16 {
        let plan = be.plan(port).unwrap();
        assert!(plan.rules.is_empty() && plan.offloaded.is_empty());
        assert!(!plan.not_offloaded.is_empty());
        for n in &plan.not_offloaded {
            assert_eq!(n.reason.label(), "no_rte_flow", "{}", n.flow);
            assert!(n
                .reason
                .to_string()
                .contains(&format!("port {port} has no rte_flow support")));
            assert!(n.steered_by.is_none());
        }
        placed += plan.not_offloaded.len();
        assert_eq!(be.installed(port).count(), 0);
    }
    // Per port, every shared flow plus that port's own classify/port-security/DHCP flows.
    assert!(placed > flows.len(), "{placed} vs {}", flows.len());
    let c = be.counters();
    assert_eq!(c.offloaded_flows, 0);
    assert_eq!(c.creates, 0);
    assert_eq!(
        c.not_offloaded.keys().copied().collect::<Vec<_>>(),
        ["no_rte_flow"]
    );
    assert_eq!(c.not_offloaded["no_rte_flow"] as usize, placed);
    let text = print_rules(&be);
    assert!(text.contains("port 0: no rte_flow support"), "{text}");
    assert!(text.contains("no_rte_flow: "), "{text}");
    drop(be);
    drop(eal);
}
