//! Rate of rte_flow rule construction for the offloadable part of a 5,000-port topology:
//! partition the compiled IR into rules (build) and lower every rule to the C arrays
//! (lower), as JSON. No EAL needed.
//! `cargo run --release -p wyvern-offload-rteflow --example build_rate -- 5000 5`

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use wyvern_offload_rteflow::{partition, OffloadConfig, PortCaps, Refusals};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let ports: u32 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5000);
    let runs: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5);

    let t = Instant::now();
    let (_w, _b, c) = common::scale(ports);
    let topo_secs = t.elapsed().as_secs_f64();
    let flows: Vec<_> = c.flows().cloned().collect();

    let proxy = u16::try_from(ports)?;
    let cfg = OffloadConfig::transfer(proxy, common::port_map(ports));
    let caps = PortCaps::assume_all(proxy);
    let refused = Refusals::new();
    let mut samples = Vec::new();
    let mut last = None;
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        let plan = partition(&flows, &cfg, proxy, &caps, &refused);
        let build = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut entries = 0usize;
        for r in plan.rules.values() {
            let l = r.rule.lower()?;
            entries += std::hint::black_box(l.items().len() + l.actions().len());
        }
        let lower = t.elapsed().as_secs_f64();
        samples.push((build, lower, entries));
        last = Some(plan);
    }
    let plan = last.expect("at least one run");
    samples.sort_by(|a, b| (a.0 + a.1).total_cmp(&(b.0 + b.1)));
    let (build, lower, entries) = samples[samples.len() / 2];
    let rules = plan.rules.len() as f64;
    println!(
        "{}",
        serde_json::json!({
            "tool": "wyvern-offload-rteflow build_rate",
            "ports": ports,
            "ir_flows": flows.len(),
            "offloaded_flows": plan.offloaded.len(),
            "software_flows": plan.not_offloaded.len(),
            "software_by_reason": plan.refused_by_reason(),
            "rules": plan.rules.len(),
            "c_entries": entries,
            "runs": samples.len(),
            "median_build_seconds": build,
            "median_lower_seconds": lower,
            "build_rules_per_sec": rules / build,
            "lower_rules_per_sec": rules / lower,
            "rules_per_sec": rules / (build + lower),
            "topology_compile_seconds": topo_secs,
        })
    );
    Ok(())
}
