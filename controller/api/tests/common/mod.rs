//! Test helpers: an in-memory `Store` (with failure injection) and request helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;
use wyvern_api::{router, Auth, NbConfig, NbService};
use wyvern_store::{
    Compare, KeyValue, Op, Revision, Store, StoreError, Txn, TxnResult, WatchStream,
};

/// A minimal in-memory store: enough of the `Store` contract for the API (no watch history).
#[derive(Default)]
pub struct MemStore {
    inner: Mutex<(BTreeMap<String, KeyValue>, u64)>,
    /// When set, the next txn fails with a backend error.
    pub fail_next: AtomicBool,
    pub txns: AtomicUsize,
}

#[async_trait]
impl Store for MemStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        Ok(self.inner.lock().unwrap().0.get(key).cloned())
    }
    async fn range(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError> {
        let g = self.inner.lock().unwrap();
        Ok((
            g.0.range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(_, v)| v.clone())
                .collect(),
            Revision(g.1),
        ))
    }
    async fn txn(&self, txn: Txn) -> Result<TxnResult, StoreError> {
        if self.fail_next.swap(false, Ordering::SeqCst) {
            return Err(StoreError::Backend {
                op: "commit",
                source: "injected failure".into(),
            });
        }
        self.txns.fetch_add(1, Ordering::SeqCst);
        let mut g = self.inner.lock().unwrap();
        let ok = txn.compares.iter().all(|c| match c {
            Compare::Absent { key } => !g.0.contains_key(key),
            Compare::Exists { key } => g.0.contains_key(key),
            Compare::ModRevision { key, revision } => {
                g.0.get(key).map_or(Revision(0), |kv| kv.mod_revision) == *revision
            }
        });
        if !ok {
            return Ok(TxnResult {
                succeeded: false,
                revision: Revision(g.1),
            });
        }
        g.1 += 1;
        let rev = Revision(g.1);
        for op in txn.ops {
            match op {
                Op::Put { key, value } => {
                    let (create, version) =
                        g.0.get(&key)
                            .map_or((rev, 1), |kv| (kv.create_revision, kv.version + 1));
                    g.0.insert(
                        key.clone(),
                        KeyValue {
                            key,
                            value,
                            create_revision: create,
                            mod_revision: rev,
                            version,
                        },
                    );
                }
                Op::Delete { key } => {
                    g.0.remove(&key);
                }
            }
        }
        Ok(TxnResult {
            succeeded: true,
            revision: rev,
        })
    }
    async fn watch(&self, _prefix: &str, _from: Revision) -> Result<WatchStream, StoreError> {
        Err(StoreError::Closed)
    }
    async fn revision(&self) -> Result<Revision, StoreError> {
        Ok(Revision(self.inner.lock().unwrap().1))
    }
}

impl MemStore {
    /// The model's keys (the northbound head key, written with every batch, left out).
    pub fn keys(&self) -> Vec<String> {
        self.inner
            .lock()
            .unwrap()
            .0
            .keys()
            .filter(|k| k.as_str() != wyvern_api::HEAD_KEY)
            .cloned()
            .collect()
    }
    pub fn value(&self, key: &str) -> Option<Value> {
        self.inner
            .lock()
            .unwrap()
            .0
            .get(key)
            .map(|kv| serde_json::from_slice(&kv.value).unwrap())
    }
}

/// A running API over a fresh MemStore.
pub struct Api {
    pub store: Arc<MemStore>,
    pub svc: Arc<NbService>,
    pub app: axum::Router,
}

impl Api {
    pub async fn new(auth: Auth) -> Api {
        let store = Arc::new(MemStore::default());
        Self::over(store, auth).await
    }

    pub async fn over(store: Arc<MemStore>, auth: Auth) -> Api {
        let svc = NbService::open(store.clone(), NbConfig::default())
            .await
            .unwrap();
        let app = router(svc.clone(), auth);
        Api { store, svc, app }
    }

    pub async fn noauth() -> Api {
        Self::new(Auth::NoAuth {
            default_project: "demo".into(),
        })
        .await
    }

    /// Sends one request; `body` is sent verbatim when it is a string, as JSON otherwise.
    pub async fn req(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "test:9696");
        if let Some(t) = token {
            b = b.header("x-auth-token", t);
        }
        let body = match body {
            None => Body::empty(),
            Some(Value::String(s)) => Body::from(s),
            Some(v) => Body::from(serde_json::to_vec(&v).unwrap()),
        };
        let resp = self
            .app
            .clone()
            .oneshot(b.body(body).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!("non-JSON answer {e}: {:?}", String::from_utf8_lossy(&bytes))
            })
        };
        (status, v)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.req("GET", path, None, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.req("POST", path, None, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.req("PUT", path, None, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.req("DELETE", path, None, None).await
    }

    /// Creates and returns the object, asserting 201.
    pub async fn create(&self, kind: &str, body: Value) -> Value {
        let (s, v) = self
            .post(&format!("/v2.0/{kind}s"), serde_json::json!({ kind: body }))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v[kind].clone()
    }
}

/// Asserts a NeutronError answer with this status and type.
pub fn assert_error(got: (StatusCode, Value), status: u16, ty: &str) {
    assert_eq!(got.0.as_u16(), status, "{}", got.1);
    assert_eq!(got.1["NeutronError"]["type"], ty, "{}", got.1);
    assert!(
        got.1["NeutronError"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        got.1
    );
    assert_eq!(got.1["NeutronError"]["detail"], "", "{}", got.1);
}
