//! The compiler's story: build a topology through the model's own operations, compile it,
//! and ask the interpreter where packets go.

use std::net::Ipv4Addr;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use serde_json::json;
use uuid::Uuid;
use wyvern_model::*;
use wyvern_pipeline::interp::Verdict;
use wyvern_pipeline::*;

struct World {
    topo: Topology,
    ctx: RequestContext,
}

impl World {
    fn new() -> Self {
        World {
            topo: Topology::new(ModelConfig::default()),
            ctx: RequestContext::admin("p1", Timestamp(1)),
        }
    }
    fn apply(&mut self, c: &Change) {
        self.topo.apply(c);
    }
    fn network(&mut self, name: &str) -> Arc<Network> {
        let req = NetworkCreate::from_json(&json!({"name": name}), &self.ctx).unwrap();
        let (c, n) = self.topo.create_network(&self.ctx, req).unwrap();
        self.apply(&c);
        n
    }
    fn subnet(&mut self, net: &Network, cidr: &str) -> Arc<Subnet> {
        let req = SubnetCreate::from_json(
            &json!({"network_id": net.id, "cidr": cidr, "ip_version": 4}),
            &self.ctx,
        )
        .unwrap();
        let (c, s) = self.topo.create_subnet(&self.ctx, req).unwrap();
        self.apply(&c);
        s
    }
    fn port(&mut self, net: &Network) -> (Arc<Port>, Change) {
        let req = PortCreate::from_json(&json!({"network_id": net.id}), &self.ctx).unwrap();
        let (c, p) = self.topo.create_port(&self.ctx, req).unwrap();
        self.apply(&c);
        (p, c)
    }
    fn router(&mut self) -> Arc<Router> {
        let req = RouterCreate::from_json(&json!({"name": "r"}), &self.ctx).unwrap();
        let (c, r) = self.topo.create_router(&self.ctx, req).unwrap();
        self.apply(&c);
        r
    }
    fn attach(&mut self, r: &Router, s: &Subnet) -> Change {
        let (c, _) = self
            .topo
            .add_router_interface(&self.ctx, &r.id.to_string(), InterfaceRequest::Subnet(s.id))
            .unwrap();
        self.apply(&c);
        c
    }
}

fn ip(p: &Port) -> Ipv4Addr {
    p.fixed_ips[0].ip_address
}

/// Two networks joined by a router, three bound ports: vm1, vm2 on net1, vm3 on net2.
struct Demo {
    w: World,
    b: Bindings,
    c: Compiler,
    vm1: Arc<Port>,
    vm2: Arc<Port>,
    vm3: Arc<Port>,
    gw1: (Ipv4Addr, MacAddr),
    gw2_mac: MacAddr,
}

fn demo() -> Demo {
    let mut w = World::new();
    let n1 = w.network("net1");
    let n2 = w.network("net2");
    let s1 = w.subnet(&n1, "10.0.1.0/24");
    let s2 = w.subnet(&n2, "10.0.2.0/24");
    let r = w.router();
    w.attach(&r, &s1);
    w.attach(&r, &s2);
    let (vm1, _) = w.port(&n1);
    let (vm2, _) = w.port(&n1);
    let (vm3, _) = w.port(&n2);
    let mut b = Bindings::new();
    b.bind(vm1.id, 1);
    b.bind(vm2.id, 2);
    b.bind(vm3.id, 3);
    let mut c = Compiler::new(CompileConfig::default());
    c.full(&w.topo, &b).unwrap();
    let iface = |net: Uuid| {
        w.topo
            .network_ports(&net)
            .find(|p| p.is_router_interface())
            .map(|p| (ip(p), p.mac_address))
            .unwrap()
    };
    let gw1 = iface(n1.id);
    let gw2_mac = iface(n2.id).1;
    Demo {
        w,
        b,
        c,
        vm1,
        vm2,
        vm3,
        gw1,
        gw2_mac,
    }
}

impl Demo {
    fn run(&self, p: Packet) -> Trace {
        Interpreter::new(self.c.flows(), self.c.groups()).run(p)
    }
}

#[test]
fn arp_for_the_gateway_is_answered_with_the_router_mac() {
    let d = demo();
    let t = d.run(Packet::arp_request(
        1,
        d.vm1.mac_address,
        ip(&d.vm1),
        d.gw1.0,
    ));
    let Verdict::Output { ports, packet } = t.verdict else {
        panic!("{t:?}")
    };
    assert_eq!(ports, vec![1], "reply goes back out of the in-port");
    let arp = packet.arp.unwrap();
    assert_eq!(arp.op, 2);
    assert_eq!(arp.sha, d.gw1.1);
    assert_eq!(arp.spa, d.gw1.0);
    assert_eq!(arp.tha, d.vm1.mac_address);
    assert_eq!(packet.eth_dst, d.vm1.mac_address);
}

#[test]
fn l2_delivers_within_a_network_and_floods_broadcast() {
    let d = demo();
    let t = d.run(Packet::ipv4(
        1,
        d.vm1.mac_address,
        d.vm2.mac_address,
        ip(&d.vm1),
        ip(&d.vm2),
        64,
    ));
    assert!(
        matches!(t.verdict, Verdict::Output { ref ports, .. } if ports == &vec![2]),
        "{t:?}"
    );
    // ARP for an address nobody owns floods to the network's other ports only.
    let t = d.run(Packet::arp_request(
        1,
        d.vm1.mac_address,
        ip(&d.vm1),
        "10.0.1.200".parse().unwrap(),
    ));
    assert!(
        matches!(t.verdict, Verdict::Output { ref ports, .. } if ports == &vec![2]),
        "{t:?}"
    );
}

#[test]
fn routing_decrements_ttl_and_rewrites_macs() {
    let d = demo();
    let t = d.run(Packet::ipv4(
        1,
        d.vm1.mac_address,
        d.gw1.1,
        ip(&d.vm1),
        ip(&d.vm3),
        64,
    ));
    let Verdict::Output { ports, packet } = t.verdict else {
        panic!("{t:?}")
    };
    assert_eq!(ports, vec![3]);
    assert_eq!(packet.ipv4.unwrap().ttl, 63);
    assert_eq!(packet.eth_src, d.gw2_mac);
    assert_eq!(packet.eth_dst, d.vm3.mac_address);
}

#[test]
fn expiring_ttl_and_router_icmp_go_to_the_controller() {
    let d = demo();
    let t = d.run(Packet::ipv4(
        1,
        d.vm1.mac_address,
        d.gw1.1,
        ip(&d.vm1),
        ip(&d.vm3),
        1,
    ));
    assert!(
        matches!(
            t.verdict,
            Verdict::Punt {
                reason: PuntReason::TtlExpired,
                ..
            }
        ),
        "{t:?}"
    );
    let t = d.run(Packet::ipv4(
        1,
        d.vm1.mac_address,
        d.gw1.1,
        ip(&d.vm1),
        d.gw1.0,
        1,
    ));
    assert!(
        matches!(
            t.verdict,
            Verdict::Punt {
                reason: PuntReason::IcmpToRouter,
                ..
            }
        ),
        "{t:?}"
    );
}

#[test]
fn spoofing_is_dropped_and_dhcp_is_punted() {
    let d = demo();
    let fake_mac = MacAddr([0xfa, 0x16, 0x3e, 9, 9, 9]);
    let t = d.run(Packet::ipv4(
        1,
        fake_mac,
        d.vm2.mac_address,
        ip(&d.vm1),
        ip(&d.vm2),
        64,
    ));
    assert!(
        matches!(
            t.verdict,
            Verdict::Drop {
                stage: Stage::PortSecurity,
                ..
            }
        ),
        "{t:?}"
    );
    let t = d.run(Packet::ipv4(
        1,
        d.vm1.mac_address,
        d.vm2.mac_address,
        "10.0.1.99".parse().unwrap(),
        ip(&d.vm2),
        64,
    ));
    assert!(
        matches!(
            t.verdict,
            Verdict::Drop {
                stage: Stage::PortSecurity,
                ..
            }
        ),
        "{t:?}"
    );
    let t = d.run(Packet::dhcp_discover(1, d.vm1.mac_address));
    assert!(
        matches!(
            t.verdict,
            Verdict::Punt {
                reason: PuntReason::Dhcp,
                ..
            }
        ),
        "{t:?}"
    );
    // A packet from a switch port nobody is bound to goes nowhere.
    let t = d.run(Packet::dhcp_discover(99, d.vm1.mac_address));
    assert!(
        matches!(
            t.verdict,
            Verdict::Drop {
                stage: Stage::Classify,
                ..
            }
        ),
        "{t:?}"
    );
}

#[test]
fn a_new_port_recompiles_only_its_own_owners() {
    let mut d = demo();
    let net1 = d.w.topo.get_network(&d.vm1.network_id).unwrap().clone();
    let before = d.c.flow_count();
    let (p, change) = d.w.port(&net1);
    d.b.bind(p.id, 4);
    let delta = d.c.update(&d.w.topo, &d.b, &change).unwrap();
    assert!(
        delta.removed.is_empty(),
        "nothing existing changes: {:?}",
        delta.removed
    );
    assert!(
        delta.added.iter().all(|f| f.owner == Owner::Port(p.id)),
        "{:?}",
        delta.added
    );
    assert_eq!(d.c.flow_count(), before + delta.added.len());
    assert_eq!(delta.groups_set.len(), 1, "the flood group gains the port");
}

/// Random sequences of model changes: after each, the incremental result equals a full
/// recompute from scratch with the same keys.
#[test]
fn incremental_equals_full_on_random_change_sequences() {
    let mut applied = 0;
    let mut routed = 0;
    for seed in 0..20u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut w = World::new();
        let mut b = Bindings::new();
        let mut c = Compiler::new(CompileConfig::default());
        c.full(&w.topo, &b).unwrap();
        let mut next_ofport = 1u32;
        for step in 0..60 {
            let nets: Vec<_> = w.topo.networks().cloned().collect();
            let subnets: Vec<_> = w.topo.subnets().cloned().collect();
            let ports: Vec<_> = w
                .topo
                .ports()
                .filter(|p| !p.is_router_interface())
                .cloned()
                .collect();
            let routers: Vec<_> = w.topo.routers().cloned().collect();
            let choice = rng.random_range(0..9);
            let ctx = w.ctx.clone();
            let change: Option<Change> = match choice {
                0 if nets.len() < 4 => Some(
                    w.topo
                        .create_network(&ctx, NetworkCreate::from_json(&json!({}), &ctx).unwrap())
                        .unwrap()
                        .0,
                ),
                1 if !nets.is_empty() => {
                    let n = &nets[rng.random_range(0..nets.len())];
                    let cidr = format!("10.{}.{}.0/24", seed, step);
                    SubnetCreate::from_json(&json!({"network_id": n.id, "cidr": cidr, "ip_version": 4, "enable_dhcp": rng.random_bool(0.7)}), &ctx)
                        .ok()
                        .and_then(|r| w.topo.create_subnet(&ctx, r).ok())
                        .map(|x| x.0)
                }
                2 | 3 if !nets.is_empty() => {
                    let n = &nets[rng.random_range(0..nets.len())];
                    w.topo
                        .create_port(
                            &ctx,
                            PortCreate::from_json(&json!({"network_id": n.id}), &ctx).unwrap(),
                        )
                        .ok()
                        .map(|x| x.0)
                }
                4 if !ports.is_empty() => {
                    let p = &ports[rng.random_range(0..ports.len())];
                    w.topo.delete_port(&ctx, &p.id.to_string()).ok()
                }
                5 if routers.len() < 2 => Some(
                    w.topo
                        .create_router(&ctx, RouterCreate::from_json(&json!({}), &ctx).unwrap())
                        .unwrap()
                        .0,
                ),
                6 if !routers.is_empty() && !subnets.is_empty() => {
                    let r = &routers[rng.random_range(0..routers.len())];
                    let s = &subnets[rng.random_range(0..subnets.len())];
                    w.topo
                        .add_router_interface(
                            &ctx,
                            &r.id.to_string(),
                            InterfaceRequest::Subnet(s.id),
                        )
                        .ok()
                        .map(|x| x.0)
                }
                7 if !routers.is_empty() && !subnets.is_empty() => {
                    let r = &routers[rng.random_range(0..routers.len())];
                    let s = &subnets[rng.random_range(0..subnets.len())];
                    w.topo
                        .remove_router_interface(
                            &ctx,
                            &r.id.to_string(),
                            InterfaceRequest::Subnet(s.id),
                        )
                        .ok()
                        .map(|x| x.0)
                }
                8 if !ports.is_empty() => {
                    // Bind or unbind a port: not a model change.
                    let p = &ports[rng.random_range(0..ports.len())];
                    if b.ofport(&p.id).is_some() {
                        b.unbind(&p.id);
                    } else {
                        b.bind(p.id, next_ofport);
                        next_ofport += 1;
                    }
                    c.binding_changed(&w.topo, &b, p.id).unwrap();
                    None
                }
                _ => None,
            };
            if let Some(change) = change {
                w.topo.apply(&change);
                c.update(&w.topo, &b, &change).unwrap();
                applied += 1;
            }
            let mut full = c.clone();
            let delta = full.full(&w.topo, &b).unwrap();
            assert!(delta.is_empty(), "seed {seed} step {step} (choice {choice}): incremental differs from full: {delta:#?}");
            // The per-stage counts kept incrementally equal a walk over the flows.
            let mut walked = [0usize; STAGES.len()];
            for f in c.flows() {
                walked[f.stage.index()] += 1;
            }
            assert_eq!(c.flows_by_stage(), walked, "seed {seed} step {step}");
            assert_eq!(c.flow_count(), walked.iter().sum::<usize>());
        }
        routed += c.flows().filter(|f| f.stage == Stage::L3Lookup).count();
    }
    // The sequences really exercised the compiler: many changes, routers with routes.
    assert!(applied > 400, "only {applied} changes applied");
    assert!(
        routed > 20,
        "only {routed} l3 flows at the end of all sequences"
    );
}

/// A restarted controller that restores its persisted keys compiles exactly the same flows,
/// even though a full compile would otherwise number objects in another order.
#[test]
fn restored_keys_give_identical_flows_after_a_restart() {
    let mut d = demo();
    // More churn so that creation order and id order differ.
    let net1 = d.w.topo.get_network(&d.vm1.network_id).unwrap().clone();
    for i in 0..5 {
        let (p, change) = d.w.port(&net1);
        d.b.bind(p.id, 10 + i);
        d.c.update(&d.w.topo, &d.b, &change).unwrap();
        d.c.binding_changed(&d.w.topo, &d.b, p.id).unwrap();
    }
    let persisted: Vec<(KeyKind, Uuid, u32)> =
        d.c.take_key_changes()
            .into_iter()
            .fold(std::collections::BTreeMap::new(), |mut m, (kind, id, k)| {
                match k {
                    Some(k) => m.insert((kind, id), k),
                    None => m.remove(&(kind, id)),
                };
                m
            })
            .into_iter()
            .map(|((kind, id), k)| (kind, id, k))
            .collect();
    let mut restarted = Compiler::new(CompileConfig::default());
    restarted.restore_keys(persisted);
    restarted.full(&d.w.topo, &d.b).unwrap();
    let a: Vec<_> = d.c.flows().cloned().collect();
    let b: Vec<_> = restarted.flows().cloned().collect();
    assert_eq!(a, b);
}
