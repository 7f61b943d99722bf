//! The P4Runtime back end driven by the local controller: after every compile (full or
//! incremental) the whole compiled IR is handed to `wyvern-offload-p4rt`, which writes only
//! the difference to the target. PacketIns become the same punts the OpenFlow path gives
//! the apps (see [`crate::apps`]); their answers go back as PacketOuts.
//!
//! One task owns the connection. A lost stream or a failed sync reconnects with backoff;
//! the next sync reads the target first, so nothing correct is ever rewritten.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use wyvern_offload_p4rt::{Mastership, P4rtBackend, P4rtConfig, PacketIn, PacketOut};
use wyvern_openflow::wire::{Match, PacketInFormat};
use wyvern_openflow::Field;
use wyvern_pipeline::ir::{FloodGroup, Flow};

use crate::LocalController;

/// How long to wait for the first arbitration answer of a connection.
const ARBITRATION_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the P4 target is and what it runs.
#[derive(Debug, Clone)]
pub struct P4Settings {
    /// gRPC address of the P4Runtime server (`http://HOST:PORT` or `HOST:PORT`).
    pub addr: String,
    pub device_id: u64,
    /// Election id of this controller (highest is primary).
    pub election_id: u128,
    pub p4info: p4runtime_proto::P4Info,
    /// Target-specific program (bmv2 JSON); may be empty for wyvern-p4d.
    pub device_config: Vec<u8>,
}

/// Failures reading the P4 program's files.
#[derive(Debug, thiserror::Error)]
pub enum P4LoadError {
    #[error("failed to read the P4Info {path}: {source}")]
    ReadP4Info {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to parse the P4Info {path}: {source}")]
    ParseP4Info {
        path: std::path::PathBuf,
        #[source]
        source: p4runtime_proto::TextFormatError,
    },
    #[error("failed to read the P4 device config {path}: {source}")]
    ReadDeviceConfig {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl P4Settings {
    /// Reads the P4Info (text format) and the optional device config.
    pub fn load(
        addr: String,
        device_id: u64,
        election_id: u128,
        p4info: &std::path::Path,
        device_config: Option<&std::path::Path>,
    ) -> Result<Self, P4LoadError> {
        let text = std::fs::read_to_string(p4info).map_err(|source| P4LoadError::ReadP4Info {
            path: p4info.to_owned(),
            source,
        })?;
        let p4info_msg =
            p4runtime_proto::parse_p4info(&text).map_err(|source| P4LoadError::ParseP4Info {
                path: p4info.to_owned(),
                source,
            })?;
        let device_config = match device_config {
            Some(path) => std::fs::read(path).map_err(|source| P4LoadError::ReadDeviceConfig {
                path: path.to_owned(),
                source,
            })?,
            None => Vec::new(),
        };
        Ok(P4Settings {
            addr,
            device_id,
            election_id,
            p4info: p4info_msg,
            device_config,
        })
    }
}

/// Progress of the P4 back end, readable without locks.
#[derive(Debug, Default)]
pub struct P4Status {
    /// Compile generation whose full IR the target has acknowledged.
    pub installed_generation: AtomicU64,
    pub syncs: AtomicU64,
    /// Updates written (inserts, modifies, deletes).
    pub updates: AtomicU64,
    /// Updates the target refused (reported with their flow in the log).
    pub refused: AtomicU64,
    /// Flows or groups the mapper cannot express (e.g. a port above 511).
    pub unmappable: AtomicU64,
    pub connect_failures: AtomicU64,
    pub packet_ins: AtomicU64,
    pub packet_outs: AtomicU64,
}

/// Sends the apps' answers to the P4 target.
#[derive(Debug, Clone)]
pub struct P4Out {
    tx: mpsc::UnboundedSender<PacketOut>,
}

impl P4Out {
    /// Queues a frame for one switch port; false when the back end has stopped.
    pub fn to_port(&self, port: u32, frame: Vec<u8>) -> bool {
        self.tx.send(PacketOut::to_port(port, frame)).is_ok()
    }
}

/// A running P4 back end.
#[derive(Debug, Clone)]
pub struct P4Handle {
    pub status: Arc<P4Status>,
    pub out: P4Out,
}

/// A PacketIn in the shape the apps read: OpenFlow in_port, the punt's registers and
/// its reason as controller userdata, exactly what the OpenFlow punt carries.
pub type AppPacketIn = wyvern_openflow::wire::PacketIn;

/// Starts the back end for `ctrl`'s compiled pipeline. PacketIns (as [`AppPacketIn`])
/// arrive on the returned receiver, for [`crate::apps::spawn_apps_with_p4`].
pub fn spawn(
    ctrl: LocalController,
    settings: P4Settings,
) -> (P4Handle, mpsc::UnboundedReceiver<AppPacketIn>) {
    let status = Arc::new(P4Status::default());
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let (pin_tx, pin_rx) = mpsc::unbounded_channel();
    tokio::spawn(run(ctrl, settings, status.clone(), out_rx, pin_tx));
    (
        P4Handle {
            status,
            out: P4Out { tx: out_tx },
        },
        pin_rx,
    )
}

fn endpoint(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    }
}

async fn run(
    ctrl: LocalController,
    settings: P4Settings,
    status: Arc<P4Status>,
    mut out_rx: mpsc::UnboundedReceiver<PacketOut>,
    pin_tx: mpsc::UnboundedSender<AppPacketIn>,
) {
    let addr = endpoint(&settings.addr);
    let mut compiled = ctrl.subscribe_compiles();
    // Like the OpenFlow side: no sync before the bindings are known, or a restart would
    // delete the bound ports' (correct) entries and write them again.
    let mut synced = ctrl.bindings_synced();
    if synced.wait_for(|s| *s).await.is_err() {
        return;
    }
    let mut pause = Duration::from_millis(100);
    loop {
        let cfg = P4rtConfig::new(
            settings.device_id,
            settings.election_id,
            settings.p4info.clone(),
            settings.device_config.clone(),
        );
        let (mut backend, mut packet_ins) = match connect(&addr, cfg).await {
            Ok(c) => c,
            Err(e) => {
                status.connect_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(addr, error = %e, "failed to set up the P4Runtime target; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        tracing::info!(
            addr,
            device_id = settings.device_id,
            "P4Runtime target connected"
        );
        // Sync now, then after every compile; PacketIns and PacketOuts in between.
        compiled.mark_changed();
        loop {
            tokio::select! {
                changed = compiled.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let generation = *compiled.borrow_and_update();
                    if let Err(e) = sync(&ctrl, &mut backend, &status, generation).await {
                        tracing::warn!(error = %e, "P4Runtime sync failed; reconnecting");
                        break;
                    }
                    pause = Duration::from_millis(100);
                }
                pin = packet_ins.recv() => match pin {
                    Some(p) => {
                        status.packet_ins.fetch_add(1, Ordering::Relaxed);
                        match to_app(&p) {
                            Ok(pi) => {
                                let _ = pin_tx.send(pi);
                            }
                            Err(e) => tracing::warn!(error = %e, "dropped a PacketIn"),
                        }
                    }
                    None => {
                        tracing::warn!("P4Runtime stream ended; reconnecting");
                        break;
                    }
                },
                po = out_rx.recv() => match po {
                    Some(po) => {
                        status.packet_outs.fetch_add(1, Ordering::Relaxed);
                        if let Err(e) = backend.send_packet(po).await {
                            tracing::warn!(error = %e, "failed to send a PacketOut");
                        }
                    }
                    None => return,
                },
            }
            if backend.mastership() == Mastership::Disconnected {
                break;
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

async fn connect(
    addr: &str,
    cfg: P4rtConfig,
) -> Result<(P4rtBackend, mpsc::Receiver<PacketIn>), wyvern_offload_p4rt::BackendError> {
    let (mut backend, packet_ins) = P4rtBackend::connect(addr, cfg).await?;
    backend.wait_until_primary(ARBITRATION_TIMEOUT).await?;
    backend.ensure_pipeline().await?;
    Ok((backend, packet_ins))
}

/// Hands the whole compiled IR to the back end and writes the difference.
async fn sync(
    ctrl: &LocalController,
    backend: &mut P4rtBackend,
    status: &P4Status,
    generation: u64,
) -> Result<(), wyvern_offload_p4rt::BackendError> {
    let (flows, groups): (Vec<Flow>, Vec<FloodGroup>) = {
        let st = ctrl.state().read().unwrap_or_else(|e| e.into_inner());
        (
            st.compiler.flows().cloned().collect(),
            st.compiler.groups().cloned().collect(),
        )
    };
    let unmappable = backend.set_desired(&flows, &groups);
    for e in &unmappable {
        tracing::warn!(error = %e, "flow not expressible on the P4 target");
    }
    status
        .unmappable
        .store(unmappable.len() as u64, Ordering::Relaxed);
    let report = backend.sync().await?;
    status.syncs.fetch_add(1, Ordering::Relaxed);
    status.updates.fetch_add(
        (report.updates() - report.failures.len()) as u64,
        Ordering::Relaxed,
    );
    status
        .refused
        .fetch_add(report.failures.len() as u64, Ordering::Relaxed);
    tracing::debug!(
        generation,
        inserted = report.inserted,
        modified = report.modified,
        deleted = report.deleted,
        refused = report.failures.len(),
        "P4Runtime sync"
    );
    if report.failures.is_empty() {
        status
            .installed_generation
            .fetch_max(generation, Ordering::Relaxed);
    }
    Ok(())
}

/// The punt of a PacketIn in the OpenFlow shape the apps read.
fn to_app(p: &PacketIn) -> Result<AppPacketIn, wyvern_offload_p4rt::PuntError> {
    let punt = p.punt()?;
    let match_ = Match::default()
        .with(Field::InPort, punt.ingress_port.into())
        .with(Field::Reg(crate::REG_INPORT), punt.inport.0.into())
        .with(Field::Reg(crate::REG_NETWORK), punt.network.0.into())
        .with(Field::Reg(crate::REG_ROUTER), punt.router.0.into());
    Ok(AppPacketIn {
        format: PacketInFormat::Nx2,
        buffer_id: u32::MAX,
        total_len: u32::try_from(p.payload.len()).unwrap_or(u32::MAX),
        reason: 1,
        table_id: 0,
        cookie: 0,
        match_,
        userdata: Some(vec![punt.reason.code()]),
        data: p.payload.clone(),
    })
}
