//! ICMP echo / time-exceeded, ARP replies and the packet-in summary, on byte fixtures;
//! checksums are verified by recomputing them in the test.

mod common;

use std::net::Ipv4Addr;

use common::{hex, ones_sum, DHCLIENT_DISCOVER_HEX};
use wyvern_apps::wire::ethernet::EtherType;
use wyvern_apps::{
    arp_reply, icmp_echo_reply, icmp_time_exceeded, parse_packet_in, EthernetAddress, L4Summary,
};

const VM_MAC: EthernetAddress = EthernetAddress([0x02, 0x00, 0x00, 0xaa, 0xbb, 0x01]);
const ROUTER_MAC: EthernetAddress = EthernetAddress([0xfa, 0x16, 0x3e, 0x00, 0x00, 0x01]);
const VM_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);
const ROUTER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

/// A real `ping -c1 -s 16 10.0.0.1` from 10.0.0.5 in a namespace, captured with tcpdump
/// (02:00:00:aa:bb:01 -> fa:16:3e:00:00:01):
///   eth   fa163e000001 <- 020000aabb01 0800
///   ipv4  45 00 len 002c (44) id bb22 flags 4000 (DF) ttl 40 (64) proto 01 csum 6ba9
///         10.0.0.5 -> 10.0.0.1
///   icmp  08 00 csum de01 id 7262 seq 0001, 16 data bytes (ping's timestamp)
const PING_HEX: &str = concat!(
    "fa163e000001020000aabb010800",
    "4500002cbb22400040016ba90a0000050a000001",
    "0800de017262000189ca0a6b000000000e65050000000000"
);

fn ping() -> Vec<u8> {
    hex(PING_HEX)
}

fn fix_ip_checksum(f: &mut [u8]) {
    f[24] = 0;
    f[25] = 0;
    let c = !ones_sum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
}

#[test]
fn ping_fixture_checksums_are_right() {
    let f = ping();
    assert_eq!(ones_sum(&f[14..34]), 0xffff, "fixture ipv4 checksum");
    assert_eq!(ones_sum(&f[34..]), 0xffff, "fixture icmp checksum");
}

#[test]
fn echo_reply_swaps_and_fixes_checksums() {
    let req = ping();
    let rep = icmp_echo_reply(&req, ROUTER_IP, ROUTER_MAC).expect("reply");
    assert_eq!(rep.len(), req.len());
    assert_eq!(&rep[0..6], &VM_MAC.0, "to the requester's MAC");
    assert_eq!(&rep[6..12], &ROUTER_MAC.0);
    assert_eq!(&rep[12..14], &[0x08, 0x00]);
    let ip = &rep[14..34];
    assert_eq!(ip[8], 64, "TTL 64");
    assert_eq!(ip[9], 1);
    assert_eq!(&ip[12..16], &ROUTER_IP.octets());
    assert_eq!(&ip[16..20], &VM_IP.octets());
    assert_eq!(ones_sum(ip), 0xffff, "ipv4 checksum");
    let icmp = &rep[34..];
    assert_eq!((icmp[0], icmp[1]), (0, 0), "echo reply");
    assert_eq!(&icmp[4..], &req[38..], "id, seq and data unchanged");
    assert_eq!(ones_sum(icmp), 0xffff, "icmp checksum");
    // And the summary of the reply reads back as an echo reply to the VM.
    let s = parse_packet_in(&rep).unwrap();
    let v4 = s.ipv4.unwrap();
    assert_eq!((v4.src, v4.dst, v4.ttl), (ROUTER_IP, VM_IP, 64));
    assert_eq!(
        v4.l4,
        Some(L4Summary::Icmp {
            msg_type: 0,
            code: 0
        })
    );
}

#[test]
fn echo_reply_refusals() {
    let f = ping();
    assert!(
        icmp_echo_reply(&f, Ipv4Addr::new(10, 0, 0, 2), ROUTER_MAC).is_none(),
        "not ours"
    );
    let mut bad = f.clone();
    bad[40] ^= 1; // ICMP checksum now wrong
    assert!(
        icmp_echo_reply(&bad, ROUTER_IP, ROUTER_MAC).is_none(),
        "bad icmp checksum"
    );
    let mut bad = f.clone();
    bad[22] = 1; // IP checksum now wrong
    assert!(
        icmp_echo_reply(&bad, ROUTER_IP, ROUTER_MAC).is_none(),
        "bad ip checksum"
    );
    let mut reply = f.clone();
    reply[34] = 0;
    reply[36] = 0;
    reply[37] = 0;
    let c = !ones_sum(&reply[34..]);
    reply[36..38].copy_from_slice(&c.to_be_bytes());
    assert!(
        icmp_echo_reply(&reply, ROUTER_IP, ROUTER_MAC).is_none(),
        "echo reply is not answered"
    );
    let mut frag = f.clone();
    frag[20] = 0x20; // MF
    fix_ip_checksum(&mut frag);
    assert!(
        icmp_echo_reply(&frag, ROUTER_IP, ROUTER_MAC).is_none(),
        "fragment"
    );
    let mut bsrc = f.clone();
    bsrc[26..30].copy_from_slice(&[255, 255, 255, 255]);
    fix_ip_checksum(&mut bsrc);
    assert!(
        icmp_echo_reply(&bsrc, ROUTER_IP, ROUTER_MAC).is_none(),
        "broadcast source"
    );
    for n in 0..f.len() {
        assert!(
            icmp_echo_reply(&f[..n], ROUTER_IP, ROUTER_MAC).is_none(),
            "truncated to {n}"
        );
    }
}

/// A UDP traceroute probe with TTL 1 from 10.0.0.5 to 10.1.0.7, ports 33434 -> 33435.
fn probe(ttl: u8) -> Vec<u8> {
    let mut f = hex(concat!(
        "fa163e000001020000aabb010800",
        "45000024abcd0000011100000a0000050a010007",
        "829a829b00100000",
        "6162636465666768"
    ));
    f[22] = ttl;
    fix_ip_checksum(&mut f);
    f
}

#[test]
fn time_exceeded_quotes_header_and_8_bytes() {
    let orig = probe(1);
    let te = icmp_time_exceeded(&orig, ROUTER_IP, ROUTER_MAC).expect("time exceeded");
    assert_eq!(&te[0..6], &VM_MAC.0, "to the sender's MAC");
    assert_eq!(&te[6..12], &ROUTER_MAC.0);
    let ip = &te[14..34];
    assert_eq!(ones_sum(ip), 0xffff, "ipv4 checksum");
    assert_eq!(ip[8], 64);
    assert_eq!(ip[9], 1);
    assert_eq!(&ip[12..16], &ROUTER_IP.octets());
    assert_eq!(&ip[16..20], &VM_IP.octets());
    let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    assert_eq!(total, te.len() - 14);
    let icmp = &te[34..];
    assert_eq!((icmp[0], icmp[1]), (11, 0));
    assert_eq!(&icmp[4..8], &[0, 0, 0, 0], "unused");
    assert_eq!(
        &icmp[8..],
        &orig[14..14 + 20 + 8],
        "original header + 8 bytes"
    );
    assert_eq!(ones_sum(icmp), 0xffff, "icmp checksum");
    let s = parse_packet_in(&te).unwrap();
    assert_eq!(
        s.ipv4.unwrap().l4,
        Some(L4Summary::Icmp {
            msg_type: 11,
            code: 0
        })
    );
}

#[test]
fn time_exceeded_for_a_ping_quotes_the_echo_header() {
    let mut f = ping();
    f[22] = 1;
    fix_ip_checksum(&mut f);
    let te = icmp_time_exceeded(&f, ROUTER_IP, ROUTER_MAC).unwrap();
    assert_eq!(&te[34 + 8..], &f[14..14 + 28]);
    assert_eq!(ones_sum(&te[34..]), 0xffff);
}

#[test]
fn time_exceeded_refusals() {
    assert!(
        icmp_time_exceeded(&probe(2), ROUTER_IP, ROUTER_MAC).is_none(),
        "TTL not expired"
    );
    // An ICMP error with TTL 1 is never answered with an error.
    let mut err = ping();
    err[22] = 1;
    err[34] = 3; // destination unreachable
    err[36] = 0;
    err[37] = 0;
    let c = !ones_sum(&err[34..]);
    err[36..38].copy_from_slice(&c.to_be_bytes());
    fix_ip_checksum(&mut err);
    assert!(
        icmp_time_exceeded(&err, ROUTER_IP, ROUTER_MAC).is_none(),
        "icmp error"
    );
    let mut later = probe(1);
    later[20] = 0x00;
    later[21] = 0x10; // fragment offset 128 bytes
    fix_ip_checksum(&mut later);
    assert!(
        icmp_time_exceeded(&later, ROUTER_IP, ROUTER_MAC).is_none(),
        "non-initial fragment"
    );
    let mut mcast = probe(1);
    mcast[30..34].copy_from_slice(&[224, 0, 0, 5]);
    fix_ip_checksum(&mut mcast);
    assert!(
        icmp_time_exceeded(&mcast, ROUTER_IP, ROUTER_MAC).is_none(),
        "multicast dst"
    );
    let mut zero_src = probe(1);
    zero_src[26..30].copy_from_slice(&[0, 0, 0, 0]);
    fix_ip_checksum(&mut zero_src);
    assert!(
        icmp_time_exceeded(&zero_src, ROUTER_IP, ROUTER_MAC).is_none(),
        "0.0.0.0 src"
    );
    let mut l2b = probe(1);
    l2b[0..6].copy_from_slice(&[0xff; 6]);
    assert!(
        icmp_time_exceeded(&l2b, ROUTER_IP, ROUTER_MAC).is_none(),
        "link broadcast"
    );
    let mut bad = probe(1);
    bad[23] ^= 0x55;
    assert!(
        icmp_time_exceeded(&bad, ROUTER_IP, ROUTER_MAC).is_none(),
        "bad ip checksum"
    );
    let f = probe(1);
    for n in 0..f.len() {
        assert!(
            icmp_time_exceeded(&f[..n], ROUTER_IP, ROUTER_MAC).is_none(),
            "truncated {n}"
        );
    }
}

#[test]
fn first_fragment_gets_time_exceeded() {
    let mut first = probe(1);
    first[20] = 0x20; // MF, offset 0
    fix_ip_checksum(&mut first);
    assert!(icmp_time_exceeded(&first, ROUTER_IP, ROUTER_MAC).is_some());
}

/// A real "who-has 10.0.0.1 tell 10.0.0.5" broadcast (Linux, captured with tcpdump).
const ARP_REQ_HEX: &str = concat!(
    "ffffffffffff020000aabb010806",
    "0001080006040001020000aabb010a000005000000000000",
    "0a000001"
);

#[test]
fn arp_reply_answers_who_has() {
    let rep = arp_reply(&hex(ARP_REQ_HEX), ROUTER_IP, ROUTER_MAC).expect("reply");
    let expected = hex(concat!(
        "020000aabb01fa163e0000010806",
        "0001080006040002fa163e0000010a000001020000aabb01",
        "0a000005"
    ));
    assert_eq!(rep, expected);
    assert!(arp_reply(&hex(ARP_REQ_HEX), Ipv4Addr::new(10, 0, 0, 9), ROUTER_MAC).is_none());
    let mut grat = hex(ARP_REQ_HEX);
    grat[28..32].copy_from_slice(&[10, 0, 0, 1]);
    assert!(
        arp_reply(&grat, ROUTER_IP, ROUTER_MAC).is_none(),
        "gratuitous"
    );
    let mut probe = hex(ARP_REQ_HEX);
    probe[28..32].copy_from_slice(&[0, 0, 0, 0]);
    let r = arp_reply(&probe, ROUTER_IP, ROUTER_MAC).expect("probe answered");
    assert_eq!(&r[38..42], &[0, 0, 0, 0]);
    let s = parse_packet_in(&hex(ARP_REQ_HEX)).unwrap();
    let a = s.arp.unwrap();
    assert_eq!(
        (a.operation, a.sender_ip, a.target_ip),
        (1, Ipv4Addr::new(10, 0, 0, 5), ROUTER_IP)
    );
    assert_eq!(a.sender_mac, VM_MAC);
}

#[test]
fn summary_of_dhcp_discover() {
    let s = parse_packet_in(&hex(DHCLIENT_DISCOVER_HEX)).unwrap();
    assert_eq!(s.eth_src, VM_MAC);
    assert!(s.eth_dst.is_broadcast());
    assert_eq!(s.ethertype, EtherType::IPV4);
    let v4 = s.ipv4.unwrap();
    assert_eq!(
        (v4.src, v4.dst, v4.ttl, v4.protocol),
        (Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, 128, 17)
    );
    assert!(!v4.fragment);
    assert_eq!(
        v4.l4,
        Some(L4Summary::Udp {
            src_port: 68,
            dst_port: 67
        })
    );
}

#[test]
fn summary_of_tcp_fragment_and_other() {
    let mut tcp = probe(64);
    tcp[23] = 6;
    tcp.extend_from_slice(&[0u8; 12]);
    let len = (tcp.len() - 14) as u16;
    tcp[16..18].copy_from_slice(&len.to_be_bytes());
    fix_ip_checksum(&mut tcp);
    let v4 = parse_packet_in(&tcp).unwrap().ipv4.unwrap();
    assert_eq!(
        v4.l4,
        Some(L4Summary::Tcp {
            src_port: 33434,
            dst_port: 33435
        })
    );

    let mut later = probe(64);
    later[21] = 0x10;
    let v4 = parse_packet_in(&later).unwrap().ipv4.unwrap();
    assert!(v4.fragment);
    assert_eq!(v4.l4, None, "no transport header in a later fragment");

    let mut v6 = ping();
    v6[12..14].copy_from_slice(&[0x86, 0xdd]);
    let s = parse_packet_in(&v6).unwrap();
    assert_eq!(s.ethertype, EtherType::IPV6);
    assert!(s.ipv4.is_none() && s.arp.is_none());
}

#[test]
fn summary_errors_are_typed() {
    assert_eq!(
        parse_packet_in(&ping()[..10]).unwrap_err().label(),
        "ethernet"
    );
    assert_eq!(parse_packet_in(&ping()[..30]).unwrap_err().label(), "ipv4");
    let mut short_udp = probe(64);
    short_udp[34 + 4..34 + 6].copy_from_slice(&[0, 100]);
    assert_eq!(parse_packet_in(&short_udp).unwrap_err().label(), "udp");
    let mut tcp = probe(64);
    tcp[23] = 6;
    assert_eq!(parse_packet_in(&tcp).unwrap_err().label(), "tcp");
    assert_eq!(
        parse_packet_in(&hex(ARP_REQ_HEX)[..30])
            .unwrap_err()
            .label(),
        "arp"
    );
    let mut icmp = ping();
    icmp.truncate(14 + 20 + 4);
    icmp[16..18].copy_from_slice(&24u16.to_be_bytes());
    assert_eq!(parse_packet_in(&icmp).unwrap_err().label(), "icmp");
}
