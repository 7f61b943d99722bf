//! Micro-benchmark: full DORA exchanges (DISCOVER -> OFFER, REQUEST -> ACK) per second
//! handled by the pure `handle_dhcp` on one core. Prints one JSON object.
//!
//! `cargo run --release -p wyvern-apps --example dhcp_rate [seconds]`

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode, OptionCode};
use dhcproto::Encodable;
use wyvern_apps::fuzzing::fuzz_context;
use wyvern_apps::handle_dhcp;
use wyvern_apps::wire::{
    ethernet::{EtherType, EthernetFrame, EthernetRepr},
    ipv4::Ipv4Repr,
    udp::UdpRepr,
};
use wyvern_apps::EthernetAddress;

fn client_frame(mac: EthernetAddress, msg: &Message) -> Vec<u8> {
    let payload = msg.to_vec().expect("encode");
    let (src, dst) = (Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST);
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: 17,
        payload_len: 8 + payload.len(),
        ttl: 128,
        ident: 0,
        dscp_ecn: 0,
        dont_frag: false,
    };
    let mut buf = vec![0u8; 14 + ip.buffer_len()];
    let mut eth = EthernetFrame::new_checked(&mut buf[..]).expect("frame");
    EthernetRepr {
        src_addr: mac,
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EtherType::IPV4,
    }
    .emit(&mut eth);
    let l3 = eth.payload_mut();
    assert!(ip.emit(l3));
    let udp = UdpRepr {
        src_port: 68,
        dst_port: 67,
    };
    assert!(udp.emit(&mut l3[20..], src, dst, &payload));
    buf
}

fn msg(mac: EthernetAddress, t: MessageType) -> Message {
    let mut m = Message::new_with_id(
        0x1234_5678,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &mac.0,
    );
    m.set_opcode(Opcode::BootRequest);
    m.opts_mut().insert(DhcpOption::MessageType(t));
    m.opts_mut().insert(DhcpOption::Hostname("vm".into()));
    m.opts_mut().insert(DhcpOption::ParameterRequestList(
        [1u8, 28, 2, 3, 15, 6, 119, 12, 44, 47, 26, 121, 42]
            .iter()
            .map(|&c| OptionCode::from(c))
            .collect(),
    ));
    m
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let (ctx, cfg) = fuzz_context();
    let discover = client_frame(ctx.port_mac, &msg(ctx.port_mac, MessageType::Discover));
    let mut req = msg(ctx.port_mac, MessageType::Request);
    req.opts_mut()
        .insert(DhcpOption::ServerIdentifier(ctx.server_ip));
    req.opts_mut()
        .insert(DhcpOption::RequestedIpAddress(ctx.port_ip));
    let request = client_frame(ctx.port_mac, &req);

    // Sanity: the exchange really is OFFER then ACK.
    let offer = handle_dhcp(&discover, &ctx, &cfg).expect("offer");
    let ack = handle_dhcp(&request, &ctx, &cfg).expect("ack");
    assert_eq!(offer.reply_kind().map(|k| k.label()), Some("offer"));
    assert_eq!(ack.reply_kind().map(|k| k.label()), Some("ack"));

    let budget = Duration::from_secs_f64(secs);
    let mut exchanges: u64 = 0;
    let (mut t_discover, mut t_request) = (Duration::ZERO, Duration::ZERO);
    let start = Instant::now();
    while start.elapsed() < budget {
        for _ in 0..256 {
            let t0 = Instant::now();
            black_box(handle_dhcp(black_box(&discover), &ctx, &cfg).ok());
            let t1 = Instant::now();
            black_box(handle_dhcp(black_box(&request), &ctx, &cfg).ok());
            let t2 = Instant::now();
            t_discover += t1 - t0;
            t_request += t2 - t1;
        }
        exchanges += 256;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let out = serde_json::json!({
        "bench": "dhcp_dora_pure_function",
        "cores": 1,
        "seconds": elapsed,
        "exchanges": exchanges,
        "exchanges_per_sec": (exchanges as f64 / elapsed).round(),
        "ns_per_discover": (t_discover.as_nanos() as f64 / exchanges as f64).round(),
        "ns_per_request": (t_request.as_nanos() as f64 / exchanges as f64).round(),
        "reply_bytes": offer.reply_frame().map(<[u8]>::len),
    });
    println!("{out}");
}
