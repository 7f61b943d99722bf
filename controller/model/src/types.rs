//! The logical objects (network, subnet, port, router) in Neutron's JSON shape, and the small
//! typed values they are made of (MAC addresses, timestamps, pools, routes).
//!
//! The structs serialize to exactly the attribute names Neutron's API uses, so the API layer
//! and the store share one representation. Attributes Neutron derives from other objects
//! (a network's `subnets`) are not stored; `Topology::network_json` adds them.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// `device_owner` of the port that gives a router its address on a subnet.
pub const DEVICE_OWNER_ROUTER_INTERFACE: &str = "network:router_interface";
/// `device_owner` of a DHCP port (Neutron deletes those with their network).
pub const DEVICE_OWNER_DHCP: &str = "network:dhcp";

/// An Ethernet MAC address, shown as lowercase `aa:bb:cc:dd:ee:ff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

/// Why a MAC address (or prefix) string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to parse MAC address {0:?}: expected six hex bytes separated by ':' or '-'")]
pub struct MacParseError(pub String);

fn parse_hex_bytes<const N: usize>(s: &str) -> Result<[u8; N], MacParseError> {
    let err = || MacParseError(s.to_string());
    let sep = if s.contains('-') { '-' } else { ':' };
    let mut out = [0u8; N];
    let mut parts = s.split(sep);
    for b in out.iter_mut() {
        let p = parts.next().ok_or_else(err)?;
        if p.is_empty() || p.len() > 2 {
            return Err(err());
        }
        *b = u8::from_str_radix(p, 16).map_err(|_| err())?;
    }
    if parts.next().is_some() {
        return Err(err());
    }
    Ok(out)
}

impl MacAddr {
    /// Multicast (and broadcast) addresses can never be a port's address.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }
}

impl FromStr for MacAddr {
    type Err = MacParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex_bytes::<6>(s).map(MacAddr)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The first three bytes of every generated MAC (Neutron's `base_mac`, `fa:16:3e` by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacPrefix(pub [u8; 3]);

impl Default for MacPrefix {
    fn default() -> Self {
        MacPrefix([0xfa, 0x16, 0x3e])
    }
}

impl FromStr for MacPrefix {
    type Err = MacParseError;
    /// Accepts `fa:16:3e` or a full base MAC such as `fa:16:3e:00:00:00`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(m) = s.parse::<MacAddr>() {
            return Ok(MacPrefix([m.0[0], m.0[1], m.0[2]]));
        }
        parse_hex_bytes::<3>(s).map(MacPrefix)
    }
}

impl fmt::Display for MacPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}:{:02x}", self.0[0], self.0[1], self.0[2])
    }
}

/// A UTC time with one-second resolution, shown as Neutron shows it: `2024-05-01T12:00:00Z`.
/// The model never reads the clock: callers pass the time in [`crate::RequestContext`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0 as i64;
        let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
        let r = secs.rem_euclid(86_400);
        write!(
            f,
            "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
            r / 3600,
            (r / 60) % 60,
            r % 60
        )
    }
}

impl FromStr for Timestamp {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || format!("failed to parse timestamp {s:?}: expected YYYY-MM-DDTHH:MM:SSZ");
        let s2 = s.strip_suffix('Z').unwrap_or(s);
        let (date, time) = s2.split_once('T').ok_or_else(err)?;
        let mut dp = date.split('-').map(|p| p.parse::<i64>());
        let mut tp = time.split(':').map(|p| p.parse::<i64>());
        let next = |it: &mut dyn Iterator<Item = Result<i64, _>>| {
            it.next().ok_or_else(err)?.map_err(|_| err())
        };
        let (y, mo, d) = (next(&mut dp)?, next(&mut dp)?, next(&mut dp)?);
        let (h, mi, sec) = (next(&mut tp)?, next(&mut tp)?, next(&mut tp)?);
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || y < 1970 {
            return Err(err());
        }
        let days = days_from_civil(y, mo as u32, d as u32);
        Ok(Timestamp((days * 86_400 + h * 3600 + mi * 60 + sec) as u64))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An inclusive range of addresses that IPAM may hand out on a subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationPool {
    pub start: Ipv4Addr,
    pub end: Ipv4Addr,
}

impl AllocationPool {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.start <= ip && ip <= self.end
    }
    pub fn overlaps(&self, other: &AllocationPool) -> bool {
        self.start <= other.end && other.start <= self.end
    }
}

impl fmt::Display for AllocationPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// A route pushed to instances by DHCP (on a subnet) or installed on a router (`routes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRoute {
    pub destination: Ipv4Net,
    pub nexthop: Ipv4Addr,
}

/// One address of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixedIp {
    pub subnet_id: Uuid,
    pub ip_address: Ipv4Addr,
}

/// An extra (IP or CIDR, MAC) a port may send from when port security is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressPair {
    #[serde(with = "addr_or_net")]
    pub ip_address: Ipv4Net,
    pub mac_address: MacAddr,
}

/// `10.0.0.5` and `10.0.0.5/32` are the same pair; a host address is shown without prefix.
mod addr_or_net {
    use super::*;
    pub fn serialize<S: Serializer>(n: &Ipv4Net, s: S) -> Result<S::Ok, S::Error> {
        if n.prefix_len() == 32 {
            s.collect_str(&n.addr())
        } else {
            s.collect_str(n)
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Ipv4Net, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).ok_or_else(|| serde::de::Error::custom(format!("invalid address {s:?}")))
    }
    pub fn parse(s: &str) -> Option<Ipv4Net> {
        if let Ok(a) = s.parse::<Ipv4Addr>() {
            return Ipv4Net::new(a, 32).ok();
        }
        s.parse::<Ipv4Net>().ok()
    }
}
pub(crate) use addr_or_net::parse as parse_addr_or_net;

/// Constant attributes that Neutron shows and wyvern does not model: serializing one of these
/// writes the constant and costs no memory per object.
macro_rules! constant_attr {
    ($name:ident, $json:tt) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        pub struct $name;
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                serde_json::json!($json).serialize(s)
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                serde::de::IgnoredAny::deserialize(d)?;
                Ok($name)
            }
        }
    };
}
constant_attr!(EmptyList, []);
constant_attr!(EmptyObject, {});
constant_attr!(Null, null);
constant_attr!(True, true);
constant_attr!(VnicNormal, "normal");
constant_attr!(Ipv4Version, 4);

/// A layer-2 network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Network {
    pub id: Uuid,
    pub name: String,
    pub tenant_id: String,
    pub project_id: String,
    pub admin_state_up: bool,
    pub status: String,
    pub shared: bool,
    pub mtu: u32,
    pub port_security_enabled: bool,
    /// Neutron's `external-net` extension: an admin-only flag that makes the network visible
    /// (read-only) to every project. wyvern attaches no router gateways to it yet.
    #[serde(rename = "router:external", default)]
    pub router_external: bool,
    #[serde(default)]
    pub availability_zone_hints: EmptyList,
    #[serde(default)]
    pub availability_zones: EmptyList,
    #[serde(default)]
    pub ipv4_address_scope: Null,
    #[serde(default)]
    pub ipv6_address_scope: Null,
    #[serde(default)]
    pub l2_adjacency: True,
    pub description: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub revision_number: u64,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// An IPv4 subnet of a network, with its IPAM configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subnet {
    pub id: Uuid,
    pub name: String,
    pub tenant_id: String,
    pub project_id: String,
    pub network_id: Uuid,
    #[serde(default)]
    pub ip_version: Ipv4Version,
    pub cidr: Ipv4Net,
    /// `None` is Neutron's `"gateway_ip": null`: a subnet without a gateway.
    pub gateway_ip: Option<Ipv4Addr>,
    pub enable_dhcp: bool,
    pub dns_nameservers: Vec<Ipv4Addr>,
    pub allocation_pools: Vec<AllocationPool>,
    pub host_routes: Vec<HostRoute>,
    #[serde(default)]
    pub ipv6_ra_mode: Null,
    #[serde(default)]
    pub ipv6_address_mode: Null,
    #[serde(default)]
    pub subnetpool_id: Null,
    #[serde(default)]
    pub service_types: EmptyList,
    pub description: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub revision_number: u64,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A port: a MAC and fixed IPs on a network, bound to a VM, a router or anything else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Port {
    pub id: Uuid,
    pub name: String,
    pub tenant_id: String,
    pub project_id: String,
    pub network_id: Uuid,
    pub mac_address: MacAddr,
    pub admin_state_up: bool,
    pub status: String,
    pub fixed_ips: Vec<FixedIp>,
    pub device_id: String,
    pub device_owner: String,
    #[serde(rename = "binding:host_id")]
    pub binding_host_id: String,
    #[serde(rename = "binding:vnic_type", default)]
    pub binding_vnic_type: VnicNormal,
    #[serde(rename = "binding:profile", default)]
    pub binding_profile: EmptyObject,
    #[serde(rename = "binding:vif_details", default)]
    pub binding_vif_details: EmptyObject,
    #[serde(rename = "binding:vif_type")]
    pub binding_vif_type: String,
    pub port_security_enabled: bool,
    pub security_groups: Vec<Uuid>,
    pub allowed_address_pairs: Vec<AddressPair>,
    pub description: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub revision_number: u64,
    #[serde(default)]
    pub tags: Vec<String>,
}

impl Port {
    pub fn is_router_interface(&self) -> bool {
        self.device_owner == DEVICE_OWNER_ROUTER_INTERFACE
    }
}

/// A router. Its interfaces are not an attribute (as in Neutron): they are the ports with
/// `device_owner = network:router_interface` and `device_id = <router id>`; see
/// `Topology::router_interfaces`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Router {
    pub id: Uuid,
    pub name: String,
    pub tenant_id: String,
    pub project_id: String,
    pub admin_state_up: bool,
    pub status: String,
    /// Always null: external gateways are not supported yet.
    #[serde(default)]
    pub external_gateway_info: Null,
    pub routes: Vec<HostRoute>,
    pub description: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub revision_number: u64,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip_and_errors() {
        let m: MacAddr = "FA:16:3E:0a:0B:ff".parse().unwrap();
        assert_eq!(m.to_string(), "fa:16:3e:0a:0b:ff");
        assert_eq!("fa-16-3e-0a-0b-ff".parse::<MacAddr>().unwrap(), m);
        for bad in [
            "",
            "fa:16:3e:0a:0b",
            "fa:16:3e:0a:0b:ff:00",
            "fa:16:3e:0a:0b:zz",
            "fa:16:3e:0a:0b:fff",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
        assert!("01:00:5e:00:00:01"
            .parse::<MacAddr>()
            .unwrap()
            .is_multicast());
        assert_eq!(
            "fa:16:3e".parse::<MacPrefix>().unwrap(),
            MacPrefix::default()
        );
        assert_eq!(
            "fa:16:3e:00:00:00".parse::<MacPrefix>().unwrap(),
            MacPrefix::default()
        );
    }

    #[test]
    fn timestamp_round_trip() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(Timestamp(1_700_000_000).to_string(), "2023-11-14T22:13:20Z");
        assert_eq!(Timestamp(951_782_400).to_string(), "2000-02-29T00:00:00Z");
        for t in [0u64, 951_782_400, 1_700_000_000, 4_102_444_799] {
            assert_eq!(
                Timestamp(t).to_string().parse::<Timestamp>().unwrap(),
                Timestamp(t)
            );
        }
        assert!("yesterday".parse::<Timestamp>().is_err());
    }

    #[test]
    fn address_pair_accepts_host_and_cidr() {
        let p: AddressPair =
            serde_json::from_str(r#"{"ip_address":"10.0.0.5","mac_address":"fa:16:3e:00:00:01"}"#)
                .unwrap();
        assert_eq!(p.ip_address.prefix_len(), 32);
        assert_eq!(serde_json::to_value(p).unwrap()["ip_address"], "10.0.0.5");
        let p: AddressPair = serde_json::from_str(
            r#"{"ip_address":"10.0.0.0/24","mac_address":"fa:16:3e:00:00:01"}"#,
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(p).unwrap()["ip_address"],
            "10.0.0.0/24"
        );
    }
}
