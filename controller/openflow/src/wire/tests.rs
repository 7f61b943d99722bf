//! Fixtures (byte-exact messages as OVS 3.1 sends and accepts them), round trips, and a
//! no-panic sweep over random and mutated input.

use super::*;
use crate::PortNo;

fn parse(bytes: &[u8]) -> Result<Message> {
    Message::parse(&Frame::new_checked(bytes)?)
}

/// HELLO from ovs-vswitchd with `protocols=OpenFlow13,OpenFlow15`: bitmap bits 4 and 6.
const OVS_HELLO: [u8; 16] = [
    0x04, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x01, // header
    0x00, 0x01, 0x00, 0x08, 0x00, 0x00, 0x00, 0x50, // versionbitmap element
];

/// FEATURES_REPLY: dpid 0x0000_5254_0012_3456, 0 buffers, 254 tables, caps 0x4f.
const OVS_FEATURES_REPLY: [u8; 32] = [
    0x04, 0x06, 0x00, 0x20, 0x00, 0x00, 0x00, 0x02, //
    0x00, 0x00, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // datapath_id
    0x00, 0x00, 0x00, 0x00, 0xfe, 0x00, 0x00, 0x00, // n_buffers, n_tables, aux, pad
    0x00, 0x00, 0x00, 0x4f, 0x00, 0x00, 0x00, 0x00, // capabilities, reserved
];

/// `ovs-ofctl -O OpenFlow13 add-flow br 'table=1,priority=7,reg0=5,actions=goto_table:2'`
/// as ovs-ofctl encodes it.
const FLOW_MOD_REG0_GOTO: [u8; 72] = [
    0x04, 0x0e, 0x00, 0x48, 0x00, 0x00, 0x00, 0x09, // header
    0, 0, 0, 0, 0, 0, 0, 0, // cookie
    0, 0, 0, 0, 0, 0, 0, 0, // cookie_mask
    0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, // table, ADD, idle, hard, priority
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // buffer_id, out_port
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, // out_group, flags, pad
    0x00, 0x01, 0x00, 0x0c, 0x00, 0x01, 0x00, 0x04, // ofp_match OXM len 12, NXM_NX_REG0
    0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, // value 5, pad
    0x00, 0x01, 0x00, 0x08, 0x02, 0x00, 0x00, 0x00, // goto_table 2
];

/// NXT_PACKET_IN2 with a packet, table 3, cookie 0x1234, reason ACTION, reg3=0x2a, userdata.
const NX_PACKET_IN2: [u8; 96] = [
    0x04, 0x04, 0x00, 0x60, 0x00, 0x00, 0x00, 0x00, // header (len 96)
    0x00, 0x00, 0x23, 0x20, 0x00, 0x00, 0x00, 0x1e, // NX, NXT_PACKET_IN2
    0x00, 0x00, 0x00, 0x12, 1, 2, 3, 4, // NXPINT_PACKET len 18
    5, 6, 7, 8, 9, 10, 11, 12, //
    13, 14, 0, 0, 0, 0, 0, 0, // end of packet + pad
    0x00, 0x03, 0x00, 0x05, 0x03, 0, 0, 0, // table_id 3
    0x00, 0x04, 0x00, 0x10, 0, 0, 0, 0, // cookie (4 pad)
    0, 0, 0, 0, 0, 0, 0x12, 0x34, //
    0x00, 0x05, 0x00, 0x05, 0x01, 0, 0, 0, // reason ACTION
    0x00, 0x06, 0x00, 0x0c, 0x00, 0x01, 0x06, 0x04, // metadata: NXM_NX_REG3
    0x00, 0x00, 0x00, 0x2a, 0, 0, 0, 0, //
    0x00, 0x07, 0x00, 0x08, 0xde, 0xad, 0xbe, 0xef, // userdata
];

#[test]
fn hello_fixture_offers_1_3_and_1_5() {
    assert_eq!(
        parse(&OVS_HELLO).unwrap(),
        Message::Hello {
            versions: vec![4, 6]
        }
    );
}

#[test]
fn features_reply_fixture() {
    let Message::FeaturesReply(f) = parse(&OVS_FEATURES_REPLY).unwrap() else {
        panic!()
    };
    assert_eq!(f.datapath_id, 0x5254_0012_3456);
    assert_eq!(f.n_tables, 254);
    assert_eq!(Message::FeaturesReply(f).to_bytes(2), OVS_FEATURES_REPLY);
}

#[test]
fn flow_mod_fixture_round_trips_byte_exact() {
    let msg = parse(&FLOW_MOD_REG0_GOTO).unwrap();
    let Message::FlowMod(fm) = &msg else { panic!() };
    assert_eq!(fm.table_id, 1);
    assert_eq!(fm.priority, 7);
    assert_eq!(fm.match_, Match::new().reg(0, 5));
    assert_eq!(fm.instructions, Instructions::goto(2));
    assert_eq!(msg.to_bytes(9), FLOW_MOD_REG0_GOTO);
}

#[test]
fn packet_in2_fixture() {
    let Message::PacketIn(p) = parse(&NX_PACKET_IN2).unwrap() else {
        panic!()
    };
    assert_eq!(p.data, (1..=14).collect::<Vec<u8>>());
    assert_eq!((p.table_id, p.cookie, p.reason), (3, 0x1234, 1));
    assert_eq!(p.match_.get(Field::Reg(3)), Some((0x2a, None)));
    assert_eq!(p.userdata.as_deref(), Some(&[0xde, 0xad, 0xbe, 0xef][..]));
    let again = parse(&Message::PacketIn(p.clone()).to_bytes(0)).unwrap();
    assert_eq!(again, Message::PacketIn(p));
}

/// A message of every kind we emit, for round trips and as fuzz seeds.
pub(crate) fn samples() -> Vec<Message> {
    let m = Match::new()
        .in_port(3)
        .reg_masked(2, 0x10, 0xf0)
        .tun_id(7)
        .eth_dst(MacAddr([2, 0, 0, 0, 0, 1]))
        .eth_type(0x0806)
        .arp_op(1)
        .arp_tpa("10.0.0.1".parse().unwrap());
    let actions = vec![
        Action::RegMove {
            src: FieldRange::full(Field::EthSrc),
            dst: FieldRange::full(Field::EthDst),
        },
        Action::SetField {
            field: Field::ArpOp,
            value: 2,
        },
        Action::Load {
            dst: FieldRange {
                field: Field::Reg(1),
                ofs: 4,
                n_bits: 8,
            },
            value: 3,
        },
        Action::Resubmit {
            in_port: None,
            table: Some(4),
        },
        Action::controller_with_userdata(vec![9, 8, 7]),
        Action::Controller(ControllerAction {
            controller_id: 2,
            ..Default::default()
        }),
        Action::DecNwTtl,
        Action::Group(5),
        Action::output(PortNo::IN_PORT),
    ];
    let mut fm = FlowMod::new(FlowModCommand::Add, 2, 100, m.clone());
    fm.cookie = 0xabc;
    fm.instructions = Instructions::apply(actions.clone())
        .with_write_metadata(1, 0xff)
        .with_goto(3);
    vec![
        Message::Hello { versions: vec![4] },
        Message::EchoRequest(vec![1, 2, 3]),
        Message::FeaturesRequest,
        Message::FlowMod(fm.clone()),
        Message::GroupMod(GroupMod {
            command: GroupModCommand::Add,
            group_type: GroupType::All,
            group_id: 9,
            buckets: vec![Bucket::all(vec![Action::output(PortNo(1))])],
        }),
        Message::PacketOut(PacketOut {
            buffer_id: OFP_NO_BUFFER,
            in_port: PortNo::CONTROLLER,
            actions: vec![Action::output(PortNo(4))],
            data: vec![0xff; 60],
        }),
        Message::MultipartRequest(MultipartRequest {
            flags: 0,
            body: MultipartRequestBody::Flow(FlowStatsRequest::all()),
        }),
        Message::MultipartReply(MultipartReply {
            flags: OFPMPF_MORE,
            body: MultipartReplyBody::Flow(vec![FlowStats {
                table_id: 2,
                duration_sec: 1,
                duration_nsec: 2,
                priority: 100,
                idle_timeout: 0,
                hard_timeout: 0,
                flags: 1,
                cookie: 0xabc,
                packet_count: 5,
                byte_count: 500,
                match_: m.clone(),
                instructions: fm.instructions.clone(),
            }]),
        }),
        Message::BarrierRequest,
        Message::BundleControl(BundleControl {
            bundle_id: 1,
            ctrl_type: bundle::OPEN_REQUEST,
            flags: 3,
        }),
        Message::BundleAdd(BundleAdd {
            bundle_id: 1,
            flags: 3,
            message: Box::new(Message::FlowMod(fm)),
        }),
        Message::Error(ErrorMsg {
            err_type: 0xffff,
            code: 2300,
            experimenter: Some(ONF_EXPERIMENTER_ID),
            data: FLOW_MOD_REG0_GOTO.to_vec(),
        }),
        Message::SetPacketInFormat(2),
    ]
}

#[test]
fn every_sample_round_trips() {
    for (i, m) in samples().into_iter().enumerate() {
        let bytes = m.to_bytes(77);
        let again = parse(&bytes).unwrap_or_else(|e| panic!("sample {i}: {e}"));
        // Decoding yields canonical actions; compare after canonicalising the input.
        let bytes2 = again.to_bytes(77);
        assert_eq!(bytes, bytes2, "sample {i} re-encodes differently");
    }
}

#[test]
fn error_carries_the_failed_flow_mod() {
    let e = ErrorMsg {
        err_type: 2,
        code: 4,
        experimenter: None,
        data: FLOW_MOD_REG0_GOTO.to_vec(),
    };
    assert!(matches!(e.failed_request(), Some(Message::FlowMod(fm)) if fm.priority == 7));
}

#[test]
fn malformed_input_is_a_typed_error() {
    assert!(matches!(
        Frame::new_checked(&[4, 0, 0, 4, 0, 0, 0, 0]),
        Err(Error::BadLength { .. })
    ));
    let mut truncated = FLOW_MOD_REG0_GOTO.to_vec();
    truncated.truncate(60);
    truncated[3] = 60;
    assert!(matches!(
        parse(&truncated),
        Err(Error::Truncated { .. } | Error::BadLength { .. })
    ));
    // An unknown message type is not an error.
    assert!(matches!(
        parse(&[4, 99, 0, 8, 0, 0, 0, 0]),
        Ok(Message::Unknown { msg_type: 99, .. })
    ));
}

/// Random and mutated inputs never panic (a stand-in for long fuzzing runs).
#[test]
fn random_and_mutated_input_never_panics() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let corpus: Vec<Vec<u8>> = samples()
        .iter()
        .map(|m| m.to_bytes(1))
        .chain([
            OVS_HELLO.to_vec(),
            FLOW_MOD_REG0_GOTO.to_vec(),
            NX_PACKET_IN2.to_vec(),
        ])
        .collect();
    for i in 0..20_000 {
        let mut buf = if i % 4 == 0 {
            let len = (rnd() % 200) as usize;
            (0..len).map(|_| rnd() as u8).collect()
        } else {
            corpus[(rnd() as usize) % corpus.len()].clone()
        };
        for _ in 0..(rnd() % 4 + 1) {
            if buf.is_empty() {
                break;
            }
            let at = (rnd() as usize) % buf.len();
            match rnd() % 3 {
                0 => buf[at] = rnd() as u8,
                1 => buf.truncate(at.max(1)),
                _ => buf.insert(at, rnd() as u8),
            }
        }
        // Keep the header length consistent half the time so bodies get exercised.
        if i % 2 == 0 && buf.len() >= 8 && buf.len() < 65536 {
            let l = (buf.len() as u16).to_be_bytes();
            buf[2] = l[0];
            buf[3] = l[1];
        }
        if let Ok(f) = Frame::new_checked(&buf) {
            if let Ok(m) = Message::parse(&f) {
                let _ = m.to_bytes(f.xid());
            }
        }
    }
}

/// Regenerates the fuzz seed corpus: `WRITE_FUZZ_CORPUS=1 cargo test -p wyvern-openflow seeds`.
#[test]
fn seeds_for_fuzz_corpus() {
    let Ok(_) = std::env::var("WRITE_FUZZ_CORPUS") else {
        return;
    };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode");
    std::fs::create_dir_all(&dir).unwrap();
    let mut all: Vec<Vec<u8>> = samples().iter().map(|m| m.to_bytes(1)).collect();
    all.extend([
        OVS_HELLO.to_vec(),
        OVS_FEATURES_REPLY.to_vec(),
        FLOW_MOD_REG0_GOTO.to_vec(),
        NX_PACKET_IN2.to_vec(),
    ]);
    for (i, b) in all.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:02}")), b).unwrap();
    }
}
