//! The etcd implementation of wyvern's `Store` trait: one etcd cluster shared by every host.
//!
//! The trait was modelled on etcd's v3 data model, so the mapping is direct:
//! - revisions are etcd's revisions (one per writing transaction, per-key create/mod
//!   revision and version);
//! - `txn` is one etcd `Txn`: `Compare::ModRevision` is `mod_revision ==` (0 = absent, as etcd
//!   compares a missing key as all zeros), `Absent` is `version == 0`, `Exists` is
//!   `version > 0`; the answer's header revision is the revision after it;
//! - `watch` is an etcd watch from `start_revision`, resumed transparently (from the revision
//!   after the last one delivered) when its member dies or the stream breaks, so consumers
//!   see neither a gap nor a duplicate; only a compacted start ends it, with
//!   `StoreError::Compacted` (the consumer resyncs with `range` + `watch`);
//! - `compact(up_to)` is etcd's `Compact(up_to + 1)` (etcd keeps the revision it is given).
//!
//! Differences from the embedded store, all inherent to etcd:
//! - etcd refuses a transaction that writes one key twice; `txn` keeps only the last op on
//!   each key (same final state; one event instead of several for that key, version +1);
//! - etcd limits a transaction to `--max-txn-ops` ops (128 by default) and a request to
//!   `--max-request-bytes` (1.5 MiB): run etcd with larger limits (docs/multi-host.md);
//! - a transaction whose connection breaks mid-flight has an unknown outcome: it is retried
//!   only when it provably never reached a member (connect failure, "no leader"); otherwise
//!   the error is returned and the caller decides (the northbound service reloads).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, CompactionOptions, Compare as EtcdCompare, CompareOp, ConnectOptions, EventType,
    GetOptions, KvClient, LeaseClient, PutOptions, Txn as EtcdTxn, TxnOp, WatchClient,
    WatchOptions,
};
use futures::StreamExt;
use tokio::sync::mpsc;
use wyvern_store::{
    Compare, Event, EventKind, KeyValue, LeaseGuard, Op, Revision, Store, StoreError, Txn,
    TxnResult, WatchStream,
};

/// Largest gRPC message accepted from etcd (ranges are paged well below it).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;
/// Events buffered between a watch's background task and its consumer.
const WATCH_BUFFER: usize = 4096;

/// TLS material for the connection to etcd, as PEM bytes.
#[derive(Debug, Clone, Default)]
pub struct EtcdTls {
    /// CA bundle that signed the members' certificates (none: the system roots).
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate and key for mutual TLS (both or neither).
    pub cert_pem: Option<Vec<u8>>,
    pub key_pem: Option<Vec<u8>>,
}

/// How to reach etcd. `Default` gives the values documented on each field.
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// Client URLs of the members (`http://host:2379` or `https://...`); requests are
    /// balanced over all of them, so losing one member loses no service.
    pub endpoints: Vec<String>,
    pub tls: Option<EtcdTls>,
    /// Per-request timeout (default 5 s): a hung member cannot stall a caller longer.
    pub request_timeout: Duration,
    /// How long `connect` and retried requests keep trying through transient failures such
    /// as a member's death or a leader election (default 15 s).
    pub retry_for: Duration,
    /// Keys per page of a `range` (default 1000); pages are read at one pinned revision.
    pub page_size: i64,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            tls: None,
            request_timeout: Duration::from_secs(5),
            retry_for: Duration::from_secs(15),
            page_size: 1000,
        }
    }
}

/// Failures of this crate's own checks (etcd's own errors are passed through as sources).
#[derive(Debug, thiserror::Error)]
pub enum EtcdStoreError {
    #[error("failed to connect: no etcd endpoint given")]
    NoEndpoints,
    #[error("failed to configure TLS: this build of wyvern-store-etcd has no `tls` feature")]
    TlsUnsupported,
    #[error("failed to configure TLS: a client certificate needs its key and vice versa")]
    TlsHalfIdentity,
    #[error("failed to decode key {0:?}: not UTF-8")]
    KeyNotUtf8(Vec<u8>),
    #[error("failed to read a response: it has no header")]
    NoHeader,
    #[error("failed to reach etcd within {waited:?}: {last}")]
    GaveUp { waited: Duration, last: String },
}

fn backend<E>(op: &'static str) -> impl FnOnce(E) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |e| StoreError::Backend {
        op,
        source: Box::new(e),
    }
}

/// A [`Store`] backed by an etcd cluster. Cheap to share behind an `Arc`; a clone shares
/// the same connections (the lease keeper holds one).
#[derive(Clone)]
pub struct EtcdStore {
    kv: KvClient,
    watch: WatchClient,
    lease: LeaseClient,
    opts: EtcdOptions,
    /// Watch streams reopened after a break (member death, lost leader), for metrics and tests.
    resumptions: Arc<AtomicU64>,
}

/// Whether a failed request certainly never took effect, so that even a write may be sent
/// again: the connection could not be made, or the member had no leader to propose to.
fn never_applied(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) => true,
        etcd_client::Error::GRpcStatus(s) => {
            let m = s.message();
            m.contains("no leader")
                || m.contains("tcp connect error")
                || m.contains("Connection refused")
                || m.contains("error trying to connect")
        }
        _ => false,
    }
}

/// Whether a read may simply be sent again (reads have no effect to duplicate).
fn transient(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        etcd_client::Error::GRpcStatus(s) => matches!(
            s.code(),
            tonic::Code::Unavailable
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Unknown
                | tonic::Code::Cancelled
                | tonic::Code::Aborted
        ),
        _ => false,
    }
}

/// The end of the key range covering every key that starts with `prefix` (etcd's
/// "prefix end": increment the last byte below 0xff; `\0` means "to the end").
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    for i in (0..prefix.len()).rev() {
        if prefix[i] < 0xff {
            let mut end = prefix[..=i].to_vec();
            end[i] += 1;
            return end;
        }
    }
    vec![0]
}

/// The start key of a prefix range: etcd has no empty key, `\0` is the smallest one.
fn range_start(prefix: &str) -> Vec<u8> {
    if prefix.is_empty() {
        vec![0]
    } else {
        prefix.as_bytes().to_vec()
    }
}

fn to_kv(kv: &etcd_client::KeyValue) -> Result<KeyValue, StoreError> {
    let key = std::str::from_utf8(kv.key())
        .map_err(|_| EtcdStoreError::KeyNotUtf8(kv.key().to_vec()))
        .map_err(backend("decode a key"))?;
    Ok(KeyValue {
        key: key.to_owned(),
        value: Bytes::copy_from_slice(kv.value()),
        create_revision: Revision(kv.create_revision().max(0) as u64),
        mod_revision: Revision(kv.mod_revision().max(0) as u64),
        version: kv.version().max(0) as u64,
    })
}

fn header_revision(h: Option<&etcd_client::ResponseHeader>) -> Result<Revision, StoreError> {
    h.map(|h| Revision(h.revision().max(0) as u64))
        .ok_or(EtcdStoreError::NoHeader)
        .map_err(backend("read a response header"))
}

impl EtcdStore {
    /// Connects to the cluster and waits (up to `retry_for`) until it answers a linearizable
    /// read, so that a daemon started before etcd is ready does not fail at once.
    pub async fn connect(opts: EtcdOptions) -> Result<Arc<EtcdStore>, StoreError> {
        let what = opts.endpoints.join(",");
        let open_err = |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Open {
            path: what.clone(),
            source: e,
        };
        if opts.endpoints.is_empty() {
            return Err(open_err(Box::new(EtcdStoreError::NoEndpoints)));
        }
        let mut co = ConnectOptions::new()
            .with_timeout(opts.request_timeout)
            .with_connect_timeout(Duration::from_secs(2))
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
            .with_keep_alive_while_idle(true)
            // A member cut off from the leader cancels our watches instead of going quiet.
            .with_require_leader(true);
        if let Some(tls) = &opts.tls {
            co = with_tls(co, tls).map_err(|e| open_err(Box::new(e)))?;
        }
        let client = Client::connect(&opts.endpoints, Some(co))
            .await
            .map_err(|e| open_err(Box::new(e)))?;
        let store = Arc::new(EtcdStore {
            kv: client
                .kv_client()
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            watch: client.watch_client().max_decoding_message_size(MAX_MESSAGE),
            lease: client.lease_client(),
            opts,
            resumptions: Arc::new(AtomicU64::new(0)),
        });
        let rev = store.revision().await.map_err(|e| open_err(Box::new(e)))?;
        tracing::info!(endpoints = %what, revision = %rev, "connected to etcd");
        Ok(store)
    }

    /// How many times a watch stream broke and was reopened from its next revision.
    pub fn watch_resumptions(&self) -> u64 {
        self.resumptions.load(Ordering::Relaxed)
    }

    /// Runs `f` until it succeeds, fails for good, or `retry_for` has passed; `retry` says
    /// which errors are worth another try.
    async fn retrying<T, F, Fut>(
        &self,
        op: &'static str,
        retry: fn(&etcd_client::Error) -> bool,
        mut f: F,
    ) -> Result<T, StoreError>
    where
        F: FnMut(KvClient) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let start = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(20);
        loop {
            match f(self.kv.clone()).await {
                Ok(v) => return Ok(v),
                Err(e) if retry(&e) && start.elapsed() < self.opts.retry_for => {
                    tracing::debug!(op, error = %e, "etcd request failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                Err(e) if retry(&e) => {
                    return Err(StoreError::Backend {
                        op,
                        source: Box::new(EtcdStoreError::GaveUp {
                            waited: start.elapsed(),
                            last: e.to_string(),
                        }),
                    })
                }
                Err(e) => return Err(backend(op)(e)),
            }
        }
    }

    /// Grants a lease of `ttl_s` seconds and puts the key under it; returns the lease id.
    async fn grant_and_put(&self, key: &str, value: &Bytes, ttl_s: i64) -> Result<i64, StoreError> {
        let mut lease = self.lease.clone();
        let id = lease
            .grant(ttl_s, None)
            .await
            .map_err(backend("grant a lease"))?
            .id();
        let (key, value) = (key.to_string(), value.to_vec());
        self.retrying("put a leased key", never_applied, |mut kv| {
            let (key, value) = (key.clone(), value.clone());
            async move {
                kv.put(key, value, Some(PutOptions::new().with_lease(id)))
                    .await
            }
        })
        .await?;
        Ok(id)
    }

    /// One page of a range: keys in `[start, end)` at `revision` (0: the current one).
    async fn page(
        &self,
        start: Vec<u8>,
        end: Vec<u8>,
        revision: i64,
    ) -> Result<(Vec<KeyValue>, Revision, bool), StoreError> {
        let limit = self.opts.page_size.max(1);
        let mut resp = self
            .retrying("read a range of keys", transient, |mut kv| {
                let (start, end) = (start.clone(), end.clone());
                async move {
                    let mut o = GetOptions::new().with_range(end).with_limit(limit);
                    if revision > 0 {
                        o = o.with_revision(revision);
                    }
                    kv.get(start, Some(o)).await
                }
            })
            .await?;
        let rev = header_revision(resp.header())?;
        let more = resp.more();
        let kvs = resp
            .take_kvs()
            .iter()
            .map(to_kv)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((kvs, rev, more))
    }
}

#[cfg(feature = "tls")]
fn with_tls(co: ConnectOptions, tls: &EtcdTls) -> Result<ConnectOptions, EtcdStoreError> {
    use etcd_client::{Certificate, Identity, TlsOptions};
    let mut t = TlsOptions::new();
    if let Some(ca) = &tls.ca_pem {
        t = t.ca_certificate(Certificate::from_pem(ca));
    }
    match (&tls.cert_pem, &tls.key_pem) {
        (Some(c), Some(k)) => t = t.identity(Identity::from_pem(c, k)),
        (None, None) => {}
        _ => return Err(EtcdStoreError::TlsHalfIdentity),
    }
    Ok(co.with_tls(t))
}

#[cfg(not(feature = "tls"))]
fn with_tls(_co: ConnectOptions, _tls: &EtcdTls) -> Result<ConnectOptions, EtcdStoreError> {
    Err(EtcdStoreError::TlsUnsupported)
}

/// The etcd form of a transaction: guards as compares, ops with duplicate keys collapsed to
/// the last one (etcd refuses a key written twice in one txn).
fn etcd_txn(txn: &Txn) -> EtcdTxn {
    let compares: Vec<EtcdCompare> = txn
        .compares
        .iter()
        .map(|c| match c {
            Compare::ModRevision { key, revision } => {
                EtcdCompare::mod_revision(key.as_str(), CompareOp::Equal, revision.0 as i64)
            }
            Compare::Absent { key } => EtcdCompare::version(key.as_str(), CompareOp::Equal, 0),
            Compare::Exists { key } => EtcdCompare::version(key.as_str(), CompareOp::Greater, 0),
        })
        .collect();
    let ops: Vec<TxnOp> = last_op_per_key(&txn.ops)
        .into_iter()
        .map(|op| match op {
            Op::Put { key, value } => TxnOp::put(key.as_str(), value.to_vec(), None),
            Op::Delete { key } => TxnOp::delete(key.as_str(), None),
        })
        .collect();
    EtcdTxn::new().when(compares).and_then(ops)
}

/// The ops that remain when only the last op on each key is kept, in their original order.
fn last_op_per_key(ops: &[Op]) -> Vec<&Op> {
    fn key(op: &Op) -> &str {
        match op {
            Op::Put { key, .. } | Op::Delete { key } => key.as_str(),
        }
    }
    let mut last: HashMap<&str, usize> = HashMap::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        last.insert(key(op), i);
    }
    ops.iter()
        .enumerate()
        .filter(|(i, op)| last.get(key(op)) == Some(i))
        .map(|(_, op)| op)
        .collect()
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let key = key.to_owned();
        let resp = self
            .retrying("read a key", transient, |mut kv| {
                let key = key.clone();
                async move { kv.get(key, None).await }
            })
            .await?;
        resp.kvs().first().map(to_kv).transpose()
    }

    async fn range(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError> {
        let end = prefix_end(prefix.as_bytes());
        let (mut out, rev, mut more) = self.page(range_start(prefix), end.clone(), 0).await?;
        // Later pages at the first page's revision: one consistent snapshot.
        while more {
            let Some(last) = out.last() else { break };
            let mut start = last.key.as_bytes().to_vec();
            start.push(0);
            let (kvs, _, m) = self.page(start, end.clone(), rev.0 as i64).await?;
            more = m && !kvs.is_empty();
            out.extend(kvs);
        }
        Ok((out, rev))
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResult, StoreError> {
        let t = etcd_txn(&txn);
        let resp = self
            .retrying("commit a transaction", never_applied, |mut kv| {
                let t = t.clone();
                async move { kv.txn(t).await }
            })
            .await?;
        Ok(TxnResult {
            succeeded: resp.succeeded(),
            revision: header_revision(resp.header())?,
        })
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream, StoreError> {
        let w = Watcher {
            client: self.watch.clone(),
            start: range_start(prefix),
            end: prefix_end(prefix.as_bytes()),
            next: from.0 as i64,
            resumptions: self.resumptions.clone(),
        };
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        // The first stream is opened here so that an unreachable cluster fails the call.
        let first = w.open(self.opts.retry_for).await?;
        tokio::spawn(w.run(first, tx));
        Ok(futures::stream::unfold(rx, |mut rx| async move {
            let item = rx.recv().await?;
            Some((item, rx))
        })
        .boxed())
    }

    async fn put_leased(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
    ) -> Result<LeaseGuard, StoreError> {
        let ttl_s = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let id = self.grant_and_put(key, &value, ttl_s).await?;
        let current = Arc::new(std::sync::atomic::AtomicI64::new(id));
        let keeper = LeaseKeeper {
            store: self.clone(),
            key: key.to_string(),
            value,
            ttl_s,
            current: current.clone(),
        };
        let task = tokio::spawn(keeper.run());
        let mut lease = self.lease.clone();
        Ok(LeaseGuard::new(move || {
            task.abort();
            // Revoke at once so that others see the key go now, not a TTL later.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let id = current.load(Ordering::Relaxed);
                rt.spawn(async move {
                    let _ = lease.revoke(id).await;
                });
            }
        }))
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        let resp = self
            .retrying("read the revision", transient, |mut kv| async move {
                kv.get(vec![0], Some(GetOptions::new().with_count_only()))
                    .await
            })
            .await?;
        header_revision(resp.header())
    }

    async fn compact(&self, up_to: Revision) -> Result<(), StoreError> {
        let current = self.revision().await?;
        let target = (up_to.0 + 1).min(current.0).max(1) as i64;
        let res = self
            .retrying("compact history", transient, |mut kv| async move {
                kv.compact(target, Some(CompactionOptions::new().with_physical()))
                    .await
            })
            .await;
        match res {
            Ok(_) => Ok(()),
            // Already compacted at or past the target: nothing to do.
            Err(StoreError::Backend { source, .. })
                if source
                    .to_string()
                    .contains("required revision has been compacted") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// Keeps a leased key alive: keep-alives at a third of the TTL; a lease that expired anyway
/// (etcd unreachable for longer than the TTL) is granted anew and the key put again, so the
/// host reappears once etcd is back.
struct LeaseKeeper {
    store: EtcdStore,
    key: String,
    value: Bytes,
    ttl_s: i64,
    current: Arc<std::sync::atomic::AtomicI64>,
}

impl LeaseKeeper {
    async fn run(self) {
        let ttl = Duration::from_secs(u64::try_from(self.ttl_s).unwrap_or(1));
        let period = ttl / 3;
        let mut last_ok = tokio::time::Instant::now();
        loop {
            let id = self.current.load(Ordering::Relaxed);
            let alive = self.keep(id, period, &mut last_ok).await;
            // A lease etcd says is gone, or one not renewed for a whole TTL (keep-alive
            // streams failing), is granted anew and the key put again.
            if alive && last_ok.elapsed() < ttl {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            match self
                .store
                .grant_and_put(&self.key, &self.value, self.ttl_s)
                .await
            {
                Ok(id) => {
                    tracing::warn!(key = %self.key, lease = id, "lease had expired; key put again");
                    self.current.store(id, Ordering::Relaxed);
                    last_ok = tokio::time::Instant::now();
                }
                Err(e) => {
                    tracing::warn!(key = %self.key, error = %e, "failed to renew an expired lease; retrying");
                    tokio::time::sleep(period.min(Duration::from_secs(1))).await;
                }
            }
        }
    }

    /// Sends keep-alives until the stream breaks (returns true: the lease may still live)
    /// or etcd says the lease is gone (false). `last_ok` is when etcd last confirmed it.
    /// etcd-client's `keep_alive` sends the first request and consumes its answer itself, so
    /// each round here is: wait a period, send, read that request's answer.
    async fn keep(&self, id: i64, period: Duration, last_ok: &mut tokio::time::Instant) -> bool {
        let mut client = self.store.lease.clone();
        let (mut keeper, mut stream) = match client.keep_alive(id).await {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(error = %e, "failed to open a lease keep-alive stream");
                return true;
            }
        };
        *last_ok = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(period).await;
            if keeper.keep_alive().await.is_err() {
                return true;
            }
            match tokio::time::timeout(period * 2, stream.message()).await {
                Ok(Ok(Some(r))) if r.ttl() <= 0 => return false,
                Ok(Ok(Some(_))) => *last_ok = tokio::time::Instant::now(),
                Ok(Ok(None)) => return true,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "lease keep-alive stream broke");
                    return true;
                }
                Err(_) => {
                    tracing::debug!("no keep-alive answer in time; reopening the stream");
                    return true;
                }
            }
        }
    }
}

/// One logical watch, possibly spread over several etcd watch streams.
struct Watcher {
    client: WatchClient,
    start: Vec<u8>,
    end: Vec<u8>,
    /// The revision of the next event to deliver; 0 until the first stream told "now".
    next: i64,
    resumptions: Arc<AtomicU64>,
}

/// What one etcd stream said before it stopped.
enum StreamEnd {
    /// The consumer dropped the stream: stop.
    Closed,
    /// History from `next` is gone: deliver `Compacted` and stop.
    Compacted(i64),
    /// Broken or canceled (member died, lost its leader): open a new stream from `next`.
    Broken(String),
}

impl Watcher {
    /// Opens an etcd watch from `next`, retrying for up to `retry_for`.
    async fn open(&self, retry_for: Duration) -> Result<etcd_client::WatchStream, StoreError> {
        let start = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(20);
        loop {
            let mut o = WatchOptions::new().with_range(self.end.clone());
            if self.next > 0 {
                o = o.with_start_revision(self.next);
            }
            match self.client.clone().watch(self.start.clone(), Some(o)).await {
                Ok(s) => return Ok(s),
                Err(e) if start.elapsed() < retry_for => {
                    tracing::debug!(error = %e, "failed to open an etcd watch; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                Err(e) => return Err(backend("open a watch")(e)),
            }
        }
    }

    async fn run(
        mut self,
        mut stream: etcd_client::WatchStream,
        tx: mpsc::Sender<Result<Event, StoreError>>,
    ) {
        loop {
            match self.follow(&mut stream, &tx).await {
                StreamEnd::Closed => return,
                StreamEnd::Compacted(compact_revision) => {
                    let _ = tx
                        .send(Err(StoreError::Compacted {
                            requested: Revision(self.next.max(0) as u64),
                            compacted: Revision(compact_revision.saturating_sub(1).max(0) as u64),
                        }))
                        .await;
                    return;
                }
                StreamEnd::Broken(why) => {
                    tracing::info!(reason = %why, next = self.next, "etcd watch broke; resuming");
                    self.resumptions.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Reopen until it works or the consumer is gone: a watch ends only when the
            // store does (or with Compacted).
            stream = loop {
                if tx.is_closed() {
                    return;
                }
                match self.open(Duration::from_secs(5)).await {
                    Ok(s) => break s,
                    Err(e) => tracing::warn!(error = %e, "failed to reopen an etcd watch"),
                }
            };
        }
    }

    /// Delivers the events of one etcd stream until it ends.
    async fn follow(
        &mut self,
        stream: &mut etcd_client::WatchStream,
        tx: &mpsc::Sender<Result<Event, StoreError>>,
    ) -> StreamEnd {
        loop {
            let msg = tokio::select! {
                _ = tx.closed() => return StreamEnd::Closed,
                m = stream.message() => m,
            };
            let resp = match msg {
                Ok(Some(r)) => r,
                Ok(None) => return StreamEnd::Broken("stream ended".into()),
                Err(e) => return StreamEnd::Broken(e.to_string()),
            };
            if resp.compact_revision() > 0 {
                return StreamEnd::Compacted(resp.compact_revision());
            }
            if self.next == 0 {
                // A watch "from now": the creation header says what "now" was.
                if let Some(h) = resp.header() {
                    self.next = h.revision() + 1;
                }
            }
            let mut last = None;
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                let rev = kv.mod_revision();
                // A resumed stream may repeat what the broken one delivered.
                if rev < self.next {
                    continue;
                }
                let item = to_kv(kv).map(|mut kv| {
                    let kind = match ev.event_type() {
                        EventType::Put => EventKind::Put,
                        EventType::Delete => {
                            kv.value = Bytes::new();
                            EventKind::Delete
                        }
                    };
                    Event { kind, kv }
                });
                if tx.send(item).await.is_err() {
                    return StreamEnd::Closed;
                }
                last = Some(rev);
            }
            // etcd never splits one revision's events over two responses (no fragmenting).
            if let Some(rev) = last {
                self.next = rev + 1;
            }
            if resp.canceled() {
                return StreamEnd::Broken(format!("canceled: {}", resp.cancel_reason()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte_below_ff() {
        assert_eq!(prefix_end(b"/a/b/"), b"/a/b0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }

    #[test]
    fn duplicate_keys_keep_the_last_op() {
        let t = Txn::new()
            .put("/k", "1")
            .put("/j", "x")
            .delete("/k")
            .put("/k", "2");
        let kept = last_op_per_key(&t.ops);
        assert_eq!(kept, vec![&t.ops[1], &t.ops[3]]);
    }
}
