//! The flow cache never answers with a stale decision: after every kind of write (insert
//! of a better entry, modify, remove, a cached flow evicted and refilled) the next packet
//! of an already-cached flow gets what a cache-less engine with the same tables says.

use wyvern_engine::packet::encode;
use wyvern_engine::{Engine, Entry, FieldMatch, Out, Verdict};
use wyvern_pipeline::interp::Packet;
use wyvern_pipeline::ir::{NetKey, PortKey};
use wyvern_pipeline::{Action, FieldKind as F, Stage};

mod common;
use common::{base, RMAC, VM1};

fn route_key(dst: u32, len: u32) -> Vec<FieldMatch> {
    vec![
        FieldMatch::exact(F::Router, 1),
        FieldMatch::exact(F::EthType, 0x0800),
        FieldMatch::prefix(F::Ipv4Dst, dst.into(), len),
    ]
}

fn route_actions(out: u32) -> Vec<Action> {
    vec![
        Action::DecTtl,
        Action::SetEthSrc(RMAC),
        Action::SetOutPort(PortKey(out)),
        Action::Goto(Stage::Egress),
    ]
}

/// The same tables twice: `cached` with the flow cache, `plain` without; every write goes
/// to both and every packet is checked against both.
struct Pair {
    cached: Engine,
    plain: Engine,
    frame: Vec<u8>,
}

impl Pair {
    fn new() -> Pair {
        let mut cached = Engine::new();
        let mut plain = Engine::new();
        plain.set_flow_cache(0);
        base(&mut cached);
        base(&mut plain);
        let dst = std::net::Ipv4Addr::new(10, 2, 0, 5);
        let frame = encode(
            &Packet::ipv4(1, VM1, RMAC, "10.1.0.5".parse().unwrap(), dst, 64),
            0,
        );
        Pair {
            cached,
            plain,
            frame,
        }
    }

    fn write(&mut self, f: impl Fn(&mut Engine)) {
        f(&mut self.cached);
        f(&mut self.plain);
    }

    /// Sends the flow's packet twice (so the second answer comes from the cache when the
    /// cache holds it) and returns the verdict both engines agree on.
    fn send(&mut self) -> Verdict {
        let mut want_frame = self.frame.clone();
        let want = self.plain.process(&mut want_frame, 1);
        for round in 0..2 {
            let mut f = self.frame.clone();
            let got = self.cached.process(&mut f, 1);
            assert_eq!(got, want, "round {round}: cached verdict");
            assert_eq!(f, want_frame, "round {round}: cached rewrites");
        }
        want
    }
}

const DST: u32 = 0x0a02_0005;

#[test]
fn a_better_route_inserted_after_caching_wins_at_once() {
    let mut p = Pair::new();
    p.write(|e| {
        e.insert(
            Stage::L3Lookup,
            Entry::new(116, route_key(DST, 16), route_actions(2)),
        )
        .unwrap();
    });
    assert_eq!(p.send(), Verdict::Output(Out::Port(2)));
    let hits = p.cached.cache_stats().hits;
    assert!(hits >= 1, "the second packet came from the cache");
    p.write(|e| {
        e.insert(
            Stage::L3Lookup,
            Entry::new(132, route_key(DST, 32), route_actions(3)),
        )
        .unwrap();
    });
    assert_eq!(p.send(), Verdict::Output(Out::Port(3)));
}

#[test]
fn modify_remove_and_group_writes_invalidate() {
    let mut p = Pair::new();
    p.write(|e| {
        e.insert(
            Stage::L3Lookup,
            Entry::new(124, route_key(DST, 24), route_actions(2)),
        )
        .unwrap();
    });
    assert_eq!(p.send(), Verdict::Output(Out::Port(2)));
    // MODIFY: same key, new actions.
    p.write(|e| {
        e.modify(Stage::L3Lookup, 124, &route_key(DST, 24), route_actions(4))
            .unwrap();
    });
    assert_eq!(p.send(), Verdict::Output(Out::Port(4)));
    // MODIFY to a drop (no terminal action).
    p.write(|e| {
        e.modify(Stage::L3Lookup, 124, &route_key(DST, 24), vec![])
            .unwrap();
    });
    assert!(matches!(
        p.send(),
        Verdict::Drop {
            stage: Stage::L3Lookup,
            ..
        }
    ));
    // DELETE: the miss behaviour of l3_lookup takes over.
    p.write(|e| {
        e.remove(Stage::L3Lookup, 124, &route_key(DST, 24)).unwrap();
    });
    let after_remove = p.send();
    assert!(
        !matches!(after_remove, Verdict::Output(_)),
        "no route, no output: {after_remove:?}"
    );
    // Re-adding it and deleting the egress entry it leads to: dropped at egress.
    p.write(|e| {
        e.insert(
            Stage::L3Lookup,
            Entry::new(124, route_key(DST, 24), route_actions(2)),
        )
        .unwrap();
    });
    assert_eq!(p.send(), Verdict::Output(Out::Port(2)));
    p.write(|e| {
        e.remove(Stage::Egress, 100, &[FieldMatch::exact(F::OutPort, 2)])
            .unwrap();
    });
    assert!(matches!(
        p.send(),
        Verdict::Drop {
            stage: Stage::Egress,
            ..
        }
    ));
    // Flood groups are read at dispatch time, and a group write invalidates as well.
    p.write(|e| e.set_flood_group(NetKey(1), vec![2, 3]));
    assert!(matches!(
        p.send(),
        Verdict::Drop {
            stage: Stage::Egress,
            ..
        }
    ));
}

#[test]
fn a_flow_evicted_from_a_tiny_cache_comes_back_right() {
    let mut p = Pair::new();
    // Two slots (one set): the routed flow and packets from many other sources compete.
    p.cached.set_flow_cache(2);
    p.write(|e| {
        e.insert(
            Stage::L3Lookup,
            Entry::new(124, route_key(DST, 24), route_actions(2)),
        )
        .unwrap();
    });
    for i in 0..50u8 {
        assert_eq!(p.send(), Verdict::Output(Out::Port(2)));
        let mut other = encode(
            &Packet::ipv4(
                1,
                VM1,
                RMAC,
                std::net::Ipv4Addr::new(10, 1, 0, i),
                std::net::Ipv4Addr::new(10, 2, 0, 5),
                64,
            ),
            0,
        );
        let mut other2 = other.clone();
        assert_eq!(
            p.cached.process(&mut other, 1),
            p.plain.process(&mut other2, 1)
        );
        assert_eq!(other, other2);
        if i == 25 {
            p.write(|e| {
                e.modify(Stage::L3Lookup, 124, &route_key(DST, 24), route_actions(3))
                    .unwrap();
            });
            assert_eq!(p.send(), Verdict::Output(Out::Port(3)));
            p.write(|e| {
                e.modify(Stage::L3Lookup, 124, &route_key(DST, 24), route_actions(2))
                    .unwrap();
            });
        }
    }
    let s = p.cached.cache_stats();
    assert!(s.hits > 0 && s.misses > 0, "{s:?}");
    // Counters are exact with the cache: `send` gives the cached engine each of its 51
    // packets twice, the plain one once; the 50 other flows match this route too.
    let id_c = p
        .cached
        .find(Stage::L3Lookup, 124, &route_key(DST, 24))
        .unwrap();
    let id_p = p
        .plain
        .find(Stage::L3Lookup, 124, &route_key(DST, 24))
        .unwrap();
    let (c, q) = (
        p.cached.counters(id_c).unwrap(),
        p.plain.counters(id_p).unwrap(),
    );
    assert_eq!(q.packets, 51 + 50);
    assert_eq!(c.packets, q.packets + 51);
    assert_eq!(c.bytes, q.bytes + 51 * p.frame.len() as u64);
}
