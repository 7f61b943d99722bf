//! The datapath: the EAL with the caller's arguments, every ethdev it created (`--vdev`
//! pcap, null, tap, ring ports) bound to a switch port number, and the fast path polling
//! them on the calling thread (the EAL's main lcore).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rte::{Eal, Mempool, PoolConfig, Port, PortConf, RteError};
use wyvern_engine::Engine;
use wyvern_fastpath::{Config, FastPath, FastPathError, Punted};

use crate::target::Ports;

/// Frames from the control plane waiting for the datapath thread.
const INJECT_CAPACITY: usize = 4096;
/// Idle rounds before the loop starts napping (a busy poll would starve the control plane
/// of the engine lock and of CPU on a small machine).
const IDLE_ROUNDS: u32 = 64;
const IDLE_NAP: Duration = Duration::from_micros(200);

#[derive(Debug, thiserror::Error)]
pub enum DpdkError {
    #[error("failed to initialise the EAL: {0}")]
    Eal(#[source] RteError),
    #[error("failed to find a DPDK port: the EAL arguments created none (give --vdev=...)")]
    NoPorts,
    #[error("failed to bind ports: {ports} DPDK ports but {numbers} switch port numbers")]
    PortNumbers { ports: usize, numbers: usize },
    #[error("failed to create the mbuf pool: {0}")]
    Pool(#[source] RteError),
    #[error("failed to start DPDK port {port}: {source}")]
    Port {
        port: u16,
        #[source]
        source: RteError,
    },
    #[error("failed to set up the fast path: {0}")]
    FastPath(#[source] FastPathError),
}

/// What [`run`] needs besides the EAL arguments.
pub struct DatapathOptions {
    /// Options for `rte_eal_init` (no program name).
    pub eal_args: Vec<String>,
    /// Switch port of each DPDK port in port id order; `None` numbers them 1, 2, ...
    pub port_numbers: Option<Vec<u32>>,
    /// Frames received are processed only while this is set (a test programs the tables
    /// first, then lets a pcap port's file in).
    pub rx_enabled: Arc<AtomicBool>,
    /// Set to stop the loop.
    pub stop: Arc<AtomicBool>,
}

/// Frames for switch ports, handed to the datapath thread.
pub struct DpdkPorts {
    tx: SyncSender<(u32, Vec<u8>)>,
}

impl Ports for DpdkPorts {
    fn send(&self, port: u32, frame: Vec<u8>) -> bool {
        self.tx.try_send((port, frame)).is_ok()
    }
}

fn start_port(eal: &Eal, id: u16, pool: &Mempool) -> Result<Port, DpdkError> {
    let err = |source| DpdkError::Port { port: id, source };
    let mut p = Port::open(eal, id).map_err(err)?;
    p.configure(&PortConf {
        rx_queues: 1,
        tx_queues: 1,
    })
    .map_err(err)?;
    p.setup_rx_queue(0, 1024, pool).map_err(err)?;
    p.setup_tx_queue(0, 1024).map_err(err)?;
    p.start().map_err(err)?;
    Ok(p)
}

/// Runs the datapath on the calling thread until `opts.stop` is set. `ready` gets the
/// ports (for PacketOut) and the punts (for PacketIn) once the ports are up, and the
/// switch port numbers in use.
pub fn run(
    opts: DatapathOptions,
    engine: Arc<Mutex<Engine>>,
    ready: impl FnOnce(Arc<dyn Ports>, Receiver<Punted>, &[u32]),
) -> Result<(), DpdkError> {
    let args: Vec<&str> = opts.eal_args.iter().map(String::as_str).collect();
    let eal = Eal::init(&args).map_err(DpdkError::Eal)?;
    let ids = eal.port_ids();
    if ids.is_empty() {
        return Err(DpdkError::NoPorts);
    }
    let numbers: Vec<u32> = opts
        .port_numbers
        .clone()
        .unwrap_or_else(|| (1..=ids.len() as u32).collect());
    if numbers.len() != ids.len() {
        return Err(DpdkError::PortNumbers {
            ports: ids.len(),
            numbers: numbers.len(),
        });
    }
    let pool = Mempool::pktmbuf_pool(
        &eal,
        "p4d_pool",
        &PoolConfig {
            size: 8191,
            cache_size: 64,
            ..Default::default()
        },
    )
    .map_err(DpdkError::Pool)?;
    let ports = ids
        .iter()
        .map(|i| start_port(&eal, *i, &pool))
        .collect::<Result<Vec<_>, _>>()?;
    {
        let (mut fp, punts) = FastPath::new(&ports, &numbers, &pool, engine, Config::default())
            .map_err(DpdkError::FastPath)?;
        let (tx, inject) = mpsc::sync_channel(INJECT_CAPACITY);
        ready(Arc::new(DpdkPorts { tx }), punts, &numbers);
        poll_loop(&mut fp, &inject, &opts);
        tracing::info!(stats = ?fp.stats(), "datapath stopped");
    }
    drop(ports);
    drop(pool);
    if let Err(e) = eal.cleanup() {
        tracing::warn!(error = %e, "EAL cleanup failed");
    }
    Ok(())
}

fn poll_loop(fp: &mut FastPath<'_>, inject: &Receiver<(u32, Vec<u8>)>, opts: &DatapathOptions) {
    let mut idle = 0u32;
    while !opts.stop.load(Ordering::Relaxed) {
        let mut work = 0;
        while let Ok((port, frame)) = inject.try_recv() {
            // Counted in the fast path's stats (no_port, alloc_failed) on failure.
            let _ = fp.send(port, &frame);
            work += 1;
        }
        if opts.rx_enabled.load(Ordering::Relaxed) {
            work += fp.poll();
        } else if work > 0 {
            fp.flush();
        }
        if work == 0 {
            idle = idle.saturating_add(1);
            if idle > IDLE_ROUNDS {
                std::thread::sleep(IDLE_NAP);
            }
        } else {
            idle = 0;
        }
    }
    fp.flush();
}
