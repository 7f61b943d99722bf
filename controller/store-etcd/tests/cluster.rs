//! A 3-member etcd cluster on loopback loses its leader in the middle of a stream of
//! writes: writes continue through the other members, no acknowledged write is lost, and a
//! watcher that started before the crash sees every write exactly once, in revision order.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use futures::StreamExt;
use wyvern_store::{EventKind, Revision, Store};
use wyvern_store_etcd::{EtcdOptions, EtcdStore};
use wyvern_testkit::etcd::EtcdCluster;

const WRITES: usize = 300;
const KILL_AT: usize = 100;
const PREFIX: &str = "/cluster/";
const WATCHERS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_mid_stream_loses_no_acknowledged_write() {
    let mut cluster = EtcdCluster::start(3).expect("start a 3-member etcd cluster");
    let store = EtcdStore::connect(EtcdOptions {
        endpoints: cluster.endpoints(),
        request_timeout: Duration::from_secs(2),
        ..EtcdOptions::default()
    })
    .await
    .expect("connect to all three members");

    let start = Revision(store.revision().await.expect("revision").0 + 1);
    // Several watchers, spread by the client over the members: some follow the one killed.
    let mut watches = Vec::new();
    for _ in 0..WATCHERS {
        watches.push(store.watch(PREFIX, start).await.expect("watch"));
    }

    // Acknowledged writes: key -> (value, revision). An attempt that failed is retried
    // under a new key, so a failed-but-applied attempt shows up as an unacknowledged extra.
    let mut acked: BTreeMap<String, (String, Revision)> = BTreeMap::new();
    let mut failures = 0usize;
    let mut worst_gap = Duration::ZERO;
    let mut killed = None;
    let mut attempt = 0usize;
    let t0 = Instant::now();
    for i in 0..WRITES {
        if i == KILL_AT {
            let leader = cluster.leader().expect("a leader before the crash");
            cluster.kill(leader).expect("kill the leader");
            killed = Some(leader);
        }
        let began = Instant::now();
        loop {
            attempt += 1;
            let key = format!("{PREFIX}{i:04}-{attempt}");
            let value = format!("value {i}");
            match store.put(&key, value.clone().into()).await {
                Ok(rev) => {
                    acked.insert(key, (value, rev));
                    break;
                }
                Err(e) => {
                    failures += 1;
                    assert!(
                        began.elapsed() < Duration::from_secs(30),
                        "write {i} still failing after 30 s: {e}\n{}",
                        cluster.log_tails()
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        worst_gap = worst_gap.max(began.elapsed());
    }
    let elapsed = t0.elapsed();
    let killed = killed.expect("a member was killed");
    assert!(!cluster.is_running(killed));

    // Every acknowledged write is readable, with its value and revision, from the survivors.
    let (kvs, _) = store.range(PREFIX).await.expect("range after the crash");
    let stored: HashMap<_, _> = kvs
        .iter()
        .map(|kv| (kv.key.clone(), (kv.value.clone(), kv.mod_revision)))
        .collect();
    for (key, (value, rev)) in &acked {
        let (v, r) = stored
            .get(key)
            .unwrap_or_else(|| panic!("acknowledged write {key} at {rev} is lost"));
        assert_eq!((&v[..], *r), (value.as_bytes(), *rev), "{key}");
    }

    // Each watcher saw each acknowledged write once, in strictly increasing revisions.
    let last = acked.values().map(|(_, r)| *r).max().expect("writes");
    let mut watched = 0;
    for (w, watch) in watches.iter_mut().enumerate() {
        let mut seen: HashMap<String, Revision> = HashMap::new();
        let mut prev = Revision(0);
        while prev < last {
            let ev = tokio::time::timeout(Duration::from_secs(20), watch.next())
                .await
                .expect("watch event within 20 s")
                .expect("watch stream open")
                .expect("watch event, not an error");
            assert_eq!(ev.kind, EventKind::Put);
            assert!(
                ev.revision() > prev,
                "revision {} after {prev}: duplicate or out of order",
                ev.revision()
            );
            prev = ev.revision();
            assert!(
                seen.insert(ev.kv.key.clone(), ev.revision()).is_none(),
                "{} delivered twice",
                ev.kv.key
            );
        }
        for (key, (_, rev)) in &acked {
            assert_eq!(seen.get(key), Some(rev), "watcher {w} missed {key}");
        }
        watched = seen.len();
    }
    eprintln!(
        "cluster failover: {WRITES} acknowledged writes in {:.2} s, leader m{killed} killed at \
         write {KILL_AT}, {failures} failed attempts retried, longest write {:.0} ms, \
         {WATCHERS} watchers each saw {watched} events ({} unacknowledged extras), none lost or \
         duplicated; {} watch streams resumed on another member",
        elapsed.as_secs_f64(),
        worst_gap.as_secs_f64() * 1e3,
        watched - acked.len(),
        store.watch_resumptions()
    );
}
