//! Rules built from the compiled demo topology, checked at the C-struct level: item types,
//! spec and mask bytes, action configurations, for each offloadable kind.

mod common;

use std::ffi::c_void;

use common::{demo, ip, port_map};
use rte::ffi::{self, rte_flow_action_type as A, rte_flow_item_type as T};
use rte::flow::LoweredRule;
use wyvern_offload_rteflow::*;
use wyvern_pipeline::{Action, Match, Stage};

fn read<X: Copy>(p: *const c_void) -> X {
    assert!(!p.is_null(), "expected a pointer, got NULL");
    // SAFETY: each test reads back the type the lowering stores for that item/action type.
    unsafe { *(p as *const X) }
}

fn eth(p: *const c_void) -> ffi::rte_ether_hdr {
    let e: ffi::rte_flow_item_eth = read(p);
    // SAFETY: the hdr view of a plain-data union.
    unsafe { e.__bindgen_anon_1.hdr }
}

struct Fixture {
    d: common::Demo,
    flows: Vec<wyvern_pipeline::Flow>,
    plan: PortPlan,
}

fn fixture(cfg: OffloadConfig, port: u16) -> Fixture {
    let d = demo();
    let flows = d.flows();
    let plan = partition(
        &flows,
        &cfg,
        port,
        &PortCaps::assume_all(port),
        &Refusals::new(),
    );
    Fixture { d, flows, plan }
}

impl Fixture {
    fn lowered(
        &self,
        stage: Stage,
        pred: impl Fn(&wyvern_pipeline::Flow) -> bool,
    ) -> (Rule, LoweredRule) {
        let f = self
            .flows
            .iter()
            .find(|f| f.stage == stage && pred(f))
            .unwrap();
        let ids = self.plan.placement(f).unwrap().unwrap();
        let r = self.plan.rules[&ids[0]].clone();
        let l = r.rule.lower().unwrap();
        (r, l)
    }
}

fn item_types(l: &LoweredRule) -> Vec<ffi::rte_flow_item_type> {
    l.items().iter().map(|i| i.type_).collect()
}

fn action_types(l: &LoweredRule) -> Vec<ffi::rte_flow_action_type> {
    l.actions().iter().map(|a| a.type_).collect()
}

#[test]
fn l2_forward_lowers_to_eth_dst_and_jump() {
    let fx = fixture(OffloadConfig::transfer(9, port_map(3)), 9);
    let m = fx.d.vm3.mac_address;
    let (r, l) = fx.lowered(Stage::L2Lookup, |f| f.matches.contains(&Match::EthDst(m)));
    let a = l.attr();
    assert_eq!((a.ingress(), a.egress(), a.transfer()), (0, 0, 1));
    assert_eq!(a.group, r.rule.attr.group);
    assert_eq!(a.group >> 24, Stage::L2Lookup.index() as u32);
    assert_eq!(a.priority, rte_priority(100));
    assert_eq!(
        item_types(&l),
        [T::RTE_FLOW_ITEM_TYPE_ETH, T::RTE_FLOW_ITEM_TYPE_END]
    );
    let (s, k) = (eth(l.items()[0].spec), eth(l.items()[0].mask));
    assert_eq!(s.dst_addr.addr_bytes, m.0);
    assert_eq!(k.dst_addr.addr_bytes, [0xff; 6]);
    assert_eq!(k.src_addr.addr_bytes, [0; 6]);
    assert_eq!({ k.ether_type }, 0);
    assert_eq!(
        action_types(&l),
        [A::RTE_FLOW_ACTION_TYPE_JUMP, A::RTE_FLOW_ACTION_TYPE_END]
    );
    let j: ffi::rte_flow_action_jump = read(l.actions()[0].conf);
    assert_eq!(j.group, r.jump_target().unwrap());
    assert_eq!(j.group >> 24, Stage::Egress.index() as u32);
}

#[test]
fn l3_route_lowers_to_ipv4_prefix_dec_ttl_and_mac_rewrites() {
    let fx = fixture(OffloadConfig::transfer(9, port_map(3)), 9);
    let dst = ip(&fx.d.vm3);
    let (r, l) = fx.lowered(Stage::L3Lookup, |f| {
        f.matches.contains(&Match::Ipv4Dst(dst.into()))
    });
    assert_eq!(
        item_types(&l),
        [
            T::RTE_FLOW_ITEM_TYPE_ETH,
            T::RTE_FLOW_ITEM_TYPE_IPV4,
            T::RTE_FLOW_ITEM_TYPE_END
        ]
    );
    let (s, k) = (eth(l.items()[0].spec), eth(l.items()[0].mask));
    assert_eq!({ s.ether_type }, 0x0800u16.to_be());
    assert_eq!({ k.ether_type }, 0xffff);
    assert_eq!(k.dst_addr.addr_bytes, [0; 6]);
    let is: ffi::rte_flow_item_ipv4 = read(l.items()[1].spec);
    let im: ffi::rte_flow_item_ipv4 = read(l.items()[1].mask);
    assert_eq!({ is.hdr.dst_addr }.to_ne_bytes(), dst.octets());
    assert_eq!({ im.hdr.dst_addr }.to_ne_bytes(), [255; 4]);
    assert_eq!(
        (
            { im.hdr.src_addr },
            im.hdr.time_to_live,
            im.hdr.next_proto_id
        ),
        (0, 0, 0)
    );
    assert_eq!(
        action_types(&l),
        [
            A::RTE_FLOW_ACTION_TYPE_DEC_TTL,
            A::RTE_FLOW_ACTION_TYPE_SET_MAC_SRC,
            A::RTE_FLOW_ACTION_TYPE_SET_MAC_DST,
            A::RTE_FLOW_ACTION_TYPE_JUMP,
            A::RTE_FLOW_ACTION_TYPE_END
        ]
    );
    assert!(l.actions()[0].conf.is_null());
    let src: ffi::rte_flow_action_set_mac = read(l.actions()[1].conf);
    let dmac: ffi::rte_flow_action_set_mac = read(l.actions()[2].conf);
    assert_eq!(src.mac_addr, fx.d.gw2.1 .0);
    assert_eq!(dmac.mac_addr, fx.d.vm3.mac_address.0);
    let j: ffi::rte_flow_action_jump = read(l.actions()[3].conf);
    assert_eq!(j.group, r.jump_target().unwrap());

    // The /16 static route: prefix mask bytes, host bits cleared.
    let (_, l) = fx.lowered(Stage::L3Lookup, |f| {
        f.matches
            .contains(&Match::Ipv4Dst("10.9.0.0/16".parse().unwrap()))
    });
    let is: ffi::rte_flow_item_ipv4 = read(l.items()[1].spec);
    let im: ffi::rte_flow_item_ipv4 = read(l.items()[1].mask);
    assert_eq!({ is.hdr.dst_addr }.to_ne_bytes(), [10, 9, 0, 0]);
    assert_eq!({ im.hdr.dst_addr }.to_ne_bytes(), [255, 255, 0, 0]);
}

#[test]
fn egress_lowers_to_represented_port_or_port_id() {
    let fx = fixture(OffloadConfig::transfer(9, port_map(3)), 9);
    let (_, l) = fx.lowered(Stage::Egress, |f| f.actions == vec![Action::Output(2)]);
    assert_eq!(
        item_types(&l),
        [T::RTE_FLOW_ITEM_TYPE_ETH, T::RTE_FLOW_ITEM_TYPE_END]
    );
    assert!(
        l.items()[0].spec.is_null() && l.items()[0].mask.is_null(),
        "any frame"
    );
    assert_eq!(
        action_types(&l),
        [
            A::RTE_FLOW_ACTION_TYPE_REPRESENTED_PORT,
            A::RTE_FLOW_ACTION_TYPE_END
        ]
    );
    let e: ffi::rte_flow_action_ethdev = read(l.actions()[0].conf);
    assert_eq!(e.port_id, 1);

    let fx = fixture(OffloadConfig::per_port(port_map(3)), 0);
    let (_, l) = fx.lowered(Stage::Egress, |f| f.actions == vec![Action::Output(2)]);
    assert_eq!((l.attr().ingress(), l.attr().transfer()), (1, 0));
    assert_eq!(action_types(&l)[0], A::RTE_FLOW_ACTION_TYPE_PORT_ID);
    let p: ffi::rte_flow_action_port_id = read(l.actions()[0].conf);
    assert_eq!((p.id, p.original()), (1, 0));
}

#[test]
fn classify_lowers_to_represented_port_eth_src_ipv4_src_and_jump() {
    let fx = fixture(OffloadConfig::transfer(9, port_map(3)), 9);
    let m = fx.d.vm1.mac_address;
    let src = ip(&fx.d.vm1);
    let (_, l) = fx.lowered(Stage::PortSecurity, |f| {
        f.matches.contains(&Match::EthSrc(m)) && f.matches.contains(&Match::Ipv4Src(src.into()))
    });
    assert_eq!(l.attr().group, 0);
    assert_eq!(
        item_types(&l),
        [
            T::RTE_FLOW_ITEM_TYPE_REPRESENTED_PORT,
            T::RTE_FLOW_ITEM_TYPE_ETH,
            T::RTE_FLOW_ITEM_TYPE_IPV4,
            T::RTE_FLOW_ITEM_TYPE_END
        ]
    );
    let ps: ffi::rte_flow_item_ethdev = read(l.items()[0].spec);
    let pm: ffi::rte_flow_item_ethdev = read(l.items()[0].mask);
    assert_eq!((ps.port_id, pm.port_id), (0, 0xffff));
    let (s, k) = (eth(l.items()[1].spec), eth(l.items()[1].mask));
    assert_eq!(s.src_addr.addr_bytes, m.0);
    assert_eq!(k.src_addr.addr_bytes, [0xff; 6]);
    assert_eq!(k.dst_addr.addr_bytes, [0; 6]);
    let is: ffi::rte_flow_item_ipv4 = read(l.items()[2].spec);
    let im: ffi::rte_flow_item_ipv4 = read(l.items()[2].mask);
    assert_eq!({ is.hdr.src_addr }.to_ne_bytes(), src.octets());
    assert_eq!({ im.hdr.src_addr }, u32::MAX);
    assert_eq!({ im.hdr.dst_addr }, 0);
    let j: ffi::rte_flow_action_jump = read(l.actions()[0].conf);
    assert_eq!(j.group >> 24, Stage::L2Lookup.index() as u32);
}

#[test]
fn dhcp_steering_lowers_to_eth_ipv4_udp_and_queue() {
    let fx = fixture(OffloadConfig::per_port(port_map(3)), 0);
    // Port 0's own DHCP punt (the other ports' are in their plans).
    let n = fx
        .plan
        .not_offloaded
        .iter()
        .find(|n| n.flow.stage == Stage::Dhcp)
        .unwrap();
    let r = &fx.plan.rules[n.steered_by.as_ref().unwrap()];
    let l = r.rule.lower().unwrap();
    assert_eq!(
        (l.attr().group, l.attr().priority, l.attr().ingress()),
        (0, 0, 1)
    );
    assert_eq!(
        item_types(&l),
        [
            T::RTE_FLOW_ITEM_TYPE_ETH,
            T::RTE_FLOW_ITEM_TYPE_IPV4,
            T::RTE_FLOW_ITEM_TYPE_UDP,
            T::RTE_FLOW_ITEM_TYPE_END
        ]
    );
    let is: ffi::rte_flow_item_ipv4 = read(l.items()[1].spec);
    let im: ffi::rte_flow_item_ipv4 = read(l.items()[1].mask);
    assert_eq!((is.hdr.next_proto_id, im.hdr.next_proto_id), (17, 0xff));
    let us: ffi::rte_flow_item_udp = read(l.items()[2].spec);
    let um: ffi::rte_flow_item_udp = read(l.items()[2].mask);
    assert_eq!(
        (u16::from_be(us.hdr.src_port), u16::from_be(us.hdr.dst_port)),
        (68, 67)
    );
    assert_eq!(({ um.hdr.src_port }, { um.hdr.dst_port }), (0xffff, 0xffff));
    assert_eq!(
        action_types(&l),
        [A::RTE_FLOW_ACTION_TYPE_QUEUE, A::RTE_FLOW_ACTION_TYPE_END]
    );
    let q: ffi::rte_flow_action_queue = read(l.actions()[0].conf);
    assert_eq!(q.index, 0);
}

#[test]
fn group_misses_and_drops_lower_to_drop_with_any_eth() {
    let fx = fixture(OffloadConfig::transfer(9, port_map(3)), 9);
    let miss = fx
        .plan
        .rules
        .values()
        .find(|r| r.kind == RuleKind::Miss)
        .unwrap();
    let l = miss.rule.lower().unwrap();
    assert_eq!(l.attr().priority, layout::MISS_PRIORITY);
    assert!(l.items()[0].spec.is_null() && l.items()[0].mask.is_null());
    assert_eq!(
        action_types(&l),
        [A::RTE_FLOW_ACTION_TYPE_DROP, A::RTE_FLOW_ACTION_TYPE_END]
    );
    assert!(l.actions()[0].conf.is_null());
    // Every rule of the plan lowers.
    for r in fx.plan.rules.values() {
        let l = r.rule.lower().unwrap();
        assert_eq!(
            l.items().last().unwrap().type_,
            T::RTE_FLOW_ITEM_TYPE_END,
            "{}",
            r.id
        );
        assert_eq!(
            l.actions().last().unwrap().type_,
            A::RTE_FLOW_ACTION_TYPE_END,
            "{}",
            r.id
        );
    }
}

#[test]
fn representative_rules_lower_for_every_kind() {
    for cfg in [
        OffloadConfig::transfer(4, port_map(3)),
        OffloadConfig::per_port(port_map(3)),
    ] {
        for kind in RuleKind::ALL {
            let r = representative(kind, &cfg, 0);
            r.lower().unwrap_or_else(|e| panic!("{kind}: {e}"));
        }
    }
}
