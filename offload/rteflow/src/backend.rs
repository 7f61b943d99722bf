//! The rte_flow back end: desired rules versus installed handles per port, installing only
//! the difference. It never flushes: a resync creates what is missing and destroys what is
//! gone, and a rule that is already right stays untouched (its counters and its traffic).
//!
//! Consistency: rules are created deepest group first (egress, l3, l2, then group 0), so a
//! JUMP never targets a group that has not got its rules yet, and destroyed group 0 first.
//! Within a group, rules are created highest precedence first. A create the port refuses is
//! recorded with the driver's message, the round stops (so no deny or drop miss lands
//! without the rules above it) and the port is partitioned again without it (its group then
//! misses to software), at most [`MAX_ROUNDS`] times per apply; the same rule is not tried
//! again until it changes.
//! rte_flow rules die with the process that created them, so a restarted controller starts
//! from an empty NIC and has nothing to sweep.

use std::collections::BTreeMap;

use rte::flow::{FlowPort, LoweredRule};
use rte::RteError;
use wyvern_pipeline::Flow;

use crate::caps::{probe, PortCaps, PortSupport};
use crate::layout::{OffloadConfig, Rule, RuleId};
use crate::partition::{partition, PortPlan, Refusals};

/// Partition-and-install rounds per apply. Each round that does not finish records a new
/// refusal, so this bounds the refusals one apply absorbs; the next apply continues.
pub const MAX_ROUNDS: usize = 64;

/// What the back end needs from a port: `rte::flow::FlowPort` in production, a fake in
/// unit tests. No flush on purpose.
pub trait FlowDevice {
    type Handle;
    fn port(&self) -> u16;
    fn validate(&self, rule: &LoweredRule) -> Result<(), RteError>;
    fn create(&self, rule: &LoweredRule) -> Result<Self::Handle, RteError>;
    fn destroy(&self, handle: Self::Handle) -> Result<(), RteError>;
}

impl FlowDevice for FlowPort {
    type Handle = rte::flow::Flow;
    fn port(&self) -> u16 {
        FlowPort::port(self)
    }
    fn validate(&self, rule: &LoweredRule) -> Result<(), RteError> {
        FlowPort::validate(self, rule)
    }
    fn create(&self, rule: &LoweredRule) -> Result<Self::Handle, RteError> {
        FlowPort::create(self, rule)
    }
    fn destroy(&self, handle: Self::Handle) -> Result<(), RteError> {
        FlowPort::destroy(self, handle)
    }
}

/// Why the back end could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("failed to set up the rte_flow back end: no device given for target port {port}")]
    MissingDevice { port: u16 },
}

/// Counters over every port (or one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// IR flows executed by a NIC.
    pub offloaded_flows: u64,
    /// IR flows kept in software, by reason label.
    pub not_offloaded: BTreeMap<&'static str, u64>,
    pub rules_desired: u64,
    pub rules_installed: u64,
    pub creates: u64,
    pub destroys: u64,
    /// Creates the driver refused (after probing said the kind was fine).
    pub create_refusals: u64,
    pub destroy_failures: u64,
}

/// What one apply did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub created: usize,
    pub destroyed: usize,
    /// Rules refused at create: id and the driver's message.
    pub refused: Vec<(RuleId, String)>,
    /// Destroys that failed (the handle is gone either way): id and message.
    pub destroy_failures: Vec<(RuleId, String)>,
    /// Partition rounds used, summed over ports.
    pub rounds: usize,
}

struct Installed<H> {
    rule: Rule,
    handle: H,
}

struct PortState<D: FlowDevice> {
    dev: D,
    caps: PortCaps,
    plan: PortPlan,
    installed: BTreeMap<RuleId, Installed<D::Handle>>,
    refused: Refusals,
    counters: Counters,
}

/// The rte_flow back end over the configured target ports.
pub struct RteFlowBackend<D: FlowDevice = FlowPort> {
    cfg: OffloadConfig,
    ports: BTreeMap<u16, PortState<D>>,
}

impl<D: FlowDevice> RteFlowBackend<D> {
    /// Probes every target port (validate only) and starts with nothing installed.
    pub fn new(cfg: OffloadConfig, devices: Vec<D>) -> Result<Self, BackendError> {
        let mut by_port: BTreeMap<u16, D> = devices.into_iter().map(|d| (d.port(), d)).collect();
        let mut ports = BTreeMap::new();
        for port in cfg.targets() {
            let dev = by_port
                .remove(&port)
                .ok_or(BackendError::MissingDevice { port })?;
            let caps = probe(&dev, &cfg);
            ports.insert(
                port,
                PortState {
                    dev,
                    caps,
                    plan: PortPlan {
                        port,
                        ..Default::default()
                    },
                    installed: BTreeMap::new(),
                    refused: Refusals::new(),
                    counters: Counters::default(),
                },
            );
        }
        Ok(RteFlowBackend { cfg, ports })
    }

    pub fn config(&self) -> &OffloadConfig {
        &self.cfg
    }

    /// The target ports.
    pub fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.ports.keys().copied()
    }

    pub fn caps(&self, port: u16) -> Option<&PortCaps> {
        self.ports.get(&port).map(|p| &p.caps)
    }

    /// The last partition of `port`: desired rules and every flow's placement.
    pub fn plan(&self, port: u16) -> Option<&PortPlan> {
        self.ports.get(&port).map(|p| &p.plan)
    }

    /// The rules installed on `port`.
    pub fn installed(&self, port: u16) -> impl Iterator<Item = &Rule> + '_ {
        self.ports
            .get(&port)
            .into_iter()
            .flat_map(|p| p.installed.values().map(|i| &i.rule))
    }

    /// Makes the NICs hold the offloadable part of `flows` (the whole compiled IR).
    pub fn apply<'a>(&mut self, flows: impl IntoIterator<Item = &'a Flow>) -> SyncReport {
        let flows: Vec<&Flow> = flows.into_iter().collect();
        let mut report = SyncReport::default();
        for (port, st) in self.ports.iter_mut() {
            for _ in 0..MAX_ROUNDS {
                report.rounds += 1;
                st.plan = partition(
                    flows.iter().copied(),
                    &self.cfg,
                    *port,
                    &st.caps,
                    &st.refused,
                );
                if !sync_port(st, &mut report) {
                    break;
                }
            }
            st.counters.offloaded_flows = st.plan.offloaded.len() as u64;
            st.counters.not_offloaded = st
                .plan
                .refused_by_reason()
                .into_iter()
                .map(|(k, v)| (k, v as u64))
                .collect();
            st.counters.rules_desired = st.plan.rules.len() as u64;
            st.counters.rules_installed = st.installed.len() as u64;
        }
        report
    }

    /// Counters of one port.
    pub fn port_counters(&self, port: u16) -> Option<&Counters> {
        self.ports.get(&port).map(|p| &p.counters)
    }

    /// Counters summed over ports.
    pub fn counters(&self) -> Counters {
        let mut c = Counters::default();
        for p in self.ports.values() {
            let q = &p.counters;
            c.offloaded_flows += q.offloaded_flows;
            for (k, v) in &q.not_offloaded {
                *c.not_offloaded.entry(k).or_insert(0) += v;
            }
            c.rules_desired += q.rules_desired;
            c.rules_installed += q.rules_installed;
            c.creates += q.creates;
            c.destroys += q.destroys;
            c.create_refusals += q.create_refusals;
            c.destroy_failures += q.destroy_failures;
        }
        c
    }

    /// Removes every installed rule by its handle (shutdown). Still no flush: rules this
    /// back end did not create are not its to remove.
    pub fn clear(&mut self) -> SyncReport {
        let mut report = SyncReport::default();
        for st in self.ports.values_mut() {
            st.plan.rules.clear();
            sync_port(st, &mut report);
            st.counters.rules_installed = st.installed.len() as u64;
            st.counters.rules_desired = 0;
        }
        report
    }
}

/// Installs the difference between `st.plan` and what is installed. Returns true when a
/// create was refused (the caller partitions again without it).
fn sync_port<D: FlowDevice>(st: &mut PortState<D>, report: &mut SyncReport) -> bool {
    // Destroy what is gone or changed, group 0 first.
    let mut gone: Vec<RuleId> = st
        .installed
        .iter()
        .filter(|(id, i)| st.plan.rules.get(*id).is_none_or(|r| r.rule != i.rule.rule))
        .map(|(id, _)| id.clone())
        .collect();
    gone.sort_by_key(|id| (st.installed[id].rule.rule.attr.group, id.clone()));
    for id in gone {
        let Some(i) = st.installed.remove(&id) else {
            continue;
        };
        match st.dev.destroy(i.handle) {
            Ok(()) => {
                report.destroyed += 1;
                st.counters.destroys += 1;
            }
            Err(e) => {
                report.destroy_failures.push((id, e.to_string()));
                st.counters.destroy_failures += 1;
            }
        }
    }
    // Create what is missing, deepest group first.
    let mut missing: Vec<&Rule> = st
        .plan
        .rules
        .values()
        .filter(|r| !st.installed.contains_key(&r.id))
        .collect();
    // Within a group, highest precedence first: a miss or deny is created after the rules
    // it must not shadow.
    missing.sort_by(|a, b| {
        b.rule
            .attr
            .group
            .cmp(&a.rule.attr.group)
            .then_with(|| a.rule.attr.priority.cmp(&b.rule.attr.priority))
            .then_with(|| a.id.cmp(&b.id))
    });
    let mut refused_any = false;
    let mut no_rte_flow = None;
    let mut created = Vec::new();
    for r in missing {
        let result = r.rule.lower().and_then(|l| st.dev.create(&l));
        match result {
            Ok(handle) => created.push((r.clone(), handle)),
            Err(e @ RteError::Unsupported { .. }) => {
                no_rte_flow = Some(e.to_string());
                break;
            }
            Err(e) => {
                let msg = e.to_string();
                report.refused.push((r.id.clone(), msg.clone()));
                st.counters.create_refusals += 1;
                st.refused.insert(r.id.clone(), (r.rule.clone(), msg));
                refused_any = true;
                // Stop here: a later deny or drop miss may only be right with this rule in
                // place. The next round partitions without it.
                break;
            }
        }
    }
    for (rule, handle) in created {
        report.created += 1;
        st.counters.creates += 1;
        st.installed
            .insert(rule.id.clone(), Installed { rule, handle });
    }
    if let Some(message) = no_rte_flow {
        // Probing said otherwise, but the driver is the authority: keep it all in software.
        st.caps.support = PortSupport::NoRteFlow { message };
        return true;
    }
    refused_any
}
