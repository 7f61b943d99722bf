//! wyvernd's wiring: store, northbound service, API server, signals.

use std::future::Future;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use wyvern_api::{Auth as ApiAuth, NbConfig, NbService};
use wyvern_model::MacPrefix;
use wyvern_store::Store;
use wyvern_store::{RedbOptions, RedbStore};

use crate::config::{
    Auth, Config, DatapathKind, L3ModeArg, LogFormat, StoreSettings, SwitchSettings,
};

/// The project no-auth callers act in (they are admins, so this only names what they create
/// without an explicit `project_id`).
pub const NOAUTH_PROJECT: &str = "admin";
/// File name of the embedded store inside the data dir.
pub const STORE_FILE: &str = "wyvern.redb";

/// Why wyvernd could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("failed to create data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to open the store: {0}")]
    Store(#[source] wyvern_store::StoreError),
    #[error("failed to set up authentication: {0}")]
    TokenFile(#[source] wyvern_api::AuthError),
    #[error("failed to load the topology: {0}")]
    Service(#[source] wyvern_api::ApiError),
    #[error("failed to listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to serve the API: {0}")]
    Serve(#[source] std::io::Error),
    #[error("failed to install the {0} handler: {1}")]
    Signal(&'static str, #[source] std::io::Error),
    #[error("failed to parse {what} {value:?}: {reason}")]
    BadAddress {
        what: &'static str,
        value: String,
        reason: String,
    },
    #[error("failed to start the local controller: {0}")]
    Local(#[source] wyvern_local::LocalError),
    #[error("failed to read {path}: {source}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to set up metrics: {0}")]
    Metrics(#[source] wyvern_metrics::MetricsError),
    #[error("failed to set up the P4Runtime back end: {0}")]
    P4(#[source] wyvern_local::p4::P4LoadError),
}

/// Installs the global tracing subscriber: `RUST_LOG` filters (default `info`), logs on stderr.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Resolves on the first SIGTERM or SIGINT.
pub fn shutdown_signal() -> Result<impl Future<Output = ()> + Send + 'static, ServeError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(|e| ServeError::Signal("SIGTERM", e))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| ServeError::Signal("SIGINT", e))?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(
            signal = name,
            "shutting down: no new connections, finishing requests"
        );
    })
}

/// Runs wyvernd until `shutdown` resolves. `on_ready` gets the bound address once the API
/// accepts connections. Returns after in-flight requests finished and the store closed.
pub async fn run(
    cfg: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    std::fs::create_dir_all(&cfg.data_dir).map_err(|source| ServeError::DataDir {
        path: cfg.data_dir.clone(),
        source,
    })?;
    let auth = match &cfg.auth {
        Auth::NoAuth => ApiAuth::NoAuth {
            default_project: NOAUTH_PROJECT.to_owned(),
        },
        Auth::TokenFile(path) => ApiAuth::load_token_file(path).map_err(ServeError::TokenFile)?,
        Auth::Keystone(k) => ApiAuth::keystone(k.clone()).map_err(ServeError::TokenFile)?,
    };
    let store = open_store(&cfg).await?;
    let metrics = crate::metrics::DaemonMetrics::new().map_err(ServeError::Metrics)?;
    let metered = metrics.wrap_store(store.clone()).await;
    let mut nb = NbConfig::default();
    if matches!(cfg.store, StoreSettings::Etcd { .. }) {
        // etcd caps a transaction's ops (--max-txn-ops, 128 by default): smaller batches.
        nb.max_batch = ETCD_MAX_BATCH;
    }
    let m = cfg.base_mac.0;
    nb.model.mac_prefix = MacPrefix([m[0], m[1], m[2]]);
    let svc = NbService::open(metered.clone(), nb)
        .await
        .map_err(ServeError::Service)?;
    let listener = TcpListener::bind(cfg.api_listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: cfg.api_listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: cfg.api_listen,
        source,
    })?;
    if let Some(sw) = &cfg.switch {
        let local =
            start_local(sw, cfg.p4.as_ref(), metered.clone(), svc.clone(), &metrics).await?;
        if let Some(of) = local.openflow_addr() {
            println!("wyvernd openflow on {of}");
        }
    }
    metrics.set_service(svc.clone());
    serve_metrics(cfg.metrics_listen, &metrics).await;
    tracing::info!(%addr, data_dir = %cfg.data_dir.display(), "serving the Neutron API");
    on_ready(addr);
    let api = wyvern_api::router(svc, auth).layer(metrics.http().layer());
    let result = wyvern_api::serve(listener, api, shutdown).await;
    drop(metered);
    // Every acknowledged write is already durable; dropping the last store handle stops the
    // committer after it answered what was queued, and closes the file.
    drop(store);
    result.map_err(ServeError::Serve)?;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// Most API writes merged into one etcd transaction (each write is one to three ops).
pub const ETCD_MAX_BATCH: usize = 40;

/// Opens the configured store: the redb file in the data dir, or a connection to etcd.
async fn open_store(cfg: &Config) -> Result<Arc<dyn Store>, ServeError> {
    match &cfg.store {
        StoreSettings::Redb => {
            let s = RedbStore::open(&cfg.data_dir.join(STORE_FILE), RedbOptions::default())
                .map_err(ServeError::Store)?;
            Ok(s)
        }
        StoreSettings::Etcd {
            endpoints,
            ca_file,
            cert_file,
            key_file,
        } => {
            let read = |p: &Option<PathBuf>| -> Result<Option<Vec<u8>>, ServeError> {
                p.as_ref()
                    .map(|p| {
                        std::fs::read(p).map_err(|source| ServeError::ReadFile {
                            path: p.clone(),
                            source,
                        })
                    })
                    .transpose()
            };
            let tls = if ca_file.is_some() || cert_file.is_some() {
                Some(wyvern_store_etcd::EtcdTls {
                    ca_pem: read(ca_file)?,
                    cert_pem: read(cert_file)?,
                    key_pem: read(key_file)?,
                })
            } else {
                None
            };
            let s = wyvern_store_etcd::EtcdStore::connect(wyvern_store_etcd::EtcdOptions {
                endpoints: endpoints.clone(),
                tls,
                ..Default::default()
            })
            .await
            .map_err(ServeError::Store)?;
            Ok(s)
        }
    }
}

/// Binds `/metrics` and serves it in the background. A taken port is logged, not fatal:
/// losing metrics must not take the controller down (and parallel test daemons share the
/// default port).
async fn serve_metrics(listen: SocketAddr, metrics: &crate::metrics::DaemonMetrics) {
    match TcpListener::bind(listen).await {
        Ok(listener) => {
            let addr = listener.local_addr().unwrap_or(listen);
            // Test harnesses read this line from the log to find a port-0 address.
            tracing::info!(%addr, "serving /metrics");
            crate::metrics::spawn_server(listener, metrics.registry().clone());
        }
        Err(e) => tracing::error!(
            addr = %listen,
            error = %e,
            "failed to listen for /metrics; running without it"
        ),
    }
}

/// Starts the local controller (switch programming and packet-in apps) and the task that
/// writes port status back through the northbound service.
async fn start_local(
    sw: &SwitchSettings,
    p4: Option<&crate::config::P4Settings>,
    store: Arc<dyn Store>,
    svc: Arc<NbService>,
    metrics: &crate::metrics::DaemonMetrics,
) -> Result<wyvern_local::LocalController, ServeError> {
    use wyvern_local::{apps, LocalConfig, LocalController};
    let bad = |what: &'static str, value: &str, reason: String| ServeError::BadAddress {
        what,
        value: value.to_owned(),
        reason,
    };
    let ovsdb: wyvern_ovsdb::Remote = sw
        .ovsdb
        .parse()
        .map_err(|e: wyvern_ovsdb::ClientError| bad("ovsdb remote", &sw.ovsdb, e.to_string()))?;
    let openflow_listen: wyvern_openflow::conn::ListenAddr =
        sw.openflow_listen
            .parse()
            .map_err(|e: wyvern_openflow::conn::ConnError| {
                bad(
                    "openflow listen address",
                    &sw.openflow_listen,
                    e.to_string(),
                )
            })?;
    let datapath_type = match sw.datapath_type {
        DatapathKind::Netdev => wyvern_ovsdb::DatapathType::Netdev,
        DatapathKind::System => wyvern_ovsdb::DatapathType::System,
        DatapathKind::Dummy => wyvern_ovsdb::DatapathType::Dummy,
    };
    let compile = wyvern_pipeline::CompileConfig {
        arp_for_ports: sw.arp_for_ports,
        l3_mode: match sw.l3_mode {
            L3ModeArg::Proactive => wyvern_pipeline::L3Mode::Proactive,
            L3ModeArg::Reactive => wyvern_pipeline::L3Mode::Reactive,
        },
    };
    let cfg = LocalConfig {
        bridge: sw.bridge.clone(),
        datapath_type,
        ovsdb: Some(ovsdb),
        openflow_listen,
        compile,
        chassis: sw.chassis.clone(),
        sync: match sw.sync {
            crate::config::SyncArg::Full => wyvern_local::SyncMode::Full,
            crate::config::SyncArg::Selective => wyvern_local::SyncMode::Selective,
        },
    };
    let (status_tx, mut status_rx) = tokio::sync::mpsc::unbounded_channel();
    let (pin_tx, pin_rx) = tokio::sync::mpsc::unbounded_channel();
    let local = LocalController::start(cfg, store, status_tx, Some(pin_tx))
        .await
        .map_err(ServeError::Local)?;
    if sw.openflow_lanes > 0 {
        let target = match &sw.openflow_lane_target {
            Some(t) => t.clone(),
            None => {
                // Open vSwitch puts `<bridge>.mgmt` in its run directory, where db.sock is.
                let dir = sw
                    .ovsdb
                    .strip_prefix("unix:")
                    .and_then(|p| std::path::Path::new(p).parent())
                    .ok_or_else(|| {
                        bad(
                            "openflow lane target",
                            &sw.ovsdb,
                            "no unix OVSDB socket to find the bridge's run directory by; \
                             pass --openflow-lane-target"
                                .into(),
                        )
                    })?;
                format!("unix:{}", dir.join(format!("{}.mgmt", sw.bridge)).display())
            }
        };
        let target = target
            .parse()
            .map_err(|e: wyvern_openflow::conn::ConnError| {
                bad("openflow lane target", &target, e.to_string())
            })?;
        local
            .ofctrl()
            .set_lanes(Some(wyvern_openflow::ofctrl::Lanes {
                target,
                count: sw.openflow_lanes,
                min_flow_mods: 1_000,
            }));
    }
    let mut apps_cfg = apps::AppsConfig::default();
    apps_cfg.dhcp.lease_time_secs = sw.dhcp_lease_time;
    apps_cfg.dhcp.default_dns = sw.dhcp_dns.clone();
    apps_cfg.dhcp.domain_name = sw.dhcp_domain.clone();
    apps_cfg.dhcp.overlay_overhead = sw.overlay_overhead;
    apps_cfg.dhcp_rate_per_sec = sw.dhcp_rate_limit;
    apps_cfg.dhcp_burst = sw.dhcp_burst;
    apps_cfg.dhcp_allow_relay = sw.dhcp_allow_relay;
    // The P4 target (if any) gets the same compiled pipeline; its punts go to the same apps.
    let p4 = match p4 {
        Some(p) => {
            let settings = wyvern_local::p4::P4Settings::load(
                p.addr.clone(),
                p.device_id,
                u128::from(p.election_id),
                &p.p4info,
                p.device_config.as_deref(),
            )
            .map_err(ServeError::P4)?;
            let (handle, punts) = wyvern_local::p4::spawn(local.clone(), settings);
            metrics.set_p4(handle.status.clone());
            Some((punts, handle.out))
        }
        None => None,
    };
    let app_stats = apps::spawn_apps_with_p4(local.clone(), pin_rx, p4, apps_cfg);
    metrics.set_local(local.clone(), app_stats);
    tokio::spawn(async move {
        while let Some(st) = status_rx.recv().await {
            if let Err(e) = set_port_status(&svc, st.port, st.active, st.host.as_deref()).await {
                tracing::warn!(port = %st.port, error = %e, "failed to update port status");
            }
        }
    });
    Ok(local)
}

/// Writes a port's status (ACTIVE when its interface is bound and up) and the chassis that
/// bound it (`binding:host_id`), if they changed.
async fn set_port_status(
    svc: &NbService,
    port: uuid::Uuid,
    active: bool,
    host: Option<&str>,
) -> Result<(), wyvern_api::ApiError> {
    let want = if active { "ACTIVE" } else { "DOWN" };
    svc.write(|topo| {
        let mut change = wyvern_model::Change::default();
        if let Some(old) = topo.get_port(&port) {
            let new_host = host.filter(|h| *h != old.binding_host_id);
            if (old.status != want || new_host.is_some()) && !old.is_router_interface() {
                let mut p = (**old).clone();
                p.status = want.to_owned();
                if let Some(h) = new_host {
                    p.binding_host_id = h.to_owned();
                }
                p.revision_number += 1;
                change.ops.push(wyvern_model::ChangeOp {
                    kind: wyvern_model::Kind::Port,
                    id: port,
                    old: Some(wyvern_model::Object::Port(old.clone())),
                    new: Some(wyvern_model::Object::Port(Arc::new(p))),
                });
            }
        }
        Ok((change, ()))
    })
    .await
}
