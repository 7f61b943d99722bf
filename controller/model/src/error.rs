//! Why an operation on the topology was refused, in Neutron's vocabulary: every variant names
//! the Neutron exception type the API reports and the HTTP status it maps to, so clients that
//! branch on `NeutronError.type` (python-openstackclient, tempest) behave as with Neutron.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use uuid::Uuid;

use crate::types::{AllocationPool, MacAddr};

/// A refused operation. Messages follow Neutron's wording where one exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("Network {0} could not be found.")]
    NetworkNotFound(String),
    #[error("Subnet {0} could not be found.")]
    SubnetNotFound(String),
    #[error("Port {0} could not be found.")]
    PortNotFound(String),
    #[error("Router {0} could not be found.")]
    RouterNotFound(String),
    #[error("Router {router_id} does not have an interface with id {port_id}")]
    RouterInterfaceNotFound { router_id: Uuid, port_id: Uuid },
    #[error("Router {router_id} has no interface on subnet {subnet_id}")]
    RouterInterfaceNotFoundForSubnet { router_id: Uuid, subnet_id: Uuid },

    /// An attribute value failed validation (Neutron's API-layer validators).
    #[error("Invalid input for {attr}. Reason: {reason}.")]
    InvalidAttribute { attr: String, reason: String },
    #[error("Unrecognized attribute(s) '{0}'")]
    UnrecognizedAttribute(String),
    #[error("Attribute '{attr}' not allowed in {method}")]
    AttributeNotAllowed { attr: String, method: &'static str },
    #[error("Failed to parse request. Required attribute '{0}' not specified")]
    MissingAttribute(String),
    #[error("Failed to parse request. {0}")]
    MalformedRequest(String),
    #[error("Specifying 'project_id' or 'tenant_id' other than the authenticated project in request requires admin privileges")]
    ProjectMismatch,
    #[error("Invalid input for operation: {0}.")]
    InvalidInput(String),
    #[error("Bad {resource} request: {msg}.")]
    BadRequest { resource: &'static str, msg: String },
    #[error("Invalid input for operation: IPv6 is not supported by wyvern yet ({0}).")]
    Ipv6NotSupported(String),

    #[error("IP address {ip} already allocated in subnet {subnet_id}")]
    IpAddressAlreadyAllocated { ip: Ipv4Addr, subnet_id: Uuid },
    #[error("No more IP addresses available on network {0}.")]
    IpAddressGenerationFailure(Uuid),
    #[error("IP address {0} is not a valid IP for the specified subnet.")]
    InvalidIpForSubnet(Ipv4Addr),
    #[error("IP address {0} is not a valid IP for any of the subnets on the specified network.")]
    InvalidIpForNetwork(Ipv4Addr),
    #[error(
        "Unable to complete operation for network {network_id}. The mac address {mac} is in use."
    )]
    MacAddressInUse { network_id: Uuid, mac: MacAddr },
    #[error("Unable to generate unique mac on network {0}.")]
    MacAddressGenerationFailure(Uuid),

    #[error("Unable to complete operation on network {0}. There are one or more ports still in use on the network.")]
    NetworkInUse(Uuid),
    #[error("Unable to complete operation on subnet {0}: One or more ports have an IP allocation from this subnet.")]
    SubnetInUse(Uuid),
    #[error("Router {0} still has ports")]
    RouterInUse(Uuid),
    #[error("Port {port_id} has owner {owner} and therefore cannot be deleted directly via the port API.")]
    L3PortInUse { port_id: Uuid, owner: String },
    #[error("Unable to complete operation on port {port_id} for network {network_id}. Port already has an attached device {device_id}.")]
    PortInUse {
        port_id: Uuid,
        network_id: Uuid,
        device_id: String,
    },
    #[error("Router interface for subnet {subnet_id} on router {router_id} cannot be deleted, as it is required by one or more routes.")]
    RouterInterfaceInUseByRoute { router_id: Uuid, subnet_id: Uuid },
    #[error("Current gateway ip {ip} already in use by port {port_id}. Unable to update.")]
    GatewayIpInUse { ip: Ipv4Addr, port_id: Uuid },

    #[error("Gateway ip {ip} conflicts with allocation pool {pool}.")]
    GatewayConflictWithAllocationPools { ip: Ipv4Addr, pool: AllocationPool },
    #[error("Found overlapping allocation pools: {a} and {b} for subnet {cidr}.")]
    OverlappingAllocationPools {
        a: AllocationPool,
        b: AllocationPool,
        cidr: Ipv4Net,
    },
    #[error("The allocation pool {pool} spans beyond the subnet cidr {cidr}.")]
    OutOfBoundsAllocationPool { pool: AllocationPool, cidr: Ipv4Net },
    #[error("The allocation pool {0} is not valid.")]
    InvalidAllocationPool(AllocationPool),
    #[error("Unable to complete operation for {subnet_id}. The number of DNS nameservers exceeds the limit {quota}.")]
    DnsNameServersExhausted { subnet_id: Uuid, quota: usize },
    #[error("Unable to complete operation for {subnet_id}. The number of host routes exceeds the limit {quota}.")]
    HostRoutesExhausted { subnet_id: Uuid, quota: usize },
    #[error("Invalid format for routes: {routes}, {reason}")]
    InvalidRoutes { routes: String, reason: String },

    #[error("{0} is disallowed by policy")]
    PolicyNotAuthorized(String),
    /// An admin asked for an id (restore, cascade) that an object already has.
    #[error("Unable to create the {kind} with id {id}: an object with that id already exists.")]
    IdInUse { kind: &'static str, id: Uuid },
}

impl ModelError {
    /// Neutron's exception class name, reported as `NeutronError.type`.
    pub fn neutron_type(&self) -> &'static str {
        use ModelError::*;
        match self {
            NetworkNotFound(_) => "NetworkNotFound",
            SubnetNotFound(_) => "SubnetNotFound",
            PortNotFound(_) => "PortNotFound",
            RouterNotFound(_) => "RouterNotFound",
            RouterInterfaceNotFound { .. } => "RouterInterfaceNotFound",
            RouterInterfaceNotFoundForSubnet { .. } => "RouterInterfaceNotFoundForSubnet",
            InvalidAttribute { .. }
            | UnrecognizedAttribute(_)
            | AttributeNotAllowed { .. }
            | MissingAttribute(_)
            | MalformedRequest(_) => "HTTPBadRequest",
            ProjectMismatch => "PolicyNotAuthorized",
            InvalidInput(_) | Ipv6NotSupported(_) => "InvalidInput",
            BadRequest { .. } => "BadRequest",
            IpAddressAlreadyAllocated { .. } => "IpAddressAlreadyAllocated",
            IpAddressGenerationFailure(_) => "IpAddressGenerationFailure",
            InvalidIpForSubnet(_) => "InvalidIpForSubnet",
            InvalidIpForNetwork(_) => "InvalidIpForNetwork",
            MacAddressInUse { .. } => "MacAddressInUse",
            MacAddressGenerationFailure(_) => "MacAddressGenerationFailure",
            NetworkInUse(_) => "NetworkInUse",
            SubnetInUse(_) => "SubnetInUse",
            RouterInUse(_) => "RouterInUse",
            L3PortInUse { .. } => "L3PortInUse",
            PortInUse { .. } => "PortInUse",
            RouterInterfaceInUseByRoute { .. } => "RouterInterfaceInUseByRoute",
            GatewayIpInUse { .. } => "GatewayIpInUse",
            GatewayConflictWithAllocationPools { .. } => "GatewayConflictWithAllocationPools",
            OverlappingAllocationPools { .. } => "OverlappingAllocationPools",
            OutOfBoundsAllocationPool { .. } => "OutOfBoundsAllocationPool",
            InvalidAllocationPool(_) => "InvalidAllocationPool",
            DnsNameServersExhausted { .. } => "DNSNameServersExhausted",
            HostRoutesExhausted { .. } => "HostRoutesExhausted",
            InvalidRoutes { .. } => "InvalidRoutes",
            PolicyNotAuthorized(_) => "PolicyNotAuthorized",
            IdInUse { .. } => "Conflict",
        }
    }

    /// The HTTP status Neutron answers with for this error.
    pub fn status(&self) -> u16 {
        use ModelError::*;
        match self {
            NetworkNotFound(_)
            | SubnetNotFound(_)
            | PortNotFound(_)
            | RouterNotFound(_)
            | RouterInterfaceNotFound { .. }
            | RouterInterfaceNotFoundForSubnet { .. } => 404,
            IpAddressAlreadyAllocated { .. }
            | IpAddressGenerationFailure(_)
            | MacAddressInUse { .. }
            | NetworkInUse(_)
            | SubnetInUse(_)
            | RouterInUse(_)
            | L3PortInUse { .. }
            | PortInUse { .. }
            | RouterInterfaceInUseByRoute { .. }
            | GatewayIpInUse { .. }
            | GatewayConflictWithAllocationPools { .. }
            | OverlappingAllocationPools { .. }
            | IdInUse { .. } => 409,
            MacAddressGenerationFailure(_) => 503,
            // Neutron itself answers 400 here (neutron-lib's `_validate_privileges`); the
            // project's issue asks for 403, a refusal of privilege (docs/policy.md).
            PolicyNotAuthorized(_) | ProjectMismatch => 403,
            InvalidAttribute { .. }
            | UnrecognizedAttribute(_)
            | AttributeNotAllowed { .. }
            | MissingAttribute(_)
            | MalformedRequest(_)
            | InvalidInput(_)
            | BadRequest { .. }
            | Ipv6NotSupported(_)
            | InvalidIpForSubnet(_)
            | InvalidIpForNetwork(_)
            | OutOfBoundsAllocationPool { .. }
            | InvalidAllocationPool(_)
            | DnsNameServersExhausted { .. }
            | HostRoutesExhausted { .. }
            | InvalidRoutes { .. } => 400,
        }
    }

    pub(crate) fn invalid(attr: &str, reason: impl Into<String>) -> Self {
        ModelError::InvalidAttribute {
            attr: attr.to_string(),
            reason: reason.into(),
        }
    }
}
