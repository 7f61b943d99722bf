//! DHCP server behaviour, as a client sees it: real dhclient bytes, full DORA, every
//! REQUEST state, NAKs, INFORM, options (121 byte by byte against RFC 3442), drops.

mod common;

use std::net::Ipv4Addr;

use common::*;
use dhcproto::v4::{DhcpOption, MessageType, OptionCode};
use dhcproto::Encodable;
use wyvern_apps::{
    handle_dhcp, DhcpDrop, DhcpReplyKind, DhcpRequestKind, DhcpResponse, DhcpSubnet, HostRoute,
    NoReplyReason, RequestState,
};

fn ack_or_offer(frame: &[u8]) -> (wyvern_apps::DhcpOutcome, Reply) {
    let out = handle_dhcp(frame, &ctx(), &cfg()).expect("handled");
    let r = parse_reply(out.reply_frame().expect("a reply"));
    (out, r)
}

fn msg_type(r: &Reply) -> MessageType {
    r.msg.opts().msg_type().unwrap()
}

#[test]
fn real_dhclient_discover_gets_offer() {
    let frame = hex(DHCLIENT_DISCOVER_HEX);
    assert_eq!(frame.len(), 342);
    let (out, r) = ack_or_offer(&frame);
    assert_eq!(out.request, DhcpRequestKind::Discover);
    assert_eq!(out.reply_kind(), Some(DhcpReplyKind::Offer));
    assert_eq!(msg_type(&r), MessageType::Offer);
    assert_eq!(r.msg.xid(), 0x3230857d);
    assert_eq!(r.msg.yiaddr(), PORT_IP);
    assert_eq!(r.msg.ciaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(&r.msg.chaddr()[..6], &PORT_MAC.0);
    // No broadcast flag: unicast to chaddr / yiaddr, from the router's MAC and IP.
    assert_eq!((r.eth_src, r.eth_dst), (ROUTER_MAC, PORT_MAC));
    assert_eq!((r.ip_src, r.ip_dst), (GATEWAY, PORT_IP));
    assert_eq!((r.sport, r.dport), (67, 68));
    assert_eq!(r.ttl, 64);
    assert!(r.bootp.len() >= 300, "padded to the BOOTP minimum");
}

#[test]
fn dhcproto_built_discover_is_answered_like_the_real_one() {
    let real = handle_dhcp(&hex(DHCLIENT_DISCOVER_HEX), &ctx(), &cfg()).unwrap();
    let built = broadcast_frame(&client_msg(MessageType::Discover, 0x3230857d));
    let ours = handle_dhcp(&built, &ctx(), &cfg()).unwrap();
    assert_eq!(
        real, ours,
        "same xid, same request content: same reply bytes"
    );
}

#[test]
fn offer_options_follow_prl_order_and_values() {
    let (_, r) = ack_or_offer(&hex(DHCLIENT_DISCOVER_HEX));
    let opts = raw_options(&r.bootp);
    let codes: Vec<u8> = opts.iter().map(|(c, _)| *c).collect();
    // 53, 54, lease times first; then PRL order 1, 28, 3, 15, 6, 26, 121 (2, 119, 12, 44,
    // 47, 42 are not offered).
    assert_eq!(codes, vec![53, 54, 51, 58, 59, 1, 28, 3, 15, 6, 26, 121]);
    let get = |c| option(&r.bootp, c).unwrap();
    assert_eq!(get(53), vec![2]);
    assert_eq!(get(54), GATEWAY.octets());
    assert_eq!(get(51), 43_200u32.to_be_bytes());
    assert_eq!(get(58), 21_600u32.to_be_bytes());
    assert_eq!(get(59), 37_800u32.to_be_bytes());
    assert_eq!(get(1), [255, 255, 255, 0]);
    assert_eq!(get(28), [10, 0, 0, 255]);
    assert_eq!(get(3), GATEWAY.octets());
    assert_eq!(get(15), b"openstacklocal");
    assert_eq!(get(6), [10, 0, 0, 2, 10, 0, 0, 3]);
    assert_eq!(
        get(26),
        1450u16.to_be_bytes(),
        "1500 less 50 bytes of VXLAN"
    );
    // 192.168.0.0/16 via 10.0.0.254, then 0.0.0.0/0 via the gateway.
    assert_eq!(
        get(121),
        [16, 192, 168, 10, 0, 0, 254, 0, 10, 0, 0, 1],
        "host route then default route"
    );
}

#[test]
fn without_prl_options_come_in_code_order() {
    let mut m = client_msg(MessageType::Discover, 7);
    m.opts_mut().remove(OptionCode::ParameterRequestList);
    let (_, r) = ack_or_offer(&broadcast_frame(&m));
    let codes: Vec<u8> = raw_options(&r.bootp).iter().map(|(c, _)| *c).collect();
    assert_eq!(codes, vec![53, 54, 51, 58, 59, 1, 3, 6, 15, 26, 28, 121]);
}

#[test]
fn full_dora_then_renew_rebind_release() {
    // DISCOVER -> OFFER
    let (_, offer) = ack_or_offer(&broadcast_frame(&client_msg(MessageType::Discover, 1)));
    assert_eq!(msg_type(&offer), MessageType::Offer);
    let server_id = match offer.msg.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => *ip,
        other => panic!("no server id: {other:?}"),
    };
    // REQUEST (SELECTING) -> ACK
    let mut req = client_msg(MessageType::Request, 1);
    req.opts_mut()
        .insert(DhcpOption::ServerIdentifier(server_id));
    req.opts_mut()
        .insert(DhcpOption::RequestedIpAddress(offer.msg.yiaddr()));
    let (out, ack) = ack_or_offer(&broadcast_frame(&req));
    assert_eq!(
        out.request,
        DhcpRequestKind::Request(RequestState::Selecting)
    );
    assert_eq!(msg_type(&ack), MessageType::Ack);
    assert_eq!(ack.msg.yiaddr(), PORT_IP);
    assert_eq!(ack.msg.xid(), 1);
    assert_eq!(option(&ack.bootp, 51).unwrap(), 43_200u32.to_be_bytes());
    assert_eq!((ack.eth_dst, ack.ip_dst), (PORT_MAC, PORT_IP));

    // RENEWING: unicast from the leased address to the server, ciaddr set.
    let mut renew = client_msg(MessageType::Request, 2);
    renew.set_ciaddr(PORT_IP);
    let (out, r) = ack_or_offer(&client_frame(&renew, PORT_IP, GATEWAY));
    assert_eq!(
        out.request,
        DhcpRequestKind::Request(RequestState::Renewing)
    );
    assert_eq!(msg_type(&r), MessageType::Ack);
    assert_eq!(r.msg.ciaddr(), PORT_IP);
    assert_eq!(r.msg.yiaddr(), PORT_IP);
    assert_eq!(
        (r.eth_dst, r.ip_dst),
        (PORT_MAC, PORT_IP),
        "unicast to ciaddr"
    );

    // REBINDING: the same, broadcast.
    let (out, r) = ack_or_offer(&client_frame(&renew, PORT_IP, Ipv4Addr::BROADCAST));
    assert_eq!(
        out.request,
        DhcpRequestKind::Request(RequestState::Rebinding)
    );
    assert_eq!(msg_type(&r), MessageType::Ack);
    assert_eq!(
        r.ip_dst, PORT_IP,
        "ACK to a rebinding client goes to ciaddr"
    );

    // RELEASE: no reply.
    let mut rel = client_msg(MessageType::Release, 3);
    rel.set_ciaddr(PORT_IP);
    rel.opts_mut()
        .insert(DhcpOption::ServerIdentifier(server_id));
    let out = handle_dhcp(&client_frame(&rel, PORT_IP, GATEWAY), &ctx(), &cfg()).unwrap();
    assert_eq!(out.request, DhcpRequestKind::Release);
    assert_eq!(out.response, DhcpResponse::NoReply(NoReplyReason::Release));
}

#[test]
fn broadcast_flag_means_broadcast_reply() {
    let m = with_flags(client_msg(MessageType::Discover, 9), true);
    let (_, r) = ack_or_offer(&broadcast_frame(&m));
    assert_eq!(r.eth_dst, wyvern_apps::EthernetAddress::BROADCAST);
    assert_eq!(r.ip_dst, Ipv4Addr::BROADCAST);
    assert!(r.msg.flags().broadcast(), "flags echoed");
}

#[test]
fn selecting_for_another_server_is_silent() {
    let mut req = client_msg(MessageType::Request, 4);
    req.opts_mut()
        .insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 0, 99)));
    req.opts_mut()
        .insert(DhcpOption::RequestedIpAddress(PORT_IP));
    let out = handle_dhcp(&broadcast_frame(&req), &ctx(), &cfg()).unwrap();
    assert_eq!(
        out.request,
        DhcpRequestKind::Request(RequestState::Selecting)
    );
    assert_eq!(
        out.response,
        DhcpResponse::NoReply(NoReplyReason::OtherServer)
    );
}

fn nak(frame: &[u8]) -> (DhcpRequestKind, Reply) {
    let out = handle_dhcp(frame, &ctx(), &cfg()).unwrap();
    assert_eq!(out.reply_kind(), Some(DhcpReplyKind::Nak));
    let r = parse_reply(out.reply_frame().unwrap());
    assert_eq!(msg_type(&r), MessageType::Nak);
    assert_eq!(r.msg.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(r.ip_dst, Ipv4Addr::BROADCAST, "NAKs are broadcast");
    assert_eq!(r.eth_dst, wyvern_apps::EthernetAddress::BROADCAST);
    let codes: Vec<u8> = raw_options(&r.bootp).iter().map(|(c, _)| *c).collect();
    assert_eq!(codes, vec![53, 54], "a NAK carries no configuration");
    (out.request, r)
}

#[test]
fn selecting_wrong_address_is_nak() {
    let mut req = client_msg(MessageType::Request, 5);
    req.opts_mut().insert(DhcpOption::ServerIdentifier(GATEWAY));
    req.opts_mut()
        .insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 0, 77)));
    let (kind, _) = nak(&broadcast_frame(&req));
    assert_eq!(kind, DhcpRequestKind::Request(RequestState::Selecting));
}

#[test]
fn init_reboot_ack_and_nak() {
    let mut req = client_msg(MessageType::Request, 6);
    req.opts_mut()
        .insert(DhcpOption::RequestedIpAddress(PORT_IP));
    let (out, r) = ack_or_offer(&broadcast_frame(&req));
    assert_eq!(
        out.request,
        DhcpRequestKind::Request(RequestState::InitReboot)
    );
    assert_eq!(msg_type(&r), MessageType::Ack);
    assert_eq!(r.msg.yiaddr(), PORT_IP);

    // A client that moved from another network asks for its old address.
    let mut req = client_msg(MessageType::Request, 6);
    req.opts_mut()
        .insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(172, 16, 0, 9)));
    let (kind, r) = nak(&broadcast_frame(&req));
    assert_eq!(kind, DhcpRequestKind::Request(RequestState::InitReboot));
    assert_eq!(r.msg.xid(), 6);
}

#[test]
fn renewing_wrong_ciaddr_is_nak() {
    let mut req = client_msg(MessageType::Request, 8);
    req.set_ciaddr(Ipv4Addr::new(10, 0, 0, 6));
    let (kind, _) = nak(&client_frame(&req, Ipv4Addr::new(10, 0, 0, 6), GATEWAY));
    assert_eq!(kind, DhcpRequestKind::Request(RequestState::Renewing));
}

#[test]
fn decline_is_silent() {
    let mut m = client_msg(MessageType::Decline, 10);
    m.opts_mut().insert(DhcpOption::RequestedIpAddress(PORT_IP));
    m.opts_mut().insert(DhcpOption::ServerIdentifier(GATEWAY));
    let out = handle_dhcp(&broadcast_frame(&m), &ctx(), &cfg()).unwrap();
    assert_eq!(out.request, DhcpRequestKind::Decline);
    assert_eq!(out.response, DhcpResponse::NoReply(NoReplyReason::Decline));
    assert_eq!(out.reply_frame(), None);
}

#[test]
fn inform_gets_ack_without_lease() {
    let mut m = client_msg(MessageType::Inform, 11);
    m.set_ciaddr(PORT_IP);
    let (out, r) = ack_or_offer(&client_frame(&m, PORT_IP, Ipv4Addr::BROADCAST));
    assert_eq!(out.request, DhcpRequestKind::Inform);
    assert_eq!(msg_type(&r), MessageType::Ack);
    assert_eq!(r.msg.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(r.msg.ciaddr(), PORT_IP);
    assert_eq!(
        (r.eth_dst, r.ip_dst),
        (PORT_MAC, PORT_IP),
        "unicast to ciaddr"
    );
    for c in [51u8, 58, 59] {
        assert_eq!(
            option(&r.bootp, c),
            None,
            "INFORM reply must not carry option {c}"
        );
    }
    assert_eq!(option(&r.bootp, 1).unwrap(), [255, 255, 255, 0]);
    assert_eq!(option(&r.bootp, 3).unwrap(), GATEWAY.octets());

    // ciaddr left 0 by a sloppy client: answer to the IP source address.
    let m = client_msg(MessageType::Inform, 12);
    let (_, r) = ack_or_offer(&client_frame(&m, PORT_IP, GATEWAY));
    assert_eq!(r.ip_dst, PORT_IP);
}

#[test]
fn default_dns_no_gateway_no_domain_small_mtu() {
    let mut c = ctx();
    c.subnet.dns_nameservers.clear();
    c.subnet.gateway = None;
    c.subnet.host_routes.clear();
    c.subnet.network_mtu = 100;
    let mut conf = cfg();
    conf.domain_name = None;
    conf.overlay_overhead = 50; // 100 - 50 < 68: option 26 is left out
    let out = handle_dhcp(&hex(DHCLIENT_DISCOVER_HEX), &c, &conf).unwrap();
    let r = parse_reply(out.reply_frame().unwrap());
    assert_eq!(
        option(&r.bootp, 6).unwrap(),
        [9, 9, 9, 9],
        "configured default DNS"
    );
    for code in [3u8, 15, 26, 121] {
        assert_eq!(option(&r.bootp, code), None, "option {code} must be absent");
    }
}

#[test]
fn custom_lease_time() {
    let mut conf = cfg();
    conf.lease_time_secs = 600;
    let out = handle_dhcp(&hex(DHCLIENT_DISCOVER_HEX), &ctx(), &conf).unwrap();
    let r = parse_reply(out.reply_frame().unwrap());
    assert_eq!(option(&r.bootp, 51).unwrap(), 600u32.to_be_bytes());
    assert_eq!(option(&r.bootp, 58).unwrap(), 300u32.to_be_bytes());
    assert_eq!(option(&r.bootp, 59).unwrap(), 525u32.to_be_bytes());
}

/// RFC 3442 section 5's table of destination descriptors, one route each, byte by byte.
#[test]
fn option_121_matches_rfc3442_examples() {
    let gw = Ipv4Addr::new(10, 0, 0, 1);
    let nh = Ipv4Addr::new(10, 0, 0, 254);
    let cases: [(&str, &[u8]); 7] = [
        ("0.0.0.0/0", &[0]),
        ("10.0.0.0/8", &[8, 10]),
        ("10.0.0.0/24", &[24, 10, 0, 0]),
        ("10.17.0.0/16", &[16, 10, 17]),
        ("10.27.129.0/24", &[24, 10, 27, 129]),
        ("10.229.0.128/25", &[25, 10, 229, 0, 128]),
        ("10.198.122.47/32", &[32, 10, 198, 122, 47]),
    ];
    let host_routes = cases
        .iter()
        .map(|(d, _)| HostRoute {
            destination: net(d),
            nexthop: nh,
        })
        .collect();
    let mut c = ctx();
    c.subnet = DhcpSubnet {
        host_routes,
        gateway: Some(gw),
        ..c.subnet
    };
    let out = handle_dhcp(&hex(DHCLIENT_DISCOVER_HEX), &c, &cfg()).unwrap();
    let r = parse_reply(out.reply_frame().unwrap());
    let mut expected = Vec::new();
    for (_, desc) in cases {
        expected.extend_from_slice(desc);
        expected.extend_from_slice(&nh.octets());
    }
    // A 0/0 host route is present, so no second default via the gateway is added.
    assert_eq!(option(&r.bootp, 121).unwrap(), expected);
    // The router option is still sent for clients without 121 support.
    assert_eq!(option(&r.bootp, 3).unwrap(), gw.octets());
}

#[test]
fn long_option_121_is_split_per_rfc3396() {
    // 40 /32 host routes = 360 bytes: more than one option can hold.
    let mut c = ctx();
    c.subnet.host_routes = (0..40)
        .map(|i| HostRoute {
            destination: net(&format!("172.16.0.{i}/32")),
            nexthop: Ipv4Addr::new(10, 0, 0, 254),
        })
        .collect();
    let out = handle_dhcp(&hex(DHCLIENT_DISCOVER_HEX), &c, &cfg()).unwrap();
    let r = parse_reply(out.reply_frame().unwrap());
    let parts: Vec<Vec<u8>> = raw_options(&r.bootp)
        .into_iter()
        .filter(|(c, _)| *c == 121)
        .map(|(_, v)| v)
        .collect();
    assert!(parts.len() >= 2, "split into {} parts", parts.len());
    let joined: Vec<u8> = parts.concat();
    assert_eq!(
        joined.len(),
        40 * 9 + 5,
        "40 routes of 9 bytes + default of 5"
    );
    match r.msg.opts().get(OptionCode::ClasslessStaticRoute) {
        Some(DhcpOption::ClasslessStaticRoute(routes)) => assert_eq!(routes.len(), 41),
        other => panic!("121 not decoded: {other:?}"),
    }
}

// ---- drops: one test per reason -------------------------------------------------------

fn drop_of(frame: &[u8]) -> DhcpDrop {
    match handle_dhcp(frame, &ctx(), &cfg()) {
        Ok(o) => panic!("expected a drop, got {o:?}"),
        Err(d) => d,
    }
}

/// Raw BOOTP bytes of a valid DISCOVER; tests break one thing at a time.
fn discover_bootp() -> Vec<u8> {
    client_msg(MessageType::Discover, 42).to_vec().unwrap()
}

fn frame_from_bootp(b: &[u8]) -> Vec<u8> {
    udp_frame_raw(
        PORT_MAC,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        68,
        67,
        b,
    )
}

#[test]
fn drop_reasons_each_have_a_label_and_a_case() {
    let good = frame_from_bootp(&discover_bootp());
    assert!(handle_dhcp(&good, &ctx(), &cfg()).is_ok());
    let mut seen = Vec::new();
    let mut check = |d: DhcpDrop, label: &str| {
        assert_eq!(d.label(), label, "{d}");
        assert!(d.to_string().starts_with("failed to"), "{d}");
        seen.push(d.label());
    };

    check(drop_of(&good[..10]), "ethernet_truncated");
    let mut f = good.clone();
    f[12..14].copy_from_slice(&[0x86, 0xdd]);
    check(drop_of(&f), "not_ipv4");
    check(drop_of(&good[..14 + 100]), "ipv4_malformed");
    let mut f = good.clone();
    f[14 + 8] = 1; // TTL changed without fixing the checksum
    check(drop_of(&f), "ipv4_checksum");
    let mut f = good.clone();
    f[14 + 6] = 0x20; // more fragments
    fix_ip_checksum(&mut f);
    check(drop_of(&f), "ipv4_fragment");
    let mut f = good.clone();
    f[14 + 9] = 6;
    fix_ip_checksum(&mut f);
    check(drop_of(&f), "not_udp");
    let mut f = good.clone();
    f[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&[0xff, 0xff]); // UDP length past the end
    check(drop_of(&f), "udp_malformed");
    let f = udp_frame_raw(
        PORT_MAC,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        67,
        67,
        &discover_bootp(),
    );
    check(drop_of(&f), "wrong_udp_ports");
    check(
        drop_of(&frame_from_bootp(&discover_bootp()[..239])),
        "bootp_truncated",
    );
    let mut b = discover_bootp();
    b[0] = 2; // BOOTREPLY from a client port: a rogue server
    check(drop_of(&frame_from_bootp(&b)), "not_bootrequest");
    let mut b = discover_bootp();
    b[1] = 6; // IEEE 802 htype
    check(drop_of(&frame_from_bootp(&b)), "bad_hardware_address");
    let mut b = discover_bootp();
    b[236] = 0;
    check(drop_of(&frame_from_bootp(&b)), "bad_magic_cookie");
    let mut b = discover_bootp();
    b[28 + 5] ^= 0xff; // another VM's MAC in chaddr
    check(drop_of(&frame_from_bootp(&b)), "chaddr_mismatch");
    let mut b = discover_bootp()[..240].to_vec();
    b.extend_from_slice(&[53, 1, 1, 12, 200, b'v', b'm']); // hostname claims 200 bytes
    check(drop_of(&frame_from_bootp(&b)), "option_overrun");
    let mut b = discover_bootp()[..240].to_vec();
    b.extend_from_slice(&[53, 1, 1, 55]); // code with no length byte
    check(drop_of(&frame_from_bootp(&b)), "option_overrun");
    let mut b = discover_bootp()[..240].to_vec();
    b.extend_from_slice(&[53, 2, 1, 1, 255]);
    check(drop_of(&frame_from_bootp(&b)), "bad_option_length");
    let mut b = discover_bootp()[..240].to_vec();
    b.extend_from_slice(&[53, 1, 3, 50, 3, 10, 0, 0, 255]);
    check(drop_of(&frame_from_bootp(&b)), "bad_option_length");
    let mut b = discover_bootp()[..240].to_vec();
    b.extend_from_slice(&[12, 2, b'v', b'm', 255]);
    check(drop_of(&frame_from_bootp(&b)), "missing_message_type");
    let mut b = discover_bootp()[..240].to_vec();
    b.extend_from_slice(&[53, 1, 2, 255]); // an OFFER sent by a VM
    check(drop_of(&frame_from_bootp(&b)), "unexpected_message_type");
    let mut b = discover_bootp();
    b[24..28].copy_from_slice(&[10, 0, 0, 1]);
    check(drop_of(&frame_from_bootp(&b)), "relayed");
    let relay = wyvern_apps::DhcpRelay {
        giaddr: Ipv4Addr::new(10, 0, 0, 2),
        relay_mac: PORT_MAC,
    };
    check(
        wyvern_apps::handle_dhcp_relayed(&frame_from_bootp(&b), &ctx(), &cfg(), &relay)
            .unwrap_err(),
        "relay_mismatch",
    );
    let m = client_msg(MessageType::Request, 1); // no 50, no 54, no ciaddr
    check(drop_of(&broadcast_frame(&m)), "request_without_address");
    let mut c = ctx();
    c.port_ip = Ipv4Addr::new(192, 0, 2, 1);
    check(
        handle_dhcp(&good, &c, &cfg()).unwrap_err(),
        "port_ip_outside_subnet",
    );
    let mut c = ctx();
    c.subnet.host_routes = (0..8000u32)
        .map(|i| HostRoute {
            destination: net(&format!("{}/32", Ipv4Addr::from(0xac10_0000 + i))),
            nexthop: GATEWAY,
        })
        .collect();
    check(
        handle_dhcp(&good, &c, &cfg()).unwrap_err(),
        "reply_too_large",
    );

    // "decode" and "encode" wrap dhcproto errors that the checks above make unreachable
    // (a 240-byte header always decodes; our options always encode).
    for l in DhcpDrop::LABELS {
        assert!(
            seen.contains(&l) || l == "decode" || l == "encode",
            "drop reason {l} has no test case"
        );
    }
}

fn fix_ip_checksum(f: &mut [u8]) {
    f[14 + 10] = 0;
    f[14 + 11] = 0;
    let c = !ones_sum(&f[14..34]);
    f[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
}

#[test]
fn missing_end_option_is_tolerated() {
    let mut b = discover_bootp()[..240].to_vec();
    b.extend_from_slice(&[53, 1, 1]);
    let out = handle_dhcp(&frame_from_bootp(&b), &ctx(), &cfg()).unwrap();
    assert_eq!(out.reply_kind(), Some(DhcpReplyKind::Offer));
}

#[test]
fn ethernet_padding_after_ip_is_ignored() {
    let mut f = hex(DHCLIENT_DISCOVER_HEX);
    f.extend_from_slice(&[0xaa; 20]);
    assert!(handle_dhcp(&f, &ctx(), &cfg()).is_ok());
}

/// Regression: dhcproto's option-81 decoder `debug_assert!`s length >= 3, so a client FQDN
/// option of length 1 used to panic in debug builds (found by the no-panic test).
#[test]
fn short_client_fqdn_option_does_not_panic() {
    let mut b = discover_bootp()[..240].to_vec();
    b.extend_from_slice(&[53, 1, 1, 81, 1, 0, 121, 0, 50, 4, 10, 0, 0, 5, 255]);
    let out = handle_dhcp(&frame_from_bootp(&b), &ctx(), &cfg()).unwrap();
    assert_eq!(out.reply_kind(), Some(DhcpReplyKind::Offer));
}

/// A relay port (perfdhcp with `-L 68 -o 82,1300`): giaddr = the relay's IP, option 82 with
/// the RFC 8357 relay source port sub-option. The reply goes to the relay (its MAC, giaddr,
/// its source port), echoes giaddr and option 82, and carries the client port's address.
#[test]
fn relayed_request_is_answered_to_the_relay() {
    use wyvern_apps::{handle_dhcp_relayed, relayed_client, DhcpRelay};
    let relay_ip = Ipv4Addr::new(10, 0, 255, 251);
    let relay_mac = wyvern_apps::EthernetAddress([0x02, 0, 0, 0, 0xff, 0x01]);
    let relay = DhcpRelay {
        giaddr: relay_ip,
        relay_mac,
    };
    let mut m = client_msg(MessageType::Discover, 77);
    m.set_giaddr(relay_ip);
    // Option 82 by hand (dhcproto's encoder writes an unknown-typed 82 twice).
    let mut bytes = m.to_vec().unwrap();
    let end = bytes.iter().rposition(|&b| b == 255).unwrap();
    bytes.splice(end..end, [82, 2, 19, 0]);
    let frame = udp_frame_raw(relay_mac, relay_ip, GATEWAY, 68, 67, &bytes);
    assert_eq!(relayed_client(&frame), Some((relay_ip, PORT_MAC)));
    assert_eq!(
        relayed_client(&broadcast_frame(&client_msg(MessageType::Discover, 1))),
        None
    );
    // Without relay support it stays a counted drop.
    assert_eq!(
        handle_dhcp(&frame, &ctx(), &cfg()).unwrap_err().label(),
        "relayed"
    );
    let out = handle_dhcp_relayed(&frame, &ctx(), &cfg(), &relay).expect("handled");
    assert_eq!(out.reply_kind(), Some(DhcpReplyKind::Offer));
    let r = parse_reply(out.reply_frame().unwrap());
    assert_eq!(
        (r.eth_dst, r.ip_dst, r.sport, r.dport),
        (relay_mac, relay_ip, 67, 68)
    );
    assert_eq!(r.msg.giaddr(), relay_ip);
    assert_eq!(r.msg.yiaddr(), PORT_IP);
    assert_eq!(r.msg.chaddr()[..6], PORT_MAC.0);
    let echoed = r.bootp[240..].windows(4).any(|w| w == [82, 2, 19, 0]);
    assert!(echoed, "option 82 echoed: {:?}", &r.bootp[240..]);
    // Without the RFC 8357 sub-option the reply goes to the server port (RFC 2131 4.1).
    let mut m = client_msg(MessageType::Discover, 78);
    m.set_giaddr(relay_ip);
    let frame = udp_frame_raw(relay_mac, relay_ip, GATEWAY, 67, 67, &m.to_vec().unwrap());
    let out = handle_dhcp_relayed(&frame, &ctx(), &cfg(), &relay).expect("handled");
    assert_eq!(parse_reply(out.reply_frame().unwrap()).dport, 67);
    // A giaddr other than the relay port's own address is refused.
    let other = DhcpRelay {
        giaddr: Ipv4Addr::new(10, 0, 9, 9),
        relay_mac,
    };
    assert_eq!(
        handle_dhcp_relayed(&frame, &ctx(), &cfg(), &other)
            .unwrap_err()
            .label(),
        "relay_mismatch"
    );
}
