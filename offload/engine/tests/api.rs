//! The entry-level API a P4Runtime target builds on: insert/modify/remove by key with the
//! spec's error cases, read back, counters, and the lookup structure each table gets.

use wyvern_engine::packet::encode;
use wyvern_engine::{DropCause, Engine, EngineError, Entry, FieldMatch, Out, TableKind, Verdict};
use wyvern_pipeline::interp::Packet;
use wyvern_pipeline::ir::{NetKey, PortKey};
use wyvern_pipeline::{Action, FieldKind as F, Stage};

mod common;
use common::{RMAC, VM1};

/// The shared tables in a fresh engine.
fn base() -> Engine {
    let mut e = Engine::new();
    common::base(&mut e);
    e
}

fn route(prio: u32, dst: &str, len: u32, out: u32) -> (Entry, Vec<FieldMatch>) {
    let ip: std::net::Ipv4Addr = dst.parse().unwrap();
    let key = vec![
        FieldMatch::exact(F::Router, 1),
        FieldMatch::exact(F::EthType, 0x0800),
        FieldMatch::prefix(F::Ipv4Dst, u32::from(ip).into(), len),
    ];
    (
        Entry::new(
            prio,
            key.clone(),
            vec![
                Action::DecTtl,
                Action::SetEthSrc(RMAC),
                Action::SetOutPort(PortKey(out)),
                Action::Goto(Stage::Egress),
            ],
        ),
        key,
    )
}

fn send(e: &mut Engine, dst: &str) -> Verdict {
    let p = Packet::ipv4(
        1,
        VM1,
        RMAC,
        "10.0.0.5".parse().unwrap(),
        dst.parse().unwrap(),
        64,
    );
    let mut f = encode(&p, 0);
    e.process(&mut f, 1)
}

#[test]
fn longest_prefix_wins_and_removal_falls_back() {
    let mut e = base();
    let (r8, k8) = route(108, "10.0.0.0", 8, 2);
    let (r24, k24) = route(124, "10.1.2.0", 24, 3);
    let (r32, _) = route(132, "10.1.2.3", 32, 4);
    let id8 = e.insert(Stage::L3Lookup, r8).unwrap();
    e.insert(Stage::L3Lookup, r24).unwrap();
    e.insert(Stage::L3Lookup, r32).unwrap();
    assert_eq!(e.shape(Stage::L3Lookup).kind, TableKind::Lpm);
    assert_eq!(e.shape(Stage::L3Lookup).subtables, 3);
    assert_eq!(e.shape(Stage::Egress).kind, TableKind::Exact);
    assert_eq!(e.shape(Stage::Classify).kind, TableKind::Exact);
    // A multicast-bit entry beside exact MACs is ternary, not a prefix.
    e.insert(
        Stage::L2Lookup,
        Entry::new(
            50,
            vec![
                FieldMatch::exact(F::Network, 1),
                FieldMatch::ternary(F::EthDst, 1 << 40, 1 << 40),
            ],
            vec![Action::Flood(NetKey(1))],
        ),
    )
    .unwrap();
    assert_eq!(e.shape(Stage::L2Lookup).kind, TableKind::Ternary);
    assert_eq!(e.shape(Stage::Dhcp).kind, TableKind::Empty);
    assert_eq!(send(&mut e, "10.1.2.3"), Verdict::Output(Out::Port(4)));
    assert_eq!(send(&mut e, "10.1.2.4"), Verdict::Output(Out::Port(3)));
    assert_eq!(send(&mut e, "10.9.9.9"), Verdict::Output(Out::Port(2)));
    assert_eq!(
        send(&mut e, "11.0.0.1"),
        Verdict::Drop {
            stage: Stage::L3Lookup,
            cause: DropCause::Miss
        }
    );
    // Removal by key (values need not be pre-masked, order does not matter).
    let mut messy = k24.clone();
    messy.reverse();
    messy[0] = FieldMatch {
        value: 0x0a01_02ff,
        ..messy[0]
    };
    let removed = e.remove(Stage::L3Lookup, 124, &messy).unwrap();
    assert_eq!(removed.priority, 124);
    assert_eq!(send(&mut e, "10.1.2.4"), Verdict::Output(Out::Port(2)));
    assert_eq!(
        e.remove(Stage::L3Lookup, 124, &k24),
        Err(EngineError::NotFound {
            stage: Stage::L3Lookup,
            priority: 124
        })
    );
    // Counters are per entry and read back with the entry.
    let c = e.counters(id8).unwrap();
    assert_eq!(c.packets, 2);
    let read: Vec<_> = e
        .entries(Stage::L3Lookup)
        .map(|r| r.entry.priority)
        .collect();
    assert_eq!(read.len(), 2);
    e.remove(Stage::L3Lookup, 108, &k8).unwrap();
    assert!(e.counters(id8).is_none(), "a removed entry's id goes stale");
    assert!(matches!(e.remove_id(id8), Err(EngineError::StaleId { .. })));
}

#[test]
fn writes_are_checked_like_p4runtime_updates() {
    let mut e = base();
    let (r, k) = route(124, "10.1.2.0", 24, 3);
    e.insert(Stage::L3Lookup, r.clone()).unwrap();
    assert_eq!(
        e.insert(Stage::L3Lookup, r),
        Err(EngineError::AlreadyExists {
            stage: Stage::L3Lookup,
            priority: 124
        })
    );
    // Modify keeps the entry (and its counters), changes what it does.
    assert_eq!(send(&mut e, "10.1.2.9"), Verdict::Output(Out::Port(3)));
    let id = e
        .modify(
            Stage::L3Lookup,
            124,
            &k,
            vec![Action::SetOutPort(PortKey(4)), Action::Goto(Stage::Egress)],
        )
        .unwrap();
    assert_eq!(send(&mut e, "10.1.2.9"), Verdict::Output(Out::Port(4)));
    assert_eq!(e.counters(id).unwrap().packets, 2);
    assert!(matches!(
        e.insert(
            Stage::Egress,
            Entry::new(1, vec![FieldMatch::exact(F::EthDst, 1)], vec![])
        ),
        Err(EngineError::FieldNotInStage { .. })
    ));
    assert!(matches!(
        e.insert(
            Stage::Egress,
            Entry::new(
                1,
                vec![
                    FieldMatch::exact(F::OutPort, 9),
                    FieldMatch::exact(F::OutPort, 8)
                ],
                vec![]
            )
        ),
        Err(EngineError::DuplicateField { .. })
    ));
    assert!(matches!(
        e.insert(
            Stage::Egress,
            Entry::new(
                1,
                vec![FieldMatch {
                    field: F::OutPort,
                    value: 1 << 40,
                    mask: u64::MAX
                }],
                vec![]
            )
        ),
        Err(EngineError::ValueTooWide { .. })
    ));
    assert!(matches!(
        e.insert(
            Stage::L2Lookup,
            Entry::new(1, vec![], vec![Action::Goto(Stage::Classify)])
        ),
        Err(EngineError::GotoNotAllowed { .. })
    ));
    assert!(matches!(
        e.insert(
            Stage::Egress,
            Entry::new(1, vec![], vec![Action::Output(1), Action::DecTtl])
        ),
        Err(EngineError::TerminalNotLast { .. })
    ));
}

#[test]
fn equal_priorities_resolve_to_the_first_installed_and_empty_actions_drop() {
    let mut e = base();
    // Two overlapping ternary entries at one priority: the first one wins until removed.
    let a = vec![
        FieldMatch::exact(F::Router, 1),
        FieldMatch::prefix(F::Ipv4Dst, 0x0a00_0000, 8),
    ];
    let b = vec![
        FieldMatch::exact(F::Router, 1),
        FieldMatch::prefix(F::Ipv4Dst, 0x0a01_0000, 16),
    ];
    let to = |p: u32| vec![Action::SetOutPort(PortKey(p)), Action::Goto(Stage::Egress)];
    e.insert(Stage::L3Lookup, Entry::new(5, a.clone(), to(2)))
        .unwrap();
    e.insert(Stage::L3Lookup, Entry::new(5, b, to(3))).unwrap();
    assert_eq!(send(&mut e, "10.1.0.1"), Verdict::Output(Out::Port(2)));
    e.remove(Stage::L3Lookup, 5, &a).unwrap();
    assert_eq!(send(&mut e, "10.1.0.1"), Verdict::Output(Out::Port(3)));
    e.insert(
        Stage::L3Lookup,
        Entry::new(6, vec![FieldMatch::exact(F::Router, 1)], vec![]),
    )
    .unwrap();
    assert_eq!(e.shape(Stage::L3Lookup).kind, TableKind::Ternary);
    assert_eq!(e.shape(Stage::L3Lookup).subtables, 2);
    assert_eq!(
        send(&mut e, "10.1.0.1"),
        Verdict::Drop {
            stage: Stage::L3Lookup,
            cause: DropCause::Flow
        }
    );
}
