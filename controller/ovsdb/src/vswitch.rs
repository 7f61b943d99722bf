//! Typed writes and reads of the `Open_vSwitch` database: the integration bridge, ports,
//! and the chassis identity.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::client::{Client, ClientError};
use crate::ops::{
    named_uuid, parse_opt_string, parse_string_map, parse_string_set, parse_uuid, parse_uuid_set,
    set, string_map, uuid_datum, Condition, DatumError, Mutation, Mutator, Operation,
};

/// The database every helper here works on.
pub const DB: &str = "Open_vSwitch";

/// Failures of the typed helpers.
#[derive(Debug, thiserror::Error)]
pub enum VswitchError {
    #[error("failed to {action}")]
    Client {
        action: String,
        #[source]
        source: ClientError,
    },
    #[error("failed to {action}: unexpected reply")]
    Datum {
        action: String,
        #[source]
        source: DatumError,
    },
    #[error("failed to {action}: reply has no rows for operation {index}")]
    MissingResult { action: String, index: usize },
    #[error("failed to change ports of bridge {bridge}: no such bridge")]
    BridgeNotFound { bridge: String },
    #[error("failed to add port {port}: a port with that name exists")]
    PortExists { port: String },
}

/// `Bridge.datapath_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatapathType {
    /// The kernel datapath (`system`, also spelled as the empty string).
    System,
    /// The userspace datapath.
    Netdev,
    /// `ovs-vswitchd --enable-dummy`'s test datapath.
    Dummy,
}

impl DatapathType {
    pub fn as_str(self) -> &'static str {
        match self {
            DatapathType::System => "system",
            DatapathType::Netdev => "netdev",
            DatapathType::Dummy => "dummy",
        }
    }

    fn matches(self, db: &str) -> bool {
        db == self.as_str() || (self == DatapathType::System && db.is_empty())
    }
}

/// An OpenFlow version a bridge may speak (`Bridge.protocols`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum OfVersion {
    OpenFlow10,
    OpenFlow11,
    OpenFlow12,
    OpenFlow13,
    OpenFlow14,
    OpenFlow15,
}

impl OfVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            OfVersion::OpenFlow10 => "OpenFlow10",
            OfVersion::OpenFlow11 => "OpenFlow11",
            OfVersion::OpenFlow12 => "OpenFlow12",
            OfVersion::OpenFlow13 => "OpenFlow13",
            OfVersion::OpenFlow14 => "OpenFlow14",
            OfVersion::OpenFlow15 => "OpenFlow15",
        }
    }
}

/// `Bridge.fail_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// No flows but the controller's, even when it is away: what an SDN bridge wants.
    Secure,
    /// Falls back to a learning switch without a controller.
    Standalone,
}

impl FailMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FailMode::Secure => "secure",
            FailMode::Standalone => "standalone",
        }
    }
}

/// Desired settings of a bridge wyvern owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    pub datapath_type: DatapathType,
    pub protocols: Vec<OfVersion>,
    pub fail_mode: FailMode,
    /// OVS controller target (`tcp:127.0.0.1:6653`, `unix:PATH`); `None` for no controller.
    pub controller: Option<String>,
}

impl BridgeConfig {
    /// OpenFlow 1.3 and 1.5, fail-mode secure: what the pipeline needs.
    pub fn new(datapath_type: DatapathType, controller: Option<&str>) -> Self {
        Self {
            datapath_type,
            protocols: vec![OfVersion::OpenFlow13, OfVersion::OpenFlow15],
            fail_mode: FailMode::Secure,
            controller: controller.map(str::to_owned),
        }
    }
}

/// What `ensure_bridge` had to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BridgeOutcome {
    Created,
    /// The bridge existed; these columns were corrected.
    Updated(Vec<&'static str>),
    Unchanged,
}

/// `Interface.type`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum InterfaceType {
    /// A kernel (or, on netdev bridges, AF_PACKET) device; the empty string in the database.
    System,
    Internal,
    Dummy,
    Tap,
    Patch,
    Vxlan,
    Geneve,
    Other(String),
}

impl InterfaceType {
    pub fn as_str(&self) -> &str {
        match self {
            InterfaceType::System => "",
            InterfaceType::Internal => "internal",
            InterfaceType::Dummy => "dummy",
            InterfaceType::Tap => "tap",
            InterfaceType::Patch => "patch",
            InterfaceType::Vxlan => "vxlan",
            InterfaceType::Geneve => "geneve",
            InterfaceType::Other(s) => s,
        }
    }

    pub fn from_db(s: &str) -> Self {
        match s {
            "" | "system" => InterfaceType::System,
            "internal" => InterfaceType::Internal,
            "dummy" => InterfaceType::Dummy,
            "tap" => InterfaceType::Tap,
            "patch" => InterfaceType::Patch,
            "vxlan" => InterfaceType::Vxlan,
            "geneve" => InterfaceType::Geneve,
            other => InterfaceType::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for InterfaceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identity of this host as the local OVS knows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChassisInfo {
    /// `Open_vSwitch.external_ids:system-id` (OVN's chassis name).
    pub system_id: Option<String>,
    /// `Open_vSwitch.external_ids:hostname`.
    pub hostname: Option<String>,
    pub ovs_version: Option<String>,
}

fn client_err(action: &str) -> impl FnOnce(ClientError) -> VswitchError + '_ {
    move |source| VswitchError::Client {
        action: action.to_owned(),
        source,
    }
}

fn datum_err(action: &str) -> impl FnOnce(DatumError) -> VswitchError + '_ {
    move |source| VswitchError::Datum {
        action: action.to_owned(),
        source,
    }
}

/// The `rows` of the `index`th result of a transaction.
fn rows<'a>(results: &'a [Value], index: usize, action: &str) -> Result<&'a [Value], VswitchError> {
    results
        .get(index)
        .and_then(|r| r.get("rows"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .ok_or_else(|| VswitchError::MissingResult {
            action: action.to_owned(),
            index,
        })
}

fn count(results: &[Value], index: usize) -> u64 {
    results
        .get(index)
        .and_then(|r| r.get("count"))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

fn row(pairs: impl IntoIterator<Item = (&'static str, Value)>) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn col<'a>(row: &'a Value, name: &str) -> &'a Value {
    row.get(name).unwrap_or(&Value::Null)
}

/// Creates bridge `name` with `cfg` if it does not exist (with its internal port and
/// interface, listed in `Open_vSwitch.bridges`), otherwise corrects the settings that
/// differ. Idempotent: a second call with the same config changes nothing.
pub async fn ensure_bridge(
    client: &Client,
    name: &str,
    cfg: &BridgeConfig,
) -> Result<BridgeOutcome, VswitchError> {
    let action = format!("ensure bridge {name}");
    let read = [
        Operation::select(DB, vec![], &["_uuid"]),
        Operation::select(
            "Bridge",
            vec![Condition::eq("name", name)],
            &[
                "_uuid",
                "datapath_type",
                "protocols",
                "fail_mode",
                "controller",
            ],
        ),
        Operation::select("Controller", vec![], &["_uuid", "target"]),
    ];
    let res = client
        .transact(DB, &read)
        .await
        .map_err(client_err(&action))?;
    let ovs_rows = rows(&res, 0, &action)?;
    let bridge_rows = rows(&res, 1, &action)?;
    let controllers: BTreeMap<Uuid, String> = rows(&res, 2, &action)?
        .iter()
        .map(|r| {
            let uuid = parse_uuid("_uuid", col(r, "_uuid"))?;
            let target = parse_opt_string("target", col(r, "target"))?.unwrap_or_default();
            Ok((uuid, target))
        })
        .collect::<Result<_, DatumError>>()
        .map_err(datum_err(&action))?;
    let protocols = set(cfg.protocols.iter().map(|p| json!(p.as_str())));

    let Some(bridge) = bridge_rows.first() else {
        let mut ops = vec![
            Operation::wait_none("Bridge", vec![Condition::eq("name", name)], "name"),
            Operation::insert(
                "Interface",
                row([("name", json!(name)), ("type", json!("internal"))]),
                Some("iface"),
            ),
            Operation::insert(
                "Port",
                row([("name", json!(name)), ("interfaces", named_uuid("iface"))]),
                Some("port"),
            ),
        ];
        let mut br = row([
            ("name", json!(name)),
            ("ports", set([named_uuid("port")])),
            ("datapath_type", json!(cfg.datapath_type.as_str())),
            ("protocols", protocols),
            ("fail_mode", json!(cfg.fail_mode.as_str())),
        ]);
        if let Some(target) = &cfg.controller {
            ops.push(Operation::insert(
                "Controller",
                row([("target", json!(target))]),
                Some("ctl"),
            ));
            br.insert("controller".into(), set([named_uuid("ctl")]));
        }
        ops.push(Operation::insert("Bridge", br, Some("br")));
        // A database nobody initialised (`ovs-vsctl init`) has no Open_vSwitch row yet.
        match ovs_rows.first() {
            Some(ovs) => {
                let ovs_uuid =
                    parse_uuid("_uuid", col(ovs, "_uuid")).map_err(datum_err(&action))?;
                ops.push(Operation::mutate(
                    DB,
                    vec![Condition::uuid(ovs_uuid)],
                    vec![Mutation::new(
                        "bridges",
                        Mutator::Insert,
                        set([named_uuid("br")]),
                    )],
                ));
            }
            None => ops.push(Operation::insert(
                DB,
                row([("bridges", set([named_uuid("br")]))]),
                None,
            )),
        }
        client
            .transact(DB, &ops)
            .await
            .map_err(client_err(&action))?;
        return Ok(BridgeOutcome::Created);
    };

    let uuid = parse_uuid("_uuid", col(bridge, "_uuid")).map_err(datum_err(&action))?;
    let mut update = Map::new();
    let mut changed = Vec::new();
    let mut ops = Vec::new();
    let dp = parse_opt_string("datapath_type", col(bridge, "datapath_type"))
        .map_err(datum_err(&action))?
        .unwrap_or_default();
    if !cfg.datapath_type.matches(&dp) {
        update.insert("datapath_type".into(), json!(cfg.datapath_type.as_str()));
        changed.push("datapath_type");
    }
    let mut have =
        parse_string_set("protocols", col(bridge, "protocols")).map_err(datum_err(&action))?;
    have.sort();
    let mut want: Vec<String> = cfg
        .protocols
        .iter()
        .map(|p| p.as_str().to_owned())
        .collect();
    want.sort();
    want.dedup();
    if have != want {
        update.insert("protocols".into(), protocols);
        changed.push("protocols");
    }
    let fail_mode =
        parse_opt_string("fail_mode", col(bridge, "fail_mode")).map_err(datum_err(&action))?;
    if fail_mode.as_deref() != Some(cfg.fail_mode.as_str()) {
        update.insert("fail_mode".into(), json!(cfg.fail_mode.as_str()));
        changed.push("fail_mode");
    }
    let current: Vec<&str> = parse_uuid_set("controller", col(bridge, "controller"))
        .map_err(datum_err(&action))?
        .iter()
        .map(|u| controllers.get(u).map(String::as_str).unwrap_or(""))
        .collect();
    let want_ctl: Vec<&str> = cfg.controller.iter().map(String::as_str).collect();
    if current != want_ctl {
        match &cfg.controller {
            Some(target) => {
                ops.push(Operation::insert(
                    "Controller",
                    row([("target", json!(target))]),
                    Some("ctl"),
                ));
                update.insert("controller".into(), set([named_uuid("ctl")]));
            }
            // The old Controller rows are unreferenced afterwards: the server collects them.
            None => {
                update.insert("controller".into(), set([]));
            }
        }
        changed.push("controller");
    }
    if changed.is_empty() {
        return Ok(BridgeOutcome::Unchanged);
    }
    ops.push(Operation::update(
        "Bridge",
        vec![Condition::uuid(uuid)],
        update,
    ));
    client
        .transact(DB, &ops)
        .await
        .map_err(client_err(&action))?;
    Ok(BridgeOutcome::Updated(changed))
}

/// Adds port `name` (one interface of `iface_type`, with `options` and `external_ids`) to
/// `bridge`. Fails with `PortExists` if the name is taken, `BridgeNotFound` if the bridge
/// is missing (nothing is left behind then: unreferenced rows are collected).
pub async fn add_port(
    client: &Client,
    bridge: &str,
    name: &str,
    iface_type: &InterfaceType,
    options: &BTreeMap<String, String>,
    external_ids: &BTreeMap<String, String>,
) -> Result<(), VswitchError> {
    let action = format!("add port {name} to {bridge}");
    let ops = [
        Operation::wait_none("Port", vec![Condition::eq("name", name)], "name"),
        Operation::insert(
            "Interface",
            row([
                ("name", json!(name)),
                ("type", json!(iface_type.as_str())),
                (
                    "options",
                    string_map(options.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
                ),
                (
                    "external_ids",
                    string_map(external_ids.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
                ),
            ]),
            Some("iface"),
        ),
        Operation::insert(
            "Port",
            row([("name", json!(name)), ("interfaces", named_uuid("iface"))]),
            Some("port"),
        ),
        Operation::mutate(
            "Bridge",
            vec![Condition::eq("name", bridge)],
            vec![Mutation::new(
                "ports",
                Mutator::Insert,
                set([named_uuid("port")]),
            )],
        ),
    ];
    let res = match client.transact(DB, &ops).await {
        Ok(res) => res,
        Err(ClientError::Transact { index: 0, .. }) => {
            return Err(VswitchError::PortExists {
                port: name.to_owned(),
            })
        }
        Err(e) => return Err(client_err(&action)(e)),
    };
    if count(&res, 3) == 0 {
        return Err(VswitchError::BridgeNotFound {
            bridge: bridge.to_owned(),
        });
    }
    Ok(())
}

/// Removes port `name` from `bridge`; its Port and Interface rows go with it. Returns
/// whether there was such a port.
pub async fn del_port(client: &Client, bridge: &str, name: &str) -> Result<bool, VswitchError> {
    let action = format!("delete port {name} from {bridge}");
    let res = client
        .transact(
            DB,
            &[Operation::select(
                "Port",
                vec![Condition::eq("name", name)],
                &["_uuid"],
            )],
        )
        .await
        .map_err(client_err(&action))?;
    let Some(port) = rows(&res, 0, &action)?.first() else {
        return Ok(false);
    };
    let uuid = parse_uuid("_uuid", col(port, "_uuid")).map_err(datum_err(&action))?;
    let res = client
        .transact(
            DB,
            &[Operation::mutate(
                "Bridge",
                vec![
                    Condition::eq("name", bridge),
                    Condition {
                        column: "ports".into(),
                        function: crate::ops::Function::Includes,
                        value: uuid_datum(uuid),
                    },
                ],
                vec![Mutation::new(
                    "ports",
                    Mutator::Delete,
                    set([uuid_datum(uuid)]),
                )],
            )],
        )
        .await
        .map_err(client_err(&action))?;
    Ok(count(&res, 0) > 0)
}

/// Reads the chassis identity from the `Open_vSwitch` row.
pub async fn chassis_info(client: &Client) -> Result<ChassisInfo, VswitchError> {
    let action = "read chassis info";
    let res = client
        .transact(
            DB,
            &[Operation::select(
                DB,
                vec![],
                &["external_ids", "ovs_version"],
            )],
        )
        .await
        .map_err(client_err(action))?;
    let Some(ovs) = rows(&res, 0, action)?.first() else {
        return Ok(ChassisInfo::default());
    };
    let ids =
        parse_string_map("external_ids", col(ovs, "external_ids")).map_err(datum_err(action))?;
    Ok(ChassisInfo {
        system_id: ids.get("system-id").cloned(),
        hostname: ids.get("hostname").cloned(),
        ovs_version: parse_opt_string("ovs_version", col(ovs, "ovs_version"))
            .map_err(datum_err(action))?,
    })
}
