//! wyvern-p4d: a software P4Runtime target for wyvern.p4 whose tables run in the wyvern engine and forward on DPDK ports.
//!
//! - [`translate`]: P4Runtime table entries -> engine entries through the committed P4Info
//!   (names from `wyvern_offload_p4rt::mapping`, never a second mapping).
//! - [`target`]: arbitration per role, pipeline, Write/Read with the spec's per-update
//!   errors, direct counters, multicast groups as flood groups, PacketOut/PacketIn.
//! - [`service`]: the tonic P4Runtime service over [`target::Target`].
//! - [`dpdk`]: the datapath: EAL, ports from `--vdev`, the fast path on the main thread.

pub mod dpdk;
pub mod service;
pub mod target;
pub mod translate;

pub use target::{NoPorts, Ports, PuntedFrame, Target, TargetStats};
