//! Logical topology (Neutron subset): types, validation, IPAM and Neutron JSON shapes; pure, no I/O.
//!
//! The flow is always the same: parse a request body into a typed request (`request`), ask
//! the [`Topology`] for the [`Change`] an operation makes (`ops`; validation and IPAM happen
//! here, nothing is mutated), then [`Topology::apply`] it and persist the same change under
//! [`key`]`(kind, id)`. Other components mirror the topology from the store with
//! [`Topology::apply_put`] / [`Topology::apply_delete`].

mod context;
mod error;
mod ops;
mod request;
mod tags;
mod topology;
mod types;

pub use context::RequestContext;
pub use error::ModelError;
pub use ops::{default_pools, InterfaceInfo};
pub use request::{
    AddressPairRequest, FixedIpRequest, GatewayRequest, InterfaceRequest, NetworkCreate,
    NetworkUpdate, PortCreate, PortUpdate, RouterCreate, RouterUpdate, SubnetCreate, SubnetUpdate,
};
pub use tags::{normalize_tags, MAX_TAGS, MAX_TAG_LEN};
pub use topology::{
    global_key, is_old_layout_key, object_key, parse_key, parse_port_network, partition_key,
    partition_of, partition_prefix, port_network_key, ApplyError, Change, ChangeOp, IndexWrite,
    Kind, ModelConfig, NetworkView, Object, RouterLink, Topology, INDEX_PREFIX, KEY_PREFIX,
    NETWORKS_PREFIX, NET_PREFIX, PORT_NETWORK_PREFIX, ROUTERS_PREFIX, ROUTER_LINK_PREFIX,
};
pub use types::{
    AddressPair, AllocationPool, FixedIp, HostRoute, MacAddr, MacParseError, MacPrefix, Network,
    Port, Router, Subnet, Timestamp, DEVICE_OWNER_DHCP, DEVICE_OWNER_ROUTER_INTERFACE,
};

#[cfg(test)]
mod tests;
