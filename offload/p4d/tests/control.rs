//! The P4Runtime back end (`wyvern-offload-p4rt`) against the real `wyvern-p4d` process
//! (control plane only, no DPDK): program + entries written and read back, restart writes
//! nothing, two controllers (higher election id primary, backup's writes refused, primary
//! gone -> backup takes over without a wipe), per-update errors, PacketOut through the
//! pipeline -> PacketIn with the punt's keys, direct counters.

#[path = "../../p4rt/tests/common/mod.rs"]
mod common;
mod harness;

use std::time::Duration;

use harness::P4d;
use p4runtime_proto::google::rpc::Code;
use p4runtime_proto::p4::v1::{self as p4, p4_runtime_client::P4RuntimeClient};
use wyvern_engine::packet::encode;
use wyvern_offload_p4rt::backend::per_update_errors;
use wyvern_offload_p4rt::mapping::table_entity;
use wyvern_offload_p4rt::{BackendError, Mastership, P4rtBackend, P4rtConfig, PacketIn, PacketOut};
use wyvern_pipeline::ir::{Action, FloodGroup, Flow, Match};
use wyvern_pipeline::{Interpreter, L3Mode, Packet, PuntReason, Stage};

const WAIT: Duration = Duration::from_secs(10);

fn config(election_id: u128) -> P4rtConfig {
    let mut c = P4rtConfig::new(1, election_id, common::p4info(), b"{}".to_vec());
    c.batch_size = 100;
    c
}

async fn connect(
    p4d: &P4d,
    election_id: u128,
) -> (P4rtBackend, tokio::sync::mpsc::Receiver<PacketIn>) {
    let (mut b, rx) = P4rtBackend::connect(&p4d.url(), config(election_id))
        .await
        .expect("connect");
    b.wait_for_mastership(WAIT).await.expect("arbitration");
    (b, rx)
}

fn demo() -> (Vec<Flow>, Vec<FloodGroup>) {
    common::compiled(L3Mode::Proactive)
}

/// Primary, program committed, demo written; returns the backend and its PacketIns.
async fn programmed(
    p4d: &P4d,
    flows: &[Flow],
    groups: &[FloodGroup],
) -> (P4rtBackend, tokio::sync::mpsc::Receiver<PacketIn>) {
    let (mut b, rx) = connect(p4d, 10).await;
    assert_eq!(b.mastership(), Mastership::Primary);
    b.ensure_pipeline().await.expect("pipeline");
    assert!(b.set_desired(flows, groups).is_empty());
    let r = b.sync().await.expect("sync");
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    assert_eq!(r.inserted, flows.len() + groups.len());
    (b, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_written_read_back_and_restart_writes_nothing() {
    let p4d = P4d::start(&[]).expect("wyvern-p4d");
    let (flows, groups) = demo();
    let (mut b, _rx) = programmed(&p4d, &flows, &groups).await;
    let read = b.read_all().await.expect("read");
    let tables = read
        .iter()
        .filter(|e| matches!(e.entity, Some(p4::entity::Entity::TableEntry(_))))
        .count();
    assert_eq!(tables, flows.len(), "every flow read back");
    assert_eq!(
        read.len() - tables,
        groups.len(),
        "every flood group read back"
    );

    // Each entry comes back byte for byte as written (canonical form).
    let mapper = b.mapper().clone();
    for f in &flows {
        let want = mapper.table_entry(f).expect("maps");
        let found = read.iter().any(|e| match &e.entity {
            Some(p4::entity::Entity::TableEntry(t)) => *t == want,
            _ => false,
        });
        assert!(found, "not read back: {}", mapper.describe(&want));
    }

    // A restarted controller: same program (no commit), Read + diff, zero updates.
    drop(b);
    let (mut b, _rx) = connect(&p4d, 10).await;
    assert_eq!(b.mastership(), Mastership::Primary);
    assert!(
        !b.ensure_pipeline().await.expect("pipeline"),
        "no re-commit"
    );
    b.set_desired(&flows, &groups);
    let r = b.sync().await.expect("sync after restart");
    assert!(r.read);
    assert_eq!((r.updates(), r.write_requests), (0, 0), "{r:?}");

    // One flow dropped from the desired state: exactly one delete, and it is gone.
    let gone = flows
        .iter()
        .position(|f| f.stage == Stage::Egress)
        .expect("an egress flow");
    let mut fewer = flows.clone();
    let removed = fewer.remove(gone);
    b.set_desired(&fewer, &groups);
    let r = b.sync().await.expect("sync");
    assert_eq!((r.deleted, r.inserted, r.modified), (1, 0, 0), "{r:?}");
    let want = mapper.table_entry(&removed).expect("maps");
    let after = b.read_all().await.expect("read");
    assert!(!after.iter().any(|e| match &e.entity {
        Some(p4::entity::Entity::TableEntry(t)) => *t == want,
        _ => false,
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_election_id_is_primary_backup_refused_then_takes_over() {
    let p4d = P4d::start(&[]).expect("wyvern-p4d");
    let (flows, groups) = demo();
    let (mut low, _rx1) = connect(&p4d, 5).await;
    assert_eq!(low.mastership(), Mastership::Primary, "alone: primary");
    let (mut high, _rx2) = connect(&p4d, 7).await;
    assert_eq!(high.mastership(), Mastership::Primary);
    // The first one is told it lost primary (spec 5.3: every change is announced).
    common::wait_until(10, "the demotion notice", || {
        low.mastership()
            == Mastership::Backup {
                primary_election_id: Some(7),
            }
    })
    .await;

    high.ensure_pipeline().await.expect("pipeline");
    high.set_desired(&flows, &groups);
    let r = high.sync().await.expect("primary writes");
    assert!(r.failures.is_empty());

    // The backup's writes are refused as a whole: PERMISSION_DENIED.
    low.set_desired(&flows[..1], &[]);
    match low.sync().await {
        Err(BackendError::Write { status, .. }) => {
            assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status}")
        }
        other => panic!("backup wrote: {other:?}"),
    }
    // ... and so is its pipeline.
    assert!(matches!(
        low.set_pipeline().await,
        Err(BackendError::SetPipeline(s)) if s.code() == tonic::Code::PermissionDenied
    ));

    // The primary goes away: the backup is promoted and converges without a wipe.
    drop(high);
    low.wait_until_primary(WAIT).await.expect("promoted");
    assert!(
        !low.ensure_pipeline().await.expect("pipeline"),
        "same program"
    );
    low.set_desired(&flows, &groups);
    let r = low.sync().await.expect("sync");
    assert!(r.read);
    assert_eq!(r.updates(), 0, "nothing rewritten: {r:?}");
    assert_eq!(
        low.read_all().await.expect("read").len(),
        flows.len() + groups.len()
    );
}

fn update(kind: p4::update::Type, e: p4::TableEntry) -> p4::Update {
    p4::Update {
        r#type: kind as i32,
        entity: Some(table_entity(e)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_update_errors_in_order() {
    let p4d = P4d::start(&[]).expect("wyvern-p4d");
    let (flows, groups) = demo();
    let (b, _rx) = programmed(&p4d, &flows, &groups).await;
    let mapper = b.mapper();
    let egress: Vec<&Flow> = flows.iter().filter(|f| f.stage == Stage::Egress).collect();
    let existing = mapper.table_entry(egress[0]).expect("maps");
    let mut missing = existing.clone();
    if let Some(p4::field_match::FieldMatchType::Exact(x)) =
        &mut missing.r#match[0].field_match_type
    {
        x.value = vec![0x7f, 0xff];
    }
    let mut bad_field = existing.clone();
    bad_field.r#match[0].field_id = 999;
    let mut zero_priority = mapper
        .table_entry(
            flows
                .iter()
                .find(|f| f.stage == Stage::L2Lookup)
                .expect("l2"),
        )
        .expect("maps");
    zero_priority.priority = 0;
    let fresh = missing.clone();

    let updates = vec![
        update(p4::update::Type::Insert, existing.clone()),
        update(p4::update::Type::Delete, missing.clone()),
        update(p4::update::Type::Insert, bad_field),
        update(p4::update::Type::Insert, zero_priority),
        update(p4::update::Type::Modify, missing.clone()),
        update(p4::update::Type::Insert, fresh),
    ];
    let mut client = P4RuntimeClient::connect(p4d.url()).await.expect("client");
    let status = client
        .write(p4::WriteRequest {
            device_id: 1,
            election_id: Some(p4::Uint128 { high: 0, low: 10 }),
            updates: updates.clone(),
            atomicity: p4::write_request::Atomicity::ContinueOnError as i32,
            ..Default::default()
        })
        .await
        .expect_err("some updates fail");
    let errors = per_update_errors(&status, updates.len()).expect("one p4.v1.Error per update");
    let codes: Vec<i32> = errors.iter().map(|e| e.canonical_code).collect();
    assert_eq!(
        codes,
        vec![
            Code::AlreadyExists as i32,
            Code::NotFound as i32,
            Code::InvalidArgument as i32,
            Code::InvalidArgument as i32,
            Code::NotFound as i32,
            Code::Ok as i32,
        ],
        "{errors:?}"
    );
    assert!(errors[2].message.contains("999"), "{}", errors[2].message);

    // The OK one is in; a second insert of it now collides.
    let again = client
        .write(p4::WriteRequest {
            device_id: 1,
            election_id: Some(p4::Uint128 { high: 0, low: 10 }),
            updates: vec![update(p4::update::Type::Insert, missing)],
            atomicity: p4::write_request::Atomicity::ContinueOnError as i32,
            ..Default::default()
        })
        .await
        .expect_err("exists");
    let e = per_update_errors(&again, 1).expect("details");
    assert_eq!(e[0].canonical_code, Code::AlreadyExists as i32);

    // A writer that is not the primary (wrong election id) is refused as a whole.
    let denied = client
        .write(p4::WriteRequest {
            device_id: 1,
            election_id: Some(p4::Uint128 { high: 0, low: 3 }),
            updates: vec![update(p4::update::Type::Delete, existing)],
            atomicity: p4::write_request::Atomicity::ContinueOnError as i32,
            ..Default::default()
        })
        .await
        .expect_err("not primary");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packet_out_through_the_pipeline_comes_back_as_packet_in_with_counters() {
    let p4d = P4d::start(&[]).expect("wyvern-p4d");
    let (flows, groups) = demo();
    let (b, mut rx) = programmed(&p4d, &flows, &groups).await;

    // A DHCP DISCOVER from switch port 2 (port security off there): the engine punts it.
    let mac = wyvern_model::MacAddr([0x02, 0, 0, 0, 0, 0x42]);
    let pkt = Packet::dhcp_discover(2, mac);
    let frame = encode(&pkt, 300);
    // What the IR interpreter says must happen to it.
    let interp = Interpreter::new(&flows, &groups);
    let want = interp.run(pkt);
    let inport = flows
        .iter()
        .find(|f| f.stage == Stage::Classify && f.matches.contains(&Match::PhysInPort(2)))
        .and_then(|f| {
            f.actions.iter().find_map(|a| match a {
                Action::SetInPort(k) => Some(*k),
                _ => None,
            })
        })
        .expect("port 2 is classified");

    b.send_packet(PacketOut::through_pipeline(2, frame.clone()))
        .await
        .expect("packet out");
    let pin = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a PacketIn in time")
        .expect("stream open");
    assert_eq!(pin.payload, frame, "the frame as punted");
    let punt = pin.punt().expect("packet_in fields by name");
    assert_eq!(punt.reason, PuntReason::Dhcp);
    assert_eq!(punt.ingress_port, 2);
    assert_eq!(punt.inport, inport);
    assert!(
        format!("{:?}", want.verdict).contains("Punt"),
        "the interpreter punts too: {:?}",
        want.verdict
    );

    // The classify entry of port 2 counted it (direct counter).
    let classify = b
        .mapper()
        .table_entry(
            flows
                .iter()
                .find(|f| f.stage == Stage::Classify && f.matches.contains(&Match::PhysInPort(2)))
                .expect("flow"),
        )
        .expect("maps");
    let mut client = P4RuntimeClient::connect(p4d.url()).await.expect("client");
    let mut req_entry = classify.clone();
    req_entry.action = None;
    req_entry.counter_data = Some(p4::CounterData::default());
    let mut stream = client
        .read(p4::ReadRequest {
            device_id: 1,
            entities: vec![
                table_entity(req_entry),
                p4::Entity {
                    entity: Some(p4::entity::Entity::DirectCounterEntry(
                        p4::DirectCounterEntry {
                            table_entry: Some(p4::TableEntry {
                                table_id: classify.table_id,
                                ..Default::default()
                            }),
                            data: None,
                        },
                    )),
                },
            ],
            ..Default::default()
        })
        .await
        .expect("read")
        .into_inner();
    let resp = stream
        .message()
        .await
        .expect("read ok")
        .expect("a response");
    let counted: Vec<i64> = resp
        .entities
        .iter()
        .filter_map(|e| match &e.entity {
            Some(p4::entity::Entity::TableEntry(t)) => t.counter_data.map(|c| c.packet_count),
            _ => None,
        })
        .collect();
    assert_eq!(counted, vec![1], "one entry selected, one packet");
    let direct: i64 = resp
        .entities
        .iter()
        .filter_map(|e| match &e.entity {
            Some(p4::entity::Entity::DirectCounterEntry(d)) => d.data.map(|c| c.packet_count),
            _ => None,
        })
        .sum();
    assert_eq!(direct, 1, "the classify table counted one packet in all");
}
