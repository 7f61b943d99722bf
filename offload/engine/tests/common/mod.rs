//! Tables shared by the engine's integration tests.

use wyvern_engine::{Engine, Entry, FieldMatch};
use wyvern_model::MacAddr;
use wyvern_pipeline::ir::{NetKey, PortKey, RouterKey};
use wyvern_pipeline::{Action, FieldKind as F, Stage};

pub const RMAC: MacAddr = MacAddr([0xfa, 0x16, 0x3e, 0, 0, 1]);
pub const VM1: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);

/// Port 1 (key 1) on network 1, routed by router 1 towards egress ports 2..=4; routes are
/// added by each test.
pub fn base(e: &mut Engine) {
    e.insert(
        Stage::Classify,
        Entry::new(
            100,
            vec![FieldMatch::exact(F::PhysInPort, 1)],
            vec![
                Action::SetInPort(PortKey(1)),
                Action::SetNetwork(NetKey(1)),
                Action::Goto(Stage::L2Lookup),
            ],
        ),
    )
    .unwrap();
    e.insert(
        Stage::L2Lookup,
        Entry::new(
            100,
            vec![
                FieldMatch::exact(F::Network, 1),
                FieldMatch::exact(F::EthDst, wyvern_engine::key::mac_u64(RMAC)),
            ],
            vec![
                Action::SetRouter(RouterKey(1)),
                Action::Goto(Stage::L3Lookup),
            ],
        ),
    )
    .unwrap();
    for port in 2..=4u32 {
        e.insert(
            Stage::Egress,
            Entry::new(
                100,
                vec![FieldMatch::exact(F::OutPort, port.into())],
                vec![Action::Output(port)],
            ),
        )
        .unwrap();
    }
}
