//! `bench-dhcp`: DHCP under load, wyvern against Kea's `kea-dhcp4` in the same run.
//!
//! Topology (userspace OVS in its own namespace, one ovs-vswitchd):
//! - br-int, owned by wyvernd: one network (10.0.0.0/16, DHCP on) with `--clients` ports.
//!   Each port is bound to a patch port `iK` whose peer `fK` is on br-fan.
//! - br-fan, a plain bridge this benchmark programs: the load generator's namespace (`gen0`)
//!   and Kea's namespace (`kea0`, 10.0.255.250/16) are on it.
//!
//! wyvern phase: a frame from gen0 with source MAC K goes to fK, so it enters br-int on port
//! K's own switch port (port security on, one rate-limit bucket per port, as K separate VMs
//! would); whatever comes back from fK goes to gen0. Kea phase: gen0 <-> kea0.
//!
//! The same generator (`dhcp-load`: real-client DORAs, many MACs, closed loop) runs against
//! wyvern, then against Kea (raw sockets, a reservation per client MAC with the same
//! address wyvern's port has, so both hand out fixed addresses).
//!
//! Then Kea's own `perfdhcp`, with the same arguments against both servers. perfdhcp always
//! simulates a relay agent (giaddr = its address, many chaddrs from one socket). It runs
//! as `-L 68 -o 82,1300`: from UDP port 68 (wyvern's pipeline punts only client-to-server
//! 68 -> 67 DHCP) with option 82 carrying the RFC 8357 relay source port sub-option, so both
//! servers answer to port 68. wyvernd runs with `--dhcp-allow-relay true`: the generator is
//! a wyvern port (`relay`, GEN_MAC/GEN_IP) on the clients' network, and wyvern answers a
//! relayed request whose giaddr is the relay port's own IP for the port whose MAC is the
//! chaddr (as Neutron's dnsmasq answers a relay in its subnet). All DHCP then enters br-int
//! on one port, so that port's rate limit is raised (`--dhcp-rate-limit`) for the run.
//!
//! Prints one JSON document on stdout; progress on stderr.

#[path = "../vmlab.rs"]
mod vmlab;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::{json, Value};
use vmlab::{default_wyvernd, Lab, LONG};
use wyvern_testkit::poll::wait_until;

#[derive(Debug, Parser)]
#[command(
    name = "bench-dhcp",
    about = "DHCP DORA rate and latency: wyvern vs kea-dhcp4"
)]
struct Args {
    /// wyvernd binary [default: next to this executable].
    #[arg(long, env = "WYVERND")]
    wyvernd: Option<PathBuf>,
    /// dhcp-load binary [default: next to this executable].
    #[arg(long)]
    dhcp_load: Option<PathBuf>,
    /// Simulated clients (= wyvern ports = Kea reservations).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Exchanges in flight at once.
    #[arg(long, default_value_t = 32)]
    window: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Target rate for perfdhcp against both servers (exchanges/s); 0 skips perfdhcp.
    #[arg(long, default_value_t = 4000)]
    perfdhcp_rate: u32,
}

const GEN_MAC: &str = "02:00:00:00:ff:01";
const KEA_MAC: &str = "02:00:00:00:ff:02";
const KEA_IP: &str = "10.0.255.250";
const GEN_IP: &str = "10.0.255.251";

/// Seconds of the unloaded measurement (one exchange in flight): latency without queueing.
const SINGLE_SECONDS: f64 = 3.0;

/// CPU seconds a process used between two readings.
fn cpu_delta(a: Option<std::time::Duration>, b: Option<std::time::Duration>) -> Option<f64> {
    Some(b?.checked_sub(a?)?.as_secs_f64())
}

/// Kills and reaps a child on drop.
struct Reaped(Child);
impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One `dhcp-load` run with `window` exchanges in flight for `seconds`.
fn load(lab: &Lab, bin: &Path, macs: &Path, window: usize, seconds: f64) -> anyhow::Result<Value> {
    let out = lab.namespaces[0]
        .command(&bin.display().to_string())
        .args(["--iface", "eth0", "--macs"])
        .arg(macs)
        .args(["--seconds", &seconds.to_string()])
        .args(["--window", &window.to_string()])
        .output()
        .context("failed to run dhcp-load")?;
    if !out.status.success() {
        bail!("dhcp-load failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Drops the lease map from a `dhcp-load` result, keeping how many clients got a lease and
/// how many of those got another address than their port's.
fn summary(mut v: Value, ports: &[(String, String)]) -> Value {
    let leased: Vec<Option<&str>> = ports
        .iter()
        .map(|(mac, _)| v["leases"][mac.as_str()].as_str())
        .collect();
    let got = leased.iter().flatten().count();
    let wrong = ports
        .iter()
        .zip(&leased)
        .filter(|((_, ip), l)| l.is_some_and(|l| l != ip))
        .count();
    if let Some(o) = v.as_object_mut() {
        o.remove("leases");
        o.insert("clients_leased".into(), json!(got));
        o.insert("leases_not_the_ports_ip".into(), json!(wrong));
    }
    v
}

/// perfdhcp's fixed arguments: relay from UDP 68 with the RFC 8357 relay source port
/// sub-option (option 82, sub-option 19, length 0), broadcast from eth0.
const PERFDHCP_ARGS: [&str; 7] = ["-4", "-l", "eth0", "-L", "68", "-o", "82,1300"];

/// One perfdhcp run from the generator namespace: rate, drops, and its report.
fn perfdhcp(lab: &Lab, macs: &Path, args: &Args) -> anyhow::Result<Value> {
    let out = lab.namespaces[0]
        .command("perfdhcp")
        .args(PERFDHCP_ARGS)
        .arg("-M")
        .arg(macs)
        .args(["-R", &args.clients.to_string()])
        .args(["-r", &args.perfdhcp_rate.to_string()])
        .args(["-p", &format!("{}", args.seconds.ceil() as u64)])
        .output()
        .context("failed to run perfdhcp")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rate = text
        .lines()
        .find_map(|l| l.strip_prefix("Rate: "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|r| r.parse::<f64>().ok());
    Ok(json!({
        "target_rate": args.perfdhcp_rate,
        "dora_per_sec": rate,
        "exit_code": out.status.code(),
        "report": text.lines().filter(|l| !l.is_empty()).collect::<Vec<_>>(),
        "stderr": String::from_utf8_lossy(&out.stderr).lines().take(5).collect::<Vec<_>>(),
    }))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let wyvernd = default_wyvernd(args.wyvernd.clone())?;
    let dhcp_load = match &args.dhcp_load {
        Some(p) => p.clone(),
        None => wyvernd.with_file_name("dhcp-load"),
    };
    // One port (perfdhcp's relay) carries every exchange: lift the per-port DHCP limit.
    let mut lab = Lab::start(
        &wyvernd,
        &[
            "--dhcp-dns",
            "192.0.2.53",
            "--dhcp-allow-relay",
            "true",
            "--dhcp-rate-limit",
            "1000000",
            "--dhcp-burst",
            "1000000",
        ],
    )?;
    // Files of this run live in the OVS run dir, deleted with it.
    let scratch = lab.ovs.run_dir().to_path_buf();
    let net = lab.create("network", json!({"name": "dhcp"})).await?;
    lab.create(
        "subnet",
        json!({"network_id": net["id"], "cidr": "10.0.0.0/16", "ip_version": 4,
                   "gateway_ip": "10.0.0.1"}),
    )
    .await?;
    eprintln!("creating {} ports", args.clients);
    let mut ports = Vec::new(); // (id, mac, ip)
    for i in 0..args.clients {
        let p = lab
            .create(
                "port",
                json!({"network_id": net["id"], "name": format!("c{i}")}),
            )
            .await?;
        let s = |k: &str| p[k].as_str().unwrap_or_default().to_owned();
        let ip = p["fixed_ips"][0]["ip_address"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        ports.push((s("id"), s("mac_address"), ip));
    }
    // perfdhcp's relay port: the generator namespace's own MAC and address.
    let relay = lab
        .create(
            "port",
            json!({"network_id": net["id"], "name": "relay", "mac_address": GEN_MAC,
                   "fixed_ips": [{"ip_address": GEN_IP}]}),
        )
        .await?;
    let relay_id = relay["id"].as_str().unwrap_or_default().to_owned();
    let mac_ip: Vec<(String, String)> = ports
        .iter()
        .map(|(_, m, ip)| (m.clone(), ip.clone()))
        .collect();
    let macs = scratch.join("macs");
    std::fs::write(
        &macs,
        mac_ip
            .iter()
            .map(|(m, _)| format!("{m}\n"))
            .collect::<String>(),
    )?;

    // br-fan, the generator and Kea namespaces, the patch pairs.
    lab.ovs.add_bridge("br-fan", None)?;
    lab.add_ns("wyv-gen", "gen0", "br-fan", GEN_MAC, &[])?;
    lab.add_ns("wyv-kea", "kea0", "br-fan", KEA_MAC, &[])?;
    for ns in &lab.namespaces {
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])?;
    }
    lab.namespaces[0].exec(&["ip", "link", "set", "eth0", "promisc", "on"])?;
    lab.namespaces[1].exec(&["ip", "addr", "add", &format!("{KEA_IP}/16"), "dev", "eth0"])?;
    // Patch pairs, 32 clients per ovs-vsctl transaction (one huge one times out).
    for (c, chunk) in ports.chunks(32).enumerate() {
        let mut vsctl: Vec<String> = Vec::new();
        for (j, (id, _, _)) in chunk.iter().enumerate() {
            let k = c * 32 + j;
            let (f, i) = (format!("f{k}"), format!("i{k}"));
            if !vsctl.is_empty() {
                vsctl.push("--".into());
            }
            vsctl.extend(
                [
                    "add-port",
                    "br-fan",
                    &f,
                    "--",
                    "set",
                    "interface",
                    &f,
                    "type=patch",
                    &format!("options:peer={i}"),
                    "--",
                    "add-port",
                    "br-int",
                    &i,
                    "--",
                    "set",
                    "interface",
                    &i,
                    "type=patch",
                    &format!("options:peer={f}"),
                    &format!("external_ids:iface-id={id}"),
                ]
                .map(str::to_owned),
            );
        }
        let v: Vec<&str> = vsctl.iter().map(String::as_str).collect();
        lab.ovs.vsctl(&v)?;
    }
    lab.ovs.vsctl(&[
        "add-port",
        "br-fan",
        "frelay",
        "--",
        "set",
        "interface",
        "frelay",
        "type=patch",
        "options:peer=irelay",
        "--",
        "add-port",
        "br-int",
        "irelay",
        "--",
        "set",
        "interface",
        "irelay",
        "type=patch",
        "options:peer=frelay",
        &format!("external_ids:iface-id={relay_id}"),
    ])?;
    let mut flows = String::new();
    for (k, (_, mac, _)) in ports.iter().enumerate() {
        flows.push_str(&format!(
            "priority=100,in_port=gen0,dl_src={mac},actions=output:f{k}\n\
             priority=100,in_port=f{k},actions=output:gen0\n"
        ));
    }
    flows.push_str("priority=100,in_port=kea0,actions=output:gen0\n");
    flows.push_str(&format!(
        "priority=150,in_port=gen0,dl_src={GEN_MAC},actions=output:frelay\n\
         priority=100,in_port=frelay,actions=output:gen0\n"
    ));
    let flow_file = scratch.join("fan.flows");
    std::fs::write(&flow_file, flows)?;
    lab.ovs
        .ofctl(&["add-flows", "br-fan", &flow_file.display().to_string()])?;
    lab.wait_active(args.clients + 1).await?;

    eprintln!("load on wyvern");
    let wyvern_pid = lab.wyvernd.pid().unwrap_or(0);
    let wyvern_single = load(&lab, &dhcp_load, &macs, 1, SINGLE_SECONDS)?;
    let cpu0 = wyvern_bench::proc_cpu_time(wyvern_pid);
    let wyvern = load(&lab, &dhcp_load, &macs, args.window, args.seconds)?;
    let wyvern_cpu = cpu_delta(cpu0, wyvern_bench::proc_cpu_time(wyvern_pid));

    // Kea: the same subnet, a reservation per client with the port's address.
    let kea_dir = scratch.join("kea");
    std::fs::create_dir_all(&kea_dir)?;
    let reservations: Vec<Value> = mac_ip
        .iter()
        .map(|(m, ip)| json!({"hw-address": m, "ip-address": ip}))
        .collect();
    let conf = json!({"Dhcp4": {
        "interfaces-config": {"interfaces": ["eth0"], "dhcp-socket-type": "raw"},
        "lease-database": {"type": "memfile", "persist": false, "lfc-interval": 0},
        "valid-lifetime": 43200,
        "option-data": [{"name": "domain-name-servers", "data": "192.0.2.53"}],
        "subnet4": [{
            "id": 1, "subnet": "10.0.0.0/16",
            "pools": [{"pool": "10.0.200.0 - 10.0.220.255"}],
            "option-data": [{"name": "routers", "data": "10.0.0.1"},
                            {"name": "interface-mtu", "data": "1450"}],
            "reservations": reservations,
        }],
        "loggers": [{"name": "kea-dhcp4", "severity": "WARN",
                     "output_options": [{"output": kea_dir.join("kea.log").display().to_string()}]}],
    }});
    let conf_path = kea_dir.join("kea-dhcp4.conf");
    std::fs::write(&conf_path, serde_json::to_string_pretty(&conf)?)?;
    let kea = Reaped(
        lab.namespaces[1]
            .command("kea-dhcp4")
            .arg("-c")
            .arg(&conf_path)
            .env("KEA_PIDFILE_DIR", &kea_dir)
            .env("KEA_LOCKFILE_DIR", &kea_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("failed to start kea-dhcp4")?,
    );
    let kea_pid = kea.0.id();
    let kea_ns = &lab.namespaces[1];
    wait_until("kea-dhcp4 to listen on port 67", LONG, || {
        kea_ns
            .exec(&["ss", "-lun"])
            .map(|s| s.contains(":67 "))
            .unwrap_or(false)
    })?;
    lab.ovs.ofctl(&[
        "add-flow",
        "br-fan",
        "priority=200,in_port=gen0,actions=output:kea0",
    ])?;
    eprintln!("load on kea");
    let kea_single = load(&lab, &dhcp_load, &macs, 1, SINGLE_SECONDS)?;
    let cpu0 = wyvern_bench::proc_cpu_time(kea_pid);
    let kea_result = load(&lab, &dhcp_load, &macs, args.window, args.seconds)?;
    let kea_cpu = cpu_delta(cpu0, wyvern_bench::proc_cpu_time(kea_pid));

    // perfdhcp, the same arguments against both servers (see the top of this file).
    let (perfdhcp_wyvern, perfdhcp_kea) = if args.perfdhcp_rate > 0 {
        let gen = &lab.namespaces[0];
        gen.exec(&["ip", "addr", "add", &format!("{GEN_IP}/16"), "dev", "eth0"])?;
        let to_kea = "priority=200,in_port=gen0,actions=output:kea0";
        lab.ovs.ofctl(&[
            "del-flows",
            "br-fan",
            "--strict",
            "priority=200,in_port=gen0",
        ])?;
        eprintln!("perfdhcp on wyvern");
        let cpu0 = wyvern_bench::proc_cpu_time(wyvern_pid);
        let mut w = perfdhcp(&lab, &macs, &args)?;
        w["server_cpu_seconds"] = json!(cpu_delta(cpu0, wyvern_bench::proc_cpu_time(wyvern_pid)));
        lab.ovs.ofctl(&["add-flow", "br-fan", to_kea])?;
        eprintln!("perfdhcp on kea");
        let cpu0 = wyvern_bench::proc_cpu_time(kea_pid);
        let mut k = perfdhcp(&lab, &macs, &args)?;
        k["server_cpu_seconds"] = json!(cpu_delta(cpu0, wyvern_bench::proc_cpu_time(kea_pid)));
        (w, k)
    } else {
        (Value::Null, Value::Null)
    };
    drop(kea);

    let result = json!({
        "benchmark": "dhcp_dora",
        "method": "closed-loop real-client DORA (dhcp-load) from one namespace through br-fan; wyvern: each client MAC enters br-int on its own bound port; kea: kea-dhcp4 2.2 (raw sockets, memfile without persistence, a reservation per client) on the same ovs-vswitchd",
        "clients": args.clients,
        "window": args.window,
        "seconds": args.seconds,
        "wyvern": summary(wyvern, &mac_ip),
        "wyvern_cpu_seconds_during_load": wyvern_cpu,
        "wyvern_single_exchange_in_flight": summary(wyvern_single, &mac_ip),
        "kea": summary(kea_result, &mac_ip),
        "kea_cpu_seconds_during_load": kea_cpu,
        "kea_single_exchange_in_flight": summary(kea_single, &mac_ip),
        "perfdhcp_args": PERFDHCP_ARGS.join(" "),
        "perfdhcp_vs_wyvern": perfdhcp_wyvern,
        "perfdhcp_vs_kea": perfdhcp_kea,
        "wyvernd_dhcp_rate_limit_per_port": 1_000_000,
        "loadavg_1m": wyvern_bench::loadavg_1m(),
    });
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}
