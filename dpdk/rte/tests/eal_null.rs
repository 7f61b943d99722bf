//! The real EAL with two null PMD ports. EAL can be initialised once per process, so this
//! file (its own test binary) holds a single test that walks through everything in order.

mod common;

use rte::flow::{FlowAction, FlowAttr, FlowPort, Item, LoweredRule};
use rte::{Eal, Mbuf, Mempool, PoolConfig, Port, PortConf, RteError};

const BURST: u16 = 32;

#[test]
fn eal_null_ports_bursts_stats_and_flow_enosys() {
    let run_dir = common::RunDir::new("eal");
    let args = common::null_eal_args(&run_dir);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let eal = Eal::init(&argv).expect("EAL init");
    assert!(
        run_dir.path().exists(),
        "EAL should create its run dir {:?}",
        run_dir.path()
    );
    assert_eq!(
        rte::lcore_id(),
        0,
        "the initialising thread is the main lcore"
    );

    // Once per process, explicitly.
    assert!(matches!(
        Eal::init(&argv),
        Err(RteError::EalAlreadyInitialised)
    ));

    assert_eq!(eal.eth_dev_count(), 2);
    assert_eq!(eal.port_ids(), vec![0, 1]);
    assert!(matches!(
        Port::open(&eal, 7),
        Err(RteError::PortNotFound { port: 7 })
    ));

    let pool = Mempool::pktmbuf_pool(
        &eal,
        "test_pool",
        &PoolConfig {
            size: 4095,
            cache_size: 64,
            ..Default::default()
        },
    )
    .expect("pool");
    assert_eq!(pool.in_use_count(), 0);

    let mut p0 = Port::open(&eal, 0).expect("open port 0");
    let mut p1 = Port::open(&eal, 1).expect("open port 1");
    assert!(
        matches!(Port::open(&eal, 0), Err(RteError::PortState { .. })),
        "one handle per port"
    );

    let info = p0.info().expect("info");
    assert_eq!(info.driver_name, "net_null");
    assert_eq!(info.name, "net_null0");
    assert!(
        info.max_rx_queues >= 1 && info.max_tx_queues >= 1,
        "{info:?}"
    );
    let mac = p0.mac_addr().expect("mac");
    assert_ne!(mac, rte::MacAddr::ZERO);
    assert_eq!(mac.0[0] & 1, 0, "port MAC must be unicast: {mac}");

    // Starting before configuration or queue setup is refused (the burst paths rely on it).
    assert!(matches!(p0.start(), Err(RteError::PortState { .. })));
    for p in [&mut p0, &mut p1] {
        p.configure(&PortConf {
            rx_queues: 1,
            tx_queues: 1,
        })
        .expect("configure");
        assert!(matches!(p.start(), Err(RteError::PortState { .. })));
        p.setup_rx_queue(0, 512, &pool).expect("rx queue");
        p.setup_tx_queue(0, 512).expect("tx queue");
        assert!(matches!(
            p.setup_rx_queue(1, 512, &pool),
            Err(RteError::PortState { .. })
        ));
        match p.set_promiscuous(true) {
            Ok(()) => assert!(p.promiscuous().expect("promiscuous get")),
            Err(e) => assert!(e.is_unsupported(), "promiscuous: {e}"),
        }
        p.start().expect("start");
        assert!(p.is_started());
        assert!(matches!(
            p.configure(&PortConf {
                rx_queues: 1,
                tx_queues: 1
            }),
            Err(RteError::PortState { .. })
        ));
        p.reset_stats().expect("reset stats");
    }

    // RX: the null PMD hands out full bursts of 64-byte packets from our pool.
    let mut burst: Vec<Mbuf<'_>> = Vec::with_capacity(BURST as usize);
    let n = p0.rx_burst(0, &mut burst, BURST);
    assert_eq!(n, BURST as usize);
    assert_eq!(burst.len(), BURST as usize);
    assert!(burst
        .iter()
        .all(|m| m.data_len() == 64 && m.pkt_len() == 64 && m.port() == 0 && m.nb_segs() == 1));
    assert_eq!(pool.in_use_count(), BURST as u32);
    assert_eq!(
        p0.rx_burst(9, &mut burst, BURST),
        0,
        "unknown queue yields nothing"
    );

    // TX: sent mbufs leave the Vec; the driver frees them.
    let sent = p1.tx_burst(0, &mut burst);
    assert_eq!(sent, BURST as usize);
    assert!(burst.is_empty());
    assert_eq!(pool.in_use_count(), 0, "the null PMD freed what it sent");
    assert_eq!(p1.tx_burst(3, &mut burst), 0);

    // Mbufs we build ourselves: data access, append limits, drop returns them.
    let frame: Vec<u8> = (0u8..60).collect();
    let mut m = pool.alloc().expect("alloc");
    assert_eq!(m.data_len(), 0);
    m.extend_from_slice(&frame).expect("append");
    assert_eq!(m.data(), &frame[..]);
    m.data_mut()[0] = 0xaa;
    assert_eq!(m.data()[0], 0xaa);
    let room = m.tailroom();
    assert!(matches!(
        m.append(room + 1),
        Err(RteError::MbufAppend { .. })
    ));
    assert!(m.adj(14));
    assert_eq!(m.data_len(), 46);
    // The Rust-side field reads agree with DPDK's own rte_pktmbuf_mtod / data_len (C shim).
    let c_view = |m: &Mbuf<'_>| unsafe {
        // SAFETY: a valid mbuf we own; the shim only reads it.
        (
            rte::ffi::wyv_rte_pktmbuf_mtod(m.as_ptr()) as *const u8,
            usize::from(rte::ffi::wyv_rte_pktmbuf_data_len(m.as_ptr())),
        )
    };
    assert_eq!(c_view(&m), (m.data().as_ptr(), m.data_len()));
    assert_eq!(m.data()[0], 14, "adj moved the data start by 14 bytes");
    assert!(m.prepend(14).is_ok());
    assert_eq!(m.data_len(), 60);
    assert_eq!(c_view(&m), (m.data().as_ptr(), m.data_len()));
    assert_eq!(m.data()[14], 14);
    assert!(m.trim(10));
    assert_eq!(m.pkt_len(), 50);
    assert_eq!(pool.in_use_count(), 1);
    drop(m);
    assert_eq!(pool.in_use_count(), 0);

    let mut built = Vec::new();
    pool.alloc_bulk(&mut built, 8).expect("bulk alloc");
    for m in built.iter_mut() {
        m.extend_from_slice(&frame).expect("append");
    }
    assert_eq!(p0.tx_burst(0, &mut built), 8);
    let mut rest = Vec::new();
    pool.alloc_bulk(&mut rest, 4).expect("bulk alloc");
    rte::free_bulk(&mut rest);
    assert!(rest.is_empty());
    assert_eq!(pool.in_use_count(), 0);

    // Forward a few bursts both ways and check the counters.
    let mut fwd = Vec::with_capacity(BURST as usize);
    for _ in 0..10 {
        p0.rx_burst(0, &mut fwd, BURST);
        p1.tx_burst(0, &mut fwd);
        p1.rx_burst(0, &mut fwd, BURST);
        p0.tx_burst(0, &mut fwd);
        assert!(fwd.is_empty());
    }
    let s0 = p0.stats().expect("stats");
    let s1 = p1.stats().expect("stats");
    assert_eq!(s0.ipackets, 32 + 320);
    assert_eq!(s1.opackets, 32 + 320);
    assert_eq!(s1.ipackets, 320);
    assert_eq!(s0.opackets, 8 + 320);
    assert_eq!(s0.ierrors + s1.oerrors, 0);

    // Prefilled data: every free mbuf written once; the null PMD (copy=0) then delivers
    // exactly those bytes, burst after burst, while the mbufs cycle through TX and back.
    let pattern: Vec<u8> = (100u8..160).collect();
    let written = pool
        .prefill_data(pattern.len(), |i, d| {
            d.copy_from_slice(&pattern);
            d[59] = (i % 7) as u8;
        })
        .expect("prefill");
    assert_eq!(written, 4095, "every mbuf of the pool, none held elsewhere");
    assert_eq!(pool.in_use_count(), 0);
    for _ in 0..40 {
        p0.rx_burst(0, &mut fwd, BURST);
        assert_eq!(fwd.len(), BURST as usize);
        for m in &fwd {
            assert_eq!(m.data_len(), 64);
            assert_eq!(&m.data()[..59], &pattern[..59], "prefilled bytes delivered");
            assert!(m.data()[59] < 7);
        }
        p1.tx_burst(0, &mut fwd);
    }

    // rte_flow: the null PMD has none: ENOSYS, reported as Unsupported on every call.
    let flows = FlowPort::new(&eal, 0).expect("flow port");
    let rule = LoweredRule::new(
        &FlowAttr::ingress(0),
        &[Item::eth_dst(mac), Item::ipv4_any()],
        &[FlowAction::DecTtl, FlowAction::Queue { index: 0 }],
    )
    .expect("lower");
    for (what, res) in [
        ("validate", flows.validate(&rule)),
        ("create", flows.create(&rule).map(|_| ())),
        ("flush", flows.flush()),
        ("isolate", flows.isolate(true)),
    ] {
        let err = res.expect_err(what);
        assert!(err.is_unsupported(), "{what}: {err}");
        assert_eq!(err.errno(), Some(38), "{what}: {err}");
        assert!(err.to_string().contains("not supported"), "{what}: {err}");
    }

    // Stop (the borrow checker insists every mbuf tied to the ports is gone first).
    drop((burst, built, rest, fwd));
    p0.stop().expect("stop");
    p1.stop().expect("stop");
    assert!(!p0.is_started());
    assert!(p0.stats().is_ok());
    let mut after_stop = Vec::new();
    assert_eq!(
        p0.rx_burst(0, &mut after_stop, BURST),
        0,
        "a stopped port receives nothing"
    );
    drop(after_stop);

    // EAL cannot be cleaned up while ports and pools hold it.
    match eal.clone().cleanup() {
        Err(RteError::EalBusy { holders }) => assert!(holders >= 4, "holders {holders}"),
        other => panic!("expected EalBusy, got {other:?}"),
    }
    drop((p0, p1, flows, rule, pool));
    eal.cleanup().expect("EAL cleanup");
    assert!(
        matches!(Eal::init(&argv), Err(RteError::EalAlreadyInitialised)),
        "no second EAL after cleanup"
    );
}
