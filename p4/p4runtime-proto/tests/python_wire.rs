//! Wire compatibility with the official P4Runtime Python bindings (PyPI `p4runtime`, in a
//! venv under the cargo target dir): our .proto files have the official descriptors, Python
//! decodes what Rust encodes and Rust decodes what Python encodes, and our text-format
//! reader reads wyvern.p4info.txtpb exactly as protobuf's own text parser does.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use p4runtime_proto::google::rpc::Status;
use p4runtime_proto::p4::config::v1::{match_field, P4Info};
use p4runtime_proto::p4::v1::{
    self as p4v1, entity, field_match, packet_replication_engine_entry, stream_message_request,
    stream_message_response, table_action, update, write_request, FieldMatch,
};
use prost::Message;
use serde_json::{json, Value};

/// The pinned package: 1.6.0 carries the P4Runtime 1.4 protos our files follow.
const P4RUNTIME_PYPI: &str = "p4runtime==1.6.0";

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's python, created (once per test run; reused across runs) under the target dir.
fn python() -> &'static Path {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| match setup_venv() {
        Ok(p) => p,
        Err(e) => panic!("failed to set up the Python p4runtime venv: {e:#}"),
    })
}

fn setup_venv() -> Result<PathBuf> {
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("p4runtime-venv");
    let py = venv.join("bin/python");
    if py.exists() && peer_imports(&py) {
        return Ok(py);
    }
    let _ = std::fs::remove_dir_all(&venv);
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv))
        .context("python3 -m venv (is python3-venv installed?)")?;
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        P4RUNTIME_PYPI,
    ]))
    .with_context(|| format!("pip install {P4RUNTIME_PYPI} (needs PyPI access)"))?;
    if !peer_imports(&py) {
        bail!("{P4RUNTIME_PYPI} installed but `import p4.v1.p4runtime_pb2` fails");
    }
    Ok(py)
}

fn peer_imports(py: &Path) -> bool {
    Command::new(py)
        .env("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")
        .args([
            "-c",
            "import p4.v1.p4runtime_pb2, p4.config.v1.p4info_pb2, google.rpc.status_pb2",
        ])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("failed to start {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// Runs tests/py/p4rt_peer.py with the official bindings.
fn peer(args: &[&str]) -> Result<String> {
    run(Command::new(python())
        .env("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")
        .arg(manifest_dir().join("tests/py/p4rt_peer.py"))
        .args(args))
}

/// A unique scratch file, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn with(name: &str, bytes: &[u8]) -> Self {
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&path, bytes).expect("write scratch file");
        TempFile(path)
    }
    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Python's view of a Rust-encoded message: its JSON, and its re-serialization decoded by us.
fn python_decodes<M: Message + Default + PartialEq + std::fmt::Debug>(
    type_name: &str,
    msg: &M,
) -> Value {
    let f = TempFile::with(type_name, &msg.encode_to_vec());
    let out = peer(&["decode", type_name, f.path()]).expect("python decodes");
    let mut lines = out.lines();
    let json: Value = serde_json::from_str(lines.next().expect("json line")).expect("json");
    let hex = lines.next().expect("hex line");
    let back = M::decode(unhex(hex).as_slice()).expect("decode python's encoding");
    assert_eq!(
        &back, msg,
        "{type_name} does not survive Rust -> Python -> Rust"
    );
    json
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.trim().len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s.trim()[i..i + 2], 16).expect("hex"))
        .collect()
}

fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

fn fm(field_id: u32, m: field_match::FieldMatchType) -> FieldMatch {
    FieldMatch {
        field_id,
        field_match_type: Some(m),
    }
}

#[test]
fn our_protos_have_the_official_descriptors() {
    let set = TempFile::with("descriptors", p4runtime_proto::FILE_DESCRIPTOR_SET);
    let out = peer(&["descriptors", set.path()]).expect("compare descriptors");
    assert_eq!(
        out.trim(),
        "SAME",
        "our .proto files differ from the official ones:\n{out}"
    );
}

#[test]
fn python_decodes_a_rust_write_request() {
    use field_match::FieldMatchType as F;
    let entry = p4v1::TableEntry {
        table_id: 0x0200_0001,
        r#match: vec![
            fm(
                1,
                F::Exact(field_match::Exact {
                    value: vec![0x00, 0x2a],
                }),
            ),
            fm(
                2,
                F::Lpm(field_match::Lpm {
                    value: vec![10, 0, 1, 0],
                    prefix_len: 24,
                }),
            ),
            fm(
                3,
                F::Ternary(field_match::Ternary {
                    value: vec![1, 0, 0, 0, 0, 0],
                    mask: vec![1, 0, 0, 0, 0, 0],
                }),
            ),
            fm(4, F::Optional(field_match::Optional { value: vec![7] })),
            fm(
                5,
                F::Range(field_match::Range {
                    low: vec![1],
                    high: vec![9],
                }),
            ),
        ],
        action: Some(p4v1::TableAction {
            r#type: Some(table_action::Type::Action(p4v1::Action {
                action_id: 0x0100_0003,
                params: vec![
                    p4v1::action::Param {
                        param_id: 1,
                        value: vec![0xfa, 0x16, 0x3e, 0, 0, 1],
                    },
                    p4v1::action::Param {
                        param_id: 2,
                        value: vec![0x05],
                    },
                ],
            })),
        }),
        priority: 132,
        metadata: b"owner".to_vec(),
        ..Default::default()
    };
    let req = p4v1::WriteRequest {
        device_id: 1,
        role: "wyvern".into(),
        election_id: Some(p4v1::Uint128 { high: 1, low: 2 }),
        updates: vec![
            p4v1::Update {
                r#type: update::Type::Insert as i32,
                entity: Some(p4v1::Entity {
                    entity: Some(entity::Entity::TableEntry(entry)),
                }),
            },
            p4v1::Update {
                r#type: update::Type::Modify as i32,
                entity: Some(p4v1::Entity {
                    entity: Some(entity::Entity::PacketReplicationEngineEntry(
                        p4v1::PacketReplicationEngineEntry {
                            r#type: Some(
                                packet_replication_engine_entry::Type::MulticastGroupEntry(
                                    p4v1::MulticastGroupEntry {
                                        multicast_group_id: 3,
                                        replicas: vec![p4v1::Replica {
                                            port_kind: Some(p4v1::replica::PortKind::Port(vec![2])),
                                            instance: 1,
                                            ..Default::default()
                                        }],
                                        ..Default::default()
                                    },
                                ),
                            ),
                        },
                    )),
                }),
            },
        ],
        atomicity: write_request::Atomicity::RollbackOnError as i32,
        ..Default::default()
    };
    let got = python_decodes("WriteRequest", &req);
    let want = json!({
        "device_id": "1",
        "role": "wyvern",
        "election_id": {"high": "1", "low": "2"},
        "atomicity": "ROLLBACK_ON_ERROR",
        "updates": [
            {"type": "INSERT", "entity": {"table_entry": {
                "table_id": 0x0200_0001,
                "match": [
                    {"field_id": 1, "exact": {"value": b64(&[0, 42])}},
                    {"field_id": 2, "lpm": {"value": b64(&[10, 0, 1, 0]), "prefix_len": 24}},
                    {"field_id": 3, "ternary": {"value": b64(&[1, 0, 0, 0, 0, 0]), "mask": b64(&[1, 0, 0, 0, 0, 0])}},
                    {"field_id": 4, "optional": {"value": b64(&[7])}},
                    {"field_id": 5, "range": {"low": b64(&[1]), "high": b64(&[9])}},
                ],
                "action": {"action": {"action_id": 0x0100_0003, "params": [
                    {"param_id": 1, "value": b64(&[0xfa, 0x16, 0x3e, 0, 0, 1])},
                    {"param_id": 2, "value": b64(&[5])},
                ]}},
                "priority": 132,
                "metadata": b64(b"owner"),
            }}},
            {"type": "MODIFY", "entity": {"packet_replication_engine_entry": {"multicast_group_entry": {
                "multicast_group_id": 3,
                "replicas": [{"port": b64(&[2]), "instance": 1}],
            }}}},
        ],
    });
    assert_eq!(got, want);
}

#[test]
fn python_decodes_rust_stream_requests() {
    let arb = p4v1::StreamMessageRequest {
        update: Some(stream_message_request::Update::Arbitration(
            p4v1::MasterArbitrationUpdate {
                device_id: 7,
                role: Some(p4v1::Role {
                    name: "wyvern".into(),
                    ..Default::default()
                }),
                election_id: Some(p4v1::Uint128 { high: 0, low: 42 }),
                status: None,
            },
        )),
    };
    assert_eq!(
        python_decodes("StreamMessageRequest", &arb),
        json!({"arbitration": {"device_id": "7", "role": {"name": "wyvern"}, "election_id": {"low": "42"}}})
    );
    let frame = vec![
        0xffu8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfa, 0x16, 0x3e, 0, 0, 1, 0x08, 0x00,
    ];
    let out = p4v1::StreamMessageRequest {
        update: Some(stream_message_request::Update::Packet(p4v1::PacketOut {
            payload: frame.clone(),
            metadata: vec![
                p4v1::PacketMetadata {
                    metadata_id: 1,
                    value: vec![0, 3],
                },
                p4v1::PacketMetadata {
                    metadata_id: 3,
                    value: vec![1],
                },
            ],
        })),
    };
    assert_eq!(
        python_decodes("StreamMessageRequest", &out),
        json!({"packet": {"payload": b64(&frame), "metadata": [
            {"metadata_id": 1, "value": b64(&[0, 3])},
            {"metadata_id": 3, "value": b64(&[1])},
        ]}})
    );
}

fn samples() -> serde_json::Map<String, Value> {
    let out = peer(&["samples"]).expect("python samples");
    match serde_json::from_str(&out).expect("samples json") {
        Value::Object(m) => m,
        other => panic!("samples: {other}"),
    }
}

fn sample(s: &serde_json::Map<String, Value>, name: &str) -> Vec<u8> {
    unhex(s[name].as_str().expect("hex string"))
}

#[test]
fn rust_decodes_python_read_and_stream_responses() {
    use field_match::FieldMatchType as F;
    let s = samples();

    let rr =
        p4v1::ReadResponse::decode(sample(&s, "ReadResponse").as_slice()).expect("ReadResponse");
    assert_eq!(rr.entities.len(), 3);
    let Some(entity::Entity::TableEntry(te)) = &rr.entities[0].entity else {
        panic!("first entity is not a table entry: {:?}", rr.entities[0]);
    };
    assert_eq!(
        (te.table_id, te.priority, te.is_const),
        (0x0200_0001, 100, true)
    );
    assert_eq!(te.metadata, [0xca, 0xfe]);
    let kinds: Vec<_> = te
        .r#match
        .iter()
        .map(|m| (m.field_id, m.field_match_type.clone()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (1, Some(F::Exact(field_match::Exact { value: vec![0, 42] }))),
            (
                2,
                Some(F::Ternary(field_match::Ternary {
                    value: vec![1, 0, 0, 0, 0, 0],
                    mask: vec![1, 0, 0, 0, 0, 0]
                }))
            ),
            (
                3,
                Some(F::Lpm(field_match::Lpm {
                    value: vec![10, 0, 1, 0],
                    prefix_len: 24
                }))
            ),
            (
                4,
                Some(F::Range(field_match::Range {
                    low: vec![0x10],
                    high: vec![0x20]
                }))
            ),
            (
                5,
                Some(F::Optional(field_match::Optional { value: vec![7] }))
            ),
        ]
    );
    let Some(table_action::Type::Action(a)) = te.action.as_ref().and_then(|a| a.r#type.clone())
    else {
        panic!("no direct action");
    };
    assert_eq!(a.action_id, 0x0100_0002);
    assert_eq!(a.params[0].value, [0xfa, 0x16, 0x3e, 0, 0, 1]);
    assert_eq!(
        a.params[1],
        p4v1::action::Param {
            param_id: 2,
            value: vec![5]
        }
    );
    assert_eq!(
        te.counter_data,
        Some(p4v1::CounterData {
            byte_count: 1500,
            packet_count: 3
        })
    );
    let Some(entity::Entity::DirectCounterEntry(dc)) = &rr.entities[1].entity else {
        panic!("second entity is not a direct counter");
    };
    assert_eq!(dc.data.as_ref().map(|d| d.packet_count), Some(9));
    let Some(entity::Entity::PacketReplicationEngineEntry(pre)) = &rr.entities[2].entity else {
        panic!("third entity is not a PRE entry");
    };
    let Some(packet_replication_engine_entry::Type::MulticastGroupEntry(mg)) = &pre.r#type else {
        panic!("not a multicast group");
    };
    assert_eq!(mg.multicast_group_id, 7);
    assert_eq!(
        mg.replicas[0].port_kind,
        Some(p4v1::replica::PortKind::Port(vec![2]))
    );

    let pin =
        p4v1::StreamMessageResponse::decode(sample(&s, "StreamMessageResponse.packet").as_slice())
            .expect("StreamMessageResponse");
    let Some(stream_message_response::Update::Packet(p)) = pin.update else {
        panic!("not a packet-in");
    };
    assert_eq!(p.payload, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 1]);
    let md: Vec<(u32, Vec<u8>)> = p
        .metadata
        .iter()
        .map(|m| (m.metadata_id, m.value.clone()))
        .collect();
    assert_eq!(
        md,
        vec![
            (1, vec![0, 3]),
            (2, vec![1]),
            (3, vec![0, 5]),
            (4, vec![0, 0, 2]),
            (5, vec![0, 0])
        ]
    );

    let arb = p4v1::StreamMessageResponse::decode(
        sample(&s, "StreamMessageResponse.arbitration").as_slice(),
    )
    .expect("arbitration");
    let Some(stream_message_response::Update::Arbitration(a)) = arb.update else {
        panic!("not an arbitration update");
    };
    assert_eq!(a.device_id, 1);
    assert_eq!(a.election_id, Some(p4v1::Uint128 { high: 0, low: 10 }));
    assert_eq!(a.role.map(|r| r.name).as_deref(), Some("wyvern"));
    let st = a.status.expect("status");
    assert_eq!(
        st.code,
        p4runtime_proto::google::rpc::Code::AlreadyExists as i32
    );
    assert_eq!(st.message, "not primary");

    // Write errors: one p4.v1.Error per update, packed in Status.details.
    let st = Status::decode(sample(&s, "Status").as_slice()).expect("Status");
    assert_eq!(st.details.len(), 2);
    assert_eq!(st.details[0].type_url, "type.googleapis.com/p4.v1.Error");
    let e = p4v1::Error::decode(st.details[0].value.as_slice()).expect("Error");
    assert_eq!(
        e.canonical_code,
        p4runtime_proto::google::rpc::Code::AlreadyExists as i32
    );
    assert_eq!(e.message, "entry exists");
}

#[test]
fn rust_decodes_a_python_p4info() {
    let s = samples();
    let info = P4Info::decode(sample(&s, "P4Info").as_slice()).expect("P4Info");
    assert_eq!(
        info.pkg_info.as_ref().map(|p| p.arch.as_str()),
        Some("v1model")
    );
    let t = &info.tables[0];
    assert_eq!(
        t.preamble.as_ref().map(|p| p.name.as_str()),
        Some("MyIngress.l2_lookup")
    );
    assert_eq!(t.match_fields[1].name, "hdr.ethernet.dstAddr");
    assert_eq!(t.match_fields[1].bitwidth, 48);
    assert_eq!(
        t.match_fields[1].r#match,
        Some(match_field::Match::MatchType(
            match_field::MatchType::Ternary as i32
        ))
    );
    assert_eq!(
        t.action_refs[1].scope,
        p4runtime_proto::p4::config::v1::action_ref::Scope::DefaultOnly as i32
    );
    assert_eq!((t.const_default_action_id, t.size), (0x0100_0002, 65536));
    assert_eq!(t.direct_resource_ids, [0x1300_0001]);
    assert_eq!(info.actions[0].params[0].name, "outport");
    assert_eq!(info.direct_counters[0].direct_table_id, 0x0200_0001);
    assert_eq!(info.controller_packet_metadata[0].metadata[0].bitwidth, 16);
    let errors = info
        .type_info
        .and_then(|t| t.error)
        .expect("type_info.error");
    assert_eq!(errors.members, ["NoError", "PacketTooShort"]);
}

#[test]
fn our_text_reader_reads_wyvern_p4info_like_protobuf_does() {
    let path = manifest_dir().join("../wyvern.p4info.txtpb");
    let text = std::fs::read_to_string(&path).expect("read P4Info");
    let ours = p4runtime_proto::parse_p4info(&text).expect("our reader");
    let hex =
        peer(&["p4info-text", path.to_str().expect("utf-8 path")]).expect("protobuf text_format");
    let theirs = P4Info::decode(unhex(&hex).as_slice()).expect("decode");
    assert_eq!(ours, theirs);
    assert_eq!(ours.tables.len(), 8);
}
