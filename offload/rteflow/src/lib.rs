//! IR -> rte_flow: the part of the pipeline a NIC can execute, with per-port capability probing; the rest stays in software.
//!
//! [`partition`] decides per port which compiled IR flows become rte_flow rules (groups and
//! JUMPs mirroring the stages, see docs/offload.md) and records why every other flow stays
//! in software ([`NotOffloaded`]). [`probe`] fills a port's capability model with
//! `rte_flow_validate`. [`RteFlowBackend`] keeps desired and installed rules per port and
//! installs the difference. [`render`] prints rules as `dpdk-testpmd` commands.

pub mod backend;
pub mod caps;
pub mod layout;
pub mod partition;
pub mod render;

pub use backend::{BackendError, Counters, FlowDevice, RteFlowBackend, SyncReport};
pub use caps::{probe, representative, KindSupport, PortCaps, PortSupport};
pub use layout::{
    group_name, group_of, group_stage, rte_priority, Mode, OffloadConfig, Origin, Rule, RuleId,
    RuleKind, SoftwarePath,
};
pub use partition::{partition, NotOffloaded, Offloaded, PortPlan, Reason, Refusals};
pub use render::{caps_summary, print_plan, print_rules, testpmd_lines};
