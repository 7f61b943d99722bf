//! Which flows of a compiled demo topology go to the NIC, as which rules, and why the
//! others stay in software; and the back end's desired-versus-installed behaviour against a
//! fake device that checks what a NIC would.

mod common;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use common::{demo, ip, port_map, Demo};
use rte::flow::{FlowAction, Item, LoweredRule, TestpmdVerb};
use rte::{MacAddr, RteError};
use wyvern_offload_rteflow::*;
use wyvern_pipeline::{Action, Flow, Match, Owner, PuntReason, Stage};

fn transfer_cfg() -> OffloadConfig {
    OffloadConfig::transfer(100, port_map(3))
}

fn plan_of(d: &Demo, cfg: &OffloadConfig, port: u16, caps: &PortCaps) -> (Vec<Flow>, PortPlan) {
    let flows = d.flows();
    let plan = partition(&flows, cfg, port, caps, &Refusals::new());
    (flows, plan)
}

fn find(flows: &[Flow], stage: Stage, pred: impl Fn(&Flow) -> bool) -> Vec<&Flow> {
    flows
        .iter()
        .filter(|f| f.stage == stage && pred(f))
        .collect()
}

fn one(flows: &[Flow], stage: Stage, pred: impl Fn(&Flow) -> bool) -> &Flow {
    let v = find(flows, stage, pred);
    assert_eq!(v.len(), 1, "expected one {stage} flow, got {v:#?}");
    v[0]
}

fn rule<'a>(plan: &'a PortPlan, f: &Flow) -> &'a Rule {
    match plan.placement(f) {
        Some(Ok(ids)) => &plan.rules[&ids[0]],
        other => panic!("{f} not offloaded: {other:?}"),
    }
}

fn reason<'a>(plan: &'a PortPlan, f: &Flow) -> &'a NotOffloaded {
    plan.not_offloaded
        .iter()
        .find(|n| &n.flow == f)
        .unwrap_or_else(|| panic!("{f} is not in software: {:?}", plan.placement(f)))
}

fn mac(m: wyvern_model::MacAddr) -> MacAddr {
    MacAddr(m.0)
}

fn net_key(f: &Flow) -> u32 {
    f.matches
        .iter()
        .find_map(|m| match m {
            Match::Network(k) => Some(k.0),
            _ => None,
        })
        .unwrap()
}

#[test]
fn every_flow_is_placed_once_and_priorities_fit() {
    let d = demo();
    let (flows, plan) = plan_of(&d, &transfer_cfg(), 100, &PortCaps::assume_all(100));
    assert_eq!(plan.offloaded.len() + plan.not_offloaded.len(), flows.len());
    let placed: BTreeSet<&Flow> = plan
        .offloaded
        .iter()
        .map(|o| &o.flow)
        .chain(plan.not_offloaded.iter().map(|n| &n.flow))
        .collect();
    assert_eq!(placed.len(), flows.len(), "a flow was placed twice");
    for f in &flows {
        assert!(f.priority <= layout::IR_TOP_PRIORITY, "{f}");
    }
    // Every jump lands on a group that has rules.
    let groups: BTreeSet<u32> = plan.rules.values().map(|r| r.rule.attr.group).collect();
    for r in plan.rules.values() {
        if let Some(t) = r.jump_target() {
            assert!(
                groups.contains(&t),
                "{} jumps to empty {}",
                r.id,
                group_name(t)
            );
            assert!(t > r.rule.attr.group, "jumps only go forward");
        }
    }
}

#[test]
fn l2_l3_and_egress_are_offloaded_in_groups_that_mirror_the_stages() {
    let d = demo();
    let cfg = transfer_cfg();
    let (flows, plan) = plan_of(&d, &cfg, 100, &PortCaps::assume_all(100));
    let vm3_mac = d.vm3.mac_address;

    // l2_lookup: eth dst of vm3 -> JUMP to vm3's egress group.
    let l2 = one(&flows, Stage::L2Lookup, |f| {
        f.matches.contains(&Match::EthDst(vm3_mac))
    });
    let pk = l2
        .actions
        .iter()
        .find_map(|a| match a {
            Action::SetOutPort(k) => Some(k.0),
            _ => None,
        })
        .unwrap();
    let r = rule(&plan, l2);
    assert_eq!(r.kind, RuleKind::L2Forward);
    assert_eq!(r.rule.attr.group, group_of(Stage::L2Lookup, net_key(l2)));
    assert!(r.rule.attr.transfer);
    assert_eq!(r.rule.pattern, vec![Item::eth_dst(mac(vm3_mac))]);
    assert_eq!(
        r.rule.actions,
        vec![FlowAction::Jump {
            group: group_of(Stage::Egress, pk)
        }]
    );

    // egress of vm3: to the represented port of switch port 3 (DPDK port 2).
    let eg = one(&flows, Stage::Egress, |f| {
        f.actions == vec![Action::Output(3)]
    });
    let r = rule(&plan, eg);
    assert_eq!(r.kind, RuleKind::Egress);
    assert_eq!(r.rule.attr.group, group_of(Stage::Egress, pk));
    assert_eq!(
        r.rule.actions,
        vec![FlowAction::RepresentedPort { ethdev_port_id: 2 }]
    );

    // Router MAC in l2 -> l3 group of the router.
    let to_router = one(&flows, Stage::L2Lookup, |f| {
        f.matches.contains(&Match::EthDst(d.gw1.1))
    });
    let r = rule(&plan, to_router);
    let l3_group = r.jump_target().unwrap();
    assert_eq!(group_stage(l3_group).unwrap().0, Stage::L3Lookup);

    // l3 route to vm3: ipv4 dst /32 -> dec TTL, router MAC on net2, vm3's MAC, egress.
    let route = one(&flows, Stage::L3Lookup, |f| {
        f.matches.contains(&Match::Ipv4Dst(ip(&d.vm3).into()))
    });
    let r = rule(&plan, route);
    assert_eq!(r.kind, RuleKind::L3Route);
    assert_eq!(r.rule.attr.group, l3_group);
    assert_eq!(r.rule.attr.priority, rte_priority(132));
    assert_eq!(
        r.rule.actions,
        vec![
            FlowAction::DecTtl,
            FlowAction::SetMacSrc(mac(d.gw2.1)),
            FlowAction::SetMacDst(mac(vm3_mac)),
            FlowAction::Jump {
                group: group_of(Stage::Egress, pk)
            },
        ]
    );
    assert_eq!(
        r.rule.pattern[1],
        Item::ipv4_dst_prefix(ip(&d.vm3), 32),
        "{:?}",
        r.rule.pattern
    );

    // The static route 10.9.0.0/16 via vm2 is an LPM entry below the /32s.
    let sr = one(&flows, Stage::L3Lookup, |f| {
        f.matches
            .contains(&Match::Ipv4Dst("10.9.0.0/16".parse().unwrap()))
    });
    let r = rule(&plan, sr);
    assert_eq!(r.kind, RuleKind::L3Route);
    assert!(r.rule.attr.priority > rte_priority(132));
    assert_eq!(
        r.rule.actions[2],
        FlowAction::SetMacDst(mac(d.vm2.mac_address))
    );

    // Traffic to the gateway that is not ICMP is dropped on the NIC.
    let gw_drop = one(&flows, Stage::L3Lookup, |f| {
        f.priority == 290 && f.matches.contains(&Match::Ipv4Dst(d.gw1.0.into()))
    });
    assert_eq!(rule(&plan, gw_drop).kind, RuleKind::DropGroup);

    // Complete groups mirror the stage's miss (drop).
    let miss = plan
        .rules
        .values()
        .find(|r| r.kind == RuleKind::Miss && r.rule.attr.group == l3_group)
        .unwrap();
    assert_eq!(miss.rule.actions, vec![FlowAction::Drop]);
}

#[test]
fn punts_arp_dhcp_and_flood_stay_in_software_steered_by_a_rule() {
    let d = demo();
    let cfg = transfer_cfg();
    let (flows, plan) = plan_of(&d, &cfg, 100, &PortCaps::assume_all(100));
    let to_sw = FlowAction::PortId {
        id: 100,
        original: false,
    };

    // ARP replies: composite, in software; ARP is steered in group 0 (all of it: no ARP item).
    for f in find(&flows, Stage::ArpResponder, |f| {
        f.actions
            .iter()
            .any(|a| matches!(a, Action::ArpReply { .. }))
    }) {
        let n = reason(&plan, f);
        assert_eq!(n.reason, Reason::CompositeAction("arp_reply"));
        let steer = &plan.rules[n.steered_by.as_ref().unwrap()];
        assert_eq!(steer.kind, RuleKind::SteerRoot);
        assert_eq!(steer.rule.attr.group, 0);
        assert_eq!(steer.rule.pattern.len(), 1, "widened to eth type only");
        assert_eq!(steer.rule.actions, vec![to_sw]);
    }

    // DHCP: a punt, steered by the dispatch rule (eth / ipv4 udp / udp 68 -> 67).
    let dhcp = find(&flows, Stage::Dhcp, |f| {
        f.actions == vec![Action::Punt(PuntReason::Dhcp)]
    });
    assert_eq!(dhcp.len(), 3);
    for f in dhcp {
        let n = reason(&plan, f);
        assert_eq!(n.reason, Reason::Punt(PuntReason::Dhcp));
        let steer = &plan.rules[n.steered_by.as_ref().unwrap()];
        assert_eq!(steer.rule.attr.priority, layout::ROOT_STEER_PRIORITY);
        assert!(matches!(
            steer.rule.pattern[2],
            Item::Udp { spec, .. } if spec.src_port == 68 && spec.dst_port == 67
        ));
    }

    // TTL expiry, ICMP to the router, unknown hosts: punts steered inside the l3 group.
    for (reason_, n) in [
        (PuntReason::TtlExpired, 2),
        (PuntReason::IcmpToRouter, 2),
        (PuntReason::L3Miss, 2),
    ] {
        let fs = find(&flows, Stage::L3Lookup, |f| {
            f.actions == vec![Action::Punt(reason_)]
        });
        assert_eq!(fs.len(), n, "{reason_:?}");
        for f in fs {
            let no = reason(&plan, f);
            assert_eq!(no.reason, Reason::Punt(reason_));
            let steer = &plan.rules[no.steered_by.as_ref().unwrap()];
            assert_eq!(steer.kind, RuleKind::SteerGroup);
            assert_eq!(steer.rule.actions, vec![to_sw]);
        }
    }

    // Flood: to software from the l2 group (group addresses).
    for f in find(&flows, Stage::L2Lookup, |f| {
        matches!(f.actions[..], [Action::Flood(_)])
    }) {
        let n = reason(&plan, f);
        assert_eq!(n.reason, Reason::Flood);
        assert!(n.steered_by.is_some());
    }
    let counts = plan.refused_by_reason();
    assert_eq!(counts.get("punt"), Some(&9), "{counts:?}");
    assert_eq!(counts.get("flood"), Some(&2), "{counts:?}");
}

#[test]
fn classify_folds_port_security_into_group_zero() {
    let d = demo();
    let cfg = transfer_cfg();
    let (flows, plan) = plan_of(&d, &cfg, 100, &PortCaps::assume_all(100));

    // vm1 is secured: eth src + ipv4 src from represented port 0 -> JUMP l2(net1); ARP and
    // DHCP-from-0.0.0.0 checks stay in software (steered); everything else from port 0 drops.
    let ps = one(&flows, Stage::PortSecurity, |f| {
        f.matches.contains(&Match::EthSrc(d.vm1.mac_address))
            && f.matches.contains(&Match::Ipv4Src(ip(&d.vm1).into()))
    });
    let r = rule(&plan, ps);
    assert_eq!(r.kind, RuleKind::Classify);
    assert_eq!(r.rule.attr.group, 0);
    assert_eq!(
        r.rule.pattern[0],
        Item::RepresentedPort { ethdev_port_id: 0 }
    );
    let l2 = one(&flows, Stage::L2Lookup, |f| {
        f.matches.contains(&Match::EthDst(d.vm1.mac_address))
    });
    assert_eq!(
        r.rule.actions,
        vec![FlowAction::Jump {
            group: group_of(Stage::L2Lookup, net_key(l2))
        }]
    );
    let classify = one(&flows, Stage::Classify, |f| {
        f.matches.contains(&Match::PhysInPort(1))
    });
    assert_eq!(plan.placement(classify), Some(Ok(&[r.id.clone()][..])));
    let deny = |of: u32| {
        plan.rules.values().find(|r| {
            r.kind == RuleKind::DenyRoot
                && r.id.origin
                    == (Origin::Miss {
                        stage: Stage::PortSecurity,
                        scope: of,
                    })
        })
    };
    let d1 = deny(1).expect("secured vm1 gets port security's drop");
    assert_eq!(
        d1.rule.pattern,
        vec![Item::RepresentedPort { ethdev_port_id: 0 }, Item::eth_any()]
    );
    assert_eq!(d1.rule.actions, vec![FlowAction::Drop]);
    assert!(deny(3).is_some());
    assert!(deny(2).is_none(), "vm2 has port security off");
    let arp_ps = one(&flows, Stage::PortSecurity, |f| {
        f.matches.contains(&Match::EthSrc(d.vm1.mac_address))
            && f.matches.iter().any(|m| matches!(m, Match::ArpSha(_)))
    });
    assert!(reason(&plan, arp_ps).steered_by.is_some());

    // vm2 (no port security): any frame from its port -> l2(net1).
    let ps2 = one(&flows, Stage::PortSecurity, |f| f.priority == 50);
    let r2 = rule(&plan, ps2);
    assert_eq!(
        r2.rule.pattern,
        vec![Item::RepresentedPort { ethdev_port_id: 1 }, Item::eth_any()]
    );
}

#[test]
fn a_switch_port_without_a_dpdk_port_keeps_its_traffic_in_software() {
    let d = demo();
    // Switch port 3 (vm3) is not on this NIC.
    let cfg = OffloadConfig::transfer(100, port_map(2));
    let (flows, plan) = plan_of(&d, &cfg, 100, &PortCaps::assume_all(100));
    let eg = one(&flows, Stage::Egress, |f| {
        f.actions == vec![Action::Output(3)]
    });
    assert_eq!(reason(&plan, eg).reason, Reason::NoDevicePort { ofport: 3 });
    let l2 = one(&flows, Stage::L2Lookup, |f| {
        f.matches.contains(&Match::EthDst(d.vm3.mac_address))
    });
    assert!(matches!(
        reason(&plan, l2).reason,
        Reason::TargetNotOffloaded { group } if group_stage(group).unwrap().0 == Stage::Egress
    ));
    let route = one(&flows, Stage::L3Lookup, |f| {
        f.matches.contains(&Match::Ipv4Dst(ip(&d.vm3).into()))
    });
    assert!(matches!(
        reason(&plan, route).reason,
        Reason::TargetNotOffloaded { .. }
    ));
    // No traffic enters net2 on the NIC any more: its l2 group is not installed at all.
    let l2_group = group_of(Stage::L2Lookup, net_key(l2));
    assert!(plan.rules.values().all(|r| r.rule.attr.group != l2_group));
    let miss = |g: u32| {
        plan.rules
            .values()
            .find(|r| r.kind == RuleKind::Miss && r.rule.attr.group == g)
            .unwrap()
            .rule
            .actions
            .clone()
    };
    // The router's group lost a route: it is incomplete, so its miss goes to software.
    let to_router = one(&flows, Stage::L2Lookup, |f| {
        f.matches.contains(&Match::EthDst(d.gw1.1))
    });
    let l3_group = rule(&plan, to_router).jump_target().unwrap();
    assert_eq!(
        miss(l3_group),
        vec![FlowAction::PortId {
            id: 100,
            original: false
        }]
    );
    let l2_net1 = one(&flows, Stage::L2Lookup, |f| {
        f.matches.contains(&Match::EthDst(d.vm1.mac_address))
    });
    assert_eq!(
        miss(group_of(Stage::L2Lookup, net_key(l2_net1))),
        vec![FlowAction::Drop],
        "net1's group is complete"
    );
    let classify3 = one(&flows, Stage::Classify, |f| {
        f.matches.contains(&Match::PhysInPort(3))
    });
    assert_eq!(
        reason(&plan, classify3).reason,
        Reason::NoDevicePort { ofport: 3 }
    );
}

fn caps_refusing(port: u16, refused: &[RuleKind]) -> PortCaps {
    let mut caps = PortCaps::assume_all(port);
    if let PortSupport::Kinds(k) = &mut caps.support {
        for r in refused {
            k.insert(
                *r,
                KindSupport::Refused {
                    message: format!("driver says no to {r}"),
                },
            );
        }
    }
    caps
}

#[test]
fn a_port_without_jump_keeps_port_security_on_the_nic_and_forwarding_in_software() {
    let d = demo();
    let cfg = OffloadConfig::per_port(port_map(3));
    // What the tap PMD does: group 0 with queue/drop only.
    let caps = caps_refusing(
        0,
        &[
            RuleKind::Classify,
            RuleKind::L2Forward,
            RuleKind::L3Route,
            RuleKind::Egress,
            RuleKind::Miss,
            RuleKind::SteerGroup,
            RuleKind::DropGroup,
            RuleKind::Decap,
        ],
    );
    let (flows, plan) = plan_of(&d, &cfg, 0, &caps);
    let groups: BTreeSet<u32> = plan.rules.values().map(|r| r.rule.attr.group).collect();
    assert_eq!(groups, BTreeSet::from([0]));
    let ps = one(&flows, Stage::PortSecurity, |f| {
        f.matches.contains(&Match::EthSrc(d.vm1.mac_address))
            && f.matches.contains(&Match::Ipv4Src(ip(&d.vm1).into()))
    });
    let r = rule(&plan, ps);
    assert_eq!(r.kind, RuleKind::SteerRoot);
    assert_eq!(r.rule.actions, vec![FlowAction::Queue { index: 0 }]);
    let classify = one(&flows, Stage::Classify, |f| {
        f.matches.contains(&Match::PhysInPort(1))
    });
    let n = reason(&plan, classify);
    assert!(
        matches!(&n.reason, Reason::TargetNotOffloaded { .. }),
        "l2 groups are not on this port: {:?}",
        n.reason
    );
    let eg = one(&flows, Stage::Egress, |f| {
        f.actions == vec![Action::Output(1)]
    });
    match &reason(&plan, eg).reason {
        Reason::RefusedByPort {
            port,
            kind,
            message,
        } => {
            assert_eq!((*port, *kind), (0, RuleKind::Egress));
            assert_eq!(message, "driver says no to egress");
        }
        other => panic!("{other:?}"),
    }
    let l2 = one(&flows, Stage::L2Lookup, |f| {
        f.matches.contains(&Match::EthDst(d.vm1.mac_address))
    });
    assert!(matches!(
        reason(&plan, l2).reason,
        Reason::TargetNotOffloaded { .. }
    ));
    // Kinds: steer (ARP, DHCP, vm1's allow) and deny.
    let kinds: BTreeMap<RuleKind, usize> = plan.rules.values().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r.kind).or_insert(0) += 1;
        m
    });
    assert_eq!(
        kinds,
        BTreeMap::from([(RuleKind::SteerRoot, 3), (RuleKind::DenyRoot, 1)])
    );
}

#[test]
fn enosys_keeps_everything_in_software() {
    let d = demo();
    let cfg = transfer_cfg();
    let caps = PortCaps {
        port: 100,
        support: PortSupport::NoRteFlow {
            message: "Function not implemented".into(),
        },
    };
    let (flows, plan) = plan_of(&d, &cfg, 100, &caps);
    assert!(plan.rules.is_empty());
    assert!(plan.offloaded.is_empty());
    assert_eq!(plan.not_offloaded.len(), flows.len());
    for n in &plan.not_offloaded {
        assert_eq!(n.reason.label(), "no_rte_flow");
        assert!(n.reason.to_string().contains("has no rte_flow support"));
    }
}

#[test]
fn per_port_chains_hold_only_what_their_traffic_reaches() {
    let d = demo();
    let cfg = OffloadConfig::per_port(port_map(3));
    // Port 2 is vm3 on net2: its chain has net2's l2 group, the router's l3 group and the
    // egress groups those reach; not net1's l2 group.
    let (flows, plan) = plan_of(&d, &cfg, 2, &PortCaps::assume_all(2));
    let l2_net1 = one(&flows, Stage::L2Lookup, |f| {
        f.matches.contains(&Match::EthDst(d.vm1.mac_address))
    });
    assert_eq!(reason(&plan, l2_net1).reason, Reason::NotReachable);
    let l2_net2 = one(&flows, Stage::L2Lookup, |f| {
        f.matches.contains(&Match::EthDst(d.vm3.mac_address))
    });
    let r = rule(&plan, l2_net2);
    assert!(r.rule.attr.ingress && !r.rule.attr.transfer);
    // Only vm3's classify is in this plan; vm1's belongs to port 0's plan.
    let c1 = one(&flows, Stage::Classify, |f| {
        f.matches.contains(&Match::PhysInPort(1))
    });
    assert!(plan.placement(c1).is_none());
    let c3 = one(&flows, Stage::Classify, |f| {
        f.matches.contains(&Match::PhysInPort(3))
    });
    let ids = plan.placement(c3).unwrap().unwrap();
    assert_eq!(
        plan.rules[&ids[0]].rule.pattern[0],
        Item::Eth {
            spec: rte::flow::EthFields {
                src: mac(d.vm3.mac_address),
                ether_type: 0x0800,
                ..Default::default()
            },
            mask: rte::flow::EthFields {
                src: MacAddr::BROADCAST,
                ether_type: 0xffff,
                ..Default::default()
            },
        },
        "no port item: the rule's port is the ingress port"
    );
    // Routed to vm1 from vm3: l3 -> egress of vm1 (port_id 0) is reachable from here.
    let eg1 = one(&flows, Stage::Egress, |f| {
        f.actions == vec![Action::Output(1)]
    });
    assert_eq!(
        rule(&plan, eg1).rule.actions,
        vec![FlowAction::PortId {
            id: 0,
            original: false
        }]
    );
}

#[test]
fn vxlan_classify_becomes_a_decap_rule() {
    let d = demo();
    let mut flows = d.flows();
    let l2 = one(&flows, Stage::L2Lookup, |f| {
        f.matches.contains(&Match::EthDst(d.vm1.mac_address))
    });
    let nk = net_key(l2);
    let tunnel = Flow::new(Stage::Classify, 100, Owner::Static)
        .m(Match::TunnelId(5001))
        .a(Action::SetNetwork(wyvern_pipeline::NetKey(nk)))
        .a(Action::Goto(Stage::L2Lookup));
    flows.push(tunnel.clone());
    let mut cfg = transfer_cfg();
    cfg.uplink = Some(7);
    let plan = partition(
        &flows,
        &cfg,
        100,
        &PortCaps::assume_all(100),
        &Refusals::new(),
    );
    let r = rule(&plan, &tunnel);
    assert_eq!(r.kind, RuleKind::Decap);
    assert_eq!(
        r.rule.pattern,
        vec![
            Item::RepresentedPort { ethdev_port_id: 7 },
            Item::eth_any(),
            Item::ipv4_any(),
            Item::udp_dst(4789),
            Item::vxlan_vni(5001)
        ]
    );
    assert_eq!(
        r.rule.actions,
        vec![
            FlowAction::VxlanDecap,
            FlowAction::Jump {
                group: group_of(Stage::L2Lookup, nk)
            }
        ]
    );
}

#[test]
fn testpmd_rendering_names_groups_and_actions() {
    let d = demo();
    let (flows, plan) = plan_of(&d, &transfer_cfg(), 100, &PortCaps::assume_all(100));
    let route = one(&flows, Stage::L3Lookup, |f| {
        f.matches.contains(&Match::Ipv4Dst(ip(&d.vm3).into()))
    });
    let r = rule(&plan, route);
    let line = r.to_testpmd(100);
    let expected = format!(
        "flow create 100 group {} priority 168 transfer pattern eth type is 0x0800 / ipv4 dst is {} / end actions dec_ttl / set_mac_src mac_addr {} / set_mac_dst mac_addr {} / jump group {} / end",
        r.rule.attr.group,
        ip(&d.vm3),
        mac(d.gw2.1),
        mac(d.vm3.mac_address),
        r.jump_target().unwrap()
    );
    assert_eq!(line, expected);
    let lines = testpmd_lines(plan.rules.values(), 100, TestpmdVerb::Create);
    assert_eq!(lines.len(), plan.rules.len());
    // Installation order: deepest group first, group 0 last.
    let group_in = |l: &str| -> u32 {
        l.split(" pattern ")
            .next()
            .and_then(|a| a.split(" group ").nth(1))
            .and_then(|r| r.split(' ').next())
            .map(|g| g.parse().unwrap())
            .unwrap_or(0)
    };
    assert_eq!(group_stage(group_in(&lines[0])).unwrap().0, Stage::Egress);
    assert_eq!(group_in(lines.last().unwrap()), 0, "{:?}", lines.last());
    let text = print_plan(&plan, &PortCaps::assume_all(100));
    assert!(text.contains("group 0 (classify)"), "{text}");
    assert!(text.contains("(l3_lookup/1)"), "{text}");
    assert!(text.contains("punt: 9"), "{text}");
}

// ---- the back end against a fake NIC ----

/// What the fake NIC keeps of a rule: read back from the C structs it was handed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    group: u32,
    jump: Option<u32>,
    eth_dst: Option<MacAddr>,
}

fn seen(l: &LoweredRule) -> Seen {
    use rte::ffi::{rte_flow_action_type as A, rte_flow_item_type as T};
    let jump = l.actions().iter().find_map(|a| {
        (a.type_ == A::RTE_FLOW_ACTION_TYPE_JUMP).then(|| {
            // SAFETY: a JUMP action's conf is an rte_flow_action_jump the rule owns.
            unsafe { (*(a.conf as *const rte::ffi::rte_flow_action_jump)).group }
        })
    });
    let eth_dst = l.items().iter().find_map(|i| {
        if i.type_ != T::RTE_FLOW_ITEM_TYPE_ETH || i.mask.is_null() {
            return None;
        }
        // SAFETY: an ETH item's spec and mask are rte_flow_item_eth the rule owns.
        let (s, m) = unsafe {
            (
                (*(i.spec as *const rte::ffi::rte_flow_item_eth))
                    .__bindgen_anon_1
                    .hdr,
                (*(i.mask as *const rte::ffi::rte_flow_item_eth))
                    .__bindgen_anon_1
                    .hdr,
            )
        };
        (m.dst_addr.addr_bytes == [0xff; 6]).then_some(MacAddr(s.dst_addr.addr_bytes))
    });
    Seen {
        group: l.attr().group,
        jump,
        eth_dst,
    }
}

#[derive(Default)]
struct FakeNic {
    rules: BTreeMap<u64, Seen>,
    next: u64,
    creates: usize,
    destroys: usize,
    /// Creates refused per eth dst, counted.
    refused: BTreeMap<MacAddr, usize>,
    /// Refuse creating rules matching this eth dst.
    refuse_dst: Option<MacAddr>,
}

#[derive(Clone)]
struct FakeDev {
    port: u16,
    nic: Rc<RefCell<FakeNic>>,
}

impl FlowDevice for FakeDev {
    type Handle = u64;
    fn port(&self) -> u16 {
        self.port
    }
    fn validate(&self, _rule: &LoweredRule) -> Result<(), RteError> {
        Ok(())
    }
    fn create(&self, l: &LoweredRule) -> Result<u64, RteError> {
        let mut nic = self.nic.borrow_mut();
        let s = seen(l);
        // A jump into a group without rules would black-hole traffic meanwhile.
        if let Some(t) = s.jump {
            assert!(
                nic.rules.values().any(|r| r.group == t),
                "created a JUMP to {} before it had rules",
                group_name(t)
            );
        }
        if let Some(dst) = s.eth_dst.filter(|d| Some(*d) == nic.refuse_dst) {
            *nic.refused.entry(dst).or_insert(0) += 1;
            return Err(RteError::Flow {
                op: "create flow rule",
                port: self.port,
                errno: 28,
                kind: rte::FlowErrorKind(1),
                message: "table full".into(),
            });
        }
        nic.next += 1;
        let h = nic.next;
        nic.creates += 1;
        nic.rules.insert(h, s);
        Ok(h)
    }
    fn destroy(&self, h: u64) -> Result<(), RteError> {
        let mut nic = self.nic.borrow_mut();
        assert!(
            nic.rules.remove(&h).is_some(),
            "destroyed an unknown handle"
        );
        nic.destroys += 1;
        Ok(())
    }
}

fn fake_backend(cfg: OffloadConfig) -> (RteFlowBackend<FakeDev>, Rc<RefCell<FakeNic>>) {
    let nic = Rc::new(RefCell::new(FakeNic::default()));
    let devs = cfg
        .targets()
        .into_iter()
        .map(|port| FakeDev {
            port,
            nic: nic.clone(),
        })
        .collect();
    (RteFlowBackend::new(cfg, devs).unwrap(), nic)
}

#[test]
fn backend_installs_only_the_difference_and_never_flushes() {
    let mut d = demo();
    let (mut be, nic) = fake_backend(transfer_cfg());
    let flows = d.flows();
    let rep = be.apply(&flows);
    let desired = be.plan(100).unwrap().rules.len();
    assert!(desired > 20, "{desired}");
    assert_eq!(rep.created, desired);
    assert_eq!(nic.borrow().rules.len(), desired);
    assert_eq!(be.installed(100).count(), desired);

    // Same IR again: nothing to do.
    let rep = be.apply(&flows);
    assert_eq!((rep.created, rep.destroyed), (0, 0));

    // Unbind vm3: its classify, port security, egress go; l2/l3 rules jumping to its egress
    // group go; net2's l2 group becomes incomplete (miss to software). Nothing else moves.
    d.b.unbind(&d.vm3.id);
    d.c.binding_changed(&d.w.topo, &d.b, d.vm3.id).unwrap();
    let before: BTreeSet<RuleId> = be.installed(100).map(|r| r.id.clone()).collect();
    let creates_before = nic.borrow().creates;
    let flows2 = d.flows();
    let rep = be.apply(&flows2);
    let after: BTreeSet<RuleId> = be.installed(100).map(|r| r.id.clone()).collect();
    let removed = before.difference(&after).count();
    let added = after.difference(&before).count();
    assert!(removed >= 4, "{removed}");
    // Changed rules (the miss) are destroyed and created again.
    assert_eq!(rep.destroyed, removed + (rep.created - added));
    assert_eq!(nic.borrow().creates - creates_before, rep.created);
    assert!(rep.created <= 3, "only misses flip: {rep:?}");
    assert_eq!(nic.borrow().rules.len(), after.len());

    let c = be.counters();
    assert_eq!(c.rules_installed as usize, after.len());
    assert_eq!(
        c.offloaded_flows as usize,
        be.plan(100).unwrap().offloaded.len()
    );
    assert!(c.not_offloaded["punt"] > 0);

    // Shutdown removes by handle.
    let rep = be.clear();
    assert_eq!(rep.destroyed, after.len());
    assert!(nic.borrow().rules.is_empty());
}

#[test]
fn a_refused_create_is_recorded_not_retried_and_its_group_misses_to_software() {
    let d = demo();
    let (mut be, nic) = fake_backend(transfer_cfg());
    let vm1 = mac(d.vm1.mac_address);
    nic.borrow_mut().refuse_dst = Some(vm1);
    let flows = d.flows();
    let rep = be.apply(&flows);
    assert_eq!(rep.refused.len(), 1, "{rep:?}");
    assert!(rep.refused[0].1.contains("table full"), "{rep:?}");
    let plan = be.plan(100).unwrap();
    let l2 = one(&flows, Stage::L2Lookup, |f| {
        f.matches.contains(&Match::EthDst(d.vm1.mac_address))
    });
    let n = reason(plan, l2);
    assert!(
        matches!(&n.reason, Reason::RefusedByPort { kind: RuleKind::L2Forward, message, .. } if message.contains("table full")),
        "{:?}",
        n.reason
    );
    let g = group_of(Stage::L2Lookup, net_key(l2));
    let miss = be
        .installed(100)
        .find(|r| r.kind == RuleKind::Miss && r.rule.attr.group == g)
        .unwrap();
    assert_eq!(
        miss.rule.actions,
        vec![FlowAction::PortId {
            id: 100,
            original: false
        }],
        "vm1's traffic must reach software"
    );
    // Again: the same rule is not tried again.
    let rep = be.apply(&flows);
    assert_eq!((rep.created, rep.destroyed, rep.refused.len()), (0, 0, 0));
    assert_eq!(nic.borrow().refused[&vm1], 1);
    assert_eq!(be.counters().create_refusals, 1);
    assert_eq!(be.counters().not_offloaded["refused_by_port"], 1);
}
