//! Shared by the tests: the real P4Info, a demo topology compiled through the model's own
//! operations, and the in-process fake target.

#![allow(dead_code)]

pub mod fake;

use std::path::PathBuf;

use p4runtime_proto::P4Info;
use serde_json::json;
use wyvern_model::*;
use wyvern_pipeline::ir::{FloodGroup, Flow};
use wyvern_pipeline::{Bindings, CompileConfig, Compiler, L3Mode};

pub fn p4info() -> P4Info {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../p4/wyvern.p4info.txtpb");
    let text = std::fs::read_to_string(&path).expect("read wyvern.p4info.txtpb");
    p4runtime_proto::parse_p4info(&text).expect("wyvern.p4info.txtpb parses")
}

/// Two networks joined by a router with a static route, bound ports with and without port
/// security, DHCP on; compiled in one L3 mode.
pub fn compiled(mode: L3Mode) -> (Vec<Flow>, Vec<FloodGroup>) {
    let ctx = RequestContext::admin("p1", Timestamp(1));
    let mut topo = Topology::new(ModelConfig::default());
    let mut nets = Vec::new();
    for name in ["net1", "net2"] {
        let req = NetworkCreate::from_json(&json!({ "name": name }), &ctx).expect("network");
        let (c, n) = topo.create_network(&ctx, req).expect("create network");
        topo.apply(&c);
        nets.push(n);
    }
    let mut subnets = Vec::new();
    for (n, cidr) in [(&nets[0], "10.0.1.0/24"), (&nets[1], "10.0.2.0/24")] {
        let req = SubnetCreate::from_json(
            &json!({"network_id": n.id, "cidr": cidr, "ip_version": 4}),
            &ctx,
        )
        .expect("subnet");
        let (c, s) = topo.create_subnet(&ctx, req).expect("create subnet");
        topo.apply(&c);
        subnets.push(s);
    }
    let req = RouterCreate::from_json(&json!({"name": "r"}), &ctx).expect("router");
    let (c, r) = topo.create_router(&ctx, req).expect("create router");
    topo.apply(&c);
    for s in &subnets {
        let (c, _) = topo
            .add_router_interface(&ctx, &r.id.to_string(), InterfaceRequest::Subnet(s.id))
            .expect("add interface");
        topo.apply(&c);
    }
    let mut bindings = Bindings::new();
    let bodies = [
        json!({"network_id": nets[0].id}),
        json!({"network_id": nets[0].id, "port_security_enabled": false}),
        json!({"network_id": nets[1].id}),
    ];
    let mut first_ip = None;
    for (i, body) in bodies.iter().enumerate() {
        let req = PortCreate::from_json(body, &ctx).expect("port");
        let (c, p) = topo.create_port(&ctx, req).expect("create port");
        topo.apply(&c);
        first_ip.get_or_insert(p.fixed_ips[0].ip_address);
        bindings.bind(p.id, i as u32 + 1);
    }
    let nh = first_ip.expect("a port with an address");
    let req = RouterUpdate::from_json(
        &json!({"routes": [{"destination": "192.168.0.0/16", "nexthop": nh.to_string()}]}),
    )
    .expect("route");
    let (c, _) = topo
        .update_router(&ctx, &r.id.to_string(), req)
        .expect("add route");
    topo.apply(&c);
    let mut compiler = Compiler::new(CompileConfig {
        l3_mode: mode,
        ..CompileConfig::default()
    });
    compiler.full(&topo, &bindings).expect("compile");
    (
        compiler.flows().cloned().collect(),
        compiler.groups().cloned().collect(),
    )
}

/// Polls `cond` until it holds or `secs` pass (async: the fake runs on the same runtime).
pub async fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// `ports` port-secured VM ports, 100 per network (/24 each), a router per 10 networks;
/// port i bound to switch port i (1-based).
/// The write-rate examples' arguments: `[PORTS [BATCH,BATCH,...]]`, default 5000 ports and
/// batches of 100, 1,000 and 5,000 entries.
pub fn rate_args() -> anyhow::Result<(u32, Vec<usize>)> {
    let mut args = std::env::args().skip(1);
    let ports: u32 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5000);
    let batches: Vec<usize> = args
        .next()
        .unwrap_or_else(|| "100,1000,5000".into())
        .split(',')
        .map(|s| s.parse())
        .collect::<Result<_, _>>()?;
    Ok((ports, batches))
}

pub fn scale(ports: u32) -> (Vec<Flow>, Vec<FloodGroup>) {
    let ctx = RequestContext::admin("p1", Timestamp(1));
    let mut topo = Topology::new(ModelConfig::default());
    let mut bindings = Bindings::new();
    let mut of = 0;
    let mut router = None;
    for n in 0..ports.div_ceil(100) {
        if n % 10 == 0 {
            let req = RouterCreate::from_json(&json!({"name": "r"}), &ctx).expect("router");
            let (c, r) = topo.create_router(&ctx, req).expect("create router");
            topo.apply(&c);
            router = Some(r);
        }
        let req =
            NetworkCreate::from_json(&json!({ "name": format!("n{n}") }), &ctx).expect("network");
        let (c, net) = topo.create_network(&ctx, req).expect("create network");
        topo.apply(&c);
        let cidr = format!("10.{}.{}.0/24", n / 256, n % 256);
        let req = SubnetCreate::from_json(
            &json!({"network_id": net.id, "cidr": cidr, "ip_version": 4}),
            &ctx,
        )
        .expect("subnet");
        let (c, s) = topo.create_subnet(&ctx, req).expect("create subnet");
        topo.apply(&c);
        if let Some(r) = &router {
            let (c, _) = topo
                .add_router_interface(&ctx, &r.id.to_string(), InterfaceRequest::Subnet(s.id))
                .expect("add interface");
            topo.apply(&c);
        }
        for _ in 0..100.min(ports - n * 100) {
            let req = PortCreate::from_json(&json!({"network_id": net.id}), &ctx).expect("port");
            let (c, p) = topo.create_port(&ctx, req).expect("create port");
            topo.apply(&c);
            of += 1;
            bindings.bind(p.id, of);
        }
    }
    let mut compiler = Compiler::new(CompileConfig::default());
    compiler.full(&topo, &bindings).expect("compile");
    (
        compiler.flows().cloned().collect(),
        compiler.groups().cloned().collect(),
    )
}
