//! The in-memory topology: every object, indexed for validation and IPAM, and the `Change`
//! that operations produce. Operations (in `ops.rs`) only read the topology; `apply` is the
//! only mutation, so a caller can validate under a lock, apply, and persist the same `Change`.
//!
//! Store layout (see docs/multi-host.md, "Selective sync"): each object is its Neutron JSON.
//! Networks and routers are global (`/wyvern/v1/networks/<id>`, `/wyvern/v1/routers/<id>`);
//! subnets and ports live in their network's partition (`/wyvern/v1/net/<net>/subnets/<id>`,
//! `/wyvern/v1/net/<net>/ports/<id>`), so that a host can watch only the networks it needs
//! (etcd filters watches by key, never by value). `network_id` is immutable, so an object's
//! key never changes. Two small index families, written in the same transaction as the
//! object ([`ChangeOp::index_writes`]), let a host find partitions without reading them:
//! `/wyvern/v1/index/port-network/<port>` = network id, and
//! `/wyvern/v1/index/router-link/<router>/<network>/<port>` for each router interface.
//! Any component can mirror the topology from a store watch with [`Topology::apply_put`] and
//! [`Topology::apply_delete`] (index keys are not objects: [`parse_key`] returns `None`); the
//! indexes are maintained the same way whichever path an object arrives by.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use uuid::Uuid;

use crate::types::{AllocationPool, MacAddr, MacPrefix, Network, Port, Router, Subnet};

/// The prefix under which every topology object is stored.
pub const KEY_PREFIX: &str = "/wyvern/v1/";

/// The kinds of stored objects; the string is the key segment and the Neutron collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Network,
    Subnet,
    Port,
    Router,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Network, Kind::Subnet, Kind::Port, Kind::Router];

    /// The collection name: `networks`, `subnets`, `ports`, `routers`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Network => "networks",
            Kind::Subnet => "subnets",
            Kind::Port => "ports",
            Kind::Router => "routers",
        }
    }

    /// The singular name used as the JSON wrapper key: `network`, `subnet`, ...
    pub fn singular(self) -> &'static str {
        match self {
            Kind::Network => "network",
            Kind::Subnet => "subnet",
            Kind::Port => "port",
            Kind::Router => "router",
        }
    }
}

impl FromStr for Kind {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s).ok_or(())
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the per-network partitions start: `/wyvern/v1/net/<net>/{subnets,ports}/<id>`.
pub const NET_PREFIX: &str = "/wyvern/v1/net/";
/// Index keys (not objects): port -> network and router <-> network links.
pub const INDEX_PREFIX: &str = "/wyvern/v1/index/";
/// `/wyvern/v1/index/port-network/<port>` = the port's network id.
pub const PORT_NETWORK_PREFIX: &str = "/wyvern/v1/index/port-network/";
/// `/wyvern/v1/index/router-link/<router>/<network>/<port>` (empty value): one per router
/// interface port.
pub const ROUTER_LINK_PREFIX: &str = "/wyvern/v1/index/router-link/";
/// The global prefix of networks.
pub const NETWORKS_PREFIX: &str = "/wyvern/v1/networks/";
/// The global prefix of routers.
pub const ROUTERS_PREFIX: &str = "/wyvern/v1/routers/";

/// The key of a global object (network or router): `/wyvern/v1/<kind>/<id>`.
pub fn global_key(kind: Kind, id: Uuid) -> String {
    format!("{KEY_PREFIX}{}/{}", kind.as_str(), id)
}

/// The prefix of one network's partition: `/wyvern/v1/net/<net>/`.
pub fn partition_prefix(network: Uuid) -> String {
    format!("{NET_PREFIX}{network}/")
}

/// The key of an object inside its network's partition (subnets and ports).
pub fn partition_key(network: Uuid, kind: Kind, id: Uuid) -> String {
    format!("{NET_PREFIX}{network}/{}/{}", kind.as_str(), id)
}

/// The store key of an object: global for networks and routers, in the network's
/// partition for subnets and ports.
pub fn object_key(obj: &Object) -> String {
    match obj {
        Object::Network(n) => global_key(Kind::Network, n.id),
        Object::Router(r) => global_key(Kind::Router, r.id),
        Object::Subnet(s) => partition_key(s.network_id, Kind::Subnet, s.id),
        Object::Port(p) => partition_key(p.network_id, Kind::Port, p.id),
    }
}

/// The inverse of [`object_key`]: kind and id of an object key; `None` for anything else
/// (index keys, old-layout keys, other prefixes).
pub fn parse_key(key: &str) -> Option<(Kind, Uuid)> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    if let Some(part) = rest.strip_prefix("net/") {
        let (net, rest) = part.split_once('/')?;
        Uuid::parse_str(net).ok()?;
        let (kind, id) = rest.split_once('/')?;
        let kind: Kind = kind.parse().ok()?;
        if !matches!(kind, Kind::Subnet | Kind::Port) {
            return None;
        }
        return Some((kind, Uuid::parse_str(id).ok()?));
    }
    let (kind, id) = rest.split_once('/')?;
    let kind: Kind = kind.parse().ok()?;
    if !matches!(kind, Kind::Network | Kind::Router) {
        return None;
    }
    Some((kind, Uuid::parse_str(id).ok()?))
}

/// The network of a partition key (`/wyvern/v1/net/<net>/...`).
pub fn partition_of(key: &str) -> Option<Uuid> {
    let rest = key.strip_prefix(NET_PREFIX)?;
    let (net, _) = rest.split_once('/')?;
    Uuid::parse_str(net).ok()
}

/// A key of the session-3 layout (`/wyvern/v1/subnets/<id>`, `/wyvern/v1/ports/<id>`), which
/// this version no longer reads: a store holding them must be migrated or recreated.
pub fn is_old_layout_key(key: &str) -> bool {
    key.strip_prefix(KEY_PREFIX)
        .is_some_and(|rest| rest.starts_with("subnets/") || rest.starts_with("ports/"))
}

/// The index key recording a port's network.
pub fn port_network_key(port: Uuid) -> String {
    format!("{PORT_NETWORK_PREFIX}{port}")
}

/// Port and network of a port-network index entry.
pub fn parse_port_network(key: &str, value: &[u8]) -> Option<(Uuid, Uuid)> {
    let port = Uuid::parse_str(key.strip_prefix(PORT_NETWORK_PREFIX)?).ok()?;
    let net = Uuid::parse_str(std::str::from_utf8(value).ok()?).ok()?;
    Some((port, net))
}

/// A router interface: router `router` has interface port `port` on `network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouterLink {
    pub router: Uuid,
    pub network: Uuid,
    pub port: Uuid,
}

impl RouterLink {
    /// The link a port stands for, if it is a router interface of a router (a UUID
    /// `device_id`).
    pub fn of_port(p: &Port) -> Option<RouterLink> {
        if !p.is_router_interface() {
            return None;
        }
        Some(RouterLink {
            router: Uuid::parse_str(&p.device_id).ok()?,
            network: p.network_id,
            port: p.id,
        })
    }

    /// `/wyvern/v1/index/router-link/<router>/<network>/<port>`.
    pub fn key(&self) -> String {
        format!(
            "{ROUTER_LINK_PREFIX}{}/{}/{}",
            self.router, self.network, self.port
        )
    }

    /// The inverse of [`RouterLink::key`].
    pub fn parse(key: &str) -> Option<RouterLink> {
        let mut it = key.strip_prefix(ROUTER_LINK_PREFIX)?.split('/');
        let link = RouterLink {
            router: Uuid::parse_str(it.next()?).ok()?,
            network: Uuid::parse_str(it.next()?).ok()?,
            port: Uuid::parse_str(it.next()?).ok()?,
        };
        it.next().is_none().then_some(link)
    }
}

/// Any stored object. Objects are immutable once built and shared by `Arc`, so a reader can
/// take a snapshot of thousands of them without copying.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    Network(Arc<Network>),
    Subnet(Arc<Subnet>),
    Port(Arc<Port>),
    Router(Arc<Router>),
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Network(_) => Kind::Network,
            Object::Subnet(_) => Kind::Subnet,
            Object::Port(_) => Kind::Port,
            Object::Router(_) => Kind::Router,
        }
    }

    pub fn id(&self) -> Uuid {
        match self {
            Object::Network(o) => o.id,
            Object::Subnet(o) => o.id,
            Object::Port(o) => o.id,
            Object::Router(o) => o.id,
        }
    }

    /// The stored form (Neutron JSON).
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1024);
        let r = match self {
            Object::Network(o) => serde_json::to_writer(&mut out, &**o),
            Object::Subnet(o) => serde_json::to_writer(&mut out, &**o),
            Object::Port(o) => serde_json::to_writer(&mut out, &**o),
            Object::Router(o) => serde_json::to_writer(&mut out, &**o),
        };
        // Serializing these plain structs into memory cannot fail (no maps with non-string
        // keys, no custom serializers that error).
        match r {
            Ok(()) => out,
            Err(_) => Vec::new(),
        }
    }

    /// [`Object::to_json`] in an exactly sized, cheaply cloned buffer (what the JSON cache
    /// keeps: no spare capacity per object).
    pub fn to_json_bytes(&self) -> Bytes {
        Bytes::copy_from_slice(&self.to_json())
    }

    /// Whether `self` and `other` are the very same object (same `Arc`), not just equal.
    pub fn same(&self, other: &Object) -> bool {
        match (self, other) {
            (Object::Network(a), Object::Network(b)) => Arc::ptr_eq(a, b),
            (Object::Subnet(a), Object::Subnet(b)) => Arc::ptr_eq(a, b),
            (Object::Port(a), Object::Port(b)) => Arc::ptr_eq(a, b),
            (Object::Router(a), Object::Router(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// Parses the stored form of an object of `kind`.
    pub fn from_json(kind: Kind, bytes: &[u8]) -> Result<Object, serde_json::Error> {
        Ok(match kind {
            Kind::Network => Object::Network(Arc::new(serde_json::from_slice(bytes)?)),
            Kind::Subnet => Object::Subnet(Arc::new(serde_json::from_slice(bytes)?)),
            Kind::Port => Object::Port(Arc::new(serde_json::from_slice(bytes)?)),
            Kind::Router => Object::Router(Arc::new(serde_json::from_slice(bytes)?)),
        })
    }
}

/// One object written or deleted by an operation, with its previous version (for guards and
/// for undoing).
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeOp {
    pub kind: Kind,
    pub id: Uuid,
    /// The object before the change; `None` for a create.
    pub old: Option<Object>,
    /// The object after the change; `None` for a delete.
    pub new: Option<Object>,
}

/// One index write that accompanies an object write: `Some(value)` puts, `None` deletes.
pub type IndexWrite = (String, Option<String>);

impl ChangeOp {
    /// The object's store key (from the new version, or the old one for a delete: the
    /// network of a subnet or port is immutable, so both give the same key).
    pub fn key(&self) -> String {
        match self.new.as_ref().or(self.old.as_ref()) {
            Some(obj) => object_key(obj),
            // Never built by operations (a change op has an old or a new side).
            None => global_key(self.kind, self.id),
        }
    }

    /// The index keys this op puts or deletes, to be written in the same transaction:
    /// the port-network entry on a port's create and delete, and the router link when a
    /// port becomes, stops being or changes as a router interface.
    pub fn index_writes(&self) -> Vec<IndexWrite> {
        let port = |o: &Option<Object>| match o {
            Some(Object::Port(p)) => Some(p.clone()),
            _ => None,
        };
        let (old, new) = (port(&self.old), port(&self.new));
        let mut out = Vec::new();
        match (&old, &new) {
            (None, Some(p)) => out.push((port_network_key(p.id), Some(p.network_id.to_string()))),
            (Some(p), None) => out.push((port_network_key(p.id), None)),
            (Some(a), Some(b)) if a.network_id != b.network_id => {
                out.push((port_network_key(b.id), Some(b.network_id.to_string())))
            }
            _ => {}
        }
        let old_link = old.as_deref().and_then(RouterLink::of_port);
        let new_link = new.as_deref().and_then(RouterLink::of_port);
        if old_link != new_link {
            if let Some(l) = old_link {
                out.push((l.key(), None));
            }
            if let Some(l) = new_link {
                out.push((l.key(), Some(String::new())));
            }
        }
        out
    }
}

/// What an operation does to the topology, in order: apply it to a `Topology` with
/// [`Topology::apply`] and write it to the store as puts (`new` is `Some`) and deletes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Change {
    pub ops: Vec<ChangeOp>,
}

impl Change {
    pub(crate) fn put(&mut self, old: Option<Object>, new: Object) {
        self.ops.push(ChangeOp {
            kind: new.kind(),
            id: new.id(),
            old,
            new: Some(new),
        });
    }

    pub(crate) fn delete(&mut self, old: Object) {
        self.ops.push(ChangeOp {
            kind: old.kind(),
            id: old.id(),
            old: Some(old),
            new: None,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The change that undoes this one (applied after it, restores the previous state).
    pub fn inverse(&self) -> Change {
        Change {
            ops: self
                .ops
                .iter()
                .rev()
                .map(|op| ChangeOp {
                    kind: op.kind,
                    id: op.id,
                    old: op.new.clone(),
                    new: op.old.clone(),
                })
                .collect(),
        }
    }

    /// Appends another change (for bulk operations).
    pub fn extend(&mut self, other: Change) {
        self.ops.extend(other.ops);
    }
}

/// Why a store entry could not be mirrored into a topology.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("failed to mirror key {0:?}: not a topology object key (/wyvern/v1/{{networks,routers}}/<uuid> or /wyvern/v1/net/<net>/{{subnets,ports}}/<uuid>)")]
    UnknownKey(String),
    #[error("failed to decode the object stored at {key}: {source}")]
    Decode {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("failed to mirror key {key}: the stored object has id {found}")]
    IdMismatch { key: String, found: Uuid },
}

/// Tunables of the model that operators may change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelConfig {
    /// The first three bytes of generated MAC addresses.
    pub mac_prefix: MacPrefix,
    /// MTU of new networks and the largest MTU a network may ask for (1450 leaves room for
    /// VXLAN on a 1500-byte underlay).
    pub max_mtu: u32,
    /// Neutron's `max_dns_nameservers`.
    pub max_dns_nameservers: usize,
    /// Neutron's `max_subnet_host_routes`.
    pub max_subnet_host_routes: usize,
    /// Neutron's `max_routes` (static routes per router).
    pub max_routes: usize,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            mac_prefix: MacPrefix::default(),
            max_mtu: 1450,
            max_dns_nameservers: 5,
            max_subnet_host_routes: 20,
            max_routes: 30,
        }
    }
}

/// The addresses taken on one subnet, and where to start looking for a free one.
#[derive(Debug, Default, Clone)]
pub(crate) struct SubnetAlloc {
    /// Address -> the port holding it.
    pub(crate) used: HashMap<Ipv4Addr, Uuid>,
    /// Invariant: no free pool address is below `hint`. Allocation scans from here, so
    /// sequential allocation is O(1) amortized even on a /16 with 60,000 ports.
    pub(crate) hint: u32,
}

impl SubnetAlloc {
    /// Moves `hint` forward past taken addresses (and gaps between pools).
    fn advance(&mut self, pools: &[AllocationPool]) {
        loop {
            let h = self.hint;
            let next = pools
                .iter()
                .filter(|p| u32::from(p.end) >= h)
                .min_by_key(|p| u32::from(p.start));
            let Some(p) = next else { return };
            let c = h.max(u32::from(p.start));
            if !self.used.contains_key(&Ipv4Addr::from(c)) {
                self.hint = c;
                return;
            }
            match c.checked_add(1) {
                Some(n) => self.hint = n,
                None => return,
            }
        }
    }

    /// The lowest free pool address not in `exclude`.
    pub(crate) fn find_free(
        &self,
        pools: &[AllocationPool],
        exclude: &[Ipv4Addr],
    ) -> Option<Ipv4Addr> {
        let mut sorted: Vec<&AllocationPool> = pools.iter().collect();
        sorted.sort_by_key(|p| p.start);
        for p in sorted {
            let (start, end) = (u32::from(p.start).max(self.hint), u32::from(p.end));
            if start > end {
                continue;
            }
            for c in start..=end {
                let ip = Ipv4Addr::from(c);
                if !self.used.contains_key(&ip) && !exclude.contains(&ip) {
                    return Some(ip);
                }
            }
        }
        None
    }
}

/// A network as Neutron shows it: the stored object plus its derived `subnets` list.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkView {
    #[serde(flatten)]
    pub network: Arc<Network>,
    pub subnets: Vec<Uuid>,
}

/// The serialized JSON of every object, built once when the object is inserted (see
/// [`Topology::enable_json_cache`]).
#[derive(Clone, Default)]
pub(crate) struct JsonCache(HashMap<(Kind, Uuid), Bytes>);

impl fmt::Debug for JsonCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JsonCache({} objects)", self.0.len())
    }
}

/// Every object of the logical topology, with the indexes validation and IPAM need.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    pub(crate) cfg: ModelConfig,
    pub(crate) networks: BTreeMap<Uuid, Arc<Network>>,
    pub(crate) subnets: BTreeMap<Uuid, Arc<Subnet>>,
    pub(crate) ports: BTreeMap<Uuid, Arc<Port>>,
    pub(crate) routers: BTreeMap<Uuid, Arc<Router>>,
    pub(crate) net_subnets: HashMap<Uuid, BTreeSet<Uuid>>,
    pub(crate) net_ports: HashMap<Uuid, HashSet<Uuid>>,
    pub(crate) allocs: HashMap<Uuid, SubnetAlloc>,
    pub(crate) macs: HashMap<(Uuid, MacAddr), Uuid>,
    pub(crate) router_ports: HashMap<Uuid, BTreeSet<Uuid>>,
    /// Router-interface ports (`network:router_interface`) by network and by subnet of
    /// their fixed IPs, so that packet-in handlers and the compiler find a subnet's gateway
    /// port without scanning every port of the network.
    pub(crate) net_router_ifaces: HashMap<Uuid, BTreeSet<Uuid>>,
    pub(crate) subnet_router_ifaces: HashMap<Uuid, BTreeSet<Uuid>>,
    /// `Some` once [`Topology::enable_json_cache`] was called: invariant, it then holds the
    /// JSON of exactly the current objects.
    pub(crate) json: Option<JsonCache>,
}

impl Topology {
    pub fn new(cfg: ModelConfig) -> Self {
        Topology {
            cfg,
            ..Default::default()
        }
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    // ---- serialized JSON cache ----

    /// From now on, keep every object's JSON ([`Object::to_json`]) next to it, built once
    /// when the object is inserted. A service that writes each object to a store and lists
    /// thousands of them pays the serialization once per write instead of once per write,
    /// once per answer and once per list. Costs the JSON's size in memory per object; off by
    /// default (a mirror that never answers lists does not need it).
    pub fn enable_json_cache(&mut self) {
        if self.json.is_some() {
            return;
        }
        let mut cache = HashMap::with_capacity(self.len());
        let all = self
            .networks
            .values()
            .map(|o| Object::Network(o.clone()))
            .chain(self.subnets.values().map(|o| Object::Subnet(o.clone())))
            .chain(self.ports.values().map(|o| Object::Port(o.clone())))
            .chain(self.routers.values().map(|o| Object::Router(o.clone())));
        for obj in all {
            cache.insert((obj.kind(), obj.id()), obj.to_json_bytes());
        }
        self.json = Some(JsonCache(cache));
    }

    /// The cached JSON of the current object `kind`/`id` (`None` without the cache).
    pub fn json_of(&self, kind: Kind, id: &Uuid) -> Option<&Bytes> {
        self.json.as_ref()?.0.get(&(kind, *id))
    }

    /// The cached JSON of `obj` if `obj` is the current object with its id (the same `Arc`,
    /// not an older or newer version); `None` otherwise or without the cache.
    pub fn cached_json(&self, obj: &Object) -> Option<&Bytes> {
        let id = obj.id();
        let current = match obj {
            Object::Network(_) => self.networks.get(&id).map(|o| Object::Network(o.clone())),
            Object::Subnet(_) => self.subnets.get(&id).map(|o| Object::Subnet(o.clone())),
            Object::Port(_) => self.ports.get(&id).map(|o| Object::Port(o.clone())),
            Object::Router(_) => self.routers.get(&id).map(|o| Object::Router(o.clone())),
        }?;
        if !current.same(obj) {
            return None;
        }
        self.json_of(obj.kind(), &id)
    }

    /// A network's JSON as Neutron shows it (with `subnets`), from the cache when there is
    /// one: the cached object with the derived `subnets` attribute appended.
    pub fn network_view_json(&self, n: &Arc<Network>) -> Vec<u8> {
        let subnets = self.net_subnets.get(&n.id);
        let cached = self
            .cached_json(&Object::Network(n.clone()))
            .filter(|b| b.last() == Some(&b'}') && b.len() > 2);
        let Some(base) = cached else {
            return serde_json::to_vec(&self.network_view(n)).unwrap_or_default();
        };
        let count = subnets.map_or(0, BTreeSet::len);
        let mut out = Vec::with_capacity(base.len() + 16 + count * 39);
        out.extend_from_slice(&base[..base.len() - 1]);
        out.extend_from_slice(b",\"subnets\":[");
        for (i, id) in subnets.into_iter().flatten().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(
                id.hyphenated()
                    .encode_lower(&mut Uuid::encode_buffer())
                    .as_bytes(),
            );
            out.push(b'"');
        }
        out.extend_from_slice(b"]}");
        out
    }

    // ---- read access (unfiltered; the ops module applies visibility) ----

    /// All networks in id order.
    pub fn networks(&self) -> impl Iterator<Item = &Arc<Network>> {
        self.networks.values()
    }
    pub fn subnets(&self) -> impl Iterator<Item = &Arc<Subnet>> {
        self.subnets.values()
    }
    pub fn ports(&self) -> impl Iterator<Item = &Arc<Port>> {
        self.ports.values()
    }
    pub fn routers(&self) -> impl Iterator<Item = &Arc<Router>> {
        self.routers.values()
    }
    pub fn get_network(&self, id: &Uuid) -> Option<&Arc<Network>> {
        self.networks.get(id)
    }
    pub fn get_subnet(&self, id: &Uuid) -> Option<&Arc<Subnet>> {
        self.subnets.get(id)
    }
    pub fn get_port(&self, id: &Uuid) -> Option<&Arc<Port>> {
        self.ports.get(id)
    }
    pub fn get_router(&self, id: &Uuid) -> Option<&Arc<Router>> {
        self.routers.get(id)
    }

    /// The subnets of a network, in id order.
    pub fn network_subnets(&self, network_id: &Uuid) -> impl Iterator<Item = &Arc<Subnet>> {
        self.net_subnets
            .get(network_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.subnets.get(id))
    }

    /// The ports of a network (in no particular order).
    pub fn network_ports(&self, network_id: &Uuid) -> impl Iterator<Item = &Arc<Port>> {
        self.net_ports
            .get(network_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.ports.get(id))
    }

    /// A router's interfaces: its `network:router_interface` ports, in id order.
    pub fn router_interfaces(&self, router_id: &Uuid) -> impl Iterator<Item = &Arc<Port>> {
        self.router_ports
            .get(router_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.ports.get(id))
    }

    /// The router-interface ports (`network:router_interface`, whatever their `device_id`)
    /// on a network, in id order.
    pub fn network_router_interfaces(&self, network_id: &Uuid) -> impl Iterator<Item = &Arc<Port>> {
        self.net_router_ifaces
            .get(network_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.ports.get(id))
    }

    /// The router-interface ports with a fixed IP on a subnet (its gateway port, normally
    /// one), in id order.
    pub fn subnet_router_interfaces(&self, subnet_id: &Uuid) -> impl Iterator<Item = &Arc<Port>> {
        self.subnet_router_ifaces
            .get(subnet_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.ports.get(id))
    }

    /// The port holding `ip` on `subnet_id`, if any.
    pub fn ip_owner(&self, subnet_id: &Uuid, ip: Ipv4Addr) -> Option<Uuid> {
        self.allocs.get(subnet_id)?.used.get(&ip).copied()
    }

    /// The port using `mac` on `network_id`, if any.
    pub fn mac_owner(&self, network_id: &Uuid, mac: MacAddr) -> Option<Uuid> {
        self.macs.get(&(*network_id, mac)).copied()
    }

    /// The network as Neutron shows it (with `subnets`).
    pub fn network_view(&self, n: &Arc<Network>) -> NetworkView {
        NetworkView {
            network: n.clone(),
            subnets: self
                .net_subnets
                .get(&n.id)
                .into_iter()
                .flatten()
                .copied()
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.networks.len() + self.subnets.len() + self.ports.len() + self.routers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    // ---- mutation ----

    /// Applies a change produced by an operation on this topology (or mirrored from a store).
    pub fn apply(&mut self, change: &Change) {
        for op in &change.ops {
            match &op.new {
                Some(obj) => self.insert(obj.clone()),
                None => self.remove(op.kind, op.id),
            }
        }
    }

    /// Mirrors a store put of `key` (a `/wyvern/v1/<kind>/<id>` key) with its JSON value.
    pub fn apply_put(&mut self, key: &str, value: &[u8]) -> Result<(), ApplyError> {
        let (kind, id) = parse_key(key).ok_or_else(|| ApplyError::UnknownKey(key.to_string()))?;
        let obj = Object::from_json(kind, value).map_err(|source| ApplyError::Decode {
            key: key.to_string(),
            source,
        })?;
        if obj.id() != id {
            return Err(ApplyError::IdMismatch {
                key: key.to_string(),
                found: obj.id(),
            });
        }
        self.insert(obj);
        Ok(())
    }

    /// Mirrors a store delete of `key`. Deleting an absent object is not an error.
    pub fn apply_delete(&mut self, key: &str) -> Result<(), ApplyError> {
        let (kind, id) = parse_key(key).ok_or_else(|| ApplyError::UnknownKey(key.to_string()))?;
        self.remove(kind, id);
        Ok(())
    }

    fn insert(&mut self, obj: Object) {
        if let Some(cache) = &mut self.json {
            cache.0.insert((obj.kind(), obj.id()), obj.to_json_bytes());
        }
        match obj {
            Object::Network(n) => {
                self.networks.insert(n.id, n);
            }
            Object::Subnet(s) => {
                let pools_changed = self
                    .subnets
                    .get(&s.id)
                    .is_none_or(|old| old.allocation_pools != s.allocation_pools);
                self.net_subnets
                    .entry(s.network_id)
                    .or_default()
                    .insert(s.id);
                if pools_changed {
                    let a = self.allocs.entry(s.id).or_default();
                    a.hint = 0;
                    a.advance(&s.allocation_pools);
                }
                if let Some(old) = self.subnets.insert(s.id, s.clone()) {
                    if old.network_id != s.network_id {
                        self.unlink_subnet(&old);
                    }
                }
            }
            Object::Port(p) => {
                if let Some(old) = self.ports.get(&p.id).cloned() {
                    self.unindex_port(&old);
                }
                self.index_port(&p);
                self.ports.insert(p.id, p);
            }
            Object::Router(r) => {
                self.routers.insert(r.id, r);
            }
        }
    }

    fn remove(&mut self, kind: Kind, id: Uuid) {
        if let Some(cache) = &mut self.json {
            cache.0.remove(&(kind, id));
        }
        match kind {
            Kind::Network => {
                self.networks.remove(&id);
                if self.net_subnets.get(&id).is_some_and(|s| s.is_empty()) {
                    self.net_subnets.remove(&id);
                }
                if self.net_ports.get(&id).is_some_and(|s| s.is_empty()) {
                    self.net_ports.remove(&id);
                }
            }
            Kind::Subnet => {
                if let Some(old) = self.subnets.remove(&id) {
                    self.unlink_subnet(&old);
                }
                if self.allocs.get(&id).is_some_and(|a| a.used.is_empty()) {
                    self.allocs.remove(&id);
                }
            }
            Kind::Port => {
                if let Some(old) = self.ports.remove(&id) {
                    self.unindex_port(&old);
                }
            }
            Kind::Router => {
                self.routers.remove(&id);
            }
        }
    }

    fn unlink_subnet(&mut self, s: &Subnet) {
        if let Some(set) = self.net_subnets.get_mut(&s.network_id) {
            set.remove(&s.id);
            if set.is_empty() && !self.networks.contains_key(&s.network_id) {
                self.net_subnets.remove(&s.network_id);
            }
        }
    }

    fn router_of(p: &Port) -> Option<Uuid> {
        if p.is_router_interface() {
            Uuid::parse_str(&p.device_id).ok()
        } else {
            None
        }
    }

    fn index_port(&mut self, p: &Port) {
        self.net_ports.entry(p.network_id).or_default().insert(p.id);
        self.macs.insert((p.network_id, p.mac_address), p.id);
        for f in &p.fixed_ips {
            let a = self.allocs.entry(f.subnet_id).or_default();
            a.used.insert(f.ip_address, p.id);
            if u32::from(f.ip_address) == a.hint {
                if let Some(s) = self.subnets.get(&f.subnet_id) {
                    a.advance(&s.allocation_pools);
                }
            }
        }
        if let Some(r) = Self::router_of(p) {
            self.router_ports.entry(r).or_default().insert(p.id);
        }
        if p.is_router_interface() {
            self.net_router_ifaces
                .entry(p.network_id)
                .or_default()
                .insert(p.id);
            for f in &p.fixed_ips {
                self.subnet_router_ifaces
                    .entry(f.subnet_id)
                    .or_default()
                    .insert(p.id);
            }
        }
    }

    fn unindex_port(&mut self, p: &Port) {
        if let Some(set) = self.net_ports.get_mut(&p.network_id) {
            set.remove(&p.id);
            if set.is_empty() && !self.networks.contains_key(&p.network_id) {
                self.net_ports.remove(&p.network_id);
            }
        }
        if self.macs.get(&(p.network_id, p.mac_address)) == Some(&p.id) {
            self.macs.remove(&(p.network_id, p.mac_address));
        }
        for f in &p.fixed_ips {
            if let Some(a) = self.allocs.get_mut(&f.subnet_id) {
                if a.used.get(&f.ip_address) == Some(&p.id) {
                    a.used.remove(&f.ip_address);
                    a.hint = a.hint.min(u32::from(f.ip_address));
                }
                if a.used.is_empty() && !self.subnets.contains_key(&f.subnet_id) {
                    self.allocs.remove(&f.subnet_id);
                }
            }
        }
        if let Some(r) = Self::router_of(p) {
            if let Some(set) = self.router_ports.get_mut(&r) {
                set.remove(&p.id);
                if set.is_empty() {
                    self.router_ports.remove(&r);
                }
            }
        }
        if p.is_router_interface() {
            unindex(&mut self.net_router_ifaces, p.network_id, p.id);
            for f in &p.fixed_ips {
                unindex(&mut self.subnet_router_ifaces, f.subnet_id, p.id);
            }
        }
    }
}

/// Removes `id` from `index[key]`, and the entry once it is empty.
fn unindex(index: &mut HashMap<Uuid, BTreeSet<Uuid>>, key: Uuid, id: Uuid) {
    if let Some(set) = index.get_mut(&key) {
        set.remove(&id);
        if set.is_empty() {
            index.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The router-interface index follows add, move and removal of interfaces.
    #[test]
    fn router_interface_index_by_network_and_subnet() {
        use crate::{
            InterfaceRequest, NetworkCreate, PortCreate, RequestContext, RouterCreate,
            SubnetCreate, Timestamp,
        };
        use serde_json::json;
        let admin = RequestContext::admin("p1", Timestamp(1_700_000_000));
        let mut t = Topology::new(ModelConfig::default());
        macro_rules! run {
            ($r:expr) => {{
                let (c, x) = $r.unwrap();
                t.apply(&c);
                x
            }};
        }
        let n = run!(t.create_network(
            &admin,
            NetworkCreate::from_json(&json!({"name": "n"}), &admin).unwrap()
        ));
        let sub = |cidr: &str| json!({"network_id": n.id, "cidr": cidr, "ip_version": 4});
        let s1 = run!(t.create_subnet(
            &admin,
            SubnetCreate::from_json(&sub("10.0.1.0/24"), &admin).unwrap()
        ));
        let s2 = run!(t.create_subnet(
            &admin,
            SubnetCreate::from_json(&sub("10.0.2.0/24"), &admin).unwrap()
        ));
        let vm = json!({"network_id": n.id, "fixed_ips": [{"subnet_id": s1.id}]});
        run!(t.create_port(&admin, PortCreate::from_json(&vm, &admin).unwrap()));
        let r = run!(t.create_router(
            &admin,
            RouterCreate::from_json(&json!({"name": "r"}), &admin).unwrap()
        ));
        assert_eq!(t.network_router_interfaces(&n.id).count(), 0);
        let by_subnet = |t: &Topology, s: &Uuid| {
            t.subnet_router_interfaces(s)
                .flat_map(|p| p.fixed_ips.iter().map(|f| f.ip_address))
                .collect::<Vec<_>>()
        };
        let add = InterfaceRequest::from_json(&json!({"subnet_id": s1.id})).unwrap();
        run!(t.add_router_interface(&admin, &r.id.to_string(), add));
        assert_eq!(by_subnet(&t, &s1.id), [Ipv4Addr::new(10, 0, 1, 1)]);
        assert!(by_subnet(&t, &s2.id).is_empty());
        assert_eq!(t.network_router_interfaces(&n.id).count(), 1);
        let remove = InterfaceRequest::from_json(&json!({"subnet_id": s1.id})).unwrap();
        run!(t.remove_router_interface(&admin, &r.id.to_string(), remove));
        assert!(by_subnet(&t, &s1.id).is_empty());
        assert_eq!(t.network_router_interfaces(&n.id).count(), 0);
        assert!(t.net_router_ifaces.is_empty() && t.subnet_router_ifaces.is_empty());
    }

    #[test]
    fn keys_round_trip() {
        let (id, net) = (Uuid::new_v4(), Uuid::new_v4());
        for k in [Kind::Network, Kind::Router] {
            assert_eq!(parse_key(&global_key(k, id)), Some((k, id)));
        }
        for k in [Kind::Subnet, Kind::Port] {
            let key = partition_key(net, k, id);
            assert_eq!(parse_key(&key), Some((k, id)));
            assert_eq!(partition_of(&key), Some(net));
            assert!(key.starts_with(&partition_prefix(net)));
        }
        assert_eq!(
            partition_key(net, Kind::Port, id),
            format!("/wyvern/v1/net/{net}/ports/{id}")
        );
        // Old-layout keys, wrong kinds in a place, index keys and strangers are not objects.
        assert_eq!(parse_key(&format!("/wyvern/v1/ports/{id}")), None);
        assert!(is_old_layout_key(&format!("/wyvern/v1/ports/{id}")));
        assert!(!is_old_layout_key(&partition_key(net, Kind::Port, id)));
        assert_eq!(
            parse_key(&format!("/wyvern/v1/net/{net}/networks/{id}")),
            None
        );
        assert_eq!(parse_key(&port_network_key(id)), None);
        assert_eq!(parse_key("/wyvern/v1/bananas/x"), None);
        assert_eq!(parse_key("/other/networks/x"), None);
        let link = RouterLink {
            router: id,
            network: net,
            port: Uuid::new_v4(),
        };
        assert_eq!(parse_key(&link.key()), None);
        assert_eq!(RouterLink::parse(&link.key()), Some(link));
        assert_eq!(
            parse_port_network(&port_network_key(id), net.to_string().as_bytes()),
            Some((id, net))
        );
    }

    #[test]
    fn find_free_skips_used_and_gaps() {
        let pools = [
            AllocationPool {
                start: Ipv4Addr::new(10, 0, 0, 2),
                end: Ipv4Addr::new(10, 0, 0, 3),
            },
            AllocationPool {
                start: Ipv4Addr::new(10, 0, 0, 10),
                end: Ipv4Addr::new(10, 0, 0, 11),
            },
        ];
        let mut a = SubnetAlloc::default();
        a.advance(&pools);
        assert_eq!(a.hint, u32::from(Ipv4Addr::new(10, 0, 0, 2)));
        a.used.insert(Ipv4Addr::new(10, 0, 0, 2), Uuid::nil());
        a.used.insert(Ipv4Addr::new(10, 0, 0, 3), Uuid::nil());
        a.advance(&pools);
        assert_eq!(Ipv4Addr::from(a.hint), Ipv4Addr::new(10, 0, 0, 10));
        assert_eq!(a.find_free(&pools, &[]), Some(Ipv4Addr::new(10, 0, 0, 10)));
        assert_eq!(
            a.find_free(&pools, &[Ipv4Addr::new(10, 0, 0, 10)]),
            Some(Ipv4Addr::new(10, 0, 0, 11))
        );
        a.used.insert(Ipv4Addr::new(10, 0, 0, 10), Uuid::nil());
        a.used.insert(Ipv4Addr::new(10, 0, 0, 11), Uuid::nil());
        a.advance(&pools);
        assert_eq!(a.find_free(&pools, &[]), None);
    }
}
