//! Test helpers: DPDK port setup and the test topology (pcap files and the EAL run-dir
//! guard come from wyvern-testkit's `pcap` module).
#![allow(dead_code)]

pub mod topo;

use rte::{Eal, Mempool, Port, PortConf};

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
