//! `wyvern-cascade`: the cascade service (top Neutron API + admin API over bottom wyvernd sites).

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// One Neutron API over many wyvern sites.
#[derive(Debug, Parser)]
#[command(name = "wyvern-cascade", version)]
struct Args {
    /// TOML file with the settings (flags override it).
    #[arg(long, env = "WYVERN_CASCADE_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address of the top Neutron API [default: 127.0.0.1:19696].
    #[arg(long)]
    api_listen: Option<SocketAddr>,
    /// Listen address of the admin API `/v1.0/` [default: 127.0.0.1:19999].
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    /// Where the store lives.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// How often each pod's port status is read (ms).
    #[arg(long)]
    status_interval_ms: Option<u64>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let mut cfg = match &args.config {
        Some(p) => match wyvern_cascade::Config::load(p) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return std::process::ExitCode::FAILURE;
            }
        },
        None => wyvern_cascade::Config::default(),
    };
    if let Some(a) = args.api_listen {
        cfg.api_listen = a;
    }
    if let Some(a) = args.admin_listen {
        cfg.admin_listen = a;
    }
    if let Some(d) = args.data_dir {
        cfg.data_dir = d;
    }
    if let Some(i) = args.status_interval_ms {
        cfg.status_interval_ms = i;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: failed to start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        let shutdown = async {
            use tokio::signal::unix::{signal, SignalKind};
            match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(mut t), Ok(mut i)) => {
                    tokio::select! { _ = t.recv() => {}, _ = i.recv() => {} }
                }
                _ => std::future::pending::<()>().await,
            }
        };
        wyvern_cascade::run(cfg, shutdown, |api, admin| {
            println!(
                "{}http://{api} admin http://{admin}",
                wyvern_cascade::READY_PREFIX
            );
            let _ = std::io::stdout().flush();
        })
        .await
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
