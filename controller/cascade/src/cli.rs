//! `wyvern cascade ...`: pods, routings and jobs through the admin API. The `wyvern` binary
//! embeds [`CascadeArgs`] as a subcommand and calls [`run`].

use clap::{Args, Subcommand};
use serde_json::{json, Value};

/// Manage a cascade service: pods (bottom sites), routings and jobs.
#[derive(Debug, Args)]
pub struct CascadeArgs {
    /// Root URL of the cascade's admin API.
    #[arg(
        long,
        env = "WYVERN_CASCADE_URL",
        default_value = "http://127.0.0.1:19999"
    )]
    pub admin_url: String,
    #[command(subcommand)]
    pub command: CascadeCmd,
}

#[derive(Debug, Subcommand)]
pub enum CascadeCmd {
    /// Bottom sites.
    #[command(subcommand)]
    Pod(PodCmd),
    /// Top id <-> bottom id per pod.
    #[command(subcommand)]
    Routing(RoutingCmd),
    /// Asynchronous bottom work.
    #[command(subcommand)]
    Job(JobCmd),
}

#[derive(Debug, Subcommand)]
pub enum PodCmd {
    List,
    Show {
        pod: String,
    },
    Create {
        /// Region name; ports whose binding:host_id is `HOST@REGION` or `REGION` go here.
        #[arg(long)]
        region_name: String,
        /// Availability zone (also matched by binding:host_id).
        #[arg(long, default_value = "")]
        az_name: String,
        #[arg(long, default_value = "")]
        dc_name: String,
        /// The bottom wyvernd's Neutron API, e.g. http://10.0.0.2:9696.
        #[arg(long)]
        api_url: String,
        /// Admin token for the bottom API (X-Auth-Token).
        #[arg(long)]
        token: Option<String>,
    },
    /// Change a pod's endpoint (a site moved).
    Set {
        pod: String,
        #[arg(long)]
        api_url: String,
    },
    Delete {
        pod: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RoutingCmd {
    List {
        #[arg(long)]
        pod_id: Option<String>,
        #[arg(long)]
        resource_type: Option<String>,
        #[arg(long)]
        top_id: Option<String>,
    },
    Show {
        routing: String,
    },
    Delete {
        routing: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum JobCmd {
    List {
        /// New, Running, Success or Fail.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        pod_id: Option<String>,
    },
    Show {
        job: String,
    },
    /// Run a finished or failed job again.
    Redo {
        job: String,
    },
    Delete {
        job: String,
    },
}

/// Why a cascade command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("failed to reach the cascade admin API at {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the cascade admin API refused {what}: HTTP {status}: {body}")]
    Refused {
        what: String,
        status: u16,
        body: String,
    },
}

struct Admin {
    http: reqwest::Client,
    base: String,
}

impl Admin {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, CliError> {
        let url = format!("{}{path}", self.base.trim_end_matches('/'));
        let mut req = self.http.request(method.clone(), &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let http = |source| CliError::Http {
            url: url.clone(),
            source,
        };
        let resp = req.send().await.map_err(http)?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(http)?;
        if !(200..300).contains(&status) {
            return Err(CliError::Refused {
                what: format!("{method} {path}"),
                status,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            });
        }
        Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }
}

fn query(pairs: &[(&str, &Option<String>)]) -> String {
    let q: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
        .collect();
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

fn print_list(list: &Value, json_out: bool, cols: &[&str]) {
    if json_out {
        println!("{}", serde_json::to_string_pretty(list).unwrap_or_default());
        return;
    }
    println!("{}", cols.join("\t"));
    for item in list.as_array().into_iter().flatten() {
        let row: Vec<String> = cols
            .iter()
            .map(|c| match &item[*c] {
                Value::String(s) => s.clone(),
                Value::Null => match &item["resource"] {
                    Value::Object(m) => m
                        .iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(","),
                    _ => String::new(),
                },
                other => other.to_string(),
            })
            .collect();
        println!("{}", row.join("\t"));
    }
}

fn print_one(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Runs one `wyvern cascade` command; `json_out` prints lists as JSON.
pub async fn run(args: CascadeArgs, json_out: bool) -> Result<(), CliError> {
    use reqwest::Method;
    let a = Admin {
        http: reqwest::Client::new(),
        base: args.admin_url,
    };
    match args.command {
        CascadeCmd::Pod(c) => match c {
            PodCmd::List => {
                let v = a.call(Method::GET, "/v1.0/pods", None).await?;
                print_list(
                    &v["pods"],
                    json_out,
                    &["pod_id", "region_name", "az_name", "api_url"],
                );
            }
            PodCmd::Show { pod } => print_one(
                &a.call(Method::GET, &format!("/v1.0/pods/{pod}"), None)
                    .await?["pod"],
            ),
            PodCmd::Create {
                region_name,
                az_name,
                dc_name,
                api_url,
                token,
            } => {
                let body = json!({"pod": {"region_name": region_name, "az_name": az_name,
                    "dc_name": dc_name, "api_url": api_url, "token": token}});
                print_one(&a.call(Method::POST, "/v1.0/pods", Some(body)).await?["pod"]);
            }
            PodCmd::Set { pod, api_url } => {
                let body = json!({"pod": {"api_url": api_url}});
                let path = format!("/v1.0/pods/{pod}");
                print_one(&a.call(Method::PUT, &path, Some(body)).await?["pod"]);
            }
            PodCmd::Delete { pod } => {
                a.call(Method::DELETE, &format!("/v1.0/pods/{pod}"), None)
                    .await?;
            }
        },
        CascadeCmd::Routing(c) => match c {
            RoutingCmd::List {
                pod_id,
                resource_type,
                top_id,
            } => {
                let q = query(&[
                    ("pod_id", &pod_id),
                    ("resource_type", &resource_type),
                    ("top_id", &top_id),
                ]);
                let v = a
                    .call(Method::GET, &format!("/v1.0/routings{q}"), None)
                    .await?;
                print_list(
                    &v["routings"],
                    json_out,
                    &["id", "resource_type", "top_id", "bottom_id", "pod_id"],
                );
            }
            RoutingCmd::Show { routing } => print_one(
                &a.call(Method::GET, &format!("/v1.0/routings/{routing}"), None)
                    .await?["routing"],
            ),
            RoutingCmd::Delete { routing } => {
                a.call(Method::DELETE, &format!("/v1.0/routings/{routing}"), None)
                    .await?;
            }
        },
        CascadeCmd::Job(c) => match c {
            JobCmd::List { status, pod_id } => {
                let q = query(&[("status", &status), ("pod_id", &pod_id)]);
                let v = a.call(Method::GET, &format!("/v1.0/jobs{q}"), None).await?;
                print_list(
                    &v["jobs"],
                    json_out,
                    &["id", "type", "status", "attempts", "resource"],
                );
            }
            JobCmd::Show { job } => print_one(
                &a.call(Method::GET, &format!("/v1.0/jobs/{job}"), None)
                    .await?["job"],
            ),
            JobCmd::Redo { job } => print_one(
                &a.call(Method::PUT, &format!("/v1.0/jobs/{job}"), None)
                    .await?["job"],
            ),
            JobCmd::Delete { job } => {
                a.call(Method::DELETE, &format!("/v1.0/jobs/{job}"), None)
                    .await?;
            }
        },
    }
    Ok(())
}
