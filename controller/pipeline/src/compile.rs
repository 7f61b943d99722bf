//! The compiler from the logical model (plus this host's port bindings) to IR, full and
//! incremental.
//!
//! Rules of the incremental engine (the same promise ovn-controller's engine makes):
//! - Every flow has exactly one owner, and an owner's flows are a pure function of the
//!   topology, the bindings, the configuration and the key maps ([`Compiler::compile_owner`]).
//! - A model change names the owners it can affect ([`Compiler::affected`], using both the
//!   old and the new object, so deletions and moves are covered); those owners, and only
//!   those, are recompiled and their flows replaced.
//! - Anything the dependency rules do not cover must call [`Compiler::full`], which
//!   recompiles every owner; a test drives random change sequences and proves that
//!   incremental results equal a full recompute.
//!
//! Keys (network, port, router) are allocated on this host on first use and kept while the
//! object exists, so a recompile never renumbers anything that did not change.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use uuid::Uuid;
use wyvern_model::{Change, Object, Port, Topology};

use crate::check::{check_flow, CheckError};
use crate::ir::{
    Action, FloodGroup, Flow, Match, NetKey, Owner, PortKey, PuntReason, RouterKey, ARP_OP_REQUEST,
    DHCP_CLIENT_PORT, DHCP_SERVER_PORT, ETH_TYPE_ARP, ETH_TYPE_IPV4, IP_PROTO_ICMP, IP_PROTO_UDP,
};
use crate::stage::{Stage, STAGES};

/// How routed traffic to known ports is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum L3Mode {
    /// A /32 flow per port and router, installed ahead of traffic.
    #[default]
    Proactive,
    /// Only per-subnet punts; the controller installs a destination's flow on its first
    /// packet (with an idle timeout) and releases the packet.
    Reactive,
}

/// Compiler settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileConfig {
    /// Answer ARP for every known port IP on the network, not only for router IPs.
    pub arp_for_ports: bool,
    pub l3_mode: L3Mode,
}

impl Default for CompileConfig {
    fn default() -> Self {
        CompileConfig {
            arp_for_ports: true,
            l3_mode: L3Mode::Proactive,
        }
    }
}

/// Which logical ports are plugged into this host's switch, and where.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bindings {
    ofports: HashMap<Uuid, u32>,
    /// Remote chassis and the tunnel port, when this host is part of an overlay.
    overlay: Option<crate::overlay::Overlay>,
}

impl Bindings {
    pub fn new() -> Self {
        Self::default()
    }
    /// Records that `port` is on switch port `ofport`; returns the previous one.
    pub fn bind(&mut self, port: Uuid, ofport: u32) -> Option<u32> {
        self.ofports.insert(port, ofport)
    }
    pub fn unbind(&mut self, port: &Uuid) -> Option<u32> {
        self.ofports.remove(port)
    }
    pub fn ofport(&self, port: &Uuid) -> Option<u32> {
        self.ofports.get(port).copied()
    }
    pub fn iter(&self) -> impl Iterator<Item = (&Uuid, &u32)> {
        self.ofports.iter()
    }
    pub fn len(&self) -> usize {
        self.ofports.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ofports.is_empty()
    }
    /// Sets the overlay view (chassis list changed): callers recompile in full.
    pub fn set_overlay(&mut self, overlay: Option<crate::overlay::Overlay>) {
        self.overlay = overlay;
    }
    pub fn overlay(&self) -> Option<&crate::overlay::Overlay> {
        self.overlay.as_ref()
    }
}

/// Host-local numbering of objects, stable while they exist; freed keys are reused.
#[derive(Debug, Clone, Default)]
struct KeyMap {
    by_id: HashMap<Uuid, u32>,
    by_key: HashMap<u32, Uuid>,
    /// Allocations (`Some`) and releases (`None`) not yet taken by the caller.
    changes: Vec<(Uuid, Option<u32>)>,
    free: BTreeSet<u32>,
    next: u32,
}

impl KeyMap {
    fn get_or_alloc(&mut self, id: Uuid) -> u32 {
        if let Some(k) = self.by_id.get(&id) {
            return *k;
        }
        let k = match self.free.pop_first() {
            Some(k) => k,
            None => {
                self.next += 1;
                self.next
            }
        };
        self.by_id.insert(id, k);
        self.by_key.insert(k, id);
        self.changes.push((id, Some(k)));
        k
    }
    /// Takes back a key allocated in an earlier run (before anything else is allocated).
    fn restore(&mut self, id: Uuid, k: u32) {
        if k == 0 || self.by_key.contains_key(&k) || self.by_id.contains_key(&id) {
            return;
        }
        self.by_id.insert(id, k);
        self.by_key.insert(k, id);
        self.free.remove(&k);
        while self.next < k {
            self.next += 1;
            if !self.by_key.contains_key(&self.next) {
                self.free.insert(self.next);
            }
        }
    }
    fn release(&mut self, id: &Uuid) {
        if let Some(k) = self.by_id.remove(id) {
            self.by_key.remove(&k);
            self.free.insert(k);
            self.changes.push((*id, None));
        }
    }
    fn retain(&mut self, mut keep: impl FnMut(&Uuid) -> bool) {
        let gone: Vec<Uuid> = self.by_id.keys().filter(|id| !keep(id)).copied().collect();
        for id in gone {
            self.release(&id);
        }
    }
}

/// The kind of object a host-local key numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyKind {
    Network,
    Port,
    Router,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Network => "network",
            KeyKind::Port => "port",
            KeyKind::Router => "router",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "network" => KeyKind::Network,
            "port" => KeyKind::Port,
            "router" => KeyKind::Router,
            _ => return None,
        })
    }
}

/// What a compile changed: flows and flood groups to add and to remove. Back ends apply it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delta {
    pub added: Vec<Flow>,
    pub removed: Vec<Flow>,
    /// Groups created or whose ports changed.
    pub groups_set: Vec<FloodGroup>,
    pub groups_removed: Vec<NetKey>,
    /// How many owners were recompiled (a full compile recompiles all of them).
    pub owners_recompiled: usize,
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.groups_set.is_empty()
            && self.groups_removed.is_empty()
    }
}

/// Why compilation failed: a compiled flow broke its stage's declaration (a compiler bug,
/// reported with the flow rather than sent to a switch).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error("failed to compile {owner}: {source}")]
    InvalidFlow {
        owner: Owner,
        #[source]
        source: CheckError,
    },
}

/// The compiler and the current compiled state of this host's pipeline.
#[derive(Debug, Clone, Default)]
pub struct Compiler {
    cfg: CompileConfig,
    nets: KeyMap,
    ports: KeyMap,
    routers: KeyMap,
    flows: BTreeMap<Owner, Vec<Flow>>,
    /// Compiled flows per stage (indexed by [`Stage::index`]), kept as owners are
    /// recompiled so that metrics never walk every flow.
    stage_counts: [usize; STAGES.len()],
    groups: BTreeMap<NetKey, FloodGroup>,
}

impl Compiler {
    pub fn new(cfg: CompileConfig) -> Self {
        Compiler {
            cfg,
            ..Default::default()
        }
    }

    pub fn config(&self) -> CompileConfig {
        self.cfg
    }

    /// Every compiled flow, grouped by owner.
    pub fn flows(&self) -> impl Iterator<Item = &Flow> {
        self.flows.values().flatten()
    }

    pub fn flow_count(&self) -> usize {
        self.stage_counts.iter().sum()
    }

    /// How many compiled flows each stage holds, in [`STAGES`] order; O(1).
    pub fn flows_by_stage(&self) -> [usize; STAGES.len()] {
        self.stage_counts
    }

    fn count_flows(&mut self, flows: &[Flow], add: bool) {
        for f in flows {
            let n = &mut self.stage_counts[f.stage.index()];
            *n = if add { *n + 1 } else { n.saturating_sub(1) };
        }
    }

    pub fn groups(&self) -> impl Iterator<Item = &FloodGroup> {
        self.groups.values()
    }

    pub fn network_key(&self, id: &Uuid) -> Option<NetKey> {
        self.nets.by_id.get(id).map(|k| NetKey(*k))
    }

    pub fn port_key(&self, id: &Uuid) -> Option<PortKey> {
        self.ports.by_id.get(id).map(|k| PortKey(*k))
    }

    /// The logical port behind a port key (for packet-ins).
    pub fn port_by_key(&self, key: PortKey) -> Option<Uuid> {
        self.ports
            .by_id
            .iter()
            .find(|(_, k)| **k == key.0)
            .map(|(id, _)| *id)
    }

    pub fn router_key(&self, id: &Uuid) -> Option<RouterKey> {
        self.routers.by_id.get(id).map(|k| RouterKey(*k))
    }

    /// The logical router behind a router key (for packet-ins).
    pub fn router_by_key(&self, key: RouterKey) -> Option<Uuid> {
        self.routers.by_key.get(&key.0).copied()
    }

    /// The logical network behind a network key.
    pub fn network_by_key(&self, key: NetKey) -> Option<Uuid> {
        self.nets.by_key.get(&key.0).copied()
    }

    /// Gives back keys persisted by an earlier run, so that a restarted controller numbers
    /// everything as before and the switch's correct flows stay untouched. Call before the
    /// first compile.
    pub fn restore_keys(&mut self, keys: impl IntoIterator<Item = (KeyKind, Uuid, u32)>) {
        for (kind, id, k) in keys {
            self.keymap(kind).restore(id, k);
        }
    }

    /// Keys allocated (`Some`) or released (`None`) since the last call: what to persist.
    pub fn take_key_changes(&mut self) -> Vec<(KeyKind, Uuid, Option<u32>)> {
        let mut out = Vec::new();
        for kind in [KeyKind::Network, KeyKind::Port, KeyKind::Router] {
            out.extend(
                self.keymap(kind)
                    .changes
                    .drain(..)
                    .map(|(id, k)| (kind, id, k)),
            );
        }
        out
    }

    fn keymap(&mut self, kind: KeyKind) -> &mut KeyMap {
        match kind {
            KeyKind::Network => &mut self.nets,
            KeyKind::Port => &mut self.ports,
            KeyKind::Router => &mut self.routers,
        }
    }

    /// Recompiles everything and returns the difference to what was compiled before.
    pub fn full(&mut self, topo: &Topology, bindings: &Bindings) -> Result<Delta, CompileError> {
        self.nets.retain(|id| topo.get_network(id).is_some());
        self.ports.retain(|id| topo.get_port(id).is_some());
        self.routers.retain(|id| topo.get_router(id).is_some());
        let mut owners: BTreeSet<Owner> = self.flows.keys().copied().collect();
        owners.insert(Owner::Static);
        owners.extend(topo.networks().map(|n| Owner::Network(n.id)));
        owners.extend(topo.ports().map(|p| Owner::Port(p.id)));
        owners.extend(topo.routers().map(|r| Owner::Router(r.id)));
        self.recompile(topo, bindings, owners)
    }

    /// Applies one model change (as returned by the model's operations or rebuilt from store
    /// events) and recompiles only the owners it affects.
    pub fn update(
        &mut self,
        topo: &Topology,
        bindings: &Bindings,
        change: &Change,
    ) -> Result<Delta, CompileError> {
        let mut owners = BTreeSet::new();
        for op in &change.ops {
            for obj in [&op.old, &op.new].into_iter().flatten() {
                self.affected(topo, obj, &mut owners);
            }
            if op.new.is_none() {
                match op.old.as_ref().map(Object::kind) {
                    Some(wyvern_model::Kind::Network) => self.nets.release(&op.id),
                    Some(wyvern_model::Kind::Port) => self.ports.release(&op.id),
                    Some(wyvern_model::Kind::Router) => self.routers.release(&op.id),
                    _ => {}
                }
            }
        }
        self.recompile(topo, bindings, owners)
    }

    /// A port was (un)bound or moved to another switch port: recompiles that port and its
    /// network's flood group.
    pub fn binding_changed(
        &mut self,
        topo: &Topology,
        bindings: &Bindings,
        port: Uuid,
    ) -> Result<Delta, CompileError> {
        let mut owners = BTreeSet::from([Owner::Port(port)]);
        if let Some(p) = topo.get_port(&port) {
            owners.insert(Owner::Network(p.network_id));
        }
        self.recompile(topo, bindings, owners)
    }

    /// The owners whose flows may depend on `obj` (in its old or new state).
    fn affected(&self, topo: &Topology, obj: &Object, out: &mut BTreeSet<Owner>) {
        let network_and_dependents = |net: Uuid, out: &mut BTreeSet<Owner>| {
            out.insert(Owner::Network(net));
            for p in topo.network_ports(&net) {
                out.insert(Owner::Port(p.id));
                if p.is_router_interface() {
                    if let Ok(r) = p.device_id.parse() {
                        out.insert(Owner::Router(r));
                    }
                }
            }
        };
        match obj {
            Object::Network(n) => network_and_dependents(n.id, out),
            Object::Subnet(s) => network_and_dependents(s.network_id, out),
            Object::Router(r) => {
                out.insert(Owner::Router(r.id));
                for p in topo.router_interfaces(&r.id) {
                    network_and_dependents(p.network_id, out);
                }
            }
            Object::Port(p) => {
                out.insert(Owner::Port(p.id));
                out.insert(Owner::Network(p.network_id));
                if p.is_router_interface() {
                    // Every port behind this interface gains or loses its route through it.
                    network_and_dependents(p.network_id, out);
                    if let Ok(r) = p.device_id.parse::<Uuid>() {
                        out.insert(Owner::Router(r));
                    }
                } else {
                    // Routers on this network may use the port as a static route's nexthop.
                    for q in topo.network_router_interfaces(&p.network_id) {
                        if let Ok(r) = q.device_id.parse() {
                            out.insert(Owner::Router(r));
                        }
                    }
                }
            }
        }
    }

    fn recompile(
        &mut self,
        topo: &Topology,
        bindings: &Bindings,
        owners: BTreeSet<Owner>,
    ) -> Result<Delta, CompileError> {
        let mut delta = Delta {
            owners_recompiled: owners.len(),
            ..Default::default()
        };
        for owner in owners {
            let (new_flows, new_group) = self.compile_owner(topo, bindings, owner)?;
            let old_flows = self.flows.remove(&owner).unwrap_or_default();
            diff_into(&old_flows, &new_flows, &mut delta);
            self.count_flows(&old_flows, false);
            self.count_flows(&new_flows, true);
            if !new_flows.is_empty() {
                self.flows.insert(owner, new_flows);
            }
            if matches!(owner, Owner::Network(_)) {
                let old_key = self
                    .groups
                    .iter()
                    .find(|(_, g)| g.owner == owner)
                    .map(|(k, _)| *k);
                match (old_key, new_group) {
                    (Some(k), None) => {
                        self.groups.remove(&k);
                        delta.groups_removed.push(k);
                    }
                    (old, Some(g)) => {
                        if let Some(k) = old.filter(|k| *k != g.network) {
                            self.groups.remove(&k);
                            delta.groups_removed.push(k);
                        }
                        if self.groups.get(&g.network) != Some(&g) {
                            delta.groups_set.push(g.clone());
                            self.groups.insert(g.network, g);
                        }
                    }
                    (None, None) => {}
                }
            }
        }
        Ok(delta)
    }

    /// The flows (and, for a network, the flood group) of one owner.
    pub fn compile_owner(
        &mut self,
        topo: &Topology,
        bindings: &Bindings,
        owner: Owner,
    ) -> Result<(Vec<Flow>, Option<FloodGroup>), CompileError> {
        let mut out = Vec::new();
        let mut group = None;
        match owner {
            Owner::Static => static_flows(&mut out),
            Owner::Network(id) => {
                if topo.get_network(&id).is_some() {
                    let nk = NetKey(self.nets.get_or_alloc(id));
                    let mut flood = Flow::new(Stage::L2Lookup, 50, owner)
                        .m(Match::Network(nk))
                        .m(Match::EthDstMulticast);
                    if let Some(o) = bindings.overlay() {
                        o.network_flows(&id, nk, owner, &mut out);
                        flood.actions = o.flood_copies(topo, &id);
                    }
                    out.push(flood.a(Action::Flood(nk)));
                    let mut ports: Vec<u32> = topo
                        .network_ports(&id)
                        .filter(|p| p.admin_state_up)
                        .filter_map(|p| bindings.ofport(&p.id))
                        .collect();
                    ports.sort_unstable();
                    ports.dedup();
                    group = Some(FloodGroup {
                        network: nk,
                        ports,
                        owner,
                    });
                }
            }
            Owner::Port(id) => {
                if let Some(p) = topo.get_port(&id) {
                    if !p.is_router_interface() {
                        self.port_flows(topo, bindings, p, &mut out);
                    }
                }
            }
            Owner::Router(id) => {
                if topo.get_router(&id).is_some() {
                    self.router_flows(topo, id, &mut out);
                }
            }
        }
        out.sort();
        out.dedup();
        for f in &out {
            check_flow(f).map_err(|source| CompileError::InvalidFlow { owner, source })?;
        }
        Ok((out, group))
    }

    fn port_flows(&mut self, topo: &Topology, bindings: &Bindings, p: &Port, out: &mut Vec<Flow>) {
        let owner = Owner::Port(p.id);
        let nk = NetKey(self.nets.get_or_alloc(p.network_id));
        let pk = PortKey(self.ports.get_or_alloc(p.id));
        let mac = p.mac_address;

        // Delivery to this port, wherever it is bound (egress decides how).
        out.push(
            Flow::new(Stage::L2Lookup, 100, owner)
                .m(Match::Network(nk))
                .m(Match::EthDst(mac))
                .a(Action::SetOutPort(pk))
                .a(Action::Goto(Stage::Egress)),
        );
        for ip in p.fixed_ips.iter().map(|f| f.ip_address) {
            if self.cfg.arp_for_ports {
                out.push(arp_reply(owner, nk, ip, mac, 90));
                // A port asking for its own address (duplicate address detection) must not
                // get an answer: let the request flood like any other.
                out.push(
                    Flow::new(Stage::ArpResponder, 95, owner)
                        .m(Match::Network(nk))
                        .m(Match::InPort(pk))
                        .m(Match::EthType(ETH_TYPE_ARP))
                        .m(Match::ArpOp(ARP_OP_REQUEST))
                        .m(Match::ArpTpa(ip))
                        .a(Action::Goto(Stage::L2Lookup)),
                );
            }
            if self.cfg.l3_mode == L3Mode::Proactive {
                for (rk, rmac) in self.routers_serving(topo, p, ip) {
                    out.push(route_to(owner, rk, host(ip), rmac, mac, nk, pk));
                }
            }
        }

        let Some(ofport) = bindings.ofport(&p.id) else {
            // Bound on another chassis: deliver through the tunnel to it.
            let remote = bindings.overlay().and_then(|o| Some((o, o.remote_of(p)?)));
            if let (Some((o, remote)), true) = (remote, p.admin_state_up) {
                out.push(
                    Flow::new(Stage::Egress, 100, owner)
                        .m(Match::OutPort(pk))
                        .a(Action::Tunnel {
                            port: o.tunnel_ofport,
                            vni: crate::overlay::vni_of(&p.network_id),
                            remote,
                        }),
                );
            }
            return;
        };
        if !p.admin_state_up {
            return;
        }
        out.push(
            Flow::new(Stage::Classify, 100, owner)
                .m(Match::PhysInPort(ofport))
                .a(Action::SetInPort(pk))
                .a(Action::SetNetwork(nk))
                .a(Action::Goto(Stage::PortSecurity)),
        );
        let secured = p.port_security_enabled
            && topo
                .get_network(&p.network_id)
                .is_none_or(|n| n.port_security_enabled);
        if secured {
            let mut pairs: Vec<(wyvern_model::MacAddr, Ipv4Net)> = p
                .fixed_ips
                .iter()
                .map(|f| (mac, host(f.ip_address)))
                .collect();
            pairs.extend(
                p.allowed_address_pairs
                    .iter()
                    .map(|a| (a.mac_address, a.ip_address)),
            );
            for (smac, net) in pairs {
                out.push(
                    Flow::new(Stage::PortSecurity, 100, owner)
                        .m(Match::InPort(pk))
                        .m(Match::EthSrc(smac))
                        .m(Match::EthType(ETH_TYPE_IPV4))
                        .m(Match::Ipv4Src(net))
                        .a(Action::Goto(Stage::Dispatch)),
                );
                out.push(
                    Flow::new(Stage::PortSecurity, 100, owner)
                        .m(Match::InPort(pk))
                        .m(Match::EthSrc(smac))
                        .m(Match::EthType(ETH_TYPE_ARP))
                        .m(Match::ArpSha(smac))
                        .m(Match::ArpSpa(net))
                        .a(Action::Goto(Stage::Dispatch)),
                );
            }
            // A client without an address yet may only ask DHCP.
            out.push(
                Flow::new(Stage::PortSecurity, 90, owner)
                    .m(Match::InPort(pk))
                    .m(Match::EthSrc(mac))
                    .m(Match::EthType(ETH_TYPE_IPV4))
                    .m(Match::Ipv4Src(host(Ipv4Addr::UNSPECIFIED)))
                    .m(Match::Ipv4Dst(host(Ipv4Addr::BROADCAST)))
                    .m(Match::IpProto(IP_PROTO_UDP))
                    .m(Match::UdpSrc(DHCP_CLIENT_PORT))
                    .m(Match::UdpDst(DHCP_SERVER_PORT))
                    .a(Action::Goto(Stage::Dispatch)),
            );
        } else {
            out.push(
                Flow::new(Stage::PortSecurity, 50, owner)
                    .m(Match::InPort(pk))
                    .a(Action::Goto(Stage::Dispatch)),
            );
        }
        let dhcp = p
            .fixed_ips
            .iter()
            .any(|f| topo.get_subnet(&f.subnet_id).is_some_and(|s| s.enable_dhcp));
        if dhcp {
            out.push(
                Flow::new(Stage::Dhcp, 100, owner)
                    .m(Match::InPort(pk))
                    .m(Match::EthType(ETH_TYPE_IPV4))
                    .m(Match::IpProto(IP_PROTO_UDP))
                    .m(Match::UdpSrc(DHCP_CLIENT_PORT))
                    .m(Match::UdpDst(DHCP_SERVER_PORT))
                    .a(Action::Punt(PuntReason::Dhcp)),
            );
        }
        out.push(
            Flow::new(Stage::Egress, 100, owner)
                .m(Match::OutPort(pk))
                .a(Action::Output(ofport)),
        );
    }

    /// The flow that routes `dst` through `router` (reactive mode installs it on the first
    /// packet): `None` when no port on an attached subnet holds that address.
    pub fn reactive_route(&mut self, topo: &Topology, router: Uuid, dst: Ipv4Addr) -> Option<Flow> {
        let rk = RouterKey(self.routers.get_or_alloc(router));
        for iface in topo.router_interfaces(&router) {
            let on_subnet = iface.fixed_ips.iter().any(|f| {
                topo.get_subnet(&f.subnet_id)
                    .is_some_and(|s| s.cidr.contains(&dst))
            });
            if !on_subnet {
                continue;
            }
            // The subnet's allocation index names the port holding `dst`: no scan of the
            // network's ports on the first packet.
            let target = iface
                .fixed_ips
                .iter()
                .filter_map(|f| topo.ip_owner(&f.subnet_id, dst))
                .filter_map(|id| topo.get_port(&id))
                .find(|q| q.network_id == iface.network_id && !q.is_router_interface())?;
            let nk = NetKey(self.nets.get_or_alloc(target.network_id));
            let pk = PortKey(self.ports.get_or_alloc(target.id));
            return Some(route_to(
                Owner::Port(target.id),
                rk,
                host(dst),
                iface.mac_address,
                target.mac_address,
                nk,
                pk,
            ));
        }
        None
    }

    /// Routers with an interface on a subnet containing `ip` (other than the port's own
    /// subnet interface logic): each with the MAC of that interface, the source MAC of
    /// packets it routes to `ip`.
    fn routers_serving(
        &mut self,
        topo: &Topology,
        p: &Port,
        ip: Ipv4Addr,
    ) -> Vec<(RouterKey, wyvern_model::MacAddr)> {
        let mut out = Vec::new();
        for iface in topo.network_router_interfaces(&p.network_id) {
            let Ok(rid) = iface.device_id.parse::<Uuid>() else {
                continue;
            };
            if topo.get_router(&rid).is_none() {
                continue;
            }
            let on_same_subnet = iface.fixed_ips.iter().any(|f| {
                topo.get_subnet(&f.subnet_id)
                    .is_some_and(|s| s.cidr.contains(&ip))
            });
            if on_same_subnet {
                out.push((RouterKey(self.routers.get_or_alloc(rid)), iface.mac_address));
            }
        }
        out
    }

    fn router_flows(&mut self, topo: &Topology, rid: Uuid, out: &mut Vec<Flow>) {
        let owner = Owner::Router(rid);
        let Some(router) = topo.get_router(&rid) else {
            return;
        };
        let rk = RouterKey(self.routers.get_or_alloc(rid));
        // (subnet cidr, interface ip, interface mac, network key) of each attached subnet.
        let mut ifaces = Vec::new();
        for iface in topo.router_interfaces(&rid) {
            let nk = NetKey(self.nets.get_or_alloc(iface.network_id));
            for f in &iface.fixed_ips {
                if let Some(s) = topo.get_subnet(&f.subnet_id) {
                    ifaces.push((
                        s.cidr.trunc(),
                        f.ip_address,
                        iface.mac_address,
                        nk,
                        iface.network_id,
                    ));
                }
            }
        }
        for &(cidr, gw, rmac, nk, _) in &ifaces {
            out.push(arp_reply(owner, nk, gw, rmac, 100));
            out.push(
                Flow::new(Stage::L2Lookup, 100, owner)
                    .m(Match::Network(nk))
                    .m(Match::EthDst(rmac))
                    .a(Action::SetRouter(rk))
                    .a(Action::Goto(Stage::L3Lookup)),
            );
            // ICMP to any of the router's addresses goes to the controller (echo replies);
            // anything else addressed to the router is dropped.
            out.push(
                Flow::new(Stage::L3Lookup, 300, owner)
                    .m(Match::Router(rk))
                    .m(Match::EthType(ETH_TYPE_IPV4))
                    .m(Match::IpProto(IP_PROTO_ICMP))
                    .m(Match::Ipv4Dst(host(gw)))
                    .a(Action::Punt(PuntReason::IcmpToRouter)),
            );
            out.push(
                Flow::new(Stage::L3Lookup, 290, owner)
                    .m(Match::Router(rk))
                    .m(Match::EthType(ETH_TYPE_IPV4))
                    .m(Match::Ipv4Dst(host(gw))),
            );
            // Unknown hosts on an attached subnet (and every host in reactive mode).
            out.push(
                Flow::new(Stage::L3Lookup, 100 + u16::from(cidr.prefix_len()), owner)
                    .m(Match::Router(rk))
                    .m(Match::EthType(ETH_TYPE_IPV4))
                    .m(Match::Ipv4Dst(cidr))
                    .a(Action::Punt(PuntReason::L3Miss)),
            );
        }
        if !ifaces.is_empty() {
            for ttl in [0u8, 1] {
                out.push(
                    Flow::new(Stage::L3Lookup, 250, owner)
                        .m(Match::Router(rk))
                        .m(Match::EthType(ETH_TYPE_IPV4))
                        .m(Match::IpTtl(ttl))
                        .a(Action::Punt(PuntReason::TtlExpired)),
                );
            }
        }
        for route in &router.routes {
            let dest = route.destination.trunc();
            let prio = 100 + u16::from(dest.prefix_len());
            let via = ifaces.iter().find(|i| i.0.contains(&route.nexthop));
            let target = via.and_then(|&(_, _, rmac, nk, net)| {
                topo.network_ports(&net)
                    .find(|q| {
                        !q.is_router_interface()
                            && q.fixed_ips.iter().any(|f| f.ip_address == route.nexthop)
                    })
                    .map(|q| (rmac, nk, q.mac_address, q.id))
            });
            let flow = Flow::new(Stage::L3Lookup, prio, owner)
                .m(Match::Router(rk))
                .m(Match::EthType(ETH_TYPE_IPV4))
                .m(Match::Ipv4Dst(dest));
            out.push(match target {
                Some((rmac, nk, nh_mac, nh_port)) => {
                    let pk = PortKey(self.ports.get_or_alloc(nh_port));
                    route_to(owner, rk, dest, rmac, nh_mac, nk, pk)
                }
                None => flow.a(Action::Punt(PuntReason::L3Miss)),
            });
        }
    }
}

fn host(ip: Ipv4Addr) -> Ipv4Net {
    Ipv4Net::from(ip)
}

fn arp_reply(
    owner: Owner,
    nk: NetKey,
    ip: Ipv4Addr,
    mac: wyvern_model::MacAddr,
    prio: u16,
) -> Flow {
    Flow::new(Stage::ArpResponder, prio, owner)
        .m(Match::Network(nk))
        .m(Match::EthType(ETH_TYPE_ARP))
        .m(Match::ArpOp(ARP_OP_REQUEST))
        .m(Match::ArpTpa(ip))
        .a(Action::ArpReply { mac })
}

/// A routed delivery: the router's MAC as source, the target's as destination, one hop less.
fn route_to(
    owner: Owner,
    rk: RouterKey,
    dest: Ipv4Net,
    rmac: wyvern_model::MacAddr,
    dmac: wyvern_model::MacAddr,
    nk: NetKey,
    pk: PortKey,
) -> Flow {
    Flow::new(Stage::L3Lookup, 100 + u16::from(dest.prefix_len()), owner)
        .m(Match::Router(rk))
        .m(Match::EthType(ETH_TYPE_IPV4))
        .m(Match::Ipv4Dst(dest))
        .a(Action::DecTtl)
        .a(Action::SetEthSrc(rmac))
        .a(Action::SetEthDst(dmac))
        .a(Action::SetNetwork(nk))
        .a(Action::SetOutPort(pk))
        .a(Action::Goto(Stage::Egress))
}

/// Flows every pipeline has: ARP and DHCP requests to their stages.
fn static_flows(out: &mut Vec<Flow>) {
    out.push(
        Flow::new(Stage::Dispatch, 100, Owner::Static)
            .m(Match::EthType(ETH_TYPE_ARP))
            .m(Match::ArpOp(ARP_OP_REQUEST))
            .a(Action::Goto(Stage::ArpResponder)),
    );
    out.push(
        Flow::new(Stage::Dispatch, 100, Owner::Static)
            .m(Match::EthType(ETH_TYPE_IPV4))
            .m(Match::IpProto(IP_PROTO_UDP))
            .m(Match::UdpSrc(DHCP_CLIENT_PORT))
            .m(Match::UdpDst(DHCP_SERVER_PORT))
            .a(Action::Goto(Stage::Dhcp)),
    );
}

/// Adds to `delta` the flows only in `new` and only in `old` (both sorted).
fn diff_into(old: &[Flow], new: &[Flow], delta: &mut Delta) {
    let old_set: BTreeSet<&Flow> = old.iter().collect();
    let new_set: BTreeSet<&Flow> = new.iter().collect();
    delta
        .removed
        .extend(old_set.difference(&new_set).map(|f| (*f).clone()));
    delta
        .added
        .extend(new_set.difference(&old_set).map(|f| (*f).clone()));
}
