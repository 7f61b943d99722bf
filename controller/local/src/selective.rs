//! Selective sync: mirror only the part of the topology this host's ports reach.
//!
//! The interest set is computed from three small global things and this host's ports:
//! - the networks of the local ports (a port's network comes from its index key
//!   `/wyvern/v1/index/port-network/<port>`, so a host needs no partition to find it);
//! - the routers with an interface on one of those networks, and every network those
//!   routers reach (one router hop, as Dragonflow and OVN do for distributed routing), from
//!   the router-link index `/wyvern/v1/index/router-link/<router>/<network>/<port>`.
//!
//! Watches: `networks/`, `routers/` and the router-link index are always watched (few and
//! small; their objects are kept in a catalog and only the interesting ones enter the held
//! [`Topology`]); one range + watch (from the range's revision + 1) per interesting network
//! partition `/wyvern/v1/net/<net>/`; one on a local port's index key while its network is
//! unknown (an interface plugged before the API created its port). A network that stops
//! being interesting has its watch closed and its objects leave as deletes; a new one's
//! objects arrive as creates. A watch that ends (`Compacted`, a broken stream) is resynced
//! by itself: a fresh range of its prefix, diffed against what is held, and a new watch.
//!
//! Consistency: each watch is ordered, but different watches are not ordered with each
//! other, so the held topology is per-network consistent rather than one store revision
//! ([`Update::revision`] is the highest revision seen). The model and the compiler take
//! objects in any order (a port before its network, an interface before its router).
//!
//! # Usage (also without OVS, e.g. a many-host simulation)
//! ```ignore
//! let mut sync = SelectiveSync::start(store.clone()).await?;   // global ranges + watches
//! sync.set_local_ports([port_a, port_b]);                        // the host's bound ports
//! let mut compiler = Compiler::new(CompileConfig::default());
//! let mut bindings = Bindings::new();                            // bind the local ports too
//! compiler.full(sync.topology(), &bindings)?;
//! while let Some(update) = sync.next().await {
//!     let update = update?;                                       // a store error (retried)
//!     // `update.change` is already applied to `sync.topology()`; its ops have old + new.
//!     compiler.update(sync.topology(), &bindings, &update.change)?;
//!     let held = sync.held();                                     // counts per kind, watches
//! }
//! ```
//! `next` is cancel-safe (it may sit in a `tokio::select!` next to other inputs; call
//! `set_local_ports` from another branch's handler). It returns after every batch of
//! events that changed the held topology and after every reconcile of the interest set
//! (then possibly with an empty change, so a caller can see [`SelectiveSync::is_settled`]).
//! The watch tasks are tokio tasks; dropping the `SelectiveSync` stops them.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use uuid::Uuid;
use wyvern_model::{
    parse_key, parse_port_network, partition_prefix, port_network_key, Change, ChangeOp, Kind,
    ModelConfig, Network, Object, Router, RouterLink, Topology, NETWORKS_PREFIX, ROUTERS_PREFIX,
    ROUTER_LINK_PREFIX,
};
use wyvern_store::{Event, EventKind, KeyValue, Revision, Store, StoreError};

/// One watched prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WatchId {
    /// `/wyvern/v1/networks/` (global).
    Networks,
    /// `/wyvern/v1/routers/` (global).
    Routers,
    /// `/wyvern/v1/index/router-link/` (global).
    Links,
    /// `/wyvern/v1/net/<net>/`: one network's subnets and ports.
    Partition(Uuid),
    /// `/wyvern/v1/index/port-network/<port>`: a local port whose network is not known yet.
    PortIndex(Uuid),
}

impl WatchId {
    /// The store prefix this watch covers.
    pub fn prefix(&self) -> String {
        match self {
            WatchId::Networks => NETWORKS_PREFIX.to_owned(),
            WatchId::Routers => ROUTERS_PREFIX.to_owned(),
            WatchId::Links => ROUTER_LINK_PREFIX.to_owned(),
            WatchId::Partition(n) => partition_prefix(*n),
            WatchId::PortIndex(p) => port_network_key(*p),
        }
    }
}

/// What the held topology and the watches amount to (what `/metrics` and status show).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    pub networks: usize,
    pub subnets: usize,
    pub ports: usize,
    pub routers: usize,
    /// Watches open: 3 global ones, one per held network, one per local port whose
    /// network is not known yet.
    pub watches: usize,
    /// Network partitions held (the interest set).
    pub partitions: usize,
    /// Local ports as given to [`SelectiveSync::set_local_ports`].
    pub local_ports: usize,
    /// Networks, routers and router links known from the global watches (the catalog).
    pub known_networks: usize,
    pub known_routers: usize,
    pub known_links: usize,
    /// Store events received on all watches since start (the host's share of the store's
    /// watch load).
    pub events: u64,
    /// Ranges read (start, partitions opened, index lookups, resyncs).
    pub ranges: u64,
    /// Watches that ended and were resynced.
    pub resyncs: u64,
    /// Objects that could not be decoded (skipped).
    pub errors: u64,
}

/// One step of the held topology: `change` is already applied to
/// [`SelectiveSync::topology`].
#[derive(Debug, Clone, Default)]
pub struct Update {
    pub change: Change,
    /// The highest store revision seen so far (over all watches).
    pub revision: Revision,
}

/// A message from a watch task.
enum Msg {
    Event(WatchId, u64, Event),
    Ended(WatchId, u64, StoreError),
}

/// A running watch task; aborted when dropped.
struct WatchTask {
    generation: u64,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WatchTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How long a failed range waits before the next attempt (the store is unreachable).
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// Most watch messages handled in one update.
const BATCH: usize = 4096;

/// A selective mirror of the store: see the module documentation.
pub struct SelectiveSync {
    store: Arc<dyn Store>,
    topo: Topology,
    // The catalog (global watches).
    networks: HashMap<Uuid, Arc<Network>>,
    routers: HashMap<Uuid, Arc<Router>>,
    links: BTreeSet<RouterLink>,
    // Local ports and what is known of their networks.
    local: BTreeSet<Uuid>,
    port_net: HashMap<Uuid, Uuid>,
    // What is held: open partitions with the objects read from them, routers in `topo`.
    partitions: BTreeMap<Uuid, HashSet<(Kind, Uuid)>>,
    held_routers: BTreeSet<Uuid>,
    watches: HashMap<WatchId, WatchTask>,
    tx: mpsc::UnboundedSender<Msg>,
    rx: mpsc::UnboundedReceiver<Msg>,
    next_generation: u64,
    /// The interest set may have changed: reconcile before waiting for events.
    dirty: bool,
    /// Bumped by every [`SelectiveSync::mark_dirty`] (a reconcile pass repeats until none).
    marks: u64,
    /// Watches that ended and wait for a range + new watch.
    resync: BTreeSet<WatchId>,
    /// Ops applied to `topo` and not returned yet (kept across a cancelled `next`).
    pending: Change,
    revision: Revision,
    stats: Held,
}

impl SelectiveSync {
    /// Reads the global prefixes (networks, routers, router links) and starts their
    /// watches. Holds nothing until [`SelectiveSync::set_local_ports`] names local ports.
    pub async fn start(store: Arc<dyn Store>) -> Result<SelectiveSync, StoreError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut s = SelectiveSync {
            store,
            topo: Topology::new(ModelConfig::default()),
            networks: HashMap::new(),
            routers: HashMap::new(),
            links: BTreeSet::new(),
            local: BTreeSet::new(),
            port_net: HashMap::new(),
            partitions: BTreeMap::new(),
            held_routers: BTreeSet::new(),
            watches: HashMap::new(),
            tx,
            rx,
            next_generation: 0,
            dirty: false,
            marks: 0,
            resync: BTreeSet::new(),
            pending: Change::default(),
            revision: Revision(0),
            stats: Held::default(),
        };
        for id in [WatchId::Networks, WatchId::Routers, WatchId::Links] {
            s.resync_one(id).await?;
        }
        Ok(s)
    }

    /// Sets the ports bound on this host (their ids, as in OVSDB `external_ids:iface-id`).
    /// The next [`SelectiveSync::next`] opens and closes partitions accordingly.
    pub fn set_local_ports(&mut self, ports: impl IntoIterator<Item = Uuid>) {
        let new: BTreeSet<Uuid> = ports.into_iter().collect();
        if new != self.local {
            self.local = new;
            self.port_net.retain(|p, _| self.local.contains(p));
            self.mark_dirty();
        }
    }

    /// The local ports as last set.
    pub fn local_ports(&self) -> &BTreeSet<Uuid> {
        &self.local
    }

    /// The held topology: the interesting networks, their subnets and ports, and the
    /// routers attached to them.
    pub fn topology(&self) -> &Topology {
        &self.topo
    }

    /// The networks whose partitions are held (the interest set).
    pub fn interest(&self) -> impl Iterator<Item = &Uuid> {
        self.partitions.keys()
    }

    /// Counts of what is held and watched.
    pub fn held(&self) -> Held {
        let mut h = self.stats;
        h.networks = self.topo.networks().count();
        h.subnets = self.topo.subnets().count();
        h.ports = self.topo.ports().count();
        h.routers = self.topo.routers().count();
        h.watches = self.watches.len();
        h.partitions = self.partitions.len();
        h.local_ports = self.local.len();
        h.known_networks = self.networks.len();
        h.known_routers = self.routers.len();
        h.known_links = self.links.len();
        h
    }

    /// True when the held topology reflects the current local ports and catalog: nothing
    /// left to reconcile, no watch waiting for a resync, no index lookup outstanding.
    pub fn is_settled(&self) -> bool {
        !self.dirty && self.resync.is_empty() && self.pending.is_empty()
    }

    /// The next update of the held topology; `None` never happens while `self` lives (the
    /// watch channel's sender is kept here), so a caller may treat it as "stopped". A store
    /// error is returned after a short pause and retried by the next call.
    pub async fn next(&mut self) -> Option<Result<Update, StoreError>> {
        loop {
            if self.dirty || !self.resync.is_empty() {
                if let Err(e) = self.reconcile().await {
                    tokio::time::sleep(RETRY_PAUSE).await;
                    return Some(Err(e));
                }
                return Some(Ok(self.take_update()));
            }
            if !self.pending.is_empty() {
                return Some(Ok(self.take_update()));
            }
            let first = self.rx.recv().await?;
            self.handle(first);
            for _ in 1..BATCH {
                match self.rx.try_recv() {
                    Ok(msg) => self.handle(msg),
                    Err(_) => break,
                }
            }
        }
    }

    fn mark_dirty(&mut self) {
        self.dirty = true;
        self.marks += 1;
    }

    fn take_update(&mut self) -> Update {
        Update {
            change: std::mem::take(&mut self.pending),
            revision: self.revision,
        }
    }

    // ---- applying objects to the held topology ----

    fn current(&self, kind: Kind, id: &Uuid) -> Option<Object> {
        match kind {
            Kind::Network => self.topo.get_network(id).cloned().map(Object::Network),
            Kind::Subnet => self.topo.get_subnet(id).cloned().map(Object::Subnet),
            Kind::Port => self.topo.get_port(id).cloned().map(Object::Port),
            Kind::Router => self.topo.get_router(id).cloned().map(Object::Router),
        }
    }

    /// Applies one put or delete to the held topology and records it in `pending`.
    fn set(&mut self, kind: Kind, id: Uuid, new: Option<Object>) {
        let old = self.current(kind, &id);
        if old.is_none() && new.is_none() {
            return;
        }
        let op = ChangeOp { kind, id, old, new };
        let one = Change { ops: vec![op] };
        self.topo.apply(&one);
        self.pending.extend(one);
    }

    fn decode(&mut self, kv: &KeyValue) -> Option<(Kind, Uuid, Object)> {
        let (kind, id) = parse_key(&kv.key)?;
        match Object::from_json(kind, &kv.value) {
            Ok(o) if o.id() == id => Some((kind, id, o)),
            Ok(o) => {
                self.stats.errors += 1;
                tracing::warn!(key = %kv.key, found = %o.id(), "stored object has another id");
                None
            }
            Err(e) => {
                self.stats.errors += 1;
                tracing::warn!(key = %kv.key, error = %e, "failed to decode stored object");
                None
            }
        }
    }

    // ---- watch messages ----

    fn handle(&mut self, msg: Msg) {
        let (id, generation) = match &msg {
            Msg::Event(id, g, _) | Msg::Ended(id, g, _) => (*id, *g),
        };
        // A message from a watch closed (or replaced) since.
        if self.watches.get(&id).map(|w| w.generation) != Some(generation) {
            return;
        }
        match msg {
            Msg::Ended(id, _, e) => {
                tracing::warn!(watch = ?id, error = %e, "store watch ended; resyncing it");
                self.watches.remove(&id);
                self.stats.resyncs += 1;
                self.resync.insert(id);
            }
            Msg::Event(id, _, ev) => {
                self.stats.events += 1;
                self.revision = self.revision.max(ev.revision());
                self.on_event(id, ev);
            }
        }
    }

    fn on_event(&mut self, id: WatchId, ev: Event) {
        let put = ev.kind == EventKind::Put;
        match id {
            WatchId::Links => {
                if let Some(link) = RouterLink::parse(&ev.kv.key) {
                    let changed = if put {
                        self.links.insert(link)
                    } else {
                        self.links.remove(&link)
                    };
                    if changed {
                        self.mark_dirty();
                    }
                }
            }
            WatchId::PortIndex(port) => {
                if put {
                    if let Some((p, net)) = parse_port_network(&ev.kv.key, &ev.kv.value) {
                        if p == port && self.local.contains(&p) {
                            self.port_net.insert(p, net);
                            // Known now (and immutable): the partition watch takes over.
                            self.watches.remove(&id);
                            self.mark_dirty();
                        }
                    }
                }
            }
            WatchId::Networks | WatchId::Routers | WatchId::Partition(_) => {
                if put {
                    if let Some((kind, oid, obj)) = self.decode(&ev.kv) {
                        self.put_object(id, kind, oid, obj);
                    }
                } else if let Some((kind, oid)) = parse_key(&ev.kv.key) {
                    self.delete_object(id, kind, oid);
                }
            }
        }
    }

    fn put_object(&mut self, from: WatchId, kind: Kind, id: Uuid, obj: Object) {
        match (from, obj) {
            (WatchId::Networks, Object::Network(n)) => {
                self.networks.insert(id, n.clone());
                if self.partitions.contains_key(&id) {
                    self.set(kind, id, Some(Object::Network(n)));
                }
            }
            (WatchId::Routers, Object::Router(r)) => {
                self.routers.insert(id, r.clone());
                if self.held_routers.contains(&id) {
                    self.set(kind, id, Some(Object::Router(r)));
                }
            }
            (WatchId::Partition(net), obj @ (Object::Subnet(_) | Object::Port(_))) => {
                if let Some(held) = self.partitions.get_mut(&net) {
                    held.insert((kind, id));
                    self.set(kind, id, Some(obj));
                }
            }
            _ => {}
        }
    }

    fn delete_object(&mut self, from: WatchId, kind: Kind, id: Uuid) {
        match from {
            WatchId::Networks => {
                self.networks.remove(&id);
                self.set(kind, id, None);
            }
            WatchId::Routers => {
                self.routers.remove(&id);
                self.set(kind, id, None);
            }
            WatchId::Partition(net) => {
                if let Some(held) = self.partitions.get_mut(&net) {
                    held.remove(&(kind, id));
                    self.set(kind, id, None);
                }
                // A local port deleted: its index key goes with it; a recreated port
                // (same iface-id) is found through a new index lookup.
                if kind == Kind::Port && self.port_net.remove(&id).is_some() {
                    self.mark_dirty();
                }
            }
            _ => {}
        }
    }

    // ---- watches and ranges ----

    fn spawn_watch(&mut self, id: WatchId, from: Revision) {
        self.next_generation += 1;
        let generation = self.next_generation;
        let (store, tx, prefix) = (self.store.clone(), self.tx.clone(), id.prefix());
        let task = tokio::spawn(async move {
            let mut stream = match store.watch(&prefix, from).await {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(Msg::Ended(id, generation, e));
                    return;
                }
            };
            while let Some(item) = stream.next().await {
                let msg = match item {
                    Ok(ev) => Msg::Event(id, generation, ev),
                    Err(e) => Msg::Ended(id, generation, e),
                };
                let end = matches!(msg, Msg::Ended(..));
                if tx.send(msg).is_err() || end {
                    return;
                }
            }
            // The store shut down.
            let _ = tx.send(Msg::Ended(id, generation, StoreError::Closed));
        });
        self.watches.insert(id, WatchTask { generation, task });
    }

    async fn range(&mut self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError> {
        let r = self.store.range(prefix).await?;
        self.stats.ranges += 1;
        self.revision = self.revision.max(r.1);
        Ok(r)
    }

    /// Reads `id`'s prefix afresh, makes what is held match it, and watches from there.
    async fn resync_one(&mut self, id: WatchId) -> Result<(), StoreError> {
        let (kvs, rev) = self.range(&id.prefix()).await?;
        match id {
            WatchId::Networks | WatchId::Routers => {
                let kind = if id == WatchId::Networks {
                    Kind::Network
                } else {
                    Kind::Router
                };
                let mut seen = HashSet::new();
                for kv in &kvs {
                    if let Some((kind, oid, obj)) = self.decode(kv) {
                        seen.insert(oid);
                        self.put_object(id, kind, oid, obj);
                    }
                }
                let known: Vec<Uuid> = match kind {
                    Kind::Network => self.networks.keys().copied().collect(),
                    _ => self.routers.keys().copied().collect(),
                };
                for gone in known.into_iter().filter(|k| !seen.contains(k)) {
                    self.delete_object(id, kind, gone);
                }
            }
            WatchId::Links => {
                let links: BTreeSet<RouterLink> = kvs
                    .iter()
                    .filter_map(|kv| RouterLink::parse(&kv.key))
                    .collect();
                if links != self.links {
                    self.links = links;
                    self.mark_dirty();
                }
            }
            WatchId::Partition(net) => {
                let fresh = !self.partitions.contains_key(&net);
                if fresh {
                    self.partitions.insert(net, HashSet::new());
                    if let Some(n) = self.networks.get(&net).cloned() {
                        self.set(Kind::Network, net, Some(Object::Network(n)));
                    }
                }
                let mut seen = HashSet::new();
                // Subnets before ports (key order puts ports first): tidier for indexes.
                let mut objs: Vec<(Kind, Uuid, Object)> =
                    kvs.iter().filter_map(|kv| self.decode(kv)).collect();
                objs.sort_by_key(|(k, _, _)| *k);
                for (kind, oid, obj) in objs {
                    seen.insert((kind, oid));
                    self.put_object(id, kind, oid, obj);
                }
                let gone: Vec<(Kind, Uuid)> = self
                    .partitions
                    .get(&net)
                    .into_iter()
                    .flatten()
                    .filter(|k| !seen.contains(k))
                    .copied()
                    .collect();
                for (kind, oid) in gone {
                    self.delete_object(id, kind, oid);
                }
                // A local port that was deleted before this read: look it up again.
                let stale: Vec<Uuid> = self
                    .port_net
                    .iter()
                    .filter(|(p, n)| **n == net && !seen.contains(&(Kind::Port, **p)))
                    .map(|(p, _)| *p)
                    .collect();
                for p in stale {
                    self.port_net.remove(&p);
                    self.mark_dirty();
                }
            }
            WatchId::PortIndex(port) => {
                let found = kvs
                    .iter()
                    .find_map(|kv| parse_port_network(&kv.key, &kv.value))
                    .filter(|(p, _)| *p == port);
                if let Some((p, net)) = found {
                    self.port_net.insert(p, net);
                    self.mark_dirty();
                    // Known: no watch needed (a network id never changes).
                    self.watches.remove(&id);
                    return Ok(());
                }
            }
        }
        self.spawn_watch(id, Revision(rev.0 + 1));
        Ok(())
    }

    /// Drops a partition: its watch closes, its objects and its network leave the topology.
    fn close_partition(&mut self, net: Uuid) {
        self.watches.remove(&WatchId::Partition(net));
        let Some(held) = self.partitions.remove(&net) else {
            return;
        };
        // Ports first, then subnets, then the network (reverse of the order they came in).
        let mut objs: Vec<(Kind, Uuid)> = held.into_iter().collect();
        objs.sort_by_key(|(k, _)| std::cmp::Reverse(*k));
        for (kind, id) in objs {
            self.set(kind, id, None);
        }
        self.set(Kind::Network, net, None);
    }

    /// Brings watches and the held topology in line with the local ports and the catalog.
    async fn reconcile(&mut self) -> Result<(), StoreError> {
        // A pass can find more to do (a local port missing from a partition it opened).
        // `dirty` stays set until a whole pass found nothing new: a `next` cancelled in
        // the middle of a pass leaves it set, and the next call starts over.
        for _ in 0..16 {
            let marks = self.marks;
            self.reconcile_once().await?;
            if self.marks == marks {
                self.dirty = false;
                return Ok(());
            }
        }
        // Still changing (a store busy with this host's ports): the next call goes on.
        Ok(())
    }

    async fn reconcile_once(&mut self) -> Result<(), StoreError> {
        // Broken watches first: their prefix may have changed while they were down.
        while let Some(id) = self.resync.first().copied() {
            let wanted = match id {
                WatchId::Partition(n) => self.partitions.contains_key(&n),
                WatchId::PortIndex(p) => self.local.contains(&p) && !self.port_net.contains_key(&p),
                _ => true,
            };
            if wanted {
                self.resync_one(id).await?;
            }
            self.resync.remove(&id);
        }
        // Index lookups for local ports whose network is unknown (each a get, then a
        // watch while still absent); watches of ports no longer local close.
        self.watches.retain(|id, _| match id {
            WatchId::PortIndex(p) => self.local.contains(p) && !self.port_net.contains_key(p),
            _ => true,
        });
        let unknown: Vec<Uuid> = self
            .local
            .iter()
            .filter(|p| {
                !self.port_net.contains_key(*p)
                    && !self.watches.contains_key(&WatchId::PortIndex(**p))
            })
            .copied()
            .collect();
        for p in unknown {
            self.resync_one(WatchId::PortIndex(p)).await?;
        }
        // The interest set: local networks, routers on them, networks of those routers.
        let direct: BTreeSet<Uuid> = self.port_net.values().copied().collect();
        let routers: BTreeSet<Uuid> = self
            .links
            .iter()
            .filter(|l| direct.contains(&l.network))
            .map(|l| l.router)
            .collect();
        let mut nets = direct;
        nets.extend(
            self.links
                .iter()
                .filter(|l| routers.contains(&l.router))
                .map(|l| l.network),
        );
        let drop: Vec<Uuid> = self
            .partitions
            .keys()
            .filter(|n| !nets.contains(n))
            .copied()
            .collect();
        for n in drop {
            self.close_partition(n);
        }
        for r in self.held_routers.clone() {
            if !routers.contains(&r) {
                self.held_routers.remove(&r);
                self.set(Kind::Router, r, None);
            }
        }
        for r in &routers {
            if self.held_routers.insert(*r) {
                if let Some(obj) = self.routers.get(r).cloned() {
                    self.set(Kind::Router, *r, Some(Object::Router(obj)));
                }
            }
        }
        for n in nets {
            if !self.partitions.contains_key(&n) {
                self.resync_one(WatchId::Partition(n)).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use serde_json::json;
    use wyvern_model::{
        InterfaceRequest, NetworkCreate, PortCreate, RequestContext, RouterCreate, SubnetCreate,
        Timestamp,
    };
    use wyvern_store::{RedbOptions, RedbStore, Txn};

    /// Writes a change as the northbound service does: objects plus their index keys.
    async fn commit(store: &dyn Store, change: &Change) {
        let mut txn = Txn::new();
        for op in &change.ops {
            txn = match &op.new {
                Some(o) => txn.put(op.key(), o.to_json()),
                None => txn.delete(op.key()),
            };
            for (k, v) in op.index_writes() {
                txn = match v {
                    Some(v) => txn.put(k, v),
                    None => txn.delete(k),
                };
            }
        }
        assert!(store.txn(txn).await.expect("commit").succeeded);
    }

    type Objects = BTreeSet<(Kind, Uuid, Vec<u8>)>;

    fn objects(t: &Topology) -> Objects {
        let mut out = BTreeSet::new();
        let all = t
            .networks()
            .map(|o| Object::Network(o.clone()))
            .chain(t.subnets().map(|o| Object::Subnet(o.clone())))
            .chain(t.ports().map(|o| Object::Port(o.clone())))
            .chain(t.routers().map(|o| Object::Router(o.clone())));
        for o in all {
            out.insert((o.kind(), o.id(), o.to_json()));
        }
        out
    }

    /// The full topology restricted to what `local` reaches, computed from the objects
    /// themselves (not from the index keys the mirror uses).
    fn expected(full: &Topology, local: &BTreeSet<Uuid>) -> Objects {
        let direct: BTreeSet<Uuid> = local
            .iter()
            .filter_map(|p| full.get_port(p))
            .map(|p| p.network_id)
            .collect();
        let ifaces: Vec<_> = full
            .ports()
            .filter_map(|p| RouterLink::of_port(p))
            .collect();
        let routers: BTreeSet<Uuid> = ifaces
            .iter()
            .filter(|l| direct.contains(&l.network))
            .map(|l| l.router)
            .collect();
        let mut nets = direct;
        nets.extend(
            ifaces
                .iter()
                .filter(|l| routers.contains(&l.router))
                .map(|l| l.network),
        );
        objects(full)
            .into_iter()
            .filter(|(kind, id, _)| match kind {
                Kind::Network => nets.contains(id),
                Kind::Router => routers.contains(id),
                Kind::Subnet => full
                    .get_subnet(id)
                    .is_some_and(|s| nets.contains(&s.network_id)),
                Kind::Port => full
                    .get_port(id)
                    .is_some_and(|p| nets.contains(&p.network_id)),
            })
            .collect()
    }

    /// Makes `ports` the local ports, drives `sync` until it holds what they reach in `full`,
    /// and returns what it holds.
    async fn bind_ports(
        sync: &mut SelectiveSync,
        full: &Topology,
        ports: &[Uuid],
        what: &str,
    ) -> Held {
        sync.set_local_ports(ports.iter().copied());
        let want = expected(full, &sync.local_ports().clone());
        converge(sync, &want, what).await;
        sync.held()
    }

    /// Drives `sync` until it holds `want` and is settled (deadline 10 s).
    async fn converge(sync: &mut SelectiveSync, want: &Objects, what: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            // The held topology itself, and the change stream applied to a copy of it,
            // must both match.
            if sync.is_settled() && objects(sync.topology()) == *want {
                return;
            }
            match tokio::time::timeout_at(deadline, sync.next()).await {
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => panic!("store error: {e}"),
                Ok(None) => panic!("selective sync stopped"),
                Err(_) => {
                    let have = objects(sync.topology());
                    panic!(
                        "{what}: not converged in 10 s: missing {:?}, extra {:?}",
                        want.difference(&have)
                            .map(|o| (o.0, o.1))
                            .collect::<Vec<_>>(),
                        have.difference(want)
                            .map(|o| (o.0, o.1))
                            .collect::<Vec<_>>()
                    );
                }
            }
        }
    }

    struct World {
        store: Arc<dyn Store>,
        full: Topology,
        admin: RequestContext,
        _dir: tempfile::TempDir,
    }

    impl World {
        fn new() -> World {
            let dir = tempfile::tempdir().expect("tempdir");
            let store =
                RedbStore::open(&dir.path().join("db"), RedbOptions::default()).expect("open redb");
            World {
                store,
                full: Topology::new(ModelConfig::default()),
                admin: RequestContext::admin("p1", Timestamp(1_700_000_000)),
                _dir: dir,
            }
        }

        async fn apply(&mut self, change: Change) {
            commit(&*self.store, &change).await;
            self.full.apply(&change);
        }

        async fn network(&mut self, i: usize) -> (Uuid, Uuid) {
            let req =
                NetworkCreate::from_json(&json!({"name": format!("n{i}")}), &self.admin).unwrap();
            let (c, n) = self.full.create_network(&self.admin, req).unwrap();
            self.apply(c).await;
            let body =
                json!({"network_id": n.id, "cidr": format!("10.{i}.0.0/24"), "ip_version": 4});
            let req = SubnetCreate::from_json(&body, &self.admin).unwrap();
            let (c, s) = self.full.create_subnet(&self.admin, req).unwrap();
            self.apply(c).await;
            (n.id, s.id)
        }

        fn port_change(&self, net: Uuid) -> (Change, Uuid) {
            let req = PortCreate::from_json(&json!({"network_id": net}), &self.admin).unwrap();
            let (c, p) = self.full.create_port(&self.admin, req).unwrap();
            (c, p.id)
        }

        async fn port(&mut self, net: Uuid) -> Uuid {
            let (c, id) = self.port_change(net);
            self.apply(c).await;
            id
        }

        async fn router(&mut self) -> Uuid {
            let req = RouterCreate::from_json(&json!({"name": "r"}), &self.admin).unwrap();
            let (c, r) = self.full.create_router(&self.admin, req).unwrap();
            self.apply(c).await;
            r.id
        }

        /// Adds (or removes) an interface; `false` when the model refuses.
        async fn interface(&mut self, router: Uuid, subnet: Uuid, add: bool) -> bool {
            let req = InterfaceRequest::from_json(&json!({"subnet_id": subnet})).unwrap();
            let r = router.to_string();
            let res = if add {
                self.full.add_router_interface(&self.admin, &r, req)
            } else {
                self.full.remove_router_interface(&self.admin, &r, req)
            };
            match res {
                Ok((c, _)) => {
                    self.apply(c).await;
                    true
                }
                Err(_) => false,
            }
        }
    }

    /// The issue's scenario at the library level: 20 networks, a router joining 1 and 2,
    /// ports everywhere; a local port on network 1 holds 1, 2 and the router; a second on
    /// network 5 adds 5; dropping it drops 5 again.
    #[tokio::test]
    async fn holds_only_what_local_ports_reach() {
        let mut w = World::new();
        let mut nets = Vec::new();
        for i in 0..20 {
            nets.push(w.network(i).await);
        }
        let r = w.router().await;
        assert!(w.interface(r, nets[0].1, true).await);
        assert!(w.interface(r, nets[1].1, true).await);
        let mut ports = Vec::new();
        for (n, _) in &nets {
            ports.push(w.port(*n).await);
        }
        let mut sync = SelectiveSync::start(w.store.clone()).await.unwrap();
        assert_eq!(sync.held().known_networks, 20);
        assert_eq!(sync.held().watches, 3);
        let h = bind_ports(&mut sync, &w.full, &[ports[0]], "port on network 1").await;
        // Networks 1 and 2, their subnets, a VM port each plus the router's two interfaces.
        assert_eq!(
            (h.networks, h.subnets, h.ports, h.routers),
            (2, 2, 4, 1),
            "{h:?}"
        );
        assert_eq!((h.partitions, h.watches), (2, 5));
        assert!(sync.topology().get_network(&nets[2].0).is_none());

        let h = bind_ports(
            &mut sync,
            &w.full,
            &[ports[0], ports[4]],
            "and a port on network 5",
        )
        .await;
        assert_eq!(
            (h.networks, h.subnets, h.ports, h.routers),
            (3, 3, 5, 1),
            "{h:?}"
        );
        assert_eq!((h.partitions, h.watches), (3, 6));

        let h = bind_ports(&mut sync, &w.full, &[ports[0]], "network 5 dropped").await;
        assert_eq!(
            (h.networks, h.subnets, h.ports, h.routers),
            (2, 2, 4, 1),
            "{h:?}"
        );
        assert_eq!((h.partitions, h.watches), (2, 5));
        assert!(sync.topology().get_network(&nets[4].0).is_none());

        // Plugged before the API created the port: bound once the port appears.
        let (c, early) = w.port_change(nets[7].0);
        sync.set_local_ports([ports[0], early]);
        converge(
            &mut sync,
            &expected(&w.full, &[ports[0]].into()),
            "unknown port",
        )
        .await;
        assert_eq!(
            sync.held().watches,
            6,
            "a watch on the unknown port's index key"
        );
        w.apply(c).await;
        let want = expected(&w.full, &sync.local_ports().clone());
        converge(&mut sync, &want, "port created after it was plugged").await;
        assert!(sync.topology().get_port(&early).is_some());
        assert_eq!(sync.held().partitions, 3);
        assert_eq!(
            sync.held().watches,
            6,
            "the index watch closed, a partition opened"
        );
    }

    /// The real redb store behind a gate that stops the consumers of its watch streams
    /// (not the store: commits go on). A watch held back while the history is compacted
    /// then ends with the store's own `Compacted` when it reads on. A test double for the
    /// consumer side only; the store and its errors are real.
    struct GatedStore {
        inner: Arc<dyn Store>,
        open: tokio::sync::watch::Sender<bool>,
        /// `Compacted` items the watch streams passed on.
        compacted: Arc<std::sync::atomic::AtomicUsize>,
    }

    #[async_trait::async_trait]
    impl Store for GatedStore {
        async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
            self.inner.get(key).await
        }
        async fn range(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError> {
            self.inner.range(prefix).await
        }
        async fn txn(&self, txn: Txn) -> Result<wyvern_store::TxnResult, StoreError> {
            self.inner.txn(txn).await
        }
        async fn revision(&self) -> Result<Revision, StoreError> {
            self.inner.revision().await
        }
        async fn watch(
            &self,
            prefix: &str,
            from: Revision,
        ) -> Result<wyvern_store::WatchStream, StoreError> {
            let stream = self.inner.watch(prefix, from).await?;
            let state = (stream, self.open.subscribe(), self.compacted.clone());
            Ok(
                futures::stream::unfold(state, |(mut s, mut gate, n)| async move {
                    gate.wait_for(|open| *open).await.ok()?;
                    let item = s.next().await?;
                    if matches!(item, Err(StoreError::Compacted { .. })) {
                        n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Some((item, (s, gate, n)))
                })
                .boxed(),
            )
        }
    }

    /// Watches that fall behind compacted history end with `Compacted`; each is resynced by
    /// a fresh range diffed against what is held, so a port deleted and one created while
    /// the watches were behind are both seen, and nothing else changes.
    #[tokio::test]
    async fn watches_behind_compacted_history_resync_to_the_store() {
        let mut w = World::new();
        let (n1, s1) = w.network(1).await;
        let (n2, s2) = w.network(2).await;
        let r = w.router().await;
        assert!(w.interface(r, s1, true).await);
        assert!(w.interface(r, s2, true).await);
        let local = w.port(n1).await;
        let doomed = w.port(n2).await;
        let (open, _) = tokio::sync::watch::channel(true);
        let gated = Arc::new(GatedStore {
            inner: w.store.clone(),
            open,
            compacted: Default::default(),
        });
        let mut sync = SelectiveSync::start(gated.clone()).await.unwrap();
        let before = bind_ports(&mut sync, &w.full, &[local], "before").await;
        assert_eq!((before.partitions, before.resyncs), (2, 0), "{before:?}");
        assert!(sync.topology().get_port(&doomed).is_some());

        // Behind: two commits at least after the gate closes (a read already waiting may
        // still take the first), then the history goes.
        gated.open.send_replace(false);
        let c = w.full.delete_port(&w.admin, &doomed.to_string()).unwrap();
        w.apply(c).await;
        let born = w.port(n2).await;
        let (n3, _) = w.network(3).await;
        let rev = w.store.revision().await.unwrap();
        w.store.compact(rev).await.unwrap();
        gated.open.send_replace(true);

        let want = expected(&w.full, &[local].into());
        converge(&mut sync, &want, "after compaction").await;
        let after = sync.held();
        assert!(
            gated.compacted.load(std::sync::atomic::Ordering::Relaxed) >= 1,
            "the store ended a watch with Compacted"
        );
        assert!(after.resyncs >= 1, "{after:?}");
        assert!(sync.topology().get_port(&doomed).is_none());
        assert!(sync.topology().get_port(&born).is_some());
        assert_eq!(after.known_networks, 3, "the catalog resynced too");
        assert!(sync.topology().get_network(&n3).is_none());
        assert_eq!((after.partitions, after.watches), (2, before.watches));
    }

    /// Randomized: after every step the selective mirror equals the full topology
    /// restricted to the interest set, and the changes it returned, applied to a separate
    /// topology, build the same thing.
    #[tokio::test]
    async fn equals_full_topology_restricted_to_interest() {
        for seed in [1u64, 2, 3] {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut w = World::new();
            let mut nets = Vec::new();
            for i in 0..8 {
                nets.push(w.network(i).await);
            }
            let routers = [w.router().await, w.router().await, w.router().await];
            let mut sync = SelectiveSync::start(w.store.clone()).await.unwrap();
            let mut replay = Topology::new(ModelConfig::default());
            let mut local: BTreeSet<Uuid> = BTreeSet::new();
            for step in 0..120 {
                let vm_ports: Vec<Uuid> = w
                    .full
                    .ports()
                    .filter(|p| !p.is_router_interface())
                    .map(|p| p.id)
                    .collect();
                match rng.random_range(0..10) {
                    0..=2 => {
                        let n = nets[rng.random_range(0..nets.len())].0;
                        w.port(n).await;
                    }
                    3 if !vm_ports.is_empty() => {
                        let p = vm_ports[rng.random_range(0..vm_ports.len())];
                        let c = w.full.delete_port(&w.admin, &p.to_string()).unwrap();
                        w.apply(c).await;
                    }
                    4 | 5 => {
                        let r = routers[rng.random_range(0..routers.len())];
                        let s = nets[rng.random_range(0..nets.len())].1;
                        w.interface(r, s, rng.random_bool(0.6)).await;
                    }
                    6 | 7 if !vm_ports.is_empty() => {
                        let p = vm_ports[rng.random_range(0..vm_ports.len())];
                        if !local.remove(&p) {
                            local.insert(p);
                        }
                    }
                    8 => {
                        // A local port plugged before its create.
                        let n = nets[rng.random_range(0..nets.len())].0;
                        let (c, id) = w.port_change(n);
                        local.insert(id);
                        sync.set_local_ports(local.iter().copied());
                        w.apply(c).await;
                    }
                    _ => local.clear(),
                }
                sync.set_local_ports(local.iter().copied());
                let want = expected(&w.full, &local);
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                loop {
                    if sync.is_settled() && objects(sync.topology()) == want {
                        break;
                    }
                    match tokio::time::timeout_at(deadline, sync.next()).await {
                        Ok(Some(Ok(u))) => replay.apply(&u.change),
                        other => panic!(
                            "seed {seed} step {step}: not converged ({:?})",
                            other.map(|o| o.map(|r| r.map(|_| ())))
                        ),
                    }
                }
                assert_eq!(
                    objects(&replay),
                    want,
                    "seed {seed} step {step}: replayed changes"
                );
                let h = sync.held();
                let unknown = local
                    .iter()
                    .filter(|p| w.full.get_port(p).is_none())
                    .count();
                assert_eq!(
                    h.watches,
                    3 + h.partitions + unknown,
                    "seed {seed} step {step}"
                );
            }
        }
    }
}
