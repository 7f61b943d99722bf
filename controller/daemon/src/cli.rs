//! The `wyvern` command line: Neutron resources over HTTP, plus `wyvern demo`.

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Map, Value};

use crate::client::{Client, ClientError, Kind};

/// wyvern: manage networks, subnets, ports and routers through wyvernd's Neutron API.
#[derive(Debug, Parser)]
#[command(name = "wyvern", version)]
pub struct Cli {
    /// Root URL of the Neutron API.
    #[arg(
        long,
        env = "WYVERN_URL",
        default_value = "http://127.0.0.1:9696",
        global = true
    )]
    pub url: String,
    /// Token sent as X-Auth-Token (wyvernd in token-file mode).
    #[arg(long, env = "WYVERN_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// Print the server's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Networks.
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Subnets (IPv4).
    #[command(subcommand)]
    Subnet(SubnetCmd),
    /// Ports.
    #[command(subcommand)]
    Port(PortCmd),
    /// Routers and their interfaces.
    #[command(subcommand)]
    Router(RouterCmd),
    /// Create the demo topology (two networks, a router joining them, three ports); safe to
    /// run again.
    Demo,
    /// One host's summary from wyvernd's /metrics (no Prometheus needed).
    Status(crate::status::StatusArgs),
    /// A cascade service's pods, routings and jobs (its admin API).
    Cascade(wyvern_cascade::cli::CascadeArgs),
    /// Plans, checkpoints and restores of projects' networks (the wyvern-checkpoint service).
    Checkpoint(wyvern_checkpoint::cli::CheckpointArgs),
}

#[derive(Debug, Subcommand)]
pub enum NetworkCmd {
    List {
        #[arg(long)]
        name: Option<String>,
    },
    Show {
        network: String,
    },
    Create {
        name: String,
        /// Create the network administratively down.
        #[arg(long)]
        disable: bool,
        #[arg(long)]
        shared: bool,
        /// Project owning the network (admin only).
        #[arg(long)]
        project: Option<String>,
    },
    Delete {
        #[arg(required = true)]
        networks: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SubnetCmd {
    List {
        /// Only subnets of this network (name or id).
        #[arg(long)]
        network: Option<String>,
    },
    Show {
        subnet: String,
    },
    Create(SubnetCreate),
    Delete {
        #[arg(required = true)]
        subnets: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct SubnetCreate {
    pub name: String,
    /// Network (name or id).
    #[arg(long)]
    pub network: String,
    /// IPv4 prefix, e.g. 10.0.1.0/24.
    #[arg(long)]
    pub cidr: String,
    /// Gateway IP, or `none` for no gateway; default: the first address.
    #[arg(long)]
    pub gateway: Option<String>,
    /// start=IP,end=IP (repeatable).
    #[arg(long = "allocation-pool")]
    pub allocation_pools: Vec<String>,
    /// DNS server IP (repeatable).
    #[arg(long = "dns-nameserver")]
    pub dns_nameservers: Vec<String>,
    /// destination=CIDR,gateway=IP (repeatable).
    #[arg(long = "host-route")]
    pub host_routes: Vec<String>,
    #[arg(long)]
    pub no_dhcp: bool,
}

#[derive(Debug, Subcommand)]
pub enum PortCmd {
    List {
        #[arg(long)]
        network: Option<String>,
        #[arg(long)]
        device_id: Option<String>,
    },
    Show {
        port: String,
    },
    Create(PortCreate),
    Delete {
        #[arg(required = true)]
        ports: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct PortCreate {
    pub name: String,
    /// Network (name or id).
    #[arg(long)]
    pub network: String,
    /// subnet=NAME_OR_ID[,ip-address=IP] (repeatable).
    #[arg(long = "fixed-ip")]
    pub fixed_ips: Vec<String>,
    #[arg(long)]
    pub mac_address: Option<String>,
    #[arg(long)]
    pub device_id: Option<String>,
    #[arg(long)]
    pub device_owner: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum RouterCmd {
    List,
    Show {
        router: String,
    },
    Create {
        name: String,
    },
    Delete {
        #[arg(required = true)]
        routers: Vec<String>,
    },
    /// Replace the router's static routes.
    SetRoutes {
        router: String,
        /// destination=CIDR,gateway=IP (repeatable; none clears the routes).
        #[arg(long = "route")]
        routes: Vec<String>,
    },
    /// Attach a subnet (the router takes its gateway IP) or an existing port.
    AddInterface(RouterIface),
    RemoveInterface(RouterIface),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["subnet", "port"])))]
pub struct RouterIface {
    /// Router (name or id).
    pub router: String,
    /// Subnet (name or id): the router takes its gateway IP.
    #[arg(long)]
    pub subnet: Option<String>,
    /// Port (name or id) to become the router's interface.
    #[arg(long)]
    pub port: Option<String>,
}

/// Errors of a CLI command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Status(#[from] crate::status::StatusError),
    #[error(transparent)]
    Cascade(#[from] wyvern_cascade::cli::CliError),
    #[error(transparent)]
    Checkpoint(#[from] wyvern_checkpoint::cli::CliError),
    #[error("failed to parse {what} {input:?}: expected {expected}")]
    BadOption {
        what: &'static str,
        input: String,
        expected: &'static str,
    },
}

/// Runs one command, printing its result on stdout.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let client = Client::new(&cli.url, cli.token.clone());
    let out = Output { json: cli.json };
    match cli.command {
        Command::Network(c) => network(&client, &out, c).await,
        Command::Subnet(c) => subnet(&client, &out, c).await,
        Command::Port(c) => port(&client, &out, c).await,
        Command::Router(c) => router(&client, &out, c).await,
        Command::Demo => demo(&client, &out).await,
        Command::Status(a) => Ok(crate::status::run(&a, cli.json).await?),
        Command::Cascade(a) => Ok(wyvern_cascade::cli::run(a, cli.json).await?),
        Command::Checkpoint(a) => Ok(wyvern_checkpoint::cli::run(a, cli.token.clone()).await?),
    }
}

async fn network(client: &Client, out: &Output, cmd: NetworkCmd) -> Result<(), CliError> {
    let k = Kind::Network;
    match cmd {
        NetworkCmd::List { name } => {
            let q = name
                .map(|n| format!("name={}", crate::client::url_encode(&n)))
                .unwrap_or_default();
            out.list(k, &client.list(k, &q).await?);
        }
        NetworkCmd::Show { network } => out.one(&client.resolve(k, &network).await?),
        NetworkCmd::Create {
            name,
            disable,
            shared,
            project,
        } => {
            let mut a = Map::new();
            a.insert("name".into(), json!(name));
            a.insert("admin_state_up".into(), json!(!disable));
            a.insert("shared".into(), json!(shared));
            if let Some(p) = project {
                a.insert("project_id".into(), json!(p));
            }
            out.one(&client.create(k, a).await?);
        }
        NetworkCmd::Delete { networks } => delete_all(client, k, &networks).await?,
    }
    Ok(())
}

async fn subnet(client: &Client, out: &Output, cmd: SubnetCmd) -> Result<(), CliError> {
    let k = Kind::Subnet;
    match cmd {
        SubnetCmd::List { network } => {
            let q = match network {
                Some(n) => format!(
                    "network_id={}",
                    id_of(&client.resolve(Kind::Network, &n).await?)
                ),
                None => String::new(),
            };
            out.list(k, &client.list(k, &q).await?);
        }
        SubnetCmd::Show { subnet } => out.one(&client.resolve(k, &subnet).await?),
        SubnetCmd::Create(c) => {
            let net = client.resolve(Kind::Network, &c.network).await?;
            let attrs = subnet_attrs(&c, &id_of(&net))?;
            out.one(&client.create(k, attrs).await?);
        }
        SubnetCmd::Delete { subnets } => delete_all(client, k, &subnets).await?,
    }
    Ok(())
}

/// The create body of `wyvern subnet create`, from its options.
pub fn subnet_attrs(c: &SubnetCreate, network_id: &str) -> Result<Map<String, Value>, CliError> {
    let mut a = Map::new();
    a.insert("name".into(), json!(c.name));
    a.insert("network_id".into(), json!(network_id));
    a.insert("ip_version".into(), json!(4));
    a.insert("cidr".into(), json!(c.cidr));
    match c.gateway.as_deref() {
        Some("none") => {
            a.insert("gateway_ip".into(), Value::Null);
        }
        Some(gw) => {
            a.insert("gateway_ip".into(), json!(gw));
        }
        None => {}
    }
    if !c.allocation_pools.is_empty() {
        let pools = c
            .allocation_pools
            .iter()
            .map(|p| {
                let kv = key_values(p, "allocation pool", "start=IP,end=IP", &["start", "end"])?;
                Ok(Value::Object(kv))
            })
            .collect::<Result<Vec<_>, CliError>>()?;
        a.insert("allocation_pools".into(), Value::Array(pools));
    }
    if !c.dns_nameservers.is_empty() {
        a.insert("dns_nameservers".into(), json!(c.dns_nameservers));
    }
    if !c.host_routes.is_empty() {
        a.insert(
            "host_routes".into(),
            Value::Array(routes(&c.host_routes, "host route")?),
        );
    }
    if c.no_dhcp {
        a.insert("enable_dhcp".into(), json!(false));
    }
    Ok(a)
}

/// `destination=CIDR,gateway=IP` options to Neutron's `{"destination", "nexthop"}` shape.
fn routes(items: &[String], what: &'static str) -> Result<Vec<Value>, CliError> {
    items
        .iter()
        .map(|r| {
            let kv = key_values(
                r,
                what,
                "destination=CIDR,gateway=IP",
                &["destination", "gateway"],
            )?;
            Ok(json!({ "destination": kv["destination"], "nexthop": kv["gateway"] }))
        })
        .collect()
}

/// Parses `k1=v1,k2=v2` where every key in `keys` must appear exactly once.
fn key_values(
    input: &str,
    what: &'static str,
    expected: &'static str,
    keys: &[&str],
) -> Result<Map<String, Value>, CliError> {
    let bad = || CliError::BadOption {
        what,
        input: input.to_owned(),
        expected,
    };
    let mut m = Map::new();
    for part in input.split(',') {
        let (k, v) = part.split_once('=').ok_or_else(bad)?;
        if !keys.contains(&k) || m.insert(k.to_owned(), json!(v)).is_some() {
            return Err(bad());
        }
    }
    if m.len() != keys.len() {
        return Err(bad());
    }
    Ok(m)
}

async fn port(client: &Client, out: &Output, cmd: PortCmd) -> Result<(), CliError> {
    let k = Kind::Port;
    match cmd {
        PortCmd::List { network, device_id } => {
            let mut q = Vec::new();
            if let Some(n) = network {
                q.push(format!(
                    "network_id={}",
                    id_of(&client.resolve(Kind::Network, &n).await?)
                ));
            }
            if let Some(d) = device_id {
                q.push(format!("device_id={}", crate::client::url_encode(&d)));
            }
            out.list(k, &client.list(k, &q.join("&")).await?);
        }
        PortCmd::Show { port } => out.one(&client.resolve(k, &port).await?),
        PortCmd::Create(c) => {
            let net = client.resolve(Kind::Network, &c.network).await?;
            let mut a = Map::new();
            a.insert("name".into(), json!(c.name));
            a.insert("network_id".into(), json!(id_of(&net)));
            if !c.fixed_ips.is_empty() {
                let mut ips = Vec::new();
                for f in &c.fixed_ips {
                    ips.push(fixed_ip(client, f).await?);
                }
                a.insert("fixed_ips".into(), Value::Array(ips));
            }
            for (key, v) in [
                ("mac_address", &c.mac_address),
                ("device_id", &c.device_id),
                ("device_owner", &c.device_owner),
            ] {
                if let Some(v) = v {
                    a.insert(key.into(), json!(v));
                }
            }
            out.one(&client.create(k, a).await?);
        }
        PortCmd::Delete { ports } => delete_all(client, k, &ports).await?,
    }
    Ok(())
}

/// `subnet=NAME_OR_ID[,ip-address=IP]` to `{"subnet_id", "ip_address"}`.
async fn fixed_ip(client: &Client, input: &str) -> Result<Value, CliError> {
    let bad = || CliError::BadOption {
        what: "fixed IP",
        input: input.to_owned(),
        expected: "subnet=NAME_OR_ID[,ip-address=IP]",
    };
    let mut out = Map::new();
    for part in input.split(',') {
        match part.split_once('=') {
            Some(("subnet", s)) => {
                let sub = client.resolve(Kind::Subnet, s).await?;
                out.insert("subnet_id".into(), json!(id_of(&sub)));
            }
            Some(("ip-address", ip)) => {
                out.insert("ip_address".into(), json!(ip));
            }
            _ => return Err(bad()),
        }
    }
    if out.is_empty() {
        return Err(bad());
    }
    Ok(Value::Object(out))
}

async fn router(client: &Client, out: &Output, cmd: RouterCmd) -> Result<(), CliError> {
    let k = Kind::Router;
    match cmd {
        RouterCmd::List => out.list(k, &client.list(k, "").await?),
        RouterCmd::Show { router } => out.one(&client.resolve(k, &router).await?),
        RouterCmd::Create { name } => {
            let mut a = Map::new();
            a.insert("name".into(), json!(name));
            out.one(&client.create(k, a).await?);
        }
        RouterCmd::Delete { routers } => delete_all(client, k, &routers).await?,
        RouterCmd::SetRoutes { router, routes: r } => {
            let id = id_of(&client.resolve(k, &router).await?);
            let mut a = Map::new();
            a.insert("routes".into(), Value::Array(routes(&r, "route")?));
            out.one(&client.update(k, &id, a).await?);
        }
        RouterCmd::AddInterface(i) => {
            let v = iface(client, &i, true).await?;
            out.raw(&v);
        }
        RouterCmd::RemoveInterface(i) => {
            let v = iface(client, &i, false).await?;
            out.raw(&v);
        }
    }
    Ok(())
}

async fn iface(client: &Client, i: &RouterIface, add: bool) -> Result<Value, CliError> {
    let router_id = id_of(&client.resolve(Kind::Router, &i.router).await?);
    let body = match (&i.subnet, &i.port) {
        (Some(s), _) => json!({ "subnet_id": id_of(&client.resolve(Kind::Subnet, s).await?) }),
        (None, Some(p)) => json!({ "port_id": id_of(&client.resolve(Kind::Port, p).await?) }),
        (None, None) => {
            return Err(CliError::BadOption {
                what: "router interface",
                input: String::new(),
                expected: "--subnet or --port",
            })
        }
    };
    Ok(client.router_interface(&router_id, add, body).await?)
}

async fn delete_all(client: &Client, k: Kind, names: &[String]) -> Result<(), CliError> {
    for n in names {
        let id = id_of(&client.resolve(k, n).await?);
        client.delete(k, &id).await?;
        println!("deleted {} {id}", k.singular());
    }
    Ok(())
}

fn id_of(v: &Value) -> String {
    v.get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// The names the demo topology uses; `wyvern demo` finds them again by these names.
pub mod demo_names {
    pub const NETWORKS: [(&str, &str, &str, &str); 2] = [
        ("demo-net1", "demo-subnet1", "10.0.1.0/24", "10.0.1.1"),
        ("demo-net2", "demo-subnet2", "10.0.2.0/24", "10.0.2.1"),
    ];
    pub const ROUTER: &str = "demo-router";
    /// Port name and the index of its network in `NETWORKS`.
    pub const PORTS: [(&str, usize); 3] = [("demo-vm1", 0), ("demo-vm2", 0), ("demo-vm3", 1)];
}

/// Finds a resource by name or creates it; says which on stdout.
async fn ensure(
    client: &Client,
    k: Kind,
    name: &str,
    attrs: Map<String, Value>,
) -> Result<Value, CliError> {
    let mut found = client.find_by_name(k, name).await?;
    match found.len() {
        0 => {
            let v = client.create(k, attrs).await?;
            println!("created {} {name} ({})", k.singular(), id_of(&v));
            Ok(v)
        }
        1 => {
            let v = found.remove(0);
            println!("exists  {} {name} ({})", k.singular(), id_of(&v));
            Ok(v)
        }
        count => Err(ClientError::Ambiguous {
            kind: k.singular(),
            name: name.to_owned(),
            count,
        }
        .into()),
    }
}

async fn demo(client: &Client, out: &Output) -> Result<(), CliError> {
    use demo_names::*;
    let mut subnet_ids = Vec::new();
    let mut net_ids = Vec::new();
    for (net_name, sub_name, cidr, gw) in NETWORKS {
        let mut a = Map::new();
        a.insert("name".into(), json!(net_name));
        let net = ensure(client, Kind::Network, net_name, a).await?;
        let mut a = Map::new();
        a.insert("name".into(), json!(sub_name));
        a.insert("network_id".into(), json!(id_of(&net)));
        a.insert("ip_version".into(), json!(4));
        a.insert("cidr".into(), json!(cidr));
        a.insert("gateway_ip".into(), json!(gw));
        let sub = ensure(client, Kind::Subnet, sub_name, a).await?;
        net_ids.push(id_of(&net));
        subnet_ids.push(id_of(&sub));
    }
    let mut a = Map::new();
    a.insert("name".into(), json!(ROUTER));
    let router = ensure(client, Kind::Router, ROUTER, a).await?;
    let router_id = id_of(&router);
    let attached = client
        .list(Kind::Port, &format!("device_id={router_id}"))
        .await?;
    for sub_id in &subnet_ids {
        let has = attached.iter().any(|p| {
            p.get("fixed_ips")
                .and_then(Value::as_array)
                .is_some_and(|ips| {
                    ips.iter()
                        .any(|ip| ip.get("subnet_id").and_then(Value::as_str) == Some(sub_id))
                })
        });
        if has {
            println!("exists  router interface on subnet {sub_id}");
        } else {
            client
                .router_interface(&router_id, true, json!({ "subnet_id": sub_id }))
                .await?;
            println!("added   router interface on subnet {sub_id}");
        }
    }
    for (port_name, net_idx) in PORTS {
        let mut a = Map::new();
        a.insert("name".into(), json!(port_name));
        a.insert("network_id".into(), json!(net_ids[net_idx]));
        ensure(client, Kind::Port, port_name, a).await?;
    }
    println!();
    out.list(Kind::Network, &client.list(Kind::Network, "").await?);
    out.list(Kind::Subnet, &client.list(Kind::Subnet, "").await?);
    out.list(Kind::Router, &client.list(Kind::Router, "").await?);
    out.list(Kind::Port, &client.list(Kind::Port, "").await?);
    Ok(())
}

/// Prints resources as tables or JSON.
struct Output {
    json: bool,
}

impl Output {
    fn columns(k: Kind) -> &'static [&'static str] {
        match k {
            Kind::Network => &["id", "name", "status", "subnets"],
            Kind::Subnet => &["id", "name", "network_id", "cidr", "gateway_ip"],
            Kind::Port => &[
                "id",
                "name",
                "network_id",
                "mac_address",
                "fixed_ips",
                "device_owner",
            ],
            Kind::Router => &["id", "name", "status", "routes"],
        }
    }

    fn list(&self, k: Kind, items: &[Value]) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(items).unwrap_or_default()
            );
            return;
        }
        let cols = Self::columns(k);
        let rows: Vec<Vec<String>> = items
            .iter()
            .map(|v| cols.iter().map(|c| cell(v.get(*c))).collect())
            .collect();
        print!("{}", table(cols, &rows));
    }

    fn one(&self, v: &Value) {
        if self.json {
            println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
            return;
        }
        let rows: Vec<Vec<String>> = match v.as_object() {
            Some(m) => m
                .iter()
                .map(|(k, v)| vec![k.clone(), cell(Some(v))])
                .collect(),
            None => vec![vec![String::new(), v.to_string()]],
        };
        print!("{}", table(&["field", "value"], &rows));
    }

    fn raw(&self, v: &Value) {
        if self.json {
            println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        } else {
            self.one(v);
        }
    }
}

/// One table cell: strings bare, lists of IPs and routes compact, everything else as JSON.
fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::Object(m) if m.contains_key("ip_address") => m
                    .get("ip_address")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                Value::Object(m) if m.contains_key("destination") => format!(
                    "{}->{}",
                    m.get("destination")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                    m.get("nexthop").and_then(Value::as_str).unwrap_or_default()
                ),
                other => cell(Some(other)),
            })
            .collect::<Vec<_>>()
            .join(", "),
        Some(other) => other.to_string(),
    }
}

fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let sep = widths
        .iter()
        .map(|w| "-".repeat(w + 2))
        .collect::<Vec<_>>()
        .join("+");
    let line = |cells: &mut dyn Iterator<Item = String>| {
        let parts: Vec<String> = cells
            .zip(&widths)
            .map(|(c, w)| format!(" {c:<w$} "))
            .collect();
        format!("|{}|\n", parts.join("|"))
    };
    let mut out = format!("+{sep}+\n");
    out += &line(&mut headers.iter().map(|h| h.to_string()));
    out += &format!("+{sep}+\n");
    for r in rows {
        out += &line(&mut r.iter().cloned());
    }
    out += &format!("+{sep}+\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_options_map_to_neutron_fields() {
        let c = SubnetCreate {
            name: "s".into(),
            network: "n".into(),
            cidr: "10.0.0.0/24".into(),
            gateway: Some("none".into()),
            allocation_pools: vec!["start=10.0.0.10,end=10.0.0.20".into()],
            dns_nameservers: vec!["8.8.8.8".into()],
            host_routes: vec!["destination=10.1.0.0/16,gateway=10.0.0.254".into()],
            no_dhcp: true,
        };
        let a = Value::Object(subnet_attrs(&c, "NET").unwrap());
        assert_eq!(a["gateway_ip"], Value::Null);
        assert_eq!(
            a["allocation_pools"],
            json!([{"start": "10.0.0.10", "end": "10.0.0.20"}])
        );
        assert_eq!(
            a["host_routes"],
            json!([{"destination": "10.1.0.0/16", "nexthop": "10.0.0.254"}])
        );
        assert_eq!(a["enable_dhcp"], json!(false));
        assert_eq!(a["network_id"], json!("NET"));
    }

    #[test]
    fn malformed_key_values_are_refused() {
        for bad in ["start=1", "start=1,end=2,end=3", "begin=1,end=2", "start"] {
            assert!(
                key_values(bad, "pool", "x", &["start", "end"]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn tables_align_columns() {
        let t = table(&["a", "bb"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(
            t,
            "+-----+----+\n| a   | bb |\n+-----+----+\n| xxx | y  |\n+-----+----+\n"
        );
    }
}
