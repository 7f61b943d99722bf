//! The service's wiring: configuration, the store, the top Neutron API (wyvern-api, the same
//! crate wyvernd serves), the admin API and the engine.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::net::TcpListener;
use wyvern_api::{Auth, NbConfig, NbService};
use wyvern_store::{RedbOptions, RedbStore, Store};

use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::state::Ledger;

/// Default listen address of the top Neutron API.
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:19696";
/// Default listen address of the admin API.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:19999";
/// The line printed on stdout once both APIs accept connections.
pub const READY_PREFIX: &str = "wyvern-cascade listening on ";
/// File name of the store inside the data dir.
pub const STORE_FILE: &str = "cascade.redb";

/// Settings of the cascade service (TOML file, then flags).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub api_listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub data_dir: PathBuf,
    /// wyvern-api token file for the top API (no auth when absent).
    pub token_file: Option<PathBuf>,
    /// How often each pod's port status is read, in milliseconds.
    pub status_interval_ms: u64,
    /// Longest pause between retries of a job whose pod is unreachable, in milliseconds.
    pub max_backoff_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            api_listen: DEFAULT_API_LISTEN
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 19696))),
            admin_listen: DEFAULT_ADMIN_LISTEN
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 19999))),
            data_dir: PathBuf::from("/var/lib/wyvern-cascade"),
            token_file: None,
            status_interval_ms: 500,
            max_backoff_ms: 2000,
        }
    }
}

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("failed to read config file {path}: {source}")]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to parse config file {path}: {source}")]
    ParseConfig {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("failed to create data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to open the store: {0}")]
    Store(#[source] wyvern_store::StoreError),
    #[error("failed to load the token file: {0}")]
    TokenFile(#[source] wyvern_api::AuthError),
    #[error("failed to load the top topology: {0}")]
    Top(#[source] wyvern_api::ApiError),
    #[error("failed to load the cascade state: {0}")]
    State(#[source] crate::state::StateError),
    #[error("failed to listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to set up metrics: {0}")]
    Metrics(#[source] wyvern_metrics::MetricsError),
    #[error("failed to serve: {0}")]
    Serve(#[source] std::io::Error),
}

impl Config {
    /// The file's settings over the defaults.
    pub fn load(path: &Path) -> Result<Config, ServiceError> {
        let text = std::fs::read_to_string(path).map_err(|source| ServiceError::ReadConfig {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ServiceError::ParseConfig {
            path: path.to_path_buf(),
            source,
        })
    }
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), ServiceError> {
    let l = TcpListener::bind(addr)
        .await
        .map_err(|source| ServiceError::Bind { addr, source })?;
    let a = l
        .local_addr()
        .map_err(|source| ServiceError::Bind { addr, source })?;
    Ok((l, a))
}

/// Runs the service until `shutdown` resolves. `on_ready(api, admin)` gets the bound
/// addresses once both APIs accept connections.
pub async fn run(
    cfg: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(SocketAddr, SocketAddr),
) -> Result<(), ServiceError> {
    std::fs::create_dir_all(&cfg.data_dir).map_err(|source| ServiceError::DataDir {
        path: cfg.data_dir.clone(),
        source,
    })?;
    let auth = match &cfg.token_file {
        None => Auth::NoAuth {
            default_project: "admin".into(),
        },
        Some(p) => Auth::load_token_file(p).map_err(ServiceError::TokenFile)?,
    };
    let store = RedbStore::open(&cfg.data_dir.join(STORE_FILE), RedbOptions::default())
        .map_err(ServiceError::Store)?;
    let store: Arc<dyn Store> = store;
    let svc = NbService::open(store.clone(), NbConfig::default())
        .await
        .map_err(ServiceError::Top)?;
    let ledger = Ledger::open(store.clone())
        .await
        .map_err(ServiceError::State)?;
    let registry = wyvern_metrics::new_registry().map_err(ServiceError::Metrics)?;
    let metrics = Metrics::register(&registry, ledger.clone()).map_err(ServiceError::Metrics)?;
    let http_metrics =
        wyvern_metrics::HttpMetrics::neutron(&registry).map_err(ServiceError::Metrics)?;
    let engine = Arc::new(Engine {
        svc: svc.clone(),
        store: store.clone(),
        ledger,
        http: crate::bottom::http_client(),
        metrics,
        status_interval: Duration::from_millis(cfg.status_interval_ms.max(10)),
        max_backoff: Duration::from_millis(cfg.max_backoff_ms.max(10)),
    });
    let (api_l, api_addr) = bind(cfg.api_listen).await?;
    let (admin_l, admin_addr) = bind(cfg.admin_listen).await?;
    engine.start();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    let api = wyvern_api::serve(
        api_l,
        wyvern_api::router(svc, auth).layer(http_metrics.layer()),
        wait(stop_rx.clone()),
    );
    let admin = wyvern_api::serve(
        admin_l,
        crate::admin::router(engine.clone()).merge(wyvern_metrics::metrics_router(registry)),
        wait(stop_rx),
    );
    tracing::info!(%api_addr, %admin_addr, data_dir = %cfg.data_dir.display(), "serving the top Neutron API and the admin API");
    on_ready(api_addr, admin_addr);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let (a, b) = tokio::join!(api, admin);
    a.map_err(ServiceError::Serve)?;
    b.map_err(ServiceError::Serve)?;
    tracing::info!("shut down cleanly");
    Ok(())
}
