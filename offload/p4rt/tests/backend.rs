//! The back end against `FakeP4rtTarget` over real gRPC on loopback: arbitration, initial
//! sync, restart (Read + diff writes nothing when nothing changed), batching, per-update
//! errors reported with their flow, packet I/O.

mod common;

use std::time::Duration;

use common::fake::FakeP4rtTarget;
use p4runtime_proto::p4::v1 as p4;
use wyvern_offload_p4rt::{Mastership, Origin, P4rtBackend, P4rtConfig, PacketOut, SyncReport};
use wyvern_pipeline::ir::{Action, FloodGroup, Flow, Match, NetKey, Owner, PortKey, PuntReason};
use wyvern_pipeline::{L3Mode, Stage};

const DEVICE: u64 = 1;
const WAIT: Duration = Duration::from_secs(10);

fn config(election_id: u128, batch_size: usize) -> P4rtConfig {
    let mut c = P4rtConfig::new(DEVICE, election_id, common::p4info(), b"{}".to_vec());
    c.batch_size = batch_size;
    c
}

async fn primary(
    target: &FakeP4rtTarget,
    election_id: u128,
    batch_size: usize,
) -> (
    P4rtBackend,
    tokio::sync::mpsc::Receiver<wyvern_offload_p4rt::PacketIn>,
) {
    let (mut b, rx) = P4rtBackend::connect(&target.url(), config(election_id, batch_size))
        .await
        .expect("connect");
    assert_eq!(
        b.wait_for_mastership(WAIT).await.expect("arbitration"),
        Mastership::Primary
    );
    (b, rx)
}

fn demo() -> (Vec<Flow>, Vec<FloodGroup>) {
    common::compiled(L3Mode::Proactive)
}

async fn no_controllers(target: &FakeP4rtTarget) {
    common::wait_until(10, "the target to see the controller leave", || {
        target.state().primary().is_none()
    })
    .await;
}

#[tokio::test]
async fn initial_sync_then_restart_writes_nothing() {
    let target = FakeP4rtTarget::start(DEVICE).await.expect("fake target");
    let (flows, groups) = demo();
    let (mut b, _pin) = primary(&target, 1, 50).await;
    assert!(
        b.ensure_pipeline().await.expect("pipeline"),
        "no program yet: commit"
    );
    assert_eq!(target.state().pipeline_commits, 1);
    assert!(b.set_desired(&flows, &groups).is_empty(), "everything maps");
    let want = b.desired_entries();
    assert_eq!(want, flows.len(), "one entry per flow");

    let r = b.sync().await.expect("sync");
    assert!(r.read, "first sync reads");
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    assert_eq!(r.inserted, want + groups.len());
    assert_eq!((r.modified, r.deleted), (0, 0));
    // Batches of 50.
    assert_eq!(r.write_requests, (want + groups.len()).div_ceil(50));
    {
        let st = target.state();
        assert_eq!(st.entry_count(), want);
        assert_eq!(st.group_count(), groups.len());
        assert_eq!(st.write_requests as usize, r.write_requests);
    }
    // Nothing changed: a second sync (from the installed copy) writes nothing.
    let again = b.sync().await.expect("sync");
    assert_eq!(
        (again.read, again.updates(), again.write_requests),
        (false, 0, 0)
    );

    // Restart: a new connection reads the target and finds nothing to do.
    drop(b);
    no_controllers(&target).await;
    let (writes, updates) = {
        let st = target.state();
        (st.write_requests, st.write_updates)
    };
    let (mut b, _pin) = primary(&target, 1, 50).await;
    assert!(
        !b.ensure_pipeline().await.expect("pipeline"),
        "same program: no commit"
    );
    assert_eq!(target.state().pipeline_commits, 1);
    b.set_desired(&flows, &groups);
    let r = b.sync().await.expect("sync after restart");
    assert_eq!(
        r,
        SyncReport {
            read: true,
            ..SyncReport::default()
        }
    );
    {
        let st = target.state();
        assert_eq!(
            (st.write_requests, st.write_updates),
            (writes, updates),
            "zero writes"
        );
        assert_eq!(st.entry_count(), want, "nothing wiped");
    }

    // Restart with one flow gone and one changed: exactly one delete and one modify.
    drop(b);
    no_controllers(&target).await;
    let mut changed = flows.clone();
    let gone = changed.remove(0);
    let i = changed
        .iter()
        .position(|f| matches!(f.actions.as_slice(), [Action::Output(_)]))
        .expect("an egress flow");
    changed[i].actions = vec![Action::Output(200)];
    let (mut b, _pin) = primary(&target, 1, 50).await;
    b.set_desired(&changed, &groups);
    let r = b.sync().await.expect("sync");
    assert_eq!((r.inserted, r.modified, r.deleted), (0, 1, 1), "{r:?}");
    assert_eq!(target.state().write_updates, updates + 2);
    assert_eq!(target.state().entry_count(), want - 1);
    let e = b.mapper().table_entry(&gone).expect("maps");
    assert!(!target
        .state()
        .entries()
        .any(|x| x.r#match == e.r#match && x.table_id == e.table_id && x.priority == e.priority));
}

#[tokio::test]
async fn arbitration_primary_backup_and_takeover_without_wipe() {
    let target = FakeP4rtTarget::start(DEVICE).await.expect("fake target");
    let (flows, groups) = demo();
    let (mut low, _) = P4rtBackend::connect(&target.url(), config(10, 100))
        .await
        .expect("connect low");
    assert_eq!(
        low.wait_for_mastership(WAIT).await.expect("arb"),
        Mastership::Primary
    );
    let (mut high, _) = P4rtBackend::connect(&target.url(), config(20, 100))
        .await
        .expect("connect high");
    assert_eq!(
        high.wait_for_mastership(WAIT).await.expect("arb"),
        Mastership::Primary
    );
    // The first controller is told it lost primary to election id 20.
    common::wait_until(10, "low to become backup", || {
        low.mastership()
            == Mastership::Backup {
                primary_election_id: Some(20),
            }
    })
    .await;

    high.set_pipeline().await.expect("pipeline");
    high.set_desired(&flows, &groups);
    let r = high.sync().await.expect("primary sync");
    assert!(r.failures.is_empty() && r.inserted > 0);
    let updates = target.state().write_updates;

    // The backup may read but not write.
    low.set_desired(&flows[..flows.len() - 1], &groups);
    let err = low.sync().await.expect_err("a backup's write is refused");
    assert!(
        matches!(&err, wyvern_offload_p4rt::BackendError::Write { status, .. } if status.code() == tonic::Code::PermissionDenied),
        "{err}"
    );
    assert!(
        low.set_pipeline().await.is_err(),
        "a backup cannot set the pipeline"
    );
    assert_eq!(target.state().write_updates, updates);

    // The primary goes away: the backup takes over and converges with only its own change.
    drop(high);
    low.wait_until_primary(WAIT).await.expect("takeover");
    low.set_desired(&flows, &groups);
    let r = low.sync().await.expect("sync after takeover");
    assert!(r.read);
    assert_eq!(r.updates(), 0, "nothing to change, nothing wiped: {r:?}");
    assert_eq!(target.state().write_updates, updates);
    assert_eq!(target.state().entry_count(), flows.len());

    // A reused election id is refused by the target: the stream ends.
    let (mut dup, _) = P4rtBackend::connect(&target.url(), config(10, 100))
        .await
        .expect("connect dup");
    let m = dup.wait_for_mastership(WAIT).await;
    assert!(matches!(m, Ok(Mastership::Disconnected) | Err(_)), "{m:?}");
}

#[tokio::test]
async fn refused_updates_are_reported_with_their_flow_and_retried() {
    let target = FakeP4rtTarget::start(DEVICE).await.expect("fake target");
    let (mut flows, groups) = demo();
    let (mut b, _) = primary(&target, 7, 1000).await;
    b.set_pipeline().await.expect("pipeline");
    b.set_desired(&flows, &groups);
    b.sync().await.expect("sync");

    // Drift behind the controller's back: one entry vanishes, one appears.
    let i = flows
        .iter()
        .position(|f| f.stage == Stage::Egress)
        .expect("an egress flow");
    let vanished = b.mapper().table_entry(&flows[i]).expect("maps");
    assert!(target.state().remove_entry(&vanished));
    let extra = Flow::new(Stage::Egress, 100, Owner::Static)
        .m(Match::OutPort(PortKey(999)))
        .a(Action::Output(9));
    target
        .state()
        .insert_entry(b.mapper().table_entry(&extra).expect("maps"));

    // Now the controller modifies the vanished one and inserts the extra one.
    flows[i].actions = vec![Action::Output(77)];
    let modified = flows[i].clone();
    flows.push(extra.clone());
    let l3 = flows
        .iter()
        .position(|f| f.stage == Stage::L3Lookup)
        .expect("an l3 flow");
    flows.remove(l3);
    b.set_desired(&flows, &groups);
    let r = b.sync().await.expect("sync");
    assert!(
        !r.read,
        "the installed copy is trusted until something fails"
    );
    assert_eq!(r.write_requests, 1, "one batch");
    assert_eq!(r.deleted, 1, "the other update of the batch went through");
    assert_eq!(r.failures.len(), 2, "{:?}", r.failures);
    let by_flow = |f: &Flow| {
        r.failures
            .iter()
            .find(|x| x.origin == Origin::Flow(f.clone()))
            .unwrap_or_else(|| panic!("no failure reported for [{f}]"))
    };
    let m = by_flow(&modified);
    assert_eq!(
        (m.code, m.kind),
        (tonic::Code::NotFound, p4::update::Type::Modify)
    );
    let x = by_flow(&extra);
    assert_eq!(
        (x.code, x.kind),
        (tonic::Code::AlreadyExists, p4::update::Type::Insert)
    );

    // The next sync reads again and converges: the vanished entry is inserted.
    let r = b.sync().await.expect("sync");
    assert!(r.read && r.failures.is_empty(), "{r:?}");
    assert_eq!((r.inserted, r.modified, r.deleted), (1, 0, 0));
    let r = b.sync().await.expect("sync");
    assert_eq!(r.updates(), 0);
    assert_eq!(target.state().entry_count(), flows.len());
}

#[tokio::test]
async fn packet_in_by_name_and_packet_out() {
    let target = FakeP4rtTarget::start(DEVICE).await.expect("fake target");
    let (b, mut pin) = primary(&target, 3, 100).await;
    let ix = b.mapper().index();
    let hin = ix.packet_header("packet_in").expect("packet_in");
    let id = |n: &str| hin.field(n).expect("field").id;
    let sent = p4::PacketIn {
        payload: vec![0xde, 0xad],
        metadata: vec![
            p4::PacketMetadata {
                metadata_id: id("ingress_port"),
                value: vec![0, 3],
            },
            p4::PacketMetadata {
                metadata_id: id("reason"),
                value: vec![1],
            },
            p4::PacketMetadata {
                metadata_id: id("network"),
                value: vec![0, 0, 5],
            },
            p4::PacketMetadata {
                metadata_id: id("inport"),
                value: vec![9],
            },
            p4::PacketMetadata {
                metadata_id: id("router"),
                value: vec![0],
            },
        ],
    };
    assert!(target.state().packet_in(sent));
    let got = tokio::time::timeout(WAIT, pin.recv())
        .await
        .expect("a PacketIn in time")
        .expect("channel open");
    assert_eq!(got.payload, vec![0xde, 0xad]);
    assert_eq!(got.metadata.get("ingress_port"), Some(&3));
    assert_eq!(got.metadata.get("reason"), Some(&1));
    assert_eq!(got.metadata.get("network"), Some(&5));
    let punt = got.punt().expect("a punt");
    assert_eq!(punt.reason, PuntReason::Dhcp);
    assert_eq!(
        (punt.ingress_port, punt.inport, punt.network),
        (3, PortKey(9), NetKey(5))
    );

    b.send_packet(PacketOut::to_port(2, vec![1, 2, 3]))
        .await
        .expect("packet out");
    common::wait_until(10, "the PacketOut", || {
        !target.state().packet_outs.is_empty()
    })
    .await;
    let hout = ix.packet_header("packet_out").expect("packet_out");
    let out = target.state().packet_outs[0].clone();
    assert_eq!(out.payload, vec![1, 2, 3]);
    assert_eq!(
        out.metadata[0].metadata_id,
        hout.field("egress_port").expect("f").id
    );
    assert_eq!(out.metadata[0].value, vec![2]);
    assert_eq!(out.metadata[1].value, vec![0], "zero is one zero byte");

    // Too wide for the 8-bit mode field, and an unknown field: typed errors, nothing sent.
    let e = b
        .send_packet(PacketOut {
            payload: vec![],
            metadata: vec![("mode".into(), 256)],
        })
        .await
        .expect_err("too wide");
    assert!(e.to_string().contains("packet_out.mode"), "{e}");
    let e = b
        .send_packet(PacketOut {
            payload: vec![],
            metadata: vec![("color".into(), 1)],
        })
        .await
        .expect_err("unknown");
    assert!(e.to_string().contains("color"), "{e}");
}

#[tokio::test]
async fn reconnect_keeps_desired_and_writes_nothing() {
    let target = FakeP4rtTarget::start(DEVICE).await.expect("fake target");
    let (flows, groups) = demo();
    let (mut b, _pin) = primary(&target, 5, 100).await;
    b.set_pipeline().await.expect("pipeline");
    b.set_desired(&flows, &groups);
    let first = b.sync().await.expect("sync");
    assert!(first.inserted > 0);
    let updates = target.state().write_updates;

    let _pin = b.reconnect(&target.url()).await.expect("reconnect");
    assert_eq!(
        b.wait_for_mastership(WAIT).await.expect("arb"),
        Mastership::Primary
    );
    let r = b.sync().await.expect("sync");
    assert!(r.read, "a new connection reads first");
    assert_eq!(r.updates(), 0, "{r:?}");
    assert_eq!(target.state().write_updates, updates);
}

#[tokio::test]
async fn another_program_is_committed() {
    let target = FakeP4rtTarget::start(DEVICE).await.expect("fake target");
    let (mut b, _pin) = primary(&target, 1, 50).await;
    assert!(b.ensure_pipeline().await.expect("pipeline"));
    drop(b);
    no_controllers(&target).await;
    let mut cfg = config(1, 50);
    cfg.device_config = b"{\"v\": 2}".to_vec();
    let (mut b, _) = P4rtBackend::connect(&target.url(), cfg)
        .await
        .expect("connect");
    b.wait_until_primary(WAIT).await.expect("primary");
    assert!(
        b.ensure_pipeline().await.expect("pipeline"),
        "new device config: commit"
    );
    assert_eq!(target.state().pipeline_commits, 2);
}
