//! One entry point that runs arbitrary bytes through every packet-in handler; shared by
//! the cargo-fuzz target and the seeded no-panic test so both exercise the same paths.

use std::net::Ipv4Addr;

use crate::{
    arp_reply, handle_dhcp, icmp_echo_reply, icmp_time_exceeded, parse_packet_in, DhcpConfig,
    DhcpPortContext, DhcpSubnet, EthernetAddress, HostRoute,
};

/// The port context used for fuzzing: chaddr/MAC 02:00:00:aa:bb:01, 10.0.0.5/24.
pub fn fuzz_context() -> (DhcpPortContext, DhcpConfig) {
    let ctx = DhcpPortContext {
        port_mac: EthernetAddress([0x02, 0x00, 0x00, 0xaa, 0xbb, 0x01]),
        port_ip: Ipv4Addr::new(10, 0, 0, 5),
        subnet: DhcpSubnet {
            cidr: ipnet::Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), 24).unwrap_or_default(),
            gateway: Some(Ipv4Addr::new(10, 0, 0, 1)),
            dns_nameservers: vec![Ipv4Addr::new(10, 0, 0, 2)],
            host_routes: vec![HostRoute {
                destination: ipnet::Ipv4Net::new(Ipv4Addr::new(192, 168, 0, 0), 16)
                    .unwrap_or_default(),
                nexthop: Ipv4Addr::new(10, 0, 0, 254),
            }],
            network_mtu: 1500,
        },
        server_ip: Ipv4Addr::new(10, 0, 0, 1),
        server_mac: EthernetAddress([0xfa, 0x16, 0x3e, 0, 0, 1]),
    };
    let cfg = DhcpConfig {
        domain_name: Some("openstacklocal".into()),
        overlay_overhead: 50,
        ..DhcpConfig::default()
    };
    (ctx, cfg)
}

/// What one frame produced, so callers can count paths taken.
#[derive(Debug, Default, Clone, Copy)]
pub struct PathHits {
    pub parsed: bool,
    pub dhcp_reply: bool,
    pub dhcp_no_reply: bool,
    pub echo_reply: bool,
    pub time_exceeded: bool,
    pub arp_reply: bool,
}

/// Run `frame` through parse, DHCP, ICMP and ARP handlers. Any reply produced must itself
/// parse (a handler must never emit a frame our own parser refuses).
pub fn run_all(frame: &[u8], ctx: &DhcpPortContext, cfg: &DhcpConfig) -> PathHits {
    let router_ip = ctx.server_ip;
    let router_mac = ctx.server_mac;
    let mut hits = PathHits {
        parsed: parse_packet_in(frame).is_ok(),
        ..PathHits::default()
    };
    match handle_dhcp(frame, ctx, cfg) {
        Ok(out) => {
            if let Some(reply) = out.reply_frame() {
                hits.dhcp_reply = true;
                assert!(parse_packet_in(reply).is_ok(), "dhcp reply must parse");
            } else {
                hits.dhcp_no_reply = true;
            }
        }
        Err(drop) => {
            let _ = drop.label();
        }
    }
    if let Some(r) = icmp_echo_reply(frame, router_ip, router_mac) {
        hits.echo_reply = true;
        assert!(parse_packet_in(&r).is_ok(), "echo reply must parse");
    }
    if let Some(r) = icmp_time_exceeded(frame, router_ip, router_mac) {
        hits.time_exceeded = true;
        assert!(parse_packet_in(&r).is_ok(), "time exceeded must parse");
    }
    if let Some(r) = arp_reply(frame, router_ip, router_mac) {
        hits.arp_reply = true;
        assert!(parse_packet_in(&r).is_ok(), "arp reply must parse");
    }
    hits
}
