//! `wyvern checkpoint ...`: plans, checkpoints, restores and verifications over the
//! checkpoint service's Karbor API. Answers are printed as the service's JSON.

use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::service::DEFAULT_PROVIDER_ID;

/// `wyvern checkpoint` options and command.
#[derive(Debug, Args)]
pub struct CheckpointArgs {
    /// Root URL of the checkpoint service.
    #[arg(
        long,
        env = "WYVERN_CHECKPOINT_URL",
        default_value = "http://127.0.0.1:8799"
    )]
    pub checkpoint_url: String,
    /// Project whose plans and checkpoints are meant (the path's `{project_id}`).
    #[arg(long, env = "WYVERN_PROJECT", default_value = "admin")]
    pub project: String,
    /// Provider (bank) to use.
    #[arg(long, default_value = DEFAULT_PROVIDER_ID)]
    pub provider: String,
    #[command(subcommand)]
    pub command: CheckpointCmd,
}

#[derive(Debug, Subcommand)]
pub enum CheckpointCmd {
    /// List the providers (banks).
    Providers,
    /// Protection plans.
    #[command(subcommand)]
    Plan(PlanCmd),
    /// List the provider's checkpoints.
    List,
    /// Show one checkpoint.
    Show { checkpoint: String },
    /// Take a checkpoint of a plan.
    Create {
        plan: String,
        /// Wait until the checkpoint is available (or failed).
        #[arg(long)]
        wait: bool,
    },
    /// Delete a checkpoint.
    Delete { checkpoint: String },
    /// Recompute every object's hash of a checkpoint.
    Verify { checkpoint: String },
    /// Restore a checkpoint (into the service's wyvernd, or --target).
    Restore {
        checkpoint: String,
        /// Neutron API URL of another wyvernd to restore into.
        #[arg(long)]
        target: Option<String>,
        /// Admin token of the target.
        #[arg(long)]
        target_token: Option<String>,
        /// Wait for the restore to finish.
        #[arg(long)]
        wait: bool,
    },
    /// Show a restore (per-resource status, mappings).
    RestoreShow { restore: String },
}

#[derive(Debug, Subcommand)]
pub enum PlanCmd {
    List,
    Show {
        plan: String,
    },
    /// Create a plan (suspended) over a project, networks and/or routers.
    Create {
        #[arg(long)]
        name: String,
        /// Protect this project's whole topology.
        #[arg(long)]
        project_resource: Option<String>,
        #[arg(long = "network")]
        networks: Vec<String>,
        #[arg(long = "router")]
        routers: Vec<String>,
    },
    Start {
        plan: String,
    },
    Suspend {
        plan: String,
    },
    Delete {
        plan: String,
    },
}

/// Errors of `wyvern checkpoint`.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("failed to reach the checkpoint service at {url}: {source}")]
    Send {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{method} {url} answered {status}: {body}")]
    Status {
        method: String,
        url: String,
        status: u16,
        body: String,
    },
    #[error("failed to decode the answer of {url}: {source}")]
    Decode {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("a plan needs at least one --project-resource, --network or --router")]
    EmptyPlan,
    #[error("timed out waiting for {0}")]
    Timeout(String),
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, CliError> {
        let url = format!("{}/v1/{}", self.base, path);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(t) = &self.token {
            req = req.header("X-Auth-Token", t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|source| CliError::Send {
            url: url.clone(),
            source,
        })?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(CliError::Status {
                method: method.to_string(),
                url,
                status: status.as_u16(),
                body,
            });
        }
        if status == reqwest::StatusCode::ACCEPTED || status == reqwest::StatusCode::NO_CONTENT {
            return Ok(Value::Null);
        }
        resp.json()
            .await
            .map_err(|source| CliError::Decode { url, source })
    }
}

fn print(v: &Value) {
    if !v.is_null() {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    }
}

async fn wait(c: &Client, path: &str, key: &str, done: &[&str]) -> Result<Value, CliError> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let v = c.call(reqwest::Method::GET, path, None).await?;
        if done.contains(&v[key]["status"].as_str().unwrap_or_default()) {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(CliError::Timeout(path.to_string()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs one `wyvern checkpoint` command; `token` is the global `--token`.
pub async fn run(args: CheckpointArgs, token: Option<String>) -> Result<(), CliError> {
    use reqwest::Method;
    let c = Client {
        http: reqwest::Client::new(),
        base: args.checkpoint_url.trim_end_matches('/').to_string(),
        token,
    };
    let p = &args.project;
    let prov = &args.provider;
    let v = match args.command {
        CheckpointCmd::Providers => c.call(Method::GET, &format!("{p}/providers"), None).await?,
        CheckpointCmd::Plan(cmd) => match cmd {
            PlanCmd::List => c.call(Method::GET, &format!("{p}/plans"), None).await?,
            PlanCmd::Show { plan } => {
                c.call(Method::GET, &format!("{p}/plans/{plan}"), None)
                    .await?
            }
            PlanCmd::Create {
                name,
                project_resource,
                networks,
                routers,
            } => {
                let mut res: Vec<Value> = Vec::new();
                if let Some(pr) = project_resource {
                    res.push(json!({"id": pr, "type": "OS::Keystone::Project", "name": pr}));
                }
                res.extend(
                    networks
                        .iter()
                        .map(|n| json!({"id": n, "type": "OS::Neutron::Network"})),
                );
                res.extend(
                    routers
                        .iter()
                        .map(|r| json!({"id": r, "type": "OS::Neutron::Router"})),
                );
                if res.is_empty() {
                    return Err(CliError::EmptyPlan);
                }
                let body = json!({"plan": {"name": name, "provider_id": prov, "resources": res, "parameters": {}}});
                c.call(Method::POST, &format!("{p}/plans"), Some(body))
                    .await?
            }
            PlanCmd::Start { plan } => {
                let body = json!({"plan": {"status": "started"}});
                c.call(Method::PUT, &format!("{p}/plans/{plan}"), Some(body))
                    .await?
            }
            PlanCmd::Suspend { plan } => {
                let body = json!({"plan": {"status": "suspended"}});
                c.call(Method::PUT, &format!("{p}/plans/{plan}"), Some(body))
                    .await?
            }
            PlanCmd::Delete { plan } => {
                c.call(Method::DELETE, &format!("{p}/plans/{plan}"), None)
                    .await?
            }
        },
        CheckpointCmd::List => {
            c.call(
                Method::GET,
                &format!("{p}/providers/{prov}/checkpoints"),
                None,
            )
            .await?
        }
        CheckpointCmd::Show { checkpoint } => {
            c.call(
                Method::GET,
                &format!("{p}/providers/{prov}/checkpoints/{checkpoint}"),
                None,
            )
            .await?
        }
        CheckpointCmd::Create { plan, wait: w } => {
            let body = json!({"checkpoint": {"plan_id": plan, "extra_info": {}}});
            let v = c
                .call(
                    Method::POST,
                    &format!("{p}/providers/{prov}/checkpoints"),
                    Some(body),
                )
                .await?;
            match (w, v["checkpoint"]["id"].as_str()) {
                (true, Some(id)) => {
                    wait(
                        &c,
                        &format!("{p}/providers/{prov}/checkpoints/{id}"),
                        "checkpoint",
                        &["available", "error"],
                    )
                    .await?
                }
                _ => v,
            }
        }
        CheckpointCmd::Delete { checkpoint } => {
            c.call(
                Method::DELETE,
                &format!("{p}/providers/{prov}/checkpoints/{checkpoint}"),
                None,
            )
            .await?
        }
        CheckpointCmd::Verify { checkpoint } => {
            let body = json!({"verification": {"provider_id": prov, "checkpoint_id": checkpoint, "parameters": {}}});
            c.call(Method::POST, &format!("{p}/verifications"), Some(body))
                .await?
        }
        CheckpointCmd::Restore {
            checkpoint,
            target,
            target_token,
            wait: w,
        } => {
            let mut r = json!({"provider_id": prov, "checkpoint_id": checkpoint, "parameters": {}});
            if let Some(t) = target {
                r["restore_target"] = json!(t);
                if let Some(tok) = target_token {
                    r["restore_auth"] = json!({"type": "token", "token": tok});
                }
            }
            let v = c
                .call(
                    Method::POST,
                    &format!("{p}/restores"),
                    Some(json!({ "restore": r })),
                )
                .await?;
            match (w, v["restore"]["id"].as_str()) {
                (true, Some(id)) => {
                    wait(
                        &c,
                        &format!("{p}/restores/{id}"),
                        "restore",
                        &["success", "fail"],
                    )
                    .await?
                }
                _ => v,
            }
        }
        CheckpointCmd::RestoreShow { restore } => {
            c.call(Method::GET, &format!("{p}/restores/{restore}"), None)
                .await?
        }
    };
    print(&v);
    Ok(())
}
