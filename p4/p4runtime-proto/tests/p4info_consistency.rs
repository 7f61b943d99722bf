//! wyvern.p4, its P4Info and the pipeline IR agree: every table, key, action and parameter
//! of the program is in the P4Info and nothing else is; ids follow p4c's scheme; every
//! stage of STAGES is a table with the stage's keys, its miss behaviour and its next
//! stages; and every flow the compiler emits for a real topology maps onto the program.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use common::p4info_gen;
use common::p4src::{self, Program};
use p4runtime_proto::p4::config::v1::{match_field, P4Info};
use wyvern_pipeline::ir::{Action, FieldKind, Flow, Match, PuntReason};
use wyvern_pipeline::stage::{Miss, Stage, STAGES};

const CONTROL: &str = "MyIngress";

fn p4_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn program() -> Program {
    let src = std::fs::read_to_string(p4_dir().join("wyvern.p4")).expect("read wyvern.p4");
    p4src::parse(&src)
}

fn p4info_text() -> String {
    std::fs::read_to_string(p4_dir().join("wyvern.p4info.txtpb")).expect("read wyvern.p4info.txtpb")
}

fn p4info() -> P4Info {
    p4runtime_proto::parse_p4info(&p4info_text()).expect("wyvern.p4info.txtpb parses")
}

/// The P4 key each IR match field is carried in.
fn key_of(kind: FieldKind) -> &'static str {
    match kind {
        FieldKind::PhysInPort => "meta.phys_in_port",
        FieldKind::TunnelId => "meta.tunnel_id",
        FieldKind::Network => "meta.network",
        FieldKind::InPort => "meta.inport",
        FieldKind::OutPort => "meta.outport",
        FieldKind::Router => "meta.router",
        FieldKind::EthSrc => "hdr.ethernet.srcAddr",
        FieldKind::EthDst => "hdr.ethernet.dstAddr",
        FieldKind::EthType => "hdr.ethernet.etherType",
        FieldKind::IpProto => "hdr.ipv4.protocol",
        FieldKind::Ipv4Src => "hdr.ipv4.srcAddr",
        FieldKind::Ipv4Dst => "hdr.ipv4.dstAddr",
        FieldKind::IpTtl => "hdr.ipv4.ttl",
        FieldKind::UdpSrc => "hdr.udp.srcPort",
        FieldKind::UdpDst => "hdr.udp.dstPort",
        FieldKind::IcmpType => "hdr.icmp.icmp_type",
        FieldKind::ArpOp => "hdr.arp.op",
        FieldKind::ArpSpa => "hdr.arp.spa",
        FieldKind::ArpTpa => "hdr.arp.tpa",
        FieldKind::ArpSha => "hdr.arp.sha",
    }
}

fn stage_const(s: Stage) -> String {
    format!("STAGE_{}", s.name().to_uppercase())
}

#[test]
fn p4info_file_is_what_the_program_generates() {
    let rendered = p4info_gen::render(&program(), CONTROL);
    let path = p4_dir().join("wyvern.p4info.txtpb");
    if std::env::var_os("WYVERN_BLESS").is_some() {
        std::fs::write(&path, &rendered).expect("write P4Info");
    }
    assert_eq!(
        p4info_text(),
        rendered,
        "wyvern.p4info.txtpb is out of date with wyvern.p4: rerun with WYVERN_BLESS=1"
    );
}

#[test]
fn every_p4_object_is_in_the_p4info_and_back() {
    let prog = program();
    let c = prog.control(CONTROL);
    let info = p4info();
    let pre = |p: &Option<p4runtime_proto::p4::config::v1::Preamble>| p.clone().expect("preamble");
    let action_name: BTreeMap<u32, String> = info
        .actions
        .iter()
        .map(|a| (pre(&a.preamble).id, pre(&a.preamble).name))
        .collect();

    // Tables: keys (name, width, kind), actions, const default, counters, size.
    type Key = (String, i32, String);
    /// Keys, action names, const default action.
    type TableShape = (Vec<Key>, BTreeSet<String>, Option<String>);
    let mut p4_tables: BTreeMap<String, TableShape> = BTreeMap::new();
    for t in &c.tables {
        let keys = t
            .keys
            .iter()
            .map(|(f, k)| (f.clone(), prog.key_width(c, f) as i32, k.to_uppercase()))
            .collect();
        let actions = t.actions.iter().map(|a| format!("{CONTROL}.{a}")).collect();
        let default = t
            .const_default
            .then(|| format!("{CONTROL}.{}", t.default_action.clone().expect("default")));
        p4_tables.insert(format!("{CONTROL}.{}", t.name), (keys, actions, default));
    }
    let mut info_tables = BTreeMap::new();
    for t in &info.tables {
        let keys = t
            .match_fields
            .iter()
            .enumerate()
            .map(|(i, m)| {
                assert_eq!(m.id as usize, i + 1, "match field ids count from 1");
                let kind = match m.r#match {
                    Some(match_field::Match::MatchType(k)) => match_field::MatchType::try_from(k)
                        .expect("known match type")
                        .as_str_name()
                        .to_string(),
                    ref other => panic!("unexpected match {other:?}"),
                };
                (m.name.clone(), m.bitwidth, kind)
            })
            .collect();
        let actions = t
            .action_refs
            .iter()
            .map(|r| action_name[&r.id].clone())
            .collect();
        let default = (t.const_default_action_id != 0)
            .then(|| action_name[&t.const_default_action_id].clone());
        info_tables.insert(pre(&t.preamble).name, (keys, actions, default));
    }
    assert_eq!(
        p4_tables, info_tables,
        "tables differ between wyvern.p4 and its P4Info"
    );

    // Actions and their parameters (only those a table uses reach the P4Info).
    let used: BTreeSet<&String> = c.tables.iter().flat_map(|t| &t.actions).collect();
    let p4_actions: BTreeMap<String, Vec<(String, i32)>> = c
        .actions
        .iter()
        .filter(|a| used.contains(&a.name))
        .map(|a| {
            (
                format!("{CONTROL}.{}", a.name),
                a.params
                    .iter()
                    .map(|(n, w)| (n.clone(), *w as i32))
                    .collect(),
            )
        })
        .collect();
    let info_actions: BTreeMap<String, Vec<(String, i32)>> = info
        .actions
        .iter()
        .map(|a| {
            for (i, p) in a.params.iter().enumerate() {
                assert_eq!(p.id as usize, i + 1, "param ids count from 1");
            }
            (
                pre(&a.preamble).name,
                a.params
                    .iter()
                    .map(|p| (p.name.clone(), p.bitwidth))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(p4_actions, info_actions, "actions differ");
    assert_eq!(
        used.len(),
        c.actions.len(),
        "an action no table uses would vanish from p4c's P4Info"
    );

    // Direct counters sit on the table that names them; every table has one.
    let table_id: BTreeMap<String, u32> = info
        .tables
        .iter()
        .map(|t| (pre(&t.preamble).name, pre(&t.preamble).id))
        .collect();
    for t in &c.tables {
        let cname = t
            .counters
            .as_ref()
            .unwrap_or_else(|| panic!("table {} has no direct counter", t.name));
        let dc = info
            .direct_counters
            .iter()
            .find(|d| pre(&d.preamble).name == format!("{CONTROL}.{cname}"))
            .unwrap_or_else(|| panic!("direct counter {cname} missing from P4Info"));
        assert_eq!(
            dc.direct_table_id,
            table_id[&format!("{CONTROL}.{}", t.name)]
        );
        let it = info
            .tables
            .iter()
            .find(|x| pre(&x.preamble).name == format!("{CONTROL}.{}", t.name))
            .expect("table");
        assert_eq!(it.direct_resource_ids, [pre(&dc.preamble).id]);
    }
    assert_eq!(info.direct_counters.len(), c.direct_counters.len());
    let counters: Vec<(String, i64)> = info
        .counters
        .iter()
        .map(|x| (pre(&x.preamble).name, x.size))
        .collect();
    let p4_counters: Vec<(String, i64)> = c
        .counters
        .iter()
        .map(|(n, s)| (format!("{CONTROL}.{n}"), *s as i64))
        .collect();
    assert_eq!(counters, p4_counters);

    // Packet-io headers, field by field in order.
    let p4_cpm: BTreeMap<String, Vec<(String, i32)>> = prog
        .controller_headers
        .iter()
        .map(|(ty, name)| {
            (
                name.clone(),
                prog.headers[ty]
                    .iter()
                    .map(|(f, w)| (f.clone(), *w as i32))
                    .collect(),
            )
        })
        .collect();
    let info_cpm: BTreeMap<String, Vec<(String, i32)>> = info
        .controller_packet_metadata
        .iter()
        .map(|m| {
            (
                pre(&m.preamble).name,
                m.metadata
                    .iter()
                    .map(|x| (x.name.clone(), x.bitwidth))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(p4_cpm, info_cpm);
    assert!(info_cpm.contains_key("packet_in") && info_cpm.contains_key("packet_out"));
    assert_eq!(info.pkg_info.expect("pkg_info").arch, "v1model");
}

#[test]
fn ids_follow_p4c_scheme_and_are_unique() {
    let info = p4info();
    let mut seen = BTreeSet::new();
    let mut check = |p: &Option<p4runtime_proto::p4::config::v1::Preamble>,
                     prefix: u32,
                     hashed: Option<&str>| {
        let p = p.as_ref().expect("preamble");
        assert_eq!(p.id >> 24, prefix, "{} has the wrong id prefix", p.name);
        assert!(
            seen.insert(p.id),
            "id {:#x} of {} is used twice",
            p.id,
            p.name
        );
        let name = hashed.unwrap_or(&p.name);
        // Without collisions, p4c's id is exactly the hash (probing only moves it on).
        assert_eq!(
            p.id & 0xff_ffff,
            p4info_gen::jenkins(name) & 0xff_ffff,
            "{} is not at its hash",
            p.name
        );
    };
    for t in &info.tables {
        check(&t.preamble, p4info_gen::TABLE, None);
    }
    for a in &info.actions {
        check(&a.preamble, p4info_gen::ACTION, None);
    }
    for d in &info.direct_counters {
        check(&d.preamble, p4info_gen::DIRECT_COUNTER, None);
    }
    for x in &info.counters {
        check(&x.preamble, p4info_gen::COUNTER, None);
    }
    let prog = program();
    for m in &info.controller_packet_metadata {
        let name = &m.preamble.as_ref().expect("preamble").name;
        let ty = prog
            .controller_headers
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(t, _)| t.clone())
            .expect("controller header type");
        check(&m.preamble, p4info_gen::CONTROLLER_HEADER, Some(&ty));
    }
    // A known value of the hash (Wikipedia's test vector), so the scheme is the real one.
    assert_eq!(p4info_gen::jenkins("a"), 0xca2e_9442);
    assert_eq!(
        p4info_gen::jenkins("The quick brown fox jumps over the lazy dog"),
        0x519e_91f5
    );
}

#[test]
fn every_stage_is_a_table_with_its_keys_miss_and_next_stages() {
    let prog = program();
    let c = prog.control(CONTROL);
    assert_eq!(
        c.tables.len(),
        STAGES.len(),
        "one table per stage, nothing else"
    );
    for (i, decl) in STAGES.iter().enumerate() {
        let t = c
            .tables
            .iter()
            .find(|t| t.name == decl.name)
            .unwrap_or_else(|| panic!("stage {} has no table", decl.name));
        assert_eq!(
            c.tables[i].name, decl.name,
            "tables are declared in stage order"
        );
        let keys: Vec<&str> = t.keys.iter().map(|(f, _)| f.as_str()).collect();
        let want: Vec<&str> = decl.matches.iter().map(|k| key_of(*k)).collect();
        assert_eq!(
            keys, want,
            "table {}: keys must be the stage's fields in order",
            decl.name
        );
        assert_eq!(
            prog.consts.get(&stage_const(decl.stage)).copied(),
            Some(i as u64),
            "{} must be {i}",
            stage_const(decl.stage)
        );

        // Miss: the const default action does what the declaration says.
        assert!(
            t.const_default,
            "table {}: the miss behaviour is fixed",
            decl.name
        );
        let default = t.default_action.as_deref().expect("default action");
        match decl.miss {
            Miss::Drop => assert_eq!(default, "drop", "table {} misses to drop", decl.name),
            Miss::Continue(s) => {
                assert_eq!(default, format!("goto_{}", s.name()), "table {}", decl.name)
            }
        }

        // The stages the table's actions can continue at are exactly the declared ones.
        let reached: BTreeSet<String> = t
            .actions
            .iter()
            .flat_map(|a| {
                c.actions
                    .iter()
                    .find(|x| &x.name == a)
                    .unwrap_or_else(|| panic!("action {a} undeclared"))
                    .next_stages
                    .clone()
            })
            .filter(|s| s != "STAGE_DONE")
            .collect();
        let declared: BTreeSet<String> = decl.next.iter().map(|s| stage_const(*s)).collect();
        assert_eq!(reached, declared, "table {}: next stages", decl.name);
    }
    for r in [
        PuntReason::Dhcp,
        PuntReason::L3Miss,
        PuntReason::TtlExpired,
        PuntReason::IcmpToRouter,
    ] {
        let name = match r {
            PuntReason::Dhcp => "PUNT_DHCP",
            PuntReason::L3Miss => "PUNT_L3_MISS",
            PuntReason::TtlExpired => "PUNT_TTL_EXPIRED",
            PuntReason::IcmpToRouter => "PUNT_ICMP_TO_ROUTER",
        };
        assert_eq!(
            prog.consts.get(name).copied(),
            Some(u64::from(r.code())),
            "{name}"
        );
    }
}

/// The P4 action and its arguments for an IR action list (what the P4Runtime back end does).
fn p4_action(flow: &Flow) -> Option<(&'static str, Vec<(&'static str, u128)>)> {
    use Action as A;
    let mac =
        |m: &wyvern_model::MacAddr| m.0.iter().fold(0u128, |acc, b| (acc << 8) | u128::from(*b));
    Some(match flow.actions.as_slice() {
        [] => ("drop", vec![]),
        [A::SetInPort(p), A::SetNetwork(n), A::Goto(Stage::PortSecurity)] => (
            "set_port_and_network",
            vec![("inport", p.0.into()), ("network", n.0.into())],
        ),
        [A::SetNetwork(n), A::Goto(Stage::L2Lookup)] => {
            ("set_tunnel_network", vec![("network", n.0.into())])
        }
        [A::Goto(Stage::Dispatch)] => ("goto_dispatch", vec![]),
        [A::Goto(Stage::ArpResponder)] => ("goto_arp_responder", vec![]),
        [A::Goto(Stage::Dhcp)] => ("goto_dhcp", vec![]),
        [A::Goto(Stage::L2Lookup)] => ("goto_l2_lookup", vec![]),
        [A::ArpReply { mac: m }] => ("arp_reply", vec![("mac", mac(m))]),
        [A::Punt(r)] => ("punt", vec![("reason", r.code().into())]),
        [A::SetOutPort(p), A::Goto(Stage::Egress)] => {
            ("set_outport", vec![("outport", p.0.into())])
        }
        [A::SetRouter(r), A::Goto(Stage::L3Lookup)] => ("set_router", vec![("router", r.0.into())]),
        [A::Flood(n)] => ("flood", vec![("group", n.0.into())]),
        [A::DecTtl, A::SetEthSrc(s), A::SetEthDst(d), A::SetNetwork(n), A::SetOutPort(p), A::Goto(Stage::Egress)] => {
            (
                "route",
                vec![
                    ("router_mac", mac(s)),
                    ("dst_mac", mac(d)),
                    ("network", n.0.into()),
                    ("outport", p.0.into()),
                ],
            )
        }
        [A::Output(p)] => ("output", vec![("port", (*p).into())]),
        _ => return None,
    })
}

/// (value, prefix length) of a match; full-width values have prefix = width.
fn match_value(m: &Match) -> (u128, Option<u8>) {
    let mac =
        |m: &wyvern_model::MacAddr| m.0.iter().fold(0u128, |acc, b| (acc << 8) | u128::from(*b));
    match m {
        Match::PhysInPort(v) | Match::TunnelId(v) => ((*v).into(), None),
        Match::Network(k) => (k.0.into(), None),
        Match::InPort(k) | Match::OutPort(k) => (k.0.into(), None),
        Match::Router(k) => (k.0.into(), None),
        Match::EthSrc(a) | Match::EthDst(a) | Match::ArpSha(a) => (mac(a), None),
        Match::EthDstMulticast => (1u128 << 40, Some(8)),
        Match::EthType(v) | Match::UdpSrc(v) | Match::UdpDst(v) | Match::ArpOp(v) => {
            ((*v).into(), None)
        }
        Match::IpProto(v) | Match::IpTtl(v) | Match::IcmpType(v) => ((*v).into(), None),
        Match::Ipv4Src(n) | Match::Ipv4Dst(n) | Match::ArpSpa(n) => {
            (u32::from(n.addr()).into(), Some(n.prefix_len()))
        }
        Match::ArpTpa(a) => (u32::from(*a).into(), None),
    }
}

#[test]
fn every_compiled_flow_maps_onto_the_program() {
    let info = p4info();
    let pre = |p: &Option<p4runtime_proto::p4::config::v1::Preamble>| p.clone().expect("preamble");
    let flows = world::compiled_flows();
    assert!(
        flows.len() > 30,
        "the sample topology compiles to {} flows",
        flows.len()
    );
    let mut actions_used = BTreeSet::new();
    let mut stages_seen = BTreeSet::new();
    for flow in &flows {
        let table = info
            .tables
            .iter()
            .find(|t| pre(&t.preamble).alias == flow.stage.name())
            .unwrap_or_else(|| panic!("no table for {flow}"));
        stages_seen.insert(flow.stage);
        let (action, args) =
            p4_action(flow).unwrap_or_else(|| panic!("no P4 action expresses [{flow}]"));
        let a = info
            .actions
            .iter()
            .find(|a| pre(&a.preamble).alias == action)
            .expect("action in P4Info");
        assert!(
            table
                .action_refs
                .iter()
                .any(|r| r.id == pre(&a.preamble).id),
            "table {} cannot run {action} for [{flow}]",
            flow.stage
        );
        let names: Vec<&str> = a.params.iter().map(|p| p.name.as_str()).collect();
        let given: Vec<&str> = args.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, given, "{action} parameters");
        for ((_, v), p) in args.iter().zip(&a.params) {
            assert!(
                *v < (1u128 << p.bitwidth),
                "[{flow}]: {action}.{} = {v} does not fit {} bits",
                p.name,
                p.bitwidth
            );
        }
        actions_used.insert(action);

        // Every match lands on a key of a kind that can hold it, and exact keys are given.
        for m in &flow.matches {
            let key = key_of(m.kind());
            let mf = table
                .match_fields
                .iter()
                .find(|f| f.name == key)
                .unwrap_or_else(|| panic!("[{flow}]: table has no key {key}"));
            let (v, prefix) = match_value(m);
            assert!(
                v < (1u128 << mf.bitwidth),
                "[{flow}]: {key} = {v} exceeds {} bits",
                mf.bitwidth
            );
            let kind = match mf.r#match {
                Some(match_field::Match::MatchType(k)) => k,
                _ => panic!("match type"),
            };
            let partial = prefix.is_some_and(|p| i32::from(p) < mf.bitwidth);
            if partial {
                assert!(
                    kind == match_field::MatchType::Ternary as i32
                        || kind == match_field::MatchType::Lpm as i32,
                    "[{flow}]: masked {key} needs a ternary or lpm key"
                );
            }
        }
        for mf in &table.match_fields {
            if mf.r#match
                == Some(match_field::Match::MatchType(
                    match_field::MatchType::Exact as i32,
                ))
            {
                assert!(
                    flow.matches.iter().any(|m| key_of(m.kind()) == mf.name),
                    "[{flow}]: exact key {} must be given",
                    mf.name
                );
            }
        }
    }
    let all_stages: BTreeSet<Stage> = Stage::ALL.into_iter().collect();
    assert_eq!(
        stages_seen, all_stages,
        "the sample topology exercises every stage"
    );
    for a in [
        "set_port_and_network",
        "goto_dispatch",
        "arp_reply",
        "punt",
        "set_outport",
        "set_router",
        "flood",
        "route",
        "output",
        "drop",
    ] {
        assert!(actions_used.contains(a), "no compiled flow used {a}");
    }
}

mod world {
    //! A topology built through the model's own operations: two networks joined by a router
    //! with a static route, bound ports with and without port security, DHCP on.

    use serde_json::json;
    use wyvern_model::*;
    use wyvern_pipeline::ir::Flow;
    use wyvern_pipeline::{Bindings, CompileConfig, Compiler, L3Mode};

    pub fn compiled_flows() -> Vec<Flow> {
        let ctx = RequestContext::admin("p1", Timestamp(1));
        let mut topo = Topology::new(ModelConfig::default());
        let apply = |topo: &mut Topology, c: &Change| topo.apply(c);
        let net = |topo: &mut Topology, name: &str| {
            let req =
                NetworkCreate::from_json(&json!({"name": name}), &ctx).expect("network request");
            let (c, n) = topo.create_network(&ctx, req).expect("create network");
            apply(topo, &c);
            n
        };
        let n1 = net(&mut topo, "net1");
        let n2 = net(&mut topo, "net2");
        let mut subnets = Vec::new();
        for (n, cidr) in [(&n1, "10.0.1.0/24"), (&n2, "10.0.2.0/24")] {
            let req = SubnetCreate::from_json(
                &json!({"network_id": n.id, "cidr": cidr, "ip_version": 4}),
                &ctx,
            )
            .expect("subnet request");
            let (c, s) = topo.create_subnet(&ctx, req).expect("create subnet");
            topo.apply(&c);
            subnets.push(s);
        }
        let req = RouterCreate::from_json(&json!({"name": "r"}), &ctx).expect("router request");
        let (c, r) = topo.create_router(&ctx, req).expect("create router");
        topo.apply(&c);
        for s in &subnets {
            let (c, _) = topo
                .add_router_interface(&ctx, &r.id.to_string(), InterfaceRequest::Subnet(s.id))
                .expect("add interface");
            topo.apply(&c);
        }
        let mut bindings = Bindings::new();
        let ports = [
            (&n1, json!({"network_id": n1.id})),
            (
                &n1,
                json!({"network_id": n1.id, "port_security_enabled": false}),
            ),
            (&n2, json!({"network_id": n2.id})),
        ];
        let mut first_ip = None;
        for (i, (_, body)) in ports.iter().enumerate() {
            let req = PortCreate::from_json(body, &ctx).expect("port request");
            let (c, p) = topo.create_port(&ctx, req).expect("create port");
            topo.apply(&c);
            first_ip.get_or_insert(p.fixed_ips[0].ip_address);
            bindings.bind(p.id, i as u32 + 1);
        }
        // A static route via the first port.
        let nh = first_ip.expect("a port with an address");
        let req = RouterUpdate::from_json(
            &json!({"routes": [{"destination": "192.168.0.0/16", "nexthop": nh.to_string()}]}),
        )
        .expect("route request");
        let (c, _) = topo
            .update_router(&ctx, &r.id.to_string(), req)
            .expect("add route");
        topo.apply(&c);
        let mut flows = Vec::new();
        for mode in [L3Mode::Proactive, L3Mode::Reactive] {
            let mut compiler = Compiler::new(CompileConfig {
                l3_mode: mode,
                ..CompileConfig::default()
            });
            compiler.full(&topo, &bindings).expect("compile");
            flows.extend(compiler.flows().cloned());
        }
        flows
    }
}
