//! The operations of the Neutron API on a [`Topology`]: each one checks visibility and
//! validity against the current topology and returns the [`Change`] it would make, without
//! mutating anything. The caller applies the change (and persists it).
//!
//! Visibility: objects of another project are reported as not found (404) to non-admins,
//! exactly as Neutron does; shared networks (and their subnets) are visible to everyone but
//! only their owner or an admin may change them (403). External networks (`router:external`)
//! are visible to everyone too, but their subnets are not (Neutron without
//! `subnet-external-network`) and only their owner or an admin may put ports on them.

use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use serde::Serialize;
use uuid::Uuid;

use crate::context::RequestContext;
use crate::error::ModelError;
use crate::request::*;
use crate::topology::{Change, Object, Topology};
use crate::types::*;

/// How many random MACs to try before giving up (Neutron's `mac_generation_retries`).
const MAC_RETRIES: usize = 16;

/// The answer to add/remove_router_interface, in Neutron's shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InterfaceInfo {
    pub id: Uuid,
    pub tenant_id: String,
    pub project_id: String,
    pub port_id: Uuid,
    pub subnet_id: Uuid,
    pub subnet_ids: Vec<Uuid>,
    pub network_id: Uuid,
}

/// The id of a new object: a version 7 UUID (random, but ordered by creation time), so that
/// new objects are appended to the store's B-tree and to the topology's maps instead of
/// landing on a random page each: with random v4 ids every object of a group commit
/// dirtied its own 4 KiB leaf page. Neutron clients treat ids as opaque.
fn new_id() -> Uuid {
    Uuid::now_v7()
}

/// The id of an object to create: the admin's requested one if no object has it, else new.
fn fresh_id(
    requested: Option<Uuid>,
    kind: &'static str,
    taken: impl Fn(Uuid) -> bool,
) -> Result<Uuid, ModelError> {
    match requested {
        Some(id) if taken(id) => Err(ModelError::IdInUse { kind, id }),
        Some(id) => Ok(id),
        None => Ok(new_id()),
    }
}

fn parse_id(id: &str) -> Option<Uuid> {
    Uuid::parse_str(id).ok()
}

/// The usable host addresses of a cidr (network and broadcast excluded; prefix <= 30).
fn hosts(cidr: Ipv4Net) -> (u32, u32) {
    (
        u32::from(cidr.network()) + 1,
        u32::from(cidr.broadcast()) - 1,
    )
}

fn is_host_of(cidr: Ipv4Net, ip: Ipv4Addr) -> bool {
    let (first, last) = hosts(cidr);
    (first..=last).contains(&u32::from(ip))
}

/// Neutron's default pools: the whole host range minus the gateway.
pub fn default_pools(cidr: Ipv4Net, gateway: Option<Ipv4Addr>) -> Vec<AllocationPool> {
    let (first, last) = hosts(cidr);
    let range = |a: u32, b: u32| AllocationPool {
        start: Ipv4Addr::from(a),
        end: Ipv4Addr::from(b),
    };
    match gateway.map(u32::from) {
        Some(g) if (first..=last).contains(&g) => {
            let mut v = Vec::new();
            if g > first {
                v.push(range(first, g - 1));
            }
            if g < last {
                v.push(range(g + 1, last));
            }
            v
        }
        _ => vec![range(first, last)],
    }
}

/// Pools must be well-formed, inside the cidr's hosts, disjoint, and avoid the gateway.
fn validate_pools(
    cidr: Ipv4Net,
    pools: &[AllocationPool],
    gateway: Option<Ipv4Addr>,
) -> Result<(), ModelError> {
    for p in pools {
        if p.start > p.end {
            return Err(ModelError::InvalidAllocationPool(*p));
        }
        if !is_host_of(cidr, p.start) || !is_host_of(cidr, p.end) {
            return Err(ModelError::OutOfBoundsAllocationPool { pool: *p, cidr });
        }
    }
    let mut sorted = pools.to_vec();
    sorted.sort_by_key(|p| p.start);
    for w in sorted.windows(2) {
        if w[0].overlaps(&w[1]) {
            return Err(ModelError::OverlappingAllocationPools {
                a: w[0],
                b: w[1],
                cidr,
            });
        }
    }
    check_gateway_outside_pools(gateway, pools)
}

fn check_gateway_outside_pools(
    gateway: Option<Ipv4Addr>,
    pools: &[AllocationPool],
) -> Result<(), ModelError> {
    if let Some(g) = gateway {
        if let Some(p) = pools.iter().find(|p| p.contains(g)) {
            return Err(ModelError::GatewayConflictWithAllocationPools { ip: g, pool: *p });
        }
    }
    Ok(())
}

fn validate_gateway(cidr: Ipv4Net, gw: Ipv4Addr) -> Result<(), ModelError> {
    if !is_host_of(cidr, gw) {
        return Err(ModelError::InvalidInput(format!(
            "Gateway ip {gw} is not a valid host address of subnet {cidr}"
        )));
    }
    Ok(())
}

impl Topology {
    // ---- visibility ----

    /// A network the caller may see (own, shared, external, or admin); 404 otherwise.
    pub fn visible_network(
        &self,
        ctx: &RequestContext,
        id: &str,
    ) -> Result<&Arc<Network>, ModelError> {
        parse_id(id)
            .and_then(|u| self.networks.get(&u))
            .filter(|n| n.shared || n.router_external || ctx.owns(&n.project_id))
            .ok_or_else(|| ModelError::NetworkNotFound(id.to_string()))
    }

    pub fn visible_subnet(
        &self,
        ctx: &RequestContext,
        id: &str,
    ) -> Result<&Arc<Subnet>, ModelError> {
        parse_id(id)
            .and_then(|u| self.subnets.get(&u))
            .filter(|s| {
                ctx.owns(&s.project_id)
                    || self.networks.get(&s.network_id).is_some_and(|n| n.shared)
            })
            .ok_or_else(|| ModelError::SubnetNotFound(id.to_string()))
    }

    pub fn visible_port(&self, ctx: &RequestContext, id: &str) -> Result<&Arc<Port>, ModelError> {
        parse_id(id)
            .and_then(|u| self.ports.get(&u))
            .filter(|p| ctx.owns(&p.project_id))
            .ok_or_else(|| ModelError::PortNotFound(id.to_string()))
    }

    pub fn visible_router(
        &self,
        ctx: &RequestContext,
        id: &str,
    ) -> Result<&Arc<Router>, ModelError> {
        parse_id(id)
            .and_then(|u| self.routers.get(&u))
            .filter(|r| ctx.owns(&r.project_id))
            .ok_or_else(|| ModelError::RouterNotFound(id.to_string()))
    }

    /// Networks the caller may see, in id order.
    pub fn visible_networks<'a>(
        &'a self,
        ctx: &'a RequestContext,
    ) -> impl Iterator<Item = &'a Arc<Network>> + 'a {
        self.networks
            .values()
            .filter(move |n| n.shared || n.router_external || ctx.owns(&n.project_id))
    }

    pub fn visible_subnets<'a>(
        &'a self,
        ctx: &'a RequestContext,
    ) -> impl Iterator<Item = &'a Arc<Subnet>> + 'a {
        self.subnets.values().filter(move |s| {
            ctx.owns(&s.project_id) || self.networks.get(&s.network_id).is_some_and(|n| n.shared)
        })
    }

    pub fn visible_ports<'a>(
        &'a self,
        ctx: &'a RequestContext,
    ) -> impl Iterator<Item = &'a Arc<Port>> + 'a {
        self.ports.values().filter(move |p| ctx.owns(&p.project_id))
    }

    pub fn visible_routers<'a>(
        &'a self,
        ctx: &'a RequestContext,
    ) -> impl Iterator<Item = &'a Arc<Router>> + 'a {
        self.routers
            .values()
            .filter(move |r| ctx.owns(&r.project_id))
    }

    pub(crate) fn writable_network(
        &self,
        ctx: &RequestContext,
        id: &str,
        action: &str,
    ) -> Result<&Arc<Network>, ModelError> {
        let n = self.visible_network(ctx, id)?;
        if !ctx.owns(&n.project_id) {
            return Err(ModelError::PolicyNotAuthorized(action.to_string()));
        }
        ctx.check_write(action)?;
        Ok(n)
    }

    pub(crate) fn writable_subnet(
        &self,
        ctx: &RequestContext,
        id: &str,
        action: &str,
    ) -> Result<&Arc<Subnet>, ModelError> {
        let s = self.visible_subnet(ctx, id)?;
        if !ctx.owns(&s.project_id) {
            return Err(ModelError::PolicyNotAuthorized(action.to_string()));
        }
        ctx.check_write(action)?;
        Ok(s)
    }

    // ---- networks ----

    pub fn create_network(
        &self,
        ctx: &RequestContext,
        req: NetworkCreate,
    ) -> Result<(Change, Arc<Network>), ModelError> {
        ctx.check_write("create_network")?;
        if req.shared && !ctx.is_admin {
            return Err(ModelError::PolicyNotAuthorized(
                "create_network:shared".into(),
            ));
        }
        if req.router_external && !ctx.is_admin {
            return Err(ModelError::PolicyNotAuthorized(
                "create_network:router:external".into(),
            ));
        }
        let mtu = self.check_mtu(req.mtu)?.unwrap_or(self.cfg.max_mtu);
        let id = fresh_id(req.id, "network", |id| self.networks.contains_key(&id))?;
        let n = Arc::new(Network {
            id,
            name: req.name,
            tenant_id: req.project_id.clone(),
            project_id: req.project_id,
            admin_state_up: req.admin_state_up,
            status: "ACTIVE".into(),
            shared: req.shared,
            mtu,
            port_security_enabled: req.port_security_enabled,
            router_external: req.router_external,
            availability_zone_hints: EmptyList,
            availability_zones: EmptyList,
            ipv4_address_scope: Null,
            ipv6_address_scope: Null,
            l2_adjacency: True,
            description: req.description,
            created_at: ctx.now,
            updated_at: ctx.now,
            revision_number: 1,
            tags: Vec::new(),
        });
        let mut c = Change::default();
        c.put(None, Object::Network(n.clone()));
        Ok((c, n))
    }

    fn check_mtu(&self, mtu: Option<u32>) -> Result<Option<u32>, ModelError> {
        match mtu {
            Some(m) if m < 68 => Err(ModelError::InvalidInput(format!(
                "MTU {m} is below the IPv4 minimum of 68"
            ))),
            Some(m) if m > self.cfg.max_mtu => Err(ModelError::InvalidInput(format!(
                "Requested MTU is too big, maximum is {}",
                self.cfg.max_mtu
            ))),
            m => Ok(m),
        }
    }

    pub fn update_network(
        &self,
        ctx: &RequestContext,
        id: &str,
        req: NetworkUpdate,
    ) -> Result<(Change, Arc<Network>), ModelError> {
        let old = self.writable_network(ctx, id, "update_network")?;
        if req.shared.is_some_and(|s| s != old.shared) && !ctx.is_admin {
            return Err(ModelError::PolicyNotAuthorized(
                "update_network:shared".into(),
            ));
        }
        if req
            .router_external
            .is_some_and(|e| e != old.router_external)
            && !ctx.is_admin
        {
            return Err(ModelError::PolicyNotAuthorized(
                "update_network:router:external".into(),
            ));
        }
        if req.shared == Some(false) && old.shared {
            let foreign = self
                .network_ports(&old.id)
                .any(|p| p.project_id != old.project_id);
            if foreign {
                return Err(ModelError::InvalidInput(format!(
                    "Unable to reconfigure sharing settings for network {}. Multiple tenants are using it",
                    old.id
                )));
            }
        }
        let mut n = (**old).clone();
        if let Some(v) = req.name {
            n.name = v;
        }
        if let Some(v) = req.description {
            n.description = v;
        }
        if let Some(v) = req.admin_state_up {
            n.admin_state_up = v;
        }
        if let Some(v) = req.shared {
            n.shared = v;
        }
        if let Some(v) = req.router_external {
            n.router_external = v;
        }
        if let Some(v) = self.check_mtu(req.mtu)? {
            n.mtu = v;
        }
        if let Some(v) = req.port_security_enabled {
            n.port_security_enabled = v;
        }
        n.updated_at = ctx.now;
        n.revision_number += 1;
        let n = Arc::new(n);
        let mut c = Change::default();
        c.put(
            Some(Object::Network(old.clone())),
            Object::Network(n.clone()),
        );
        Ok((c, n))
    }

    /// Deletes a network and its subnets; refused while ports other than DHCP ports use it.
    pub fn delete_network(&self, ctx: &RequestContext, id: &str) -> Result<Change, ModelError> {
        let n = self.writable_network(ctx, id, "delete_network")?;
        let mut c = Change::default();
        for p in self.network_ports(&n.id) {
            if p.device_owner != DEVICE_OWNER_DHCP {
                return Err(ModelError::NetworkInUse(n.id));
            }
            c.delete(Object::Port(p.clone()));
        }
        for s in self.network_subnets(&n.id) {
            c.delete(Object::Subnet(s.clone()));
        }
        c.delete(Object::Network(n.clone()));
        Ok(c)
    }

    // ---- subnets ----

    pub fn create_subnet(
        &self,
        ctx: &RequestContext,
        req: SubnetCreate,
    ) -> Result<(Change, Arc<Subnet>), ModelError> {
        let net = self.visible_network(ctx, &req.network_id.to_string())?;
        ctx.check_write("create_subnet")?;
        if !ctx.owns(&net.project_id) {
            return Err(ModelError::PolicyNotAuthorized("create_subnet".into()));
        }
        let cidr = req.cidr;
        if cidr.prefix_len() > 30 {
            return Err(ModelError::InvalidInput(format!(
                "cidr {cidr} leaves no usable host addresses; the longest supported prefix is /30"
            )));
        }
        if let Some(other) = self
            .network_subnets(&net.id)
            .find(|s| s.cidr.contains(&cidr.network()) || cidr.contains(&s.cidr.network()))
        {
            return Err(ModelError::InvalidInput(format!(
                "Requested subnet with cidr: {cidr} for network: {} overlaps with another subnet {}",
                net.id, other.id
            )));
        }
        let gateway_ip = match req.gateway_ip {
            GatewayRequest::Default => Some(Ipv4Addr::from(hosts(cidr).0)),
            GatewayRequest::None => None,
            GatewayRequest::Addr(g) => {
                validate_gateway(cidr, g)?;
                Some(g)
            }
        };
        let allocation_pools = match req.allocation_pools {
            Some(p) => {
                validate_pools(cidr, &p, gateway_ip)?;
                p
            }
            None => default_pools(cidr, gateway_ip),
        };
        let id = fresh_id(req.id, "subnet", |id| self.subnets.contains_key(&id))?;
        self.check_subnet_limits(id, &req.dns_nameservers, &req.host_routes)?;
        let s = Arc::new(Subnet {
            id,
            name: req.name,
            tenant_id: req.project_id.clone(),
            project_id: req.project_id,
            network_id: net.id,
            ip_version: Ipv4Version,
            cidr,
            gateway_ip,
            enable_dhcp: req.enable_dhcp,
            dns_nameservers: req.dns_nameservers,
            allocation_pools,
            host_routes: req.host_routes,
            ipv6_ra_mode: Null,
            ipv6_address_mode: Null,
            subnetpool_id: Null,
            service_types: EmptyList,
            description: req.description,
            created_at: ctx.now,
            updated_at: ctx.now,
            revision_number: 1,
            tags: Vec::new(),
        });
        let mut c = Change::default();
        c.put(None, Object::Subnet(s.clone()));
        Ok((c, s))
    }

    fn check_subnet_limits(
        &self,
        id: Uuid,
        dns: &[Ipv4Addr],
        routes: &[HostRoute],
    ) -> Result<(), ModelError> {
        if dns.len() > self.cfg.max_dns_nameservers {
            return Err(ModelError::DnsNameServersExhausted {
                subnet_id: id,
                quota: self.cfg.max_dns_nameservers,
            });
        }
        if routes.len() > self.cfg.max_subnet_host_routes {
            return Err(ModelError::HostRoutesExhausted {
                subnet_id: id,
                quota: self.cfg.max_subnet_host_routes,
            });
        }
        Ok(())
    }

    pub fn update_subnet(
        &self,
        ctx: &RequestContext,
        id: &str,
        req: SubnetUpdate,
    ) -> Result<(Change, Arc<Subnet>), ModelError> {
        let old = self.writable_subnet(ctx, id, "update_subnet")?;
        let mut s = (**old).clone();
        // Pure validation first (address, pools, gateway outside pools), then what is in use.
        if let Some(Some(g)) = req.gateway_ip {
            validate_gateway(s.cidr, g)?;
        }
        if let Some(g) = req.gateway_ip {
            s.gateway_ip = g;
        }
        match req.allocation_pools {
            Some(p) => {
                validate_pools(s.cidr, &p, s.gateway_ip)?;
                s.allocation_pools = p;
            }
            None => check_gateway_outside_pools(s.gateway_ip, &s.allocation_pools)?,
        }
        if s.gateway_ip != old.gateway_ip {
            if let Some(g) = s.gateway_ip {
                if let Some(port_id) = self.ip_owner(&s.id, g) {
                    return Err(ModelError::GatewayIpInUse { ip: g, port_id });
                }
            }
            // The router interface holding the old gateway would be left with a stale
            // address: Neutron refuses this too.
            if let Some(old_gw) = old.gateway_ip {
                if let Some(port_id) = self.ip_owner(&s.id, old_gw) {
                    if self
                        .ports
                        .get(&port_id)
                        .is_some_and(|p| p.is_router_interface())
                    {
                        return Err(ModelError::GatewayIpInUse {
                            ip: old_gw,
                            port_id,
                        });
                    }
                }
            }
        }
        if let Some(v) = req.name {
            s.name = v;
        }
        if let Some(v) = req.description {
            s.description = v;
        }
        if let Some(v) = req.enable_dhcp {
            s.enable_dhcp = v;
        }
        if let Some(v) = req.dns_nameservers {
            s.dns_nameservers = v;
        }
        if let Some(v) = req.host_routes {
            s.host_routes = v;
        }
        self.check_subnet_limits(s.id, &s.dns_nameservers, &s.host_routes)?;
        s.updated_at = ctx.now;
        s.revision_number += 1;
        let s = Arc::new(s);
        let mut c = Change::default();
        c.put(Some(Object::Subnet(old.clone())), Object::Subnet(s.clone()));
        Ok((c, s))
    }

    /// Refused while any port (router interfaces included) has an address on the subnet.
    pub fn delete_subnet(&self, ctx: &RequestContext, id: &str) -> Result<Change, ModelError> {
        let s = self.writable_subnet(ctx, id, "delete_subnet")?;
        if self.allocs.get(&s.id).is_some_and(|a| !a.used.is_empty()) {
            return Err(ModelError::SubnetInUse(s.id));
        }
        let mut c = Change::default();
        c.delete(Object::Subnet(s.clone()));
        Ok(c)
    }

    // ---- ports ----

    fn generate_mac(&self, network_id: Uuid) -> Result<MacAddr, ModelError> {
        let p = self.cfg.mac_prefix.0;
        for _ in 0..MAC_RETRIES {
            let r: [u8; 3] = rand::random();
            let mac = MacAddr([p[0], p[1], p[2], r[0], r[1], r[2]]);
            if !self.macs.contains_key(&(network_id, mac)) {
                return Ok(mac);
            }
        }
        Err(ModelError::MacAddressGenerationFailure(network_id))
    }

    fn check_mac(
        &self,
        network_id: Uuid,
        mac: MacAddr,
        port_id: Option<Uuid>,
    ) -> Result<(), ModelError> {
        match self.macs.get(&(network_id, mac)) {
            Some(owner) if Some(*owner) != port_id => {
                Err(ModelError::MacAddressInUse { network_id, mac })
            }
            _ => Ok(()),
        }
    }

    /// The subnets of a network in the order Neutron tries them for automatic allocation.
    fn allocation_order(&self, network_id: &Uuid) -> Vec<&Arc<Subnet>> {
        let mut v: Vec<&Arc<Subnet>> = self.network_subnets(network_id).collect();
        v.sort_by_key(|s| (s.created_at, s.id));
        v
    }

    fn allocate_on(&self, s: &Subnet, taken: &[Ipv4Addr]) -> Option<Ipv4Addr> {
        match self.allocs.get(&s.id) {
            Some(a) => a.find_free(&s.allocation_pools, taken),
            None => crate::topology::SubnetAlloc::default().find_free(&s.allocation_pools, taken),
        }
    }

    /// Turns requested fixed IPs into addresses, Neutron's way. `port` is the port being
    /// updated (its own addresses are not conflicts, and an entry naming only a subnet keeps
    /// the address it already has there).
    fn resolve_fixed_ips(
        &self,
        network_id: Uuid,
        requested: Option<&[FixedIpRequest]>,
        port: Option<&Port>,
        device_owner: &str,
    ) -> Result<Vec<FixedIp>, ModelError> {
        let port_id = port.map(|p| p.id);
        let Some(requested) = requested else {
            // No request: one address from the first subnet with room.
            let subnets = self.allocation_order(&network_id);
            if subnets.is_empty() {
                return Ok(Vec::new());
            }
            for s in subnets {
                if let Some(ip) = self.allocate_on(s, &[]) {
                    return Ok(vec![FixedIp {
                        subnet_id: s.id,
                        ip_address: ip,
                    }]);
                }
            }
            return Err(ModelError::IpAddressGenerationFailure(network_id));
        };
        let mut out: Vec<FixedIp> = Vec::with_capacity(requested.len());
        // Explicit addresses first, so that automatic ones never take an address requested
        // later in the same list.
        let mut explicit: Vec<Ipv4Addr> = requested.iter().filter_map(|r| r.ip_address).collect();
        explicit.sort();
        if let Some(w) = explicit.windows(2).find(|w| w[0] == w[1]) {
            return Err(ModelError::InvalidInput(format!(
                "Duplicate IP address '{}'",
                w[0]
            )));
        }
        let mut pending_auto = Vec::new();
        for r in requested {
            let subnet = match r.subnet_id {
                Some(sid) => {
                    let s = self
                        .subnets
                        .get(&sid)
                        .ok_or_else(|| ModelError::SubnetNotFound(sid.to_string()))?;
                    if s.network_id != network_id {
                        return Err(ModelError::InvalidInput(format!(
                            "Failed to create port on network {network_id}, because fixed_ips included invalid subnet {sid}"
                        )));
                    }
                    s
                }
                None => {
                    // ip_address is present (parsing refuses entries with neither).
                    let ip = r.ip_address.unwrap_or(Ipv4Addr::UNSPECIFIED);
                    self.network_subnets(&network_id)
                        .find(|s| s.cidr.contains(&ip))
                        .ok_or(ModelError::InvalidIpForNetwork(ip))?
                }
            };
            match r.ip_address {
                Some(ip) => {
                    if !is_host_of(subnet.cidr, ip) {
                        return Err(if r.subnet_id.is_some() {
                            ModelError::InvalidIpForSubnet(ip)
                        } else {
                            ModelError::InvalidIpForNetwork(ip)
                        });
                    }
                    if let Some(owner) = self.ip_owner(&subnet.id, ip) {
                        if Some(owner) != port_id {
                            return Err(ModelError::IpAddressAlreadyAllocated {
                                ip,
                                subnet_id: subnet.id,
                            });
                        }
                    } else if subnet.gateway_ip == Some(ip)
                        && device_owner != DEVICE_OWNER_ROUTER_INTERFACE
                    {
                        return Err(ModelError::InvalidInput(format!(
                            "IP address {ip} is the gateway of subnet {} and is reserved for a router interface",
                            subnet.id
                        )));
                    }
                    out.push(FixedIp {
                        subnet_id: subnet.id,
                        ip_address: ip,
                    });
                }
                None => pending_auto.push(subnet.clone()),
            }
        }
        let mut taken: Vec<Ipv4Addr> = explicit;
        for s in pending_auto {
            // On update, a subnet-only entry keeps the address the port already has there.
            let kept = port.and_then(|p| {
                p.fixed_ips.iter().find(|f| {
                    f.subnet_id == s.id && !out.iter().any(|o| o.ip_address == f.ip_address)
                })
            });
            let ip = match kept {
                Some(f) => f.ip_address,
                None => self
                    .allocate_on(&s, &taken)
                    .ok_or(ModelError::IpAddressGenerationFailure(network_id))?,
            };
            taken.push(ip);
            out.push(FixedIp {
                subnet_id: s.id,
                ip_address: ip,
            });
        }
        Ok(out)
    }

    fn address_pairs(reqs: Vec<AddressPairRequest>, mac: MacAddr) -> Vec<AddressPair> {
        reqs.into_iter()
            .map(|r| AddressPair {
                ip_address: r.ip_address,
                mac_address: r.mac_address.unwrap_or(mac),
            })
            .collect()
    }

    pub fn create_port(
        &self,
        ctx: &RequestContext,
        req: PortCreate,
    ) -> Result<(Change, Arc<Port>), ModelError> {
        let net = self.visible_network(ctx, &req.network_id.to_string())?;
        ctx.check_write("create_port")?;
        // Visible is not usable: an external network that is not shared takes ports only from
        // its owner (Neutron's network ownership check: 403).
        if !net.shared && !ctx.owns(&net.project_id) {
            return Err(ModelError::PolicyNotAuthorized("create_port".into()));
        }
        let mac = match req.mac_address {
            Some(m) => {
                self.check_mac(net.id, m, None)?;
                m
            }
            None => self.generate_mac(net.id)?,
        };
        let fixed_ips =
            self.resolve_fixed_ips(net.id, req.fixed_ips.as_deref(), None, &req.device_owner)?;
        let id = fresh_id(req.id, "port", |id| self.ports.contains_key(&id))?;
        let p = Arc::new(Port {
            id,
            name: req.name,
            tenant_id: req.project_id.clone(),
            project_id: req.project_id,
            network_id: net.id,
            mac_address: mac,
            admin_state_up: req.admin_state_up,
            status: "DOWN".into(),
            fixed_ips,
            device_id: req.device_id,
            device_owner: req.device_owner,
            binding_host_id: req.binding_host_id,
            binding_vnic_type: VnicNormal,
            binding_profile: EmptyObject,
            binding_vif_details: EmptyObject,
            binding_vif_type: "unbound".into(),
            port_security_enabled: req
                .port_security_enabled
                .unwrap_or(net.port_security_enabled),
            security_groups: Vec::new(),
            allowed_address_pairs: Self::address_pairs(req.allowed_address_pairs, mac),
            description: req.description,
            created_at: ctx.now,
            updated_at: ctx.now,
            revision_number: 1,
            tags: Vec::new(),
        });
        let mut c = Change::default();
        c.put(None, Object::Port(p.clone()));
        Ok((c, p))
    }

    pub fn update_port(
        &self,
        ctx: &RequestContext,
        id: &str,
        req: PortUpdate,
    ) -> Result<(Change, Arc<Port>), ModelError> {
        let old = self.visible_port(ctx, id)?;
        ctx.check_write("update_port")?;
        let mut p = (**old).clone();
        if let Some(m) = req.mac_address {
            self.check_mac(p.network_id, m, Some(p.id))?;
            p.mac_address = m;
        }
        if let Some(v) = req.device_owner {
            p.device_owner = v;
        }
        if let Some(v) = req.device_id {
            p.device_id = v;
        }
        if old.is_router_interface() && (!p.is_router_interface() || p.device_id != old.device_id) {
            return Err(ModelError::L3PortInUse {
                port_id: p.id,
                owner: old.device_owner.clone(),
            });
        }
        if let Some(f) = req.fixed_ips {
            let ips = self.resolve_fixed_ips(p.network_id, Some(&f), Some(old), &p.device_owner)?;
            // A request that keeps a router interface's addresses (a subnet-only entry keeps
            // the address the port has there) is a no-op and accepted, as in Neutron; moving
            // the router's address is not supported yet.
            if old.is_router_interface() && ips != old.fixed_ips {
                return Err(ModelError::BadRequest {
                    resource: "port",
                    msg: "the fixed IPs of a router interface cannot be changed; remove and re-add the interface".into(),
                });
            }
            p.fixed_ips = ips;
        }
        if let Some(v) = req.name {
            p.name = v;
        }
        if let Some(v) = req.description {
            p.description = v;
        }
        if let Some(v) = req.admin_state_up {
            p.admin_state_up = v;
        }
        if let Some(v) = req.binding_host_id {
            p.binding_host_id = v;
        }
        if let Some(v) = req.port_security_enabled {
            p.port_security_enabled = v;
        }
        if let Some(v) = req.allowed_address_pairs {
            p.allowed_address_pairs = Self::address_pairs(v, p.mac_address);
        }
        p.updated_at = ctx.now;
        p.revision_number += 1;
        let p = Arc::new(p);
        let mut c = Change::default();
        c.put(Some(Object::Port(old.clone())), Object::Port(p.clone()));
        Ok((c, p))
    }

    /// Router interface ports go through remove_router_interface instead (409).
    pub fn delete_port(&self, ctx: &RequestContext, id: &str) -> Result<Change, ModelError> {
        let p = self.visible_port(ctx, id)?;
        ctx.check_write("delete_port")?;
        if p.is_router_interface()
            && parse_id(&p.device_id).is_some_and(|r| self.routers.contains_key(&r))
        {
            return Err(ModelError::L3PortInUse {
                port_id: p.id,
                owner: p.device_owner.clone(),
            });
        }
        let mut c = Change::default();
        c.delete(Object::Port(p.clone()));
        Ok(c)
    }

    // ---- routers ----

    pub fn create_router(
        &self,
        ctx: &RequestContext,
        req: RouterCreate,
    ) -> Result<(Change, Arc<Router>), ModelError> {
        ctx.check_write("create_router")?;
        self.check_external_gateway(ctx, req.external_gateway)?;
        let id = fresh_id(req.id, "router", |id| self.routers.contains_key(&id))?;
        let r = Arc::new(Router {
            id,
            name: req.name,
            tenant_id: req.project_id.clone(),
            project_id: req.project_id,
            admin_state_up: req.admin_state_up,
            status: "ACTIVE".into(),
            external_gateway_info: Null,
            routes: Vec::new(),
            description: req.description,
            created_at: ctx.now,
            updated_at: ctx.now,
            revision_number: 1,
            tags: Vec::new(),
        });
        let mut c = Change::default();
        c.put(None, Object::Router(r.clone()));
        Ok((c, r))
    }

    /// A requested router gateway, checked in Neutron's order: the network must exist and be
    /// visible (404), and be external (400); then it is refused because wyvern does not
    /// attach routers to external networks yet (400, and `external-gw-mode` is not listed).
    fn check_external_gateway(
        &self,
        ctx: &RequestContext,
        network: Option<Uuid>,
    ) -> Result<(), ModelError> {
        let Some(id) = network else {
            return Ok(());
        };
        let net = self.visible_network(ctx, &id.to_string())?;
        if !net.router_external {
            return Err(ModelError::BadRequest {
                resource: "router",
                msg: format!("Network {id} is not an external network"),
            });
        }
        Err(ModelError::InvalidInput(
            "external gateways are not supported by wyvern yet".into(),
        ))
    }

    /// Static routes: each nexthop must be on a subnet the router is attached to, and not
    /// one of the router's own addresses.
    fn validate_routes(&self, router_id: Uuid, routes: &[HostRoute]) -> Result<(), ModelError> {
        if routes.len() > self.cfg.max_routes {
            return Err(ModelError::InvalidRoutes {
                routes: format!("{} routes", routes.len()),
                reason: format!(
                    "the number of routes exceeds the limit {}",
                    self.cfg.max_routes
                ),
            });
        }
        let ifaces: Vec<&Arc<Port>> = self.router_interfaces(&router_id).collect();
        for r in routes {
            let shown = format!(
                "{{'destination': '{}', 'nexthop': '{}'}}",
                r.destination, r.nexthop
            );
            let own = ifaces
                .iter()
                .flat_map(|p| &p.fixed_ips)
                .any(|f| f.ip_address == r.nexthop);
            if own {
                return Err(ModelError::InvalidRoutes {
                    routes: shown,
                    reason: "the nexthop is used by router".into(),
                });
            }
            let connected = ifaces
                .iter()
                .flat_map(|p| &p.fixed_ips)
                .filter_map(|f| self.subnets.get(&f.subnet_id))
                .any(|s| s.cidr.contains(&r.nexthop));
            if !connected {
                return Err(ModelError::InvalidRoutes {
                    routes: shown,
                    reason: "the nexthop is not connected with router".into(),
                });
            }
        }
        Ok(())
    }

    pub fn update_router(
        &self,
        ctx: &RequestContext,
        id: &str,
        req: RouterUpdate,
    ) -> Result<(Change, Arc<Router>), ModelError> {
        let old = self.visible_router(ctx, id)?;
        ctx.check_write("update_router")?;
        self.check_external_gateway(ctx, req.external_gateway)?;
        let mut r = (**old).clone();
        if let Some(routes) = req.routes {
            self.validate_routes(r.id, &routes)?;
            r.routes = routes;
        }
        if let Some(v) = req.name {
            r.name = v;
        }
        if let Some(v) = req.description {
            r.description = v;
        }
        if let Some(v) = req.admin_state_up {
            r.admin_state_up = v;
        }
        r.updated_at = ctx.now;
        r.revision_number += 1;
        let r = Arc::new(r);
        let mut c = Change::default();
        c.put(Some(Object::Router(old.clone())), Object::Router(r.clone()));
        Ok((c, r))
    }

    /// Refused (409) while the router has interfaces.
    pub fn delete_router(&self, ctx: &RequestContext, id: &str) -> Result<Change, ModelError> {
        let r = self.visible_router(ctx, id)?;
        ctx.check_write("delete_router")?;
        if self.router_interfaces(&r.id).next().is_some() {
            return Err(ModelError::RouterInUse(r.id));
        }
        let mut c = Change::default();
        c.delete(Object::Router(r.clone()));
        Ok(c)
    }

    /// A router may not have two interfaces on one subnet, nor on overlapping subnets.
    fn check_attachable(&self, router_id: Uuid, subnet: &Subnet) -> Result<(), ModelError> {
        let bad = |msg: String| ModelError::BadRequest {
            resource: "router",
            msg,
        };
        for p in self.router_interfaces(&router_id) {
            for f in &p.fixed_ips {
                if f.subnet_id == subnet.id {
                    return Err(bad(format!(
                        "Router {router_id} already has a port on subnet {}",
                        subnet.id
                    )));
                }
                if let Some(other) = self.subnets.get(&f.subnet_id) {
                    if other.cidr.contains(&subnet.cidr.network())
                        || subnet.cidr.contains(&other.cidr.network())
                    {
                        return Err(bad(format!(
                            "Cidr {} of subnet {} overlaps with cidr {} of subnet {}",
                            subnet.cidr, subnet.id, other.cidr, other.id
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    fn interface_info(r: &Router, p: &Port) -> InterfaceInfo {
        let subnet_ids: Vec<Uuid> = p.fixed_ips.iter().map(|f| f.subnet_id).collect();
        InterfaceInfo {
            id: r.id,
            tenant_id: r.project_id.clone(),
            project_id: r.project_id.clone(),
            port_id: p.id,
            subnet_id: subnet_ids.first().copied().unwrap_or_default(),
            subnet_ids,
            network_id: p.network_id,
        }
    }

    /// Attaches a subnet (a new port holding its gateway IP) or an existing unused port.
    pub fn add_router_interface(
        &self,
        ctx: &RequestContext,
        router_id: &str,
        req: InterfaceRequest,
    ) -> Result<(Change, InterfaceInfo), ModelError> {
        let router = self.visible_router(ctx, router_id)?;
        ctx.check_write("add_router_interface")?;
        let bad = |msg: String| ModelError::BadRequest {
            resource: "router",
            msg,
        };
        let mut c = Change::default();
        let port = match req {
            InterfaceRequest::Subnet(sid) => {
                let s = self.visible_subnet(ctx, &sid.to_string())?;
                let gw = s.gateway_ip.ok_or_else(|| {
                    bad(format!(
                        "Subnet {} for router interface must have a gateway IP",
                        s.id
                    ))
                })?;
                self.check_attachable(router.id, s)?;
                if self.ip_owner(&s.id, gw).is_some() {
                    return Err(ModelError::IpAddressAlreadyAllocated {
                        ip: gw,
                        subnet_id: s.id,
                    });
                }
                let net = self
                    .networks
                    .get(&s.network_id)
                    .ok_or_else(|| ModelError::NetworkNotFound(s.network_id.to_string()))?;
                let mac = self.generate_mac(net.id)?;
                let p = Arc::new(Port {
                    id: new_id(),
                    name: String::new(),
                    tenant_id: s.project_id.clone(),
                    project_id: s.project_id.clone(),
                    network_id: net.id,
                    mac_address: mac,
                    admin_state_up: true,
                    status: "ACTIVE".into(),
                    fixed_ips: vec![FixedIp {
                        subnet_id: s.id,
                        ip_address: gw,
                    }],
                    device_id: router.id.to_string(),
                    device_owner: DEVICE_OWNER_ROUTER_INTERFACE.into(),
                    binding_host_id: String::new(),
                    binding_vnic_type: VnicNormal,
                    binding_profile: EmptyObject,
                    binding_vif_details: EmptyObject,
                    binding_vif_type: "unbound".into(),
                    port_security_enabled: false,
                    security_groups: Vec::new(),
                    allowed_address_pairs: Vec::new(),
                    description: String::new(),
                    created_at: ctx.now,
                    updated_at: ctx.now,
                    revision_number: 1,
                    tags: Vec::new(),
                });
                c.put(None, Object::Port(p.clone()));
                p
            }
            InterfaceRequest::Port(pid) => {
                let old = self.visible_port(ctx, &pid.to_string())?;
                if !old.device_id.is_empty() || !old.device_owner.is_empty() {
                    let device_id = if old.device_id.is_empty() {
                        old.device_owner.clone()
                    } else {
                        old.device_id.clone()
                    };
                    return Err(ModelError::PortInUse {
                        port_id: old.id,
                        network_id: old.network_id,
                        device_id,
                    });
                }
                match old.fixed_ips.len() {
                    0 => return Err(bad("Router port must have at least one fixed IP".into())),
                    1 => {}
                    _ => {
                        return Err(bad(
                            "Cannot have multiple IPv4 subnets on router port".into()
                        ))
                    }
                }
                for f in &old.fixed_ips {
                    if let Some(s) = self.subnets.get(&f.subnet_id) {
                        self.check_attachable(router.id, s)?;
                    }
                }
                let mut p = (**old).clone();
                p.device_id = router.id.to_string();
                p.device_owner = DEVICE_OWNER_ROUTER_INTERFACE.into();
                p.status = "ACTIVE".into();
                p.updated_at = ctx.now;
                p.revision_number += 1;
                let p = Arc::new(p);
                c.put(Some(Object::Port(old.clone())), Object::Port(p.clone()));
                p
            }
        };
        Ok((c, Self::interface_info(router, &port)))
    }

    /// Detaches a subnet or port; the interface port is deleted. Refused (409) while a static
    /// route's nexthop needs the subnet.
    pub fn remove_router_interface(
        &self,
        ctx: &RequestContext,
        router_id: &str,
        req: InterfaceRequest,
    ) -> Result<(Change, InterfaceInfo), ModelError> {
        let router = self.visible_router(ctx, router_id)?;
        ctx.check_write("remove_router_interface")?;
        let port = match req {
            InterfaceRequest::Subnet(sid) => {
                let s = self.visible_subnet(ctx, &sid.to_string())?;
                self.router_interfaces(&router.id)
                    .find(|p| p.fixed_ips.iter().any(|f| f.subnet_id == s.id))
                    .ok_or(ModelError::RouterInterfaceNotFoundForSubnet {
                        router_id: router.id,
                        subnet_id: s.id,
                    })?
            }
            InterfaceRequest::Port(pid) => self
                .router_interfaces(&router.id)
                .find(|p| p.id == pid)
                .ok_or(ModelError::RouterInterfaceNotFound {
                    router_id: router.id,
                    port_id: pid,
                })?,
        };
        for f in &port.fixed_ips {
            if let Some(s) = self.subnets.get(&f.subnet_id) {
                if router.routes.iter().any(|r| s.cidr.contains(&r.nexthop)) {
                    return Err(ModelError::RouterInterfaceInUseByRoute {
                        router_id: router.id,
                        subnet_id: s.id,
                    });
                }
            }
        }
        let mut c = Change::default();
        c.delete(Object::Port(port.clone()));
        Ok((c, Self::interface_info(router, port)))
    }
}
