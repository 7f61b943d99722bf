//! Checkpoint service (the Smaug/Karbor model): protect a project's network into a bank, verify it, restore it into any wyvernd.
//!
//! - [`graph`]: protectables and their dependency graph, read at one consistent cut.
//! - [`bank`]: the bank layout over `object_store` (filesystem or S3), manifests, leases.
//! - [`protect`] / [`restore`]: taking and restoring checkpoints.
//! - [`service`] + [`api`]: the Karbor v1 API service; [`cli`]: `wyvern checkpoint ...`.

pub mod api;
pub mod bank;
pub mod cli;
pub mod cron;
pub mod graph;
pub mod metrics;
pub mod neutron;
pub mod protect;
pub mod restore;
pub mod service;
pub mod state;
