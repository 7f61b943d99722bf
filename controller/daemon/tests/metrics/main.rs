//! Observability end to end: the real wyvernd with the demo topology on a private Open
//! vSwitch, scraped by the real Prometheus (Debian package) with the shipped scrape config;
//! `promtool` checks the exposition, the config and the alert rules; every metric the
//! dashboards and alerts use must be one wyvernd exports; `wyvern status` reads /metrics.

mod common;
mod docs;
mod prometheus;
mod status;
