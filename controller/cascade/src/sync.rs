//! What each pod should hold, and the jobs that make it so.
//!
//! # Placement rule
//! A port is placed in a pod by its `binding:host_id`: `HOST@POD` or just `POD`, where `POD`
//! is a pod's `region_name` or else its `az_name` (the first such pod in pod-id order). The
//! bottom port gets `binding:host_id = HOST` (empty for the bare `POD` form). Router
//! interface and DHCP ports are never placed by themselves: they follow their network.
//!
//! # What a pod holds (evaluated when a job runs, never when it was queued)
//! - a network: it exists at the top and (the pod already holds a copy, or a port of it is
//!   placed in the pod): copies are kept until the top network is deleted, as Tricircle
//!   does;
//! - a subnet: its network is held;
//! - a port placed in the pod;
//! - a router: it exists at the top and (the pod already holds it, or one of its interfaces
//!   is on a held network); its interface ports on held networks, same id, IP and MAC;
//!   its static routes whose next hop is on one of those networks.
//!
//! Because a job decides create/update/delete from the top's state when it runs, jobs are
//! idempotent, a late job never undoes a newer change, and two jobs for one resource can be
//! merged (a queued job that has not started already covers a later change).

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use serde_json::{json, Value};
use uuid::Uuid;
use wyvern_model::{Kind, Port, Topology, DEVICE_OWNER_DHCP};

use crate::state::{Batch, Pod, Snapshot};

/// Splits `HOST@POD` (or `POD`) and finds the pod.
pub fn place(host_id: &str, pods: &std::collections::BTreeMap<Uuid, Pod>) -> Option<Uuid> {
    if host_id.is_empty() {
        return None;
    }
    let target = host_id.rsplit_once('@').map_or(host_id, |(_, p)| p);
    pods.values()
        .find(|p| p.region_name == target)
        .or_else(|| {
            pods.values()
                .find(|p| !p.az_name.is_empty() && p.az_name == target)
        })
        .map(|p| p.pod_id)
}

/// The bottom's `binding:host_id` for a top one.
pub fn bottom_host(host_id: &str) -> &str {
    host_id.rsplit_once('@').map_or("", |(h, _)| h)
}

fn placeable(p: &Port) -> bool {
    !p.is_router_interface() && p.device_owner != DEVICE_OWNER_DHCP
}

/// The pod a port is placed in (router interfaces and DHCP ports: none).
pub fn placement(p: &Port, s: &Snapshot) -> Option<Uuid> {
    if placeable(p) {
        place(&p.binding_host_id, &s.pods)
    } else {
        None
    }
}

fn interface_router(p: &Port) -> Option<Uuid> {
    if p.is_router_interface() {
        p.device_id.parse().ok()
    } else {
        None
    }
}

/// Pods that hold (or are about to hold) network `net`.
pub fn net_pods(t: &Topology, s: &Snapshot, net: Uuid) -> BTreeSet<Uuid> {
    let mut pods: BTreeSet<Uuid> = s.pods_with(Kind::Network, net).into_iter().collect();
    pods.extend(t.network_ports(&net).filter_map(|p| placement(p, s)));
    pods
}

fn net_in_pod(t: &Topology, s: &Snapshot, pod: Uuid, net: Uuid) -> bool {
    t.get_network(&net).is_some()
        && (s.routing(pod, Kind::Network, net).is_some()
            || t.network_ports(&net).any(|p| placement(p, s) == Some(pod)))
}

fn router_in_pod(t: &Topology, s: &Snapshot, pod: Uuid, r: Uuid) -> bool {
    t.get_router(&r).is_some()
        && (s.routing(pod, Kind::Router, r).is_some()
            || t.router_interfaces(&r)
                .any(|i| net_in_pod(t, s, pod, i.network_id)))
}

/// Whether `pod` should hold `(kind, id)`.
pub fn wanted(t: &Topology, s: &Snapshot, pod: Uuid, kind: Kind, id: Uuid) -> bool {
    match kind {
        Kind::Network => net_in_pod(t, s, pod, id),
        Kind::Subnet => t
            .get_subnet(&id)
            .is_some_and(|sn| net_in_pod(t, s, pod, sn.network_id)),
        Kind::Router => router_in_pod(t, s, pod, id),
        Kind::Port => t.get_port(&id).is_some_and(|p| match interface_router(p) {
            Some(r) => router_in_pod(t, s, pod, r) && net_in_pod(t, s, pod, p.network_id),
            None => placement(p, s) == Some(pod),
        }),
    }
}

/// The create body of the bottom copy (with the top's id), and the attributes an update
/// may change. `None` if the top object does not exist.
pub fn bottom_body(
    t: &Topology,
    s: &Snapshot,
    pod: Uuid,
    kind: Kind,
    id: Uuid,
) -> Option<(Value, &'static [&'static str])> {
    match kind {
        Kind::Network => t.get_network(&id).map(|n| {
            (
                json!({"id": n.id, "name": n.name, "project_id": n.project_id,
                       "admin_state_up": n.admin_state_up, "shared": n.shared, "mtu": n.mtu,
                       "port_security_enabled": n.port_security_enabled,
                       "description": n.description}),
                &[
                    "name",
                    "admin_state_up",
                    "shared",
                    "mtu",
                    "port_security_enabled",
                    "description",
                ][..],
            )
        }),
        Kind::Subnet => t.get_subnet(&id).map(|sn| {
            (
                json!({"id": sn.id, "network_id": sn.network_id, "name": sn.name,
                       "project_id": sn.project_id, "ip_version": 4, "cidr": sn.cidr,
                       "gateway_ip": sn.gateway_ip, "enable_dhcp": sn.enable_dhcp,
                       "dns_nameservers": sn.dns_nameservers,
                       "allocation_pools": sn.allocation_pools, "host_routes": sn.host_routes,
                       "description": sn.description}),
                &[
                    "name",
                    "gateway_ip",
                    "enable_dhcp",
                    "dns_nameservers",
                    "allocation_pools",
                    "host_routes",
                    "description",
                ][..],
            )
        }),
        Kind::Router => t.get_router(&id).map(|r| {
            // Only routes whose next hop the bottom router can reach.
            let routes: Vec<_> = r
                .routes
                .iter()
                .filter(|rt| {
                    t.router_interfaces(&r.id).any(|i| {
                        net_in_pod(t, s, pod, i.network_id)
                            && i.fixed_ips.iter().any(|f| {
                                t.get_subnet(&f.subnet_id)
                                    .is_some_and(|sn| sn.cidr.contains(&rt.nexthop))
                            })
                    })
                })
                .collect();
            (
                json!({"id": r.id, "name": r.name, "project_id": r.project_id,
                       "admin_state_up": r.admin_state_up, "description": r.description,
                       "routes": routes}),
                &["name", "admin_state_up", "description", "routes"][..],
            )
        }),
        Kind::Port => t.get_port(&id).map(|p| {
            let fixed: Vec<Value> = p
                .fixed_ips
                .iter()
                .map(|f| json!({"subnet_id": f.subnet_id, "ip_address": f.ip_address}))
                .collect();
            let body = json!({"id": p.id, "network_id": p.network_id, "name": p.name,
                   "project_id": p.project_id, "mac_address": p.mac_address,
                   "fixed_ips": fixed, "admin_state_up": p.admin_state_up,
                   "device_id": p.device_id, "device_owner": p.device_owner,
                   "binding:host_id": bottom_host(&p.binding_host_id),
                   "port_security_enabled": p.port_security_enabled,
                   "allowed_address_pairs": p.allowed_address_pairs,
                   "description": p.description});
            let upd: &'static [&'static str] = if p.is_router_interface() {
                &["name", "description"]
            } else {
                &[
                    "name",
                    "admin_state_up",
                    "fixed_ips",
                    "device_id",
                    "binding:host_id",
                    "port_security_enabled",
                    "allowed_address_pairs",
                    "description",
                    "mac_address",
                ]
            };
            (body, upd)
        }),
    }
}

/// The create body without `routes` (Neutron sets routes by update only).
pub fn create_body(kind: Kind, mut body: Value) -> Value {
    if kind == Kind::Router {
        if let Some(m) = body.as_object_mut() {
            m.remove("routes");
        }
    }
    body
}

/// The attributes of `want` (limited to `fields`) that differ from the bottom's `cur`.
pub fn diff(want: &Value, cur: &Value, fields: &[&str]) -> Option<Value> {
    let mut out = serde_json::Map::new();
    for f in fields {
        let w = &want[*f];
        let c = &cur[*f];
        let same = match (w, c) {
            // Order of lists of objects does not matter to Neutron here.
            (Value::Array(a), Value::Array(b)) => {
                a.len() == b.len() && a.iter().all(|x| b.contains(x))
            }
            _ => w == c,
        };
        if !same {
            out.insert((*f).to_owned(), w.clone());
        }
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

/// Remembers what the watcher last queued work for, so that a change the bottoms do not
/// see (a status written back by the cascade itself) queues nothing.
#[derive(Default)]
pub struct Fingerprints(HashMap<(Kind, Uuid), u64>);

impl Fingerprints {
    /// `true` if the object changed in a way the bottoms see since last time.
    fn changed(&mut self, t: &Topology, kind: Kind, id: Uuid) -> bool {
        let fp = match kind {
            Kind::Network => t.get_network(&id).map(|n| {
                fingerprint(&(
                    &n.name,
                    n.admin_state_up,
                    n.shared,
                    n.mtu,
                    n.port_security_enabled,
                    &n.description,
                ))
            }),
            Kind::Subnet => t
                .get_subnet(&id)
                .map(|sn| fingerprint(&serde_json::to_string(&**sn).unwrap_or_default())),
            Kind::Router => t.get_router(&id).map(|r| {
                fingerprint(&(
                    &r.name,
                    r.admin_state_up,
                    &r.description,
                    serde_json::to_string(&r.routes).unwrap_or_default(),
                ))
            }),
            Kind::Port => t.get_port(&id).map(|p| {
                let mut q = (**p).clone();
                q.status = String::new();
                q.revision_number = 0;
                q.updated_at = Default::default();
                fingerprint(&serde_json::to_string(&q).unwrap_or_default())
            }),
        };
        match fp {
            Some(fp) => self.0.insert((kind, id), fp) != Some(fp),
            None => {
                self.0.remove(&(kind, id));
                true
            }
        }
    }
}

fn fingerprint<T: Hash>(v: &T) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

fn project_of(t: &Topology, kind: Kind, id: Uuid) -> String {
    match kind {
        Kind::Network => t.get_network(&id).map(|o| o.project_id.clone()),
        Kind::Subnet => t.get_subnet(&id).map(|o| o.project_id.clone()),
        Kind::Port => t.get_port(&id).map(|o| o.project_id.clone()),
        Kind::Router => t.get_router(&id).map(|o| o.project_id.clone()),
    }
    .unwrap_or_default()
}

fn push(b: &mut Batch, t: &Topology, pod: Uuid, kind: Kind, id: Uuid) {
    b.enqueue(pod, kind, id, &project_of(t, kind, id));
}

/// Queues what a pod needs before a port placed there: the network, its subnets, and the
/// routers with interfaces on it.
fn ensure_network(b: &mut Batch, t: &Topology, pod: Uuid, net: Uuid) {
    push_network_and_subnets(b, t, pod, net);
    let interfaces: Vec<Arc<Port>> = t
        .network_ports(&net)
        .filter(|p| p.is_router_interface())
        .cloned()
        .collect();
    for i in interfaces {
        if let Some(r) = interface_router(&i) {
            push(b, t, pod, Kind::Router, r);
            push(b, t, pod, Kind::Port, i.id);
        }
    }
}

/// Queues network `net` in `pod`, then its subnets.
fn push_network_and_subnets(b: &mut Batch, t: &Topology, pod: Uuid, net: Uuid) {
    push(b, t, pod, Kind::Network, net);
    for sn in t.network_subnets(&net) {
        push(b, t, pod, Kind::Subnet, sn.id);
    }
}

/// Queues the jobs one top change needs (the object's current state decides).
pub fn on_change(
    b: &mut Batch,
    fps: &mut Fingerprints,
    t: &Topology,
    s: &Snapshot,
    kind: Kind,
    id: Uuid,
) {
    if !fps.changed(t, kind, id) {
        return;
    }
    let mut pods: BTreeSet<Uuid> = s.pods_with(kind, id).into_iter().collect();
    match kind {
        Kind::Network => {
            pods.extend(net_pods(t, s, id));
        }
        Kind::Subnet => {
            if let Some(sn) = t.get_subnet(&id) {
                pods.extend(net_pods(t, s, sn.network_id));
            }
        }
        Kind::Router => {
            for i in t.router_interfaces(&id) {
                pods.extend(net_pods(t, s, i.network_id));
            }
        }
        Kind::Port => {
            if let Some(p) = t.get_port(&id) {
                if let Some(r) = interface_router(p) {
                    for pod in net_pods(t, s, p.network_id) {
                        push(b, t, pod, Kind::Router, r);
                        pods.insert(pod);
                    }
                } else if let Some(pod) = placement(p, s) {
                    // Once the pod holds the network, its subnets and router interfaces
                    // follow their own changes: no need to recheck them per port.
                    if s.routing(pod, Kind::Network, p.network_id).is_none() {
                        ensure_network(b, t, pod, p.network_id);
                    }
                    pods.insert(pod);
                }
            }
        }
    }
    for pod in pods {
        push_after_parents(b, t, s, pod, kind, id);
    }
}

/// Queues `(kind, id)` in `pod` after the parents its bottom create needs, if the pod does
/// not hold them yet. The watcher reads the top's *current* state for a batch of events, so
/// a subnet's event may already see a port placed in a pod later in the same batch: without
/// this the subnet's job would run before the network's and fail with `NetworkNotFound`.
fn push_after_parents(b: &mut Batch, t: &Topology, s: &Snapshot, pod: Uuid, kind: Kind, id: Uuid) {
    let held = |kind, id| s.routing(pod, kind, id).is_some();
    let net = match kind {
        Kind::Subnet => t.get_subnet(&id).map(|sn| sn.network_id),
        Kind::Port => t.get_port(&id).map(|p| p.network_id),
        Kind::Network | Kind::Router => None,
    };
    if let Some(net) = net.filter(|n| !held(Kind::Network, *n)) {
        if kind == Kind::Port {
            push_network_and_subnets(b, t, pod, net);
        } else {
            push(b, t, pod, Kind::Network, net);
        }
    }
    if let Some(r) = t
        .get_port(&id)
        .filter(|_| kind == Kind::Port)
        .and_then(|p| interface_router(p))
    {
        if !held(Kind::Router, r) {
            push(b, t, pod, Kind::Router, r);
        }
    }
    push(b, t, pod, kind, id);
}

/// Queues a sync of everything `pod` should hold or holds (after a restart whose watch fell
/// out of the history, or when a pod is added). Parents before children; deletions of
/// copies whose top object is gone last, children first.
pub fn resync_pod(b: &mut Batch, t: &Topology, s: &Snapshot, pod: Uuid) {
    for n in t.networks() {
        if net_in_pod(t, s, pod, n.id) {
            push(b, t, pod, Kind::Network, n.id);
            for sn in t.network_subnets(&n.id) {
                push(b, t, pod, Kind::Subnet, sn.id);
            }
        }
    }
    for r in t.routers() {
        if router_in_pod(t, s, pod, r.id) {
            push(b, t, pod, Kind::Router, r.id);
        }
    }
    for p in t.ports() {
        if wanted(t, s, pod, Kind::Port, p.id) || s.routing(pod, Kind::Port, p.id).is_some() {
            push(b, t, pod, Kind::Port, p.id);
        }
    }
    // Copies whose top object is gone, or which the pod should no longer hold.
    for kind in [Kind::Port, Kind::Router, Kind::Subnet, Kind::Network] {
        let stale: Vec<Uuid> = s
            .routings
            .keys()
            .filter(|(p, k, id)| *p == pod && *k == kind && !wanted(t, s, pod, kind, *id))
            .map(|(_, _, id)| *id)
            .collect();
        for id in stale {
            b.enqueue(pod, kind, id, "");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn pod(n: u128, region: &str, az: &str) -> Pod {
        Pod {
            pod_id: Uuid::from_u128(n),
            region_name: region.into(),
            az_name: az.into(),
            dc_name: String::new(),
            pod_az_name: String::new(),
            api_url: "http://127.0.0.1:1".into(),
            token: None,
        }
    }

    #[test]
    fn placement_by_region_then_az_with_optional_host() {
        let pods: BTreeMap<Uuid, Pod> = [pod(1, "RegionA", "az1"), pod(2, "RegionB", "az1")]
            .into_iter()
            .map(|p| (p.pod_id, p))
            .collect();
        assert_eq!(place("RegionB", &pods), Some(Uuid::from_u128(2)));
        assert_eq!(place("node7@RegionA", &pods), Some(Uuid::from_u128(1)));
        // An az shared by two pods picks the first by pod id.
        assert_eq!(place("az1", &pods), Some(Uuid::from_u128(1)));
        assert_eq!(place("node7@az1", &pods), Some(Uuid::from_u128(1)));
        assert_eq!(place("", &pods), None);
        assert_eq!(place("node7", &pods), None);
        assert_eq!(place("node7@Nowhere", &pods), None);
        assert_eq!(bottom_host("node7@RegionA"), "node7");
        assert_eq!(bottom_host("RegionA"), "");
        assert_eq!(bottom_host("a@b@RegionA"), "a@b");
    }

    #[test]
    fn diff_names_only_changed_attributes_and_ignores_list_order() {
        let want = json!({"name": "x", "fixed_ips": [{"a": 1}, {"a": 2}], "mtu": 1450});
        let cur = json!({"name": "x", "fixed_ips": [{"a": 2}, {"a": 1}], "mtu": 1400});
        assert_eq!(
            diff(&want, &cur, &["name", "fixed_ips", "mtu"]),
            Some(json!({"mtu": 1450}))
        );
        assert_eq!(diff(&want, &want, &["name", "fixed_ips", "mtu"]), None);
        let fewer = json!({"fixed_ips": [{"a": 1}]});
        assert!(diff(&want, &fewer, &["fixed_ips"]).is_some());
    }

    #[test]
    fn router_create_body_leaves_routes_to_an_update() {
        let b = create_body(Kind::Router, json!({"id": "r", "routes": [1]}));
        assert_eq!(b, json!({"id": "r"}));
        let n = create_body(Kind::Network, json!({"id": "n", "routes": [1]}));
        assert_eq!(n["routes"], json!([1]));
    }

    /// net + subnet + router with an interface + one port placed in pod 1, one unplaced.
    fn topo() -> (Topology, Uuid, Uuid, Uuid, Uuid, Uuid, Uuid) {
        use wyvern_model::*;
        let ctx = RequestContext::admin("p", Timestamp(1));
        let mut t = Topology::new(ModelConfig::default());
        let (c, n) = t
            .create_network(
                &ctx,
                NetworkCreate::from_json(&json!({"name": "n"}), &ctx).unwrap(),
            )
            .unwrap();
        t.apply(&c);
        let req = json!({"network_id": n.id, "cidr": "10.0.0.0/24", "ip_version": 4});
        let (c, s) = t
            .create_subnet(&ctx, SubnetCreate::from_json(&req, &ctx).unwrap())
            .unwrap();
        t.apply(&c);
        let (c, r) = t
            .create_router(&ctx, RouterCreate::from_json(&json!({}), &ctx).unwrap())
            .unwrap();
        t.apply(&c);
        let ifreq = InterfaceRequest::from_json(&json!({"subnet_id": s.id})).unwrap();
        let (c, info) = t
            .add_router_interface(&ctx, &r.id.to_string(), ifreq)
            .unwrap();
        t.apply(&c);
        let mut port = |host: &str| {
            let req = json!({"network_id": n.id, "binding:host_id": host});
            let (c, p) = t
                .create_port(&ctx, PortCreate::from_json(&req, &ctx).unwrap())
                .unwrap();
            t.apply(&c);
            p.id
        };
        let placed = port("h@RegionA");
        let unplaced = port("");
        (t, n.id, s.id, r.id, info.port_id, placed, unplaced)
    }

    #[test]
    fn a_placed_port_brings_its_network_subnet_router_and_interface() {
        let (t, net, sub, router, iface, placed, unplaced) = topo();
        let mut s = Snapshot::default();
        for p in [pod(1, "RegionA", ""), pod(2, "RegionB", "")] {
            s.pods.insert(p.pod_id, p);
        }
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mut batch = Batch::default();
        let mut fps = Fingerprints::default();
        on_change(&mut batch, &mut fps, &t, &s, Kind::Port, placed);
        assert_eq!(
            batch.queued(),
            vec![
                (a, Kind::Network, net),
                (a, Kind::Subnet, sub),
                (a, Kind::Router, router),
                (a, Kind::Port, iface),
                (a, Kind::Port, placed),
            ]
        );
        // The same state again queues nothing; the unplaced port queues nothing at all.
        let mut again = Batch::default();
        on_change(&mut again, &mut fps, &t, &s, Kind::Port, placed);
        on_change(&mut again, &mut fps, &t, &s, Kind::Port, unplaced);
        assert!(again.queued().is_empty());
        for (kind, id) in [
            (Kind::Network, net),
            (Kind::Subnet, sub),
            (Kind::Router, router),
            (Kind::Port, iface),
            (Kind::Port, placed),
        ] {
            assert!(wanted(&t, &s, a, kind, id), "{kind:?} in pod A");
            assert!(!wanted(&t, &s, b, kind, id), "{kind:?} not in pod B");
        }
        assert!(!wanted(&t, &s, a, Kind::Port, unplaced));
        // The bottom port keeps the top's id, MAC and IP; the host part only.
        let (body, _) = bottom_body(&t, &s, a, Kind::Port, placed).unwrap();
        let p = t.get_port(&placed).unwrap();
        assert_eq!(body["id"], json!(placed));
        assert_eq!(body["mac_address"], json!(p.mac_address));
        assert_eq!(
            body["fixed_ips"][0]["ip_address"],
            json!(p.fixed_ips[0].ip_address)
        );
        assert_eq!(body["binding:host_id"], "h");
    }

    /// The CI failure of session 5: the subnet's event and the port's arrive in one batch,
    /// so the subnet's event already sees the port placed in pod A.
    #[test]
    fn one_batch_queues_parents_before_children_whatever_the_event_order() {
        let (t, net, sub, router, iface, placed, _) = topo();
        let mut s = Snapshot::default();
        let a = pod(1, "RegionA", "");
        s.pods.insert(a.pod_id, a);
        for events in [
            vec![(Kind::Subnet, sub), (Kind::Port, placed)],
            vec![
                (Kind::Port, iface),
                (Kind::Subnet, sub),
                (Kind::Port, placed),
            ],
            vec![(Kind::Router, router), (Kind::Port, placed)],
        ] {
            let mut batch = Batch::default();
            let mut fps = Fingerprints::default();
            for (kind, id) in &events {
                on_change(&mut batch, &mut fps, &t, &s, *kind, *id);
            }
            let order: Vec<(Kind, Uuid)> =
                batch.queued().iter().map(|(_, k, i)| (*k, *i)).collect();
            let at = |k, i| order.iter().position(|x| *x == (k, i));
            for (parent, child) in [
                ((Kind::Network, net), (Kind::Subnet, sub)),
                ((Kind::Subnet, sub), (Kind::Port, placed)),
                ((Kind::Subnet, sub), (Kind::Port, iface)),
                ((Kind::Router, router), (Kind::Port, iface)),
            ] {
                let (p, c) = (at(parent.0, parent.1), at(child.0, child.1));
                assert!(p.is_some() && c.is_some() && p < c, "{events:?}: {order:?}");
            }
        }
    }
}
