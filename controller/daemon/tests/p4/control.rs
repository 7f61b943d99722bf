//! wyvernd keeping a P4Runtime target equal to its pipeline across restarts and
//! failovers, counted in Write updates (wyvernd logs each sync's inserted, modified,
//! deleted and refused updates): a restarted wyvernd reads the target and writes nothing;
//! of two wyvernds the higher election id writes, the other waits, and takes over when the
//! primary dies without wiping what is there.

use wyvern_testkit::ovs::OvsSandbox;
use wyvern_testkit::poll::wait_for;

use crate::common::{Api, DEADLINE};
use crate::harness::{self, logged_syncs, Demo, P4d, Reader};

/// The sum of the logged syncs' updates: [inserted, modified, deleted, refused].
fn total(syncs: &[[u64; 4]]) -> [u64; 4] {
    syncs.iter().fold([0; 4], |mut t, s| {
        for (a, b) in t.iter_mut().zip(s) {
            *a += b;
        }
        t
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_wyvernd_reads_the_target_and_rewrites_nothing() {
    let p4d = P4d::start(&[]).expect("wyvern-p4d");
    let ovs = OvsSandbox::dummy().expect("OVS sandbox");
    let mut w = harness::wyvernd(&ovs, &p4d, 10).expect("wyvernd");
    let api = Api::new(w.url());
    let demo = Demo::build(&api, &w.url(), &ovs).await;
    let mut reader = Reader::connect(&p4d).await.expect("backup controller");
    reader.wait_for(&demo.needles(), || w.log_tail()).await;
    let before = reader.settled(|| w.log_tail()).await;
    let first = total(&logged_syncs(&w));
    assert!(first[0] as usize >= before.len(), "inserted {first:?}");
    assert_eq!(first[3], 0, "nothing refused");

    w.stop().expect("wyvernd stops");
    w.restart().expect("wyvernd restarts");
    // The restarted daemon's first sync (its log is a new file).
    tokio::task::block_in_place(|| {
        wait_for("the restarted wyvernd's first P4 sync", DEADLINE, || {
            let s = logged_syncs(&w);
            (!s.is_empty()).then_some(s)
        })
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", w.log_tail()));
    let after = reader.settled(|| w.log_tail()).await;
    let syncs = logged_syncs(&w);
    assert!(!syncs.is_empty());
    assert_eq!(
        total(&syncs),
        [0; 4],
        "updates after the restart: {syncs:?}"
    );
    assert_eq!(after, before, "the same entries");

    // Still in charge: a new port on net1 is written incrementally, nothing deleted.
    let api = Api::new(w.url());
    let net1 = serde_json::json!({ "id": harness::uuid(0x11) });
    let p4 = api.port(&net1, "vm4").await;
    let vm4 = harness::plug(&ovs, &p4, "vm4", 4);
    reader
        .wait_for(
            &[(
                "MyIngress.classify".into(),
                format!("meta.phys_in_port=0x{:02x} ", vm4.ofport),
            )],
            || w.log_tail(),
        )
        .await;
    let grown = reader.settled(|| w.log_tail()).await;
    let t = total(&logged_syncs(&w));
    assert!(t[0] > 0, "inserted {t:?}");
    assert_eq!((t[2], t[3]), (0, 0), "no deletes, nothing refused: {t:?}");
    assert!(grown.len() > before.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_wyvernds_primary_writes_backup_takes_over_without_a_wipe() {
    let p4d = P4d::start(&[]).expect("wyvern-p4d");
    // Two hosts' worth of wyvernd (own OVS, own store) given the same topology and the
    // same bindings: the same pipeline, two controllers of one P4 target.
    let (ovs_a, ovs_b) = (
        OvsSandbox::dummy().expect("OVS a"),
        OvsSandbox::dummy().expect("OVS b"),
    );
    let mut primary = harness::wyvernd(&ovs_a, &p4d, 20).expect("wyvernd a");
    let backup = harness::wyvernd(&ovs_b, &p4d, 15).expect("wyvernd b");
    let demo = Demo::build(&Api::new(primary.url()), &primary.url(), &ovs_a).await;
    Demo::build(&Api::new(backup.url()), &backup.url(), &ovs_b).await;
    let log = || {
        format!(
            "{}\n--- backup ---\n{}",
            primary.log_tail(),
            backup.log_tail()
        )
    };

    let mut reader = Reader::connect(&p4d).await.expect("backup controller");
    reader.wait_for(&demo.needles(), log).await;
    let before = reader.settled(log).await;
    let a = total(&logged_syncs(&primary));
    assert!(
        a[0] as usize >= before.len(),
        "the primary wrote them: {a:?}"
    );
    assert!(
        logged_syncs(&backup).is_empty(),
        "the backup (lower election id) wrote nothing: {:?}",
        logged_syncs(&backup)
    );

    // The primary dies; the backup is told it is primary now, reads, and finds nothing
    // to change.
    primary.kill().expect("kill the primary");
    tokio::task::block_in_place(|| {
        wait_for("the backup's first P4 sync", DEADLINE, || {
            let s = logged_syncs(&backup);
            (!s.is_empty()).then_some(s)
        })
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", backup.log_tail()));
    let after = reader.settled(|| backup.log_tail()).await;
    let syncs = logged_syncs(&backup);
    assert!(!syncs.is_empty());
    assert_eq!(total(&syncs), [0; 4], "the backup's updates: {syncs:?}");
    assert_eq!(after, before, "no wipe: the same entries");
}
