//! The third-party `p4runtime-shell` (PyPI, in a venv under the target dir) connects to the
//! real wyvern-p4d as a backup controller (lower election id), takes the P4Info from the
//! target, and reads back by name every entry the P4Runtime back end wrote; its write is
//! refused with PERMISSION_DENIED.

#[path = "../../p4rt/tests/common/mod.rs"]
mod common;
mod harness;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use harness::P4d;
use p4runtime_proto::p4::v1::{self as p4, field_match, table_action};
use wyvern_offload_p4rt::{Mastership, P4InfoIndex, P4rtBackend, P4rtConfig};
use wyvern_pipeline::L3Mode;
use wyvern_testkit::venv::Venv;

const SHELL: &str = "p4runtime-shell==0.0.6";

fn hex(b: &[u8]) -> String {
    let mut s = String::from("0x");
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// An entry by names, in the peer script's format.
fn by_name(ix: &P4InfoIndex, e: &p4::TableEntry) -> (String, String) {
    let t = ix.table_by_id(e.table_id).expect("known table");
    let mut m = BTreeMap::new();
    for f in &e.r#match {
        let name = t.field_by_id(f.field_id).expect("known field").name.clone();
        let v = match &f.field_match_type {
            Some(field_match::FieldMatchType::Exact(x)) => hex(&x.value),
            Some(field_match::FieldMatchType::Ternary(x)) => {
                format!("{}&&&{}", hex(&x.value), hex(&x.mask))
            }
            Some(field_match::FieldMatchType::Lpm(x)) => {
                format!("{}/{}", hex(&x.value), x.prefix_len)
            }
            other => panic!("unexpected match {other:?}"),
        };
        m.insert(name, v);
    }
    let Some(p4::TableAction {
        r#type: Some(table_action::Type::Action(a)),
    }) = &e.action
    else {
        panic!("direct action expected")
    };
    let ai = ix.action_by_id(a.action_id).expect("known action");
    let params: BTreeMap<String, String> = a
        .params
        .iter()
        .map(|p| {
            let n = ai
                .params
                .iter()
                .find(|q| q.id == p.param_id)
                .expect("param");
            (n.name.clone(), hex(&p.value))
        })
        .collect();
    (
        t.name.clone(),
        format!("{m:?} prio={} {}{params:?}", e.priority, ai.name),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p4runtime_shell_reads_entries_by_name_as_a_backup() {
    let venv = Venv::ensure(
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        "p4runtime-shell",
        &[SHELL],
    )
    .expect("p4runtime-shell venv");
    let p4d = P4d::start(&[]).expect("wyvern-p4d");
    let (flows, groups) = common::compiled(L3Mode::Proactive);
    let mut cfg = P4rtConfig::new(1, 10, common::p4info(), b"{}".to_vec());
    cfg.batch_size = 100;
    let (mut b, _rx) = P4rtBackend::connect(&p4d.url(), cfg)
        .await
        .expect("connect");
    assert_eq!(
        b.wait_for_mastership(Duration::from_secs(10))
            .await
            .expect("arbitration"),
        Mastership::Primary
    );
    b.ensure_pipeline().await.expect("pipeline");
    assert!(b.set_desired(&flows, &groups).is_empty());
    let r = b.sync().await.expect("sync");
    assert!(r.failures.is_empty(), "{:?}", r.failures);

    let ix = b.mapper().index().clone();
    let mut want: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in &flows {
        let (t, e) = by_name(&ix, &b.mapper().table_entry(f).expect("maps"));
        want.entry(t).or_default().push(e);
    }

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/shell_peer.py");
    let addr = p4d.addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(venv.python())
            .arg(script)
            .args([addr.as_str(), "1"])
            .output()
    })
    .await
    .expect("join")
    .expect("run the peer");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "peer failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("not the primary"),
        "the shell saw itself as a backup: {stdout}"
    );
    let line = stdout.lines().last().expect("a JSON line");
    let v: serde_json::Value = serde_json::from_str(line).expect("JSON");
    assert_eq!(v["api_version"], "1.4.0");
    assert_eq!(v["backup_write"], "PERMISSION_DENIED", "{v}");

    let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let tables = v["tables"].as_object().expect("tables");
    for (t, entries) in tables {
        for e in entries.as_array().expect("entries") {
            let m: BTreeMap<String, String> = e["match"]
                .as_object()
                .expect("match")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().expect("str").to_string()))
                .collect();
            let p: BTreeMap<String, String> = e["params"]
                .as_object()
                .expect("params")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().expect("str").to_string()))
                .collect();
            got.entry(t.clone()).or_default().push(format!(
                "{m:?} prio={} {}{p:?}",
                e["priority"],
                e["action"].as_str().expect("action")
            ));
        }
    }
    for list in want.values_mut().chain(got.values_mut()) {
        list.sort();
    }
    assert_eq!(got.values().map(Vec::len).sum::<usize>(), flows.len());
    assert_eq!(
        got, want,
        "the shell reads what the back end wrote, by name"
    );
    // The shell's session did not disturb the primary.
    assert_eq!(b.mastership(), Mastership::Primary);
}
