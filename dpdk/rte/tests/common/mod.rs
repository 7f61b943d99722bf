//! Test helpers: unique EAL file prefixes and cleanup of DPDK's run directory.
#![allow(dead_code)]

use std::path::PathBuf;

/// Removes `/var/run/dpdk/<prefix>` when dropped (EAL leaves its config files there).
pub struct RunDir {
    pub prefix: String,
}

impl RunDir {
    /// A prefix unique to this process and purpose.
    pub fn new(purpose: &str) -> RunDir {
        RunDir {
            prefix: format!("wyv-{purpose}-{}", std::process::id()),
        }
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/var/run/dpdk").join(&self.prefix)
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.path());
    }
}

/// EAL options for a hugepage-free, PCI-free EAL with two null ports on core 0.
pub fn null_eal_args(prefix: &str) -> Vec<String> {
    [
        "--no-huge",
        "--no-pci",
        "-m",
        "512",
        "--file-prefix",
        prefix,
        "--vdev=net_null0",
        "--vdev=net_null1",
        "-l",
        "0",
        "--no-telemetry",
        "--log-level=warning",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}
