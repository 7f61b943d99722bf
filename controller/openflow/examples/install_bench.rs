//! Installs 50,000 flows through ofctrl (bundle + barrier) into a real ovs-vswitchd and,
//! in the same run, the same flows with `ovs-ofctl --bundle add-flows` (the raw floor).
//! Prints one JSON object.
//!
//! `cargo run --release -p wyvern-openflow --example install_bench [-- N_FLOWS]`

use std::time::{Duration, Instant};
use wyvern_openflow::{
    Action, DesiredFlow, Field, Instructions, Listener, MacAddr, Match, Ofctrl, SwitchConfig,
};
use wyvern_testkit::ovs::OvsSandbox;

fn flows(n: u32) -> Vec<DesiredFlow> {
    (0..n)
        .map(|i| {
            let mac = MacAddr([0x02, 0, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
            DesiredFlow::new(
                1,
                100,
                Match::new().reg(0, i / 50).eth_dst(mac),
                Instructions::apply(vec![Action::SetField {
                    field: Field::Reg(1),
                    value: u64::from(i % 50 + 1),
                }])
                .with_goto(2),
            )
            .with_cookie(u64::from(i))
        })
        .collect()
}

/// The same flow in ovs-ofctl syntax.
fn ofctl_line(f: &DesiredFlow) -> String {
    let reg0 = f.key.match_.get(Field::Reg(0)).map(|v| v.0).unwrap_or(0);
    let mac = f.key.match_.get(Field::EthDst).map(|v| v.0).unwrap_or(0);
    let reg1 = match f.instructions.apply_actions.first() {
        Some(Action::SetField { value, .. }) => *value,
        _ => 0,
    };
    format!(
        "table=1,priority=100,cookie={:#x},reg0={reg0:#x},dl_dst={},actions=set_field:{reg1:#x}->reg1,goto_table:2",
        f.cookie,
        MacAddr::from_u64(mac)
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let n: u32 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(50_000);
    let ovs = OvsSandbox::dummy()?;
    let listener = Listener::bind(&"tcp:127.0.0.1:0".parse()?).await?;
    let target = listener
        .local_addr()
        .map(|a| a.to_string())
        .ok_or_else(|| anyhow::anyhow!("listener has no address"))?;
    ovs.add_bridge("br-int", Some(&target))?;
    let (sw, _events) = tokio::time::timeout(
        Duration::from_secs(20),
        listener.accept(&SwitchConfig::default()),
    )
    .await??;
    let ofctrl = Ofctrl::spawn();
    ofctrl.attach(sw.clone()).wait().await?;
    let desired = flows(n);

    // Baseline: ovs-ofctl --bundle add-flows of the same flows, on an empty table.
    let file = ovs.run_dir().join("flows.txt");
    let text: String = desired.iter().map(|f| ofctl_line(f) + "\n").collect();
    std::fs::write(&file, text)?;
    let file_s = file.to_string_lossy().to_string();
    let t = Instant::now();
    ovs.ofctl(&["--bundle", "add-flows", "br-int", &file_s])?;
    let ofctl_secs = t.elapsed().as_secs_f64();
    let ofctl_count = ovs.dump_flows("br-int")?.len();
    ovs.ofctl(&["del-flows", "br-int"])?;

    // ofctrl: from set_desired to barrier reply.
    let t = Instant::now();
    let report = ofctrl.set_desired(desired.clone(), vec![]).wait().await?;
    let ofctrl_secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(report.errors.is_empty(), "errors: {:?}", report.errors);
    let installed = ovs.dump_flows("br-int")?.len();
    anyhow::ensure!(installed == n as usize, "installed {installed} of {n}");

    // Reconnect with nothing changed: full read-back and diff, zero flow-mods.
    sw.disconnect();
    let (sw2, _ev2) = tokio::time::timeout(
        Duration::from_secs(20),
        listener.accept(&SwitchConfig::default()),
    )
    .await??;
    let t = Instant::now();
    let resync = ofctrl.attach(sw2).wait().await?;
    let resync_secs = t.elapsed().as_secs_f64();

    // One incremental flow.
    let one = flows(n + 1)
        .pop()
        .ok_or_else(|| anyhow::anyhow!("no flow"))?;
    let t = Instant::now();
    let inc = ofctrl
        .update(wyvern_openflow::Update {
            add_flows: vec![one],
            ..Default::default()
        })
        .wait()
        .await?;
    let one_ms = t.elapsed().as_secs_f64() * 1e3;

    let json = serde_json::json!({
        "benchmark": "openflow_install",
        "flows": n,
        "ofctrl": {
            "seconds": ofctrl_secs,
            "flows_per_sec": f64::from(n) / ofctrl_secs,
            "flow_mods": report.flow_mods(),
        },
        "baseline_ovs_ofctl_bundle": {
            "seconds": ofctl_secs,
            "flows_per_sec": f64::from(n) / ofctl_secs,
            "installed": ofctl_count,
        },
        "ratio_ofctrl_to_baseline_time": ofctrl_secs / ofctl_secs,
        "resync_unchanged": { "seconds": resync_secs, "flow_mods": resync.flow_mods() },
        "one_flow_incremental_ms": one_ms,
        "one_flow_incremental_flow_mods": inc.flow_mods(),
    });
    println!("{json}");
    Ok(())
}
