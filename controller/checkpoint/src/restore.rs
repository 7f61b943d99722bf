//! Restoring a checkpoint into a Neutron API (the same wyvernd or another one).
//!
//! Order follows the dependency graph: networks, subnets, routers, ports (router interfaces
//! are ports with `device_owner = network:router_interface` and `device_id = <router>`, so
//! they are created directly as ports, which keeps their MAC and IP), then router routes
//! (their nexthops need the interfaces). Ids are kept through wyvernd's admin-only `id` in
//! create bodies; a target that refuses `id` gets new ids and the mapping is reported.
//! MACs and fixed IPs are kept where free on the target; where taken, the target chooses and
//! the mapping is reported.
//!
//! Idempotent: the target's objects are listed first and any id already there counts as
//! restored, so a restore that failed midway is simply run again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;
use wyvern_model::{MacAddr, Network, Port, Router, Subnet};

use crate::bank::{Bank, BankError, Manifest, ObjectFault};
use crate::graph::ResourceType;
use crate::neutron::{NeutronClient, NeutronError};

/// Why a restore could not start (per-resource failures are reported, not raised).
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("failed to read checkpoint {id} from the bank: {source}")]
    Bank {
        id: String,
        #[source]
        source: BankError,
    },
    #[error("checkpoint {0} has no manifest: it is not available")]
    NotAvailable(String),
    #[error("checkpoint {id} failed verification, restore refused: {}", faults.iter().map(|f| f.to_string()).collect::<Vec<_>>().join("; "))]
    Verification {
        id: String,
        faults: Vec<ObjectFault>,
    },
    #[error("failed to decode object {object} of checkpoint {id}: {source}")]
    Decode {
        id: String,
        object: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("failed to list the restore target's {collection}: {source}")]
    Target {
        collection: &'static str,
        #[source]
        source: Box<NeutronError>,
    },
}

/// The resources of a checkpoint, decoded.
#[derive(Debug, Clone, Default)]
pub struct Contents {
    pub networks: Vec<Network>,
    pub subnets: Vec<Subnet>,
    pub routers: Vec<Router>,
    pub ports: Vec<Port>,
}

/// Verifies every object and decodes the checkpoint's resources.
pub async fn load(bank: &Bank, id: &str) -> Result<(Manifest, Contents), RestoreError> {
    let bank_err = |source| RestoreError::Bank {
        id: id.to_string(),
        source,
    };
    let rec = bank.checkpoint(id).await.map_err(bank_err)?;
    let manifest = rec
        .manifest
        .ok_or_else(|| RestoreError::NotAvailable(id.to_string()))?;
    let objects = match bank.read_verified(&manifest).await.map_err(bank_err)? {
        Ok(objects) => objects,
        Err(faults) => {
            return Err(RestoreError::Verification {
                id: id.to_string(),
                faults,
            })
        }
    };
    let mut c = Contents::default();
    for (o, data) in manifest.objects.iter().zip(objects) {
        let de = |source| RestoreError::Decode {
            id: id.to_string(),
            object: o.name.clone(),
            source,
        };
        match o.name.as_str() {
            "networks.json" => c.networks = serde_json::from_slice(&data).map_err(de)?,
            "subnets.json" => c.subnets = serde_json::from_slice(&data).map_err(de)?,
            "routers.json" => c.routers = serde_json::from_slice(&data).map_err(de)?,
            _ => c
                .ports
                .extend(serde_json::from_slice::<Vec<Port>>(&data).map_err(de)?),
        }
    }
    Ok((manifest, c))
}

/// Per-resource restore status, Karbor's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceStatus {
    Restoring,
    Restored,
    Error,
}

/// An attribute the target could not keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    #[serde(rename = "type")]
    pub ty: ResourceType,
    pub original_id: String,
    pub attribute: String,
    pub original: String,
    pub restored: String,
}

/// What a restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreReport {
    /// `"<type>#<original id>"` -> status.
    pub resources_status: BTreeMap<String, ResourceStatus>,
    /// `"<type>#<original id>"` -> why it failed.
    pub resources_reason: BTreeMap<String, String>,
    /// Resources this run created (`"<type>#<restored id>"`).
    pub created: Vec<String>,
    /// Resources already present on the target (a rerun).
    pub already_present: usize,
    pub mappings: Vec<Mapping>,
}

impl RestoreReport {
    pub fn succeeded(&self) -> bool {
        self.resources_status
            .values()
            .all(|s| *s == ResourceStatus::Restored)
    }
    fn key(ty: ResourceType, id: Uuid) -> String {
        format!("{ty}#{id}")
    }
    fn ok(&mut self, ty: ResourceType, id: Uuid) {
        self.resources_status
            .insert(Self::key(ty, id), ResourceStatus::Restored);
    }
    fn fail(&mut self, ty: ResourceType, id: Uuid, why: String) {
        self.resources_status
            .insert(Self::key(ty, id), ResourceStatus::Error);
        self.resources_reason.insert(Self::key(ty, id), why);
    }
}

/// Restore options.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Ports per bulk create request.
    pub bulk: usize,
    /// Bulk create requests in flight.
    pub bulk_in_flight: usize,
    /// Concurrent requests when creating one by one.
    pub concurrency: usize,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            bulk: 500,
            bulk_in_flight: 4,
            concurrency: 32,
        }
    }
}

struct Target<'a> {
    c: &'a NeutronClient,
    /// Does the target accept `id` in create bodies (None: not known yet)?
    ids: std::sync::Mutex<Option<bool>>,
}

fn is_id_refusal(e: &NeutronError) -> bool {
    e.status() == Some(400)
        && matches!(e, NeutronError::Status { message, .. } if message.contains("'id'") || message.contains("\"id\"") || message.contains(" id"))
}

impl Target<'_> {
    fn with_ids(&self) -> bool {
        self.ids.lock().map(|g| g.unwrap_or(true)).unwrap_or(true)
    }
    fn set_ids(&self, v: bool) {
        if let Ok(mut g) = self.ids.lock() {
            *g = Some(v);
        }
    }

    /// Creates one object, with its original id when the target accepts it.
    async fn create(
        &self,
        plural: &str,
        singular: &str,
        id: Uuid,
        mut body: Value,
    ) -> Result<Value, NeutronError> {
        if self.with_ids() {
            body["id"] = json!(id);
            match self.c.create(plural, singular, body.clone()).await {
                Ok(v) => {
                    self.set_ids(true);
                    return Ok(v);
                }
                Err(e) if is_id_refusal(&e) => {
                    tracing::info!(error = %e, "the restore target refuses ids; new ids will be mapped");
                    self.set_ids(false);
                }
                Err(e) => return Err(e),
            }
            if let Some(m) = body.as_object_mut() {
                m.remove("id");
            }
        }
        self.c.create(plural, singular, body).await
    }
}

fn new_id(v: &Value) -> Option<Uuid> {
    v["id"].as_str().and_then(|s| s.parse().ok())
}

struct Existing {
    networks: HashSet<Uuid>,
    subnets: HashSet<Uuid>,
    ports: HashSet<Uuid>,
    routers: HashMap<Uuid, Router>,
    macs: HashSet<(Uuid, MacAddr)>,
    ips: HashSet<(Uuid, Ipv4Addr)>,
}

async fn existing(c: &NeutronClient) -> Result<Existing, RestoreError> {
    let list = |col: &'static str| async move {
        c.list(col)
            .await
            .map(|(_, v)| v)
            .map_err(|source| RestoreError::Target {
                collection: col,
                source: Box::new(source),
            })
    };
    let (n, s, p, r) = tokio::join!(
        list("networks"),
        list("subnets"),
        list("ports"),
        list("routers")
    );
    let ids = |v: Vec<Value>| -> HashSet<Uuid> { v.iter().filter_map(new_id).collect() };
    let ports: Vec<Port> = p?
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect();
    let routers = r?
        .into_iter()
        .filter_map(|v| serde_json::from_value::<Router>(v).ok())
        .map(|r| (r.id, r))
        .collect();
    Ok(Existing {
        networks: ids(n?),
        subnets: ids(s?),
        macs: ports
            .iter()
            .map(|p| (p.network_id, p.mac_address))
            .collect(),
        ips: ports
            .iter()
            .flat_map(|p| p.fixed_ips.iter().map(|f| (f.subnet_id, f.ip_address)))
            .collect(),
        ports: ports.iter().map(|p| p.id).collect(),
        routers,
    })
}

/// Restores `contents` into `target`. Never fails as a whole once started: every resource
/// gets a status, and resources whose dependencies failed fail with that reason.
pub async fn restore(
    contents: &Contents,
    target: &NeutronClient,
    opts: &RestoreOptions,
) -> Result<RestoreReport, RestoreError> {
    let ex = existing(target).await?;
    let t = Target {
        c: target,
        ids: std::sync::Mutex::new(None),
    };
    let mut rep = RestoreReport::default();
    // original id -> restored id
    let mut idmap: HashMap<Uuid, Uuid> = HashMap::new();

    // Networks.
    for n in &contents.networks {
        if ex.networks.contains(&n.id) {
            idmap.insert(n.id, n.id);
            rep.already_present += 1;
            rep.ok(ResourceType::Network, n.id);
            continue;
        }
        let body = json!({
            "name": n.name, "description": n.description, "admin_state_up": n.admin_state_up,
            "shared": n.shared, "mtu": n.mtu, "port_security_enabled": n.port_security_enabled,
            "project_id": n.project_id,
        });
        match t.create("networks", "network", n.id, body).await {
            Ok(v) => record(&mut rep, &mut idmap, ResourceType::Network, n.id, &v),
            Err(e) => rep.fail(ResourceType::Network, n.id, e.to_string()),
        }
    }

    // Subnets.
    for s in &contents.subnets {
        if ex.subnets.contains(&s.id) {
            idmap.insert(s.id, s.id);
            rep.already_present += 1;
            rep.ok(ResourceType::Subnet, s.id);
            continue;
        }
        let Some(net) = idmap.get(&s.network_id).copied() else {
            rep.fail(
                ResourceType::Subnet,
                s.id,
                format!("network {} was not restored", s.network_id),
            );
            continue;
        };
        let body = json!({
            "network_id": net, "name": s.name, "description": s.description,
            "ip_version": 4, "cidr": s.cidr, "gateway_ip": s.gateway_ip,
            "enable_dhcp": s.enable_dhcp, "dns_nameservers": s.dns_nameservers,
            "allocation_pools": s.allocation_pools, "host_routes": s.host_routes,
            "project_id": s.project_id,
        });
        match t.create("subnets", "subnet", s.id, body).await {
            Ok(v) => record(&mut rep, &mut idmap, ResourceType::Subnet, s.id, &v),
            Err(e) => rep.fail(ResourceType::Subnet, s.id, e.to_string()),
        }
    }

    // Routers (routes after the interfaces).
    for r in &contents.routers {
        if ex.routers.contains_key(&r.id) {
            idmap.insert(r.id, r.id);
            rep.already_present += 1;
            continue;
        }
        let body = json!({
            "name": r.name, "description": r.description, "admin_state_up": r.admin_state_up,
            "project_id": r.project_id,
        });
        match t.create("routers", "router", r.id, body).await {
            Ok(v) => {
                if let Some(nid) = new_id(&v) {
                    idmap.insert(r.id, nid);
                    rep.created.push(format!("{}#{nid}", ResourceType::Router));
                }
            }
            Err(e) => rep.fail(ResourceType::Router, r.id, e.to_string()),
        }
    }

    // Ports: bodies with kept MACs/IPs where free, then bulk creates with one-by-one fallback.
    let mut bodies: Vec<(Uuid, Value)> = Vec::new();
    for p in &contents.ports {
        if ex.ports.contains(&p.id) {
            idmap.insert(p.id, p.id);
            rep.already_present += 1;
            rep.ok(ResourceType::Port, p.id);
            continue;
        }
        match port_body(p, &idmap, &ex, &mut rep) {
            Ok(b) => bodies.push((p.id, b)),
            Err(why) => rep.fail(ResourceType::Port, p.id, why),
        }
    }
    create_ports(&t, bodies, opts, &mut rep, &mut idmap).await;

    // Router routes, and router status.
    for r in &contents.routers {
        let Some(rid) = idmap.get(&r.id).copied() else {
            continue;
        };
        let current = ex
            .routers
            .get(&rid)
            .map(|x| x.routes.clone())
            .unwrap_or_default();
        if r.routes.is_empty() || current == r.routes {
            rep.ok(ResourceType::Router, r.id);
            continue;
        }
        match target
            .update(
                "routers",
                "router",
                &rid.to_string(),
                json!({"routes": r.routes}),
            )
            .await
        {
            Ok(_) => rep.ok(ResourceType::Router, r.id),
            Err(e) => rep.fail(
                ResourceType::Router,
                r.id,
                format!("failed to set routes: {e}"),
            ),
        }
    }
    Ok(rep)
}

fn record(
    rep: &mut RestoreReport,
    idmap: &mut HashMap<Uuid, Uuid>,
    ty: ResourceType,
    orig: Uuid,
    v: &Value,
) {
    match new_id(v) {
        Some(nid) => {
            idmap.insert(orig, nid);
            rep.created.push(format!("{ty}#{nid}"));
            if nid != orig {
                rep.mappings.push(Mapping {
                    ty,
                    original_id: orig.to_string(),
                    attribute: "id".into(),
                    original: orig.to_string(),
                    restored: nid.to_string(),
                });
            }
            rep.ok(ty, orig);
        }
        None => rep.fail(ty, orig, "the target answered without an id".into()),
    }
}

fn port_body(
    p: &Port,
    idmap: &HashMap<Uuid, Uuid>,
    ex: &Existing,
    rep: &mut RestoreReport,
) -> Result<Value, String> {
    let net = *idmap
        .get(&p.network_id)
        .ok_or_else(|| format!("network {} was not restored", p.network_id))?;
    let mut fixed = Vec::new();
    for f in &p.fixed_ips {
        let sub = *idmap
            .get(&f.subnet_id)
            .ok_or_else(|| format!("subnet {} was not restored", f.subnet_id))?;
        if ex.ips.contains(&(sub, f.ip_address)) {
            fixed.push(json!({"subnet_id": sub}));
            rep.mappings.push(Mapping {
                ty: ResourceType::Port,
                original_id: p.id.to_string(),
                attribute: "fixed_ips".into(),
                original: f.ip_address.to_string(),
                restored: "(allocated by the target)".into(),
            });
        } else {
            fixed.push(json!({"subnet_id": sub, "ip_address": f.ip_address}));
        }
    }
    let mut device_id = p.device_id.clone();
    if p.is_router_interface() {
        let rid: Uuid = p
            .device_id
            .parse()
            .map_err(|_| format!("router interface with device_id {:?}", p.device_id))?;
        let nr = idmap
            .get(&rid)
            .ok_or_else(|| format!("router {rid} was not restored"))?;
        device_id = nr.to_string();
    }
    let mut body = json!({
        "network_id": net, "name": p.name, "description": p.description,
        "admin_state_up": p.admin_state_up, "fixed_ips": fixed,
        "device_id": device_id, "device_owner": p.device_owner,
        "binding:host_id": p.binding_host_id,
        "port_security_enabled": p.port_security_enabled,
        "allowed_address_pairs": p.allowed_address_pairs,
        "project_id": p.project_id,
    });
    if ex.macs.contains(&(net, p.mac_address)) {
        rep.mappings.push(Mapping {
            ty: ResourceType::Port,
            original_id: p.id.to_string(),
            attribute: "mac_address".into(),
            original: p.mac_address.to_string(),
            restored: "(allocated by the target)".into(),
        });
    } else {
        body["mac_address"] = json!(p.mac_address);
    }
    Ok(body)
}

async fn create_ports(
    t: &Target<'_>,
    bodies: Vec<(Uuid, Value)>,
    opts: &RestoreOptions,
    rep: &mut RestoreReport,
    idmap: &mut HashMap<Uuid, Uuid>,
) {
    if bodies.is_empty() {
        return;
    }
    // The first port alone settles whether the target accepts ids.
    let mut rest = bodies;
    let (id0, b0) = rest.remove(0);
    let r0 = t.create("ports", "port", id0, b0.clone()).await;
    port_result(rep, idmap, id0, &b0, r0);
    let with_ids = t.with_ids();
    let chunks: Vec<Vec<(Uuid, Value)>> =
        rest.chunks(opts.bulk.max(1)).map(|c| c.to_vec()).collect();
    type BulkResult = (Vec<(Uuid, Value)>, Result<Vec<Value>, NeutronError>);
    let results: Vec<BulkResult> = futures::stream::iter(chunks)
        .map(|chunk| async move {
            let items: Vec<Value> = chunk
                .iter()
                .map(|(id, b)| {
                    let mut b = b.clone();
                    if with_ids {
                        b["id"] = json!(id);
                    }
                    b
                })
                .collect();
            let r = t.c.create_bulk("ports", items).await;
            (chunk, r)
        })
        .buffer_unordered(opts.bulk_in_flight.max(1))
        .collect()
        .await;
    let mut singles = Vec::new();
    for (chunk, r) in results {
        match r {
            Ok(created) if created.len() == chunk.len() => {
                for ((orig, b), v) in chunk.iter().zip(created) {
                    port_result(rep, idmap, *orig, b, Ok(v));
                }
            }
            Ok(_) | Err(_) => singles.extend(chunk),
        }
    }
    // A refused bulk (a taken IP or MAC somewhere in it): one by one, dropping what collides.
    let out: Vec<(Uuid, Value, Result<Value, NeutronError>)> = futures::stream::iter(singles)
        .map(|(id, b)| async move {
            let mut body = b.clone();
            let mut r = t.create("ports", "port", id, body.clone()).await;
            for _ in 0..2 {
                match &r {
                    Err(e) if e.neutron_type() == Some("MacAddressInUse") => {
                        if let Some(m) = body.as_object_mut() {
                            m.remove("mac_address");
                        }
                    }
                    Err(e) if e.neutron_type() == Some("IpAddressAlreadyAllocated") => {
                        if let Some(list) = body["fixed_ips"].as_array_mut() {
                            for f in list {
                                if let Some(m) = f.as_object_mut() {
                                    m.remove("ip_address");
                                }
                            }
                        }
                    }
                    _ => break,
                }
                r = t.create("ports", "port", id, body.clone()).await;
            }
            (id, b, r)
        })
        .buffer_unordered(opts.concurrency.max(1))
        .collect()
        .await;
    for (id, b, r) in out {
        port_result(rep, idmap, id, &b, r);
    }
}

fn port_result(
    rep: &mut RestoreReport,
    idmap: &mut HashMap<Uuid, Uuid>,
    orig: Uuid,
    asked: &Value,
    r: Result<Value, NeutronError>,
) {
    match r {
        Ok(v) => {
            if let (Some(want), Some(got)) =
                (asked["mac_address"].as_str(), v["mac_address"].as_str())
            {
                if want != got {
                    rep.mappings.push(Mapping {
                        ty: ResourceType::Port,
                        original_id: orig.to_string(),
                        attribute: "mac_address".into(),
                        original: want.into(),
                        restored: got.into(),
                    });
                }
            }
            record(rep, idmap, ResourceType::Port, orig, &v)
        }
        Err(e) => rep.fail(ResourceType::Port, orig, e.to_string()),
    }
}
