//! wyvernd's `/metrics`: one registry holding the API's request metrics, a store wrapper
//! timing transactions, and a collector that reads the local controller's, ofctrl's and the
//! apps' counters at scrape time (nothing extra runs on the packet or compile paths).
//!
//! Every name is listed with its meaning in docs/metrics.md. No label takes a value per
//! port, network or request: a host with 5,000 ports exports as many series as one with 5.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use async_trait::async_trait;
use wyvern_api::NbService;
use wyvern_local::apps::AppStats;
use wyvern_local::LocalController;
use wyvern_metrics::prometheus::core::Collector;
use wyvern_metrics::prometheus::{
    Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry,
};
use wyvern_metrics::{build, set_counter, HttpMetrics, MetricsError, OnScrape};
use wyvern_openflow::ofctrl::ERROR_TYPES;
use wyvern_pipeline::stage::STAGES;
use wyvern_store::{Revision, Store, StoreError, Txn, TxnResult, WatchStream};

/// Default address of `/metrics`: loopback, the port the OpenTelemetry/Prometheus exporter
/// convention uses.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";

/// The offload targets wyvern has back ends for (rte_flow on a NIC, a P4Runtime target).
pub const OFFLOAD_TARGETS: [&str; 2] = ["rte_flow", "p4runtime"];

/// Punt reasons as labelled by `wyvern_local::apps::punt_label`.
const PUNT_REASONS: [&str; 5] = [
    "dhcp",
    "l3_miss",
    "ttl_expired",
    "icmp_to_router",
    "unknown",
];
/// DHCP message types as labelled by `DhcpRequestKind::label`.
const DHCP_TYPES: [&str; 8] = [
    "discover",
    "request_selecting",
    "request_init_reboot",
    "request_renewing",
    "request_rebinding",
    "decline",
    "release",
    "inform",
];

/// Everything wyvernd exports. Create it first, wire the parts in as they start.
pub struct DaemonMetrics {
    registry: Registry,
    http: HttpMetrics,
    store: Arc<StoreMetrics>,
    sources: Arc<Sources>,
}

/// What the scrape-time collector reads; filled in as wyvernd starts its parts.
#[derive(Default)]
struct Sources {
    service: OnceLock<Arc<NbService>>,
    local: OnceLock<LocalController>,
    apps: OnceLock<Arc<AppStats>>,
    p4: OnceLock<Arc<wyvern_local::p4::P4Status>>,
}

impl DaemonMetrics {
    /// A registry with the process collector, the API request metrics, the store metrics
    /// and the scrape-time collector of everything else.
    pub fn new() -> Result<Self, MetricsError> {
        let registry = wyvern_metrics::new_registry()?;
        let http = HttpMetrics::neutron(&registry)?;
        let store = Arc::new(StoreMetrics::new()?);
        let sources = Arc::new(Sources::default());
        let info = build::gauge_vec(
            "wyvern_build_info",
            "Always 1; the labels say which wyvernd is running.",
            &["version"],
        )?;
        info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        registry
            .register(Box::new(info))
            .map_err(MetricsError::Register)?;
        registry
            .register(Box::new(StoreCollector(store.clone())))
            .map_err(MetricsError::Register)?;
        registry
            .register(Box::new(SourceHistograms(sources.clone())))
            .map_err(MetricsError::Register)?;
        let scrape = ScrapeMetrics::new()?;
        let collector = scrape.into_collector(sources.clone(), store.clone());
        registry
            .register(Box::new(collector))
            .map_err(MetricsError::Register)?;
        Ok(DaemonMetrics {
            registry,
            http,
            store,
            sources,
        })
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The layer to wrap the Neutron API router in.
    pub fn http(&self) -> &HttpMetrics {
        &self.http
    }

    /// Wraps the store so that every transaction is timed and its revision recorded.
    pub async fn wrap_store(&self, inner: Arc<dyn Store>) -> Arc<dyn Store> {
        if let Ok(r) = inner.revision().await {
            self.store.revision.set(r.0 as i64);
        }
        Arc::new(MeteredStore {
            inner,
            metrics: self.store.clone(),
        })
    }

    /// Keys by kind come from the service's in-memory topology (one key per object).
    pub fn set_service(&self, svc: Arc<NbService>) {
        let _ = self.sources.service.set(svc);
    }

    /// Pipeline, OpenFlow, packet-in and DHCP metrics come from the local controller.
    pub fn set_local(&self, local: LocalController, apps: Arc<AppStats>) {
        let _ = self.sources.local.set(local);
        let _ = self.sources.apps.set(apps);
    }

    /// The offload families for the P4Runtime target come from its back end's progress.
    pub fn set_p4(&self, status: Arc<wyvern_local::p4::P4Status>) {
        let _ = self.sources.p4.set(status);
    }
}

/// Store metrics updated by [`MeteredStore`] on each transaction.
struct StoreMetrics {
    revision: IntGauge,
    txn_duration: Histogram,
    txns: IntCounterVec,
}

impl StoreMetrics {
    fn new() -> Result<Self, MetricsError> {
        let txns = build::counter_vec(
            "wyvern_store_txns_total",
            "Store transactions by result (committed, compare_failed, error).",
            &["result"],
        )?;
        for r in ["committed", "compare_failed", "error"] {
            txns.with_label_values(&[r]);
        }
        Ok(StoreMetrics {
            revision: build::gauge(
                "wyvern_store_revision",
                "Latest store revision this wyvernd read or wrote.",
            )?,
            txn_duration: build::histogram(
                "wyvern_store_txn_duration_seconds",
                "Time of a store transaction until it is durable (group commit and fsync included).",
                wyvern_metrics::latency_buckets(),
            )?,
            txns,
        })
    }
}

struct StoreCollector(Arc<StoreMetrics>);

impl Collector for StoreCollector {
    fn desc(&self) -> Vec<&wyvern_metrics::prometheus::core::Desc> {
        let m = &self.0;
        let mut d = m.revision.desc();
        d.extend(m.txn_duration.desc());
        d.extend(m.txns.desc());
        d
    }

    fn collect(&self) -> Vec<wyvern_metrics::prometheus::proto::MetricFamily> {
        let m = &self.0;
        let mut f = m.revision.collect();
        f.extend(m.txn_duration.collect());
        f.extend(m.txns.collect());
        f
    }
}

/// The histograms the local controller, ofctrl and the apps observe themselves (they are
/// created with the parts, which start after the registry). An unchecked collector: it
/// declares no descriptors, so it can be registered before its sources exist.
struct SourceHistograms(Arc<Sources>);

impl Collector for SourceHistograms {
    fn desc(&self) -> Vec<&wyvern_metrics::prometheus::core::Desc> {
        Vec::new()
    }

    fn collect(&self) -> Vec<wyvern_metrics::prometheus::proto::MetricFamily> {
        let mut f = Vec::new();
        if let Some(local) = self.0.local.get() {
            f.extend(local.status().compile_duration.collect());
            f.extend(local.sync_metric_families());
            f.extend(local.ofctrl().live_counters().sync_duration.collect());
        }
        if let Some(apps) = self.0.apps.get() {
            f.extend(apps.handling_duration.collect());
            f.extend(apps.reactive_install_duration.collect());
        }
        f
    }
}

/// A [`Store`] that times transactions and records the revision they reach.
struct MeteredStore {
    inner: Arc<dyn Store>,
    metrics: Arc<StoreMetrics>,
}

#[async_trait]
impl Store for MeteredStore {
    async fn get(&self, key: &str) -> Result<Option<wyvern_store::KeyValue>, StoreError> {
        self.inner.get(key).await
    }

    async fn range(
        &self,
        prefix: &str,
    ) -> Result<(Vec<wyvern_store::KeyValue>, Revision), StoreError> {
        let out = self.inner.range(prefix).await?;
        self.metrics
            .revision
            .set(self.metrics.revision.get().max(out.1 .0 as i64));
        Ok(out)
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResult, StoreError> {
        let started = Instant::now();
        let out = self.inner.txn(txn).await;
        self.metrics
            .txn_duration
            .observe(started.elapsed().as_secs_f64());
        let result = match &out {
            Ok(r) if r.succeeded => "committed",
            Ok(_) => "compare_failed",
            Err(_) => "error",
        };
        self.metrics.txns.with_label_values(&[result]).inc();
        if let Ok(r) = &out {
            let rev = r.revision.0 as i64;
            self.metrics
                .revision
                .set(self.metrics.revision.get().max(rev));
        }
        out
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream, StoreError> {
        self.inner.watch(prefix, from).await
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        let r = self.inner.revision().await?;
        self.metrics
            .revision
            .set(self.metrics.revision.get().max(r.0 as i64));
        Ok(r)
    }

    async fn compact(&self, up_to: Revision) -> Result<(), StoreError> {
        self.inner.compact(up_to).await
    }

    async fn put_leased(
        &self,
        key: &str,
        value: wyvern_store::Bytes,
        ttl: std::time::Duration,
    ) -> Result<wyvern_store::LeaseGuard, StoreError> {
        self.inner.put_leased(key, value, ttl).await
    }
}

/// The metrics refreshed at scrape time from the sources.
struct ScrapeMetrics {
    keys: IntGaugeVec,
    watch_lag: IntGauge,
    // pipeline
    flows: IntGaugeVec,
    flood_groups: IntGauge,
    bindings: IntGauge,
    compiles: IntCounterVec,
    owners_recompiled: IntCounter,
    flow_changes: IntCounterVec,
    compiled_revision: IntGauge,
    installed_revision: IntGauge,
    pipeline_errors: IntCounterVec,
    // openflow
    connected: IntGauge,
    connections: IntCounter,
    disconnects: IntCounter,
    flow_mods: IntCounterVec,
    group_mods: IntCounter,
    bundles: IntCounter,
    full_syncs: IntCounter,
    of_errors: IntCounterVec,
    of_flows: IntGaugeVec,
    differences: IntGauge,
    // packet-in and apps
    packet_ins: IntCounterVec,
    packet_in_drops: IntCounterVec,
    dhcp_messages: IntCounterVec,
    dhcp_replies: IntCounterVec,
    dhcp_drops: IntCounterVec,
    dhcp_leases: IntGauge,
    icmp_replies: IntCounterVec,
    reactive_installed: IntCounter,
    reactive_expired: IntCounter,
    // offload (no back end runs in wyvernd today: see docs/metrics.md)
    offload_active: IntGaugeVec,
    offload_rules: IntGaugeVec,
    offloaded: IntCounterVec,
    refused: IntCounterVec,
    fastpath_packets: IntCounterVec,
    fastpath_drops: IntCounterVec,
}

impl ScrapeMetrics {
    fn new() -> Result<Self, MetricsError> {
        use build::{counter, counter_vec, gauge, gauge_vec};
        let m = ScrapeMetrics {
            keys: gauge_vec(
                "wyvern_store_keys",
                "Model keys in the store by kind (one per network, subnet, port, router).",
                &["kind"],
            )?,
            watch_lag: gauge(
                "wyvern_store_watch_lag_revisions",
                "Store revisions the local controller's watch has not compiled yet.",
            )?,
            flows: gauge_vec(
                "wyvern_pipeline_flows",
                "Compiled flows by pipeline stage and back end.",
                &["stage", "backend"],
            )?,
            flood_groups: gauge(
                "wyvern_pipeline_flood_groups",
                "Compiled flood groups (one per network with local ports).",
            )?,
            bindings: gauge(
                "wyvern_port_bindings",
                "Logical ports bound to a switch port on this host.",
            )?,
            compiles: counter_vec(
                "wyvern_pipeline_compiles_total",
                "Pipeline compiles by kind (full, incremental).",
                &["kind"],
            )?,
            owners_recompiled: counter(
                "wyvern_pipeline_owners_recompiled_total",
                "Flow owners (networks, ports, routers) recompiled by incremental compiles.",
            )?,
            flow_changes: counter_vec(
                "wyvern_pipeline_flow_changes_total",
                "Flows added or removed by incremental compiles.",
                &["change"],
            )?,
            compiled_revision: gauge(
                "wyvern_pipeline_compiled_revision",
                "Store revision the compiled pipeline reflects.",
            )?,
            installed_revision: gauge(
                "wyvern_pipeline_installed_revision",
                "Store revision whose flows the switch acknowledged (barrier).",
            )?,
            pipeline_errors: counter_vec(
                "wyvern_pipeline_errors_total",
                "Local controller failures by kind (mirror: a store object not mirrored; sync: a compile or mapping failure or a switch rejection).",
                &["kind"],
            )?,
            connected: gauge(
                "wyvern_openflow_connected",
                "1 when the integration bridge is connected over OpenFlow, else 0.",
            )?,
            connections: counter(
                "wyvern_openflow_connections_total",
                "OpenFlow connections of the bridge (the first and every reconnect).",
            )?,
            disconnects: counter(
                "wyvern_openflow_disconnects_total",
                "OpenFlow connections lost.",
            )?,
            flow_mods: counter_vec(
                "wyvern_openflow_flow_mods_total",
                "Flow-mods sent by ofctrl, by command (add, modify, delete).",
                &["command"],
            )?,
            group_mods: counter(
                "wyvern_openflow_group_mods_total",
                "Group-mods sent by ofctrl.",
            )?,
            bundles: counter(
                "wyvern_openflow_bundles_total",
                "Atomic bundles committed by ofctrl (each followed by a barrier).",
            )?,
            full_syncs: counter(
                "wyvern_openflow_full_syncs_total",
                "Syncs that read the switch's tables first (after a connect).",
            )?,
            of_errors: counter_vec(
                "wyvern_openflow_errors_total",
                "OpenFlow errors by OFPET type and source (rejected: a flow-mod or group-mod of a bundle; unsolicited: matching no request).",
                &["type", "source"],
            )?,
            of_flows: gauge_vec(
                "wyvern_openflow_flows",
                "Flows ofctrl wants (desired) and knows on the switch (installed) after the last sync.",
                &["state"],
            )?,
            differences: gauge(
                "wyvern_openflow_sync_differences",
                "Desired flows the last sync left different on the switch (rejected, not resent until they change).",
            )?,
            packet_ins: counter_vec(
                "wyvern_packet_ins_total",
                "Packet-ins handled by the apps, by punt reason.",
                &["reason"],
            )?,
            packet_in_drops: counter_vec(
                "wyvern_packet_in_drops_total",
                "Packet-ins answered with nothing, by reason (DHCP drops are in wyvern_dhcp_drops_total).",
                &["reason"],
            )?,
            dhcp_messages: counter_vec(
                "wyvern_dhcp_messages_total",
                "Valid DHCP messages received, by type.",
                &["type"],
            )?,
            dhcp_replies: counter_vec(
                "wyvern_dhcp_replies_total",
                "DHCP replies sent, by type (offer, ack, nak).",
                &["type"],
            )?,
            dhcp_drops: counter_vec(
                "wyvern_dhcp_drops_total",
                "DHCP packet-ins dropped, by reason (malformed, rate_limited, unknown_port, ...).",
                &["reason"],
            )?,
            dhcp_leases: gauge(
                "wyvern_dhcp_leases",
                "Ports whose last DHCPACK has not run out and was not released.",
            )?,
            icmp_replies: counter_vec(
                "wyvern_icmp_replies_total",
                "ICMP answers sent by router interfaces, by type (echo_reply, time_exceeded).",
                &["type"],
            )?,
            reactive_installed: counter(
                "wyvern_reactive_flows_installed_total",
                "Routes installed on the first packet (reactive L3 mode).",
            )?,
            reactive_expired: counter(
                "wyvern_reactive_flows_expired_total",
                "Reactive routes the switch removed on their idle timeout.",
            )?,
            offload_active: gauge_vec(
                "wyvern_offload_backend_active",
                "1 when this process drives the offload target (wyvernd: P4Runtime with --p4runtime), else 0.",
                &["target"],
            )?,
            offload_rules: gauge_vec(
                "wyvern_offload_rules",
                "Rules installed on the offload target.",
                &["target"],
            )?,
            offloaded: counter_vec(
                "wyvern_offload_rules_offloaded_total",
                "Rules the offload target accepted.",
                &["target"],
            )?,
            refused: counter_vec(
                "wyvern_offload_rules_refused_total",
                "Flows kept in software, by target and reason.",
                &["target", "reason"],
            )?,
            fastpath_packets: counter_vec(
                "wyvern_fastpath_packets_total",
                "Packets through the software fast path, by direction.",
                &["direction"],
            )?,
            fastpath_drops: counter_vec(
                "wyvern_fastpath_drops_total",
                "Packets the software fast path dropped, by reason.",
                &["reason"],
            )?,
        };
        // Series that exist from the start, so dashboards and alerts see 0, not "no data".
        for kind in ["network", "subnet", "port", "router"] {
            m.keys.with_label_values(&[kind]);
        }
        for s in STAGES.iter() {
            m.flows.with_label_values(&[s.name, "openflow"]);
        }
        for k in ["full", "incremental"] {
            m.compiles.with_label_values(&[k]);
        }
        for c in ["added", "removed"] {
            m.flow_changes.with_label_values(&[c]);
        }
        for k in ["mirror", "sync"] {
            m.pipeline_errors.with_label_values(&[k]);
        }
        for c in ["add", "modify", "delete"] {
            m.flow_mods.with_label_values(&[c]);
        }
        for t in ERROR_TYPES {
            for s in ["rejected", "unsolicited"] {
                m.of_errors.with_label_values(&[t, s]);
            }
        }
        for s in ["desired", "installed"] {
            m.of_flows.with_label_values(&[s]);
        }
        for r in PUNT_REASONS {
            m.packet_ins.with_label_values(&[r]);
        }
        m.packet_in_drops.with_label_values(&["malformed"]);
        for t in DHCP_TYPES {
            m.dhcp_messages.with_label_values(&[t]);
        }
        for t in ["offer", "ack", "nak"] {
            m.dhcp_replies.with_label_values(&[t]);
        }
        m.dhcp_drops.with_label_values(&["rate_limited"]);
        for t in ["echo_reply", "time_exceeded"] {
            m.icmp_replies.with_label_values(&[t]);
        }
        for t in OFFLOAD_TARGETS {
            m.offload_active.with_label_values(&[t]).set(0);
            m.offload_rules.with_label_values(&[t]).set(0);
            m.offloaded.with_label_values(&[t]);
        }
        m.refused
            .with_label_values(&["rte_flow", "refused_by_port"]);
        m.refused
            .with_label_values(&["p4runtime", "rejected_by_target"]);
        for d in ["rx", "tx"] {
            m.fastpath_packets.with_label_values(&[d]);
        }
        m.fastpath_drops.with_label_values(&["table_miss"]);
        Ok(m)
    }

    fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.keys.clone()),
            Box::new(self.watch_lag.clone()),
            Box::new(self.flows.clone()),
            Box::new(self.flood_groups.clone()),
            Box::new(self.bindings.clone()),
            Box::new(self.compiles.clone()),
            Box::new(self.owners_recompiled.clone()),
            Box::new(self.flow_changes.clone()),
            Box::new(self.compiled_revision.clone()),
            Box::new(self.installed_revision.clone()),
            Box::new(self.pipeline_errors.clone()),
            Box::new(self.connected.clone()),
            Box::new(self.connections.clone()),
            Box::new(self.disconnects.clone()),
            Box::new(self.flow_mods.clone()),
            Box::new(self.group_mods.clone()),
            Box::new(self.bundles.clone()),
            Box::new(self.full_syncs.clone()),
            Box::new(self.of_errors.clone()),
            Box::new(self.of_flows.clone()),
            Box::new(self.differences.clone()),
            Box::new(self.packet_ins.clone()),
            Box::new(self.packet_in_drops.clone()),
            Box::new(self.dhcp_messages.clone()),
            Box::new(self.dhcp_replies.clone()),
            Box::new(self.dhcp_drops.clone()),
            Box::new(self.dhcp_leases.clone()),
            Box::new(self.icmp_replies.clone()),
            Box::new(self.reactive_installed.clone()),
            Box::new(self.reactive_expired.clone()),
            Box::new(self.offload_active.clone()),
            Box::new(self.offload_rules.clone()),
            Box::new(self.offloaded.clone()),
            Box::new(self.refused.clone()),
            Box::new(self.fastpath_packets.clone()),
            Box::new(self.fastpath_drops.clone()),
        ]
    }

    fn into_collector(self, sources: Arc<Sources>, store: Arc<StoreMetrics>) -> OnScrape {
        let collectors = self.collectors();
        OnScrape::new(collectors, move || self.refresh(&sources, &store))
    }

    /// Reads every source once. Cost: a walk over the compiled flows (to count them by
    /// stage) and over the ports (kinds), both under their read locks; everything else is
    /// atomics and one small map.
    fn refresh(&self, sources: &Sources, store: &StoreMetrics) {
        if let Some(svc) = sources.service.get() {
            let counts = svc.read(|t| {
                [
                    t.networks().count(),
                    t.subnets().count(),
                    t.ports().count(),
                    t.routers().count(),
                ]
            });
            for (kind, n) in ["network", "subnet", "port", "router"].iter().zip(counts) {
                self.keys.with_label_values(&[kind]).set(n as i64);
            }
        }
        if let Some(local) = sources.local.get() {
            self.refresh_local(local, store);
        }
        if let Some(apps) = sources.apps.get() {
            self.refresh_apps(apps);
        }
        if let Some(p4) = sources.p4.get() {
            self.refresh_p4(p4);
        }
    }

    fn refresh_p4(&self, p4: &wyvern_local::p4::P4Status) {
        let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        self.offload_active.with_label_values(&["p4runtime"]).set(1);
        set_counter(
            &self.offloaded.with_label_values(&["p4runtime"]),
            l(&p4.updates),
        );
        set_counter(
            &self
                .refused
                .with_label_values(&["p4runtime", "rejected_by_target"]),
            l(&p4.refused),
        );
    }

    fn refresh_local(&self, local: &LocalController, store: &StoreMetrics) {
        let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let st = local.status();
        let compiled = l(&st.compiled_revision);
        self.compiled_revision.set(compiled as i64);
        self.installed_revision
            .set(l(&st.installed_revision) as i64);
        self.watch_lag
            .set((store.revision.get() - compiled as i64).max(0));
        set_counter(
            &self.compiles.with_label_values(&["full"]),
            l(&st.full_compiles),
        );
        set_counter(
            &self.compiles.with_label_values(&["incremental"]),
            l(&st.incremental_compiles),
        );
        set_counter(&self.owners_recompiled, l(&st.owners_recompiled));
        set_counter(
            &self.flow_changes.with_label_values(&["added"]),
            l(&st.flows_added),
        );
        set_counter(
            &self.flow_changes.with_label_values(&["removed"]),
            l(&st.flows_removed),
        );
        set_counter(
            &self.pipeline_errors.with_label_values(&["mirror"]),
            l(&st.mirror_errors),
        );
        set_counter(
            &self.pipeline_errors.with_label_values(&["sync"]),
            l(&st.sync_errors),
        );
        set_counter(&self.disconnects, l(&st.switch_disconnects));
        set_counter(&self.reactive_expired, l(&st.reactive_flows_expired));
        for (i, t) in ERROR_TYPES.iter().enumerate() {
            set_counter(
                &self.of_errors.with_label_values(&[t, "unsolicited"]),
                l(&st.unsolicited_errors[i]),
            );
        }
        {
            let state = local.state().read().unwrap_or_else(|e| e.into_inner());
            // Counts the compiler keeps as it goes: no walk over every flow per scrape.
            let by_stage = state.compiler.flows_by_stage();
            for (s, n) in STAGES.iter().zip(by_stage) {
                self.flows
                    .with_label_values(&[s.name, "openflow"])
                    .set(n as i64);
            }
            self.flood_groups
                .set(state.compiler.groups().count() as i64);
            self.bindings.set(state.bindings.len() as i64);
        }
        let of = local.ofctrl();
        self.connected.set(i64::from(of.switch().is_some()));
        let c = of.live_counters();
        set_counter(&self.connections, l(&c.attaches));
        set_counter(&self.flow_mods.with_label_values(&["add"]), l(&c.flow_adds));
        set_counter(
            &self.flow_mods.with_label_values(&["modify"]),
            l(&c.flow_modifies),
        );
        set_counter(
            &self.flow_mods.with_label_values(&["delete"]),
            l(&c.flow_deletes),
        );
        set_counter(&self.group_mods, l(&c.group_mods));
        set_counter(&self.bundles, l(&c.bundles));
        set_counter(&self.full_syncs, l(&c.full_syncs));
        for (i, t) in ERROR_TYPES.iter().enumerate() {
            set_counter(
                &self.of_errors.with_label_values(&[t, "rejected"]),
                l(&c.errors_by_type[i]),
            );
        }
        self.of_flows
            .with_label_values(&["desired"])
            .set(l(&c.desired_flows) as i64);
        self.of_flows
            .with_label_values(&["installed"])
            .set(l(&c.installed_flows) as i64);
        self.differences.set(l(&c.differences) as i64);
    }

    fn refresh_apps(&self, apps: &AppStats) {
        self.dhcp_leases.set(apps.active_leases() as i64);
        for (key, n) in apps.snapshot() {
            let (what, label) = key.split_once(':').unwrap_or((key.as_str(), ""));
            let family = match what {
                "packet_in" => &self.packet_ins,
                "dhcp_message" => &self.dhcp_messages,
                "dhcp_reply" => &self.dhcp_replies,
                "dhcp_drop" => &self.dhcp_drops,
                "packet_in_drop" => {
                    set_counter(&self.packet_in_drops.with_label_values(&[label]), n);
                    continue;
                }
                "icmp_drop" | "l3_drop" | "packet_out_failed" => {
                    let prefix = what.trim_end_matches("_drop");
                    let reason = format!("{prefix}_{label}");
                    set_counter(&self.packet_in_drops.with_label_values(&[&reason]), n);
                    continue;
                }
                "icmp_echo_reply" => {
                    set_counter(&self.icmp_replies.with_label_values(&["echo_reply"]), n);
                    continue;
                }
                "icmp_time_exceeded" => {
                    set_counter(&self.icmp_replies.with_label_values(&["time_exceeded"]), n);
                    continue;
                }
                "reactive_flow_installed" => {
                    set_counter(&self.reactive_installed, n);
                    continue;
                }
                // `dhcp_request:*` (no reply) is already in dhcp_message.
                _ => continue,
            };
            set_counter(&family.with_label_values(&[label]), n);
        }
    }
}

/// Serves `/metrics` on `listener` until the runtime stops.
pub fn spawn_server(listener: tokio::net::TcpListener, registry: Registry) {
    tokio::spawn(async move {
        if let Err(e) = wyvern_metrics::serve(listener, registry).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
}
