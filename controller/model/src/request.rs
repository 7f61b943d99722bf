//! Typed requests parsed from Neutron JSON bodies, with Neutron's attribute validation: wrong
//! types, unknown attributes, read-only attributes and IPv6 values are refused here, before
//! any operation looks at the topology.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::context::RequestContext;
use crate::error::ModelError;
use crate::types::{parse_addr_or_net, AllocationPool, HostRoute, MacAddr};

/// Neutron's limit on names and descriptions.
const MAX_NAME_LEN: usize = 255;

/// Walks a JSON object, remembering which attributes were read so that the rest can be
/// reported as unrecognized (or as not allowed, for read-only ones).
struct Attrs<'a> {
    map: &'a Map<String, Value>,
    used: BTreeSet<&'a str>,
    method: &'static str,
}

impl<'a> Attrs<'a> {
    fn new(v: &'a Value, resource: &str, method: &'static str) -> Result<Self, ModelError> {
        let map = v.as_object().ok_or_else(|| {
            ModelError::MalformedRequest(format!("The {resource} body must be a JSON object"))
        })?;
        Ok(Attrs {
            map,
            used: BTreeSet::new(),
            method,
        })
    }

    /// The raw value, `None` when absent.
    fn raw(&mut self, name: &'static str) -> Option<&'a Value> {
        let (k, v) = self.map.get_key_value(name)?;
        self.used.insert(k.as_str());
        Some(v)
    }

    fn string(&mut self, name: &'static str, max: usize) -> Result<Option<String>, ModelError> {
        match self.raw(name) {
            None => Ok(None),
            Some(Value::String(s)) if s.len() <= max => Ok(Some(s.clone())),
            Some(Value::String(s)) => Err(ModelError::invalid(
                name,
                format!("'{s}' exceeds maximum length of {max}"),
            )),
            Some(v) => Err(ModelError::invalid(
                name,
                format!("'{v}' is not a valid string"),
            )),
        }
    }

    fn text(&mut self, name: &'static str) -> Result<Option<String>, ModelError> {
        self.string(name, MAX_NAME_LEN)
    }

    fn boolean(&mut self, name: &'static str) -> Result<Option<bool>, ModelError> {
        match self.raw(name) {
            None => Ok(None),
            Some(v) => parse_bool(v).map(Some).ok_or_else(|| {
                ModelError::invalid(name, format!("'{v}' cannot be converted to boolean"))
            }),
        }
    }

    fn uuid(&mut self, name: &'static str) -> Result<Option<Uuid>, ModelError> {
        match self.raw(name) {
            None => Ok(None),
            Some(v) => parse_uuid(name, v).map(Some),
        }
    }

    fn list(&mut self, name: &'static str) -> Result<Option<&'a Vec<Value>>, ModelError> {
        match self.raw(name) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(v) => Err(ModelError::invalid(name, format!("'{v}' is not a list"))),
        }
    }

    /// Reads `tenant_id`/`project_id` (either, or both if equal) and checks who may set it.
    fn project(&mut self, ctx: &RequestContext) -> Result<String, ModelError> {
        let t = self.string("tenant_id", MAX_NAME_LEN)?;
        let p = self.string("project_id", MAX_NAME_LEN)?;
        let requested = match (t, p) {
            (Some(t), Some(p)) if t != p => {
                return Err(ModelError::invalid(
                    "project_id",
                    format!("'{p}' differs from tenant_id '{t}'"),
                ))
            }
            (Some(t), _) => Some(t),
            (None, p) => p,
        };
        match requested {
            Some(p) if p.is_empty() => Err(ModelError::invalid(
                "project_id",
                "'' is not a valid project",
            )),
            Some(p) if p != ctx.project_id && !ctx.is_admin => Err(ModelError::ProjectMismatch),
            Some(p) => Ok(p),
            None => Ok(ctx.project_id.clone()),
        }
    }

    /// The `id` of an object to create. Neutron never accepts one; wyvern lets an admin choose
    /// it so that a restore (checkpoint) or a bottom copy (cascade) keeps the original id. For
    /// anyone else `id` stays unread, and [`Attrs::finish`] refuses it as read-only.
    fn requested_id(&mut self, ctx: &RequestContext) -> Result<Option<Uuid>, ModelError> {
        if ctx.is_admin {
            self.uuid("id")
        } else {
            Ok(None)
        }
    }

    /// Refuses everything not read: read-only attributes by name, the rest as unrecognized.
    fn finish(self, read_only: &[&str]) -> Result<(), ModelError> {
        let mut unknown = Vec::new();
        for k in self.map.keys() {
            if self.used.contains(k.as_str()) {
                continue;
            }
            if read_only.contains(&k.as_str()) {
                return Err(ModelError::AttributeNotAllowed {
                    attr: k.clone(),
                    method: self.method,
                });
            }
            unknown.push(k.as_str());
        }
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(ModelError::UnrecognizedAttribute(unknown.join(", ")))
        }
    }
}

fn parse_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        },
        Value::Number(n) => match n.as_u64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn parse_uuid(attr: &str, v: &Value) -> Result<Uuid, ModelError> {
    v.as_str()
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or_else(|| ModelError::invalid(attr, format!("'{}' is not a valid UUID", display(v))))
}

/// Strings without their JSON quotes, as Neutron prints them in messages.
fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An IPv4 address; IPv6 is refused with its own message.
pub(crate) fn parse_ipv4(attr: &str, v: &Value) -> Result<Ipv4Addr, ModelError> {
    let s = v
        .as_str()
        .ok_or_else(|| ModelError::invalid(attr, format!("'{v}' is not a valid IP address")))?;
    match s.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => Ok(a),
        Ok(IpAddr::V6(_)) => Err(ModelError::Ipv6NotSupported(format!("{attr} {s}"))),
        Err(_) => Err(ModelError::invalid(
            attr,
            format!("'{s}' is not a valid IP address"),
        )),
    }
}

/// A canonical IPv4 CIDR (`10.0.0.0/24`, not `10.0.0.5/24`), as Neutron's `validate_subnet`.
pub(crate) fn parse_cidr(attr: &str, v: &Value) -> Result<Ipv4Net, ModelError> {
    let s = v
        .as_str()
        .ok_or_else(|| ModelError::invalid(attr, format!("'{v}' is not a valid IP subnet")))?;
    let net = match s.parse::<IpNet>() {
        Ok(IpNet::V4(n)) => n,
        Ok(IpNet::V6(_)) => return Err(ModelError::Ipv6NotSupported(format!("{attr} {s}"))),
        Err(_) => {
            if let Ok(IpAddr::V6(_)) = s.parse::<IpAddr>() {
                return Err(ModelError::Ipv6NotSupported(format!("{attr} {s}")));
            }
            return Err(ModelError::invalid(
                attr,
                format!("'{s}' is not a valid IP subnet"),
            ));
        }
    };
    if net.trunc() != net {
        return Err(ModelError::invalid(
            attr,
            format!(
                "'{s}' isn't a recognized IP subnet cidr, '{}' is recommended",
                net.trunc()
            ),
        ));
    }
    Ok(net)
}

fn parse_mac(attr: &str, v: &Value) -> Result<MacAddr, ModelError> {
    let bad = || ModelError::invalid(attr, format!("'{}' is not a valid MAC address", display(v)));
    let m: MacAddr = v.as_str().ok_or_else(bad)?.parse().map_err(|_| bad())?;
    if m.is_zero() || m.is_multicast() {
        return Err(bad());
    }
    Ok(m)
}

fn object<'a>(attr: &str, v: &'a Value) -> Result<&'a Map<String, Value>, ModelError> {
    v.as_object()
        .ok_or_else(|| ModelError::invalid(attr, format!("'{v}' is not a dictionary")))
}

/// Checks that a dictionary inside a list has only the given keys.
fn only_keys(attr: &str, m: &Map<String, Value>, keys: &[&str]) -> Result<(), ModelError> {
    match m.keys().find(|k| !keys.contains(&k.as_str())) {
        Some(k) => Err(ModelError::invalid(
            attr,
            format!("Unrecognized key '{k}' in {attr}"),
        )),
        None => Ok(()),
    }
}

fn routes(attr: &'static str, list: &[Value]) -> Result<Vec<HostRoute>, ModelError> {
    let mut out: Vec<HostRoute> = Vec::with_capacity(list.len());
    for v in list {
        let m = object(attr, v)?;
        only_keys(attr, m, &["destination", "nexthop"])?;
        let dest = m
            .get("destination")
            .ok_or_else(|| ModelError::invalid(attr, "each route needs a destination"))?;
        let hop = m
            .get("nexthop")
            .ok_or_else(|| ModelError::invalid(attr, "each route needs a nexthop"))?;
        let r = HostRoute {
            destination: parse_cidr(attr, dest)?,
            nexthop: parse_ipv4(attr, hop)?,
        };
        if out.contains(&r) {
            return Err(ModelError::invalid(
                attr,
                format!("Duplicate hostroute '{}'", display(v)),
            ));
        }
        out.push(r);
    }
    Ok(out)
}

fn nameservers(list: &[Value]) -> Result<Vec<Ipv4Addr>, ModelError> {
    let mut out = Vec::with_capacity(list.len());
    for v in list {
        let a = parse_ipv4("dns_nameservers", v)?;
        if out.contains(&a) {
            return Err(ModelError::invalid(
                "dns_nameservers",
                format!("Duplicate nameserver '{a}'"),
            ));
        }
        out.push(a);
    }
    Ok(out)
}

fn pools(list: &[Value]) -> Result<Vec<AllocationPool>, ModelError> {
    let attr = "allocation_pools";
    list.iter()
        .map(|v| {
            let m = object(attr, v)?;
            only_keys(attr, m, &["start", "end"])?;
            let start = m
                .get("start")
                .ok_or_else(|| ModelError::invalid(attr, "each pool needs a start"))?;
            let end = m
                .get("end")
                .ok_or_else(|| ModelError::invalid(attr, "each pool needs an end"))?;
            Ok(AllocationPool {
                start: parse_ipv4(attr, start)?,
                end: parse_ipv4(attr, end)?,
            })
        })
        .collect()
}

/// The gateway of a new subnet: Neutron distinguishes "absent" (first host) from `null`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayRequest {
    /// Attribute absent: the first host address of the cidr.
    Default,
    /// `"gateway_ip": null`: no gateway.
    None,
    Addr(Ipv4Addr),
}

fn gateway(v: Option<&Value>) -> Result<GatewayRequest, ModelError> {
    Ok(match v {
        None => GatewayRequest::Default,
        Some(Value::Null) => GatewayRequest::None,
        Some(v) => GatewayRequest::Addr(parse_ipv4("gateway_ip", v)?),
    })
}

/// `POST /v2.0/networks` body.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkCreate {
    /// Chosen by an admin (see `Attrs::requested_id`); else a new UUIDv7.
    pub id: Option<Uuid>,
    pub project_id: String,
    pub name: String,
    pub description: String,
    pub admin_state_up: bool,
    pub shared: bool,
    pub mtu: Option<u32>,
    pub port_security_enabled: bool,
    /// `router:external` (admin only: the operation checks who asks).
    pub router_external: bool,
}

const NETWORK_READ_ONLY: &[&str] = &[
    "id",
    "status",
    "subnets",
    "created_at",
    "updated_at",
    "revision_number",
    "tags",
];

fn mtu(a: &mut Attrs) -> Result<Option<u32>, ModelError> {
    match a.raw("mtu") {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|m| u32::try_from(m).ok())
            .map(Some)
            .ok_or_else(|| ModelError::invalid("mtu", format!("'{v}' is not an integer"))),
    }
}

impl NetworkCreate {
    pub fn from_json(v: &Value, ctx: &RequestContext) -> Result<Self, ModelError> {
        let mut a = Attrs::new(v, "network", "POST")?;
        let r = NetworkCreate {
            id: a.requested_id(ctx)?,
            project_id: a.project(ctx)?,
            name: a.text("name")?.unwrap_or_default(),
            description: a.text("description")?.unwrap_or_default(),
            admin_state_up: a.boolean("admin_state_up")?.unwrap_or(true),
            shared: a.boolean("shared")?.unwrap_or(false),
            mtu: mtu(&mut a)?,
            port_security_enabled: a.boolean("port_security_enabled")?.unwrap_or(true),
            router_external: a.boolean("router:external")?.unwrap_or(false),
        };
        a.finish(NETWORK_READ_ONLY)?;
        Ok(r)
    }
}

/// `PUT /v2.0/networks/{id}` body: only the attributes present change.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NetworkUpdate {
    pub name: Option<String>,
    pub description: Option<String>,
    pub admin_state_up: Option<bool>,
    pub shared: Option<bool>,
    pub mtu: Option<u32>,
    pub port_security_enabled: Option<bool>,
    pub router_external: Option<bool>,
}

impl NetworkUpdate {
    pub fn from_json(v: &Value) -> Result<Self, ModelError> {
        let mut a = Attrs::new(v, "network", "PUT")?;
        let r = NetworkUpdate {
            name: a.text("name")?,
            description: a.text("description")?,
            admin_state_up: a.boolean("admin_state_up")?,
            shared: a.boolean("shared")?,
            mtu: mtu(&mut a)?,
            port_security_enabled: a.boolean("port_security_enabled")?,
            router_external: a.boolean("router:external")?,
        };
        let mut ro = NETWORK_READ_ONLY.to_vec();
        ro.extend(["tenant_id", "project_id"]);
        a.finish(&ro)?;
        Ok(r)
    }
}

/// `POST /v2.0/subnets` body.
#[derive(Debug, Clone, PartialEq)]
pub struct SubnetCreate {
    /// Chosen by an admin (see `Attrs::requested_id`); else a new UUIDv7.
    pub id: Option<Uuid>,
    pub project_id: String,
    pub network_id: Uuid,
    pub name: String,
    pub description: String,
    pub cidr: Ipv4Net,
    pub gateway_ip: GatewayRequest,
    pub enable_dhcp: bool,
    pub dns_nameservers: Vec<Ipv4Addr>,
    /// `None`: the default pools (the cidr's hosts minus the gateway).
    pub allocation_pools: Option<Vec<AllocationPool>>,
    pub host_routes: Vec<HostRoute>,
}

const SUBNET_READ_ONLY: &[&str] = &["id", "created_at", "updated_at", "revision_number", "tags"];

impl SubnetCreate {
    pub fn from_json(v: &Value, ctx: &RequestContext) -> Result<Self, ModelError> {
        let mut a = Attrs::new(v, "subnet", "POST")?;
        match a.raw("ip_version") {
            None => {}
            Some(v) if v.as_u64() == Some(4) || v.as_str() == Some("4") => {}
            Some(v) if v.as_u64() == Some(6) || v.as_str() == Some("6") => {
                return Err(ModelError::Ipv6NotSupported("ip_version 6".into()))
            }
            Some(v) => {
                return Err(ModelError::invalid(
                    "ip_version",
                    format!("'{}' is not in [4, 6]", display(v)),
                ))
            }
        }
        for ipv6_only in ["ipv6_ra_mode", "ipv6_address_mode"] {
            if let Some(v) = a.map.get(ipv6_only) {
                if !v.is_null() {
                    return Err(ModelError::Ipv6NotSupported(ipv6_only.to_string()));
                }
                a.used.insert(ipv6_only);
            }
        }
        if let Some(v) = a.raw("subnetpool_id") {
            if !v.is_null() {
                return Err(ModelError::InvalidInput(
                    "subnet pools are not supported by wyvern yet".into(),
                ));
            }
        }
        let network_id = a
            .uuid("network_id")?
            .ok_or_else(|| ModelError::MissingAttribute("network_id".into()))?;
        let cidr = match a.raw("cidr") {
            Some(v) => parse_cidr("cidr", v)?,
            None => {
                return Err(ModelError::BadRequest {
                    resource: "subnets",
                    msg: "a cidr must be specified in the absence of a subnet pool".into(),
                })
            }
        };
        let r = SubnetCreate {
            id: a.requested_id(ctx)?,
            project_id: a.project(ctx)?,
            network_id,
            name: a.text("name")?.unwrap_or_default(),
            description: a.text("description")?.unwrap_or_default(),
            cidr,
            gateway_ip: gateway(a.raw("gateway_ip"))?,
            enable_dhcp: a.boolean("enable_dhcp")?.unwrap_or(true),
            dns_nameservers: a
                .list("dns_nameservers")?
                .map(|l| nameservers(l))
                .transpose()?
                .unwrap_or_default(),
            allocation_pools: a.list("allocation_pools")?.map(|l| pools(l)).transpose()?,
            host_routes: a
                .list("host_routes")?
                .map(|l| routes("host_routes", l))
                .transpose()?
                .unwrap_or_default(),
        };
        a.finish(SUBNET_READ_ONLY)?;
        Ok(r)
    }
}

/// `PUT /v2.0/subnets/{id}` body.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SubnetUpdate {
    pub name: Option<String>,
    pub description: Option<String>,
    /// `Some(None)` removes the gateway.
    pub gateway_ip: Option<Option<Ipv4Addr>>,
    pub enable_dhcp: Option<bool>,
    pub dns_nameservers: Option<Vec<Ipv4Addr>>,
    pub allocation_pools: Option<Vec<AllocationPool>>,
    pub host_routes: Option<Vec<HostRoute>>,
}

impl SubnetUpdate {
    pub fn from_json(v: &Value) -> Result<Self, ModelError> {
        let mut a = Attrs::new(v, "subnet", "PUT")?;
        let r = SubnetUpdate {
            name: a.text("name")?,
            description: a.text("description")?,
            gateway_ip: match gateway(a.raw("gateway_ip"))? {
                GatewayRequest::Default => None,
                GatewayRequest::None => Some(None),
                GatewayRequest::Addr(ip) => Some(Some(ip)),
            },
            enable_dhcp: a.boolean("enable_dhcp")?,
            dns_nameservers: a
                .list("dns_nameservers")?
                .map(|l| nameservers(l))
                .transpose()?,
            allocation_pools: a.list("allocation_pools")?.map(|l| pools(l)).transpose()?,
            host_routes: a
                .list("host_routes")?
                .map(|l| routes("host_routes", l))
                .transpose()?,
        };
        let mut ro = SUBNET_READ_ONLY.to_vec();
        ro.extend([
            "tenant_id",
            "project_id",
            "network_id",
            "cidr",
            "ip_version",
            "ipv6_ra_mode",
            "ipv6_address_mode",
            "subnetpool_id",
        ]);
        a.finish(&ro)?;
        Ok(r)
    }
}

/// One entry of a port's requested `fixed_ips`: a subnet, an address, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedIpRequest {
    pub subnet_id: Option<Uuid>,
    pub ip_address: Option<Ipv4Addr>,
}

fn fixed_ips(list: &[Value]) -> Result<Vec<FixedIpRequest>, ModelError> {
    let attr = "fixed_ips";
    list.iter()
        .map(|v| {
            let m = object(attr, v)?;
            only_keys(attr, m, &["subnet_id", "ip_address"])?;
            let r = FixedIpRequest {
                subnet_id: m
                    .get("subnet_id")
                    .map(|v| parse_uuid(attr, v))
                    .transpose()?,
                ip_address: m
                    .get("ip_address")
                    .map(|v| parse_ipv4(attr, v))
                    .transpose()?,
            };
            if r.subnet_id.is_none() && r.ip_address.is_none() {
                return Err(ModelError::invalid(
                    attr,
                    "each entry needs a subnet_id or an ip_address",
                ));
            }
            Ok(r)
        })
        .collect()
}

/// An allowed address pair as requested: the MAC defaults to the port's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPairRequest {
    pub ip_address: Ipv4Net,
    pub mac_address: Option<MacAddr>,
}

fn address_pairs(list: &[Value]) -> Result<Vec<AddressPairRequest>, ModelError> {
    let attr = "allowed_address_pairs";
    list.iter()
        .map(|v| {
            let m = object(attr, v)?;
            only_keys(attr, m, &["ip_address", "mac_address"])?;
            let ip = m
                .get("ip_address")
                .ok_or_else(|| ModelError::invalid(attr, "each pair needs an ip_address"))?;
            let ip_s = ip.as_str().unwrap_or_default();
            let ip_address = match parse_addr_or_net(ip_s) {
                Some(n) => n,
                None if ip_s.contains(':') && !ip_s.contains('.') => {
                    return Err(ModelError::Ipv6NotSupported(format!("{attr} {ip_s}")))
                }
                None => {
                    return Err(ModelError::invalid(
                        attr,
                        format!("'{}' is not a valid IP address", display(ip)),
                    ))
                }
            };
            let mac_address = m
                .get("mac_address")
                .map(|v| parse_mac(attr, v))
                .transpose()?;
            Ok(AddressPairRequest {
                ip_address,
                mac_address,
            })
        })
        .collect()
}

fn security_groups(list: &[Value]) -> Result<Vec<Uuid>, ModelError> {
    if list.is_empty() {
        Ok(Vec::new())
    } else {
        Err(ModelError::InvalidInput(
            "security groups are not supported by wyvern yet".into(),
        ))
    }
}

/// `POST /v2.0/ports` body.
#[derive(Debug, Clone, PartialEq)]
pub struct PortCreate {
    /// Chosen by an admin (see `Attrs::requested_id`); else a new UUIDv7.
    pub id: Option<Uuid>,
    pub project_id: String,
    pub network_id: Uuid,
    pub name: String,
    pub description: String,
    pub admin_state_up: bool,
    pub mac_address: Option<MacAddr>,
    /// `None`: one address allocated from the network's first subnet with room.
    pub fixed_ips: Option<Vec<FixedIpRequest>>,
    pub device_id: String,
    pub device_owner: String,
    pub binding_host_id: String,
    /// `None`: the network's setting.
    pub port_security_enabled: Option<bool>,
    pub allowed_address_pairs: Vec<AddressPairRequest>,
}

const PORT_READ_ONLY: &[&str] = &[
    "id",
    "status",
    "created_at",
    "updated_at",
    "revision_number",
    "tags",
    "binding:vif_type",
    "binding:vif_details",
];

/// Binding attributes that clients send with their default value; anything else is refused.
fn binding_defaults(a: &mut Attrs) -> Result<(), ModelError> {
    if let Some(v) = a.raw("binding:vnic_type") {
        if v.as_str() != Some("normal") {
            return Err(ModelError::invalid(
                "binding:vnic_type",
                format!("'{}' is not supported", display(v)),
            ));
        }
    }
    if let Some(v) = a.raw("binding:profile") {
        if !(v.is_null() || v.as_object().is_some_and(|m| m.is_empty())) {
            return Err(ModelError::invalid(
                "binding:profile",
                "binding profiles are not supported",
            ));
        }
    }
    Ok(())
}

impl PortCreate {
    pub fn from_json(v: &Value, ctx: &RequestContext) -> Result<Self, ModelError> {
        let mut a = Attrs::new(v, "port", "POST")?;
        let network_id = a
            .uuid("network_id")?
            .ok_or_else(|| ModelError::MissingAttribute("network_id".into()))?;
        let r = PortCreate {
            id: a.requested_id(ctx)?,
            project_id: a.project(ctx)?,
            network_id,
            name: a.text("name")?.unwrap_or_default(),
            description: a.text("description")?.unwrap_or_default(),
            admin_state_up: a.boolean("admin_state_up")?.unwrap_or(true),
            mac_address: a
                .raw("mac_address")
                .map(|v| parse_mac("mac_address", v))
                .transpose()?,
            fixed_ips: a.list("fixed_ips")?.map(|l| fixed_ips(l)).transpose()?,
            device_id: a.text("device_id")?.unwrap_or_default(),
            device_owner: a.text("device_owner")?.unwrap_or_default(),
            binding_host_id: a.text("binding:host_id")?.unwrap_or_default(),
            port_security_enabled: a.boolean("port_security_enabled")?,
            allowed_address_pairs: a
                .list("allowed_address_pairs")?
                .map(|l| address_pairs(l))
                .transpose()?
                .unwrap_or_default(),
        };
        a.list("security_groups")?
            .map(|l| security_groups(l))
            .transpose()?;
        binding_defaults(&mut a)?;
        a.finish(PORT_READ_ONLY)?;
        Ok(r)
    }
}

/// `PUT /v2.0/ports/{id}` body.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PortUpdate {
    pub name: Option<String>,
    pub description: Option<String>,
    pub admin_state_up: Option<bool>,
    pub mac_address: Option<MacAddr>,
    pub fixed_ips: Option<Vec<FixedIpRequest>>,
    pub device_id: Option<String>,
    pub device_owner: Option<String>,
    pub binding_host_id: Option<String>,
    pub port_security_enabled: Option<bool>,
    pub allowed_address_pairs: Option<Vec<AddressPairRequest>>,
}

impl PortUpdate {
    pub fn from_json(v: &Value) -> Result<Self, ModelError> {
        let mut a = Attrs::new(v, "port", "PUT")?;
        let r = PortUpdate {
            name: a.text("name")?,
            description: a.text("description")?,
            admin_state_up: a.boolean("admin_state_up")?,
            mac_address: a
                .raw("mac_address")
                .map(|v| parse_mac("mac_address", v))
                .transpose()?,
            fixed_ips: a.list("fixed_ips")?.map(|l| fixed_ips(l)).transpose()?,
            device_id: a.text("device_id")?,
            device_owner: a.text("device_owner")?,
            binding_host_id: a.text("binding:host_id")?,
            port_security_enabled: a.boolean("port_security_enabled")?,
            allowed_address_pairs: a
                .list("allowed_address_pairs")?
                .map(|l| address_pairs(l))
                .transpose()?,
        };
        a.list("security_groups")?
            .map(|l| security_groups(l))
            .transpose()?;
        binding_defaults(&mut a)?;
        let mut ro = PORT_READ_ONLY.to_vec();
        ro.extend(["tenant_id", "project_id", "network_id"]);
        a.finish(&ro)?;
        Ok(r)
    }
}

/// `POST /v2.0/routers` body.
#[derive(Debug, Clone, PartialEq)]
pub struct RouterCreate {
    /// Chosen by an admin (see `Attrs::requested_id`); else a new UUIDv7.
    pub id: Option<Uuid>,
    pub project_id: String,
    pub name: String,
    pub description: String,
    pub admin_state_up: bool,
    /// The network of `external_gateway_info`, if one was asked for.
    pub external_gateway: Option<Uuid>,
}

const ROUTER_READ_ONLY: &[&str] = &[
    "id",
    "status",
    "created_at",
    "updated_at",
    "revision_number",
    "tags",
];

/// `external_gateway_info`: `None` when absent, null or `{}` (no gateway), else the external
/// network asked for. The operation looks that network up first (404 before 400, as
/// Neutron), then refuses the gateway itself: wyvern does not attach routers to external
/// networks yet.
fn external_gateway(a: &mut Attrs) -> Result<Option<Uuid>, ModelError> {
    let attr = "external_gateway_info";
    match a.raw(attr) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let m = object(attr, v)?;
            if m.is_empty() {
                return Ok(None);
            }
            only_keys(
                attr,
                m,
                &["network_id", "enable_snat", "external_fixed_ips"],
            )?;
            let net = m
                .get("network_id")
                .ok_or_else(|| ModelError::invalid(attr, "a network_id is required"))?;
            parse_uuid(attr, net).map(Some)
        }
    }
}

impl RouterCreate {
    pub fn from_json(v: &Value, ctx: &RequestContext) -> Result<Self, ModelError> {
        let mut a = Attrs::new(v, "router", "POST")?;
        let r = RouterCreate {
            id: a.requested_id(ctx)?,
            project_id: a.project(ctx)?,
            name: a.text("name")?.unwrap_or_default(),
            description: a.text("description")?.unwrap_or_default(),
            admin_state_up: a.boolean("admin_state_up")?.unwrap_or(true),
            external_gateway: external_gateway(&mut a)?,
        };
        let mut ro = ROUTER_READ_ONLY.to_vec();
        ro.push("routes");
        a.finish(&ro)?;
        Ok(r)
    }
}

/// `PUT /v2.0/routers/{id}` body; `routes` replaces the whole list, as in Neutron.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RouterUpdate {
    pub name: Option<String>,
    pub description: Option<String>,
    pub admin_state_up: Option<bool>,
    pub routes: Option<Vec<HostRoute>>,
    /// The network of `external_gateway_info`, if one was asked for.
    pub external_gateway: Option<Uuid>,
}

impl RouterUpdate {
    pub fn from_json(v: &Value) -> Result<Self, ModelError> {
        let mut a = Attrs::new(v, "router", "PUT")?;
        let r = RouterUpdate {
            name: a.text("name")?,
            description: a.text("description")?,
            admin_state_up: a.boolean("admin_state_up")?,
            routes: match a.raw("routes") {
                None => None,
                Some(Value::Null) => Some(Vec::new()),
                Some(Value::Array(l)) => Some(routes("routes", l)?),
                Some(v) => {
                    return Err(ModelError::invalid(
                        "routes",
                        format!("'{v}' is not a list"),
                    ))
                }
            },
            external_gateway: external_gateway(&mut a)?,
        };
        let mut ro = ROUTER_READ_ONLY.to_vec();
        ro.extend(["tenant_id", "project_id"]);
        a.finish(&ro)?;
        Ok(r)
    }
}

/// `PUT /v2.0/routers/{id}/add_router_interface` (and remove) body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterfaceRequest {
    Subnet(Uuid),
    Port(Uuid),
}

impl InterfaceRequest {
    pub fn from_json(v: &Value) -> Result<Self, ModelError> {
        let bad = |msg: &str| ModelError::BadRequest {
            resource: "router",
            msg: msg.to_string(),
        };
        let m = v
            .as_object()
            .ok_or_else(|| bad("the body must be a JSON object"))?;
        if let Some(k) = m.keys().find(|k| *k != "subnet_id" && *k != "port_id") {
            return Err(bad(&format!("Unrecognized attribute '{k}'")));
        }
        let subnet = m
            .get("subnet_id")
            .map(|v| parse_uuid("subnet_id", v))
            .transpose()?;
        let port = m
            .get("port_id")
            .map(|v| parse_uuid("port_id", v))
            .transpose()?;
        match (subnet, port) {
            (Some(_), Some(_)) => Err(bad("Cannot specify both subnet-id and port-id")),
            (Some(s), None) => Ok(InterfaceRequest::Subnet(s)),
            (None, Some(p)) => Ok(InterfaceRequest::Port(p)),
            (None, None) => Err(bad("Either subnet_id or port_id must be specified")),
        }
    }
}
