//! The fast path on two null PMD ports (the null PMD hands out a frame on every receive
//! and swallows every send). Frames are rewritten from templates (see
//! `FastPath::set_rx_template`): port 0 carries vm1 -> vm2 unicast, which must all leave
//! through port 1; port 1 carries DHCP DISCOVERs, which must all be punted into a channel
//! of 8 that nobody drains, so the rest are counted as punt drops. Packet-out through the
//! injector leaves by the named port. One EAL per process: its own binary, one test.

mod common;

use std::sync::{Arc, Mutex};

use rte::{Eal, Mempool, PoolConfig};
use wyvern_engine::packet::encode;
use wyvern_engine::Engine;
use wyvern_fastpath::{Config, FastPath, FastPathError};
use wyvern_pipeline::interp::Packet;
use wyvern_pipeline::Stage;

#[test]
fn null_ports_forward_punt_and_count() -> anyhow::Result<()> {
    let t = common::topo::build(1, 3, 0);
    let (vm1, vm2) = (&t.vms[0], &t.vms[1]);
    let engine = Arc::new(Mutex::new(Engine::from_ir(&t.flows(), &t.groups())?));
    let run_dir = wyvern_testkit::pcap::DpdkRunDir::new("null");
    let eal = Eal::init(&[
        "--no-huge",
        "--no-pci",
        "-m",
        "512",
        "--file-prefix",
        &run_dir.prefix,
        "--vdev=net_null0",
        "--vdev=net_null1",
        "-l",
        "0",
        "--no-telemetry",
        "--log-level=warning",
    ])?;
    let pool = Mempool::pktmbuf_pool(
        &eal,
        "fp_null",
        &PoolConfig {
            size: 8191,
            cache_size: 256,
            ..Default::default()
        },
    )?;
    let ports = vec![
        common::start_port(&eal, 0, &pool)?,
        common::start_port(&eal, 1, &pool)?,
    ];
    let unicast = encode(&Packet::ipv4(1, vm1.mac, vm2.mac, vm1.ip, vm2.ip, 64), 0);
    let discover = encode(&Packet::dhcp_discover(2, vm2.mac), 0);
    let rounds = 1000;
    let (stats, punted, port_out) = {
        let (mut fp, punt_rx) = FastPath::new(
            &ports,
            &[vm1.ofport, vm2.ofport],
            &pool,
            Arc::clone(&engine),
            Config {
                punt_capacity: 8,
                ..Config::default()
            },
        )?;
        assert!(matches!(
            FastPath::new(
                &ports,
                &[1, 1],
                &pool,
                Arc::clone(&engine),
                Config::default()
            ),
            Err(FastPathError::DuplicateOfport { ofport: 1 })
        ));
        fp.set_rx_template(0, Some(unicast.clone()));
        fp.set_rx_template(1, Some(discover));
        for _ in 0..rounds {
            fp.poll();
        }
        // Packet-out from another thread's handle, and to a port nobody is bound to.
        fp.injector().send((vm1.ofport, unicast.clone()))?;
        assert!(matches!(
            fp.send(999, &unicast),
            Err(FastPathError::NoSuchPort { ofport: 999 })
        ));
        let before = ports[0].stats()?.opackets;
        fp.poll();
        let port_out = ports[0].stats()?.opackets - before;
        (fp.stats(), punt_rx.try_iter().count(), port_out)
    };
    let burst = u64::from(Config::default().burst);
    assert!(
        stats.rx >= 2 * burst * rounds,
        "null ports always deliver: {stats:?}"
    );
    let per_port = stats.rx / 2;
    // Every unicast frame from port 0 left through port 1 (tx counts queue acceptance).
    let p1 = ports[1].stats()?;
    assert_eq!(
        stats.tx,
        p1.opackets + ports[0].stats()?.opackets,
        "{stats:?}"
    );
    assert_eq!(stats.tx_full, 0);
    assert!(p1.opackets >= per_port - burst, "{stats:?} {p1:?}");
    // Every DISCOVER was punted or counted as lost: the channel holds 8.
    assert_eq!(punted, 8);
    assert_eq!(stats.punts, 8);
    assert_eq!(
        stats.punts + stats.punt_dropped + stats.tx,
        stats.rx + stats.injected
    );
    assert_eq!(stats.drops(), 0);
    assert_eq!(stats.dropped_at(Stage::PortSecurity), 0);
    assert_eq!(stats.injected, 1);
    assert!(port_out >= 1, "the injected frame left through port 0");
    assert_eq!(stats.no_port, 1);
    // The engine counted the classify entries of both ports.
    let eng = engine.lock().unwrap();
    let hits: u64 = eng
        .entries(Stage::Classify)
        .map(|e| e.counters.packets)
        .sum();
    assert_eq!(hits, stats.rx);
    drop(eng);
    drop(ports);
    drop(pool);
    eal.cleanup()?;
    Ok(())
}
