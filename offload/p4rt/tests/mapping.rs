//! Every flow of a compiled demo topology maps onto the real wyvern.p4info.txtpb, by name,
//! with canonical values; what cannot map fails with an error that names the culprit.

mod common;

use std::collections::BTreeSet;

use p4runtime_proto::p4::config::v1::P4Info;
use p4runtime_proto::p4::v1::{field_match::FieldMatchType, replica, table_action};
use wyvern_model::MacAddr;
use wyvern_offload_p4rt::index::MatchKind;
use wyvern_offload_p4rt::mapping::{key_name, p4_action, table_name, CONTROL};
use wyvern_offload_p4rt::{IndexError, MapError, Mapper, P4InfoIndex};
use wyvern_pipeline::ir::{Action, FloodGroup, Flow, Match, NetKey, Owner, PortKey};
use wyvern_pipeline::{L3Mode, Stage};

fn mapper_for(info: &P4Info) -> Mapper {
    Mapper::new(P4InfoIndex::new(info).expect("index"))
}

#[test]
fn every_flow_of_every_stage_maps_by_name() {
    let info = common::p4info();
    let mapper = mapper_for(&info);
    let ix = mapper.index();
    let mut stages = BTreeSet::new();
    let mut actions = BTreeSet::new();
    let mut total = 0;
    for mode in [L3Mode::Proactive, L3Mode::Reactive] {
        let (flows, groups) = common::compiled(mode);
        assert!(flows.len() > 30, "{} flows", flows.len());
        for flow in &flows {
            let e = mapper.table_entry(flow).unwrap_or_else(|e| panic!("{e}"));
            total += 1;
            let table = ix.table_by_id(e.table_id).expect("table id from the index");
            assert_eq!(table.name, table_name(flow.stage), "[{flow}]");
            stages.insert(flow.stage);
            // Tables with a ternary key take the IR's priority; exact-only ones none.
            let want = if table.needs_priority() {
                i32::from(flow.priority)
            } else {
                0
            };
            assert_eq!(e.priority, want, "[{flow}]");
            assert_eq!(table.needs_priority(), flow.stage != Stage::Egress);

            let Some(table_action::Type::Action(a)) =
                e.action.as_ref().and_then(|a| a.r#type.clone())
            else {
                panic!("[{flow}]: no direct action");
            };
            let action = ix.action_by_id(a.action_id).expect("action id");
            let (want, args) = p4_action(flow).expect("expressible");
            assert_eq!(action.name, format!("{CONTROL}.{want}"), "[{flow}]");
            actions.insert(want);
            assert_eq!(a.params.len(), args.len(), "[{flow}]");
            for ((name, v), p) in args.iter().zip(&a.params) {
                let info = action.param(name).expect("param");
                assert_eq!(p.param_id, info.id);
                assert_canonical(&p.value, *v, &format!("[{flow}] {name}"));
            }

            // One field match per IR match that is not a wildcard; exact keys all present.
            for m in &e.r#match {
                let f = table.field_by_id(m.field_id).expect("field id");
                let ir = flow
                    .matches
                    .iter()
                    .find(|x| key_name(x.kind()) == f.name)
                    .unwrap_or_else(|| panic!("[{flow}]: {} not in the flow", f.name));
                match (&m.field_match_type, f.kind) {
                    (Some(FieldMatchType::Exact(x)), MatchKind::Exact) => {
                        assert!(x.value.len() == 1 || x.value[0] != 0, "[{flow}] {ir:?}")
                    }
                    (Some(FieldMatchType::Ternary(t)), MatchKind::Ternary) => {
                        assert!(t.mask.len() == 1 || t.mask[0] != 0, "[{flow}] {ir:?}");
                        assert!(t.value.len() <= t.mask.len(), "value within the mask");
                    }
                    other => panic!("[{flow}]: {other:?} for {}", f.name),
                }
            }
            for f in &table.fields {
                if f.kind == MatchKind::Exact {
                    assert!(e.r#match.iter().any(|m| m.field_id == f.id), "[{flow}]");
                }
            }
        }
        for g in &groups {
            let m = mapper.multicast_group(g).expect("group maps");
            assert_eq!(m.multicast_group_id, g.network.0);
            #[allow(deprecated)]
            let ports: Vec<u32> = m
                .replicas
                .iter()
                .map(|r| match r.port_kind {
                    Some(replica::PortKind::EgressPort(p)) => p,
                    _ => panic!("egress_port replica"),
                })
                .collect();
            assert_eq!(ports, g.ports);
        }
        assert!(!groups.is_empty(), "the demo has flood groups");
    }
    assert_eq!(
        stages,
        Stage::ALL.into_iter().collect(),
        "every stage mapped"
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
        assert!(actions.contains(a), "no flow used {a}");
    }
    assert!(total > 60);
}

fn assert_canonical(bytes: &[u8], v: u128, what: &str) {
    assert!(
        !bytes.is_empty() && (bytes.len() == 1 || bytes[0] != 0),
        "{what}: {bytes:?} not canonical"
    );
    let got = bytes
        .iter()
        .fold(0u128, |acc, b| (acc << 8) | u128::from(*b));
    assert_eq!(got, v, "{what}");
}

fn flow(stage: Stage) -> Flow {
    Flow::new(stage, 100, Owner::Static)
}

#[test]
fn masks_prefixes_and_wildcards() {
    let mapper = mapper_for(&common::p4info());
    let f = flow(Stage::L2Lookup)
        .m(Match::Network(NetKey(5)))
        .m(Match::EthDstMulticast)
        .a(Action::Flood(NetKey(5)));
    let e = mapper.table_entry(&f).expect("maps");
    assert_eq!(e.r#match.len(), 2);
    assert_eq!(
        e.r#match[0].field_match_type,
        Some(FieldMatchType::Exact(
            p4runtime_proto::p4::v1::field_match::Exact { value: vec![5] }
        ))
    );
    let Some(FieldMatchType::Ternary(t)) = &e.r#match[1].field_match_type else {
        panic!("ternary")
    };
    assert_eq!(t.value, vec![1, 0, 0, 0, 0, 0]);
    assert_eq!(t.mask, vec![1, 0, 0, 0, 0, 0]);

    let f = flow(Stage::L3Lookup)
        .m(Match::Router(wyvern_pipeline::RouterKey(1)))
        .m(Match::Ipv4Dst("10.0.2.77/24".parse().expect("net")))
        .m(Match::Ipv4Src("0.0.0.0/0".parse().expect("net")))
        .a(Action::Punt(wyvern_pipeline::PuntReason::L3Miss));
    // Ipv4Src is not a key of l3_lookup: named in the error.
    let err = mapper.table_entry(&f).unwrap_err();
    assert!(
        matches!(&err, MapError::Index { source: IndexError::UnknownField { table, field }, .. }
        if table == "MyIngress.l3_lookup" && field == "hdr.ipv4.srcAddr"),
        "{err}"
    );

    let f = flow(Stage::PortSecurity)
        .m(Match::InPort(PortKey(3)))
        .m(Match::Ipv4Dst("10.0.2.77/24".parse().expect("net")))
        .m(Match::Ipv4Src("0.0.0.0/0".parse().expect("net")))
        .a(Action::Goto(Stage::Dispatch));
    let e = mapper.table_entry(&f).expect("maps");
    // The /0 is a wildcard: left out. The /24 is value & mask.
    assert_eq!(e.r#match.len(), 2, "{e:?}");
    let Some(FieldMatchType::Ternary(t)) = &e.r#match[1].field_match_type else {
        panic!("ternary")
    };
    assert_eq!(t.value, vec![10, 0, 2, 0]);
    assert_eq!(t.mask, vec![0xff, 0xff, 0xff, 0]);
}

#[test]
fn values_wider_than_their_field_are_typed_errors() {
    let mapper = mapper_for(&common::p4info());
    let f = flow(Stage::Egress)
        .m(Match::OutPort(PortKey(1)))
        .a(Action::Output(600));
    let err = mapper.table_entry(&f).unwrap_err();
    assert!(
        matches!(&err, MapError::Width { source, .. } if source.bitwidth == 9 && source.what == "MyIngress.output(port)"),
        "{err}"
    );
    let f = flow(Stage::Classify)
        .m(Match::PhysInPort(512))
        .a(Action::Goto(Stage::L2Lookup));
    let err = mapper.table_entry(&f).unwrap_err();
    assert!(
        matches!(&err, MapError::Width { source, .. } if source.what.contains("meta.phys_in_port")),
        "{err}"
    );
    let g = FloodGroup {
        network: NetKey(70_000),
        ports: vec![1],
        owner: Owner::Static,
    };
    assert!(matches!(
        mapper.multicast_group(&g),
        Err(MapError::Width { .. })
    ));
    let f = flow(Stage::Egress).a(Action::Output(1));
    assert!(
        matches!(mapper.table_entry(&f), Err(MapError::MissingExactKey { field, .. }) if field == "meta.outport")
    );
    let f = flow(Stage::Egress)
        .m(Match::OutPort(PortKey(1)))
        .a(Action::DecTtl);
    assert!(matches!(
        mapper.table_entry(&f),
        Err(MapError::NoP4Action { .. })
    ));
    let f = Flow::new(Stage::L2Lookup, 0, Owner::Static)
        .m(Match::Network(NetKey(1)))
        .a(Action::Flood(NetKey(1)));
    assert!(matches!(
        mapper.table_entry(&f),
        Err(MapError::ZeroPriority { .. })
    ));
    let mac = MacAddr([2, 0, 0, 0, 0, 1]);
    let f = flow(Stage::Egress)
        .m(Match::OutPort(PortKey(1)))
        .a(Action::ArpReply { mac });
    assert!(matches!(
        mapper.table_entry(&f),
        Err(MapError::Index {
            source: IndexError::ActionNotInTable { .. },
            ..
        })
    ));
}

/// Renumbers every id of a P4Info (consistently) as another p4c might.
fn renumbered(mut info: P4Info) -> P4Info {
    let re = |id: u32| id ^ 0x0000_5a5a;
    for t in &mut info.tables {
        let p = t.preamble.as_mut().expect("preamble");
        p.id = re(p.id);
        for r in &mut t.action_refs {
            r.id = re(r.id);
        }
        t.const_default_action_id = re(t.const_default_action_id);
        for d in &mut t.direct_resource_ids {
            *d = re(*d);
        }
        t.match_fields.reverse();
        for (i, m) in t.match_fields.iter_mut().enumerate() {
            m.id = 100 + i as u32;
        }
    }
    for a in &mut info.actions {
        let p = a.preamble.as_mut().expect("preamble");
        p.id = re(p.id);
        for (i, prm) in a.params.iter_mut().enumerate() {
            prm.id = 50 + i as u32;
        }
    }
    for d in &mut info.direct_counters {
        let p = d.preamble.as_mut().expect("preamble");
        p.id = re(p.id);
        d.direct_table_id = re(d.direct_table_id);
    }
    info
}

#[test]
fn ids_come_from_the_p4info_not_from_code() {
    let info = common::p4info();
    let other = renumbered(info.clone());
    let a = mapper_for(&info);
    let b = mapper_for(&other);
    let (flows, _) = common::compiled(L3Mode::Proactive);
    for f in &flows {
        let ea = a.table_entry(f).expect("maps");
        let eb = b.table_entry(f).expect("maps on renumbered P4Info");
        assert_ne!(ea.table_id, eb.table_id);
        assert_eq!(
            a.index().table_by_id(ea.table_id).map(|t| &t.name),
            b.index().table_by_id(eb.table_id).map(|t| &t.name)
        );
        // Same values, under other field ids.
        assert_eq!(ea.r#match.len(), eb.r#match.len());
        assert!(eb.r#match.iter().all(|m| m.field_id >= 100));
    }
    let cls = b.index().table("MyIngress.classify").expect("classify");
    assert!(
        cls.direct_counter_id.is_some(),
        "direct counter found through the renumbered table id"
    );
}

#[test]
fn missing_objects_are_named() {
    let mut info = common::p4info();
    for t in &mut info.tables {
        let p = t.preamble.as_mut().expect("preamble");
        if p.name == "MyIngress.egress" {
            p.name = "MyIngress.egress_v2".into();
        }
    }
    for a in &mut info.actions {
        let p = a.preamble.as_mut().expect("preamble");
        if p.name == "MyIngress.route" {
            p.name = "MyIngress.route_v2".into();
        }
        for prm in &mut a.params {
            if prm.name == "mac" {
                prm.name = "macaddr".into();
            }
        }
    }
    let m = mapper_for(&info);
    let (flows, _) = common::compiled(L3Mode::Proactive);
    let errors: Vec<MapError> = flows
        .iter()
        .filter_map(|f| m.table_entry(f).err())
        .collect();
    let has = |want: &IndexError| {
        errors
            .iter()
            .any(|e| matches!(e, MapError::Index { source, .. } if source == want))
    };
    assert!(has(&IndexError::UnknownTable("MyIngress.egress".into())));
    assert!(has(&IndexError::UnknownAction("MyIngress.route".into())));
    assert!(has(&IndexError::UnknownParam {
        action: "MyIngress.arp_reply".into(),
        param: "mac".into()
    }));
}

#[test]
fn two_flows_on_one_key_are_an_error_not_an_overwrite() {
    let mapper = mapper_for(&common::p4info());
    let a = flow(Stage::Egress)
        .m(Match::OutPort(PortKey(4)))
        .a(Action::Output(4));
    let b = flow(Stage::Egress)
        .m(Match::OutPort(PortKey(4)))
        .a(Action::Output(5));
    let (d, errors) = wyvern_offload_p4rt::Desired::build(&mapper, &[a, b], &[]);
    assert_eq!(d.entry_count(), 1);
    assert!(
        matches!(errors.as_slice(), [MapError::DuplicateEntry { flow, other }] if flow.contains("output(5)") && other.contains("output(4)")),
        "{errors:?}"
    );
}

#[test]
fn entries_read_back_by_name() {
    let mapper = mapper_for(&common::p4info());
    let mac = MacAddr([0xfa, 0x16, 0x3e, 0, 0, 1]);
    let cases = [
        (
            flow(Stage::Egress).m(Match::OutPort(PortKey(3))).a(Action::Output(3)),
            "MyIngress.egress meta.outport=0x03 -> MyIngress.output(port=0x03)",
        ),
        (
            flow(Stage::L2Lookup)
                .m(Match::Network(NetKey(5)))
                .m(Match::EthDstMulticast)
                .a(Action::Flood(NetKey(5))),
            "MyIngress.l2_lookup meta.network=0x05 hdr.ethernet.dstAddr=0x010000000000&&&0x010000000000 prio=100 -> MyIngress.flood(group=0x05)",
        ),
        (
            Flow::new(Stage::L3Lookup, 124, Owner::Static)
                .m(Match::Router(wyvern_pipeline::RouterKey(1)))
                .m(Match::EthType(0x0800))
                .m(Match::Ipv4Dst("10.0.2.0/24".parse().expect("net")))
                .a(Action::DecTtl)
                .a(Action::SetEthSrc(mac))
                .a(Action::SetEthDst(MacAddr([2, 0, 0, 0, 0, 9])))
                .a(Action::SetNetwork(NetKey(2)))
                .a(Action::SetOutPort(PortKey(7)))
                .a(Action::Goto(Stage::Egress)),
            "MyIngress.l3_lookup meta.router=0x01 hdr.ethernet.etherType=0x0800&&&0xffff hdr.ipv4.dstAddr=0x0a000200&&&0xffffff00 prio=124 -> MyIngress.route(router_mac=0xfa163e000001, dst_mac=0x020000000009, network=0x02, outport=0x07)",
        ),
    ];
    for (f, want) in cases {
        let e = mapper.table_entry(&f).expect("maps");
        assert_eq!(mapper.describe(&e), want);
    }
}

#[test]
fn ir_actions_inverts_p4_action_for_every_compiled_flow() {
    use wyvern_offload_p4rt::mapping::ir_actions;
    let mut seen = BTreeSet::new();
    for mode in [L3Mode::Proactive, L3Mode::Reactive] {
        let (flows, _) = common::compiled(mode);
        for flow in &flows {
            let (name, args) = p4_action(flow).unwrap_or_else(|| panic!("[{flow}] maps"));
            let back = ir_actions(name, |n| {
                args.iter().find(|(a, _)| *a == n).map(|(_, v)| *v)
            });
            assert_eq!(back.as_deref(), Some(flow.actions.as_slice()), "[{flow}]");
            seen.insert(name);
        }
    }
    assert!(seen.len() >= 8, "{seen:?}");
    // No IR form, a missing argument, a value too wide for the IR: refused.
    assert_eq!(ir_actions("output_vxlan", |_| Some(1)), None);
    assert_eq!(ir_actions("output", |_| None), None);
    assert_eq!(ir_actions("arp_reply", |_| Some(1 << 48)), None);
    assert_eq!(ir_actions("punt", |_| Some(99)), None);
}
