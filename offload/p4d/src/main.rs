//! wyvern-p4d: the software P4Runtime target.
//!
//! `wyvern-p4d [--grpc-listen ADDR] [--device-id N] [--port-numbers 1,2] [--hold-rx] [-- EAL ARGS]`
//!
//! With EAL arguments (`-- --no-huge --no-pci -m 512 --file-prefix p4d1
//! --vdev=net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap`) the tables forward on those DPDK
//! ports; without, only the control plane runs (PacketOut through the pipeline still
//! produces PacketIns). Prints `wyvern-p4d listening on ADDR` once serving.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};
use wyvern_engine::Engine;
use wyvern_p4d::dpdk::{self, DatapathOptions};
use wyvern_p4d::service;
use wyvern_p4d::{NoPorts, PuntedFrame, Target};

/// How long a stop waits for controllers to close their streams.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Debug, Parser)]
#[command(name = "wyvern-p4d", about = "Software P4Runtime target for wyvern.p4")]
struct Args {
    /// Address of the P4Runtime gRPC server (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:9559")]
    grpc_listen: SocketAddr,
    /// The P4Runtime device id controllers must name.
    #[arg(long, default_value_t = 1)]
    device_id: u64,
    /// Switch port number of each DPDK port, in port id order (default 1, 2, ...).
    #[arg(long, value_delimiter = ',')]
    port_numbers: Option<Vec<u32>>,
    /// Do not process received frames until SIGUSR1 (lets a controller program the tables
    /// before a pcap port's input is read).
    #[arg(long)]
    hold_rx: bool,
    /// DPDK EAL arguments (after `--`); none: control plane only.
    #[arg(last = true)]
    eal: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let engine = Arc::new(Mutex::new(Engine::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let rx_enabled = Arc::new(AtomicBool::new(!args.hold_rx));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("failed to start the tokio runtime")?;

    if args.eal.is_empty() {
        let target = Target::new(args.device_id, engine, Arc::new(NoPorts));
        return rt.block_on(serve(target, args.grpc_listen, stop, rx_enabled));
    }

    let opts = DatapathOptions {
        eal_args: args.eal.clone(),
        port_numbers: args.port_numbers.clone(),
        rx_enabled: rx_enabled.clone(),
        stop: stop.clone(),
    };
    let mut server = None;
    let result = dpdk::run(opts, engine.clone(), |ports, punts, numbers| {
        tracing::info!(?numbers, "DPDK ports up");
        let target = Target::new(args.device_id, engine.clone(), ports);
        let t = target.clone();
        // Punts from the fast path become PacketIns; ends when the fast path is dropped.
        std::thread::spawn(move || {
            for p in punts {
                t.packet_in(PuntedFrame {
                    ingress_port: p.in_port,
                    reason: p.reason,
                    inport: p.inport,
                    network: p.network,
                    router: p.router,
                    frame: p.frame,
                });
            }
        });
        let (stop2, rx2) = (stop.clone(), rx_enabled.clone());
        let addr = args.grpc_listen;
        server = Some(rt.spawn(async move {
            let r = serve(target, addr, stop2.clone(), rx2).await;
            // The datapath stops with the server (a bind failure included).
            stop2.store(true, Ordering::Relaxed);
            r
        }));
    });
    stop.store(true, Ordering::Relaxed);
    result.context("failed to run the DPDK datapath")?;
    if let Some(s) = server {
        rt.block_on(s).context("the gRPC server task failed")??;
    }
    Ok(())
}

/// Serves until SIGTERM/SIGINT (or `stop`); SIGUSR1 turns RX processing on.
async fn serve(
    target: Target,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    rx_enabled: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let listener = service::bind(addr)
        .await
        .with_context(|| format!("failed to listen on {addr}"))?;
    let local = listener
        .local_addr()
        .context("failed to read the bound address")?;
    let mut term = signal(SignalKind::terminate()).context("failed to watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("failed to watch SIGINT")?;
    let mut usr1 = signal(SignalKind::user_defined1()).context("failed to watch SIGUSR1")?;
    tokio::spawn(async move {
        while usr1.recv().await.is_some() {
            tracing::info!("SIGUSR1: processing received frames");
            rx_enabled.store(true, Ordering::Relaxed);
        }
    });
    let (signalled, on_signal) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("stopping");
        stop.store(true, Ordering::Relaxed);
        let _ = signalled.send(());
    };
    println!("wyvern-p4d listening on {local}");
    let server = service::serve(target.clone(), listener, shutdown);
    tokio::pin!(server);
    // A graceful stop waits for open StreamChannels; controllers that keep theirs open do
    // not hold the process past the grace period.
    let grace = async {
        if on_signal.await.is_ok() {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        r = &mut server => r.context("failed to serve P4Runtime")?,
        _ = grace => tracing::info!("controllers still connected after the grace period: closing"),
    }
    tracing::info!(stats = ?target.stats(), "stopped");
    Ok(())
}
