//! Cascade service: one Neutron API over many wyvern sites (the Tricircle model).
//!
//! Users talk to the top API (wyvern-api over the cascade's own store, exactly the crate
//! wyvernd serves) as to one cloud. The top keeps IP allocation; a network reaches a bottom
//! site ("pod") only once a port on it is placed there ([`sync`] states the placement rule
//! and what each pod holds). Every bottom call is a job ([`state::Job`]) run in order per
//! pod, retried while the pod is unreachable ([`engine`]); routings record top id <-> bottom
//! id (equal: the bottom accepts the top's id). Port status flows back up. The admin API
//! ([`admin`]) and `wyvern cascade` ([`cli`]) manage pods, routings and jobs.

pub mod admin;
pub mod bottom;
pub mod cli;
pub mod engine;
pub mod metrics;
pub mod service;
pub mod state;
pub mod sync;

pub use service::{run, Config, ServiceError, READY_PREFIX};
