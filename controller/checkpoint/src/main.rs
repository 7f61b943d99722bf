//! `wyvern-checkpoint`: the checkpoint service binary (Karbor v1 API, default 127.0.0.1:8799).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use serde::Deserialize;
use wyvern_api::Auth;
use wyvern_checkpoint::metrics::Metrics;
use wyvern_checkpoint::neutron::Endpoint;
use wyvern_checkpoint::service::{ProviderConfig, Service, ServiceConfig, READY_PREFIX};

#[derive(Debug, Parser)]
#[command(
    name = "wyvern-checkpoint",
    about = "wyvern checkpoint service (Karbor v1 API)"
)]
struct Args {
    /// Address to listen on [default: 127.0.0.1:8799].
    #[arg(long, env = "WYVERN_CHECKPOINT_LISTEN")]
    listen: Option<SocketAddr>,
    /// Directory for the service state (and the default filesystem bank).
    #[arg(long, env = "WYVERN_CHECKPOINT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The wyvernd Neutron API that plans protect [default: http://127.0.0.1:9696].
    #[arg(long, env = "WYVERN_API")]
    wyvern_api: Option<String>,
    /// Token sent to the wyvern API (admin, so that restores may keep ids).
    #[arg(long, env = "WYVERN_API_TOKEN")]
    wyvern_token: Option<String>,
    /// Token file authenticating this service's callers (wyvernd's format); no-auth without it.
    #[arg(long, env = "WYVERN_CHECKPOINT_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// TOML configuration file (flags override its keys).
    #[arg(long, env = "WYVERN_CHECKPOINT_CONFIG")]
    config: Option<PathBuf>,
}

/// The config file: every flag's key, plus the providers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    wyvern_api: Option<String>,
    wyvern_token: Option<String>,
    token_file: Option<PathBuf>,
    /// Project of no-auth callers.
    default_project: Option<String>,
    #[serde(default)]
    providers: Vec<ProviderConfig>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let file: FileConfig = match &args.config {
        Some(p) => {
            let s = std::fs::read_to_string(p)
                .with_context(|| format!("failed to read config file {}", p.display()))?;
            toml::from_str(&s)
                .with_context(|| format!("failed to parse config file {}", p.display()))?
        }
        None => FileConfig::default(),
    };
    let listen = args
        .listen
        .or(file.listen)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8799)));
    let data_dir = args
        .data_dir
        .or(file.data_dir)
        .unwrap_or_else(|| PathBuf::from("/var/lib/wyvern-checkpoint"));
    let source = Endpoint {
        url: args
            .wyvern_api
            .or(file.wyvern_api)
            .unwrap_or_else(|| "http://127.0.0.1:9696".into()),
        token: args.wyvern_token.or(file.wyvern_token),
    };
    let auth = match args.token_file.or(file.token_file) {
        Some(p) => Auth::load_token_file(&p)?,
        None => Auth::NoAuth {
            default_project: file.default_project.unwrap_or_else(|| "admin".into()),
        },
    };
    let registry = wyvern_metrics::new_registry()?;
    let metrics = Metrics::new(&registry)?;
    let svc = Service::open(
        ServiceConfig {
            data_dir,
            source,
            providers: file.providers,
        },
        metrics,
    )
    .await?;
    let app =
        wyvern_checkpoint::api::router(svc, auth).merge(wyvern_metrics::metrics_router(registry));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("failed to listen on {listen}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "wyvern-checkpoint listening");
    // Tests and supervisors read this line to learn the port (with --listen 127.0.0.1:0).
    println!("{READY_PREFIX}http://{addr}");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("failed to install the SIGTERM handler")?;
    wyvern_api::serve(listener, app, async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    })
    .await?;
    Ok(())
}
