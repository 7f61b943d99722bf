//! Garbage in, no panic out: random frames, truncations of real ones and mutated real ones
//! go through the parser, the frame decoder and a compiled engine (which rewrites them).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wyvern_engine::packet::decode;
use wyvern_engine::wire::Headers;
use wyvern_engine::{DropCause, Engine, Meta, Verdict};
use wyvern_model::MacAddr;
use wyvern_pipeline::ir::{Flow, NetKey, Owner, PortKey, RouterKey};
use wyvern_pipeline::{Action, FloodGroup, Match, Stage};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Real captures: a ping, an ARP request, a dhclient DISCOVER (see wire.rs and
/// controller/apps/tests).
fn fixtures() -> Vec<Vec<u8>> {
    vec![
        hex(concat!(
            "fa163e000001020000aabb010800",
            "4500002cbb22400040016ba90a0000050a000001",
            "0800de017262000189ca0a6b000000000e65050000000000"
        )),
        hex(concat!(
            "ffffffffffff020000aabb010806",
            "0001080006040001020000aabb010a000005000000000000",
            "0a000001"
        )),
        hex(concat!(
            "ffffffffffff020000aabb01080045100148000000008011399600000000ffffffff0044004301343e0a",
            "010106003230857d0000000000000000000000000000000000000000020000aabb010000000000000000",
        )),
    ]
}

/// A small pipeline that touches every action kind, so mutated frames reach the rewriters.
fn engine() -> Engine {
    let rmac = MacAddr([0xfa, 0x16, 0x3e, 0, 0, 1]);
    let vm = MacAddr([2, 0, 0, 0xaa, 0xbb, 1]);
    let flows = vec![
        Flow::new(Stage::Classify, 100, Owner::Static)
            .m(Match::PhysInPort(1))
            .a(Action::SetInPort(PortKey(1)))
            .a(Action::SetNetwork(NetKey(1)))
            .a(Action::Goto(Stage::PortSecurity)),
        Flow::new(Stage::PortSecurity, 50, Owner::Static)
            .m(Match::InPort(PortKey(1)))
            .a(Action::Goto(Stage::Dispatch)),
        Flow::new(Stage::Dispatch, 100, Owner::Static)
            .m(Match::EthType(0x0806))
            .m(Match::ArpOp(1))
            .a(Action::Goto(Stage::ArpResponder)),
        Flow::new(Stage::ArpResponder, 100, Owner::Static)
            .m(Match::Network(NetKey(1)))
            .m(Match::EthType(0x0806))
            .m(Match::ArpOp(1))
            .m(Match::ArpTpa("10.0.0.1".parse().unwrap()))
            .a(Action::ArpReply { mac: rmac }),
        Flow::new(Stage::L2Lookup, 50, Owner::Static)
            .m(Match::Network(NetKey(1)))
            .m(Match::EthDstMulticast)
            .a(Action::Flood(NetKey(1))),
        Flow::new(Stage::L2Lookup, 100, Owner::Static)
            .m(Match::Network(NetKey(1)))
            .m(Match::EthDst(rmac))
            .a(Action::SetRouter(RouterKey(1)))
            .a(Action::Goto(Stage::L3Lookup)),
        Flow::new(Stage::L3Lookup, 100, Owner::Static)
            .m(Match::Router(RouterKey(1)))
            .m(Match::EthType(0x0800))
            .m(Match::Ipv4Dst("0.0.0.0/0".parse().unwrap()))
            .a(Action::DecTtl)
            .a(Action::SetEthSrc(rmac))
            .a(Action::SetEthDst(vm))
            .a(Action::SetOutPort(PortKey(2)))
            .a(Action::Goto(Stage::Egress)),
        Flow::new(Stage::Egress, 100, Owner::Static)
            .m(Match::OutPort(PortKey(2)))
            .a(Action::Output(2)),
    ];
    let groups = vec![FloodGroup {
        network: NetKey(1),
        ports: vec![1, 2, 3],
        owner: Owner::Static,
    }];
    Engine::from_ir(&flows, &groups).unwrap()
}

#[test]
fn random_truncated_and_mutated_frames_never_panic() {
    let mut rng = StdRng::seed_from_u64(42);
    let mut e = engine();
    let fx = fixtures();
    let mut outcomes = [0usize; 4];
    let meta = Meta {
        in_port: 1,
        tun_id: None,
    };
    for i in 0..20_000 {
        let mut f: Vec<u8> = match i % 4 {
            0 => (0..rng.random_range(0..120))
                .map(|_| rng.random())
                .collect(),
            1 => {
                let src = &fx[rng.random_range(0..fx.len())];
                src[..rng.random_range(0..=src.len())].to_vec()
            }
            _ => {
                let mut f = fx[rng.random_range(0..fx.len())].clone();
                for _ in 0..rng.random_range(1..6) {
                    let at = rng.random_range(0..f.len());
                    f[at] = rng.random();
                }
                let keep = rng.random_range(0..=f.len());
                f.truncate(keep);
                f
            }
        };
        let parsed = Headers::parse(&f);
        assert_eq!(
            parsed.is_err(),
            f.len() < 14,
            "only a short frame is an error"
        );
        let _ = decode(&f, meta);
        let v = e.process(&mut f, 1);
        outcomes[match v {
            Verdict::Output(_) => 0,
            Verdict::Punt { .. } => 1,
            Verdict::Drop {
                cause: DropCause::Malformed,
                ..
            } => 2,
            Verdict::Drop { .. } => 3,
        }] += 1;
    }
    // Mutations of real frames still get through the pipeline often enough to exercise
    // the rewriters on odd input.
    assert!(outcomes[0] > 1000, "{outcomes:?}");
    assert!(outcomes[2] > 100, "{outcomes:?}");
}
