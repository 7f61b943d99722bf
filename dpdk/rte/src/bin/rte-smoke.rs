//! A short end-to-end run of the bindings for memory checkers (valgrind in
//! tests/valgrind.rs): EAL init on two null ports, bursts both ways, mbufs built by hand,
//! rule lowering and rte_flow calls, then a full cleanup. Usage: `rte-smoke <file-prefix> [--leak-on-purpose]`.

use std::net::Ipv4Addr;
use std::process::ExitCode;

use rte::flow::{FlowAction, FlowAttr, FlowPort, FlowRule, Item, VxlanEncap};
use rte::{Eal, MacAddr, Mempool, PoolConfig, Port, PortConf, RteError};

fn main() -> ExitCode {
    let prefix = std::env::args()
        .nth(1)
        .unwrap_or_else(|| format!("rte-smoke-{}", std::process::id()));
    if std::env::args().any(|a| a == "--leak-on-purpose") {
        // Lets the valgrind test prove it detects a definite leak.
        std::mem::forget(vec![0u8; 4096]);
    }
    let res = run(&prefix);
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
    match res {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rte-smoke: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(prefix: &str) -> Result<String, RteError> {
    let eal = Eal::init(&[
        "--no-huge",
        "--no-pci",
        "-m",
        "256",
        "--file-prefix",
        prefix,
        "--vdev=net_null0",
        "--vdev=net_null1",
        "-l",
        "0",
        "--no-telemetry",
        "--log-level=error",
    ])?;
    let pool = Mempool::pktmbuf_pool(
        &eal,
        "smoke_pool",
        &PoolConfig {
            size: 1023,
            cache_size: 32,
            ..Default::default()
        },
    )?;
    let mut p0 = Port::open(&eal, 0)?;
    let mut p1 = Port::open(&eal, 1)?;
    for p in [&mut p0, &mut p1] {
        p.configure(&PortConf {
            rx_queues: 1,
            tx_queues: 1,
        })?;
        p.setup_rx_queue(0, 256, &pool)?;
        p.setup_tx_queue(0, 256)?;
        p.start()?;
    }
    let mut forwarded = 0;
    {
        let mut burst = Vec::with_capacity(32);
        for _ in 0..100 {
            p0.rx_burst(0, &mut burst, 32);
            for m in burst.iter_mut() {
                m.data_mut()[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
            }
            forwarded += p1.tx_burst(0, &mut burst);
            rte::free_bulk(&mut burst);
        }
        let mut built = Vec::new();
        pool.alloc_bulk(&mut built, 16)?;
        for m in built.iter_mut() {
            m.extend_from_slice(&[0xab; 60])?;
        }
        p0.tx_burst(0, &mut built);
        let mut kept = pool.alloc()?;
        kept.extend_from_slice(b"kept and dropped")?;
        drop(kept);
    }
    // Lower many rules (every item and action kind), hand some to the driver.
    let flows = FlowPort::new(&eal, 0)?;
    let mut unsupported = 0;
    for i in 0..200u32 {
        let rule = FlowRule {
            attr: FlowAttr::ingress(i % 4),
            pattern: vec![
                Item::eth_dst(MacAddr([2, 0, 0, 0, 0, i as u8])),
                Item::ipv4_dst_prefix(Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8), 24),
                Item::udp_dst(4789),
                Item::vxlan_vni(i),
            ],
            actions: vec![
                FlowAction::VxlanDecap,
                FlowAction::SetMacSrc(MacAddr([2, 0, 0, 0, 1, 1])),
                FlowAction::DecTtl,
                FlowAction::Count { id: i },
                FlowAction::VxlanEncap(VxlanEncap {
                    eth_src: MacAddr([2, 0, 0, 0, 0, 1]),
                    eth_dst: MacAddr([2, 0, 0, 0, 0, 2]),
                    ip_src: Ipv4Addr::new(172, 31, 0, 1),
                    ip_dst: Ipv4Addr::new(172, 31, 0, 2),
                    udp_src: 49152,
                    udp_dst: 4789,
                    vni: i,
                }),
                FlowAction::Jump { group: i + 1 },
            ],
        };
        let lowered = rule.lower()?;
        if i % 20 == 0 {
            match flows.validate(&lowered) {
                Err(e) if e.is_unsupported() => unsupported += 1,
                other => other?,
            }
        }
    }
    drop((p0, p1, flows, pool));
    eal.cleanup()?;
    Ok(format!(
        "forwarded {forwarded} packets, {unsupported} flow validations answered ENOSYS"
    ))
}
