//! The engine against the reference: random topologies built through the model's own
//! operations and compiled by wyvern-pipeline; many random packets (ARP requests, ICMP and
//! UDP between random ports, routed traffic, DHCP discovers, spoofed sources, expiring
//! TTLs, traffic to router addresses, unknown switch ports) run through
//! `Interpreter::run` and through `Engine::process` on the encoded bytes; verdicts and
//! output headers must be identical. One engine is built from the full IR, another kept up
//! to date only through incremental deltas; both must agree with the interpreter.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use wyvern_engine::packet::{decode, encode};
use wyvern_engine::wire::Ipv4Packet;
use wyvern_engine::{DropCause, Engine, Meta, Out, Verdict};
use wyvern_model::*;
use wyvern_pipeline::interp::{self, Packet};
use wyvern_pipeline::*;

struct World {
    topo: Topology,
    ctx: RequestContext,
    compiler: Compiler,
    bindings: Bindings,
    /// Kept current with deltas only.
    incremental: Engine,
}

impl World {
    fn new() -> Self {
        let mut compiler = Compiler::new(CompileConfig::default());
        let topo = Topology::new(ModelConfig::default());
        let bindings = Bindings::new();
        let delta = compiler.full(&topo, &bindings).unwrap();
        let mut incremental = Engine::new();
        incremental.apply_delta(&delta).unwrap();
        World {
            topo,
            ctx: RequestContext::admin("p1", Timestamp(1)),
            compiler,
            bindings,
            incremental,
        }
    }
    fn apply(&mut self, c: &Change) {
        self.topo.apply(c);
        let d = self.compiler.update(&self.topo, &self.bindings, c).unwrap();
        self.incremental.apply_delta(&d).unwrap();
    }
    fn bind(&mut self, port: &Port, ofport: u32) {
        self.bindings.bind(port.id, ofport);
        let d = self
            .compiler
            .binding_changed(&self.topo, &self.bindings, port.id)
            .unwrap();
        self.incremental.apply_delta(&d).unwrap();
    }
    fn network(&mut self) -> Arc<Network> {
        let req = NetworkCreate::from_json(&json!({}), &self.ctx).unwrap();
        let (c, n) = self.topo.create_network(&self.ctx, req).unwrap();
        self.apply(&c);
        n
    }
    fn subnet(&mut self, net: &Network, cidr: &str, dhcp: bool) -> Arc<Subnet> {
        let req = SubnetCreate::from_json(
            &json!({"network_id": net.id, "cidr": cidr, "ip_version": 4, "enable_dhcp": dhcp}),
            &self.ctx,
        )
        .unwrap();
        let (c, s) = self.topo.create_subnet(&self.ctx, req).unwrap();
        self.apply(&c);
        s
    }
    fn port(&mut self, body: serde_json::Value) -> Arc<Port> {
        let req = PortCreate::from_json(&body, &self.ctx).unwrap();
        let (c, p) = self.topo.create_port(&self.ctx, req).unwrap();
        self.apply(&c);
        p
    }
    fn router(&mut self) -> Arc<Router> {
        let req = RouterCreate::from_json(&json!({}), &self.ctx).unwrap();
        let (c, r) = self.topo.create_router(&self.ctx, req).unwrap();
        self.apply(&c);
        r
    }
    fn attach(&mut self, r: &Router, s: &Subnet) {
        let (c, _) = self
            .topo
            .add_router_interface(&self.ctx, &r.id.to_string(), InterfaceRequest::Subnet(s.id))
            .unwrap();
        self.apply(&c);
    }
    fn routes(&mut self, r: &Router, routes: serde_json::Value) {
        let req = RouterUpdate::from_json(&json!({ "routes": routes })).unwrap();
        if let Ok((c, _)) = self.topo.update_router(&self.ctx, &r.id.to_string(), req) {
            self.apply(&c);
        }
    }
}

/// A port as the packet generator sees it.
#[derive(Clone)]
struct Host {
    ofport: Option<u32>,
    mac: MacAddr,
    ip: Ipv4Addr,
}

/// What packets are addressed from and to.
struct Targets {
    hosts: Vec<Host>,
    /// Router interfaces: (ip, mac).
    gateways: Vec<(Ipv4Addr, MacAddr)>,
}

struct Scenario {
    w: World,
    t: Targets,
}

impl Scenario {
    /// The compiled IR, from which each test builds its engines.
    fn ir(&self) -> (Vec<Flow>, Vec<FloodGroup>) {
        (
            self.w.compiler.flows().cloned().collect(),
            self.w.compiler.groups().cloned().collect(),
        )
    }
}

/// A fresh engine of the IR, with its flow cache on or off.
fn engine(flows: &[Flow], groups: &[FloodGroup], cache: bool) -> Engine {
    let mut e = Engine::from_ir(flows, groups).unwrap();
    if !cache {
        e.set_flow_cache(0);
    }
    e
}

fn build(seed: u64) -> Scenario {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut w = World::new();
    let nets = rng.random_range(2..=5);
    let routers: Vec<_> = (0..rng.random_range(1..=2)).map(|_| w.router()).collect();
    let mut hosts = Vec::new();
    let mut next_ofport = 1;
    for n in 0..nets {
        let net = w.network();
        let cidr = format!("10.{seed}.{n}.0/24");
        let subnet = w.subnet(&net, &cidr, rng.random_bool(0.8));
        if rng.random_bool(0.85) {
            let r = &routers[rng.random_range(0..routers.len())];
            w.attach(r, &subnet);
        }
        for _ in 0..rng.random_range(2..=8) {
            let mut body = json!({"network_id": net.id});
            match rng.random_range(0..10) {
                0 => body["port_security_enabled"] = json!(false),
                1 => body["admin_state_up"] = json!(false),
                2 => {
                    body["allowed_address_pairs"] =
                        json!([{"ip_address": format!("10.{seed}.{n}.128/25")}])
                }
                _ => {}
            }
            let p = w.port(body);
            let ofport = if rng.random_bool(0.85) {
                w.bind(&p, next_ofport);
                next_ofport += 1;
                Some(next_ofport - 1)
            } else {
                None
            };
            hosts.push(Host {
                ofport,
                mac: p.mac_address,
                ip: p.fixed_ips[0].ip_address,
            });
        }
    }
    // A static route via a known port (and one via nobody) on the first router.
    let on_router: Vec<&Host> = hosts.iter().collect();
    if let Some(h) = on_router.get(rng.random_range(0..on_router.len())) {
        let r = routers[0].clone();
        w.routes(
            &r,
            json!([
                {"destination": "192.168.0.0/16", "nexthop": h.ip.to_string()},
                {"destination": "172.16.5.0/24", "nexthop": format!("10.{seed}.0.250")},
            ]),
        );
    }
    let gateways = w
        .topo
        .ports()
        .filter(|p| p.is_router_interface())
        .map(|p| (p.fixed_ips[0].ip_address, p.mac_address))
        .collect();
    Scenario {
        w,
        t: Targets { hosts, gateways },
    }
}

fn random_mac(rng: &mut StdRng) -> MacAddr {
    MacAddr([0xfa, 0x16, 0x3e, rng.random(), rng.random(), rng.random()])
}

fn random_packet(s: &Targets, rng: &mut StdRng) -> Packet {
    let bound: Vec<&Host> = s.hosts.iter().filter(|h| h.ofport.is_some()).collect();
    let from = bound[rng.random_range(0..bound.len())];
    let in_port = if rng.random_bool(0.03) {
        999
    } else {
        from.ofport.unwrap_or(999)
    };
    let spoof = rng.random_bool(0.1);
    let src_mac = if spoof && rng.random_bool(0.5) {
        random_mac(rng)
    } else {
        from.mac
    };
    let src_ip = if spoof {
        Ipv4Addr::new(10, rng.random(), rng.random(), rng.random())
    } else {
        from.ip
    };
    let to = &s.hosts[rng.random_range(0..s.hosts.len())];
    let gw = (!s.gateways.is_empty()).then(|| s.gateways[rng.random_range(0..s.gateways.len())]);
    let ttl = [0u8, 1, 2, 64][rng.random_range(0..4)];
    match rng.random_range(0..8) {
        0 => {
            let tpa = match (rng.random_range(0..4), gw) {
                (0, Some((ip, _))) => ip,
                (1, _) => Ipv4Addr::new(10, 9, 9, rng.random()),
                (2, _) => from.ip,
                _ => to.ip,
            };
            let mut p = Packet::arp_request(in_port, src_mac, src_ip, tpa);
            if rng.random_bool(0.1) {
                // A reply, or an unknown op: not for the responder.
                if let Some(a) = p.arp.as_mut() {
                    a.op = rng.random_range(2..5);
                }
            }
            p
        }
        1 => Packet::dhcp_discover(in_port, src_mac),
        2 | 3 => {
            // Routed: to a gateway MAC (from any router interface), to any host IP or route.
            let (dmac, dst) = match gw {
                Some((gip, gmac)) => {
                    let dst = match rng.random_range(0..6) {
                        0 => gip,
                        1 => Ipv4Addr::new(192, 168, 1, rng.random()),
                        2 => Ipv4Addr::new(172, 16, 5, 1),
                        3 => Ipv4Addr::new(8, 8, 8, 8),
                        _ => to.ip,
                    };
                    (gmac, dst)
                }
                None => (to.mac, to.ip),
            };
            let mut p = Packet::ipv4(in_port, src_mac, dmac, src_ip, dst, ttl);
            udp_or_icmp(&mut p, rng);
            p
        }
        4 => {
            let dmac = match rng.random_range(0..4) {
                0 => MacAddr([0xff; 6]),
                1 => random_mac(rng),
                _ => to.mac,
            };
            let mut p = Packet::ipv4(in_port, src_mac, dmac, src_ip, to.ip, ttl);
            udp_or_icmp(&mut p, rng);
            p
        }
        5 => {
            // Some other ethertype (IPv6, LLDP): only L2 decides.
            let mut p = Packet::ipv4(in_port, src_mac, to.mac, src_ip, to.ip, 64);
            p.eth_type = [0x86dd, 0x88cc][rng.random_range(0..2)];
            p.ipv4 = None;
            p
        }
        _ => {
            let mut p = Packet::ipv4(in_port, src_mac, to.mac, src_ip, to.ip, ttl);
            udp_or_icmp(&mut p, rng);
            p
        }
    }
}

fn udp_or_icmp(p: &mut Packet, rng: &mut StdRng) {
    if let Some(ip) = p.ipv4.as_mut() {
        match rng.random_range(0..3) {
            0 => {
                ip.proto = 17;
                ip.icmp_type = None;
                ip.udp = Some((
                    rng.random_range(1000..2000),
                    [53, 67, 4789][rng.random_range(0..3)],
                ));
            }
            1 => ip.icmp_type = Some([0, 8, 11][rng.random_range(0..3)]),
            _ => {}
        }
    }
}

/// A verdict in terms both sides can express.
#[derive(Debug, PartialEq, Eq)]
enum Norm {
    Out(Vec<u32>, Packet),
    Punt(PuntReason, Option<PortKey>, Packet),
    Drop(Stage, bool),
}

fn norm_ref(v: interp::Verdict) -> Norm {
    match v {
        interp::Verdict::Output { mut ports, packet } => {
            ports.sort_unstable();
            Norm::Out(ports, packet)
        }
        interp::Verdict::Punt {
            reason,
            inport,
            packet,
        } => Norm::Punt(reason, inport, packet),
        interp::Verdict::Drop { stage, by_flow } => Norm::Drop(stage, by_flow),
    }
}

fn norm_engine(e: &Engine, v: Verdict, frame: &[u8], in_port: u32) -> Norm {
    let meta = Meta {
        in_port,
        tun_id: None,
    };
    let pkt = || decode(frame, meta).expect("engine output is a frame");
    match v {
        Verdict::Output(Out::Port(p)) => Norm::Out(vec![p], pkt()),
        Verdict::Output(Out::Flood { network, except }) => Norm::Out(
            e.flood_group(network)
                .iter()
                .copied()
                .filter(|p| *p != except)
                .collect(),
            pkt(),
        ),
        Verdict::Punt { reason, inport, .. } => Norm::Punt(reason, inport, pkt()),
        Verdict::Drop {
            cause: DropCause::Hairpin,
            ..
        } => Norm::Out(vec![], pkt()),
        Verdict::Drop { stage, cause } => Norm::Drop(stage, cause != DropCause::Miss),
    }
}

#[test]
fn engine_equals_interpreter_on_random_topologies_and_packets() {
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    let mut total = 0;
    let mut cache_hits = 0;
    for seed in 0..24u64 {
        let s = build(seed);
        let (flows, groups) = s.ir();
        let reference = Interpreter::new(&flows, &groups);
        let mut full = engine(&flows, &groups, true);
        assert_eq!(
            full.shadowed(),
            0,
            "seed {seed}: compiled flows never collide"
        );
        let Scenario { w, t } = s;
        let mut incremental = w.incremental;
        // The incremental engine walks the tables for every packet; the full one replays
        // its flow cache for every repeated key (each packet is sent twice below).
        incremental.set_flow_cache(0);
        for stage in Stage::ALL {
            assert_eq!(
                full.len(stage),
                incremental.len(stage),
                "seed {seed}: {stage} size after deltas"
            );
        }
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
        for i in 0..1500 {
            let p = random_packet(&t, &mut rng);
            let expected = norm_ref(reference.run(p).verdict);
            let mut frame = encode(&p, 240);
            let mut frame2 = frame.clone();
            let mut again = frame.clone();
            let got = full.process(&mut frame, p.in_port);
            let got = norm_engine(&full, got, &frame, p.in_port);
            assert_eq!(got, expected, "seed {seed} packet {i}: {p:?}");
            let replayed = full.process(&mut again, p.in_port);
            assert_eq!(again, frame, "seed {seed} packet {i}: replayed rewrites");
            let replayed = norm_engine(&full, replayed, &again, p.in_port);
            assert_eq!(
                replayed, expected,
                "seed {seed} packet {i} (from the flow cache)"
            );
            let got2 = incremental.process(&mut frame2, p.in_port);
            let got2 = norm_engine(&incremental, got2, &frame2, p.in_port);
            assert_eq!(
                got2, expected,
                "seed {seed} packet {i} (incremental engine): {p:?}"
            );
            if p.ipv4.is_some() && frame[12..14] == [8, 0] {
                assert!(
                    Ipv4Packet::new_checked(&frame[14..]).unwrap().checksum_ok(),
                    "seed {seed} packet {i}: checksum after rewrite"
                );
            }
            let key = match &expected {
                Norm::Out(ports, q) if ports.len() > 1 => "flood".to_string(),
                Norm::Out(_, q)
                    if q.arp.is_some_and(|a| a.op == 2) && p.arp.is_some_and(|a| a.op == 1) =>
                {
                    "arp reply".into()
                }
                Norm::Out(_, q)
                    if q.ipv4
                        .is_some_and(|ip| Some(ip.ttl) != p.ipv4.map(|x| x.ttl)) =>
                {
                    "routed".into()
                }
                Norm::Out(ports, _) if ports.is_empty() => "out nowhere".into(),
                Norm::Out(..) => "l2".into(),
                Norm::Punt(r, ..) => format!("punt {r:?}"),
                Norm::Drop(st, by_flow) => format!("drop {st} flow={by_flow}"),
            };
            *tally.entry(key).or_default() += 1;
            total += 1;
        }
        cache_hits += full.cache_stats().hits;
        assert_eq!(incremental.cache_stats().hits, 0);
    }
    println!("{total} packets: {tally:#?}");
    assert!(
        cache_hits >= total as u64,
        "every second send hits the cache: {cache_hits}"
    );
    // The packets exercised every path, so agreement means something.
    for k in [
        "flood",
        "arp reply",
        "routed",
        "l2",
        "punt Dhcp",
        "punt TtlExpired",
        "punt IcmpToRouter",
        "punt L3Miss",
        "drop classify flow=false",
        "drop port_security flow=false",
        "drop l2_lookup flow=false",
        "drop l3_lookup flow=true",
    ] {
        assert!(
            tally.get(k).copied().unwrap_or(0) >= 10,
            "too few '{k}' packets: {tally:#?}"
        );
    }
}

#[test]
fn counters_count_what_matched() {
    let s = build(7);
    let (flows, groups) = s.ir();
    let mut e = engine(&flows, &groups, true);
    let h = s.t.hosts.iter().find(|h| h.ofport.is_some()).unwrap();
    let ofport = h.ofport.unwrap();
    let classify = flows
        .iter()
        .find(|f| f.stage == Stage::Classify && f.matches == vec![Match::PhysInPort(ofport)])
        .unwrap();
    let id = e
        .find(
            Stage::Classify,
            classify.priority.into(),
            &[wyvern_engine::FieldMatch::exact(
                FieldKind::PhysInPort,
                ofport.into(),
            )],
        )
        .unwrap();
    let frame = encode(&Packet::dhcp_discover(ofport, h.mac), 240);
    for _ in 0..3 {
        let mut f = frame.clone();
        e.process(&mut f, ofport);
    }
    let c = e.counters(id).unwrap();
    assert_eq!(c.packets, 3);
    assert_eq!(c.bytes, 3 * frame.len() as u64);
    assert!(
        e.cache_stats().hits >= 2,
        "repeats came from the cache, counted all the same"
    );
    let mut f = frame.clone();
    e.process(&mut f, 4242);
    assert_eq!(e.miss_counters(Stage::Classify).packets, 1);
    // A write invalidates cached flows: without its classify entry the port is unknown.
    e.remove_id(id).unwrap();
    let mut f = frame.clone();
    assert_eq!(
        e.process(&mut f, ofport),
        wyvern_engine::Verdict::Drop {
            stage: Stage::Classify,
            cause: DropCause::Miss
        }
    );
}

/// Another packet of `f`'s flow: `k` added to its IPv4 id and the checksum fixed, bytes the
/// burst's same-flow shortcuts must ignore, as the pipeline does. Other frames come back as
/// they are.
fn same_flow_packet(f: &[u8], k: usize) -> Vec<u8> {
    let mut g = f.to_vec();
    if g.len() >= 34 && g[12..15] == [8, 0, 0x45] {
        g[18] = g[18].wrapping_add(k as u8);
        if let Ok(mut ip) = Ipv4Packet::new_checked(&mut g[14..]) {
            ip.fill_checksum();
        }
    }
    g
}

/// Every entry's and every stage's miss counters, for comparing two engines built alike.
fn all_counters(e: &Engine) -> Vec<(String, u64, u64)> {
    let mut v = Vec::new();
    for stage in Stage::ALL {
        let mut entries: Vec<_> = e
            .entries(stage)
            .map(|r| (format!("{stage} {:?}", r.id), r.counters))
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        v.extend(entries.into_iter().map(|(k, c)| (k, c.packets, c.bytes)));
        let m = e.miss_counters(stage);
        v.push((format!("{stage} miss"), m.packets, m.bytes));
    }
    v
}

/// `process_burst` (flow cache on: per-stage steps over the burst, runs of one flow
/// counted once) gives what `process` on each frame in turn gives on a cache-less engine:
/// the same verdicts, the same rewritten bytes, and after every burst the same counters
/// on every entry and every stage's miss. Bursts of 1 to 80 frames (so longer than one
/// 32-frame chunk), drawn from a small pool so flows repeat back to back (runs), interleave
/// and miss in the middle of a burst (a new flow, twice in a row), with truncated frames
/// mixed in; sometimes a write between bursts invalidates the cache. The same bursts
/// through `process_burst_runs` give maximal verdict runs that expand to the same verdicts,
/// the same bytes and the same counters.
#[test]
fn process_burst_equals_frame_by_frame_processing() {
    let mut frames_total = 0usize;
    let mut runs_seen = 0usize;
    let mut uniform_bursts = 0usize;
    for seed in 0..6u64 {
        let s = build(seed);
        let (flows, groups) = s.ir();
        let mut burst = engine(&flows, &groups, true);
        let mut plain = engine(&flows, &groups, false);
        // Frame by frame with the cache on: its hit/miss statistics must be the burst's.
        let mut single = engine(&flows, &groups, true);
        // The same bursts through `process_burst_runs`: maximal runs that expand to the
        // same verdicts.
        let mut by_runs = engine(&flows, &groups, true);
        let mut runs = Vec::new();
        let mut rng = StdRng::seed_from_u64(seed ^ 0xb0b5);
        let mut pool: Vec<(u32, Vec<u8>)> = (0..24)
            .map(|_| {
                let p = random_packet(&s.t, &mut rng);
                (p.in_port, encode(&p, 240))
            })
            .collect();
        let mut verdicts = Vec::new();
        for b in 0..120 {
            if b % 10 == 9 {
                // New flows keep arriving: a miss in the middle of later bursts.
                let p = random_packet(&s.t, &mut rng);
                let i = rng.random_range(0..pool.len());
                pool[i] = (p.in_port, encode(&p, 240));
            }
            if b % 40 == 39 {
                // A write between bursts: every cached flow is forgotten.
                let e = flows[rng.random_range(0..flows.len())].clone();
                for eng in [&mut burst, &mut plain, &mut single, &mut by_runs] {
                    eng.remove_flow(&e).unwrap();
                    eng.insert_flow(&e).unwrap();
                }
            }
            let in_port = pool[rng.random_range(0..pool.len())].0;
            // Every 7th burst is one flow throughout (whole 32-frame chunks of one flow:
            // the engine's uniform-chunk path), the rest a random mix.
            let uniform = b % 7 == 3;
            let len = if uniform {
                [2, 31, 32, 33, 64, 80][rng.random_range(0..6usize)]
            } else {
                rng.random_range(1..=80usize)
            };
            let mut frames: Vec<Vec<u8>> = Vec::with_capacity(len);
            if uniform {
                let f = &pool[rng.random_range(0..pool.len())].1;
                for k in 0..len {
                    frames.push(if k % 2 == 1 {
                        same_flow_packet(f, k)
                    } else {
                        f.clone()
                    });
                }
                uniform_bursts += 1;
            }
            while frames.len() < len {
                let f = &pool[rng.random_range(0..pool.len())].1;
                let mut f = f.clone();
                if rng.random_range(0..50) == 0 {
                    f.truncate(rng.random_range(0..14));
                }
                let repeat = if rng.random_bool(0.5) {
                    rng.random_range(2..12)
                } else {
                    1
                };
                for k in 0..repeat.min(len - frames.len()) {
                    frames.push(if k % 2 == 1 {
                        same_flow_packet(&f, k)
                    } else {
                        f.clone()
                    });
                }
                runs_seen += usize::from(repeat > 1);
            }
            let mut want = frames.clone();
            let mut run_frames = frames.clone();
            let want_v: Vec<Verdict> = want.iter_mut().map(|f| plain.process(f, in_port)).collect();
            for f in frames.clone().iter_mut() {
                single.process(f, in_port);
            }
            burst.process_burst(
                &mut frames,
                Meta {
                    in_port,
                    tun_id: None,
                },
                &mut verdicts,
            );
            assert_eq!(verdicts, want_v, "seed {seed} burst {b}: verdicts");
            by_runs.process_burst_runs(
                &mut run_frames,
                Meta {
                    in_port,
                    tun_id: None,
                },
                &mut runs,
            );
            assert_eq!(
                runs.first().map(|r| r.start),
                Some(0),
                "seed {seed} burst {b}"
            );
            let mut expanded = Vec::new();
            for (k, r) in runs.iter().enumerate() {
                let end = runs.get(k + 1).map_or(len, |n| n.start);
                assert!(end > r.start, "seed {seed} burst {b}: empty run");
                if let Some(n) = runs.get(k + 1) {
                    assert_ne!(
                        n.verdict, r.verdict,
                        "seed {seed} burst {b}: runs not maximal"
                    );
                }
                expanded.extend(std::iter::repeat_n(r.verdict, end - r.start));
            }
            assert_eq!(expanded, want_v, "seed {seed} burst {b}: runs");
            assert_eq!(
                run_frames, want,
                "seed {seed} burst {b}: frames rewritten by runs"
            );
            assert_eq!(frames, want, "seed {seed} burst {b}: rewritten frames");
            assert_eq!(
                all_counters(&burst),
                all_counters(&plain),
                "seed {seed} burst {b}: counters"
            );
            assert_eq!(
                all_counters(&by_runs),
                all_counters(&plain),
                "seed {seed} burst {b}: counters (runs)"
            );
            frames_total += len;
        }
        let st = burst.cache_stats();
        assert_eq!(st, single.cache_stats(), "seed {seed}: cache statistics");
        assert!(
            st.hits > st.misses,
            "seed {seed}: the bursts mostly replay the cache ({st:?})"
        );
    }
    assert!(frames_total > 20_000, "{frames_total} frames");
    assert!(runs_seen > 1000, "{runs_seen} runs of one flow");
    assert!(uniform_bursts > 90, "{uniform_bursts} bursts of one flow");
}

/// Routed frames through the one-flow chunk pass (a burst of one IPv4 flow whose first
/// frame hits the cache): the MAC rewrite and the TTL/checksum update replayed per frame
/// must give what a cache-less engine gives frame by frame. The mixed test above draws
/// few routed flows into its one-flow bursts; this one takes only flows the router
/// rewrites, at burst lengths around the 32-frame chunk.
#[test]
fn routed_one_flow_bursts_equal_frame_by_frame() {
    let mut routed_bursts = 0usize;
    for seed in 0..6u64 {
        let s = build(seed);
        let (flows, groups) = s.ir();
        let mut burst = engine(&flows, &groups, true);
        let mut plain = engine(&flows, &groups, false);
        let mut probe = engine(&flows, &groups, false);
        let mut rng = StdRng::seed_from_u64(seed ^ 0x0070_7e00);
        // Flows the router forwards: an output verdict and a rewritten source MAC.
        let mut routed: Vec<(u32, Vec<u8>)> = Vec::new();
        for _ in 0..4000 {
            if routed.len() == 8 {
                break;
            }
            let p = random_packet(&s.t, &mut rng);
            let f = encode(&p, 240);
            if f.len() < 34 || f[12..15] != [8, 0, 0x45] {
                continue;
            }
            let mut g = f.clone();
            let v = probe.process(&mut g, p.in_port);
            if matches!(v, Verdict::Output(Out::Port(_))) && g[6..12] != f[6..12] {
                routed.push((p.in_port, f));
            }
        }
        if routed.is_empty() {
            continue;
        }
        let mut verdicts = Vec::new();
        for b in 0..60 {
            let (in_port, f) = &routed[b % routed.len()];
            let len = [2, 31, 32, 33, 64, 80][b % 6];
            let frames: Vec<Vec<u8>> = (0..len).map(|k| same_flow_packet(f, k)).collect();
            let mut want = frames.clone();
            let want_v: Vec<Verdict> = want
                .iter_mut()
                .map(|f| plain.process(f, *in_port))
                .collect();
            let mut got = frames;
            burst.process_burst(
                &mut got,
                Meta {
                    in_port: *in_port,
                    tun_id: None,
                },
                &mut verdicts,
            );
            assert_eq!(verdicts, want_v, "seed {seed} burst {b}: verdicts");
            assert_eq!(got, want, "seed {seed} burst {b}: rewritten frames");
            assert_eq!(
                all_counters(&burst),
                all_counters(&plain),
                "seed {seed} burst {b}: counters"
            );
            routed_bursts += 1;
        }
    }
    assert!(
        routed_bursts >= 180,
        "{routed_bursts} routed one-flow bursts"
    );
}
