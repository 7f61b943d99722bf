//! Topologies built through the model's own operations and compiled by wyvern-pipeline,
//! shared by the fast-path tests and the benchmark.
#![allow(dead_code)]

use std::net::Ipv4Addr;

use serde_json::json;
use wyvern_model::*;
use wyvern_pipeline::{Bindings, CompileConfig, Compiler, FloodGroup, Flow};

/// A bound VM port.
#[derive(Debug, Clone)]
pub struct Vm {
    pub ofport: u32,
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
    pub network: usize,
}

/// A router interface on a network.
#[derive(Debug, Clone, Copy)]
pub struct Gateway {
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
}

pub struct Built {
    pub compiler: Compiler,
    pub vms: Vec<Vm>,
    /// Per network: its router interface, if attached.
    pub gateways: Vec<Option<Gateway>>,
}

impl Built {
    pub fn flows(&self) -> Vec<Flow> {
        self.compiler.flows().cloned().collect()
    }
    pub fn groups(&self) -> Vec<FloodGroup> {
        self.compiler.groups().cloned().collect()
    }
}

/// `nets` networks (10.x.y.0/24, DHCP on) of `ports_per_net` bound ports each (ofports
/// 1, 2, ... in creation order); network `n` is attached to router `n % routers`.
pub fn build(nets: usize, ports_per_net: usize, routers: usize) -> Built {
    let ctx = RequestContext::admin("p1", Timestamp(1));
    let mut topo = Topology::new(ModelConfig::default());
    let apply = |topo: &mut Topology, c: Change| topo.apply(&c);
    let rs: Vec<_> = (0..routers)
        .map(|_| {
            let (c, r) = topo
                .create_router(&ctx, RouterCreate::from_json(&json!({}), &ctx).unwrap())
                .unwrap();
            apply(&mut topo, c);
            r
        })
        .collect();
    let mut bindings = Bindings::new();
    let mut vms = Vec::new();
    let mut gateways = Vec::new();
    let mut ofport = 1;
    for n in 0..nets {
        let (c, net) = topo
            .create_network(&ctx, NetworkCreate::from_json(&json!({}), &ctx).unwrap())
            .unwrap();
        apply(&mut topo, c);
        let cidr = format!("10.{}.{}.0/24", n / 256, n % 256);
        let req = SubnetCreate::from_json(
            &json!({"network_id": net.id, "cidr": cidr, "ip_version": 4}),
            &ctx,
        )
        .unwrap();
        let (c, subnet) = topo.create_subnet(&ctx, req).unwrap();
        apply(&mut topo, c);
        let mut gw = None;
        if !rs.is_empty() {
            let r = &rs[n % rs.len()];
            let (c, _) = topo
                .add_router_interface(&ctx, &r.id.to_string(), InterfaceRequest::Subnet(subnet.id))
                .unwrap();
            apply(&mut topo, c);
            gw = topo
                .network_ports(&net.id)
                .find(|p| p.is_router_interface())
                .map(|p| Gateway {
                    ip: p.fixed_ips[0].ip_address,
                    mac: p.mac_address,
                });
        }
        gateways.push(gw);
        for _ in 0..ports_per_net {
            let req = PortCreate::from_json(&json!({"network_id": net.id}), &ctx).unwrap();
            let (c, p) = topo.create_port(&ctx, req).unwrap();
            apply(&mut topo, c);
            bindings.bind(p.id, ofport);
            vms.push(Vm {
                ofport,
                mac: p.mac_address,
                ip: p.fixed_ips[0].ip_address,
                network: n,
            });
            ofport += 1;
        }
    }
    let mut compiler = Compiler::new(CompileConfig::default());
    compiler.full(&topo, &bindings).unwrap();
    Built {
        compiler,
        vms,
        gateways,
    }
}
