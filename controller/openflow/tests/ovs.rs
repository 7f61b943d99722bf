//! Against a real ovs-vswitchd (dummy datapath, private run dir per test): the bridge
//! connects to our listener; flows of every kind we emit are installed, read back and
//! compared; errors, reconnects, restarts and packet-ins behave as specified.

use std::net::Ipv4Addr;
use std::time::Duration;
use wyvern_openflow::conn::SwitchEvent;
use wyvern_openflow::wire::{flow_flags, Bucket, FlowStatsRequest, GroupType, PacketInFormat};
use wyvern_openflow::{
    Action, ControllerAction, DesiredFlow, Field, FieldRange, GroupSpec, Instructions, Lanes,
    ListenAddr, Listener, MacAddr, Match, Ofctrl, PortNo, Switch, SwitchConfig, Update,
};
use wyvern_testkit::ovs::OvsSandbox;

const BR: &str = "br-int";
const ROUTER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);

async fn listen() -> (Listener, String) {
    let l = Listener::bind(&"tcp:127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let Some(ListenAddr::Tcp(a)) = l.local_addr() else {
        panic!("no tcp address")
    };
    (l, format!("tcp:{a}"))
}

async fn accept(l: &Listener) -> (Switch, tokio::sync::mpsc::UnboundedReceiver<SwitchEvent>) {
    tokio::time::timeout(Duration::from_secs(20), l.accept(&SwitchConfig::default()))
        .await
        .expect("bridge did not connect in time")
        .expect("handshake failed")
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// One flow (or more) of every match field, instruction and action kind we support.
fn every_kind() -> (Vec<DesiredFlow>, Vec<GroupSpec>) {
    let mac = |b: u8| MacAddr([0x02, 0, 0, 0, 0, b]);
    let mv = |a: Field, b: Field| Action::RegMove {
        src: FieldRange::full(a),
        dst: FieldRange::full(b),
    };
    let sf = |field, value| Action::SetField { field, value };
    let mut flows = vec![
        DesiredFlow::new(
            0,
            100,
            Match::new().in_port(1),
            Instructions::apply(vec![sf(Field::Reg(0), 5), sf(Field::Reg(15), 0xffff_0000)])
                .with_write_metadata(0x1, 0xff)
                .with_goto(1),
        )
        .with_cookie(0x1000_0000_0000_0001),
        DesiredFlow::new(
            0,
            100,
            Match::new()
                .in_port(2)
                .tun_id(0x64)
                .tun_ipv4_dst(ip("192.168.0.2")),
            Instructions::apply(vec![sf(Field::Reg(1), 0x17)]).with_goto(1),
        ),
        DesiredFlow::new(
            1,
            90,
            Match::new()
                .metadata_masked(0x1, 0xff)
                .eth_src(mac(5))
                .eth_type(0x0800)
                .ipv4_src(ip("10.0.0.5")),
            Instructions::goto(2),
        ),
        DesiredFlow::new(
            1,
            80,
            Match::new()
                .reg(0, 5)
                .eth_dst_masked(MacAddr([1, 0, 0, 0, 0, 0]), MacAddr([1, 0, 0, 0, 0, 0])),
            Instructions::apply(vec![Action::Group(1)]),
        ),
        DesiredFlow::new(
            2,
            100,
            Match::new()
                .reg_masked(1, 0x10, 0xf0)
                .eth_type(0x0806)
                .arp_op(1)
                .arp_tpa(ip("10.0.0.1")),
            Instructions::apply(vec![
                mv(Field::EthSrc, Field::EthDst),
                sf(Field::EthSrc, ROUTER_MAC.to_u64()),
                sf(Field::ArpOp, 2),
                mv(Field::ArpSha, Field::ArpTha),
                sf(Field::ArpSha, ROUTER_MAC.to_u64()),
                mv(Field::ArpSpa, Field::ArpTpa),
                sf(Field::ArpSpa, u32::from(ip("10.0.0.1")).into()),
                Action::output(PortNo::IN_PORT),
            ]),
        ),
        DesiredFlow::new(
            2,
            90,
            Match::new()
                .eth_type(0x0800)
                .ip_proto(17)
                .udp_src(68)
                .udp_dst(67),
            Instructions::apply(vec![Action::controller_with_userdata(vec![1, 2, 3, 4])]),
        ),
        DesiredFlow::new(
            2,
            80,
            Match::new()
                .eth_type(0x0800)
                .ip_proto(1)
                .icmpv4_type(8)
                .icmpv4_code(0)
                .ipv4_dst_prefix(ip("10.0.1.0"), 24),
            Instructions::apply(vec![
                Action::DecNwTtl,
                sf(Field::EthDst, mac(9).to_u64()),
                Action::output(PortNo(2)),
            ]),
        ),
        DesiredFlow::new(
            3,
            10,
            Match::new().reg(2, 7),
            Instructions::apply(vec![
                sf(Field::TunId, 0x64),
                sf(Field::TunIpv4Dst, u32::from(ip("192.168.0.9")).into()),
                Action::Load {
                    dst: FieldRange {
                        field: Field::Reg(3),
                        ofs: 0,
                        n_bits: 8,
                    },
                    value: 5,
                },
                Action::Resubmit {
                    in_port: None,
                    table: Some(4),
                },
                Action::output(PortNo(1)),
            ])
            .with_clear_actions(),
        ),
        DesiredFlow::new(
            3,
            5,
            Match::new()
                .eth_type(0x0800)
                .ipv4_src_masked(ip("10.1.0.0"), ip("255.255.0.0")),
            Instructions::apply(vec![
                Action::output(PortNo::CONTROLLER),
                Action::Controller(ControllerAction {
                    controller_id: 7,
                    reason: 0,
                    max_len: 128,
                    ..Default::default()
                }),
            ]),
        ),
        DesiredFlow::new(
            4,
            1,
            Match::new()
                .eth_type(0x0800)
                .ip_proto(6)
                .tcp_dst(80)
                .tcp_src(1234),
            Instructions::default(),
        ),
    ];
    let mut timed = DesiredFlow::new(4, 2, Match::new().in_port(3), Instructions::default());
    timed.idle_timeout = 300;
    timed.hard_timeout = 600;
    timed.flags = flow_flags::SEND_FLOW_REM;
    flows.push(timed);
    let groups = vec![GroupSpec {
        group_id: 1,
        group_type: GroupType::All,
        buckets: vec![
            Bucket::all(vec![Action::output(PortNo(1))]),
            Bucket::all(vec![Action::output(PortNo(2))]),
        ],
    }];
    (flows, groups)
}

/// Reads the switch's flows back and checks they decode to exactly the desired ones.
async fn assert_read_back_equals(sw: &Switch, flows: &[DesiredFlow]) {
    let mut got = sw.flow_stats(FlowStatsRequest::all()).await.unwrap();
    assert_eq!(got.len(), flows.len(), "flow count differs: {got:#?}");
    for want in flows {
        let idx = got
            .iter()
            .position(|s| {
                s.table_id == want.key.table
                    && s.priority == want.key.priority
                    && s.match_ == want.key.match_
            })
            .unwrap_or_else(|| panic!("flow not read back: {want:?}\ngot: {got:#?}"));
        let s = got.remove(idx);
        assert_eq!(s.cookie, want.cookie);
        assert_eq!(
            s.instructions,
            want.instructions.clone().canonical(),
            "{want:?}"
        );
        assert_eq!(s.idle_timeout, want.idle_timeout);
        assert_eq!(s.hard_timeout, want.hard_timeout);
        assert_eq!(s.flags & flow_flags::PERSISTENT, want.flags);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn installs_every_kind_exactly_and_reconverges_with_zero_or_only_the_difference() {
    let mut ovs = OvsSandbox::dummy().unwrap();
    let (listener, target) = listen().await;
    ovs.add_bridge(BR, Some(&target)).unwrap();
    let (sw, _events) = accept(&listener).await;
    assert_ne!(sw.datapath_id(), 0);

    let (flows, groups) = every_kind();
    let ofctrl = Ofctrl::spawn();
    let attached = ofctrl.attach(sw.clone());
    let report = ofctrl
        .set_desired(flows.clone(), groups.clone())
        .wait()
        .await
        .unwrap();
    attached.wait().await.unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(ofctrl.counters().flow_adds, flows.len() as u64);
    assert_eq!(ofctrl.counters().group_mods, 1);

    // OVS accepted each flow as sent: the read-back decodes to the desired flows ...
    assert_read_back_equals(&sw, &flows).await;
    // ... and ovs-ofctl agrees on what is there.
    let dump = ovs.dump_flows(BR).unwrap().join("\n");
    for needle in [
        "move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[]",
        "move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[]",
        "move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[]",
        "controller(userdata=01.02.03.04)",
        "dec_ttl",
        "group:1",
        "write_metadata:0x1/0xff",
        "load:0x5->NXM_NX_REG3[0..7]",
        "resubmit(,4)",
        "set_field:0x64->tun_id",
        "set_field:192.168.0.9->tun_dst",
        "IN_PORT",
        "idle_timeout=300",
        "tun_dst=192.168.0.2",
        "nw_dst=10.0.1.0/24",
        "clear_actions",
    ] {
        assert!(dump.contains(needle), "{needle} missing from dump:\n{dump}");
    }
    assert_eq!(ovs.dump_flows(BR).unwrap().len(), flows.len());
    let groups_dump = ovs.ofctl(&["dump-groups", BR]).unwrap();
    assert!(
        groups_dump.contains("group_id=1,type=all,bucket=actions=output:1,bucket=actions=output:2"),
        "{groups_dump}"
    );

    // Restart of our side: a fresh ofctrl with the same desired state sends nothing.
    let before = ovs.dump_flows(BR).unwrap();
    sw.disconnect();
    let (sw2, _ev2) = accept(&listener).await;
    let fresh = Ofctrl::spawn();
    fresh.set_desired(flows.clone(), groups.clone());
    let report = fresh.attach(sw2.clone()).wait().await.unwrap();
    assert!(report.full);
    assert_eq!(report.flow_mods(), 0, "{report:?}");
    assert_eq!(report.group_mods, 0);
    assert_eq!(fresh.counters().flow_mods, 0);
    assert_eq!(ovs.dump_flows(BR).unwrap(), before);

    // Restart with one flow changed, one removed, one added: exactly three flow-mods.
    sw2.disconnect();
    let (sw3, _ev3) = accept(&listener).await;
    let mut changed = flows.clone();
    changed[2].instructions = Instructions::goto(3);
    let removed = changed.remove(3);
    let added = DesiredFlow::new(5, 1, Match::new().in_port(9), Instructions::goto(6));
    changed.push(added.clone());
    let third = Ofctrl::spawn();
    third.set_desired(changed.clone(), groups.clone());
    let report = third.attach(sw3.clone()).wait().await.unwrap();
    assert_eq!(
        (report.flow_adds, report.flow_modifies, report.flow_deletes),
        (1, 1, 1),
        "{report:?}"
    );
    assert_read_back_equals(&sw3, &changed).await;

    // Incremental: one more flow costs one flow-mod; removing it costs one more.
    let extra = DesiredFlow::new(5, 2, Match::new().in_port(10), Instructions::goto(6));
    let r = third
        .update(Update {
            add_flows: vec![extra.clone()],
            ..Default::default()
        })
        .wait()
        .await
        .unwrap();
    assert_eq!(r.flow_mods(), 1);
    let r = third
        .update(Update {
            remove_flows: vec![extra.key.clone(), removed.key.clone()],
            ..Default::default()
        })
        .wait()
        .await
        .unwrap();
    assert_eq!(
        (r.flow_deletes, r.flow_mods()),
        (1, 1),
        "only the installed one is deleted"
    );
    assert_read_back_equals(&sw3, &changed).await;

    // ovs-vswitchd restarts (flows lost): the new connection gets everything again.
    ovs.restart_vswitchd().unwrap();
    let (sw4, _ev4) = accept(&listener).await;
    let report = third.attach(sw4.clone()).wait().await.unwrap();
    assert_eq!(report.flow_adds, changed.len() as u64, "{report:?}");
    assert_eq!(report.group_mods, 1);
    assert_read_back_equals(&sw4, &changed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rejected_flow_is_reported_with_that_flow_and_the_rest_install() {
    let ovs = OvsSandbox::dummy().unwrap();
    let (listener, target) = listen().await;
    ovs.add_bridge(BR, Some(&target)).unwrap();
    let (sw, _events) = accept(&listener).await;
    let ofctrl = Ofctrl::spawn();
    ofctrl.attach(sw.clone()).wait().await.unwrap();

    let good = DesiredFlow::new(0, 10, Match::new().in_port(1), Instructions::goto(1));
    // dec_ttl needs an IP match in OpenFlow 1.3: OVS rejects this flow.
    let bad = DesiredFlow::new(
        0,
        20,
        Match::new().in_port(2),
        Instructions::apply(vec![Action::DecNwTtl]),
    );
    let report = ofctrl
        .update(Update {
            add_flows: vec![good.clone(), bad.clone()],
            ..Default::default()
        })
        .wait()
        .await
        .unwrap();
    assert_eq!(report.errors.len(), 1, "{report:?}");
    let err = &report.errors[0];
    match &err.op {
        wyvern_openflow::ofctrl::Op::Flow(fm) => {
            assert_eq!(fm.match_, bad.key.match_);
            assert_eq!(fm.priority, 20);
        }
        other => panic!("error reported with the wrong op: {other:?}"),
    }
    assert!(err.to_string().contains("in_port=2"), "{err}");
    assert_read_back_equals(&sw, std::slice::from_ref(&good)).await;
    assert_eq!(ofctrl.counters().errors, 1);

    // The bad flow is not resent on the next, unrelated update.
    let other = DesiredFlow::new(0, 30, Match::new().in_port(3), Instructions::goto(1));
    let report = ofctrl
        .update(Update {
            add_flows: vec![other.clone()],
            ..Default::default()
        })
        .wait()
        .await
        .unwrap();
    assert!(report.errors.is_empty());
    assert_eq!(report.flow_mods(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn packet_in_with_userdata_and_registers_reaches_the_handler() {
    let ovs = OvsSandbox::dummy().unwrap();
    let (listener, target) = listen().await;
    ovs.add_bridge(BR, Some(&target)).unwrap();
    let p1 = ovs.add_dummy_port(BR, "p1", None).unwrap();
    let ofctrl = Ofctrl::spawn();
    let mut events = ofctrl.serve(listener, SwitchConfig::default());

    let punt = DesiredFlow::new(
        0,
        50,
        Match::new()
            .in_port(p1)
            .eth_type(0x0800)
            .ip_proto(17)
            .udp_dst(67),
        Instructions::apply(vec![
            Action::SetField {
                field: Field::Reg(3),
                value: 0x2a,
            },
            Action::controller_with_userdata(vec![0xde, 0xad, 0xbe, 0xef]),
        ]),
    );
    let done = ofctrl.set_desired(vec![punt], vec![]);
    tokio::time::timeout(Duration::from_secs(20), done.wait())
        .await
        .expect("no switch attached in time")
        .unwrap();
    ovs.appctl(&[
        "netdev-dummy/receive",
        "p1",
        "in_port(1),eth(src=50:54:00:00:00:01,dst=ff:ff:ff:ff:ff:ff),eth_type(0x0800),\
         ipv4(src=0.0.0.0,dst=255.255.255.255,proto=17,tos=0,ttl=64,frag=no),udp(src=68,dst=67)",
    ])
    .unwrap();
    let pi = loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("no packet-in in time")
            .expect("event stream ended");
        if let SwitchEvent::PacketIn { packet_in, .. } = ev {
            break packet_in;
        }
    };
    assert_eq!(pi.format, PacketInFormat::Nx2);
    assert_eq!(pi.userdata.as_deref(), Some(&[0xde, 0xad, 0xbe, 0xef][..]));
    assert_eq!(pi.match_.get(Field::Reg(3)), Some((0x2a, None)));
    assert_eq!(pi.match_.get(Field::InPort), Some((u64::from(p1), None)));
    assert_eq!(
        &pi.data[6..12],
        &[0x50, 0x54, 0, 0, 0, 1],
        "source MAC of the packet"
    );
}

/// `n` flows in table 1, ten per cookie (owner), every fifth one flooding to group 1.
fn bulk_flows(n: u32) -> Vec<DesiredFlow> {
    (0..n)
        .map(|i| {
            let actions = if i % 5 == 0 {
                vec![Action::Group(1)]
            } else {
                vec![Action::output(PortNo(1 + i % 7))]
            };
            DesiredFlow::new(
                1,
                100,
                Match::new().reg(6, i + 1),
                Instructions::apply(actions),
            )
            .with_cookie(0x8000_0000_0000_0000 | (u64::from(i / 10) << 32))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bulk_sync_over_lanes_installs_exactly_and_small_ones_and_failures_use_one_connection() {
    let ovs = OvsSandbox::dummy().unwrap();
    let (listener, target) = listen().await;
    ovs.add_bridge(BR, Some(&target)).unwrap();
    let (sw, _events) = accept(&listener).await;
    let (_, groups) = every_kind();
    let mut flows = bulk_flows(600);
    // One flow OVS rejects (dec_ttl without an IP match): it takes its lane's bundle down,
    // the rest of that bundle goes again over the bridge connection.
    let bad = DesiredFlow::new(
        1,
        100,
        Match::new().reg(6, 5000),
        Instructions::apply(vec![Action::DecNwTtl]),
    )
    .with_cookie(0x8000_0000_0000_0000 | (7 << 32));
    flows.push(bad.clone());

    let ofctrl = Ofctrl::spawn();
    let mgmt = format!(
        "unix:{}",
        ovs.run_dir().join(format!("{BR}.mgmt")).display()
    );
    ofctrl.set_lanes(Some(Lanes {
        target: mgmt.parse().unwrap(),
        count: 3,
        min_flow_mods: 100,
    }));
    ofctrl.attach(sw.clone()).wait().await.unwrap();
    let report = ofctrl
        .set_desired(flows.clone(), groups.clone())
        .wait()
        .await
        .unwrap();
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    match &report.errors[0].op {
        wyvern_openflow::ofctrl::Op::Flow(fm) => assert_eq!(fm.match_, bad.key.match_),
        other => panic!("error reported with the wrong op: {other:?}"),
    }
    let c = ofctrl.counters();
    // 60 owners over 4 connections: every lane carries a bundle.
    assert_eq!(c.lane_bundles, 3, "{c:?}");
    assert_eq!(c.group_mods, 1);
    flows.pop();
    assert_read_back_equals(&sw, &flows).await;

    // A small change goes over the bridge connection alone.
    let extra = DesiredFlow::new(2, 1, Match::new().in_port(9), Instructions::goto(3));
    let r = ofctrl
        .update(Update {
            add_flows: vec![extra.clone()],
            ..Default::default()
        })
        .wait()
        .await
        .unwrap();
    assert_eq!(r.flow_mods(), 1);
    assert_eq!(ofctrl.counters().lane_bundles, 3);
    flows.push(extra);
    assert_read_back_equals(&sw, &flows).await;

    // A lane target that does not answer: the bulk sync goes over the bridge connection.
    let fresh = Ofctrl::spawn();
    fresh.set_lanes(Some(Lanes {
        target: format!("unix:{}", ovs.run_dir().join("nobody.mgmt").display())
            .parse()
            .unwrap(),
        count: 3,
        min_flow_mods: 100,
    }));
    let replaced = bulk_flows(300)
        .into_iter()
        .map(|mut f| {
            f.key.table = 4;
            f
        })
        .collect::<Vec<_>>();
    fresh.set_desired(replaced.clone(), groups.clone());
    sw.disconnect();
    let (sw2, _ev2) = accept(&listener).await;
    let report = fresh.attach(sw2.clone()).wait().await.unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(
        (report.flow_adds, report.flow_deletes),
        (300, flows.len() as u64),
        "{report:?}"
    );
    assert_eq!(fresh.counters().lane_bundles, 0);
    assert_read_back_equals(&sw2, &replaced).await;
}
