//! The behaviour every [`Store`] implementation must show, as async functions that panic on
//! the first violation. Implementation-agnostic: each case takes a store that it uses
//! exclusively (no other writer) and that may already hold data outside the keys it uses
//! (each case keeps to its own `/conformance/<case>/` prefix) — so it asserts relative
//! revisions (strictly increasing, unchanged after a failed or no-op txn), never absolute ones.
//!
//! Use: call [`run_all`] with a factory of fresh stores, or each case from its own test for
//! finer reports (see `tests/redb.rs`).
//!
//! Prefix semantics pinned down here: `range` and `watch` match a raw string prefix, byte
//! for byte. `"/a/b"` matches `"/a/b"`, `"/a/b/x"` and also `"/a/bc"`; to get only the
//! children of `/a/b`, ask for `"/a/b/"`. The empty prefix matches every key.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use crate::{Compare, Event, EventKind, Revision, Store, StoreError, Txn, WatchStream};

/// How long a case waits for one watch event before failing.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs every case, each on a fresh store from `make`.
pub async fn run_all<S, F, Fut>(mut make: F)
where
    S: Store + ?Sized,
    F: FnMut() -> Fut,
    Fut: Future<Output = Arc<S>>,
{
    get_put_delete(make().await).await;
    revisions_monotonic(make().await).await;
    compare_and_swap(make().await).await;
    multi_op_txn(make().await).await;
    range_by_prefix(make().await).await;
    watch_replays_past(make().await).await;
    watch_live(make().await).await;
    watch_filters_prefix(make().await).await;
    watch_catch_up_then_live(make().await).await;
    concurrent_writers(make().await).await;
    compacted(make().await).await;
}

fn val(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn next_event(stream: &mut WatchStream, what: &str) -> Event {
    match tokio::time::timeout(EVENT_TIMEOUT, stream.next()).await {
        Err(_) => panic!("timed out after {EVENT_TIMEOUT:?} waiting for {what}"),
        Ok(None) => panic!("watch stream ended while waiting for {what}"),
        Ok(Some(Err(e))) => panic!("watch stream failed while waiting for {what}: {e}"),
        Ok(Some(Ok(ev))) => ev,
    }
}

async fn take_events(stream: &mut WatchStream, n: usize, what: &str) -> Vec<Event> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(next_event(stream, &format!("{what} (event {} of {n})", i + 1)).await);
    }
    out
}

/// Single-key writes: values, per-key create/mod revision and version, delete semantics.
pub async fn get_put_delete<S: Store + ?Sized>(store: Arc<S>) {
    let k = "/conformance/gpd/key";
    assert!(
        store.get(k).await.unwrap().is_none(),
        "absent key must read as None"
    );
    let before = store.revision().await.unwrap();

    let r1 = store.put(k, val("one")).await.unwrap();
    assert!(r1 > before, "put must bump the revision ({before} -> {r1})");
    let kv = store.get(k).await.unwrap().expect("key after put");
    assert_eq!(kv.key, k);
    assert_eq!(kv.value, val("one"));
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (r1, r1, 1)
    );

    let r2 = store.put(k, val("two")).await.unwrap();
    assert!(r2 > r1);
    let kv = store.get(k).await.unwrap().expect("key after second put");
    assert_eq!(kv.value, val("two"));
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (r1, r2, 2)
    );

    let r3 = store.delete(k).await.unwrap();
    assert!(r3 > r2, "deleting a present key must bump the revision");
    assert!(
        store.get(k).await.unwrap().is_none(),
        "key must be gone after delete"
    );

    let r4 = store.delete(k).await.unwrap();
    assert_eq!(r4, r3, "deleting an absent key must not bump the revision");
    assert_eq!(store.revision().await.unwrap(), r3);

    let r5 = store.put(k, val("again")).await.unwrap();
    let kv = store.get(k).await.unwrap().expect("key after re-create");
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (r5, r5, 1),
        "a re-created key starts a new life"
    );

    // Values are opaque bytes, including empty and non-UTF-8 ones.
    let bin = "/conformance/gpd/binary";
    store
        .put(bin, Bytes::from_static(&[0, 255, 1, 254]))
        .await
        .unwrap();
    assert_eq!(
        store.get(bin).await.unwrap().unwrap().value,
        Bytes::from_static(&[0, 255, 1, 254])
    );
    store.put(bin, Bytes::new()).await.unwrap();
    assert_eq!(store.get(bin).await.unwrap().unwrap().value, Bytes::new());
}

/// Every writing txn gets a strictly larger revision, and `revision()` follows.
pub async fn revisions_monotonic<S: Store + ?Sized>(store: Arc<S>) {
    let mut last = store.revision().await.unwrap();
    for i in 0..20 {
        let r = store
            .put(&format!("/conformance/mono/{}", i % 3), val(&i.to_string()))
            .await
            .unwrap();
        assert!(r > last, "revision went from {last} to {r}");
        assert_eq!(
            store.revision().await.unwrap(),
            r,
            "revision() must show the last write"
        );
        last = r;
    }
}

/// Guards: ModRevision, Absent and Exists, holding and failing; a failed txn changes nothing.
pub async fn compare_and_swap<S: Store + ?Sized>(store: Arc<S>) {
    let k = "/conformance/cas/key";
    let other = "/conformance/cas/other";

    // Absent holds on a missing key; ModRevision 0 means absent.
    let res = store
        .txn(
            Txn::new()
                .when(Compare::Absent { key: k.into() })
                .put(k, val("v1")),
        )
        .await
        .unwrap();
    assert!(res.succeeded, "Absent must hold on a missing key");
    let r1 = res.revision;
    assert_eq!(store.get(k).await.unwrap().unwrap().mod_revision, r1);

    let res = store
        .txn(
            Txn::new()
                .when(Compare::ModRevision {
                    key: other.into(),
                    revision: Revision(0),
                })
                .when(Compare::Exists { key: k.into() })
                .put(other, val("o1")),
        )
        .await
        .unwrap();
    assert!(
        res.succeeded,
        "ModRevision 0 must hold on a missing key, Exists on a present one"
    );
    let r2 = res.revision;
    assert!(r2 > r1);

    // ModRevision holds with the current mod revision.
    let res = store
        .txn(
            Txn::new()
                .when(Compare::ModRevision {
                    key: k.into(),
                    revision: r1,
                })
                .put(k, val("v2")),
        )
        .await
        .unwrap();
    assert!(
        res.succeeded,
        "ModRevision must hold with the key's current mod_revision"
    );
    let r3 = res.revision;

    // Each failing guard: nothing written, revision unchanged, the answer says so.
    let failing = [
        Compare::ModRevision {
            key: k.into(),
            revision: r1,
        },
        Compare::ModRevision {
            key: k.into(),
            revision: Revision(0),
        },
        Compare::Absent { key: k.into() },
        Compare::Exists {
            key: "/conformance/cas/missing".into(),
        },
    ];
    for guard in failing {
        let res = store
            .txn(
                Txn::new()
                    .when(Compare::Exists { key: other.into() })
                    .when(guard.clone())
                    .put(k, val("must-not-land"))
                    .put("/conformance/cas/new", val("must-not-land"))
                    .delete(other),
            )
            .await
            .unwrap();
        assert!(!res.succeeded, "guard {guard:?} must fail");
        assert_eq!(
            res.revision, r3,
            "a failed txn reports the unchanged current revision"
        );
        assert_eq!(
            store.revision().await.unwrap(),
            r3,
            "a failed txn must not bump the revision"
        );
        let kv = store.get(k).await.unwrap().unwrap();
        assert_eq!(
            (kv.value, kv.mod_revision),
            (val("v2"), r3),
            "failed txn wrote {k}"
        );
        assert!(
            store.get("/conformance/cas/new").await.unwrap().is_none(),
            "failed txn created a key"
        );
        assert!(
            store.get(other).await.unwrap().is_some(),
            "failed txn deleted a key"
        );
    }

    // A guard-only txn succeeds without writing: no new revision.
    let res = store
        .txn(Txn::new().when(Compare::Exists { key: k.into() }))
        .await
        .unwrap();
    assert!(res.succeeded);
    assert_eq!(res.revision, r3);
}

/// Several ops in one txn land together at one revision, with events in op order.
pub async fn multi_op_txn<S: Store + ?Sized>(store: Arc<S>) {
    let p = "/conformance/multi/";
    let r0 = store.put(&format!("{p}c"), val("c0")).await.unwrap();
    let res = store
        .txn(
            Txn::new()
                .put(format!("{p}a"), val("a1"))
                .put(format!("{p}b"), val("b1"))
                .delete(format!("{p}c")),
        )
        .await
        .unwrap();
    assert!(res.succeeded);
    let r = res.revision;
    assert!(r > r0);
    for key in ["a", "b"] {
        let kv = store.get(&format!("{p}{key}")).await.unwrap().unwrap();
        assert_eq!(kv.mod_revision, r, "all ops of one txn share its revision");
    }
    assert!(store.get(&format!("{p}c")).await.unwrap().is_none());
    assert_eq!(store.revision().await.unwrap(), r, "one txn, one revision");

    let mut w = store.watch(p, r).await.unwrap();
    let evs = take_events(&mut w, 3, "the multi-op txn's events").await;
    let seen: Vec<_> = evs
        .iter()
        .map(|e| (e.kind, e.kv.key.as_str(), e.revision()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (EventKind::Put, format!("{p}a").as_str(), r),
            (EventKind::Put, format!("{p}b").as_str(), r),
            (EventKind::Delete, format!("{p}c").as_str(), r),
        ]
    );
}

/// Raw byte-prefix ranges, in key order, at a consistent revision.
pub async fn range_by_prefix<S: Store + ?Sized>(store: Arc<S>) {
    let base = "/conformance/range";
    // Written out of order on purpose.
    let keys = [
        "/a/bc", "/a/b/2", "/b", "/a/b", "/a/b/é", "/a/a", "/a/b/1", "/a/b/10",
    ];
    for k in keys {
        store.put(&format!("{base}{k}"), val(k)).await.unwrap();
    }
    let rev = store.revision().await.unwrap();
    let keys_of = |prefix: &'static str| {
        let store = store.clone();
        async move {
            let (kvs, at) = store.range(&format!("{base}{prefix}")).await.unwrap();
            assert_eq!(at, rev, "range must report the revision of its snapshot");
            for kv in &kvs {
                assert_eq!(kv.value, val(&kv.key[base.len()..]), "value of {}", kv.key);
                assert!(kv.mod_revision <= at);
            }
            kvs.into_iter()
                .map(|kv| kv.key[base.len()..].to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        keys_of("/a/b/").await,
        ["/a/b/1", "/a/b/10", "/a/b/2", "/a/b/é"]
    );
    assert_eq!(
        keys_of("/a/b").await,
        ["/a/b", "/a/b/1", "/a/b/10", "/a/b/2", "/a/b/é", "/a/bc"]
    );
    assert_eq!(
        keys_of("/").await,
        ["/a/a", "/a/b", "/a/b/1", "/a/b/10", "/a/b/2", "/a/b/é", "/a/bc", "/b"]
    );
    assert_eq!(keys_of("/a/b/1").await, ["/a/b/1", "/a/b/10"]);
    assert!(keys_of("/c").await.is_empty());
    assert!(keys_of("/a/b/3").await.is_empty());

    // The empty prefix is every key, including ours.
    let (all, _) = store.range("").await.unwrap();
    assert!(all.len() >= keys.len());
    assert!(
        all.windows(2).all(|w| w[0].key < w[1].key),
        "range must be in key order"
    );

    // Deleted keys leave the range.
    store.delete(&format!("{base}/a/b/1")).await.unwrap();
    let (kvs, at) = store.range(&format!("{base}/a/b/")).await.unwrap();
    assert_eq!(at, store.revision().await.unwrap());
    assert_eq!(kvs.len(), 3);
}

/// A watch from a past revision replays every later event, in order, with full values.
pub async fn watch_replays_past<S: Store + ?Sized>(store: Arc<S>) {
    let p = "/conformance/replay/";
    let r1 = store.put(&format!("{p}x"), val("x1")).await.unwrap();
    let r2 = store.put(&format!("{p}y"), val("y1")).await.unwrap();
    let r3 = store.put(&format!("{p}x"), val("x2")).await.unwrap();
    let r4 = store.delete(&format!("{p}y")).await.unwrap();
    let r5 = store.put(&format!("{p}z"), val("z1")).await.unwrap();

    let mut w = store.watch(p, r2).await.unwrap();
    let evs = take_events(&mut w, 4, "replayed events").await;
    assert_eq!(evs[0].kind, EventKind::Put);
    assert_eq!(
        (evs[0].kv.key.as_str(), evs[0].revision()),
        (format!("{p}y").as_str(), r2)
    );
    assert_eq!(evs[0].kv.value, val("y1"));
    assert_eq!((evs[0].kv.create_revision, evs[0].kv.version), (r2, 1));
    assert_eq!(
        (evs[1].kv.key.as_str(), evs[1].revision()),
        (format!("{p}x").as_str(), r3)
    );
    assert_eq!(evs[1].kv.value, val("x2"));
    assert_eq!((evs[1].kv.create_revision, evs[1].kv.version), (r1, 2));
    assert_eq!(evs[2].kind, EventKind::Delete);
    assert_eq!(
        (evs[2].kv.key.as_str(), evs[2].revision()),
        (format!("{p}y").as_str(), r4)
    );
    assert!(
        evs[2].kv.value.is_empty(),
        "a delete event carries no value"
    );
    assert_eq!(
        (evs[3].kv.key.as_str(), evs[3].revision()),
        (format!("{p}z").as_str(), r5)
    );

    // The same stream then continues live.
    let r6 = store.put(&format!("{p}w"), val("w1")).await.unwrap();
    let ev = next_event(&mut w, "the live event after the replay").await;
    assert_eq!(
        (ev.kv.key.as_str(), ev.revision()),
        (format!("{p}w").as_str(), r6)
    );
}

/// A watch from the next revision sees new writes as they commit.
pub async fn watch_live<S: Store + ?Sized>(store: Arc<S>) {
    let p = "/conformance/live/";
    store.put(&format!("{p}before"), val("old")).await.unwrap();
    let from = Revision(store.revision().await.unwrap().0 + 1);
    let mut w = store.watch(p, from).await.unwrap();
    let mut revs = Vec::new();
    for i in 0..3 {
        revs.push(
            store
                .put(&format!("{p}k{i}"), val(&i.to_string()))
                .await
                .unwrap(),
        );
    }
    let mut from_now = store.watch(p, Revision(0)).await.unwrap();
    let evs = take_events(&mut w, 3, "live events").await;
    for (i, ev) in evs.iter().enumerate() {
        assert_eq!(ev.kind, EventKind::Put);
        assert_eq!(
            ev.kv.key,
            format!("{p}k{i}"),
            "the pre-watch key must not be replayed"
        );
        assert_eq!(ev.revision(), revs[i]);
        assert_eq!(ev.kv.value, val(&i.to_string()));
    }
    // Revision 0 means "from now on": only writes after the watch started.
    let r = store.put(&format!("{p}after"), val("new")).await.unwrap();
    let ev = next_event(&mut from_now, "the event after a watch from revision 0").await;
    assert_eq!(
        (ev.kv.key.as_str(), ev.revision()),
        (format!("{p}after").as_str(), r)
    );
}

/// Only keys under the watched prefix are delivered.
pub async fn watch_filters_prefix<S: Store + ?Sized>(store: Arc<S>) {
    let p = "/conformance/filter";
    let from = Revision(store.revision().await.unwrap().0 + 1);
    let mut w = store.watch(&format!("{p}/a/"), from).await.unwrap();
    for k in ["/a/1", "/b/1", "/a2", "/a", "/a/2"] {
        store.put(&format!("{p}{k}"), val(k)).await.unwrap();
    }
    store.delete(&format!("{p}/b/1")).await.unwrap();
    store.delete(&format!("{p}/a/1")).await.unwrap();
    let evs = take_events(&mut w, 3, "filtered events").await;
    let seen: Vec<_> = evs
        .iter()
        .map(|e| (e.kind, e.kv.key[p.len()..].to_owned()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (EventKind::Put, "/a/1".to_owned()),
            (EventKind::Put, "/a/2".to_owned()),
            (EventKind::Delete, "/a/1".to_owned()),
        ]
    );
}

/// Replay of the past and live events join without a gap or a duplicate while writers run.
pub async fn watch_catch_up_then_live<S: Store + ?Sized>(store: Arc<S>) {
    let p = "/conformance/join/";
    let start = Revision(store.revision().await.unwrap().0 + 1);
    for i in 0..50 {
        store
            .put(&format!("{p}{i:03}"), val("before"))
            .await
            .unwrap();
    }
    let mut w = store.watch(p, start).await.unwrap();
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 50..100 {
                store
                    .put(&format!("{p}{i:03}"), val("during"))
                    .await
                    .unwrap();
            }
        })
    };
    let evs = take_events(&mut w, 100, "replayed and live events").await;
    writer.await.unwrap();
    for (i, ev) in evs.iter().enumerate() {
        assert_eq!(
            ev.kv.key,
            format!("{p}{i:03}"),
            "event {i} out of order or duplicated"
        );
    }
    assert!(evs.windows(2).all(|w| w[0].revision() < w[1].revision()));
    // Nothing more: a duplicate would show up here.
    let r = store.put(&format!("{p}last"), val("x")).await.unwrap();
    let ev = next_event(&mut w, "the marker event").await;
    assert_eq!(
        (ev.kv.key.as_str(), ev.revision()),
        (format!("{p}last").as_str(), r)
    );
}

/// Concurrent writers each get their own revision, and each key shows the one it was told.
pub async fn concurrent_writers<S: Store + ?Sized>(store: Arc<S>) {
    let p = "/conformance/concurrent/";
    let mut tasks = Vec::new();
    for t in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            for i in 0..25 {
                let key = format!("{p}{t}/{i}");
                let r = store.put(&key, val(&key)).await.unwrap();
                acks.push((key, r));
            }
            acks
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let distinct: HashSet<Revision> = all.iter().map(|(_, r)| *r).collect();
    assert_eq!(
        distinct.len(),
        all.len(),
        "two writers got the same revision"
    );
    for (key, r) in &all {
        let kv = store.get(key).await.unwrap().expect("acknowledged key");
        assert_eq!((kv.mod_revision, &kv.value), (*r, &val(key)));
    }
    let max = all.iter().map(|(_, r)| *r).max().unwrap();
    assert!(store.revision().await.unwrap() >= max);
}

/// A watch from before the compacted history fails with `Compacted`; after it, it replays.
pub async fn compacted<S: Store + ?Sized>(store: Arc<S>) {
    let p = "/conformance/compacted/";
    let mut revs = Vec::new();
    for i in 0..5 {
        revs.push(
            store
                .put(&format!("{p}{i}"), val(&i.to_string()))
                .await
                .unwrap(),
        );
    }
    store.compact(revs[2]).await.unwrap();
    for from in [revs[0], revs[2]] {
        match store.watch(p, from).await {
            Err(StoreError::Compacted {
                requested,
                compacted,
            }) => {
                assert_eq!(requested, from);
                assert!(compacted >= revs[2], "compacted {compacted} < {}", revs[2]);
            }
            Err(e) => panic!("watch from compacted revision {from}: wrong error {e}"),
            Ok(mut w) => match tokio::time::timeout(EVENT_TIMEOUT, w.next()).await {
                Ok(Some(Err(StoreError::Compacted { .. }))) => {}
                _ => panic!("watch from compacted revision {from} must fail with Compacted"),
            },
        }
    }
    let mut w = store.watch(p, revs[3]).await.unwrap();
    let evs = take_events(&mut w, 2, "events after the compacted revision").await;
    assert_eq!(evs[0].revision(), revs[3]);
    assert_eq!(evs[1].revision(), revs[4]);
    // The data itself is untouched.
    let (kvs, _) = store.range(p).await.unwrap();
    assert_eq!(kvs.len(), 5);
}
