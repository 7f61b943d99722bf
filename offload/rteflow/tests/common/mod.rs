//! Topologies built through the model's own operations and compiled to IR, shared by the
//! tests and the benchmark example.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;
use wyvern_model::*;
use wyvern_pipeline::{Bindings, CompileConfig, Compiler, Flow};

pub struct World {
    pub topo: Topology,
    pub ctx: RequestContext,
}

impl World {
    pub fn new() -> Self {
        World {
            topo: Topology::new(ModelConfig::default()),
            ctx: RequestContext::admin("p1", Timestamp(1)),
        }
    }
    pub fn network(&mut self, name: &str) -> Arc<Network> {
        let req = NetworkCreate::from_json(&json!({ "name": name }), &self.ctx).unwrap();
        let (c, n) = self.topo.create_network(&self.ctx, req).unwrap();
        self.topo.apply(&c);
        n
    }
    pub fn subnet(&mut self, net: &Network, cidr: &str) -> Arc<Subnet> {
        let req = SubnetCreate::from_json(
            &json!({"network_id": net.id, "cidr": cidr, "ip_version": 4}),
            &self.ctx,
        )
        .unwrap();
        let (c, s) = self.topo.create_subnet(&self.ctx, req).unwrap();
        self.topo.apply(&c);
        s
    }
    pub fn port(&mut self, net: &Network, secured: bool) -> Arc<Port> {
        let req = PortCreate::from_json(
            &json!({"network_id": net.id, "port_security_enabled": secured}),
            &self.ctx,
        )
        .unwrap();
        let (c, p) = self.topo.create_port(&self.ctx, req).unwrap();
        self.topo.apply(&c);
        p
    }
    pub fn router(&mut self) -> Arc<Router> {
        let req = RouterCreate::from_json(&json!({"name": "r"}), &self.ctx).unwrap();
        let (c, r) = self.topo.create_router(&self.ctx, req).unwrap();
        self.topo.apply(&c);
        r
    }
    pub fn attach(&mut self, r: &Router, s: &Subnet) {
        let (c, _) = self
            .topo
            .add_router_interface(&self.ctx, &r.id.to_string(), InterfaceRequest::Subnet(s.id))
            .unwrap();
        self.topo.apply(&c);
    }
    pub fn route(&mut self, r: &Router, dest: &str, nexthop: Ipv4Addr) {
        let req = RouterUpdate::from_json(
            &json!({"routes": [{"destination": dest, "nexthop": nexthop.to_string()}]}),
        )
        .unwrap();
        let (c, _) = self
            .topo
            .update_router(&self.ctx, &r.id.to_string(), req)
            .unwrap();
        self.topo.apply(&c);
    }
}

pub fn ip(p: &Port) -> Ipv4Addr {
    p.fixed_ips[0].ip_address
}

/// Two networks joined by a router, three bound ports: vm1 (secured) and vm2 (port
/// security off) on net1 = 10.0.1.0/24, vm3 (secured) on net2 = 10.0.2.0/24 on switch ports
/// 1, 2, 3; a static route 10.9.0.0/16 via vm2.
pub struct Demo {
    pub w: World,
    pub b: Bindings,
    pub c: Compiler,
    pub vm1: Arc<Port>,
    pub vm2: Arc<Port>,
    pub vm3: Arc<Port>,
    /// (gateway IP, router MAC) on net1 and net2.
    pub gw1: (Ipv4Addr, MacAddr),
    pub gw2: (Ipv4Addr, MacAddr),
}

pub fn demo() -> Demo {
    let mut w = World::new();
    let n1 = w.network("net1");
    let n2 = w.network("net2");
    let s1 = w.subnet(&n1, "10.0.1.0/24");
    let s2 = w.subnet(&n2, "10.0.2.0/24");
    let r = w.router();
    w.attach(&r, &s1);
    w.attach(&r, &s2);
    let vm1 = w.port(&n1, true);
    let vm2 = w.port(&n1, false);
    let vm3 = w.port(&n2, true);
    w.route(&r, "10.9.0.0/16", ip(&vm2));
    let mut b = Bindings::new();
    b.bind(vm1.id, 1);
    b.bind(vm2.id, 2);
    b.bind(vm3.id, 3);
    let mut c = Compiler::new(CompileConfig::default());
    c.full(&w.topo, &b).unwrap();
    let iface = |net: uuid::Uuid| {
        w.topo
            .network_ports(&net)
            .find(|p| p.is_router_interface())
            .map(|p| (ip(p), p.mac_address))
            .unwrap()
    };
    let gw1 = iface(n1.id);
    let gw2 = iface(n2.id);
    Demo {
        w,
        b,
        c,
        vm1,
        vm2,
        vm3,
        gw1,
        gw2,
    }
}

impl Demo {
    pub fn flows(&self) -> Vec<Flow> {
        self.c.flows().cloned().collect()
    }
}

/// Switch ports 1..=n mapped to DPDK ports 0..n.
pub fn port_map(n: u32) -> BTreeMap<u32, u16> {
    (1..=n).map(|of| (of, (of - 1) as u16)).collect()
}

/// `ports` VM ports, 100 per network (/24 each, all port-secured), a router per 10
/// networks; every port bound to switch port 1, 2, ...
pub fn scale(ports: u32) -> (World, Bindings, Compiler) {
    let mut w = World::new();
    let mut b = Bindings::new();
    let nets = ports.div_ceil(100);
    let mut of = 0;
    let mut router = None;
    for n in 0..nets {
        if n % 10 == 0 {
            router = Some(w.router());
        }
        let net = w.network(&format!("n{n}"));
        let s = w.subnet(&net, &format!("10.{}.{}.0/24", n / 256, n % 256));
        if let Some(r) = &router {
            w.attach(r, &s);
        }
        for _ in 0..100.min(ports - n * 100) {
            let p = w.port(&net, true);
            of += 1;
            b.bind(p.id, of);
        }
    }
    let mut c = Compiler::new(CompileConfig::default());
    c.full(&w.topo, &b).unwrap();
    (w, b, c)
}

/// Removes `/var/run/dpdk/<prefix>` when dropped (EAL leaves its config files there).
pub struct RunDir {
    pub prefix: String,
}

impl RunDir {
    pub fn new(purpose: &str) -> RunDir {
        RunDir {
            prefix: format!("wyv-off-{purpose}-{}", std::process::id()),
        }
    }
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/var/run/dpdk").join(&self.prefix)
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.path());
    }
}
