//! The local controller: mirrors the topology from the store, compiles it with this host's
//! port bindings, and keeps the integration bridge's flows in sync.
//!
//! One task owns the loop. Its inputs are the store's watch (model changes), the OVSDB
//! binding view (which logical port sits on which switch port) and the switches that connect
//! to the OpenFlow listener. Each input becomes an incremental compile; the compile delta
//! becomes one ofctrl update (a bundle plus barrier). Nothing is ever flushed: on (re)connect
//! ofctrl reads the switch's flows and sends only the difference.
//!
//! Consistency: the mirror applies store events in revision order, so the compiled state
//! always corresponds to one store revision ([`Status::compiled_revision`]); once ofctrl
//! acknowledges the update built from it, [`Status::installed_revision`] catches up. A watch
//! that falls behind the store's history (compaction) triggers a full resync: a fresh range,
//! a new mirror and a full compile, which ofctrl again turns into a minimal difference.

pub mod apps;
pub mod chassis;
pub mod mirror;
pub mod p4;
pub mod selective;

pub use wyvern_ofpipe::{REG_INPORT, REG_NETWORK, REG_OUTPORT, REG_ROUTER};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use uuid::Uuid;
use wyvern_model::{ModelConfig, Topology};
use wyvern_openflow::conn::{ConnError, ListenAddr, Listener, SwitchConfig, SwitchEvent};
use wyvern_openflow::ofctrl::{Completion, Ofctrl};
use wyvern_ovsdb::{BindingEvent, BindingWatch, BridgeConfig, Client, DatapathType, Remote};
use wyvern_pipeline::{Bindings, CompileConfig, CompileError, Compiler, Delta, KeyKind};
use wyvern_store::{Revision, Store, StoreError, Txn};

use crate::chassis::ChassisMsg;
use crate::mirror::{change_from_events, decode, MODEL_PREFIX};

/// Where this host's keys live in the store: `/wyvern/local/keys/<kind>/<uuid>` = key.
/// Outside the model prefix on purpose: they are host-local and never synced to others.
pub const KEYS_PREFIX: &str = "/wyvern/local/keys/";

/// Where a host's keys live: [`KEYS_PREFIX`] on a single host, and under the chassis name
/// when many hosts share one store (each numbers its own pipeline).
pub fn keys_prefix(chassis: Option<&str>) -> String {
    match chassis {
        Some(name) => format!("/wyvern/local/chassis/{name}/keys/"),
        None => KEYS_PREFIX.to_owned(),
    }
}

type KeyChanges = Vec<(KeyKind, Uuid, Option<u32>)>;

/// How long switches wait for the first OVSDB binding snapshot before being served anyway.
const BINDINGS_GRACE: Duration = Duration::from_secs(10);

/// Settings of the local controller.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// The integration bridge wyvern owns (`br-int`).
    pub bridge: String,
    pub datapath_type: DatapathType,
    /// Where ovsdb-server listens; `None` runs without a switch (compile only).
    pub ovsdb: Option<Remote>,
    /// Where bridges connect to us.
    pub openflow_listen: ListenAddr,
    pub compile: CompileConfig,
    /// This host's chassis (registration, binding host, overlay); `None`: a single host.
    pub chassis: Option<chassis::ChassisConfig>,
    /// Mirror everything, or only what the local ports reach ([`selective`]).
    pub sync: SyncMode,
}

/// How much of the topology the local controller mirrors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// One range + watch of the whole model prefix (a single host).
    #[default]
    Full,
    /// Only the networks (and routers) the local ports reach: [`selective::SelectiveSync`].
    Selective,
}

/// Failures that stop the local controller from starting.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("failed to listen for OpenFlow on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: ConnError,
    },
    #[error("failed to read the topology from the store: {0}")]
    Store(#[from] StoreError),
    #[error("failed to compile the pipeline: {0}")]
    Compile(#[from] CompileError),
    #[error("failed to map the pipeline to OpenFlow: {0}")]
    Map(#[from] wyvern_ofpipe::OfMapError),
}

/// A logical port's status as the switch sees it, for the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortStatus {
    pub port: Uuid,
    pub active: bool,
    /// The chassis that bound it (its `binding:host_id`), when this host did.
    pub host: Option<String>,
}

/// What the controller has compiled, shared with the apps, `wyvern trace` and metrics.
#[derive(Debug)]
pub struct State {
    pub topo: Topology,
    pub bindings: Bindings,
    pub compiler: Compiler,
}

/// Progress counters, readable without locks.
#[derive(Debug)]
pub struct Status {
    /// Store revision the compiled pipeline reflects.
    pub compiled_revision: AtomicU64,
    /// Store revision whose flows the switch has acknowledged (barrier).
    pub installed_revision: AtomicU64,
    pub full_compiles: AtomicU64,
    pub incremental_compiles: AtomicU64,
    pub owners_recompiled: AtomicU64,
    pub flows_added: AtomicU64,
    pub flows_removed: AtomicU64,
    pub mirror_errors: AtomicU64,
    pub sync_errors: AtomicU64,
    pub packet_ins: AtomicU64,
    /// Unsolicited OpenFlow errors (no pending request), by
    /// [`wyvern_openflow::ofctrl::error_type_index`].
    pub unsolicited_errors: [AtomicU64; wyvern_openflow::ofctrl::ERROR_TYPES.len()],
    /// Switch connections lost.
    pub switch_disconnects: AtomicU64,
    /// Reactive flows the switch removed on their idle or hard timeout (FLOW_REMOVED).
    pub reactive_flows_expired: AtomicU64,
    /// Compile time by kind (`full`, `incremental`), mapping to OpenFlow included.
    pub compile_duration: wyvern_metrics::prometheus::HistogramVec,
}

impl Default for Status {
    fn default() -> Self {
        let compile_duration = wyvern_metrics::prometheus::HistogramVec::new(
            wyvern_metrics::prometheus::HistogramOpts::new(
                "wyvern_pipeline_compile_duration_seconds",
                "Time to compile a model or binding change into flows and map them to OpenFlow, by kind (full, incremental).",
            )
            .buckets(wyvern_metrics::latency_buckets()),
            &["kind"],
        )
        // Constant name, help and label with valid buckets: creation cannot fail.
        .unwrap_or_else(|e| unreachable!("invalid histogram options: {e}"));
        for kind in ["full", "incremental"] {
            compile_duration.with_label_values(&[kind]);
        }
        Status {
            compiled_revision: AtomicU64::new(0),
            installed_revision: AtomicU64::new(0),
            full_compiles: AtomicU64::new(0),
            incremental_compiles: AtomicU64::new(0),
            owners_recompiled: AtomicU64::new(0),
            flows_added: AtomicU64::new(0),
            flows_removed: AtomicU64::new(0),
            mirror_errors: AtomicU64::new(0),
            sync_errors: AtomicU64::new(0),
            packet_ins: AtomicU64::new(0),
            unsolicited_errors: Default::default(),
            switch_disconnects: AtomicU64::new(0),
            reactive_flows_expired: AtomicU64::new(0),
            compile_duration,
        }
    }
}

/// OFPT_FLOW_REMOVED; its body starts with cookie (8), priority (2), reason (1).
const OFPT_FLOW_REMOVED: u8 = 11;
/// OFPRR_IDLE_TIMEOUT and OFPRR_HARD_TIMEOUT: the flow expired (not deleted by us).
fn flow_expired(body: &[u8]) -> bool {
    matches!(body.get(10), Some(0 | 1))
}

/// Handle to a running local controller.
#[derive(Clone)]
pub struct LocalController {
    state: Arc<RwLock<State>>,
    status: Arc<Status>,
    ofctrl: Ofctrl,
    listen: Option<ListenAddr>,
    keys_tx: mpsc::UnboundedSender<KeyChanges>,
    /// Bumped after every compile that changed the pipeline (for the P4 back end).
    compiled: Arc<tokio::sync::watch::Sender<u64>>,
    /// This host's chassis name, when it is part of a multi-host deployment.
    chassis: Option<Arc<str>>,
    /// Live chassis as followed from the store (empty on a single host).
    chassis_view: Arc<RwLock<chassis::ChassisView>>,
    /// True once the first OVSDB binding snapshot is compiled (at once without a switch).
    synced: Arc<tokio::sync::watch::Sender<bool>>,
    /// Counts of the selective mirror (updated by the loop); `None` in full mode.
    held: Option<Arc<RwLock<selective::Held>>>,
}

impl LocalController {
    /// Binds the OpenFlow listener, points the bridge at it (creating the bridge if
    /// needed), loads and compiles the topology, and starts the loop. `status_tx` receives
    /// port status changes for the API; `packet_in_tx`, if given, every packet-in.
    pub async fn start(
        cfg: LocalConfig,
        store: Arc<dyn Store>,
        status_tx: mpsc::UnboundedSender<PortStatus>,
        packet_in_tx: Option<mpsc::UnboundedSender<SwitchEvent>>,
    ) -> Result<LocalController, LocalError> {
        let ofctrl = Ofctrl::spawn();
        let listener = Listener::bind(&cfg.openflow_listen)
            .await
            .map_err(|source| LocalError::Listen {
                addr: cfg.openflow_listen.to_string(),
                source,
            })?;
        let listen = listener.local_addr();
        // Switches are served only once the first binding snapshot is compiled: syncing
        // a reconnecting bridge against a pipeline that does not know its ports yet would
        // delete their (correct) flows and add them back a moment later.
        let (events_tx, events) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
        {
            let ofctrl = ofctrl.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(BINDINGS_GRACE, ready_rx).await;
                let mut rx = ofctrl.serve(listener, SwitchConfig::default());
                while let Some(ev) = rx.recv().await {
                    if events_tx.send(ev).is_err() {
                        break;
                    }
                }
            });
        }

        let state = Arc::new(RwLock::new(State {
            topo: Topology::new(ModelConfig::default()),
            bindings: Bindings::new(),
            compiler: Compiler::new(cfg.compile),
        }));
        let status = Arc::new(Status::default());
        // Keys from the previous run first: the same numbering means the same flows, so a
        // restart changes nothing on the switch that was right.
        let keys_at = keys_prefix(cfg.chassis.as_ref().map(|c| c.name.as_str()));
        let (keys, _) = store.range(&keys_at).await?;
        let restored: Vec<(KeyKind, Uuid, u32)> = keys
            .iter()
            .filter_map(|kv| {
                let rest = kv.key.strip_prefix(keys_at.as_str())?;
                let (kind, id) = rest.split_once('/')?;
                let k = std::str::from_utf8(&kv.value).ok()?.parse().ok()?;
                Some((KeyKind::parse(kind)?, id.parse().ok()?, k))
            })
            .collect();
        state
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .compiler
            .restore_keys(restored);
        let (keys_tx, keys_rx) = mpsc::unbounded_channel();
        tokio::spawn(persist_keys(store.clone(), keys_at.clone(), keys_rx));
        let this = LocalController {
            state,
            status,
            ofctrl,
            listen: listen.clone(),
            keys_tx,
            compiled: Arc::new(tokio::sync::watch::Sender::new(0)),
            chassis: cfg.chassis.as_ref().map(|c| Arc::from(c.name.as_str())),
            chassis_view: Arc::default(),
            synced: Arc::new(tokio::sync::watch::Sender::new(false)),
            held: (cfg.sync == SyncMode::Selective).then(Arc::default),
        };
        // Register this host and take the overlay view before the first compile, so that
        // remote ports compile to tunnels from the start.
        let chassis_rx = match &cfg.chassis {
            Some(c) => {
                let guard = chassis::register(&store, c, cfg.datapath_type.as_str()).await?;
                let (kvs, rev) = store.range(chassis::CHASSIS_PREFIX).await?;
                let view = chassis::ChassisView::from_kvs(&kvs);
                if c.tunnel_ip.is_some() {
                    this.write()
                        .bindings
                        .set_overlay(Some(view.overlay(&c.name)));
                }
                *this.chassis_view.write().unwrap_or_else(|e| e.into_inner()) = view;
                if let (Some(remote), Some(ip)) = (&cfg.ovsdb, c.tunnel_ip) {
                    tokio::spawn(chassis::ensure_tunnel_forever(
                        remote.clone(),
                        cfg.bridge.clone(),
                        ip,
                    ));
                }
                Some(chassis::follow(
                    store.clone(),
                    rev,
                    &kvs,
                    Some(&c.name),
                    c.vanish_grace,
                    guard,
                ))
            }
            None => None,
        };

        // Selective: the held topology starts empty and fills as local ports bind.
        let (revision, selective) = match cfg.sync {
            SyncMode::Full => (this.resync(store.as_ref()).await?, None),
            SyncMode::Selective => {
                let sync = selective::SelectiveSync::start(store.clone()).await?;
                let revision =
                    this.install_full(Topology::new(ModelConfig::default()), 0, Revision(0))?;
                this.publish_held(&sync);
                (revision, Some(sync))
            }
        };
        let bindings = match &cfg.ovsdb {
            Some(remote) => {
                let target = listen.as_ref().map(controller_target);
                tokio::spawn(ensure_bridge_forever(
                    remote.clone(),
                    cfg.bridge.clone(),
                    cfg.datapath_type,
                    target,
                ));
                Some(BindingWatch::spawn(remote.clone()))
            }
            None => None,
        };
        let ready = if bindings.is_some() {
            Some(ready_tx)
        } else {
            let _ = ready_tx.send(());
            this.synced.send_replace(true);
            None
        };
        let worker = this.clone();
        tokio::spawn(async move {
            let inputs = Inputs {
                bindings,
                events,
                status_tx,
                packet_in_tx,
                ready,
                chassis: chassis_rx,
                selective,
            };
            worker.run(store, revision, inputs).await;
        });
        Ok(this)
    }

    /// Where bridges connect (with the real port when the configured one was 0).
    pub fn openflow_addr(&self) -> Option<&ListenAddr> {
        self.listen.as_ref()
    }

    pub fn state(&self) -> &Arc<RwLock<State>> {
        &self.state
    }

    pub fn status(&self) -> &Arc<Status> {
        &self.status
    }

    pub fn ofctrl(&self) -> &Ofctrl {
        &self.ofctrl
    }

    /// Changes after every compile that changed the pipeline; [`State::compiler`] then
    /// holds the new IR (what [`p4`] writes to a P4Runtime target).
    pub fn subscribe_compiles(&self) -> tokio::sync::watch::Receiver<u64> {
        self.compiled.subscribe()
    }

    /// Becomes true once the first binding snapshot is compiled: back ends sync only from
    /// then on (before it, bound ports' entries would be deleted and written again).
    pub fn bindings_synced(&self) -> tokio::sync::watch::Receiver<bool> {
        self.synced.subscribe()
    }

    /// Counts of what this host mirrors: objects held per kind and watches open (the
    /// selective mirror's own counts, or the whole topology and one watch in full mode).
    pub fn held(&self) -> selective::Held {
        match &self.held {
            Some(h) => *h.read().unwrap_or_else(|e| e.into_inner()),
            None => {
                let st = self.state.read().unwrap_or_else(|e| e.into_inner());
                selective::Held {
                    networks: st.topo.networks().count(),
                    subnets: st.topo.subnets().count(),
                    ports: st.topo.ports().count(),
                    routers: st.topo.routers().count(),
                    watches: 1,
                    ..Default::default()
                }
            }
        }
    }

    /// Gauges of what this host mirrors, built at scrape time from [`LocalController::held`]
    /// (docs/metrics.md, "Sync"): objects held per kind, watches and partitions open,
    /// whether the mirror is selective, store events received.
    pub fn sync_metric_families(&self) -> Vec<wyvern_metrics::prometheus::proto::MetricFamily> {
        use wyvern_metrics::prometheus::core::Collector;
        use wyvern_metrics::prometheus::{IntCounter, IntGauge, IntGaugeVec, Opts};
        let h = self.held();
        let mut out = Vec::new();
        if let Ok(objects) = IntGaugeVec::new(
            Opts::new(
                "wyvern_sync_objects_held",
                "Objects in the local controller's mirrored topology, by kind (network, subnet, port, router).",
            ),
            &["kind"],
        ) {
            for (kind, n) in [
                ("network", h.networks),
                ("subnet", h.subnets),
                ("port", h.ports),
                ("router", h.routers),
            ] {
                objects.with_label_values(&[kind]).set(n as i64);
            }
            out.extend(objects.collect());
        }
        let gauges = [
            (
                "wyvern_sync_watches",
                "Store watches the local controller keeps open for the topology.",
                h.watches as i64,
            ),
            (
                "wyvern_sync_partitions",
                "Network partitions the selective mirror holds (0 in full mode).",
                h.partitions as i64,
            ),
            (
                "wyvern_sync_selective",
                "1 when the local controller mirrors only what its ports reach, 0 when it mirrors everything.",
                i64::from(self.held.is_some()),
            ),
        ];
        for (name, help, v) in gauges {
            if let Ok(g) = IntGauge::new(name, help) {
                g.set(v);
                out.extend(g.collect());
            }
        }
        if let Ok(c) = IntCounter::new(
            "wyvern_sync_events_total",
            "Store events the selective mirror received on all its watches (0 in full mode).",
        ) {
            c.inc_by(h.events);
            out.extend(c.collect());
        }
        out
    }

    /// The sync mode this controller runs in.
    pub fn sync_mode(&self) -> SyncMode {
        if self.held.is_some() {
            SyncMode::Selective
        } else {
            SyncMode::Full
        }
    }

    fn publish_held(&self, sync: &selective::SelectiveSync) {
        if let Some(h) = &self.held {
            *h.write().unwrap_or_else(|e| e.into_inner()) = sync.held();
        }
    }

    /// Reads the whole topology and recompiles everything; returns the revision read.
    async fn resync(&self, store: &dyn Store) -> Result<Revision, LocalError> {
        let (kvs, revision) = store.range(MODEL_PREFIX).await?;
        let mut topo = Topology::new(ModelConfig::default());
        for kv in &kvs {
            match decode(kv) {
                Ok(Some(_)) => {
                    if let Err(e) = topo.apply_put(&kv.key, &kv.value) {
                        self.status.mirror_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(key = %kv.key, error = %e, "failed to mirror object");
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    self.status.mirror_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "failed to mirror object");
                }
            }
        }
        self.install_full(topo, kvs.len(), revision)
    }

    /// Replaces the mirrored topology with `topo` and compiles it in full.
    fn install_full(
        &self,
        topo: Topology,
        objects: usize,
        revision: Revision,
    ) -> Result<Revision, LocalError> {
        let started = std::time::Instant::now();
        let (flows, groups) = {
            let mut st = self.write();
            st.topo = topo;
            let State {
                topo,
                bindings,
                compiler,
            } = &mut *st;
            compiler.full(topo, bindings)?;
            let _ = self.keys_tx.send(compiler.take_key_changes());
            wyvern_ofpipe::map_all(compiler.flows(), compiler.groups())?
        };
        self.status
            .compile_duration
            .with_label_values(&["full"])
            .observe(started.elapsed().as_secs_f64());
        self.status.full_compiles.fetch_add(1, Ordering::Relaxed);
        self.status
            .compiled_revision
            .store(revision.0, Ordering::Relaxed);
        tracing::info!(objects, flows = flows.len(), %revision, "compiled full pipeline");
        self.track(self.ofctrl.set_desired(flows, groups), revision.0);
        self.compiled.send_modify(|g| *g += 1);
        Ok(revision)
    }

    /// The incremental compile time (the mapping to OpenFlow happens in `push`, which is
    /// cheap next to it and not included).
    fn observe_incremental(&self, started: std::time::Instant) {
        self.status
            .compile_duration
            .with_label_values(&["incremental"])
            .observe(started.elapsed().as_secs_f64());
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        // A panic while holding the lock would be a bug elsewhere; the state is still usable.
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends a compile delta to the switch.
    fn push(&self, delta: &Delta, revision: u64) {
        self.status
            .incremental_compiles
            .fetch_add(1, Ordering::Relaxed);
        self.status
            .owners_recompiled
            .fetch_add(delta.owners_recompiled as u64, Ordering::Relaxed);
        self.status
            .compiled_revision
            .fetch_max(revision, Ordering::Relaxed);
        if delta.is_empty() {
            self.status
                .installed_revision
                .fetch_max(revision, Ordering::Relaxed);
            return;
        }
        self.status
            .flows_added
            .fetch_add(delta.added.len() as u64, Ordering::Relaxed);
        self.status
            .flows_removed
            .fetch_add(delta.removed.len() as u64, Ordering::Relaxed);
        self.compiled.send_modify(|g| *g += 1);
        match wyvern_ofpipe::map_delta(delta) {
            Ok(update) => self.track(self.ofctrl.update(update), revision),
            Err(e) => {
                self.status.sync_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "failed to map compiled flows");
            }
        }
    }

    /// Records the installed revision once the switch acknowledges, and reports rejects
    /// with the flow that caused them.
    fn track(&self, completion: Completion, revision: u64) {
        let status = self.status.clone();
        tokio::spawn(async move {
            match completion.wait().await {
                Ok(report) => {
                    for e in &report.errors {
                        status.sync_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(error = %e, "switch rejected a flow");
                    }
                    status
                        .installed_revision
                        .fetch_max(revision, Ordering::Relaxed);
                }
                // Not connected yet, or disconnected: the next attach syncs everything.
                Err(e) => tracing::debug!(error = %e, "update not installed now"),
            }
        });
    }

    async fn run(self, store: Arc<dyn Store>, mut revision: Revision, inputs: Inputs) {
        let Inputs {
            mut bindings,
            mut events,
            status_tx,
            packet_in_tx,
            mut ready,
            mut chassis,
            mut selective,
        } = inputs;
        // Selective mode: switches wait for the first binding snapshot AND the held
        // topology it calls for (else a restarted host's flows would be deleted first).
        let mut ready_when_settled = false;
        loop {
            // The full mirror's one watch (selective mode has its own watches).
            let mut watch = match &selective {
                Some(_) => None,
                None => match store.watch(MODEL_PREFIX, Revision(revision.0 + 1)).await {
                    Ok(w) => Some(w),
                    Err(e) => {
                        tracing::error!(error = %e, "failed to watch the store; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                },
            };
            loop {
                tokio::select! {
                    upd = next_selective(&mut selective) => match upd {
                        Some(Ok(update)) => {
                            revision = revision.max(update.revision);
                            self.apply_change(update.change, revision.0, &status_tx);
                            if let Some(sync) = &selective {
                                self.publish_held(sync);
                                if ready_when_settled && sync.is_settled() {
                                    ready_when_settled = false;
                                    if let Some(tx) = ready.take() {
                                        let _ = tx.send(());
                                    }
                                    self.synced.send_replace(true);
                                }
                            }
                        }
                        Some(Err(e)) => tracing::warn!(error = %e, "selective sync: store error; retrying"),
                        None => return,
                    },
                    ev = next_watch(&mut watch) => match ev {
                        Some(Ok(first)) => {
                            // Take everything already delivered: one compile per burst.
                            let mut batch = vec![first];
                            let mut ended = None;
                            while let Some(watch) = watch.as_mut() {
                                match watch.now_or_never_ready() {
                                    Some(Some(Ok(ev))) => batch.push(ev),
                                    Some(Some(Err(e))) => {
                                        ended = Some(e);
                                        break;
                                    }
                                    Some(None) | None => break,
                                }
                            }
                            revision = batch.last().map(|e| e.revision()).unwrap_or(revision);
                            self.apply_events(&batch, revision.0, &status_tx);
                            if let Some(e) = ended {
                                tracing::warn!(error = %e, "store watch ended; resyncing");
                                match self.resync(store.as_ref()).await {
                                    Ok(r) => revision = r,
                                    Err(e) => tracing::error!(error = %e, "failed to resync"),
                                }
                                break;
                            }
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "store watch ended; resyncing");
                            match self.resync(store.as_ref()).await {
                                Ok(r) => revision = r,
                                Err(e) => tracing::error!(error = %e, "failed to resync"),
                            }
                            break;
                        }
                        None => return,
                    },
                    msg = next_chassis(&mut chassis) => match msg {
                        Some(msg) => self.apply_chassis(msg, revision.0, &status_tx, &store),
                        None => chassis = None,
                    },
                    ev = next_binding(&mut bindings) => match ev {
                        Some(BindingEvent::Synced) => match &selective {
                            Some(sync) if !sync.is_settled() => ready_when_settled = true,
                            _ => {
                                if let Some(tx) = ready.take() {
                                    let _ = tx.send(());
                                }
                                self.synced.send_replace(true);
                            }
                        },
                        Some(ev) => {
                            self.apply_binding(ev, revision.0, &status_tx);
                            if let Some(sync) = selective.as_mut() {
                                let local: Vec<Uuid> = self
                                    .state
                                    .read()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .bindings
                                    .iter()
                                    .map(|(id, _)| *id)
                                    .collect();
                                sync.set_local_ports(local);
                            }
                        }
                        None => bindings = None,
                    },
                    ev = events.recv() => match ev {
                        Some(ev) => {
                            if let SwitchEvent::PacketIn { .. } = ev {
                                self.status.packet_ins.fetch_add(1, Ordering::Relaxed);
                            }
                            match &ev {
                                SwitchEvent::Error { xid, error } => {
                                    let i = wyvern_openflow::ofctrl::error_type_index(error.err_type);
                                    self.status.unsolicited_errors[i].fetch_add(1, Ordering::Relaxed);
                                    tracing::warn!(xid, %error, "unsolicited OpenFlow error");
                                }
                                SwitchEvent::Disconnected { .. } => {
                                    self.status.switch_disconnects.fetch_add(1, Ordering::Relaxed);
                                }
                                SwitchEvent::Message {
                                    message: wyvern_openflow::wire::Message::Unknown { msg_type: OFPT_FLOW_REMOVED, body },
                                    ..
                                } if flow_expired(body) => {
                                    self.status.reactive_flows_expired.fetch_add(1, Ordering::Relaxed);
                                }
                                _ => {}
                            }
                            if let Some(tx) = &packet_in_tx {
                                let _ = tx.send(ev);
                            }
                        }
                        None => return,
                    },
                }
            }
        }
    }

    fn apply_events(
        &self,
        batch: &[wyvern_store::Event],
        revision: u64,
        status_tx: &mpsc::UnboundedSender<PortStatus>,
    ) {
        let mut errors = Vec::new();
        let change = {
            let st = self.state.read().unwrap_or_else(|e| e.into_inner());
            change_from_events(&st.topo, batch, &mut errors)
        };
        for e in errors {
            self.status.mirror_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "failed to mirror store event");
        }
        self.apply_change(change, revision, status_tx);
    }

    /// Applies a model change to the mirrored topology, compiles it and sends the delta.
    fn apply_change(
        &self,
        change: wyvern_model::Change,
        revision: u64,
        status_tx: &mpsc::UnboundedSender<PortStatus>,
    ) {
        if change.is_empty() {
            self.status
                .compiled_revision
                .fetch_max(revision, Ordering::Relaxed);
            return;
        }
        let started = std::time::Instant::now();
        let delta = {
            let mut st = self.write();
            st.topo.apply(&change);
            let State {
                topo,
                bindings,
                compiler,
            } = &mut *st;
            // A port created after its interface was plugged gets its status now.
            for op in &change.ops {
                if let (None, Some(wyvern_model::Object::Port(p))) = (&op.old, &op.new) {
                    if bindings.ofport(&p.id).is_some() {
                        let _ = status_tx.send(PortStatus {
                            port: p.id,
                            active: true,
                            host: self.chassis.as_deref().map(str::to_owned),
                        });
                    }
                }
            }
            let delta = compiler.update(topo, bindings, &change);
            let _ = self.keys_tx.send(compiler.take_key_changes());
            delta
        };
        self.observe_incremental(started);
        match delta {
            Ok(delta) => self.push(&delta, revision),
            Err(e) => {
                self.status.sync_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "failed to compile a change");
            }
        }
    }

    fn apply_binding(
        &self,
        ev: BindingEvent,
        revision: u64,
        status_tx: &mpsc::UnboundedSender<PortStatus>,
    ) {
        let (lport, ofport, active) = match &ev {
            BindingEvent::Bound { lport, binding } => {
                (lport, Some(binding.ofport), binding.link_up)
            }
            BindingEvent::Changed { lport, new, .. } => (lport, Some(new.ofport), new.link_up),
            BindingEvent::Unbound { lport, .. } => (lport, None, false),
            BindingEvent::Synced | BindingEvent::Disconnected => return,
        };
        // Interfaces whose iface-id is not a UUID are not logical ports of ours.
        let Ok(port) = lport.parse::<Uuid>() else {
            return;
        };
        let started = std::time::Instant::now();
        let delta = {
            let mut st = self.write();
            let State {
                topo,
                bindings,
                compiler,
            } = &mut *st;
            let changed = match ofport {
                Some(o) => bindings.bind(port, o) != Some(o),
                None => bindings.unbind(&port).is_some(),
            };
            // A port unplugged here but bound elsewhere since (a move) is not ours to report.
            let ours = topo.get_port(&port).is_some_and(|p| {
                ofport.is_some()
                    || p.binding_host_id.is_empty()
                    || Some(p.binding_host_id.as_str()) == self.chassis.as_deref()
            });
            if ours {
                let _ = status_tx.send(PortStatus {
                    port,
                    active: ofport.is_some() && active,
                    host: ofport.and(self.chassis.as_deref().map(str::to_owned)),
                });
            }
            if !changed {
                return;
            }
            let delta = compiler.binding_changed(topo, bindings, port);
            let _ = self.keys_tx.send(compiler.take_key_changes());
            delta
        };
        self.observe_incremental(started);
        match delta {
            Ok(delta) => self.push(&delta, revision),
            Err(e) => tracing::error!(error = %e, "failed to compile a binding change"),
        }
    }
}

impl LocalController {
    /// The live chassis as this host follows them.
    pub fn chassis_view(&self) -> chassis::ChassisView {
        self.chassis_view
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A chassis registration changed: new overlay (full compile, flows only) and, on the
    /// janitor host, dead chassis' ports set DOWN.
    fn apply_chassis(
        &self,
        msg: ChassisMsg,
        revision: u64,
        status_tx: &mpsc::UnboundedSender<PortStatus>,
        store: &Arc<dyn Store>,
    ) {
        let Some(me) = self.chassis.clone() else {
            return;
        };
        if matches!(msg, ChassisMsg::Reregistered) {
            // Our registration was created anew (the lease lapsed for longer than the
            // others' grace): a janitor may have set our ports DOWN meanwhile, so report
            // every port bound here ACTIVE again.
            let st = self.state.read().unwrap_or_else(|e| e.into_inner());
            let ports = chassis::own_ports_active(&st.topo, &st.bindings, &me);
            tracing::warn!(
                chassis = %me,
                ports = ports.len(),
                "own chassis registration re-created; reporting bound ports active again"
            );
            for s in ports {
                let _ = status_tx.send(s);
            }
            return;
        }
        let view = {
            let mut view = self.chassis_view.write().unwrap_or_else(|e| e.into_inner());
            let changed = match msg {
                ChassisMsg::Snapshot(kvs) => {
                    let new = chassis::ChassisView::from_kvs(&kvs);
                    let changed = new != *view;
                    *view = new;
                    changed
                }
                ChassisMsg::Event(ev) => match ev.kind {
                    wyvern_store::EventKind::Put => view.put(&ev.kv),
                    wyvern_store::EventKind::Delete => {
                        let gone = view.delete(&ev.kv.key);
                        if let Some(c) = &gone {
                            tracing::warn!(chassis = %c.name, "chassis left (lease expired or stopped)");
                        }
                        gone.is_some()
                    }
                },
                ChassisMsg::Reregistered => false,
            };
            if !changed {
                return;
            }
            view.clone()
        };
        let started = std::time::Instant::now();
        let delta = {
            let mut st = self.write();
            if st.bindings.overlay().is_some() {
                st.bindings.set_overlay(Some(view.overlay(&me)));
            }
            if view.is_janitor(&me) && self.held.is_some() {
                // A selective mirror holds only some networks: the dead chassis' ports
                // are looked up in the store (rare, one range of the partitions).
                tokio::spawn(set_dead_ports_down(
                    store.clone(),
                    view.clone(),
                    me.clone(),
                    status_tx.clone(),
                ));
            } else if view.is_janitor(&me) {
                for p in st.topo.ports() {
                    report_down_if_orphaned(p, &view, &me, status_tx);
                }
            }
            let State {
                topo,
                bindings,
                compiler,
            } = &mut *st;
            let delta = compiler.full(topo, bindings);
            let _ = self.keys_tx.send(compiler.take_key_changes());
            delta
        };
        self.observe_incremental(started);
        match delta {
            Ok(delta) => self.push(&delta, revision),
            Err(e) => tracing::error!(error = %e, "failed to compile a chassis change"),
        }
    }
}

/// The janitor's duty in selective mode: every port in the store bound to a chassis that
/// is gone is reported DOWN (the held topology may not have them).
async fn set_dead_ports_down(
    store: Arc<dyn Store>,
    view: chassis::ChassisView,
    me: Arc<str>,
    status_tx: mpsc::UnboundedSender<PortStatus>,
) {
    let kvs = match store.range(wyvern_model::NET_PREFIX).await {
        Ok((kvs, _)) => kvs,
        Err(e) => {
            tracing::warn!(error = %e, "failed to read ports of vanished chassis");
            return;
        }
    };
    for kv in &kvs {
        if let Ok(Some((_, wyvern_model::Object::Port(p)))) = decode(kv) {
            report_down_if_orphaned(&p, &view, &me, &status_tx);
        }
    }
}

/// Reports `p` DOWN if it is bound to another chassis that is gone and is not DOWN yet
/// (router interfaces have no chassis of their own).
fn report_down_if_orphaned(
    p: &wyvern_model::Port,
    view: &chassis::ChassisView,
    me: &str,
    status_tx: &mpsc::UnboundedSender<PortStatus>,
) {
    let dead = !p.binding_host_id.is_empty()
        && p.binding_host_id != me
        && !view.all.contains_key(&p.binding_host_id);
    if dead && p.status != "DOWN" && !p.is_router_interface() {
        let _ = status_tx.send(PortStatus {
            port: p.id,
            active: false,
            host: None,
        });
    }
}

async fn next_watch(
    w: &mut Option<wyvern_store::WatchStream>,
) -> Option<Result<wyvern_store::Event, StoreError>> {
    match w {
        Some(w) => w.next().await,
        None => std::future::pending().await,
    }
}

async fn next_selective(
    s: &mut Option<selective::SelectiveSync>,
) -> Option<Result<selective::Update, StoreError>> {
    match s {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

async fn next_chassis(c: &mut Option<mpsc::UnboundedReceiver<ChassisMsg>>) -> Option<ChassisMsg> {
    match c {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The loop's inputs and outputs besides the store.
struct Inputs {
    bindings: Option<BindingWatch>,
    events: mpsc::UnboundedReceiver<SwitchEvent>,
    status_tx: mpsc::UnboundedSender<PortStatus>,
    packet_in_tx: Option<mpsc::UnboundedSender<SwitchEvent>>,
    /// Fired on the first binding snapshot: switches are served from then on.
    ready: Option<tokio::sync::oneshot::Sender<()>>,
    /// Chassis registrations of every host (multi-host only).
    chassis: Option<mpsc::UnboundedReceiver<ChassisMsg>>,
    /// The selective mirror (selective mode only; the full mirror's watch otherwise).
    selective: Option<selective::SelectiveSync>,
}

/// Writes key allocations to the store, in order, one transaction per compile.
async fn persist_keys(
    store: Arc<dyn Store>,
    prefix: String,
    mut rx: mpsc::UnboundedReceiver<KeyChanges>,
) {
    while let Some(changes) = rx.recv().await {
        if changes.is_empty() {
            continue;
        }
        let mut txn = Txn::new();
        for (kind, id, k) in changes {
            let key = format!("{prefix}{}/{id}", kind.as_str());
            txn = match k {
                Some(k) => txn.put(key, k.to_string()),
                None => txn.delete(key),
            };
        }
        if let Err(e) = store.txn(txn).await {
            // Losing this only costs renumbered flows after the next restart.
            tracing::warn!(error = %e, "failed to persist pipeline keys");
        }
    }
}

async fn next_binding(b: &mut Option<BindingWatch>) -> Option<BindingEvent> {
    match b {
        Some(w) => w.next().await,
        None => std::future::pending().await,
    }
}

/// What OVS should connect to, given where we listen.
pub fn controller_target(addr: &ListenAddr) -> String {
    addr.to_string()
}

/// Creates or repairs the bridge until it succeeds (ovsdb-server may start after us).
async fn ensure_bridge_forever(
    remote: Remote,
    bridge: String,
    dp: DatapathType,
    target: Option<String>,
) {
    let mut pause = Duration::from_millis(50);
    loop {
        let result = async {
            let (client, _notes) = Client::connect(&remote).await.map_err(|e| e.to_string())?;
            let cfg = BridgeConfig::new(dp, target.as_deref());
            wyvern_ovsdb::ensure_bridge(&client, &bridge, &cfg)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        match result {
            Ok(outcome) => {
                tracing::info!(bridge, ?outcome, "bridge ready");
                return;
            }
            Err(e) => {
                tracing::warn!(bridge, error = %e, "failed to set up bridge; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// `now_or_never` on a stream item, without pulling in more of `futures`.
trait NowOrNever: futures::Stream + Unpin {
    fn now_or_never_ready(&mut self) -> Option<Option<Self::Item>> {
        futures::FutureExt::now_or_never(self.next())
    }
}
impl<S: futures::Stream + Unpin> NowOrNever for S {}
