//! The partitioner: which compiled IR flows a port's NIC executes, as which rte_flow rules,
//! and why each of the others stays in software.
//!
//! Rules of the layout (docs/offload.md has the long form):
//! - Groups mirror stages; the logical key a register would carry is part of the group
//!   number ([`crate::layout::group_of`]). Classify, port security and dispatch fold into
//!   group 0 because they only look at the packet as it enters.
//! - Sending a packet to software is always safe before the NIC modified it: software runs
//!   the whole pipeline again. So steering rules may widen their match (ARP op is dropped
//!   from the ARP steer: all ARP goes to software), and a group whose flows are not all
//!   on the NIC misses to software instead of mirroring the stage's drop.
//! - A rule that jumps to a group not on the NIC is not installed; its group becomes
//!   incomplete. Stages are processed last to first, so a target is decided before any
//!   rule that jumps to it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use rte::flow::{EthFields, FlowAction, FlowRule, Ipv4Fields, Item, UdpFields};
use rte::MacAddr;
use wyvern_pipeline::{Action, FieldKind, Flow, Match, Miss, Owner, PuntReason, Stage};

use crate::caps::PortCaps;
use crate::layout::{
    eth_dst_multicast, group_of, group_stage, rte_priority, OffloadConfig, Origin, Rule, RuleId,
    RuleKind, MISS_PRIORITY, ROOT_ALLOW_PRIORITY, ROOT_DENY_PRIORITY, ROOT_STEER_PRIORITY,
};

/// The VXLAN UDP port decap rules match.
pub const VXLAN_PORT: u16 = 4789;

/// Why a flow is not executed by the NIC.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// The action builds a packet (ARP reply in place): no rte_flow action does that.
    CompositeAction(&'static str),
    /// The flow sends packets to the controller; the NIC at most steers them to software.
    Punt(PuntReason),
    /// Flooding needs a multi-port output group rte_flow does not offer here.
    Flood,
    /// The stage runs in software: its packets are steered there in group 0 (ARP, DHCP).
    SoftwareStage(Stage),
    /// Matches a field no rte_flow item here expresses (ARP fields, ICMP type).
    UnsupportedMatch(FieldKind),
    /// An action combination the layout does not map.
    UnsupportedAction(String),
    /// Needs logical metadata the NIC cannot carry between groups.
    NeedsLogicalMetadata(FieldKind),
    /// The switch port has no DPDK port on this NIC.
    NoDevicePort { ofport: u32 },
    /// Jumps to a group that is not on the NIC.
    TargetNotOffloaded { group: u32 },
    /// No chain of this port reaches the flow's group (per-port mode: another port's traffic).
    NotReachable,
    /// The port refused this rule kind (at probing) or this rule (at create), with the
    /// driver's message. Not retried.
    RefusedByPort {
        port: u16,
        kind: RuleKind,
        message: String,
    },
    /// The port has no rte_flow at all (ENOSYS).
    NoRteFlow { port: u16, message: String },
}

impl Reason {
    /// A stable label for counters.
    pub fn label(&self) -> &'static str {
        match self {
            Reason::CompositeAction(_) => "composite_action",
            Reason::Punt(_) => "punt",
            Reason::Flood => "flood",
            Reason::SoftwareStage(_) => "software_stage",
            Reason::UnsupportedMatch(_) => "unsupported_match",
            Reason::UnsupportedAction(_) => "unsupported_action",
            Reason::NeedsLogicalMetadata(_) => "needs_logical_metadata",
            Reason::NoDevicePort { .. } => "no_device_port",
            Reason::TargetNotOffloaded { .. } => "target_not_offloaded",
            Reason::NotReachable => "not_reachable",
            Reason::RefusedByPort { .. } => "refused_by_port",
            Reason::NoRteFlow { .. } => "no_rte_flow",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::CompositeAction(a) => {
                write!(f, "composite action {a} has no rte_flow equivalent")
            }
            Reason::Punt(r) => write!(f, "punt to the controller ({r:?})"),
            Reason::Flood => f.write_str("flood needs a multi-port group"),
            Reason::SoftwareStage(s) => write!(f, "stage {s} runs in software"),
            Reason::UnsupportedMatch(k) => write!(f, "no rte_flow item for {k:?}"),
            Reason::UnsupportedAction(a) => write!(f, "no rte_flow mapping for actions {a}"),
            Reason::NeedsLogicalMetadata(k) => {
                write!(f, "needs logical metadata {k:?} the NIC cannot carry")
            }
            Reason::NoDevicePort { ofport } => write!(f, "switch port {ofport} has no DPDK port"),
            Reason::TargetNotOffloaded { group } => write!(
                f,
                "jumps to {} which is not offloaded",
                crate::layout::group_name(*group)
            ),
            Reason::NotReachable => f.write_str("no chain of this port reaches it"),
            Reason::RefusedByPort {
                port,
                kind,
                message,
            } => write!(f, "refused by port {port} ({kind}): {message}"),
            Reason::NoRteFlow { port, message } => {
                write!(f, "port {port} has no rte_flow support: {message}")
            }
        }
    }
}

/// A flow the NIC executes, with the rules that do it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offloaded {
    pub flow: Flow,
    pub rules: Vec<RuleId>,
}

/// A flow that stays in software.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotOffloaded {
    pub flow: Flow,
    pub reason: Reason,
    /// The NIC rule that sends this flow's packets to software, where there is one (punts,
    /// ARP, DHCP, flood). Without one, the packets reach software by the NIC's default path.
    pub steered_by: Option<RuleId>,
}

/// What one port's NIC gets: its rules and where every flow went.
#[derive(Debug, Clone, Default)]
pub struct PortPlan {
    pub port: u16,
    pub rules: BTreeMap<RuleId, Rule>,
    pub offloaded: Vec<Offloaded>,
    pub not_offloaded: Vec<NotOffloaded>,
}

impl PortPlan {
    /// Not-offloaded flows counted by reason label.
    pub fn refused_by_reason(&self) -> BTreeMap<&'static str, usize> {
        let mut m = BTreeMap::new();
        for n in &self.not_offloaded {
            *m.entry(n.reason.label()).or_insert(0) += 1;
        }
        m
    }

    /// The placement of `flow`: `Ok` with its rules, or `Err` with the reason.
    pub fn placement(&self, flow: &Flow) -> Option<Result<&[RuleId], &Reason>> {
        if let Some(o) = self.offloaded.iter().find(|o| &o.flow == flow) {
            return Some(Ok(&o.rules));
        }
        self.not_offloaded
            .iter()
            .find(|n| &n.flow == flow)
            .map(|n| Err(&n.reason))
    }
}

/// Runtime refusals: a rule the port refused at create, with the rule and the message.
/// The same rule is not tried again; a changed rule is.
pub type Refusals = BTreeMap<RuleId, (FlowRule, String)>;

enum Outcome {
    Offloaded(Vec<RuleId>),
    Software {
        reason: Reason,
        steered_by: Option<RuleId>,
    },
}

struct Builder<'a> {
    cfg: &'a OffloadConfig,
    caps: &'a PortCaps,
    refused: &'a Refusals,
    rules: BTreeMap<RuleId, Rule>,
    outcomes: Vec<(&'a Flow, Outcome)>,
    /// Groups on the NIC (they have their miss rule, or are complete).
    present: BTreeSet<u32>,
}

impl<'a> Builder<'a> {
    /// Checks capabilities and runtime refusals; on success keeps the rule.
    fn try_rule(&mut self, id: RuleId, kind: RuleKind, rule: FlowRule) -> Result<RuleId, Reason> {
        self.caps.allows(kind)?;
        if let Some((r, message)) = self.refused.get(&id) {
            if *r == rule {
                return Err(Reason::RefusedByPort {
                    port: self.caps.port,
                    kind,
                    message: message.clone(),
                });
            }
        }
        self.rules.insert(
            id.clone(),
            Rule {
                id: id.clone(),
                kind,
                rule,
            },
        );
        Ok(id)
    }

    fn record(&mut self, f: &'a Flow, o: Outcome) {
        self.outcomes.push((f, o));
    }

    fn software(&mut self, f: &'a Flow, reason: Reason) {
        self.record(
            f,
            Outcome::Software {
                reason,
                steered_by: None,
            },
        );
    }
}

/// Decides, for the chain(s) on DPDK port `port`, which flows become rules. `caps` is the
/// port's probed capability model; `refused` the rules it refused at create time.
pub fn partition<'a>(
    flows: impl IntoIterator<Item = &'a Flow>,
    cfg: &'a OffloadConfig,
    port: u16,
    caps: &'a PortCaps,
    refused: &'a Refusals,
) -> PortPlan {
    let flows: Vec<&Flow> = flows.into_iter().collect();
    let mut b = Builder {
        cfg,
        caps,
        refused,
        rules: BTreeMap::new(),
        outcomes: Vec::new(),
        present: BTreeSet::new(),
    };
    // In-port key -> (switch port, network key), from classify.
    let mut inports: BTreeMap<u32, (u32, u32)> = BTreeMap::new();
    for f in flows.iter().filter(|f| f.stage == Stage::Classify) {
        let phys = f.matches.iter().find_map(|m| match m {
            Match::PhysInPort(p) => Some(*p),
            _ => None,
        });
        let pk = f.actions.iter().find_map(|a| match a {
            Action::SetInPort(k) => Some(k.0),
            _ => None,
        });
        let nk = f.actions.iter().find_map(|a| match a {
            Action::SetNetwork(k) => Some(k.0),
            _ => None,
        });
        if let (Some(of), Some(pk), Some(nk)) = (phys, pk, nk) {
            inports.insert(pk, (of, nk));
        }
    }
    let stage = |s: Stage| flows.iter().copied().filter(move |f| f.stage == s);

    if !caps.has_rte_flow() {
        let reason = caps.allows(RuleKind::Miss).err();
        for f in flows.iter().copied() {
            if let Some(r) = &reason {
                if served(cfg, port, f, &inports) {
                    b.software(f, r.clone());
                }
            }
        }
        return finish(b, port);
    }

    egress(&mut b, stage(Stage::Egress));
    lookup_stage(&mut b, Stage::L3Lookup, stage(Stage::L3Lookup).collect());
    lookup_stage(&mut b, Stage::L2Lookup, stage(Stage::L2Lookup).collect());
    let steered = dispatch(&mut b, stage(Stage::Dispatch));
    for f in stage(Stage::ArpResponder) {
        let reason = if f
            .actions
            .iter()
            .any(|a| matches!(a, Action::ArpReply { .. }))
        {
            Reason::CompositeAction("arp_reply")
        } else {
            Reason::SoftwareStage(Stage::ArpResponder)
        };
        let steered_by = steered.get(&Stage::ArpResponder).cloned();
        b.record(f, Outcome::Software { reason, steered_by });
    }
    for f in stage(Stage::Dhcp).filter(|f| served(cfg, port, f, &inports)) {
        let reason = match f.actions.last() {
            Some(Action::Punt(r)) => Reason::Punt(*r),
            _ => Reason::SoftwareStage(Stage::Dhcp),
        };
        let steered_by = steered.get(&Stage::Dhcp).cloned();
        b.record(f, Outcome::Software { reason, steered_by });
    }
    root(&mut b, port, &flows, &inports, &steered);
    prune_unreachable(&mut b);
    finish(b, port)
}

/// Whether `f` belongs to the chains on `port` at all (per-port mode: another port's
/// classify, port security and DHCP flows belong to that port's plan).
fn served(cfg: &OffloadConfig, port: u16, f: &Flow, inports: &BTreeMap<u32, (u32, u32)>) -> bool {
    for m in &f.matches {
        match m {
            Match::PhysInPort(of) => return cfg.serves(port, *of),
            Match::InPort(pk) if matches!(f.stage, Stage::PortSecurity | Stage::Dhcp) => {
                return inports
                    .get(&pk.0)
                    .is_some_and(|(of, _)| cfg.serves(port, *of));
            }
            _ => {}
        }
    }
    true
}

fn egress<'a>(b: &mut Builder<'a>, flows: impl Iterator<Item = &'a Flow>) {
    for f in flows {
        let pk = f.matches.iter().find_map(|m| match m {
            Match::OutPort(k) => Some(k.0),
            _ => None,
        });
        let (Some(pk), [Action::Output(of)]) = (pk, f.actions.as_slice()) else {
            b.software(f, Reason::UnsupportedAction(actions_text(f)));
            continue;
        };
        if f.matches.len() != 1 {
            b.software(f, unsupported_match(&f.matches, &[FieldKind::OutPort]));
            continue;
        }
        let Some(dpdk) = b.cfg.ports.get(of).copied() else {
            b.software(f, Reason::NoDevicePort { ofport: *of });
            continue;
        };
        let group = group_of(Stage::Egress, pk);
        let rule = FlowRule {
            attr: b.cfg.attr(group, rte_priority(f.priority)),
            pattern: vec![Item::eth_any()],
            actions: vec![b.cfg.output(dpdk)],
        };
        match b.try_rule(RuleId::of_flow(f), RuleKind::Egress, rule) {
            Ok(id) => {
                b.present.insert(group);
                b.record(f, Outcome::Offloaded(vec![id]));
            }
            Err(r) => b.software(f, r),
        }
    }
}

/// l2_lookup and l3_lookup: one group per network / router, with a miss rule each.
fn lookup_stage<'a>(b: &mut Builder<'a>, stage: Stage, flows: Vec<&'a Flow>) {
    let key_kind = match stage {
        Stage::L2Lookup => FieldKind::Network,
        _ => FieldKind::Router,
    };
    let mut groups: BTreeMap<u32, Vec<&'a Flow>> = BTreeMap::new();
    for f in flows {
        let key = f.matches.iter().find_map(|m| match m {
            Match::Network(k) if key_kind == FieldKind::Network => Some(k.0),
            Match::Router(k) if key_kind == FieldKind::Router => Some(k.0),
            _ => None,
        });
        match key {
            Some(k) => groups.entry(group_of(stage, k)).or_default().push(f),
            None => b.software(f, Reason::NeedsLogicalMetadata(key_kind)),
        }
    }
    for (group, flows) in groups {
        let mut complete = true;
        let mut results: Vec<(&'a Flow, Outcome)> = Vec::new();
        let mut group_rules: Vec<RuleId> = Vec::new();
        for f in flows {
            let outcome = lookup_flow(b, group, key_kind, f);
            match &outcome {
                Outcome::Offloaded(ids) => group_rules.extend(ids.iter().cloned()),
                Outcome::Software { steered_by, .. } => match steered_by {
                    Some(id) => group_rules.push(id.clone()),
                    None => complete = false,
                },
            }
            results.push((f, outcome));
        }
        let (_, key) = group_stage(group).unwrap_or((stage, 0));
        let miss_id = RuleId {
            owner: Owner::Static,
            origin: Origin::Miss { stage, scope: key },
        };
        let drop = complete && stage.decl().miss == Miss::Drop;
        let miss = FlowRule {
            attr: b.cfg.attr(group, MISS_PRIORITY),
            pattern: vec![Item::eth_any()],
            actions: vec![if drop {
                FlowAction::Drop
            } else {
                b.cfg.to_software()
            }],
        };
        match b.try_rule(miss_id, RuleKind::Miss, miss) {
            Ok(_) => {
                b.present.insert(group);
                for (f, o) in results {
                    b.record(f, o);
                }
            }
            Err(reason) => {
                // Without its miss rule the group's behaviour is undefined: keep it off.
                for id in group_rules {
                    b.rules.remove(&id);
                }
                for (f, o) in results {
                    match o {
                        // A flow refused on its own keeps its own reason.
                        Outcome::Software { reason: own, .. } => b.software(f, own),
                        Outcome::Offloaded(_) => b.software(f, reason.clone()),
                    }
                }
            }
        }
    }
}

fn lookup_flow<'a>(b: &mut Builder<'a>, group: u32, key_kind: FieldKind, f: &'a Flow) -> Outcome {
    let headers: Vec<Match> = f
        .matches
        .iter()
        .filter(|m| m.kind() != key_kind)
        .copied()
        .collect();
    let id = RuleId::of_flow(f);
    let prio = rte_priority(f.priority);
    let steer = |b: &mut Builder<'a>, reason: Reason| {
        let pattern = headers_pattern(&headers, true).unwrap_or_else(|_| vec![Item::eth_any()]);
        let rule = FlowRule {
            attr: b.cfg.attr(group, prio),
            pattern,
            actions: vec![b.cfg.to_software()],
        };
        match b.try_rule(id.clone(), RuleKind::SteerGroup, rule) {
            Ok(id) => Outcome::Software {
                reason,
                steered_by: Some(id),
            },
            Err(_) => Outcome::Software {
                reason,
                steered_by: None,
            },
        }
    };
    match f.actions.as_slice() {
        [Action::Punt(r)] => return steer(b, Reason::Punt(*r)),
        [Action::Flood(_)] => return steer(b, Reason::Flood),
        _ => {}
    }
    let pattern = match headers_pattern(&headers, false) {
        Ok(p) => p,
        Err(k) => {
            return Outcome::Software {
                reason: Reason::UnsupportedMatch(k),
                steered_by: None,
            }
        }
    };
    let (kind, actions, target) = match f.actions.as_slice() {
        [] => (RuleKind::DropGroup, vec![FlowAction::Drop], None),
        [Action::SetOutPort(pk), Action::Goto(Stage::Egress)] => {
            let t = group_of(Stage::Egress, pk.0);
            (
                RuleKind::L2Forward,
                vec![FlowAction::Jump { group: t }],
                Some(t),
            )
        }
        [Action::SetRouter(rk), Action::Goto(Stage::L3Lookup)] => {
            let t = group_of(Stage::L3Lookup, rk.0);
            (
                RuleKind::L2Forward,
                vec![FlowAction::Jump { group: t }],
                Some(t),
            )
        }
        [Action::DecTtl, Action::SetEthSrc(s), Action::SetEthDst(d), Action::SetNetwork(_), Action::SetOutPort(pk), Action::Goto(Stage::Egress)] =>
        {
            // The network needs no carrying: the egress group is per out-port.
            let t = group_of(Stage::Egress, pk.0);
            (
                RuleKind::L3Route,
                vec![
                    FlowAction::DecTtl,
                    FlowAction::SetMacSrc(MacAddr(s.0)),
                    FlowAction::SetMacDst(MacAddr(d.0)),
                    FlowAction::Jump { group: t },
                ],
                Some(t),
            )
        }
        _ => {
            return Outcome::Software {
                reason: Reason::UnsupportedAction(actions_text(f)),
                steered_by: None,
            }
        }
    };
    if let Some(t) = target {
        if !b.present.contains(&t) {
            return Outcome::Software {
                reason: Reason::TargetNotOffloaded { group: t },
                steered_by: None,
            };
        }
    }
    let rule = FlowRule {
        attr: b.cfg.attr(group, prio),
        pattern,
        actions,
    };
    match b.try_rule(id, kind, rule) {
        Ok(id) => Outcome::Offloaded(vec![id]),
        Err(reason) => Outcome::Software {
            reason,
            steered_by: None,
        },
    }
}

/// Dispatch flows become group-0 steering rules for the stages that run in software.
/// Returns the steering rule of each steered stage.
fn dispatch<'a>(
    b: &mut Builder<'a>,
    flows: impl Iterator<Item = &'a Flow>,
) -> BTreeMap<Stage, RuleId> {
    let mut steered = BTreeMap::new();
    for f in flows {
        let target = match f.actions.as_slice() {
            [Action::Goto(s)] if *s != Stage::L2Lookup => *s,
            _ => {
                b.software(f, Reason::UnsupportedAction(actions_text(f)));
                continue;
            }
        };
        // Widened where an item is missing (ARP op): more to software is always safe.
        let pattern = headers_pattern(&f.matches, true).unwrap_or_else(|_| vec![Item::eth_any()]);
        let rule = FlowRule {
            attr: b.cfg.attr(0, ROOT_STEER_PRIORITY),
            pattern,
            actions: vec![b.cfg.to_software()],
        };
        let steered_by = match b.try_rule(RuleId::of_flow(f), RuleKind::SteerRoot, rule) {
            Ok(id) => {
                steered.insert(target, id.clone());
                Some(id)
            }
            Err(_) => None,
        };
        b.record(
            f,
            Outcome::Software {
                reason: Reason::SoftwareStage(target),
                steered_by,
            },
        );
    }
    steered
}

/// Group 0 for the switch ports this chain serves: classify folded with port security.
fn root<'a>(
    b: &mut Builder<'a>,
    port: u16,
    flows: &[&'a Flow],
    inports: &BTreeMap<u32, (u32, u32)>,
    steered: &BTreeMap<Stage, RuleId>,
) {
    let mut security: BTreeMap<u32, Vec<&'a Flow>> = BTreeMap::new();
    for f in flows
        .iter()
        .copied()
        .filter(|f| f.stage == Stage::PortSecurity)
    {
        match f.matches.iter().find_map(|m| match m {
            Match::InPort(k) => Some(k.0),
            _ => None,
        }) {
            Some(pk) => security.entry(pk).or_default().push(f),
            None => b.software(f, Reason::NeedsLogicalMetadata(FieldKind::InPort)),
        }
    }
    let by_ofport: BTreeMap<u32, (u32, u32, u32)> = inports
        .iter()
        .map(|(pk, (of, nk))| (*of, (*pk, *of, *nk)))
        .collect();
    for f in flows.iter().copied().filter(|f| f.stage == Stage::Classify) {
        if !b.cfg_serves(port, f) {
            continue;
        }
        if f.matches.iter().any(|m| matches!(m, Match::TunnelId(_))) {
            decap(b, f);
            continue;
        }
        let phys = f.matches.iter().find_map(|m| match m {
            Match::PhysInPort(p) => Some(*p),
            _ => None,
        });
        let Some(&(pk, of, nk)) = phys.and_then(|p| by_ofport.get(&p)) else {
            b.software(f, Reason::UnsupportedAction(actions_text(f)));
            continue;
        };
        let ps = security.remove(&pk).unwrap_or_default();
        let Some(dpdk) = b.cfg.ports.get(&of).copied() else {
            b.software(f, Reason::NoDevicePort { ofport: of });
            for p in ps {
                b.software(p, Reason::NoDevicePort { ofport: of });
            }
            continue;
        };
        classify_port(b, f, of, dpdk, nk, ps, steered);
    }
    // Port security of ports without a classify flow here (unbound or another port's).
    for (_, ps) in security {
        for p in ps {
            if served(b.cfg, port, p, inports) {
                b.software(p, Reason::NeedsLogicalMetadata(FieldKind::InPort));
            }
        }
    }
}

impl Builder<'_> {
    fn cfg_serves(&self, port: u16, f: &Flow) -> bool {
        f.matches.iter().all(|m| match m {
            Match::PhysInPort(of) => self.cfg.serves(port, *of),
            Match::TunnelId(_) => match self.cfg.mode {
                crate::layout::Mode::Transfer { .. } => true,
                crate::layout::Mode::PerPort => self.cfg.uplink == Some(port),
            },
            _ => true,
        })
    }
}

fn classify_port<'a>(
    b: &mut Builder<'a>,
    classify: &'a Flow,
    of: u32,
    dpdk: u16,
    nk: u32,
    ps: Vec<&'a Flow>,
    steered: &BTreeMap<Stage, RuleId>,
) {
    let l2 = group_of(Stage::L2Lookup, nk);
    let jump = if !b.present.contains(&l2) {
        Err(Reason::TargetNotOffloaded { group: l2 })
    } else {
        b.caps.allows(RuleKind::Classify)
    };
    let secured = ps
        .iter()
        .any(|f| f.matches.iter().any(|m| matches!(m, Match::EthSrc(_))));
    let port_item: Vec<Item> = b.cfg.port_item(dpdk).into_iter().collect();
    let mut allow_ids = Vec::new();
    let mut all_handled = !ps.is_empty();
    for p in ps {
        let has = |k: FieldKind| p.matches.iter().any(|m| m.kind() == k);
        if has(FieldKind::ArpSha) || has(FieldKind::ArpSpa) {
            // ARP is steered to software in group 0 before this would apply.
            let steered_by = steered.get(&Stage::ArpResponder).cloned();
            all_handled &= steered_by.is_some();
            b.record(
                p,
                Outcome::Software {
                    reason: Reason::UnsupportedMatch(FieldKind::ArpSha),
                    steered_by,
                },
            );
            continue;
        }
        if has(FieldKind::UdpSrc) && has(FieldKind::UdpDst) {
            let steered_by = steered.get(&Stage::Dhcp).cloned();
            all_handled &= steered_by.is_some();
            b.record(
                p,
                Outcome::Software {
                    reason: Reason::SoftwareStage(Stage::Dhcp),
                    steered_by,
                },
            );
            continue;
        }
        let headers: Vec<Match> = p
            .matches
            .iter()
            .filter(|m| !matches!(m, Match::InPort(_)))
            .copied()
            .collect();
        let pattern = match headers_pattern(&headers, false) {
            Ok(h) => [port_item.clone(), h].concat(),
            Err(k) => {
                all_handled = false;
                b.software(p, Reason::UnsupportedMatch(k));
                continue;
            }
        };
        // Without a jump, a secured port still gets its check on the NIC; forwarding is
        // software's. An unsecured port without a jump needs no rule: software is the default.
        let (kind, actions) = match &jump {
            Ok(()) => (RuleKind::Classify, vec![FlowAction::Jump { group: l2 }]),
            Err(_) if secured => (RuleKind::SteerRoot, vec![b.cfg.to_software()]),
            Err(r) => {
                all_handled = false;
                b.software(p, r.clone());
                continue;
            }
        };
        let rule = FlowRule {
            attr: b.cfg.attr(0, ROOT_ALLOW_PRIORITY),
            pattern,
            actions,
        };
        match b.try_rule(RuleId::of_flow(p), kind, rule) {
            Ok(id) => {
                allow_ids.push(id.clone());
                b.record(p, Outcome::Offloaded(vec![id]));
            }
            Err(r) => {
                all_handled = false;
                b.software(p, r);
            }
        }
    }
    match jump {
        Ok(()) if !allow_ids.is_empty() => b.record(classify, Outcome::Offloaded(allow_ids)),
        Ok(()) => b.software(classify, Reason::TargetNotOffloaded { group: l2 }),
        Err(r) => b.software(classify, r),
    }
    // Port security's miss (drop) on the NIC, only when every allowed packet of the port is
    // matched above it: else it would drop what software should see.
    if secured && all_handled {
        let id = RuleId {
            owner: classify.owner,
            origin: Origin::Miss {
                stage: Stage::PortSecurity,
                scope: of,
            },
        };
        let rule = FlowRule {
            attr: b.cfg.attr(0, ROOT_DENY_PRIORITY),
            pattern: [port_item, vec![Item::eth_any()]].concat(),
            actions: vec![FlowAction::Drop],
        };
        let _ = b.try_rule(id, RuleKind::DenyRoot, rule);
    }
}

/// Classify of tunnel traffic: VXLAN with the network's VNI -> decap, l2 of the network.
fn decap<'a>(b: &mut Builder<'a>, f: &'a Flow) {
    let vni = f.matches.iter().find_map(|m| match m {
        Match::TunnelId(v) => Some(*v),
        _ => None,
    });
    let nk = f.actions.iter().find_map(|a| match a {
        Action::SetNetwork(k) => Some(k.0),
        _ => None,
    });
    let (Some(vni), Some(nk)) = (vni, nk) else {
        b.software(f, Reason::UnsupportedAction(actions_text(f)));
        return;
    };
    let l2 = group_of(Stage::L2Lookup, nk);
    if !b.present.contains(&l2) {
        b.software(f, Reason::TargetNotOffloaded { group: l2 });
        return;
    }
    let mut pattern: Vec<Item> = b
        .cfg
        .uplink
        .and_then(|u| b.cfg.port_item(u))
        .into_iter()
        .collect();
    pattern.extend([
        Item::eth_any(),
        Item::ipv4_any(),
        Item::udp_dst(VXLAN_PORT),
        Item::vxlan_vni(vni),
    ]);
    let rule = FlowRule {
        attr: b.cfg.attr(0, ROOT_ALLOW_PRIORITY),
        pattern,
        actions: vec![FlowAction::VxlanDecap, FlowAction::Jump { group: l2 }],
    };
    match b.try_rule(RuleId::of_flow(f), RuleKind::Decap, rule) {
        Ok(id) => b.record(f, Outcome::Offloaded(vec![id])),
        Err(r) => b.software(f, r),
    }
}

/// Drops rules in groups no group-0 rule leads to, and marks their flows.
fn prune_unreachable(b: &mut Builder<'_>) {
    let mut reach: BTreeSet<u32> = BTreeSet::from([0]);
    let mut frontier = vec![0u32];
    let mut by_group: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for r in b.rules.values() {
        if let Some(t) = r.jump_target() {
            by_group.entry(r.rule.attr.group).or_default().push(t);
        }
    }
    while let Some(g) = frontier.pop() {
        for t in by_group.get(&g).into_iter().flatten() {
            if reach.insert(*t) {
                frontier.push(*t);
            }
        }
    }
    b.rules.retain(|_, r| reach.contains(&r.rule.attr.group));
    let rules = &b.rules;
    for (_, o) in b.outcomes.iter_mut() {
        match o {
            Outcome::Offloaded(ids) if ids.iter().any(|i| !rules.contains_key(i)) => {
                *o = Outcome::Software {
                    reason: Reason::NotReachable,
                    steered_by: None,
                };
            }
            Outcome::Software { steered_by, .. }
                if steered_by.as_ref().is_some_and(|i| !rules.contains_key(i)) =>
            {
                *steered_by = None;
            }
            _ => {}
        }
    }
}

fn finish(b: Builder<'_>, port: u16) -> PortPlan {
    let mut plan = PortPlan {
        port,
        rules: b.rules,
        ..Default::default()
    };
    for (f, o) in b.outcomes {
        match o {
            Outcome::Offloaded(rules) => plan.offloaded.push(Offloaded {
                flow: f.clone(),
                rules,
            }),
            Outcome::Software { reason, steered_by } => plan.not_offloaded.push(NotOffloaded {
                flow: f.clone(),
                reason,
                steered_by,
            }),
        }
    }
    plan
}

fn actions_text(f: &Flow) -> String {
    let s = f.to_string();
    s.split(" actions=")
        .nth(1)
        .and_then(|r| r.split(" owner=").next())
        .unwrap_or("")
        .to_owned()
}

fn unsupported_match(matches: &[Match], expected: &[FieldKind]) -> Reason {
    matches
        .iter()
        .map(Match::kind)
        .find(|k| !expected.contains(k))
        .map(Reason::UnsupportedMatch)
        .unwrap_or(Reason::UnsupportedAction(String::new()))
}

/// Header matches as eth / ipv4 / udp items. A field with no item is an error, unless
/// `widen` (steering), where it is left out.
pub(crate) fn headers_pattern(matches: &[Match], widen: bool) -> Result<Vec<Item>, FieldKind> {
    let mut eth_spec = EthFields::default();
    let mut eth_mask = EthFields::default();
    let mut ip: Option<(Ipv4Fields, Ipv4Fields)> = None;
    let mut udp: Option<(UdpFields, UdpFields)> = None;
    fn ip_of(ip: &mut Option<(Ipv4Fields, Ipv4Fields)>) -> &mut (Ipv4Fields, Ipv4Fields) {
        ip.get_or_insert_with(Default::default)
    }
    for m in matches {
        match *m {
            Match::EthSrc(x) => {
                eth_spec.src = MacAddr(x.0);
                eth_mask.src = MacAddr::BROADCAST;
            }
            Match::EthDst(x) => {
                eth_spec.dst = MacAddr(x.0);
                eth_mask.dst = MacAddr::BROADCAST;
            }
            Match::EthDstMulticast => {
                if let Item::Eth { spec, mask } = eth_dst_multicast() {
                    eth_spec.dst = spec.dst;
                    eth_mask.dst = mask.dst;
                }
            }
            Match::EthType(t) => {
                eth_spec.ether_type = t;
                eth_mask.ether_type = 0xffff;
            }
            Match::IpProto(p) => {
                let (s, k) = ip_of(&mut ip);
                s.proto = p;
                k.proto = 0xff;
            }
            Match::Ipv4Src(n) => {
                let (s, k) = ip_of(&mut ip);
                (s.src, k.src) = prefix(n);
            }
            Match::Ipv4Dst(n) => {
                let (s, k) = ip_of(&mut ip);
                (s.dst, k.dst) = prefix(n);
            }
            Match::IpTtl(t) => {
                let (s, k) = ip_of(&mut ip);
                s.ttl = t;
                k.ttl = 0xff;
            }
            Match::UdpSrc(p) => {
                let (s, k) = udp.get_or_insert_with(Default::default);
                s.src_port = p;
                k.src_port = 0xffff;
            }
            Match::UdpDst(p) => {
                let (s, k) = udp.get_or_insert_with(Default::default);
                s.dst_port = p;
                k.dst_port = 0xffff;
            }
            other if widen => {
                let _ = other;
            }
            other => return Err(other.kind()),
        }
    }
    let mut items = vec![Item::Eth {
        spec: eth_spec,
        mask: eth_mask,
    }];
    if ip.is_some() || udp.is_some() {
        let (spec, mask) = ip.unwrap_or_default();
        items.push(Item::Ipv4 { spec, mask });
    }
    if let Some((spec, mask)) = udp {
        items.push(Item::Udp { spec, mask });
    }
    Ok(items)
}

fn prefix(n: Ipv4Net) -> (Ipv4Addr, Ipv4Addr) {
    (n.network(), n.netmask())
}

/// IPv4 with next protocol `p`.
pub(crate) fn ipv4_proto(p: u8) -> Item {
    Item::Ipv4 {
        spec: Ipv4Fields {
            proto: p,
            ..Default::default()
        },
        mask: Ipv4Fields {
            proto: 0xff,
            ..Default::default()
        },
    }
}

/// IPv4 with TTL `t`.
pub(crate) fn ipv4_ttl(t: u8) -> Item {
    Item::Ipv4 {
        spec: Ipv4Fields {
            ttl: t,
            ..Default::default()
        },
        mask: Ipv4Fields {
            ttl: 0xff,
            ..Default::default()
        },
    }
}

/// IPv4 from `addr/len`.
pub(crate) fn ipv4_src_prefix(addr: Ipv4Addr, len: u8) -> Item {
    let n = Ipv4Net::new(addr, len.min(32)).unwrap_or_else(|_| Ipv4Net::from(addr));
    let (src, mask) = prefix(n);
    Item::Ipv4 {
        spec: Ipv4Fields {
            src,
            ..Default::default()
        },
        mask: Ipv4Fields {
            src: mask,
            ..Default::default()
        },
    }
}

/// UDP from `src` to `dst`.
pub(crate) fn udp_ports(src: u16, dst: u16) -> Item {
    Item::Udp {
        spec: UdpFields {
            src_port: src,
            dst_port: dst,
        },
        mask: UdpFields {
            src_port: 0xffff,
            dst_port: 0xffff,
        },
    }
}
