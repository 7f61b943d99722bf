//! ~20,000 random and mutated frames (seeded, reproducible) through every packet-in entry
//! point: nothing may panic, every reply must parse, and the mutations must reach the deep
//! paths (replies and many distinct drop reasons), or the test proves nothing.

mod common;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use common::*;
use dhcproto::v4::{DhcpOption, MessageType};
use rand::{rngs::StdRng, Rng, SeedableRng};
use wyvern_apps::fuzzing::{fuzz_context, run_all};
use wyvern_apps::handle_dhcp;

const PING: &str = concat!(
    "fa163e000001020000aabb010800",
    "4500002cbb22400040016ba90a0000050a000001",
    "0800de017262000189ca0a6b000000000e65050000000000"
);
const PROBE_TTL1: &str = concat!(
    "fa163e000001020000aabb010800",
    "45000024abcd0000011100000a0000050a010007",
    "829a829b00100000",
    "6162636465666768"
);
const ARP_REQ: &str =
    "ffffffffffff020000aabb0108060001080006040001020000aabb010a0000050000000000000a000001";

fn fix_ip_checksum(f: &mut [u8]) {
    if f.len() >= 34 {
        f[24] = 0;
        f[25] = 0;
        let c = !ones_sum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let mut probe = hex(PROBE_TTL1);
    fix_ip_checksum(&mut probe);
    let mut v = vec![hex(DHCLIENT_DISCOVER_HEX), hex(PING), probe, hex(ARP_REQ)];
    let mut sel = client_msg(MessageType::Request, 1);
    sel.opts_mut().insert(DhcpOption::ServerIdentifier(GATEWAY));
    sel.opts_mut()
        .insert(DhcpOption::RequestedIpAddress(PORT_IP));
    v.push(broadcast_frame(&sel));
    let mut reboot = client_msg(MessageType::Request, 2);
    reboot
        .opts_mut()
        .insert(DhcpOption::RequestedIpAddress(PORT_IP));
    v.push(broadcast_frame(&reboot));
    let mut renew = client_msg(MessageType::Request, 3);
    renew.set_ciaddr(PORT_IP);
    v.push(client_frame(&renew, PORT_IP, GATEWAY));
    let mut inform = client_msg(MessageType::Inform, 4);
    inform.set_ciaddr(PORT_IP);
    v.push(client_frame(&inform, PORT_IP, Ipv4Addr::BROADCAST));
    v.push(broadcast_frame(&client_msg(MessageType::Release, 5)));
    v.push(broadcast_frame(&client_msg(MessageType::Decline, 6)));
    v
}

fn mutate(rng: &mut StdRng, seed: &[u8]) -> Vec<u8> {
    let mut f = seed.to_vec();
    match rng.random_range(0..6) {
        0 => {
            // Flip a few bytes anywhere.
            for _ in 0..rng.random_range(1..8) {
                if !f.is_empty() {
                    let i = rng.random_range(0..f.len());
                    f[i] = rng.random();
                }
            }
        }
        1 => {
            let n = rng.random_range(0..=f.len());
            f.truncate(n);
        }
        2 => {
            // Damage the DHCP options area (past the 282-byte eth+ip+udp+bootp prefix).
            for _ in 0..rng.random_range(1..6) {
                if f.len() > 282 {
                    let i = rng.random_range(282..f.len());
                    f[i] = rng.random();
                }
            }
        }
        3 => {
            // Lie in a length field: IPv4 total length, UDP length, or an early option length.
            let at = [16usize, 38, 283, 286][rng.random_range(0..4)];
            if f.len() > at + 1 {
                f[at] = rng.random();
                f[at + 1] = rng.random();
            }
        }
        4 => {
            let extra = rng.random_range(1..64);
            f.extend((0..extra).map(|_| rng.random::<u8>()));
        }
        _ => {
            // Change fields that select code paths: ttl, protocol, ports, op, msg type.
            let at = [22usize, 23, 34, 36, 42, 43, 284][rng.random_range(0..7)];
            if at < f.len() {
                f[at] = rng.random_range(0..12);
            }
        }
    }
    if rng.random_bool(0.7) {
        fix_ip_checksum(&mut f);
    }
    f
}

#[test]
fn twenty_thousand_frames_never_panic() {
    let (ctx, cfg) = fuzz_context();
    let seeds = seeds();
    // Every seed is a valid input that does something.
    for s in &seeds {
        let h = run_all(s, &ctx, &cfg);
        assert!(h.parsed, "seed must parse");
    }
    let mut rng = StdRng::seed_from_u64(0x5eed_0005);
    let mut labels = BTreeSet::new();
    let (mut dhcp_replies, mut echo, mut te, mut arp, mut silent) = (0, 0, 0, 0, 0);
    let total = 20_000;
    for i in 0..total {
        let frame = if i % 5 == 0 {
            let len = rng.random_range(0..600);
            (0..len).map(|_| rng.random::<u8>()).collect()
        } else {
            let s = &seeds[rng.random_range(0..seeds.len())];
            mutate(&mut rng, s)
        };
        let h = run_all(&frame, &ctx, &cfg);
        dhcp_replies += usize::from(h.dhcp_reply);
        silent += usize::from(h.dhcp_no_reply);
        echo += usize::from(h.echo_reply);
        te += usize::from(h.time_exceeded);
        arp += usize::from(h.arp_reply);
        if let Err(d) = handle_dhcp(&frame, &ctx, &cfg) {
            labels.insert(d.label());
        }
    }
    eprintln!(
        "{total} frames: dhcp replies {dhcp_replies}, no-reply {silent}, echo {echo}, \
         time-exceeded {te}, arp {arp}, drop reasons seen {labels:?}"
    );
    assert!(
        dhcp_replies > 500,
        "mutations must still reach replies: {dhcp_replies}"
    );
    assert!(silent > 50 && echo > 50 && te > 50 && arp > 50);
    assert!(
        labels.len() >= 14,
        "only {} drop reasons reached: {labels:?}",
        labels.len()
    );
}
