//! Test helpers: EAL arguments for two null ports (the run-dir guard is wyvern-testkit's).
#![allow(dead_code)]

pub use wyvern_testkit::pcap::DpdkRunDir as RunDir;

/// EAL options for a hugepage-free, PCI-free EAL with two null ports on core 0.
pub fn null_eal_args(run_dir: &RunDir) -> Vec<String> {
    run_dir.eal_args([
        "--vdev=net_null0".to_string(),
        "--vdev=net_null1".to_string(),
    ])
}
