//! Test helpers: EAL run-dir cleanup, port setup, and a tiny pcap reader/writer.
#![allow(dead_code)]

pub mod topo;

use std::path::{Path, PathBuf};

use rte::{Eal, Mempool, Port, PortConf};

/// Removes `/var/run/dpdk/<prefix>` when dropped (EAL leaves its config files there).
pub struct RunDir {
    pub prefix: String,
}

impl RunDir {
    pub fn new(purpose: &str) -> RunDir {
        RunDir {
            prefix: format!("wyv-fp-{purpose}-{}", std::process::id()),
        }
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(PathBuf::from("/var/run/dpdk").join(&self.prefix));
    }
}

/// Opens, configures (one RX and one TX queue) and starts DPDK port `id`.
pub fn start_port(eal: &Eal, id: u16, pool: &Mempool) -> anyhow::Result<Port> {
    let mut p = Port::open(eal, id)?;
    p.configure(&PortConf {
        rx_queues: 1,
        tx_queues: 1,
    })?;
    p.setup_rx_queue(0, 1024, pool)?;
    p.setup_tx_queue(0, 1024)?;
    p.start()?;
    Ok(p)
}

/// Writes a classic pcap file (microsecond timestamps, Ethernet link type).
pub fn write_pcap(path: &Path, frames: &[Vec<u8>]) -> std::io::Result<()> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        out.extend_from_slice(&1_700_000_000u32.to_le_bytes());
        out.extend_from_slice(&(i as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    std::fs::write(path, out)
}

/// Reads the frames of a pcap file (micro- or nanosecond magic, little-endian).
pub fn read_pcap(path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let b = std::fs::read(path)?;
    anyhow::ensure!(b.len() >= 24, "{path:?}: no pcap header");
    let magic = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    anyhow::ensure!(
        magic == 0xa1b2_c3d4 || magic == 0xa1b2_3c4d,
        "{path:?}: unknown pcap magic {magic:#x}"
    );
    let mut at = 24;
    let mut frames = Vec::new();
    while at + 16 <= b.len() {
        let incl = u32::from_le_bytes([b[at + 8], b[at + 9], b[at + 10], b[at + 11]]) as usize;
        at += 16;
        anyhow::ensure!(at + incl <= b.len(), "{path:?}: truncated record");
        frames.push(b[at..at + incl].to_vec());
        at += incl;
    }
    Ok(frames)
}
