//! The OpenFlow mapping of composite IR actions, checked field by field.

use wyvern_model::MacAddr;
use wyvern_openflow::wire::Action as Of;
use wyvern_openflow::{Field, PortNo};
use wyvern_pipeline::ir::{ETH_TYPE_ARP, ETH_TYPE_IPV4};
use wyvern_pipeline::{Action, Flow, Match, NetKey, Owner, PortKey, PuntReason, Stage};

#[test]
fn arp_reply_swaps_in_place_and_answers_from_the_target_address() {
    let mac = MacAddr([0xfa, 0x16, 0x3e, 1, 2, 3]);
    let ip = "10.0.1.1".parse().unwrap();
    let f = Flow::new(Stage::ArpResponder, 100, Owner::Static)
        .m(Match::Network(NetKey(7)))
        .m(Match::EthType(ETH_TYPE_ARP))
        .m(Match::ArpOp(1))
        .m(Match::ArpTpa(ip))
        .a(Action::ArpReply { mac });
    let d = wyvern_ofpipe::map_flow(&f).unwrap();
    assert_eq!(d.key.table, 3);
    assert_eq!(
        d.key.match_.get(Field::Reg(wyvern_ofpipe::REG_NETWORK)),
        Some((7, None))
    );
    let acts = &d.instructions.apply_actions;
    assert!(acts.contains(&Of::SetField {
        field: Field::ArpSpa,
        value: u32::from(ip as std::net::Ipv4Addr).into()
    }));
    assert!(acts.contains(&Of::SetField {
        field: Field::ArpOp,
        value: 2
    }));
    assert_eq!(
        acts.last(),
        Some(&Of::Output {
            port: PortNo::IN_PORT,
            max_len: 0
        })
    );
    assert_eq!(d.instructions.goto_table, None);
}

#[test]
fn punts_carry_the_reason_and_gotos_become_goto_table() {
    let f = Flow::new(Stage::Dhcp, 100, Owner::Static)
        .m(Match::InPort(PortKey(4)))
        .m(Match::EthType(ETH_TYPE_IPV4))
        .a(Action::Punt(PuntReason::Dhcp));
    let d = wyvern_ofpipe::map_flow(&f).unwrap();
    match d.instructions.apply_actions.as_slice() {
        [Of::Controller(c)] => assert_eq!(c.userdata, vec![1]),
        other => panic!("unexpected actions {other:?}"),
    }
    let f = Flow::new(Stage::L2Lookup, 100, Owner::Static)
        .m(Match::Network(NetKey(1)))
        .a(Action::SetOutPort(PortKey(9)))
        .a(Action::Goto(Stage::Egress));
    let d = wyvern_ofpipe::map_flow(&f).unwrap();
    assert_eq!(d.instructions.goto_table, Some(7));
    assert_eq!(d.key.priority, 100);
}

#[test]
fn arp_reply_without_an_exact_target_is_refused() {
    let f = Flow::new(Stage::ArpResponder, 100, Owner::Static).a(Action::ArpReply {
        mac: MacAddr([0; 6]),
    });
    assert!(wyvern_ofpipe::map_flow(&f).is_err());
}
