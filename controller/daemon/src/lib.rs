//! The wyvernd per-host daemon and the wyvern CLI: configuration and wiring.

pub mod cli;
pub mod client;
pub mod config;
pub mod metrics;
pub mod server;
pub mod status;
