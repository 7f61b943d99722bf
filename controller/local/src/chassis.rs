//! Chassis: every host registers itself in the store under a lease (name, tunnel
//! endpoint, capabilities) and follows everyone else's registration to build its overlay.
//!
//! `/wyvern/chassis/<name>` holds a JSON [`Chassis`]. The key lives under an etcd lease
//! kept alive by this process, so a host that dies disappears from every other host's view
//! about one TTL later; the survivors then set its ports DOWN (only one of them writes:
//! the live chassis with the lowest name). The tunnel is one OVS VXLAN port per host with a
//! flow-based remote and key, so the chassis list changes flows only, never OVSDB.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use wyvern_ovsdb::ops::{named_uuid, set, string_map, Condition, Mutation, Mutator, Operation};
use wyvern_ovsdb::{Client, Remote};
use wyvern_store::{KeyValue, LeaseGuard, Store, StoreError};

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
}

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
    use wyvern_store::Revision;

    fn kv(key: &str, value: Vec<u8>) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.into(),
            create_revision: Revision(1),
            mod_revision: Revision(1),
            version: 1,
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
