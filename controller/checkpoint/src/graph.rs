//! Protectables: what can be protected (a project's whole topology, a network, a router),
//! the dependency graph between resources, and reading them from a Neutron API at one
//! consistent cut.
//!
//! Consistency: wyvernd serves `GET /v2.0/wyvern/topology`, every network, subnet, port and
//! router the caller may see read from its store at ONE revision (named in the answer), so a
//! cut is one read. Against a Neutron without that endpoint (it answers 404) the cut falls
//! back to a double read: the four collections are read (concurrently) repeatedly until two
//! consecutive reads return byte-identical answers. Every write bumps the written object's
//! `revision_number` and `updated_at`, so two identical consecutive reads mean no write
//! landed between the start of the first and the end of the second.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;
use wyvern_model::{Network, Port, Router, Subnet};

use crate::neutron::{NeutronClient, NeutronError};

/// A resource type, named as Karbor/Heat name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceType {
    Project,
    Network,
    Subnet,
    Port,
    Router,
}

impl ResourceType {
    pub const fn as_str(self) -> &'static str {
        match self {
            ResourceType::Project => "OS::Keystone::Project",
            ResourceType::Network => "OS::Neutron::Network",
            ResourceType::Subnet => "OS::Neutron::Subnet",
            ResourceType::Port => "OS::Neutron::Port",
            ResourceType::Router => "OS::Neutron::Router",
        }
    }
    /// The types a plan may name (`GET /protectables`).
    pub const PROTECTABLE: [ResourceType; 3] = [
        ResourceType::Project,
        ResourceType::Network,
        ResourceType::Router,
    ];
    /// Types an instance of this type depends on (Karbor's `dependent_types`).
    pub fn dependent_types(self) -> &'static [ResourceType] {
        match self {
            ResourceType::Project => &[ResourceType::Network, ResourceType::Router],
            ResourceType::Router => &[ResourceType::Port, ResourceType::Subnet],
            ResourceType::Network => &[ResourceType::Subnet, ResourceType::Port],
            ResourceType::Subnet => &[ResourceType::Network],
            ResourceType::Port => &[ResourceType::Subnet],
        }
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown resource type name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown resource type {0:?} (known: OS::Keystone::Project, OS::Neutron::Network, OS::Neutron::Router, OS::Neutron::Subnet, OS::Neutron::Port)")]
pub struct UnknownType(pub String);

impl FromStr for ResourceType {
    type Err = UnknownType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "OS::Keystone::Project" => ResourceType::Project,
            "OS::Neutron::Network" => ResourceType::Network,
            "OS::Neutron::Subnet" => ResourceType::Subnet,
            "OS::Neutron::Port" => ResourceType::Port,
            "OS::Neutron::Router" => ResourceType::Router,
            _ => return Err(UnknownType(s.to_string())),
        })
    }
}

impl Serialize for ResourceType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ResourceType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A resource as plans and graphs name it (Karbor's `{"id", "type", "name"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRef {
    pub id: String,
    #[serde(rename = "type")]
    pub ty: ResourceType,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_info: Option<serde_json::Value>,
}

/// Why a cut could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("failed to read {collection} from {url}: {source}")]
    List {
        collection: &'static str,
        url: String,
        #[source]
        source: Box<NeutronError>,
    },
    #[error("failed to decode a {collection} item from {url}: {source}")]
    Decode {
        collection: &'static str,
        url: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("failed to take a consistent cut of {url}: {reads} reads never agreed (writes kept landing)")]
    NoConsistentCut { url: String, reads: u32 },
}

/// Everything visible to the caller at one consistent cut.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub networks: BTreeMap<Uuid, Network>,
    pub subnets: BTreeMap<Uuid, Subnet>,
    pub ports: BTreeMap<Uuid, Port>,
    pub routers: BTreeMap<Uuid, Router>,
    /// sha256 of the answer(s) the cut was decoded from (the cut's identity).
    pub digest: String,
    /// How many full reads it took.
    pub reads: u32,
    /// How the cut was taken.
    pub method: CutMethod,
    /// The source's store revision of the cut (`None` for a double read).
    pub store_revision: Option<u64>,
}

/// How a [`Snapshot`] was cut.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CutMethod {
    /// One `GET /v2.0/wyvern/topology`: one store revision.
    #[default]
    StoreRevision,
    /// Consecutive identical reads of the four Neutron lists.
    DoubleRead,
}

impl CutMethod {
    /// The name recorded in a manifest's `cut.method`.
    pub const fn as_str(self) -> &'static str {
        match self {
            CutMethod::StoreRevision => "store-revision",
            CutMethod::DoubleRead => "double-read",
        }
    }
}

/// wyvernd's one-read cut endpoint, relative to `/v2.0/`.
const TOPOLOGY_PATH: &str = "wyvern/topology";

/// The answer of `GET /v2.0/wyvern/topology`, parsed straight into typed objects.
#[derive(Deserialize)]
struct TopologyAnswer {
    topology: TopologyAtRevision,
}

#[derive(Deserialize)]
struct TopologyAtRevision {
    revision: u64,
    networks: Vec<Network>,
    subnets: Vec<Subnet>,
    ports: Vec<Port>,
    routers: Vec<Router>,
}

const COLLECTIONS: [&str; 4] = ["networks", "subnets", "ports", "routers"];
const MAX_READS: u32 = 8;

/// One read of the four collections: the digest over all answers and the answers' bytes.
type RawRead = (String, Vec<bytes::Bytes>);

async fn read_once(c: &NeutronClient) -> Result<RawRead, ReadError> {
    let (n, s, p, r) = tokio::join!(
        c.list_bytes(COLLECTIONS[0]),
        c.list_bytes(COLLECTIONS[1]),
        c.list_bytes(COLLECTIONS[2]),
        c.list_bytes(COLLECTIONS[3])
    );
    let mut h = Sha256::new();
    let mut answers = Vec::with_capacity(4);
    for (res, collection) in [n, s, p, r].into_iter().zip(COLLECTIONS) {
        let bytes = res.map_err(|source| ReadError::List {
            collection,
            url: c.base().to_string(),
            source: Box::new(source),
        })?;
        h.update(collection.as_bytes());
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(&bytes);
        answers.push(bytes);
    }
    Ok((hex(&h.finalize()), answers))
}

/// A list answer (`{"<collection>": [...], ...}`), parsed straight into typed objects.
#[derive(Deserialize)]
struct ListAnswer<T> {
    #[serde(
        alias = "networks",
        alias = "subnets",
        alias = "ports",
        alias = "routers"
    )]
    items: Vec<T>,
}

fn decode<T: serde::de::DeserializeOwned>(
    collection: &'static str,
    url: &str,
    bytes: &[u8],
    id: impl Fn(&T) -> Uuid,
) -> Result<BTreeMap<Uuid, T>, ReadError> {
    let a: ListAnswer<T> = serde_json::from_slice(bytes).map_err(|source| ReadError::Decode {
        collection,
        url: url.to_string(),
        source,
    })?;
    Ok(a.items.into_iter().map(|t| (id(&t), t)).collect())
}

impl Snapshot {
    /// Reads the whole visible topology at one consistent cut (see the module docs): one
    /// read at one store revision where the source offers it, else a double read.
    pub async fn read(c: &NeutronClient) -> Result<Snapshot, ReadError> {
        match c.get_bytes(TOPOLOGY_PATH).await {
            Ok(bytes) => Self::from_topology(c.base(), &bytes),
            Err(e) if e.status() == Some(404) => Self::read_double(c).await,
            Err(source) => Err(ReadError::List {
                collection: "topology",
                url: c.base().to_string(),
                source: Box::new(source),
            }),
        }
    }

    /// Decodes one `GET /v2.0/wyvern/topology` answer.
    fn from_topology(url: &str, bytes: &[u8]) -> Result<Snapshot, ReadError> {
        let a: TopologyAnswer =
            serde_json::from_slice(bytes).map_err(|source| ReadError::Decode {
                collection: "topology",
                url: url.to_string(),
                source,
            })?;
        let t = a.topology;
        Ok(Snapshot {
            networks: t.networks.into_iter().map(|n| (n.id, n)).collect(),
            subnets: t.subnets.into_iter().map(|s| (s.id, s)).collect(),
            ports: t.ports.into_iter().map(|p| (p.id, p)).collect(),
            routers: t.routers.into_iter().map(|r| (r.id, r)).collect(),
            digest: hex(&Sha256::digest(bytes)),
            reads: 1,
            method: CutMethod::StoreRevision,
            store_revision: Some(t.revision),
        })
    }

    /// The fallback cut: the four lists read until two consecutive reads agree. Only the
    /// agreeing answers are parsed; earlier reads are hashed and dropped.
    pub async fn read_double(c: &NeutronClient) -> Result<Snapshot, ReadError> {
        let mut prev = read_once(c).await?;
        let mut reads = 1;
        loop {
            let next = read_once(c).await?;
            reads += 1;
            if next.0 == prev.0 {
                break;
            }
            if reads >= MAX_READS {
                return Err(ReadError::NoConsistentCut {
                    url: c.base().to_string(),
                    reads,
                });
            }
            prev = next;
        }
        let (digest, answers) = prev;
        let url = c.base();
        let empty = bytes::Bytes::new();
        let answer = |i: usize| answers.get(i).unwrap_or(&empty);
        let (networks, subnets, ports, routers) = (
            decode("networks", url, answer(0), |n: &Network| n.id)?,
            decode("subnets", url, answer(1), |s: &Subnet| s.id)?,
            decode("ports", url, answer(2), |p: &Port| p.id)?,
            decode("routers", url, answer(3), |r: &Router| r.id)?,
        );
        Ok(Snapshot {
            networks,
            subnets,
            ports,
            routers,
            digest,
            reads,
            method: CutMethod::DoubleRead,
            store_revision: None,
        })
    }

    /// Karbor's protectable instances of `ty` (with their direct dependencies).
    pub fn instances(&self, ty: ResourceType) -> Vec<Instance> {
        match ty {
            ResourceType::Project => {
                let projects: BTreeSet<&str> = self
                    .networks
                    .values()
                    .map(|n| n.project_id.as_str())
                    .chain(self.routers.values().map(|r| r.project_id.as_str()))
                    .collect();
                projects
                    .into_iter()
                    .map(|p| Instance {
                        id: p.to_string(),
                        ty,
                        name: p.to_string(),
                        dependent_resources: self
                            .networks
                            .values()
                            .filter(|n| n.project_id == p)
                            .map(|n| reference(ResourceType::Network, n.id, &n.name))
                            .chain(
                                self.routers
                                    .values()
                                    .filter(|r| r.project_id == p)
                                    .map(|r| reference(ResourceType::Router, r.id, &r.name)),
                            )
                            .collect(),
                    })
                    .collect()
            }
            ResourceType::Network => self
                .networks
                .values()
                .map(|n| Instance {
                    id: n.id.to_string(),
                    ty,
                    name: n.name.clone(),
                    dependent_resources: self
                        .subnets
                        .values()
                        .filter(|s| s.network_id == n.id)
                        .map(|s| reference(ResourceType::Subnet, s.id, &s.name))
                        .collect(),
                })
                .collect(),
            ResourceType::Router => self
                .routers
                .values()
                .map(|r| Instance {
                    id: r.id.to_string(),
                    ty,
                    name: r.name.clone(),
                    dependent_resources: self
                        .interfaces(r.id)
                        .map(|p| reference(ResourceType::Port, p.id, &p.name))
                        .collect(),
                })
                .collect(),
            ResourceType::Subnet | ResourceType::Port => Vec::new(),
        }
    }

    fn interfaces(&self, router: Uuid) -> impl Iterator<Item = &Port> {
        let rid = router.to_string();
        self.ports
            .values()
            .filter(move |p| p.is_router_interface() && p.device_id == rid)
    }

    /// The closure of `resources` over the dependency graph: a project brings everything it
    /// owns; a network its subnets and its ports (router interfaces only with their router);
    /// a router its interface ports and their subnets and networks.
    pub fn select(&self, resources: &[ResourceRef]) -> Result<Selection, SelectError> {
        let mut sel = Selection::default();
        for r in resources {
            match r.ty {
                ResourceType::Project => {
                    for n in self.networks.values().filter(|n| n.project_id == r.id) {
                        sel.add_network(self, n.id);
                    }
                    for rt in self.routers.values().filter(|x| x.project_id == r.id) {
                        sel.add_router(self, rt.id);
                    }
                    for p in self.ports.values().filter(|p| p.project_id == r.id) {
                        sel.add_port(self, p.id);
                    }
                }
                ResourceType::Network => {
                    let id = self.lookup(&self.networks, r)?;
                    sel.add_network(self, id);
                }
                ResourceType::Router => {
                    let id = self.lookup(&self.routers, r)?;
                    sel.add_router(self, id);
                }
                ResourceType::Subnet | ResourceType::Port => {
                    return Err(SelectError::NotProtectable(r.ty));
                }
            }
        }
        // Router interfaces come only with their router (an interface without its router
        // cannot be restored as an interface).
        let routers = sel.routers.clone();
        sel.ports.retain(|id| {
            self.ports.get(id).is_some_and(|p| {
                !p.is_router_interface()
                    || p.device_id
                        .parse::<Uuid>()
                        .is_ok_and(|rid| routers.contains(&rid))
            })
        });
        Ok(sel)
    }

    fn lookup<T>(&self, m: &BTreeMap<Uuid, T>, r: &ResourceRef) -> Result<Uuid, SelectError> {
        r.id.parse::<Uuid>()
            .ok()
            .filter(|id| m.contains_key(id))
            .ok_or_else(|| SelectError::NotFound(r.ty, r.id.clone()))
    }
}

fn reference(ty: ResourceType, id: Uuid, name: &str) -> ResourceRef {
    ResourceRef {
        id: id.to_string(),
        ty,
        name: name.to_string(),
        extra_info: None,
    }
}

/// A protectable instance (`GET /protectables/{type}/instances`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Instance {
    pub id: String,
    #[serde(rename = "type")]
    pub ty: ResourceType,
    pub name: String,
    pub dependent_resources: Vec<ResourceRef>,
}

/// Why a plan's resources could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    #[error("failed to find {0} {1}")]
    NotFound(ResourceType, String),
    #[error("{0} is not protectable on its own (protect its network, router or project)")]
    NotProtectable(ResourceType),
}

/// The ids a plan protects, closed over dependencies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    pub networks: BTreeSet<Uuid>,
    pub subnets: BTreeSet<Uuid>,
    pub ports: BTreeSet<Uuid>,
    pub routers: BTreeSet<Uuid>,
}

impl Selection {
    fn add_network(&mut self, s: &Snapshot, id: Uuid) {
        if !self.networks.insert(id) {
            return;
        }
        for sub in s.subnets.values().filter(|x| x.network_id == id) {
            self.subnets.insert(sub.id);
        }
        for p in s.ports.values().filter(|p| p.network_id == id) {
            self.ports.insert(p.id);
        }
    }
    fn add_port(&mut self, s: &Snapshot, id: Uuid) {
        if let Some(p) = s.ports.get(&id) {
            self.ports.insert(id);
            self.add_network(s, p.network_id);
        }
    }
    fn add_router(&mut self, s: &Snapshot, id: Uuid) {
        if !self.routers.insert(id) {
            return;
        }
        let ifaces: Vec<Uuid> = s.interfaces(id).map(|p| p.id).collect();
        for p in ifaces {
            self.add_port(s, p);
        }
    }

    /// The resource graph as Karbor shows it on a checkpoint: each protected resource with
    /// the resources it depends on.
    pub fn resource_graph(&self, s: &Snapshot) -> Vec<GraphNode> {
        let mut out = Vec::new();
        for id in &self.networks {
            if let Some(n) = s.networks.get(id) {
                out.push(GraphNode::new(
                    ResourceType::Network,
                    *id,
                    &n.name,
                    Vec::new(),
                ));
            }
        }
        for id in &self.subnets {
            if let Some(x) = s.subnets.get(id) {
                out.push(GraphNode::new(
                    ResourceType::Subnet,
                    *id,
                    &x.name,
                    vec![(ResourceType::Network, x.network_id)],
                ));
            }
        }
        for id in &self.routers {
            if let Some(r) = s.routers.get(id) {
                let deps = s
                    .interfaces(*id)
                    .filter(|p| self.ports.contains(&p.id))
                    .map(|p| (ResourceType::Port, p.id))
                    .collect();
                out.push(GraphNode::new(ResourceType::Router, *id, &r.name, deps));
            }
        }
        for id in &self.ports {
            if let Some(p) = s.ports.get(id) {
                let mut deps: Vec<_> = p
                    .fixed_ips
                    .iter()
                    .map(|f| (ResourceType::Subnet, f.subnet_id))
                    .collect();
                deps.push((ResourceType::Network, p.network_id));
                out.push(GraphNode::new(ResourceType::Port, *id, &p.name, deps));
            }
        }
        out
    }

    pub fn len(&self) -> usize {
        self.networks.len() + self.subnets.len() + self.ports.len() + self.routers.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One node of a checkpoint's resource graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphNode {
    pub id: String,
    #[serde(rename = "type")]
    pub ty: ResourceType,
    pub name: String,
    pub depends_on: Vec<String>,
}

impl GraphNode {
    fn new(ty: ResourceType, id: Uuid, name: &str, deps: Vec<(ResourceType, Uuid)>) -> Self {
        GraphNode {
            id: id.to_string(),
            ty,
            name: name.to_string(),
            depends_on: deps.into_iter().map(|(t, i)| format!("{t}#{i}")).collect(),
        }
    }
}

/// Lowercase hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
