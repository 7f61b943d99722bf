//! Chassis: every host registers itself in the store under a lease (name, tunnel
//! endpoint, capabilities) and follows everyone else's registration to build its overlay.
//!
//! `/wyvern/chassis/<name>` holds a JSON [`Chassis`]. The key lives under an etcd lease
//! kept alive by this process, so a host that dies disappears from every other host's view
//! about one TTL later; the survivors then set its ports DOWN (only one of them writes:
//! the live chassis with the lowest name). The tunnel is one OVS VXLAN port per host with a
//! flow-based remote and key, so the chassis list changes flows only, never OVSDB.
//!
//! A registration that disappears is not believed at once: [`follow`] holds a delete back
//! for a grace period ([`DEFAULT_VANISH_GRACE`]), and a registration that comes back within it (a
//! host whose lease lapsed while etcd was briefly unreachable, re-granted by its keeper) is
//! never reported gone, so nobody sets its ports DOWN. A host that sees its OWN registration
//! created anew ([`ChassisMsg::Reregistered`]) reports its bound ports again, undoing a DOWN
//! written while it was away longer than the grace.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use serde_json::json;
use wyvern_ovsdb::ops::{named_uuid, set, string_map, Condition, Mutation, Mutator, Operation};
use wyvern_ovsdb::{Client, Remote};
use wyvern_store::{Event, EventKind, KeyValue, LeaseGuard, Revision, Store, StoreError};

/// Where chassis register: `/wyvern/chassis/<name>`. Outside the model prefix: not a
/// Neutron object, and watched separately.
pub const CHASSIS_PREFIX: &str = "/wyvern/chassis/";

/// The OpenFlow port number requested for the tunnel port (`ofport_request`), so that flows
/// can name it before OVSDB reports it. Far above what VM interfaces get.
pub const TUNNEL_OFPORT: u32 = 60000;

/// Name of the tunnel port on the integration bridge.
pub const TUNNEL_PORT: &str = "wyvern-vxlan";

/// This host's identity in the overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChassisConfig {
    /// Unique host name; ports bound here get it as `binding:host_id`.
    pub name: String,
    /// Underlay address other hosts send VXLAN to (none: this host joins no overlay).
    pub tunnel_ip: Option<Ipv4Addr>,
    /// Offload targets this host has (for schedulers and operators; informational).
    pub offload: Vec<String>,
    /// How long the registration outlives this process.
    pub lease_ttl: Duration,
    /// How long another host's registration must stay gone before this host believes it
    /// ([`follow`]; [`DEFAULT_VANISH_GRACE`] unless configured).
    pub vanish_grace: Duration,
}

/// Default grace of [`follow`]: how long another host's registration must stay gone before
/// this host believes it (drops its tunnels; as janitor, sets its ports DOWN). A few seconds:
/// enough for a lease keeper to re-grant a lapsed lease after a short etcd outage, short
/// next to the default lease TTL.
pub const DEFAULT_VANISH_GRACE: Duration = Duration::from_secs(5);

/// A registered host, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chassis {
    pub name: String,
    pub tunnel_ip: Option<Ipv4Addr>,
    pub offload: Vec<String>,
    pub datapath: String,
}

impl Chassis {
    pub fn encode(&self) -> Vec<u8> {
        json!({
            "name": self.name,
            "tunnel_ip": self.tunnel_ip.map(|i| i.to_string()),
            "capabilities": {"offload": self.offload, "datapath": self.datapath},
        })
        .to_string()
        .into_bytes()
    }

    /// Decodes a stored registration; `None` for anything malformed (skipped, logged by
    /// the caller).
    pub fn decode(kv: &KeyValue) -> Option<Chassis> {
        let v: serde_json::Value = serde_json::from_slice(&kv.value).ok()?;
        let name = v.get("name")?.as_str()?.to_owned();
        let tunnel_ip = v
            .get("tunnel_ip")
            .and_then(|t| t.as_str())
            .and_then(|t| t.parse().ok());
        let caps = v.get("capabilities");
        let offload = caps
            .and_then(|c| c.get("offload"))
            .and_then(|o| o.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let datapath = caps
            .and_then(|c| c.get("datapath"))
            .and_then(|d| d.as_str())
            .unwrap_or_default()
            .to_owned();
        Some(Chassis {
            name,
            tunnel_ip,
            offload,
            datapath,
        })
    }
}

/// The chassis name a key belongs to.
pub fn name_of_key(key: &str) -> Option<&str> {
    key.strip_prefix(CHASSIS_PREFIX).filter(|n| !n.is_empty())
}

/// Registers this host; the registration lasts while the guard (and the process) lives.
pub async fn register(
    store: &Arc<dyn Store>,
    cfg: &ChassisConfig,
    datapath: &str,
) -> Result<LeaseGuard, StoreError> {
    let c = Chassis {
        name: cfg.name.clone(),
        tunnel_ip: cfg.tunnel_ip,
        offload: cfg.offload.clone(),
        datapath: datapath.to_owned(),
    };
    store
        .put_leased(
            &format!("{CHASSIS_PREFIX}{}", cfg.name),
            c.encode().into(),
            cfg.lease_ttl,
        )
        .await
}

/// The live chassis by name, as this host follows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChassisView {
    pub all: BTreeMap<String, Chassis>,
}

impl ChassisView {
    pub fn from_kvs(kvs: &[KeyValue]) -> Self {
        let mut v = ChassisView::default();
        for kv in kvs {
            v.put(kv);
        }
        v
    }

    /// Applies a put; returns whether anything changed.
    pub fn put(&mut self, kv: &KeyValue) -> bool {
        match Chassis::decode(kv) {
            Some(c) if name_of_key(&kv.key) == Some(c.name.as_str()) => {
                self.all.insert(c.name.clone(), c.clone()) != Some(c)
            }
            _ => {
                tracing::warn!(key = %kv.key, "ignoring a malformed chassis registration");
                false
            }
        }
    }

    /// Applies a delete; returns the chassis that went away.
    pub fn delete(&mut self, key: &str) -> Option<Chassis> {
        self.all.remove(name_of_key(key)?)
    }

    /// The overlay as the compiler sees it from chassis `me`.
    pub fn overlay(&self, me: &str) -> wyvern_pipeline::Overlay {
        wyvern_pipeline::Overlay {
            chassis: me.to_owned(),
            remotes: self
                .all
                .values()
                .filter(|c| c.name != me)
                .filter_map(|c| Some((c.name.clone(), c.tunnel_ip?)))
                .collect(),
            tunnel_ofport: TUNNEL_OFPORT,
        }
    }

    /// Whether `me` is the one that writes on behalf of dead chassis: the lowest live name.
    pub fn is_janitor(&self, me: &str) -> bool {
        self.all
            .keys()
            .next()
            .is_none_or(|first| first.as_str() >= me)
    }
}

/// What the chassis follower reports to the local controller's loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChassisMsg {
    /// Every registration (after a watch had to be reopened from scratch). Chassis still
    /// within their vanish grace are included with their last registration.
    Snapshot(Vec<KeyValue>),
    /// A put, or a delete whose grace has run out.
    Event(Event),
    /// This host's own registration was created anew (after its lease lapsed): whatever
    /// others wrote about its ports meanwhile (DOWN) must be reported again.
    Reregistered,
}

/// The follower's memory: which registrations the consumer believes in, and which of them
/// have disappeared but are still within their grace. Pure (the caller passes the time), so
/// the rules are unit-tested without clocks or stores.
#[derive(Debug, Clone)]
pub struct Vanishing {
    grace: Duration,
    /// This host's own key; its re-creation is reported as [`ChassisMsg::Reregistered`].
    own_key: Option<String>,
    /// The last registration of every chassis the consumer holds, by key.
    known: BTreeMap<String, KeyValue>,
    /// Keys gone from the store, with when they are to be reported gone and the delete.
    pending: BTreeMap<String, (Instant, Event)>,
}

impl Vanishing {
    /// Starts from the registrations the consumer was given (`initial`).
    pub fn new(grace: Duration, me: Option<&str>, initial: &[KeyValue]) -> Self {
        Vanishing {
            grace,
            own_key: me.map(|m| format!("{CHASSIS_PREFIX}{m}")),
            known: initial
                .iter()
                .map(|kv| (kv.key.clone(), kv.clone()))
                .collect(),
            pending: BTreeMap::new(),
        }
    }

    /// Whether `kv` is the own registration created since the consumer last saw it.
    fn own_recreated(&self, kv: &KeyValue) -> bool {
        self.own_key.as_deref() == Some(kv.key.as_str())
            && self
                .known
                .get(&kv.key)
                .is_none_or(|old| old.create_revision != kv.create_revision)
    }

    /// A watch event; returns what to pass on now (a delete within its grace: nothing).
    pub fn event(&mut self, ev: Event, now: Instant) -> Vec<ChassisMsg> {
        match ev.kind {
            EventKind::Put => {
                let again = self.own_recreated(&ev.kv);
                self.pending.remove(&ev.kv.key);
                self.known.insert(ev.kv.key.clone(), ev.kv.clone());
                let mut out = vec![ChassisMsg::Event(ev)];
                if again {
                    out.push(ChassisMsg::Reregistered);
                }
                out
            }
            EventKind::Delete => {
                if self.grace.is_zero() {
                    self.known.remove(&ev.kv.key);
                    return vec![ChassisMsg::Event(ev)];
                }
                if self.known.contains_key(&ev.kv.key) {
                    let key = ev.kv.key.clone();
                    self.pending.entry(key).or_insert((now + self.grace, ev));
                }
                Vec::new()
            }
        }
    }

    /// A fresh read of every registration at `revision` (after a broken watch). Keys missing
    /// from it start their grace (they stay in the snapshot passed on until it runs out).
    pub fn snapshot(
        &mut self,
        kvs: Vec<KeyValue>,
        revision: Revision,
        now: Instant,
    ) -> Vec<ChassisMsg> {
        let again = kvs.iter().any(|kv| self.own_recreated(kv));
        let present: BTreeMap<String, KeyValue> =
            kvs.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
        for key in present.keys() {
            self.pending.remove(key);
        }
        if self.grace.is_zero() {
            self.known = present;
        } else {
            for (key, kv) in &self.known {
                if !present.contains_key(key) && !self.pending.contains_key(key) {
                    let gone = Event {
                        kind: EventKind::Delete,
                        kv: KeyValue {
                            key: key.clone(),
                            value: Default::default(),
                            create_revision: kv.create_revision,
                            mod_revision: revision,
                            version: 0,
                        },
                    };
                    self.pending.insert(key.clone(), (now + self.grace, gone));
                }
            }
            self.known
                .retain(|k, _| present.contains_key(k) || self.pending.contains_key(k));
            self.known.extend(present);
        }
        let mut out = vec![ChassisMsg::Snapshot(self.known.values().cloned().collect())];
        if again {
            out.push(ChassisMsg::Reregistered);
        }
        out
    }

    /// When the next held-back delete is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().map(|(at, _)| *at).min()
    }

    /// The deletes whose grace has run out by `now` (the consumer drops those chassis).
    pub fn due(&mut self, now: Instant) -> Vec<ChassisMsg> {
        let keys: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        keys.into_iter()
            .filter_map(|k| {
                self.known.remove(&k);
                self.pending.remove(&k).map(|(_, ev)| ChassisMsg::Event(ev))
            })
            .collect()
    }
}

/// Follows `/wyvern/chassis/` from `rev` on (the consumer holds `initial`, read at `rev`),
/// resyncing with a range when the watch breaks; deletes are held back for `grace`
/// ([`Vanishing`]). Holds this host's registration guard for as long as the receiver lives.
pub fn follow(
    store: Arc<dyn Store>,
    rev: Revision,
    initial: &[KeyValue],
    me: Option<&str>,
    grace: Duration,
    guard: LeaseGuard,
) -> mpsc::UnboundedReceiver<ChassisMsg> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut v = Vanishing::new(grace, me, initial);
    tokio::spawn(async move {
        let _guard = guard;
        let send = |msgs: Vec<ChassisMsg>| msgs.into_iter().all(|m| tx.send(m).is_ok());
        let mut from = Revision(rev.0 + 1);
        loop {
            match store.watch(CHASSIS_PREFIX, from).await {
                Ok(mut w) => loop {
                    let deadline = v.next_deadline();
                    let due = async {
                        match deadline {
                            Some(at) => tokio::time::sleep_until(at).await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        ev = w.next() => match ev {
                            Some(Ok(ev)) => {
                                from = Revision(ev.revision().0 + 1);
                                if !send(v.event(ev, Instant::now())) {
                                    return;
                                }
                            }
                            Some(Err(e)) => {
                                tracing::warn!(error = %e, "chassis watch ended; resyncing");
                                break;
                            }
                            None => break,
                        },
                        () = due => {
                            if !send(v.due(Instant::now())) {
                                return;
                            }
                        }
                    }
                },
                Err(e) => tracing::warn!(error = %e, "failed to watch chassis; retrying"),
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            match store.range(CHASSIS_PREFIX).await {
                Ok((kvs, r)) => {
                    from = Revision(r.0 + 1);
                    if !send(v.snapshot(kvs, r, Instant::now())) {
                        return;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "failed to read chassis"),
            }
            if !send(v.due(Instant::now())) {
                return;
            }
        }
    });
    rx
}

/// What a host reports when its registration comes back ([`ChassisMsg::Reregistered`]):
/// every port bound on its switch that the topology knows, ACTIVE on chassis `me`.
pub fn own_ports_active(
    topo: &wyvern_model::Topology,
    bindings: &wyvern_pipeline::Bindings,
    me: &str,
) -> Vec<crate::PortStatus> {
    bindings
        .iter()
        .filter(|(id, _)| topo.get_port(id).is_some())
        .map(|(id, _)| crate::PortStatus {
            port: *id,
            active: true,
            host: Some(me.to_owned()),
        })
        .collect()
}

/// Adds the flow-based VXLAN port to `bridge` (once; retried until the bridge exists).
pub async fn ensure_tunnel_forever(remote: Remote, bridge: String, local_ip: Ipv4Addr) {
    let mut pause = Duration::from_millis(100);
    loop {
        match ensure_tunnel(&remote, &bridge, local_ip).await {
            Ok(true) => {
                tracing::info!(bridge, port = TUNNEL_PORT, %local_ip, "tunnel port ready");
                return;
            }
            Ok(false) => tracing::debug!(bridge, "bridge not there yet for the tunnel port"),
            Err(e) => tracing::warn!(bridge, error = %e, "failed to add the tunnel port; retrying"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

/// One attempt: `Ok(true)` when the port exists (or was added), `Ok(false)` when the bridge
/// does not exist yet.
async fn ensure_tunnel(
    remote: &Remote,
    bridge: &str,
    local_ip: Ipv4Addr,
) -> Result<bool, wyvern_ovsdb::ClientError> {
    const DB: &str = "Open_vSwitch";
    let (client, _notes) = Client::connect(remote).await?;
    let found = client
        .transact(
            DB,
            &[Operation::select(
                "Interface",
                vec![Condition::eq("name", TUNNEL_PORT)],
                &["_uuid"],
            )],
        )
        .await?;
    let exists = found
        .first()
        .and_then(|r| r.get("rows"))
        .and_then(|r| r.as_array())
        .is_some_and(|r| !r.is_empty());
    if exists {
        return Ok(true);
    }
    let local = local_ip.to_string();
    let iface: serde_json::Map<String, serde_json::Value> = [
        ("name".to_owned(), json!(TUNNEL_PORT)),
        ("type".to_owned(), json!("vxlan")),
        ("ofport_request".to_owned(), json!(TUNNEL_OFPORT)),
        (
            "options".to_owned(),
            string_map([
                ("remote_ip", "flow"),
                ("key", "flow"),
                ("local_ip", local.as_str()),
            ]),
        ),
    ]
    .into_iter()
    .collect();
    let port: serde_json::Map<String, serde_json::Value> = [
        ("name".to_owned(), json!(TUNNEL_PORT)),
        ("interfaces".to_owned(), named_uuid("iface")),
    ]
    .into_iter()
    .collect();
    let res = client
        .transact(
            DB,
            &[
                Operation::insert("Interface", iface, Some("iface")),
                Operation::insert("Port", port, Some("port")),
                Operation::mutate(
                    "Bridge",
                    vec![Condition::eq("name", bridge)],
                    vec![Mutation::new(
                        "ports",
                        Mutator::Insert,
                        set([named_uuid("port")]),
                    )],
                ),
            ],
        )
        .await?;
    // The mutate's count: 0 means the bridge is not there yet (the inserted rows are
    // unreferenced and garbage-collected).
    let count = res
        .get(2)
        .and_then(|r| r.get("count"))
        .and_then(|c| c.as_u64());
    Ok(count == Some(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: Vec<u8>) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.into(),
            create_revision: Revision(1),
            mod_revision: Revision(1),
            version: 1,
        }
    }

    fn reg(name: &str, created: u64) -> KeyValue {
        let c = Chassis {
            name: name.into(),
            tunnel_ip: Some(Ipv4Addr::new(10, 0, 0, 9)),
            offload: vec![],
            datapath: "netdev".into(),
        };
        KeyValue {
            create_revision: Revision(created),
            mod_revision: Revision(created),
            ..kv(&format!("{CHASSIS_PREFIX}{name}"), c.encode())
        }
    }

    fn put(kv: &KeyValue) -> Event {
        Event {
            kind: EventKind::Put,
            kv: kv.clone(),
        }
    }

    fn del(name: &str, rev: u64) -> Event {
        Event {
            kind: EventKind::Delete,
            kv: KeyValue {
                key: format!("{CHASSIS_PREFIX}{name}"),
                value: Default::default(),
                create_revision: Revision(0),
                mod_revision: Revision(rev),
                version: 0,
            },
        }
    }

    const GRACE: Duration = Duration::from_secs(5);

    #[test]
    fn a_registration_back_within_the_grace_was_never_gone() {
        let t0 = Instant::now();
        let mut v = Vanishing::new(GRACE, Some("a"), &[reg("a", 1), reg("b", 2)]);
        assert!(
            v.event(del("b", 10), t0).is_empty(),
            "a delete is held back"
        );
        assert_eq!(v.next_deadline(), Some(t0 + GRACE));
        assert!(v.due(t0 + GRACE - Duration::from_millis(1)).is_empty());
        // The lapsed lease is re-granted: the key is created anew.
        let back = reg("b", 11);
        assert_eq!(
            v.event(put(&back), t0 + Duration::from_secs(1)),
            vec![ChassisMsg::Event(put(&back))]
        );
        assert_eq!(v.next_deadline(), None);
        assert!(
            v.due(t0 + GRACE * 3).is_empty(),
            "the delete is never passed on"
        );
    }

    #[test]
    fn a_registration_gone_longer_than_the_grace_is_reported_gone_once() {
        let t0 = Instant::now();
        let mut v = Vanishing::new(GRACE, Some("a"), &[reg("a", 1), reg("b", 2)]);
        assert!(v.event(del("b", 10), t0).is_empty());
        // A second delete (a resync, say) does not restart the grace.
        assert!(v
            .event(del("b", 10), t0 + Duration::from_secs(2))
            .is_empty());
        assert_eq!(v.due(t0 + GRACE), vec![ChassisMsg::Event(del("b", 10))]);
        assert!(v.due(t0 + GRACE * 2).is_empty());
        // Coming back later is an ordinary put (its ports go ACTIVE when it rebinds them).
        let back = reg("b", 20);
        assert_eq!(
            v.event(put(&back), t0 + GRACE * 2),
            vec![ChassisMsg::Event(put(&back))]
        );
    }

    #[test]
    fn without_a_grace_deletes_pass_at_once() {
        let t0 = Instant::now();
        let mut v = Vanishing::new(Duration::ZERO, None, &[reg("b", 2)]);
        assert_eq!(
            v.event(del("b", 10), t0),
            vec![ChassisMsg::Event(del("b", 10))]
        );
        assert_eq!(
            v.snapshot(vec![reg("c", 3)], Revision(12), t0),
            vec![ChassisMsg::Snapshot(vec![reg("c", 3)])]
        );
    }

    #[test]
    fn a_snapshot_keeps_missing_registrations_for_the_grace() {
        let t0 = Instant::now();
        let mut v = Vanishing::new(GRACE, Some("a"), &[reg("a", 1), reg("b", 2)]);
        let out = v.snapshot(vec![reg("a", 1), reg("c", 5)], Revision(9), t0);
        assert_eq!(
            out,
            vec![ChassisMsg::Snapshot(vec![
                reg("a", 1),
                reg("b", 2),
                reg("c", 5)
            ])]
        );
        let gone = v.due(t0 + GRACE);
        assert!(
            matches!(&gone[..], [ChassisMsg::Event(Event { kind: EventKind::Delete, kv })] if kv.key == format!("{CHASSIS_PREFIX}b")),
            "{gone:?}"
        );
        // And one that comes back in the next snapshot within its grace is kept quietly.
        let mut v = Vanishing::new(GRACE, Some("a"), &[reg("a", 1), reg("b", 2)]);
        v.snapshot(vec![reg("a", 1)], Revision(9), t0);
        v.snapshot(
            vec![reg("a", 1), reg("b", 10)],
            Revision(11),
            t0 + Duration::from_secs(1),
        );
        assert!(v.due(t0 + GRACE * 2).is_empty());
    }

    #[test]
    fn the_own_registration_created_anew_is_reported() {
        let t0 = Instant::now();
        let mut v = Vanishing::new(GRACE, Some("a"), &[reg("a", 1), reg("b", 2)]);
        // A keep-alive does not touch the key; a re-put of the same key (same create
        // revision) is not a re-registration.
        let same = KeyValue {
            version: 2,
            mod_revision: Revision(4),
            ..reg("a", 1)
        };
        assert_eq!(v.event(put(&same), t0), vec![ChassisMsg::Event(put(&same))]);
        // The lease lapsed (delete) and the keeper granted a new one (create).
        assert!(v.event(del("a", 8), t0).is_empty());
        let again = reg("a", 9);
        assert_eq!(
            v.event(put(&again), t0 + GRACE * 2),
            vec![ChassisMsg::Event(put(&again)), ChassisMsg::Reregistered]
        );
        // Others' re-registrations are not ours to report.
        assert!(v.event(del("b", 12), t0).is_empty());
        let b = reg("b", 13);
        assert_eq!(v.event(put(&b), t0), vec![ChassisMsg::Event(put(&b))]);
        // Seen through a resync after a broken watch, too.
        let out = v.snapshot(vec![reg("a", 20), b.clone()], Revision(21), t0);
        assert_eq!(out.last(), Some(&ChassisMsg::Reregistered));
    }

    /// A private temp dir for a store, removed on drop.
    struct TempDir(std::path::PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[tokio::test]
    async fn the_follower_holds_back_a_delete_that_is_undone() {
        let dir = TempDir(std::env::temp_dir().join(format!(
            "wyvern-chassis-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        )));
        std::fs::create_dir_all(&dir.0).unwrap();
        let store: Arc<dyn Store> =
            wyvern_store::RedbStore::open(&dir.0.join("db"), Default::default()).unwrap();
        for n in ["a", "b", "c"] {
            store
                .put(&format!("{CHASSIS_PREFIX}{n}"), reg(n, 0).value)
                .await
                .unwrap();
        }
        let (kvs, rev) = store.range(CHASSIS_PREFIX).await.unwrap();
        let grace = Duration::from_millis(300);
        let mut rx = follow(
            store.clone(),
            rev,
            &kvs,
            Some("a"),
            grace,
            LeaseGuard::default(),
        );
        async fn next(rx: &mut mpsc::UnboundedReceiver<ChassisMsg>) -> ChassisMsg {
            tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("a chassis message within 10 s")
                .expect("the follower runs")
        }
        // b lapses and comes back at once; then c leaves for good.
        let b_key = format!("{CHASSIS_PREFIX}b");
        store.delete(&b_key).await.unwrap();
        store.put(&b_key, reg("b", 0).value).await.unwrap();
        let c_gone_at = Instant::now();
        store.delete(&format!("{CHASSIS_PREFIX}c")).await.unwrap();
        match next(&mut rx).await {
            ChassisMsg::Event(ev) => assert_eq!(
                (ev.kind, ev.kv.key.as_str()),
                (EventKind::Put, b_key.as_str())
            ),
            m => panic!("expected b's put, got {m:?}"),
        }
        // b's delete, had it been passed on, would be due before c's: the next message is c's.
        match next(&mut rx).await {
            ChassisMsg::Event(ev) => {
                assert_eq!(ev.kind, EventKind::Delete);
                assert_eq!(ev.kv.key, format!("{CHASSIS_PREFIX}c"));
                assert!(c_gone_at.elapsed() >= grace, "passed on after the grace");
            }
            m => panic!("expected c's delete, got {m:?}"),
        }
    }

    #[test]
    fn registration_round_trips_and_builds_the_overlay() {
        let a = Chassis {
            name: "a".into(),
            tunnel_ip: Some(Ipv4Addr::new(10, 0, 0, 1)),
            offload: vec!["rte_flow".into()],
            datapath: "netdev".into(),
        };
        let b = Chassis {
            name: "b".into(),
            tunnel_ip: Some(Ipv4Addr::new(10, 0, 0, 2)),
            offload: vec![],
            datapath: "netdev".into(),
        };
        let mut v = ChassisView::from_kvs(&[
            kv("/wyvern/chassis/a", a.encode()),
            kv("/wyvern/chassis/b", b.encode()),
            kv("/wyvern/chassis/c", b"garbage".to_vec()),
        ]);
        assert_eq!(v.all.get("a"), Some(&a));
        assert_eq!(v.all.len(), 2);
        let o = v.overlay("a");
        assert_eq!(o.remotes.len(), 1);
        assert_eq!(o.remotes.get("b"), Some(&Ipv4Addr::new(10, 0, 0, 2)));
        assert!(v.is_janitor("a"));
        assert!(!v.is_janitor("b"));
        assert_eq!(v.delete("/wyvern/chassis/a"), Some(a));
        assert!(v.is_janitor("b"));
    }
}
