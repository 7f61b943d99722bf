//! Safe Rust bindings to DPDK 22.11: EAL, ethdev, mempool/mbuf and rte_flow.
//!
//! Layout: [`Eal`] (one per process), [`Port`] (ethdev: configure, queues, start/stop,
//! stats, bursts), [`Mempool`]/[`Mbuf`] (RAII packet buffers), [`flow`] (typed rte_flow
//! rules lowered to C arrays, flow operations, testpmd rendering). [`ffi`] exposes the raw
//! bindings for what the safe layer does not cover.

mod eal;
mod error;
mod ethdev;
pub mod ffi;
pub mod flow;
mod mbuf;

use std::fmt;

pub use eal::{lcore_id, Eal};
pub use error::{rte_errno, FlowErrorKind, RteError};
pub use ethdev::{Port, PortConf, PortInfo, PortStats};
pub use mbuf::{free_bulk, Mbuf, Mempool, PoolConfig};

/// An Ethernet address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    pub const ZERO: MacAddr = MacAddr([0; 6]);
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// Error parsing a `aa:bb:cc:dd:ee:ff` string.
#[derive(Debug, thiserror::Error)]
#[error("failed to parse MAC address {0:?}: expected six hex bytes separated by ':'")]
pub struct MacParseError(String);

impl std::str::FromStr for MacAddr {
    type Err = MacParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for b in out.iter_mut() {
            let p = parts.next().ok_or_else(|| MacParseError(s.to_owned()))?;
            if p.is_empty() || p.len() > 2 {
                return Err(MacParseError(s.to_owned()));
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| MacParseError(s.to_owned()))?;
        }
        if parts.next().is_some() {
            return Err(MacParseError(s.to_owned()));
        }
        Ok(MacAddr(out))
    }
}
