//! wyvernd configuration: every key is a command-line flag, an environment variable
//! (`WYVERN_<KEY>`) and a key of the TOML file given with `--config`.
//!
//! Precedence, highest first: flag, environment variable, config file, built-in default.
//! clap resolves flag-over-environment itself; the file and the defaults are applied after
//! it, which is why every key is an `Option` on the command line.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use clap::{Parser, ValueEnum};
use serde::Deserialize;

/// Default Neutron API address: loopback only, the standard Neutron port.
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:9696";
/// Default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "./wyvern-data";
/// OpenStack's MAC prefix, so addresses look familiar to Neutron users.
pub const DEFAULT_BASE_MAC: Mac = Mac([0xfa, 0x16, 0x3e, 0, 0, 0]);

/// How API requests are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMode {
    /// Every request is admin: for a single host, loopback only.
    #[default]
    Noauth,
    /// `X-Auth-Token` is looked up in the token file (token -> project, roles).
    TokenFile,
    /// `X-Auth-Token` is validated by Keystone v3 (`keystone_*` keys).
    Keystone,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// A MAC address, `aa:bb:cc:dd:ee:ff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mac(pub [u8; 6]);

impl FromStr for Mac {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ConfigError::BadMac(s.to_owned());
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in out.iter_mut() {
            let part = parts.next().ok_or_else(bad)?;
            if part.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Mac(out))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Errors while building the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to parse config file {path}: {source}")]
    ParseFile {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("failed to parse MAC address {0:?}: expected six hex bytes like fa:16:3e:00:00:00")]
    BadMac(String),
    #[error("failed to configure auth: auth = \"token-file\" needs token_file (--token-file or WYVERN_TOKEN_FILE)")]
    MissingTokenFile,
    #[error("failed to configure the store: store = \"etcd\" needs etcd_endpoints (--etcd-endpoints or WYVERN_ETCD_ENDPOINTS)")]
    MissingEtcdEndpoints,
    #[error("failed to configure the store: etcd_cert_file and etcd_key_file go together")]
    EtcdHalfIdentity,
    #[error("failed to configure auth: auth = \"keystone\" needs {0} (--{1} or WYVERN_{2})")]
    MissingKeystone(&'static str, &'static str, &'static str),
    #[error("failed to configure P4Runtime: p4runtime needs p4info (--p4info or WYVERN_P4INFO)")]
    MissingP4Info,
    #[error("failed to configure P4Runtime: p4runtime needs ovsdb (--ovsdb), where the port bindings come from")]
    P4NeedsOvsdb,
}

/// The wyvernd command line. Every key is optional here so that the config file and the
/// defaults can fill in what neither a flag nor the environment set.
#[derive(Debug, Parser, Default)]
#[command(
    name = "wyvernd",
    version,
    about = "wyvern per-host daemon: Neutron v2.0 API over an embedded store"
)]
pub struct Args {
    /// TOML config file; its keys are the long flag names with `_` for `-`.
    #[arg(long, env = "WYVERN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory of the embedded store [default: ./wyvern-data].
    #[arg(long, env = "WYVERN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address of the Neutron API; port 0 picks a free one [default: 127.0.0.1:9696].
    #[arg(long, env = "WYVERN_API_LISTEN")]
    pub api_listen: Option<SocketAddr>,
    /// Address of Prometheus `/metrics`; port 0 picks a free one [default: 127.0.0.1:9464].
    #[arg(long, env = "WYVERN_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// How requests are authenticated [default: noauth].
    #[arg(long, env = "WYVERN_AUTH", value_enum)]
    pub auth: Option<AuthMode>,
    /// Token file for `--auth token-file` (JSON: token -> project_id, roles).
    #[arg(long, env = "WYVERN_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Keystone endpoint for `--auth keystone` (e.g. http://127.0.0.1:5000/v3).
    #[arg(long, env = "WYVERN_KEYSTONE_URL")]
    pub keystone_url: Option<String>,
    /// wyvern's service user in Keystone (needs the service or admin role).
    #[arg(long, env = "WYVERN_KEYSTONE_USERNAME")]
    pub keystone_username: Option<String>,
    /// The service user's password (prefer the config file or the environment).
    #[arg(long, env = "WYVERN_KEYSTONE_PASSWORD", hide_env_values = true)]
    pub keystone_password: Option<String>,
    /// Project of the service token [default: service].
    #[arg(long, env = "WYVERN_KEYSTONE_PROJECT_NAME")]
    pub keystone_project_name: Option<String>,
    /// Domain of the service user [default: Default].
    #[arg(long, env = "WYVERN_KEYSTONE_USER_DOMAIN_NAME")]
    pub keystone_user_domain_name: Option<String>,
    /// Domain of the service project [default: Default].
    #[arg(long, env = "WYVERN_KEYSTONE_PROJECT_DOMAIN_NAME")]
    pub keystone_project_domain_name: Option<String>,
    /// Seconds a validated token is trusted before Keystone is asked again [default: 10].
    #[arg(long, env = "WYVERN_TOKEN_CACHE_TTL")]
    pub token_cache_ttl: Option<u64>,
    /// First MAC address of generated port MACs [default: fa:16:3e:00:00:00].
    #[arg(long, env = "WYVERN_BASE_MAC")]
    pub base_mac: Option<Mac>,
    /// Log format [default: text].
    #[arg(long, env = "WYVERN_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// OVSDB server of the local Open vSwitch (`unix:PATH` or `tcp:HOST:PORT`); without it
    /// wyvernd serves the API only and programs no switch.
    #[arg(long, env = "WYVERN_OVSDB")]
    pub ovsdb: Option<String>,
    /// Integration bridge wyvern owns [default: br-int].
    #[arg(long, env = "WYVERN_BRIDGE")]
    pub bridge: Option<String>,
    /// Datapath type of the bridge when wyvern creates it [default: netdev].
    #[arg(long, env = "WYVERN_DATAPATH_TYPE", value_enum)]
    pub datapath_type: Option<DatapathKind>,
    /// Where bridges connect over OpenFlow (`tcp:IP:PORT` or `unix:PATH`) [default: tcp:127.0.0.1:6653].
    #[arg(long, env = "WYVERN_OPENFLOW_LISTEN")]
    pub openflow_listen: Option<String>,
    /// Extra OpenFlow connections for bulk syncs (thousands of flow-mods), opened to the
    /// bridge's service socket; each owner's flows stay in one atomic bundle, a bulk sync
    /// as a whole does not (docs/pipeline.md) [default: 0, off].
    #[arg(long, env = "WYVERN_OPENFLOW_LANES")]
    pub openflow_lanes: Option<usize>,
    /// The bridge's passive OpenFlow socket for the lanes [default: `<bridge>.mgmt` beside
    /// the OVSDB unix socket].
    #[arg(long, env = "WYVERN_OPENFLOW_LANE_TARGET")]
    pub openflow_lane_target: Option<String>,
    /// Routing to known ports: proactive flows, or installed on the first packet [default: proactive].
    #[arg(long, env = "WYVERN_L3_MODE", value_enum)]
    pub l3_mode: Option<L3ModeArg>,
    /// Answer ARP for every known port IP, not only router IPs [default: true].
    #[arg(long, env = "WYVERN_ARP_FOR_PORTS")]
    pub arp_for_ports: Option<bool>,
    /// DHCP lease time in seconds [default: 43200].
    #[arg(long, env = "WYVERN_DHCP_LEASE_TIME")]
    pub dhcp_lease_time: Option<u32>,
    /// DNS servers handed out on subnets that have none (comma-separated).
    #[arg(long, env = "WYVERN_DHCP_DNS", value_delimiter = ',')]
    pub dhcp_dns: Option<Vec<Ipv4Addr>>,
    /// DHCP domain name option.
    #[arg(long, env = "WYVERN_DHCP_DOMAIN")]
    pub dhcp_domain: Option<String>,
    /// Bytes of encapsulation to subtract from the network MTU in DHCP (50 for VXLAN) [default: 0].
    #[arg(long, env = "WYVERN_OVERLAY_OVERHEAD")]
    pub overlay_overhead: Option<u16>,
    /// DHCP messages per second one port may send to the controller [default: 20].
    #[arg(long, env = "WYVERN_DHCP_RATE_LIMIT")]
    pub dhcp_rate_limit: Option<u32>,
    /// DHCP messages one port may send at once before the rate limit applies [default: 40].
    #[arg(long, env = "WYVERN_DHCP_BURST")]
    pub dhcp_burst: Option<u32>,
    /// Answer relayed DHCP requests from a relay agent that is a port of the client's
    /// network, speaking from its own fixed IP [default: false].
    #[arg(long, env = "WYVERN_DHCP_ALLOW_RELAY")]
    pub dhcp_allow_relay: Option<bool>,
    /// Where the topology lives: the embedded redb file, or an etcd cluster shared by many
    /// hosts [default: redb].
    #[arg(long, env = "WYVERN_STORE", value_enum)]
    pub store: Option<StoreKind>,
    /// etcd client URLs for `--store etcd`, comma-separated (all members: requests fail over).
    #[arg(long, env = "WYVERN_ETCD_ENDPOINTS", value_delimiter = ',')]
    pub etcd_endpoints: Option<Vec<String>>,
    /// CA bundle that signed the etcd members' certificates (https endpoints).
    #[arg(long, env = "WYVERN_ETCD_CA_FILE")]
    pub etcd_ca_file: Option<PathBuf>,
    /// Client certificate for etcd mutual TLS (with --etcd-key-file).
    #[arg(long, env = "WYVERN_ETCD_CERT_FILE")]
    pub etcd_cert_file: Option<PathBuf>,
    /// Client key for etcd mutual TLS (with --etcd-cert-file).
    #[arg(long, env = "WYVERN_ETCD_KEY_FILE")]
    pub etcd_key_file: Option<PathBuf>,
    /// P4Runtime target to program beside OpenFlow (`HOST:PORT`, e.g. 127.0.0.1:9559).
    #[arg(long, env = "WYVERN_P4RUNTIME")]
    pub p4runtime: Option<String>,
    /// The P4Info (text format) of the program the target runs; needed with --p4runtime.
    #[arg(long, env = "WYVERN_P4INFO")]
    pub p4info: Option<PathBuf>,
    /// Target-specific program sent with SetForwardingPipelineConfig (bmv2 JSON) [default: none].
    #[arg(long, env = "WYVERN_P4_DEVICE_CONFIG")]
    pub p4_device_config: Option<PathBuf>,
    /// P4Runtime device id of the target [default: 1].
    #[arg(long, env = "WYVERN_DEVICE_ID")]
    pub device_id: Option<u64>,
    /// P4Runtime election id (the highest controller is primary) [default: 1].
    #[arg(long, env = "WYVERN_P4_ELECTION_ID")]
    pub p4_election_id: Option<u64>,
    /// This host's chassis name for many hosts on etcd: registered under a lease, set as
    /// `binding:host_id` on the ports it binds [default: none, a single host].
    #[arg(long, env = "WYVERN_CHASSIS_NAME")]
    pub chassis_name: Option<String>,
    /// Underlay IPv4 address other hosts send VXLAN to (with --chassis-name: the overlay).
    #[arg(long, env = "WYVERN_TUNNEL_IP")]
    pub tunnel_ip: Option<Ipv4Addr>,
    /// Offload targets this chassis advertises (comma-separated, informational).
    #[arg(long, env = "WYVERN_CHASSIS_OFFLOAD", value_delimiter = ',')]
    pub chassis_offload: Option<Vec<String>>,
    /// Seconds the chassis registration outlives a dead wyvernd [default: 10].
    #[arg(long, env = "WYVERN_CHASSIS_LEASE_TTL")]
    pub chassis_lease_ttl: Option<u64>,
    /// Milliseconds another chassis' registration must stay gone before this host believes
    /// it (drops its tunnels; as janitor, sets its ports DOWN): a lease re-granted within it
    /// after a short etcd outage changes nothing [default: 5000].
    #[arg(long, env = "WYVERN_CHASSIS_VANISH_GRACE_MS")]
    pub chassis_vanish_grace_ms: Option<u64>,
    /// Mirror the whole topology or only what local ports reach [default: selective with
    /// --chassis-name, else full].
    #[arg(long, env = "WYVERN_SYNC", value_enum)]
    pub sync: Option<SyncArg>,
}

/// The P4Runtime back end's settings (present when `p4runtime` is configured).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct P4Settings {
    pub addr: String,
    pub p4info: PathBuf,
    pub device_config: Option<PathBuf>,
    pub device_id: u64,
    pub election_id: u64,
}

/// Which store backs the topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum StoreKind {
    /// The embedded redb file in the data dir: one host.
    #[default]
    Redb,
    /// An etcd cluster: many hosts (and API servers) share one topology.
    Etcd,
}

/// The resolved store settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSettings {
    Redb,
    Etcd {
        endpoints: Vec<String>,
        ca_file: Option<PathBuf>,
        cert_file: Option<PathBuf>,
        key_file: Option<PathBuf>,
    },
}

/// Datapath type of a bridge wyvern creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum DatapathKind {
    /// The userspace datapath (what works without the kernel module).
    #[default]
    Netdev,
    /// The kernel datapath.
    System,
    /// OVS's test datapath (`ovs-vswitchd --enable-dummy`).
    Dummy,
}

/// How routed traffic to known ports is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum L3ModeArg {
    #[default]
    Proactive,
    Reactive,
}

/// How much of the topology the local controller mirrors (docs/multi-host.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyncArg {
    Full,
    Selective,
}

/// The local controller's settings (present when `ovsdb` is configured).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchSettings {
    pub ovsdb: String,
    pub bridge: String,
    pub datapath_type: DatapathKind,
    pub openflow_listen: String,
    pub openflow_lanes: usize,
    pub openflow_lane_target: Option<String>,
    pub l3_mode: L3ModeArg,
    pub arp_for_ports: bool,
    pub dhcp_lease_time: u32,
    pub dhcp_dns: Vec<Ipv4Addr>,
    pub dhcp_domain: Option<String>,
    pub overlay_overhead: u16,
    pub dhcp_rate_limit: u32,
    pub dhcp_burst: u32,
    pub dhcp_allow_relay: bool,
    /// Multi-host identity (`--chassis-name`, `--tunnel-ip`).
    pub chassis: Option<wyvern_local::chassis::ChassisConfig>,
    /// Full or selective mirror (resolved: selective by default with a chassis).
    pub sync: SyncArg,
}

/// The keys of the TOML config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub api_listen: Option<SocketAddr>,
    pub metrics_listen: Option<SocketAddr>,
    pub auth: Option<AuthMode>,
    pub token_file: Option<PathBuf>,
    pub keystone_url: Option<String>,
    pub keystone_username: Option<String>,
    pub keystone_password: Option<String>,
    pub keystone_project_name: Option<String>,
    pub keystone_user_domain_name: Option<String>,
    pub keystone_project_domain_name: Option<String>,
    pub token_cache_ttl: Option<u64>,
    pub base_mac: Option<Mac>,
    pub log_format: Option<LogFormat>,
    pub ovsdb: Option<String>,
    pub bridge: Option<String>,
    pub datapath_type: Option<DatapathKind>,
    pub openflow_listen: Option<String>,
    pub openflow_lanes: Option<usize>,
    pub openflow_lane_target: Option<String>,
    pub l3_mode: Option<L3ModeArg>,
    pub arp_for_ports: Option<bool>,
    pub dhcp_lease_time: Option<u32>,
    pub dhcp_dns: Option<Vec<Ipv4Addr>>,
    pub dhcp_domain: Option<String>,
    pub overlay_overhead: Option<u16>,
    pub dhcp_rate_limit: Option<u32>,
    pub dhcp_burst: Option<u32>,
    pub dhcp_allow_relay: Option<bool>,
    pub store: Option<StoreKind>,
    pub etcd_endpoints: Option<Vec<String>>,
    pub etcd_ca_file: Option<PathBuf>,
    pub etcd_cert_file: Option<PathBuf>,
    pub etcd_key_file: Option<PathBuf>,
    pub p4runtime: Option<String>,
    pub p4info: Option<PathBuf>,
    pub p4_device_config: Option<PathBuf>,
    pub device_id: Option<u64>,
    pub p4_election_id: Option<u64>,
    pub chassis_name: Option<String>,
    pub tunnel_ip: Option<Ipv4Addr>,
    pub chassis_offload: Option<Vec<String>>,
    pub chassis_lease_ttl: Option<u64>,
    pub chassis_vanish_grace_ms: Option<u64>,
    pub sync: Option<SyncArg>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::ParseFile {
            path: path.to_owned(),
            source,
        })
    }
}

/// The resolved configuration wyvernd runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub data_dir: PathBuf,
    pub api_listen: SocketAddr,
    /// Where `/metrics` is served (a bind failure is logged, wyvernd keeps running).
    pub metrics_listen: SocketAddr,
    pub auth: Auth,
    pub base_mac: Mac,
    pub log_format: LogFormat,
    /// `None`: API only, no switch.
    pub switch: Option<SwitchSettings>,
    pub store: StoreSettings,
    /// `None`: no P4 target.
    pub p4: Option<P4Settings>,
}

/// Resolved authentication: the token file travels with the mode that needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    NoAuth,
    TokenFile(PathBuf),
    Keystone(wyvern_api::KeystoneConfig),
}

impl Config {
    /// Resolves flags and environment (already merged by clap), then the file named by
    /// `--config`, then defaults.
    pub fn resolve(args: Args) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        Self::merge(args, file)
    }

    /// Merges command-line/environment values over file values over defaults.
    pub fn merge(args: Args, file: FileConfig) -> Result<Self, ConfigError> {
        let auth_mode = args.auth.or(file.auth).unwrap_or_default();
        let token_file = args.token_file.or(file.token_file);
        let auth = match auth_mode {
            AuthMode::Noauth => Auth::NoAuth,
            AuthMode::TokenFile => {
                Auth::TokenFile(token_file.ok_or(ConfigError::MissingTokenFile)?)
            }
            AuthMode::Keystone => {
                let missing = |k, f, e| ConfigError::MissingKeystone(k, f, e);
                let url = (args.keystone_url.clone())
                    .or(file.keystone_url.clone())
                    .ok_or(missing("keystone_url", "keystone-url", "KEYSTONE_URL"))?;
                let user = (args.keystone_username.clone())
                    .or(file.keystone_username.clone())
                    .ok_or(missing(
                        "keystone_username",
                        "keystone-username",
                        "KEYSTONE_USERNAME",
                    ))?;
                let password = (args.keystone_password.clone())
                    .or(file.keystone_password.clone())
                    .ok_or(missing(
                        "keystone_password",
                        "keystone-password",
                        "KEYSTONE_PASSWORD",
                    ))?;
                let project = (args.keystone_project_name.clone())
                    .or(file.keystone_project_name.clone())
                    .unwrap_or_else(|| "service".into());
                let mut k = wyvern_api::KeystoneConfig::new(url, user, password, project);
                if let Some(d) = (args.keystone_user_domain_name.clone())
                    .or(file.keystone_user_domain_name.clone())
                {
                    k.user_domain_name = d;
                }
                if let Some(d) = (args.keystone_project_domain_name.clone())
                    .or(file.keystone_project_domain_name.clone())
                {
                    k.project_domain_name = d;
                }
                if let Some(t) = args.token_cache_ttl.or(file.token_cache_ttl) {
                    k.cache_ttl = std::time::Duration::from_secs(t);
                }
                Auth::Keystone(k)
            }
        };
        let store = match args.store.or(file.store).unwrap_or_default() {
            StoreKind::Redb => StoreSettings::Redb,
            StoreKind::Etcd => {
                let endpoints = args
                    .etcd_endpoints
                    .or(file.etcd_endpoints)
                    .filter(|e| !e.is_empty())
                    .ok_or(ConfigError::MissingEtcdEndpoints)?;
                let cert_file = args.etcd_cert_file.or(file.etcd_cert_file);
                let key_file = args.etcd_key_file.or(file.etcd_key_file);
                if cert_file.is_some() != key_file.is_some() {
                    return Err(ConfigError::EtcdHalfIdentity);
                }
                StoreSettings::Etcd {
                    endpoints,
                    ca_file: args.etcd_ca_file.or(file.etcd_ca_file),
                    cert_file,
                    key_file,
                }
            }
        };
        let chassis = args.chassis_name.or(file.chassis_name).map(|name| {
            wyvern_local::chassis::ChassisConfig {
                name,
                tunnel_ip: args.tunnel_ip.or(file.tunnel_ip),
                offload: args
                    .chassis_offload
                    .or(file.chassis_offload)
                    .unwrap_or_default(),
                lease_ttl: std::time::Duration::from_secs(
                    args.chassis_lease_ttl
                        .or(file.chassis_lease_ttl)
                        .unwrap_or(10)
                        .max(1),
                ),
                vanish_grace: args
                    .chassis_vanish_grace_ms
                    .or(file.chassis_vanish_grace_ms)
                    .map_or(wyvern_local::chassis::DEFAULT_VANISH_GRACE, |ms| {
                        std::time::Duration::from_millis(ms)
                    }),
            }
        });
        let p4 = match args.p4runtime.or(file.p4runtime) {
            Some(addr) => {
                if args.ovsdb.is_none() && file.ovsdb.is_none() {
                    return Err(ConfigError::P4NeedsOvsdb);
                }
                Some(P4Settings {
                    addr,
                    p4info: args
                        .p4info
                        .or(file.p4info)
                        .ok_or(ConfigError::MissingP4Info)?,
                    device_config: args.p4_device_config.or(file.p4_device_config),
                    device_id: args.device_id.or(file.device_id).unwrap_or(1),
                    election_id: args.p4_election_id.or(file.p4_election_id).unwrap_or(1),
                })
            }
            None => None,
        };
        Ok(Config {
            p4,
            store,
            data_dir: args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            api_listen: args.api_listen.or(file.api_listen).unwrap_or_else(|| {
                DEFAULT_API_LISTEN
                    .parse()
                    .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9696)))
            }),
            metrics_listen: args
                .metrics_listen
                .or(file.metrics_listen)
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9464))),
            auth,
            base_mac: args.base_mac.or(file.base_mac).unwrap_or(DEFAULT_BASE_MAC),
            log_format: args.log_format.or(file.log_format).unwrap_or_default(),
            switch: args.ovsdb.or(file.ovsdb).map(|ovsdb| SwitchSettings {
                ovsdb,
                bridge: args
                    .bridge
                    .or(file.bridge)
                    .unwrap_or_else(|| "br-int".into()),
                datapath_type: args
                    .datapath_type
                    .or(file.datapath_type)
                    .unwrap_or_default(),
                openflow_listen: args
                    .openflow_listen
                    .or(file.openflow_listen)
                    .unwrap_or_else(|| "tcp:127.0.0.1:6653".into()),
                openflow_lanes: args.openflow_lanes.or(file.openflow_lanes).unwrap_or(0),
                openflow_lane_target: args.openflow_lane_target.or(file.openflow_lane_target),
                l3_mode: args.l3_mode.or(file.l3_mode).unwrap_or_default(),
                arp_for_ports: args.arp_for_ports.or(file.arp_for_ports).unwrap_or(true),
                dhcp_lease_time: args
                    .dhcp_lease_time
                    .or(file.dhcp_lease_time)
                    .unwrap_or(43_200),
                dhcp_dns: args.dhcp_dns.or(file.dhcp_dns).unwrap_or_default(),
                dhcp_domain: args.dhcp_domain.or(file.dhcp_domain),
                overlay_overhead: args.overlay_overhead.or(file.overlay_overhead).unwrap_or(0),
                dhcp_rate_limit: args.dhcp_rate_limit.or(file.dhcp_rate_limit).unwrap_or(20),
                dhcp_burst: args.dhcp_burst.or(file.dhcp_burst).unwrap_or(40),
                dhcp_allow_relay: args
                    .dhcp_allow_relay
                    .or(file.dhcp_allow_relay)
                    .unwrap_or(false),
                sync: args.sync.or(file.sync).unwrap_or(if chassis.is_some() {
                    SyncArg::Selective
                } else {
                    SyncArg::Full
                }),
                chassis,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("wyvernd").chain(argv.iter().copied())).unwrap()
    }

    #[test]
    fn etcd_store_needs_endpoints_and_whole_identities() {
        let c = Config::merge(
            parse(&[
                "--store",
                "etcd",
                "--etcd-endpoints",
                "http://a:2379,http://b:2379",
            ]),
            FileConfig::default(),
        )
        .unwrap();
        assert_eq!(
            c.store,
            StoreSettings::Etcd {
                endpoints: vec!["http://a:2379".into(), "http://b:2379".into()],
                ca_file: None,
                cert_file: None,
                key_file: None,
            }
        );
        assert!(matches!(
            Config::merge(parse(&["--store", "etcd"]), FileConfig::default()),
            Err(ConfigError::MissingEtcdEndpoints)
        ));
        assert!(matches!(
            Config::merge(
                parse(&[
                    "--store",
                    "etcd",
                    "--etcd-endpoints",
                    "https://a:2379",
                    "--etcd-cert-file",
                    "c.pem"
                ]),
                FileConfig::default()
            ),
            Err(ConfigError::EtcdHalfIdentity)
        ));
        let c = Config::merge(Args::default(), FileConfig::default()).unwrap();
        assert_eq!(c.store, StoreSettings::Redb);
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let c = Config::merge(Args::default(), FileConfig::default()).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("./wyvern-data"));
        assert_eq!(c.api_listen.to_string(), "127.0.0.1:9696");
        assert_eq!(c.metrics_listen.to_string(), "127.0.0.1:9464");
        assert_eq!(c.auth, Auth::NoAuth);
        assert_eq!(c.base_mac.to_string(), "fa:16:3e:00:00:00");
        assert_eq!(c.log_format, LogFormat::Text);
    }

    #[test]
    fn flag_beats_file_and_file_beats_default() {
        let file: FileConfig = toml::from_str(
            "data_dir = \"/srv/w\"\napi_listen = \"0.0.0.0:1000\"\nbase_mac = \"fa:16:3e:aa:00:00\"\nlog_format = \"json\"\n",
        )
        .unwrap();
        let args = parse(&["--api-listen", "127.0.0.1:2000"]);
        let c = Config::merge(args, file).unwrap();
        assert_eq!(c.api_listen.to_string(), "127.0.0.1:2000");
        assert_eq!(c.data_dir, PathBuf::from("/srv/w"));
        assert_eq!(c.base_mac, Mac([0xfa, 0x16, 0x3e, 0xaa, 0, 0]));
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn token_file_mode_needs_a_path() {
        let args = parse(&["--auth", "token-file"]);
        assert!(matches!(
            Config::merge(args, FileConfig::default()),
            Err(ConfigError::MissingTokenFile)
        ));
        let file: FileConfig =
            toml::from_str("auth = \"token-file\"\ntoken_file = \"/etc/t.json\"").unwrap();
        let c = Config::merge(Args::default(), file).unwrap();
        assert_eq!(c.auth, Auth::TokenFile(PathBuf::from("/etc/t.json")));
    }

    #[test]
    fn unknown_file_keys_and_bad_macs_are_refused() {
        assert!(toml::from_str::<FileConfig>("datadir = \"x\"").is_err());
        assert!("fa:16:3e:00:00".parse::<Mac>().is_err());
        assert!("fa:16:3e:00:00:0g".parse::<Mac>().is_err());
        assert!("fa:16:3e:00:00:00:00".parse::<Mac>().is_err());
    }
}
