//! The store conformance suite (the same one `RedbStore` passes) against a real etcd 3.4,
//! one private etcd per case so that each case is the store's only writer.

use std::sync::Arc;
use std::time::Instant;

use wyvern_store::conformance;
use wyvern_store_etcd::{EtcdOptions, EtcdStore};
use wyvern_testkit::etcd::Etcd;

/// An etcd and a store connected to it; the store drops first.
struct Fresh {
    store: Arc<EtcdStore>,
    _etcd: Etcd,
}

async fn fresh() -> Fresh {
    let etcd = Etcd::start().expect("start etcd");
    let store = EtcdStore::connect(EtcdOptions {
        endpoints: vec![etcd.endpoint()],
        ..EtcdOptions::default()
    })
    .await
    .unwrap_or_else(|e| panic!("connect to etcd: {e}\n{}", etcd.log_tail()));
    Fresh { store, _etcd: etcd }
}

macro_rules! conformance_case {
    ($name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let f = fresh().await;
            conformance::$name(f.store.clone()).await;
        }
    };
}

conformance_case!(get_put_delete);
conformance_case!(revisions_monotonic);
conformance_case!(compare_and_swap);
conformance_case!(multi_op_txn);
conformance_case!(range_by_prefix);
conformance_case!(watch_replays_past);
conformance_case!(watch_live);
conformance_case!(watch_filters_prefix);
conformance_case!(watch_catch_up_then_live);
conformance_case!(concurrent_writers);
conformance_case!(compacted);

/// The whole suite on one etcd, timed (the number quoted in docs/multi-host.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_on_one_etcd() {
    let f = fresh().await;
    let store = f.store.clone();
    let t = Instant::now();
    conformance::run_all(|| {
        let store = store.clone();
        async move { store }
    })
    .await;
    eprintln!(
        "conformance suite against etcd: {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
}

/// Ranges bigger than one page are read page by page at one revision, in key order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paged_range_is_one_snapshot() {
    use wyvern_store::{Store, Txn};
    let etcd = Etcd::start().expect("start etcd");
    let store = EtcdStore::connect(EtcdOptions {
        endpoints: vec![etcd.endpoint()],
        page_size: 7,
        ..EtcdOptions::default()
    })
    .await
    .expect("connect");
    let mut txn = Txn::new();
    for i in 0..50 {
        txn = txn.put(format!("/paged/{i:03}"), format!("v{i}"));
    }
    let r = store.txn(txn).await.expect("txn").revision;
    store.put("/paged0", "outside".into()).await.expect("put");
    let (kvs, at) = store.range("/paged/").await.expect("range");
    assert!(at > r);
    let keys: Vec<_> = kvs.iter().map(|kv| kv.key.clone()).collect();
    let want: Vec<_> = (0..50).map(|i| format!("/paged/{i:03}")).collect();
    assert_eq!(keys, want);
}

/// A transaction that writes one key twice keeps the last write (etcd refuses duplicates).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_key_in_one_txn_keeps_the_last_write() {
    use wyvern_store::{Store, Txn};
    let etcd = Etcd::start().expect("start etcd");
    let store = EtcdStore::connect(EtcdOptions {
        endpoints: vec![etcd.endpoint()],
        ..EtcdOptions::default()
    })
    .await
    .expect("connect");
    let res = store
        .txn(
            Txn::new()
                .put("/dup/a", "1")
                .put("/dup/b", "x")
                .put("/dup/a", "2"),
        )
        .await
        .expect("txn");
    assert!(res.succeeded);
    let a = store.get("/dup/a").await.expect("get").expect("present");
    assert_eq!(&a.value[..], b"2");
    assert_eq!(a.mod_revision, res.revision);
}
