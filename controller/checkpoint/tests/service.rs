//! The checkpoint service end to end: real wyvernd processes, the real `wyvern-checkpoint`
//! binary, a filesystem bank and a real S3 server (moto).

mod common;

use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::json;

/// Build, protect into the filesystem bank, delete, restore: the same topology comes back
/// (ids, MACs, IPs, routes, router interfaces); a second restore changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_bank_checkpoint_delete_restore_same_wyvernd() {
    let w = start_wyvernd();
    let c = client(&w);
    build_topology(&c).await.unwrap();
    let before = dump(&c).await.unwrap();
    let svc = Svc::start(&w.url(), "").unwrap();

    // Protectables show the project and the router's interfaces as dependencies.
    let v = svc.ok(Method::GET, "protectables", None).await;
    assert!(v["protectable_type"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t == "OS::Keystone::Project"));
    let v = svc
        .ok(
            Method::GET,
            "protectables/OS::Neutron::Router/instances",
            None,
        )
        .await;
    assert_eq!(
        v["instances"][0]["dependent_resources"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let plan = svc.project_plan(PROVIDER_FS).await;
    let (cp, status) = svc.checkpoint(PROVIDER_FS, &plan).await;
    assert_eq!(status, "available", "{}", svc.log_tail());
    let v = svc
        .ok(
            Method::GET,
            &format!("providers/{PROVIDER_FS}/checkpoints/{cp}"),
            None,
        )
        .await;
    let graph: serde_json::Value =
        serde_json::from_str(v["checkpoint"]["resource_graph"].as_str().unwrap()).unwrap();
    // 2 networks + 2 subnets + 1 router + 7 ports (5 VMs, 2 router interfaces).
    assert_eq!(graph.as_array().unwrap().len(), 12);

    let v = svc
        .ok(
            Method::POST,
            "verifications",
            Some(json!({"verification": {"provider_id": PROVIDER_FS, "checkpoint_id": cp}})),
        )
        .await;
    assert_eq!(v["verification"]["status"], "success", "{v}");

    delete_all(&c).await.unwrap();
    assert_eq!(
        dump(&c).await.unwrap()["ports"].as_array().unwrap().len(),
        0
    );

    let r = svc.restore(PROVIDER_FS, &cp, None).await;
    assert_eq!(r["status"], "success", "{r}");
    assert_eq!(r["mappings"].as_array().unwrap().len(), 0, "{r}");
    assert_eq!(dump(&c).await.unwrap(), before);

    // Idempotent: a rerun finds everything there and creates nothing.
    let r = svc.restore(PROVIDER_FS, &cp, None).await;
    assert_eq!(r["status"], "success", "{r}");
    assert_eq!(r["created"], 0, "{r}");
    assert_eq!(dump(&c).await.unwrap(), before);

    // Operation logs record both kinds of operation.
    let v = svc.ok(Method::GET, "operation_logs", None).await;
    let types: Vec<&str> = v["operation_logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["operation_type"].as_str())
        .collect();
    assert!(
        types.contains(&"protect") && types.contains(&"restore"),
        "{v}"
    );
}

/// Protect into S3 (moto), restore into a second, empty wyvernd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_bank_restore_into_second_wyvernd() {
    let moto = Moto::start().await.unwrap();
    moto.bucket("wyvern-bank").await.unwrap();
    let w1 = start_wyvernd();
    let w2 = start_wyvernd();
    let c1 = client(&w1);
    let c2 = client(&w2);
    build_topology(&c1).await.unwrap();
    let before = dump(&c1).await.unwrap();
    let svc = Svc::start(&w1.url(), &moto.provider_toml("wyvern-bank")).unwrap();
    let v = svc.ok(Method::GET, "providers", None).await;
    assert_eq!(v["providers"].as_array().unwrap().len(), 2);

    let plan = svc.project_plan(PROVIDER_S3).await;
    let (cp, status) = svc.checkpoint(PROVIDER_S3, &plan).await;
    assert_eq!(status, "available", "{}", svc.log_tail());

    let r = svc.restore(PROVIDER_S3, &cp, Some(&w2.url())).await;
    assert_eq!(r["status"], "success", "{r}");
    assert_eq!(dump(&c2).await.unwrap(), before);

    // Restoring over the original (everything still there) creates nothing.
    let r = svc.restore(PROVIDER_S3, &cp, None).await;
    assert_eq!(r["created"], 0, "{r}");

    // Deleting a checkpoint removes it from the bank listing.
    svc.ok(
        Method::DELETE,
        &format!("providers/{PROVIDER_S3}/checkpoints/{cp}"),
        None,
    )
    .await;
    let v = svc
        .ok(
            Method::GET,
            &format!("providers/{PROVIDER_S3}/checkpoints"),
            None,
        )
        .await;
    assert_eq!(v["checkpoints"].as_array().unwrap().len(), 0);
}

/// The bank lease on a real S3 server: the conditional create (`If-None-Match: *`) refuses
/// a second writer while the first one's lease is live, and an expired lease is taken over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_lease_refuses_a_second_writer() {
    use wyvern_checkpoint::bank::{lease_for, Bank, BankConfig, BankError};
    let moto = Moto::start().await.unwrap();
    moto.bucket("wyvern-lease").await.unwrap();
    let bank = Bank::open(&BankConfig::S3 {
        bucket: "wyvern-lease".into(),
        endpoint: Some(moto.endpoint.clone()),
        region: "us-east-1".into(),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        allow_http: true,
        prefix: String::new(),
    })
    .unwrap();
    bank.acquire_lease("c1", &lease_for("svc-a", "run1"))
        .await
        .unwrap();
    let e = bank
        .acquire_lease("c1", &lease_for("svc-b", "run1"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, BankError::Leased { ref owner, .. } if owner == "svc-a"),
        "{e}"
    );
    assert_eq!(bank.read_lease("c1").await.unwrap().unwrap().owner, "svc-a");

    // An expired lease is replaced.
    let mut old = lease_for("svc-a", "run2");
    old.expires_at = 1;
    bank.acquire_lease("c2", &old).await.unwrap();
    bank.acquire_lease("c2", &lease_for("svc-b", "run1"))
        .await
        .unwrap();
    assert_eq!(bank.read_lease("c2").await.unwrap().unwrap().owner, "svc-b");
}

/// A truncated and a corrupted object: verification fails naming the object, restore refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_or_truncated_object_is_refused() {
    let w = start_wyvernd();
    let c = client(&w);
    build_topology(&c).await.unwrap();
    let svc = Svc::start(&w.url(), "").unwrap();
    let plan = svc.project_plan(PROVIDER_FS).await;
    for (damage, object) in [("truncate", "ports-0000.json"), ("flip", "subnets.json")] {
        let (cp, status) = svc.checkpoint(PROVIDER_FS, &plan).await;
        assert_eq!(status, "available");
        let path = svc
            .bank_dir()
            .join(format!("checkpoints/{cp}/data/{object}"));
        let mut bytes = std::fs::read(&path).unwrap();
        match damage {
            "truncate" => bytes.truncate(bytes.len() / 2),
            _ => {
                let i = bytes.len() / 2;
                bytes[i] ^= 0x01;
            }
        }
        std::fs::write(&path, &bytes).unwrap();

        let v = svc
            .ok(
                Method::POST,
                "verifications",
                Some(json!({"verification": {"provider_id": PROVIDER_FS, "checkpoint_id": cp}})),
            )
            .await;
        assert_eq!(v["verification"]["status"], "fail", "{v}");
        assert_eq!(
            v["verification"]["resources_status"][object], "error",
            "{v}"
        );

        let r = svc.restore(PROVIDER_FS, &cp, None).await;
        assert_eq!(r["status"], "fail", "{r}");
        let err = r["error"].as_str().unwrap();
        assert!(
            err.contains(object) && err.contains("verification"),
            "{err}"
        );
        assert_eq!(r["created"], 0);
    }
}

/// SIGKILL while checkpoints are being written: after a restart no checkpoint is left
/// `protecting`, and every `available` one verifies and restores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_checkpoint_leaves_nothing_unrestorable() {
    let w = start_wyvernd();
    let c = client(&w);
    build_topology(&c).await.unwrap();
    let (_, nets) = c.list("networks").await.unwrap();
    let (_, subs) = c.list("subnets").await.unwrap();
    let net = nets.iter().find(|n| n["name"] == "net2").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let sub = subs
        .iter()
        .find(|s| s["network_id"] == net.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    build_ports(&c, &net, &sub, 90).await.unwrap();
    let mut svc = Svc::start(&w.url(), "").unwrap();
    let plan = svc.project_plan(PROVIDER_FS).await;
    // Several checkpoints in flight, then SIGKILL.
    for _ in 0..4 {
        svc.ok(
            Method::POST,
            &format!("providers/{PROVIDER_FS}/checkpoints"),
            Some(json!({"checkpoint": {"plan_id": plan}})),
        )
        .await;
    }
    svc.kill();
    svc.restart().unwrap();

    let v = svc
        .ok(
            Method::GET,
            &format!("providers/{PROVIDER_FS}/checkpoints"),
            None,
        )
        .await;
    let list = v["checkpoints"].as_array().unwrap().clone();
    assert_eq!(list.len(), 4, "{v}");
    let mut available = Vec::new();
    for cp in &list {
        let st = cp["status"].as_str().unwrap();
        assert!(
            st == "available" || st == "error",
            "checkpoint left {st} after restart: {cp}"
        );
        if st == "available" {
            available.push(cp["id"].as_str().unwrap().to_string());
        }
    }
    for id in &available {
        let v = svc
            .ok(
                Method::POST,
                "verifications",
                Some(json!({"verification": {"provider_id": PROVIDER_FS, "checkpoint_id": id}})),
            )
            .await;
        assert_eq!(v["verification"]["status"], "success", "{v}");
    }
    if let Some(id) = available.last() {
        let before = dump(&c).await.unwrap();
        delete_all(&c).await.unwrap();
        let r = svc.restore(PROVIDER_FS, id, None).await;
        assert_eq!(r["status"], "success", "{r}");
        assert_eq!(dump(&c).await.unwrap(), before);
    }
    // An interrupted checkpoint cannot be restored.
    if let Some(cp) = list.iter().find(|c| c["status"] == "error") {
        let (st, _) = svc
            .call(
                Method::POST,
                "restores",
                Some(json!({"restore": {"provider_id": PROVIDER_FS, "checkpoint_id": cp["id"]}})),
            )
            .await
            .unwrap();
        assert_eq!(st, 400);
    }
}

/// A scheduled operation every second with max_backups 2 keeps only the last two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_operation_keeps_last_n() {
    let w = start_wyvernd();
    let c = client(&w);
    build_topology(&c).await.unwrap();
    let svc = Svc::start(&w.url(), "").unwrap();
    let plan = svc.project_plan(PROVIDER_FS).await;
    svc.ok(
        Method::PUT,
        &format!("plans/{plan}"),
        Some(json!({"plan": {"status": "started"}})),
    )
    .await;
    let t = svc
        .ok(
            Method::POST,
            "triggers",
            Some(
                json!({"trigger_info": {"name": "every second", "type": "time",
            "properties": {"format": "crontab", "pattern": "* * * * * *"}}}),
            ),
        )
        .await;
    let trigger = t["trigger_info"]["id"].as_str().unwrap().to_string();
    let (st, _) = svc
        .call(Method::POST, "triggers", Some(json!({"trigger_info": {"name": "bad", "type": "time", "properties": {"pattern": "61 * * * *"}}})))
        .await
        .unwrap();
    assert_eq!(st, 400);
    let op = svc
        .ok(Method::POST, "scheduled_operations", Some(json!({"scheduled_operation": {"name": "keep2",
            "operation_type": "retention_protect", "trigger_id": trigger,
            "operation_definition": {"plan_id": plan, "provider_id": PROVIDER_FS, "max_backups": 2}}})))
        .await;
    let op_id = op["scheduled_operation"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Wait for at least four scheduled checkpoints to have finished.
    poll(
        "four scheduled checkpoints",
        Duration::from_secs(30),
        || async {
            let v = svc.ok(Method::GET, "operation_logs", None).await;
            let n = v["operation_logs"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|l| {
                    l["scheduled_operation_id"] == op_id.as_str() && l["status"] == "available"
                })
                .count();
            (n >= 4).then_some(())
        },
    )
    .await
    .unwrap();
    svc.ok(
        Method::DELETE,
        &format!("scheduled_operations/{op_id}"),
        None,
    )
    .await;
    // The last scheduled run may still be finishing: poll until the bank holds exactly two.
    let ids = poll(
        "retention to leave two checkpoints",
        Duration::from_secs(10),
        || async {
            let v = svc
                .ok(
                    Method::GET,
                    &format!("providers/{PROVIDER_FS}/checkpoints"),
                    None,
                )
                .await;
            let l = v["checkpoints"].as_array().unwrap();
            (l.len() == 2 && l.iter().all(|c| c["status"] == "available")).then(|| {
                l.iter()
                    .map(|c| c["id"].as_str().unwrap().to_string())
                    .collect::<Vec<_>>()
            })
        },
    )
    .await
    .unwrap();
    // They are the two newest scheduled ones.
    let v = svc.ok(Method::GET, "operation_logs", None).await;
    let mut done: Vec<String> = v["operation_logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["status"] == "available")
        .filter_map(|l| l["checkpoint_id"].as_str().map(str::to_string))
        .collect();
    done.sort();
    assert_eq!(ids, done[done.len() - 2..].to_vec());
}

/// python-karborclient (PyPI) against the service with a token and an endpoint, no Keystone:
/// lists providers and plans, creates a checkpoint that becomes available.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn karborclient_lists_and_creates_a_checkpoint() {
    let venv = wyvern_testkit::venv::Venv::ensure(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")),
        "karborclient",
        &["python-karborclient==2.1.0"],
    )
    .unwrap();
    let w = start_wyvernd();
    build_topology(&client(&w)).await.unwrap();
    let svc = Svc::start(&w.url(), "").unwrap();
    let plan = svc.project_plan(PROVIDER_FS).await;
    let endpoint = format!("{}/v1/{PROJECT}", svc.url);
    let karbor = |args: &[&str]| -> String {
        let out = std::process::Command::new(venv.bin("karbor"))
            .args([
                "--os-auth-token",
                "any",
                "--os-no-client-auth",
                "--karbor-url",
                &endpoint,
            ])
            .args(args)
            .output()
            .expect("failed to run karbor");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "karbor {args:?} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    assert!(karbor(&["provider-list"]).contains(PROVIDER_FS));
    let plans = karbor(&["plan-list"]);
    assert!(
        plans.contains(&plan) && plans.contains("suspended"),
        "{plans}"
    );
    let out = karbor(&["checkpoint-create", PROVIDER_FS, &plan]);
    assert!(out.contains("protecting"), "{out}");
    poll(
        "the karbor-created checkpoint to be available",
        Duration::from_secs(30),
        || async {
            let v = svc
                .ok(
                    Method::GET,
                    &format!("providers/{PROVIDER_FS}/checkpoints"),
                    None,
                )
                .await;
            let l = v["checkpoints"].as_array().cloned().unwrap_or_default();
            (l.len() == 1 && l[0]["status"] == "available").then_some(())
        },
    )
    .await
    .unwrap();
    let list = karbor(&["checkpoint-list", PROVIDER_FS]);
    assert!(list.contains("available"), "{list}");
}

/// With OVS programmed by wyvernd: the flows after delete + restore equal the flows before
/// (same ids, MACs and IPs, so the same owners, cookies and matches).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_after_restore_equal_flows_before() {
    use wyvern_testkit::ovs::OvsSandbox;
    use wyvern_testkit::wyvernd::WyverndOptions;
    const BRIDGE: &str = "br-int";
    let ovs = OvsSandbox::dummy().expect("OVS sandbox starts");
    let w = WyverndOptions::new(wyvernd_bin())
        .switch(&ovs, BRIDGE, "wyvernd-of.sock")
        .start()
        .expect("wyvernd starts");
    let c = client(&w);
    build_topology(&c).await.unwrap();
    // Plug the VM ports so that their per-port flows exist too.
    let (_, ports) = c.list("ports").await.unwrap();
    let mut n = 0;
    for p in ports.iter().filter(|p| p["device_owner"] == "compute:nova") {
        ovs.add_dummy_port(BRIDGE, &format!("vm{n}"), p["id"].as_str())
            .unwrap();
        n += 1;
    }
    assert_eq!(n, 5);
    let settled = |what: &'static str| {
        let mut last: Vec<String> = Vec::new();
        let mut same = 0;
        wyvern_testkit::poll::wait_for(what, Duration::from_secs(30), || {
            let f = ovs.dump_flows(BRIDGE).ok()?;
            if f == last && f.len() > 1 {
                same += 1;
            } else {
                last = f;
                same = 0;
            }
            (same >= 4).then(|| last.clone())
        })
        .unwrap()
    };
    let before = settled("the flows of the topology");
    // Every VM port has flows: its MAC appears.
    assert!(
        before.iter().any(|l| l.contains("fa:16:3e:00:00:10")),
        "{before:#?}"
    );

    let svc = Svc::start(&w.url(), "").unwrap();
    let plan = svc.project_plan(PROVIDER_FS).await;
    let (cp, status) = svc.checkpoint(PROVIDER_FS, &plan).await;
    assert_eq!(status, "available");
    delete_all(&c).await.unwrap();
    wyvern_testkit::poll::wait_until("the port flows to go", Duration::from_secs(30), || {
        ovs.dump_flows(BRIDGE)
            .is_ok_and(|f| !f.iter().any(|l| l.contains("fa:16:3e:00:00:10")))
    })
    .unwrap();
    let r = svc.restore(PROVIDER_FS, &cp, None).await;
    assert_eq!(r["status"], "success", "{r}");
    // wyvern-local numbers ports (reg6/reg7) in the order it sees them bind, not from the
    // store, so a deleted and re-created port may get another number: name each number by
    // the MAC of the port it delivers to (table 5) before comparing.
    let want = by_port_mac(&before);
    let after =
        wyvern_testkit::poll::wait_for("the restored flows", Duration::from_secs(30), || {
            let f = by_port_mac(&ovs.dump_flows(BRIDGE).ok()?);
            (f == want).then_some(f)
        });
    if after.is_err() {
        let now = by_port_mac(&ovs.dump_flows(BRIDGE).unwrap_or_default());
        let missing: Vec<_> = want.iter().filter(|l| !now.contains(l)).collect();
        let extra: Vec<_> = now.iter().filter(|l| !want.contains(l)).collect();
        panic!("flows differ after restore\nmissing: {missing:#?}\nextra: {extra:#?}");
    }
}

/// Replaces each local port number (`reg6`/`reg7` values) by the MAC of its port.
fn by_port_mac(flows: &[String]) -> Vec<String> {
    let mut names = std::collections::HashMap::new();
    for l in flows.iter().filter(|l| l.contains("table=5,")) {
        // table=5 ... dl_dst=MAC actions=set_field:0xK->reg7
        if let (Some(i), Some(j)) = (l.find("dl_dst="), l.find("->reg7")) {
            let mac = l[i + 7..].split([' ', ',']).next().unwrap_or_default();
            if let Some(k) = l[..j].rsplit(':').next() {
                names.insert(k.to_string(), mac.to_string());
            }
        }
    }
    let mut out: Vec<String> = flows
        .iter()
        .map(|l| {
            let mut l = l.clone();
            for (k, mac) in &names {
                for (from, to) in [
                    (format!("reg6={k},"), format!("reg6=<{mac}>,")),
                    (format!("reg6={k} "), format!("reg6=<{mac}> ")),
                    (format!("reg7={k} "), format!("reg7=<{mac}> ")),
                    (format!(":{k}->reg6"), format!(":<{mac}>->reg6")),
                    (format!(":{k}->reg7"), format!(":<{mac}>->reg7")),
                ] {
                    l = l.replace(&from, &to);
                }
            }
            l
        })
        .collect();
    out.sort();
    out
}
