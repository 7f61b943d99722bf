//! Rule construction checked at the C-struct level, and testpmd rendering, without EAL.

use std::ffi::c_void;
use std::net::Ipv4Addr;

use rte::ffi::{self, rte_flow_action_type as A, rte_flow_item_type as T};
use rte::flow::{
    to_testpmd, EthFields, FlowAction, FlowAttr, FlowRule, Ipv4Fields, Item, LoweredRule,
    UdpFields, VxlanEncap, VxlanFields,
};
use rte::MacAddr;

const M1: MacAddr = MacAddr([0x00, 0x11, 0x22, 0x33, 0x44, 0x55]);
const M2: MacAddr = MacAddr([0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]);

/// Reads the C struct behind a spec/mask/conf pointer.
fn read<T: Copy>(p: *const c_void) -> T {
    assert!(!p.is_null(), "expected a configuration pointer, got NULL");
    // SAFETY: the tests read back the type the lowering stored for that item/action type.
    unsafe { *(p as *const T) }
}

fn l3_rule() -> FlowRule {
    FlowRule {
        attr: FlowAttr::ingress(1),
        pattern: vec![
            Item::eth_dst(M1),
            Item::ipv4_dst_prefix(Ipv4Addr::new(10, 1, 2, 77), 24),
        ],
        actions: vec![
            FlowAction::SetMacSrc(M2),
            FlowAction::SetMacDst(M1),
            FlowAction::DecTtl,
            FlowAction::PortId {
                id: 1,
                original: false,
            },
        ],
    }
}

#[test]
fn attributes_lower_to_bitfields() {
    let attr = FlowAttr {
        group: 7,
        priority: 3,
        ingress: false,
        egress: true,
        transfer: true,
    };
    let r = LoweredRule::new(&attr, &[], &[]).unwrap();
    let a = r.attr();
    assert_eq!((a.group, a.priority), (7, 3));
    assert_eq!((a.ingress(), a.egress(), a.transfer()), (0, 1, 1));
    // An empty pattern and action list still end in END.
    assert_eq!(r.items().len(), 1);
    assert_eq!(r.items()[0].type_, T::RTE_FLOW_ITEM_TYPE_END);
    assert_eq!(r.actions().len(), 1);
    assert_eq!(r.actions()[0].type_, A::RTE_FLOW_ACTION_TYPE_END);
}

#[test]
fn l3_rule_items_and_actions_lower_to_c_structs() {
    let r = l3_rule().lower().unwrap();
    let types: Vec<_> = r.items().iter().map(|i| i.type_).collect();
    assert_eq!(
        types,
        [
            T::RTE_FLOW_ITEM_TYPE_ETH,
            T::RTE_FLOW_ITEM_TYPE_IPV4,
            T::RTE_FLOW_ITEM_TYPE_END
        ]
    );

    let eth_spec: ffi::rte_flow_item_eth = read(r.items()[0].spec);
    let eth_mask: ffi::rte_flow_item_eth = read(r.items()[0].mask);
    // SAFETY: reading the hdr view of a plain-data union.
    let (s, m) = unsafe { (eth_spec.__bindgen_anon_1.hdr, eth_mask.__bindgen_anon_1.hdr) };
    assert_eq!(s.dst_addr.addr_bytes, M1.0);
    assert_eq!(s.src_addr.addr_bytes, [0; 6]);
    assert_eq!(m.dst_addr.addr_bytes, [0xff; 6]);
    assert_eq!(m.src_addr.addr_bytes, [0; 6]);
    assert_eq!({ m.ether_type }, 0);
    assert!(r.items()[0].last.is_null());

    let ip_spec: ffi::rte_flow_item_ipv4 = read(r.items()[1].spec);
    let ip_mask: ffi::rte_flow_item_ipv4 = read(r.items()[1].mask);
    // Network byte order in memory: 10.1.2.0 and 255.255.255.0, host bits cleared.
    assert_eq!({ ip_spec.hdr.dst_addr }.to_ne_bytes(), [10, 1, 2, 0]);
    assert_eq!({ ip_mask.hdr.dst_addr }.to_ne_bytes(), [255, 255, 255, 0]);
    assert_eq!({ ip_mask.hdr.src_addr }, 0);
    assert_eq!(ip_mask.hdr.time_to_live, 0);
    assert!(r.items()[2].spec.is_null() && r.items()[2].mask.is_null());

    let acts: Vec<_> = r.actions().iter().map(|a| a.type_).collect();
    assert_eq!(
        acts,
        [
            A::RTE_FLOW_ACTION_TYPE_SET_MAC_SRC,
            A::RTE_FLOW_ACTION_TYPE_SET_MAC_DST,
            A::RTE_FLOW_ACTION_TYPE_DEC_TTL,
            A::RTE_FLOW_ACTION_TYPE_PORT_ID,
            A::RTE_FLOW_ACTION_TYPE_END
        ]
    );
    assert_eq!(
        read::<ffi::rte_flow_action_set_mac>(r.actions()[0].conf).mac_addr,
        M2.0
    );
    assert_eq!(
        read::<ffi::rte_flow_action_set_mac>(r.actions()[1].conf).mac_addr,
        M1.0
    );
    assert!(r.actions()[2].conf.is_null());
    let pid: ffi::rte_flow_action_port_id = read(r.actions()[3].conf);
    assert_eq!((pid.id, pid.original()), (1, 0));
}

#[test]
fn zero_mask_lowers_to_null_spec_and_mask() {
    let r = LoweredRule::new(
        &FlowAttr::ingress(0),
        &[Item::eth_any(), Item::ipv4_any(), Item::udp_any()],
        &[FlowAction::Drop],
    )
    .unwrap();
    for it in &r.items()[..3] {
        assert!(
            it.spec.is_null() && it.mask.is_null(),
            "an all-zero mask means any: NULL spec and mask"
        );
    }
    assert_eq!(r.actions()[0].type_, A::RTE_FLOW_ACTION_TYPE_DROP);
}

#[test]
fn udp_vxlan_and_port_items() {
    let pattern = [
        Item::PortId { id: 3 },
        Item::RepresentedPort { ethdev_port_id: 2 },
        Item::Eth {
            spec: EthFields {
                ether_type: 0x0800,
                ..Default::default()
            },
            mask: EthFields {
                ether_type: 0xffff,
                ..Default::default()
            },
        },
        Item::Ipv4 {
            spec: Ipv4Fields {
                proto: 17,
                ttl: 9,
                tos: 4,
                ..Default::default()
            },
            mask: Ipv4Fields {
                proto: 0xff,
                ttl: 0xff,
                tos: 0xfc,
                ..Default::default()
            },
        },
        Item::Udp {
            spec: UdpFields {
                src_port: 1234,
                dst_port: 4789,
            },
            mask: UdpFields {
                src_port: 0,
                dst_port: 0xffff,
            },
        },
        Item::vxlan_vni(0x12_3456),
        Item::End,
    ];
    let r = LoweredRule::new(
        &FlowAttr::ingress(0),
        &pattern,
        &[FlowAction::Queue { index: 5 }],
    )
    .unwrap();
    assert_eq!(r.items().len(), 7, "explicit END is not doubled");
    assert_eq!(r.items()[0].type_, T::RTE_FLOW_ITEM_TYPE_PORT_ID);
    assert_eq!(read::<ffi::rte_flow_item_port_id>(r.items()[0].spec).id, 3);
    assert_eq!(r.items()[1].type_, T::RTE_FLOW_ITEM_TYPE_REPRESENTED_PORT);
    assert_eq!(
        read::<ffi::rte_flow_item_ethdev>(r.items()[1].spec).port_id,
        2
    );
    assert_eq!(
        read::<ffi::rte_flow_item_ethdev>(r.items()[1].mask).port_id,
        0xffff
    );

    let eth: ffi::rte_flow_item_eth = read(r.items()[2].spec);
    // SAFETY: plain-data union view.
    assert_eq!(
        unsafe { eth.__bindgen_anon_1.hdr.ether_type }.to_ne_bytes(),
        [0x08, 0x00]
    );

    let ip: ffi::rte_flow_item_ipv4 = read(r.items()[3].spec);
    let ipm: ffi::rte_flow_item_ipv4 = read(r.items()[3].mask);
    assert_eq!(
        (
            ip.hdr.next_proto_id,
            ip.hdr.time_to_live,
            ip.hdr.type_of_service
        ),
        (17, 9, 4)
    );
    assert_eq!(ipm.hdr.type_of_service, 0xfc);

    let udp: ffi::rte_flow_item_udp = read(r.items()[4].spec);
    let udpm: ffi::rte_flow_item_udp = read(r.items()[4].mask);
    assert_eq!({ udp.hdr.dst_port }.to_ne_bytes(), 4789u16.to_be_bytes());
    assert_eq!({ udp.hdr.src_port }.to_ne_bytes(), 1234u16.to_be_bytes());
    assert_eq!({ udpm.hdr.src_port }, 0);

    let vx: ffi::rte_flow_item_vxlan = read(r.items()[5].spec);
    let vxm: ffi::rte_flow_item_vxlan = read(r.items()[5].mask);
    // SAFETY: plain-data union view.
    unsafe {
        assert_eq!(vx.__bindgen_anon_1.__bindgen_anon_1.vni, [0x12, 0x34, 0x56]);
        assert_eq!(vxm.__bindgen_anon_1.__bindgen_anon_1.vni, [0xff; 3]);
        assert_eq!(vxm.__bindgen_anon_1.__bindgen_anon_1.flags, 0);
    }
    assert_eq!(
        read::<ffi::rte_flow_action_queue>(r.actions()[0].conf).index,
        5
    );
}

#[test]
fn jump_count_represented_port_and_vxlan_actions() {
    let encap = VxlanEncap {
        eth_src: M1,
        eth_dst: M2,
        ip_src: Ipv4Addr::new(172, 31, 0, 1),
        ip_dst: Ipv4Addr::new(172, 31, 0, 2),
        udp_src: 49152,
        udp_dst: 4789,
        vni: 5001,
    };
    let actions = [
        FlowAction::Jump { group: 4 },
        FlowAction::Count { id: 9 },
        FlowAction::RepresentedPort { ethdev_port_id: 6 },
        FlowAction::VxlanEncap(encap),
        FlowAction::VxlanDecap,
        FlowAction::PortId {
            id: 2,
            original: true,
        },
    ];
    let r = LoweredRule::new(&FlowAttr::ingress(0), &[Item::eth_any()], &actions).unwrap();
    assert_eq!(
        read::<ffi::rte_flow_action_jump>(r.actions()[0].conf).group,
        4
    );
    assert_eq!(
        read::<ffi::rte_flow_action_count>(r.actions()[1].conf).id,
        9
    );
    assert_eq!(
        r.actions()[2].type_,
        A::RTE_FLOW_ACTION_TYPE_REPRESENTED_PORT
    );
    assert_eq!(
        read::<ffi::rte_flow_action_ethdev>(r.actions()[2].conf).port_id,
        6
    );
    assert_eq!(r.actions()[3].type_, A::RTE_FLOW_ACTION_TYPE_VXLAN_ENCAP);
    assert_eq!(r.actions()[4].type_, A::RTE_FLOW_ACTION_TYPE_VXLAN_DECAP);
    assert!(r.actions()[4].conf.is_null());
    assert_eq!(
        read::<ffi::rte_flow_action_port_id>(r.actions()[5].conf).original(),
        1
    );

    // The encap definition: eth / ipv4 / udp / vxlan / end with the outer headers.
    let enc: ffi::rte_flow_action_vxlan_encap = read(r.actions()[3].conf);
    // SAFETY: the lowering stores five items behind definition.
    let def = unsafe { std::slice::from_raw_parts(enc.definition, 5) };
    let types: Vec<_> = def.iter().map(|i| i.type_).collect();
    assert_eq!(
        types,
        [
            T::RTE_FLOW_ITEM_TYPE_ETH,
            T::RTE_FLOW_ITEM_TYPE_IPV4,
            T::RTE_FLOW_ITEM_TYPE_UDP,
            T::RTE_FLOW_ITEM_TYPE_VXLAN,
            T::RTE_FLOW_ITEM_TYPE_END
        ]
    );
    let eth: ffi::rte_flow_item_eth = read(def[0].spec);
    // SAFETY: plain-data union views.
    unsafe {
        assert_eq!(eth.__bindgen_anon_1.hdr.src_addr.addr_bytes, M1.0);
        assert_eq!(eth.__bindgen_anon_1.hdr.dst_addr.addr_bytes, M2.0);
    }
    let ip: ffi::rte_flow_item_ipv4 = read(def[1].spec);
    assert_eq!({ ip.hdr.src_addr }.to_ne_bytes(), [172, 31, 0, 1]);
    assert_eq!({ ip.hdr.dst_addr }.to_ne_bytes(), [172, 31, 0, 2]);
    assert_eq!(ip.hdr.next_proto_id, 17);
    let udp: ffi::rte_flow_item_udp = read(def[2].spec);
    assert_eq!({ udp.hdr.dst_port }.to_ne_bytes(), 4789u16.to_be_bytes());
    let vx: ffi::rte_flow_item_vxlan = read(def[3].spec);
    // SAFETY: plain-data union view.
    unsafe {
        assert_eq!(vx.__bindgen_anon_1.__bindgen_anon_1.vni, [0x00, 0x13, 0x89]);
        assert_eq!(vx.__bindgen_anon_1.__bindgen_anon_1.flags, 0x08);
    }
}

#[test]
fn lowering_rejects_bad_rules() {
    let err = LoweredRule::new(&FlowAttr::ingress(0), &[Item::End, Item::eth_any()], &[])
        .err()
        .unwrap();
    assert!(err.to_string().contains("END item at position 0"), "{err}");
    let err = LoweredRule::new(
        &FlowAttr::ingress(0),
        &[],
        &[FlowAction::End, FlowAction::Drop],
    )
    .err()
    .unwrap();
    assert!(
        err.to_string().contains("END action at position 0"),
        "{err}"
    );
    let err = LoweredRule::new(
        &FlowAttr::ingress(0),
        &[Item::Vxlan {
            spec: VxlanFields { vni: 1 << 24 },
            mask: VxlanFields { vni: 0xff_ffff },
        }],
        &[],
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("24 bits"), "{err}");
}

#[test]
fn lowered_rule_survives_moves_and_many_rules_lower_fast() {
    // Moving the owner must not move what the C arrays point at.
    let rules: Vec<LoweredRule> = (0..1000u32)
        .map(|i| {
            LoweredRule::new(
                &FlowAttr::ingress(1),
                &[Item::eth_dst(MacAddr([
                    0,
                    0,
                    0,
                    0,
                    (i >> 8) as u8,
                    i as u8,
                ]))],
                &[FlowAction::Jump { group: i }],
            )
            .unwrap()
        })
        .collect();
    let moved: Vec<LoweredRule> = rules.into_iter().rev().collect();
    for (k, r) in moved.iter().enumerate() {
        let i = 999 - k as u32;
        assert_eq!(
            read::<ffi::rte_flow_action_jump>(r.actions()[0].conf).group,
            i
        );
        let eth: ffi::rte_flow_item_eth = read(r.items()[0].spec);
        // SAFETY: plain-data union view.
        assert_eq!(
            unsafe { eth.__bindgen_anon_1.hdr.dst_addr.addr_bytes }[5],
            i as u8
        );
    }
}

#[test]
fn testpmd_rendering() {
    assert_eq!(
        l3_rule().to_testpmd(0),
        "flow create 0 group 1 ingress pattern eth dst is 00:11:22:33:44:55 / ipv4 dst spec 10.1.2.0 dst mask 255.255.255.0 / end \
         actions set_mac_src mac_addr 02:aa:bb:cc:dd:ee / set_mac_dst mac_addr 00:11:22:33:44:55 / dec_ttl / port_id id 1 / end"
    );
    let s = to_testpmd(
        3,
        &FlowAttr {
            group: 0,
            priority: 2,
            ingress: false,
            egress: false,
            transfer: true,
        },
        &[
            Item::RepresentedPort { ethdev_port_id: 1 },
            Item::Eth {
                spec: EthFields {
                    src: M1,
                    ether_type: 0x0800,
                    ..Default::default()
                },
                mask: EthFields {
                    src: MacAddr([0xff, 0xff, 0xff, 0, 0, 0]),
                    ether_type: 0xffff,
                    ..Default::default()
                },
            },
            Item::Ipv4 {
                spec: Ipv4Fields {
                    src: Ipv4Addr::new(1, 2, 3, 4),
                    proto: 17,
                    ..Default::default()
                },
                mask: Ipv4Fields {
                    src: Ipv4Addr::BROADCAST,
                    proto: 0xff,
                    ..Default::default()
                },
            },
            Item::udp_dst(4789),
            Item::vxlan_vni(100),
            Item::End,
        ],
        &[
            FlowAction::VxlanDecap,
            FlowAction::Count { id: 0 },
            FlowAction::Count { id: 5 },
            FlowAction::RepresentedPort { ethdev_port_id: 2 },
            FlowAction::End,
        ],
    );
    assert_eq!(
        s,
        "flow create 3 priority 2 transfer pattern represented_port ethdev_port_id is 1 / \
         eth src spec 00:11:22:33:44:55 src mask ff:ff:ff:00:00:00 type is 0x0800 / ipv4 src is 1.2.3.4 proto is 17 / \
         udp dst is 4789 / vxlan vni is 100 / end actions vxlan_decap / count / count identifier 5 / represented_port ethdev_port_id 2 / end"
    );
    let encap = VxlanEncap {
        eth_src: M1,
        eth_dst: M2,
        ip_src: Ipv4Addr::new(10, 0, 0, 1),
        ip_dst: Ipv4Addr::new(10, 0, 0, 2),
        udp_src: 4789,
        udp_dst: 4789,
        vni: 100,
    };
    let s = to_testpmd(
        0,
        &FlowAttr {
            egress: true,
            ..Default::default()
        },
        &[Item::eth_any()],
        &[
            FlowAction::VxlanEncap(encap),
            FlowAction::Queue { index: 0 },
            FlowAction::Drop,
            FlowAction::Jump { group: 2 },
        ],
    );
    assert_eq!(
        s,
        "set vxlan ip-version ipv4 vni 100 udp-src 4789 udp-dst 4789 ip-src 10.0.0.1 ip-dst 10.0.0.2 eth-src 00:11:22:33:44:55 eth-dst 02:aa:bb:cc:dd:ee\n\
         flow create 0 egress pattern eth / end actions vxlan_encap / queue index 0 / drop / jump group 2 / end"
    );
}

#[test]
fn mac_parse_round_trip() {
    let m: MacAddr = "00:11:22:33:44:55".parse().unwrap();
    assert_eq!(m, M1);
    assert_eq!(m.to_string(), "00:11:22:33:44:55");
    assert!("00:11:22:33:44".parse::<MacAddr>().is_err());
    assert!("00:11:22:33:44:55:66".parse::<MacAddr>().is_err());
    assert!("zz:11:22:33:44:55".parse::<MacAddr>().is_err());
}
