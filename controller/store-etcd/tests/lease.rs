//! Leased keys (chassis registration): kept while the guard lives, gone when it drops.

use std::time::Duration;

use wyvern_store::Store;
use wyvern_store_etcd::{EtcdOptions, EtcdStore};
use wyvern_testkit::etcd::Etcd;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leased_key_lives_with_its_guard() {
    let etcd = Etcd::start().expect("start etcd");
    let store = EtcdStore::connect(EtcdOptions {
        endpoints: vec![etcd.endpoint()],
        ..EtcdOptions::default()
    })
    .await
    .unwrap_or_else(|e| panic!("connect to etcd: {e}\n{}", etcd.log_tail()));
    let guard = store
        .put_leased("/wyvern/chassis/a", "x".into(), Duration::from_secs(1))
        .await
        .expect("put leased");
    // Kept alive well past its TTL.
    let start = tokio::time::Instant::now();
    while start.elapsed() < Duration::from_millis(3500) {
        assert!(
            store.get("/wyvern/chassis/a").await.expect("get").is_some(),
            "leased key vanished after {:?} while its guard lived",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(guard);
    let start = tokio::time::Instant::now();
    loop {
        if store.get("/wyvern/chassis/a").await.expect("get").is_none() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "leased key still there 5 s after its guard dropped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
