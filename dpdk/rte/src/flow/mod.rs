//! rte_flow: typed rule descriptions, their lowering to C arrays, and the flow operations.
//!
//! A rule is a [`FlowAttr`], a pattern of [`Item`]s and a list of [`FlowAction`]s. It is
//! lowered into a [`LoweredRule`] that owns every C struct the `rte_flow_item[]` and
//! `rte_flow_action[]` arrays point at; operations borrow the lowered rule, so the storage
//! outlives each call and is freed exactly once when the rule is dropped.

mod lower;
mod ops;
mod testpmd;
mod types;

pub use lower::LoweredRule;
pub use ops::{Flow, FlowCounters, FlowPort};
pub use testpmd::{to_testpmd, to_testpmd_verb, TestpmdVerb};
pub use types::{
    EthFields, FlowAction, FlowAttr, FlowRule, Ipv4Fields, Item, UdpFields, VxlanEncap, VxlanFields,
};
