//! Rules for operators: `dpdk-testpmd` lines and a listing of what each port offloads and
//! what stays in software, and why.

use std::collections::BTreeMap;
use std::fmt::Write;

use rte::flow::{to_testpmd_verb, TestpmdVerb};

use crate::backend::{FlowDevice, RteFlowBackend};
use crate::caps::{KindSupport, PortCaps, PortSupport};
use crate::layout::{group_name, Rule};
use crate::partition::PortPlan;

/// The testpmd command lines of `rules` on `port`, ordered as they are installed (deepest
/// group first). A VXLAN encap rule gives two lines (`set vxlan ...` first).
pub fn testpmd_lines<'a>(
    rules: impl IntoIterator<Item = &'a Rule>,
    port: u16,
    verb: TestpmdVerb,
) -> Vec<String> {
    let mut rules: Vec<&Rule> = rules.into_iter().collect();
    rules.sort_by(|a, b| {
        b.rule
            .attr
            .group
            .cmp(&a.rule.attr.group)
            .then_with(|| a.rule.attr.priority.cmp(&b.rule.attr.priority))
            .then_with(|| a.id.cmp(&b.id))
    });
    rules
        .iter()
        .flat_map(|r| {
            to_testpmd_verb(verb, port, &r.rule.attr, &r.rule.pattern, &r.rule.actions)
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// One port's capability line.
pub fn caps_summary(caps: &PortCaps) -> String {
    match &caps.support {
        PortSupport::NoRteFlow { message } => {
            format!("port {}: no rte_flow support ({message})", caps.port)
        }
        PortSupport::Kinds(k) => {
            let ok: Vec<&str> = k
                .iter()
                .filter(|(_, s)| **s == KindSupport::Supported)
                .map(|(k, _)| k.name())
                .collect();
            let mut s = format!(
                "port {}: rte_flow kinds supported: {}",
                caps.port,
                ok.join(" ")
            );
            for (kind, sup) in k {
                if let KindSupport::Refused { message } = sup {
                    let _ = write!(s, "\n  refused {kind}: {message}");
                }
            }
            s
        }
    }
}

/// A port's plan for operators: capabilities, rules by group with their testpmd line, and
/// the flows kept in software counted by reason.
pub fn print_plan(plan: &PortPlan, caps: &PortCaps) -> String {
    let mut out = caps_summary(caps);
    out.push('\n');
    let mut by_group: BTreeMap<u32, Vec<&Rule>> = BTreeMap::new();
    for r in plan.rules.values() {
        by_group.entry(r.rule.attr.group).or_default().push(r);
    }
    for (g, rules) in &by_group {
        let _ = writeln!(out, "group {g} ({}): {} rules", group_name(*g), rules.len());
        for r in rules {
            let _ = writeln!(out, "  # {} [{}]", r.id, r.kind);
            for l in r.to_testpmd(plan.port).lines() {
                let _ = writeln!(out, "  {l}");
            }
        }
    }
    let _ = writeln!(
        out,
        "offloaded flows: {}; in software: {}",
        plan.offloaded.len(),
        plan.not_offloaded.len()
    );
    for (reason, n) in plan.refused_by_reason() {
        let _ = writeln!(out, "  {reason}: {n}");
    }
    out
}

/// Every port of a back end, for the CLI.
pub fn print_rules<D: FlowDevice>(backend: &RteFlowBackend<D>) -> String {
    let mut out = String::new();
    for port in backend.ports() {
        if let (Some(plan), Some(caps)) = (backend.plan(port), backend.caps(port)) {
            out.push_str(&print_plan(plan, caps));
        }
    }
    out
}
