//! Packet-in dispatch: the controller's apps answer what the pipeline punts.
//!
//! Every punt carries its reason in the controller action's userdata and the logical
//! in-port in `reg6` (router punts also `reg5`). DHCP requests get a reply built by
//! `wyvern_apps::handle_dhcp` and sent out of the in-port; ICMP echo requests to a router IP
//! get an echo reply; expiring TTLs get ICMP time exceeded from the router interface the
//! packet arrived on; an L3 miss installs that destination's route (reactive mode, with an
//! idle timeout) and sends the packet back through the pipeline, so it is never lost.
//! Anything malformed or unknown is counted by reason and dropped.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use wyvern_apps::{DhcpConfig, DhcpPortContext, DhcpSubnet, EthernetAddress, RateLimiter};
use wyvern_openflow::conn::SwitchEvent;
use wyvern_openflow::wire::{FlowModCommand, Message, PacketIn, PacketOut};
use wyvern_openflow::{Action, Field, PortNo};
use wyvern_pipeline::{PortKey, PuntReason, RouterKey};

use crate::LocalController;

/// `OFP_NO_BUFFER`: the packet-out carries its own data.
const NO_BUFFER: u32 = 0xffff_ffff;

/// Settings of the apps.
#[derive(Debug, Clone)]
pub struct AppsConfig {
    pub dhcp: DhcpConfig,
    /// DHCP messages per second a port may send to the controller (token bucket)...
    pub dhcp_rate_per_sec: u32,
    /// ...and the burst it may use at once.
    pub dhcp_burst: u32,
    /// Answer relayed requests (giaddr set) whose relay is a port of the client's network
    /// speaking from its own fixed IP; off by default (clients are answered on their port).
    pub dhcp_allow_relay: bool,
    /// Source MAC of DHCP replies on subnets without a router interface.
    pub dhcp_server_mac: [u8; 6],
    /// Idle timeout of reactively installed routes, seconds.
    pub reactive_idle_timeout: u16,
}

impl Default for AppsConfig {
    fn default() -> Self {
        AppsConfig {
            dhcp: DhcpConfig::default(),
            dhcp_rate_per_sec: 20,
            dhcp_burst: 40,
            dhcp_allow_relay: false,
            dhcp_server_mac: [0xfa, 0x16, 0x3e, 0xff, 0xff, 0xfe],
            reactive_idle_timeout: 60,
        }
    }
}

/// What the apps did, by event (for `wyvern status` and metrics).
#[derive(Debug)]
pub struct AppStats {
    counts: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// Packet-in handling time by punt reason (`unknown` when the reason is unreadable).
    pub handling_duration: wyvern_metrics::prometheus::HistogramVec,
    /// Reactive first packet, as the issue defines it: from the L3-miss packet-in decoded
    /// off the OpenFlow connection to the switch's barrier reply after the route's
    /// flow-mod and the packet-out (flow installed, packet released). Fine buckets around
    /// the 1 ms target, so quantiles read off it are accurate to 25 µs there.
    pub reactive_install_duration: wyvern_metrics::prometheus::Histogram,
    /// Port key -> when its last DHCPACK runs out; RELEASE removes it. One entry per port
    /// at most, counted at scrape time (the series itself carries no port label).
    leases: Mutex<std::collections::HashMap<u32, Instant>>,
}

impl Default for AppStats {
    fn default() -> Self {
        let handling_duration = wyvern_metrics::prometheus::HistogramVec::new(
            wyvern_metrics::prometheus::HistogramOpts::new(
                "wyvern_packet_in_handling_duration_seconds",
                "Time from a packet-in reaching the apps to its answer being sent (or it being dropped), by punt reason.",
            )
            .buckets(wyvern_metrics::latency_buckets()),
            &["reason"],
        )
        // Constant name, help and label with valid buckets: creation cannot fail.
        .unwrap_or_else(|e| unreachable!("invalid histogram options: {e}"));
        // Every reason's series exists from the start (0, not "no data").
        for r in [
            Some(PuntReason::Dhcp),
            Some(PuntReason::L3Miss),
            Some(PuntReason::TtlExpired),
            Some(PuntReason::IcmpToRouter),
            None,
        ] {
            handling_duration.with_label_values(&[punt_label(r)]);
        }
        let reactive_install_duration = wyvern_metrics::prometheus::Histogram::with_opts(
            wyvern_metrics::prometheus::HistogramOpts::new(
                "wyvern_reactive_route_install_duration_seconds",
                "Reactive L3 first packet: from the packet-in read off the OpenFlow connection to the barrier reply after the route's flow-mod and the packet-out.",
            )
            .buckets(reactive_buckets()),
        )
        // Constant name and help with increasing buckets: creation cannot fail.
        .unwrap_or_else(|e| unreachable!("invalid histogram options: {e}"));
        AppStats {
            counts: Mutex::default(),
            handling_duration,
            reactive_install_duration,
            leases: Mutex::default(),
        }
    }
}

/// Buckets of [`AppStats::reactive_install_duration`]: 25 µs steps to 1.5 ms, 100 µs steps
/// to 3 ms, then coarse ones to 1 s (the target is p99 under 1 ms).
fn reactive_buckets() -> Vec<f64> {
    let fine = (1..=60).map(|i| f64::from(i) * 25e-6);
    let mid = (16..=30).map(|i| f64::from(i) * 100e-6);
    let coarse = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];
    fine.chain(mid).chain(coarse).collect()
}

/// Label of a punt reason in metrics.
pub fn punt_label(reason: Option<PuntReason>) -> &'static str {
    match reason {
        Some(PuntReason::Dhcp) => "dhcp",
        Some(PuntReason::L3Miss) => "l3_miss",
        Some(PuntReason::TtlExpired) => "ttl_expired",
        Some(PuntReason::IcmpToRouter) => "icmp_to_router",
        None => "unknown",
    }
}

impl AppStats {
    /// Leases handed out (DHCPACK) that have neither run out nor been released.
    pub fn active_leases(&self) -> usize {
        let now = Instant::now();
        self.leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|until| **until > now)
            .count()
    }

    fn lease(&self, port: u32, until: Option<Instant>) {
        let mut l = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        match until {
            Some(t) => {
                l.insert(port, t);
            }
            None => {
                l.remove(&port);
            }
        }
    }

    /// Counts one `what:label` event (`label` empty: just `what`). Static strings, so the
    /// packet-in path allocates nothing for its counters.
    fn bump(&self, what: &'static str, label: &'static str) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *c.entry((what, label)).or_default() += 1;
    }

    /// Every counter, e.g. `dhcp_reply:offer`, `dhcp_drop:rate_limited`, `icmp_echo_reply`.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|((what, label), n)| {
                let key = if label.is_empty() {
                    (*what).to_owned()
                } else {
                    format!("{what}:{label}")
                };
                (key, *n)
            })
            .collect()
    }

    pub fn get(&self, what: &str) -> u64 {
        self.snapshot().get(what).copied().unwrap_or(0)
    }
}

/// Where a punted packet came from, and so where its answers go.
#[derive(Debug, Clone)]
enum Via {
    /// With the time the packet-in was decoded off the connection.
    OpenFlow(Instant),
    P4(crate::p4::P4Out),
}

/// Starts the apps on the packet-ins of `rx`.
pub fn spawn_apps(
    ctrl: LocalController,
    rx: mpsc::UnboundedReceiver<SwitchEvent>,
    cfg: AppsConfig,
) -> Arc<AppStats> {
    spawn_apps_with_p4(ctrl, rx, None, cfg)
}

/// Starts the apps on the packet-ins of `rx` and, if given, of a P4 target (from
/// [`crate::p4::spawn`]), whose answers go back through that target.
pub fn spawn_apps_with_p4(
    ctrl: LocalController,
    mut rx: mpsc::UnboundedReceiver<SwitchEvent>,
    p4: Option<(
        mpsc::UnboundedReceiver<crate::p4::AppPacketIn>,
        crate::p4::P4Out,
    )>,
    cfg: AppsConfig,
) -> Arc<AppStats> {
    let stats = Arc::new(AppStats::default());
    let out = stats.clone();
    tokio::spawn(async move {
        let mut limiter: RateLimiter<u32> = RateLimiter::new(cfg.dhcp_rate_per_sec, cfg.dhcp_burst);
        let (mut p4_rx, p4_out) = match p4 {
            Some((rx, out)) => (Some(rx), Some(out)),
            None => (None, None),
        };
        loop {
            let (packet_in, via) = tokio::select! {
                ev = rx.recv() => match ev {
                    Some(SwitchEvent::PacketIn { packet_in, received, .. }) => {
                        (packet_in, Via::OpenFlow(received))
                    }
                    Some(_) => continue,
                    None => return,
                },
                Some(pi) = recv_p4(&mut p4_rx) => match &p4_out {
                    Some(o) => (pi, Via::P4(o.clone())),
                    None => continue,
                },
            };
            handle(&ctrl, &cfg, &stats, &mut limiter, packet_in, &via).await;
        }
    });
    out
}

async fn recv_p4(
    rx: &mut Option<mpsc::UnboundedReceiver<crate::p4::AppPacketIn>>,
) -> Option<crate::p4::AppPacketIn> {
    match rx {
        Some(r) => match r.recv().await {
            Some(p) => Some(p),
            None => {
                *rx = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

fn reg(p: &PacketIn, field: Field) -> Option<u32> {
    p.match_.get(field).and_then(|(v, _)| u32::try_from(v).ok())
}

fn send_out(ctrl: &LocalController, stats: &AppStats, via: &Via, port: u32, frame: Vec<u8>) {
    if let Via::P4(out) = via {
        if !out.to_port(port, frame) {
            stats.bump("packet_out_failed", "p4_stopped");
        }
        return;
    }
    let Some(sw) = ctrl.ofctrl().switch() else {
        stats.bump("packet_out_failed", "no_switch");
        return;
    };
    let po = PacketOut {
        buffer_id: NO_BUFFER,
        in_port: PortNo::CONTROLLER,
        actions: vec![Action::Output {
            port: PortNo(port),
            max_len: 0,
        }],
        data: frame,
    };
    if sw.packet_out(po).is_err() {
        stats.bump("packet_out_failed", "disconnected");
    }
}

async fn handle(
    ctrl: &LocalController,
    cfg: &AppsConfig,
    stats: &Arc<AppStats>,
    limiter: &mut RateLimiter<u32>,
    p: PacketIn,
    via: &Via,
) {
    let reason = p
        .userdata
        .as_deref()
        .and_then(|u| u.first())
        .and_then(|c| PuntReason::from_code(*c));
    let label = punt_label(reason);
    stats.bump("packet_in", label);
    let started = Instant::now();
    dispatch(ctrl, cfg, stats, limiter, p, reason, via).await;
    stats
        .handling_duration
        .with_label_values(&[label])
        .observe(started.elapsed().as_secs_f64());
}

async fn dispatch(
    ctrl: &LocalController,
    cfg: &AppsConfig,
    stats: &Arc<AppStats>,
    limiter: &mut RateLimiter<u32>,
    p: PacketIn,
    reason: Option<PuntReason>,
    via: &Via,
) {
    let (Some(reason), Some(in_port)) = (reason, reg(&p, Field::InPort)) else {
        stats.bump("packet_in_drop", "unknown_reason");
        return;
    };
    match reason {
        PuntReason::Dhcp => dhcp(ctrl, cfg, stats, limiter, &p, in_port, via),
        PuntReason::IcmpToRouter => {
            let Ok(sum) = wyvern_apps::parse_packet_in(&p.data) else {
                stats.bump("packet_in_drop", "malformed");
                return;
            };
            let Some(ip) = sum.ipv4 else { return };
            match wyvern_apps::icmp_echo_reply(&p.data, ip.dst, sum.eth_dst) {
                Some(reply) => {
                    stats.bump("icmp_echo_reply", "");
                    send_out(ctrl, stats, via, in_port, reply);
                }
                None => stats.bump("icmp_drop", "not_echo"),
            }
        }
        PuntReason::TtlExpired => ttl_expired(ctrl, stats, &p, in_port, via),
        PuntReason::L3Miss => match via {
            Via::OpenFlow(received) => l3_miss(ctrl, cfg, stats, &p, in_port, *received),
            // Reactive routes are installed through OpenFlow only (not yet through P4).
            Via::P4(_) => stats.bump("l3_drop", "p4_reactive_unsupported"),
        },
    }
}

fn dhcp(
    ctrl: &LocalController,
    cfg: &AppsConfig,
    stats: &AppStats,
    limiter: &mut RateLimiter<u32>,
    p: &PacketIn,
    in_port: u32,
    via: &Via,
) {
    let Some(pk) = reg(p, Field::Reg(crate::REG_INPORT)) else {
        stats.bump("dhcp_drop", "no_port");
        return;
    };
    // The bucket is the sending port's, a relay's included: one VM, one budget.
    if !limiter.allow(pk, Instant::now()) {
        stats.bump("dhcp_drop", "rate_limited");
        return;
    }
    let relayed = cfg
        .dhcp_allow_relay
        .then(|| wyvern_apps::relayed_client(&p.data))
        .flatten();
    let found = {
        let st = ctrl.state().read().unwrap_or_else(|e| e.into_inner());
        let Some(port) = st
            .compiler
            .port_by_key(PortKey(pk))
            .and_then(|id| st.topo.get_port(&id))
        else {
            stats.bump("dhcp_drop", "unknown_port");
            return;
        };
        match relayed {
            None => port_context(&st.topo, cfg, port, None).map(|ctx| (ctx, pk, None)),
            Some((giaddr, chaddr)) => {
                // The relay is this port, speaking from one of its own fixed IPs; the
                // client is the port with the chaddr on the same network, with an address
                // on giaddr's subnet (as a Neutron dnsmasq answers a relay in its subnet).
                let Some(relay_ip) = port.fixed_ips.iter().find(|f| f.ip_address == giaddr) else {
                    stats.bump("dhcp_drop", "relay_not_port_ip");
                    return;
                };
                let client = st
                    .topo
                    .mac_owner(&port.network_id, wyvern_model::MacAddr(chaddr.0))
                    .and_then(|id| st.topo.get_port(&id));
                let Some(client) = client else {
                    stats.bump("dhcp_drop", "relay_unknown_client");
                    return;
                };
                let client_key = st.compiler.port_key(&client.id).map_or(pk, |k| k.0);
                let relay = wyvern_apps::DhcpRelay {
                    giaddr,
                    relay_mac: EthernetAddress(port.mac_address.0),
                };
                port_context(&st.topo, cfg, client, Some(relay_ip.subnet_id))
                    .map(|ctx| (ctx, client_key, Some(relay)))
            }
        }
    };
    let Some((ctx, lease_key, relay)) = found else {
        stats.bump("dhcp_drop", "no_dhcp_subnet");
        return;
    };
    let handled = match &relay {
        None => wyvern_apps::handle_dhcp(&p.data, &ctx, &cfg.dhcp),
        Some(r) => wyvern_apps::handle_dhcp_relayed(&p.data, &ctx, &cfg.dhcp, r),
    };
    match handled {
        Ok(outcome) => {
            stats.bump("dhcp_message", outcome.request.label());
            match outcome.reply_kind() {
                Some(wyvern_apps::DhcpReplyKind::Ack) => stats.lease(
                    lease_key,
                    Some(Instant::now() + Duration::from_secs(u64::from(cfg.dhcp.lease_time_secs))),
                ),
                None if matches!(outcome.request, wyvern_apps::DhcpRequestKind::Release) => {
                    stats.lease(lease_key, None)
                }
                _ => {}
            }
            match outcome.reply_kind() {
                Some(kind) => stats.bump("dhcp_reply", kind.label()),
                None => stats.bump("dhcp_request", outcome.request.label()),
            }
            if let Some(frame) = outcome.reply_frame() {
                send_out(ctrl, stats, via, in_port, frame.to_vec());
            }
        }
        Err(drop) => stats.bump("dhcp_drop", drop.label()),
    }
}

/// What the DHCP server needs about `port`: its fixed IP on a DHCP-enabled subnet (on
/// `only_subnet` when given), the subnet, the network MTU, and the subnet's gateway port
/// as the server (from the router-interface index, no scan of the network's ports).
fn port_context(
    topo: &wyvern_model::Topology,
    cfg: &AppsConfig,
    port: &wyvern_model::Port,
    only_subnet: Option<uuid::Uuid>,
) -> Option<DhcpPortContext> {
    let (ip, subnet) = port.fixed_ips.iter().find_map(|f| {
        if only_subnet.is_some_and(|s| s != f.subnet_id) {
            return None;
        }
        topo.get_subnet(&f.subnet_id)
            .filter(|s| s.enable_dhcp)
            .map(|s| (f.ip_address, s))
    })?;
    let mtu = topo
        .get_network(&port.network_id)
        .map(|n| n.mtu)
        .unwrap_or(1500);
    // The router interface on the subnet is the server, as the gateway the client uses.
    let router_mac = topo
        .subnet_router_interfaces(&subnet.id)
        .next()
        .map(|q| q.mac_address.0);
    let server_ip = subnet
        .gateway_ip
        .or_else(|| subnet.cidr.hosts().last())
        .unwrap_or(Ipv4Addr::UNSPECIFIED);
    Some(DhcpPortContext {
        port_mac: EthernetAddress(port.mac_address.0),
        port_ip: ip,
        subnet: DhcpSubnet {
            cidr: subnet.cidr,
            gateway: subnet.gateway_ip,
            dns_nameservers: subnet.dns_nameservers.clone(),
            host_routes: subnet
                .host_routes
                .iter()
                .map(|r| wyvern_apps::HostRoute {
                    destination: r.destination,
                    nexthop: r.nexthop,
                })
                .collect(),
            network_mtu: u16::try_from(mtu).unwrap_or(u16::MAX),
        },
        server_ip,
        server_mac: EthernetAddress(router_mac.unwrap_or(cfg.dhcp_server_mac)),
    })
}

fn ttl_expired(ctrl: &LocalController, stats: &AppStats, p: &PacketIn, in_port: u32, via: &Via) {
    let Ok(sum) = wyvern_apps::parse_packet_in(&p.data) else {
        stats.bump("packet_in_drop", "malformed");
        return;
    };
    // The router answers from the interface the packet was addressed to.
    let iface_ip = {
        let st = ctrl.state().read().unwrap_or_else(|e| e.into_inner());
        let router = reg(p, Field::Reg(crate::REG_ROUTER))
            .and_then(|k| st.compiler.router_by_key(RouterKey(k)));
        router.and_then(|r| {
            st.topo
                .router_interfaces(&r)
                .find(|i| i.mac_address.0 == sum.eth_dst.0)
                .and_then(|i| i.fixed_ips.first().map(|f| f.ip_address))
        })
    };
    let Some(ip) = iface_ip else {
        stats.bump("icmp_drop", "unknown_router");
        return;
    };
    match wyvern_apps::icmp_time_exceeded(&p.data, ip, sum.eth_dst) {
        Some(reply) => {
            stats.bump("icmp_time_exceeded", "");
            send_out(ctrl, stats, via, in_port, reply);
        }
        None => stats.bump("icmp_drop", "no_time_exceeded"),
    }
}

fn l3_miss(
    ctrl: &LocalController,
    cfg: &AppsConfig,
    stats: &Arc<AppStats>,
    p: &PacketIn,
    in_port: u32,
    received: Instant,
) {
    let reached = Instant::now();
    let Ok(sum) = wyvern_apps::parse_packet_in(&p.data) else {
        stats.bump("packet_in_drop", "malformed");
        return;
    };
    let Some(ip) = sum.ipv4 else { return };
    let flow = {
        let mut st = ctrl.state().write().unwrap_or_else(|e| e.into_inner());
        let router = reg(p, Field::Reg(crate::REG_ROUTER))
            .and_then(|k| st.compiler.router_by_key(RouterKey(k)));
        let crate::State { topo, compiler, .. } = &mut *st;
        router.and_then(|r| compiler.reactive_route(topo, r, ip.dst))
    };
    let Some(flow) = flow else {
        stats.bump("l3_drop", "unknown_host");
        return;
    };
    let Ok(mut desired) = wyvern_ofpipe::map_flow(&flow) else {
        stats.bump("l3_drop", "unmappable");
        return;
    };
    desired.idle_timeout = cfg.reactive_idle_timeout;
    // The switch reports the expiry (FLOW_REMOVED), counted as an expired reactive flow.
    desired.flags |= wyvern_openflow::wire::flow_flags::SEND_FLOW_REM;
    let Some(sw) = ctrl.ofctrl().switch() else {
        stats.bump("l3_drop", "no_switch");
        return;
    };
    // The packet is released with the route's own actions (registers as they were at the
    // punt, then TTL, MACs, network and out-port, then the route's next table), so it does
    // not depend on the flow-mod having been applied: no barrier round trip, and nothing is
    // lost whatever order the switch processes the two messages in.
    let actions = route_packet_out_actions(p, &desired.instructions);
    let po = PacketOut {
        buffer_id: NO_BUFFER,
        in_port: PortNo(in_port),
        actions,
        data: p.data.clone(),
    };
    // Flow-mod, packet-out and a barrier in one write. The barrier holds nothing up: its
    // reply, which OpenFlow sends only after both messages are processed, only ends the
    // measurement of the first packet (`reactive_install_duration`).
    let xid = sw.alloc_xids(3);
    let mut bytes = Message::FlowMod(desired.flow_mod(FlowModCommand::Add)).to_bytes(xid);
    bytes.extend_from_slice(&Message::PacketOut(po).to_bytes(xid.wrapping_add(1)));
    bytes.extend_from_slice(&Message::BarrierRequest.to_bytes(xid.wrapping_add(2)));
    let barrier = match sw.send_batch_expecting(bytes, &[xid.wrapping_add(2)]) {
        Ok(mut rxs) => rxs.pop(),
        Err(_) => {
            stats.bump("l3_drop", "disconnected");
            return;
        }
    };
    stats.bump("reactive_flow_installed", "");
    let sent = Instant::now();
    if let Some(barrier) = barrier {
        let stats = stats.clone();
        tokio::spawn(async move {
            if let Ok(Ok(Message::BarrierReply)) = barrier.await {
                let took = received.elapsed();
                stats.reactive_install_duration.observe(took.as_secs_f64());
                // One line per first packet, for benchmarks that want the raw samples
                // (`RUST_LOG=wyvern_local::apps=debug`; bench-reactive reads them).
                // Where the time went: queued from the reader to the apps, route and
                // encoding until handed to the writer, then the switch's round trip.
                let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
                tracing::debug!(
                    install_us = us(took),
                    queued_us = us(reached.saturating_duration_since(received)),
                    route_us = us(sent.saturating_duration_since(reached)),
                    switch_us = us(sent.elapsed()),
                    "reactive route installed and packet released"
                );
            }
        });
    }
}

/// Pipeline registers a punted packet carries (network, router, in-port, out-port).
const PIPELINE_REGS: [u8; 4] = [
    crate::REG_NETWORK,
    crate::REG_ROUTER,
    crate::REG_INPORT,
    crate::REG_OUTPORT,
];

/// The packet-out actions that route a punted packet as `route` (the reactive flow's
/// instructions) would: its registers restored from the packet-in, the route's apply
/// actions, then `resubmit` to the route's next table (egress) or, for a route without
/// one, nothing more. A route with instructions a packet-out cannot carry (write actions,
/// metadata, unknown ones) falls back to the whole pipeline from table 0, which by then
/// may or may not hold the new flow; the compiler's routes never have those.
fn route_packet_out_actions(
    p: &PacketIn,
    route: &wyvern_openflow::wire::Instructions,
) -> Vec<Action> {
    let plain = !route.clear_actions
        && route.write_actions.is_none()
        && route.write_metadata.is_none()
        && route.unknown.is_empty();
    if !plain {
        return vec![Action::Output {
            port: PortNo::TABLE,
            max_len: 0,
        }];
    }
    let mut actions: Vec<Action> = PIPELINE_REGS
        .iter()
        .filter_map(|&r| {
            let value = reg(p, Field::Reg(r))?;
            Some(Action::SetField {
                field: Field::Reg(r),
                value: value.into(),
            })
        })
        .collect();
    actions.extend(route.apply_actions.iter().cloned());
    if let Some(table) = route.goto_table {
        actions.push(Action::Resubmit {
            in_port: None,
            table: Some(table),
        });
    }
    actions
}
