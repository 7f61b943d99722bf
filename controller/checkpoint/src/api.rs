//! The Karbor v1 API under `/v1/{project_id}/`: providers, checkpoints, plans, restores,
//! protectables, triggers, scheduled operations, operation logs, verifications.
//!
//! Authentication is wyvernd's ([`wyvern_api::Auth`]: no-auth or a token file); a caller may
//! use only its own project's path unless it is an admin. Errors use wyvernd's Neutron shape
//! (`{"NeutronError": {"type", "message", "detail"}}`). Bodies are parsed by hand so that a
//! malformed body gets that shape too.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use bytes::Bytes;
use serde_json::{json, Value};
use uuid::Uuid;
use wyvern_api::{Auth, HttpError};
use wyvern_model::{RequestContext, Timestamp};

use crate::bank::CheckpointRecord;
use crate::graph::{ResourceRef, ResourceType, Snapshot};
use crate::neutron::{Endpoint, NeutronClient};
use crate::service::{timestamp, Service, ServiceError};
use crate::state::{
    OperationLog, Plan, RestoreRecord, ScheduledOperation, State as Records, Trigger,
    VerificationRecord,
};

struct App {
    svc: Arc<Service>,
    auth: Auth,
}

type ApiResult = Result<Response, ApiErr>;

impl From<ServiceError> for ApiErr {
    fn from(e: ServiceError) -> Self {
        let (status, ty) = match &e {
            ServiceError::ProviderNotFound(_) => (StatusCode::NOT_FOUND, "ProviderNotFound"),
            ServiceError::PlanNotFound(_) => (StatusCode::NOT_FOUND, "PlanNotFound"),
            ServiceError::CheckpointNotFound(_) => (StatusCode::NOT_FOUND, "CheckpointNotFound"),
            ServiceError::CheckpointNotAvailable { .. } => {
                (StatusCode::BAD_REQUEST, "CheckpointNotAvailable")
            }
            ServiceError::Invalid(_) => (StatusCode::BAD_REQUEST, "InvalidInput"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "HTTPInternalServerError"),
        };
        ApiErr(HttpError::new(status, ty, e.to_string()))
    }
}

/// Wrapper so `?` converts service errors into HTTP errors.
struct ApiErr(HttpError);

impl From<HttpError> for ApiErr {
    fn from(e: HttpError) -> Self {
        ApiErr(e)
    }
}

fn not_found(what: &str, id: &str) -> HttpError {
    HttpError::new(
        StatusCode::NOT_FOUND,
        "HTTPNotFound",
        format!("{what} {id} could not be found."),
    )
}

fn ok(v: Value) -> ApiResult {
    Ok((StatusCode::OK, Json(v)).into_response())
}

fn now() -> Timestamp {
    Timestamp(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    )
}

/// The caller, allowed on `project`'s path.
async fn caller(
    app: &App,
    headers: &HeaderMap,
    project: &str,
) -> Result<RequestContext, HttpError> {
    let ctx = app
        .auth
        .authenticate(headers, now())
        .await
        .map_err(|e| HttpError::new(e.status(), e.neutron_type(), e.to_string()))?;
    if ctx.project_id != project && !ctx.is_admin {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "PolicyNotAuthorized",
            format!(
                "project {} may not act on project {project}",
                ctx.project_id
            ),
        ));
    }
    Ok(ctx)
}

fn body(b: &Bytes, key: &str) -> Result<Value, HttpError> {
    let v: Value = serde_json::from_slice(b)
        .map_err(|e| HttpError::bad_request(format!("failed to parse the request body: {e}")))?;
    match v.get(key) {
        Some(x) if x.is_object() => Ok(x.clone()),
        _ => Err(HttpError::bad_request(format!(
            "the request body must be {{\"{key}\": {{...}}}}"
        ))),
    }
}

fn str_field(v: &Value, key: &str) -> Result<String, HttpError> {
    v[key]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| HttpError::bad_request(format!("'{key}' is required")))
}

macro_rules! handler {
    ($name:ident, |$app:ident, $headers:ident, $path:ident : $pty:ty, $body:ident| $e:expr) => {
        async fn $name(
            State($app): State<Arc<App>>,
            $headers: HeaderMap,
            Path($path): Path<$pty>,
            $body: Bytes,
        ) -> Response {
            respond($e.await)
        }
    };
}

/// The service's own records (plans, restores, triggers, ...): each belongs to one project
/// and is listed and shown the same way, so one pair of handlers serves them all.
trait Record: serde::Serialize + Clone + Send + 'static {
    /// The list answer's key (`plans`; Karbor names scheduled operations' `operations`).
    const LIST_KEY: &'static str;
    /// The show answer's key (`plan`).
    const ONE_KEY: &'static str;
    /// How a missing one is named in the 404 (`Plan`).
    const WHAT: &'static str;
    fn id(&self) -> &str;
    fn project_id(&self) -> &str;
    fn all(s: &Records) -> Vec<&Self>;
}

macro_rules! record {
    ($t:ty, $list:literal, $one:literal, $what:literal, $field:ident . $iter:ident ()) => {
        impl Record for $t {
            const LIST_KEY: &'static str = $list;
            const ONE_KEY: &'static str = $one;
            const WHAT: &'static str = $what;
            fn id(&self) -> &str {
                &self.id
            }
            fn project_id(&self) -> &str {
                &self.project_id
            }
            fn all(s: &Records) -> Vec<&Self> {
                s.$field.$iter().collect()
            }
        }
    };
}

record!(Plan, "plans", "plan", "Plan", plans.values());
record!(
    RestoreRecord,
    "restores",
    "restore",
    "Restore",
    restores.values()
);
record!(
    Trigger,
    "triggers",
    "trigger_info",
    "Trigger",
    triggers.values()
);
record!(
    ScheduledOperation,
    "operations",
    "scheduled_operation",
    "Scheduled operation",
    scheduled_operations.values()
);
record!(
    OperationLog,
    "operation_logs",
    "operation_log",
    "Operation log",
    operation_logs.iter()
);
record!(
    VerificationRecord,
    "verifications",
    "verification",
    "Verification",
    verifications.values()
);

fn to_json<T: serde::Serialize>(x: &T) -> Value {
    serde_json::to_value(x).unwrap_or(Value::Null)
}

fn respond(r: ApiResult) -> Response {
    match r {
        Ok(r) => r,
        Err(ApiErr(e)) => e.into_response(),
    }
}

/// `GET /v1/{p}/<records>`: the project's records.
async fn list<T: Record>(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(p): Path<String>,
) -> Response {
    respond(
        async {
            caller(&app, &headers, &p).await?;
            let list: Vec<Value> = app
                .svc
                .read(|s| {
                    T::all(s)
                        .into_iter()
                        .filter(|x| x.project_id() == p)
                        .map(to_json)
                        .collect()
                })
                .await;
            ok(json!({ T::LIST_KEY: list }))
        }
        .await,
    )
}

/// `GET /v1/{p}/<records>/{id}`: one of the project's records, 404 for another project's.
async fn show<T: Record>(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((p, id)): Path<(String, String)>,
) -> Response {
    respond(
        async {
            caller(&app, &headers, &p).await?;
            let x = app
                .svc
                .read(|s| {
                    T::all(s)
                        .into_iter()
                        .find(|x| x.id() == id && x.project_id() == p)
                        .cloned()
                })
                .await
                .ok_or_else(|| not_found(T::WHAT, &id))?;
            ok(json!({ T::ONE_KEY: to_json(&x) }))
        }
        .await,
    )
}

/// The Karbor v1 API over `svc`, authenticated by `auth`.
pub fn router(svc: Arc<Service>, auth: Auth) -> axum::Router {
    let app = Arc::new(App { svc, auth });
    axum::Router::new()
        .route("/", get(versions))
        .route("/v1/{p}/providers", get(list_providers))
        .route("/v1/{p}/providers/{id}", get(show_provider))
        .route(
            "/v1/{p}/providers/{id}/checkpoints",
            get(list_checkpoints).post(create_checkpoint),
        )
        .route(
            "/v1/{p}/providers/{id}/checkpoints/{cid}",
            get(show_checkpoint).delete(delete_checkpoint),
        )
        .route("/v1/{p}/plans", get(list::<Plan>).post(create_plan))
        .route(
            "/v1/{p}/plans/{id}",
            get(show::<Plan>).put(update_plan).delete(delete_plan),
        )
        .route(
            "/v1/{p}/restores",
            get(list::<RestoreRecord>).post(create_restore),
        )
        .route("/v1/{p}/restores/{id}", get(show::<RestoreRecord>))
        .route("/v1/{p}/protectables", get(list_protectables))
        .route("/v1/{p}/protectables/{ty}", get(show_protectable))
        .route("/v1/{p}/protectables/{ty}/instances", get(list_instances))
        .route(
            "/v1/{p}/protectables/{ty}/instances/{id}",
            get(show_instance),
        )
        .route(
            "/v1/{p}/triggers",
            get(list::<Trigger>).post(create_trigger),
        )
        .route(
            "/v1/{p}/triggers/{id}",
            get(show::<Trigger>)
                .put(update_trigger)
                .delete(delete_trigger),
        )
        .route(
            "/v1/{p}/scheduled_operations",
            get(list::<ScheduledOperation>).post(create_operation),
        )
        .route(
            "/v1/{p}/scheduled_operations/{id}",
            get(show::<ScheduledOperation>).delete(delete_operation),
        )
        .route("/v1/{p}/operation_logs", get(list::<OperationLog>))
        .route("/v1/{p}/operation_logs/{id}", get(show::<OperationLog>))
        .route(
            "/v1/{p}/verifications",
            get(list::<VerificationRecord>).post(create_verification),
        )
        .route(
            "/v1/{p}/verifications/{id}",
            get(show::<VerificationRecord>),
        )
        .fallback(|| async {
            HttpError::new(
                StatusCode::NOT_FOUND,
                "HTTPNotFound",
                "The resource could not be found.",
            )
            .into_response()
        })
        .with_state(app)
}

async fn versions() -> Response {
    Json(json!({"versions": [{"id": "v1.0", "status": "CURRENT", "links": []}]})).into_response()
}

// ----- providers ---------------------------------------------------------------------------

fn provider_json(p: &crate::service::Provider) -> Value {
    json!({
        "id": p.config.id, "name": p.config.name, "description": p.config.description,
        "extended_info_schema": {
            "options_schema": {}, "restore_schema": {}, "saved_info_schema": {}
        },
        "bank": p.bank.location,
    })
}

handler!(list_providers, |app, headers, p: String, _b| async move {
    caller(&app, &headers, &p).await?;
    let list: Vec<Value> = app
        .svc
        .providers
        .values()
        .map(|x| provider_json(x))
        .collect();
    ok(json!({ "providers": list }))
});

handler!(
    show_provider,
    |app, headers, path: (String, String), _b| async move {
        caller(&app, &headers, &path.0).await?;
        let prov = app.svc.provider(&path.1)?;
        ok(json!({ "provider": provider_json(prov) }))
    }
);

// ----- checkpoints -------------------------------------------------------------------------

/// Karbor's checkpoint shape (`resource_graph` is a JSON string, as Karbor serializes it).
pub fn checkpoint_json(c: &CheckpointRecord) -> Value {
    let graph = c
        .manifest
        .as_ref()
        .map(|m| serde_json::to_string(&m.resource_graph).unwrap_or_default());
    json!({
        "id": c.meta.id,
        "project_id": c.meta.project_id,
        "status": c.status.as_str(),
        "protection_plan": {
            "id": c.meta.plan_id, "name": c.meta.plan_name,
            "resources": c.meta.resources, "provider_id": c.meta.provider_id,
        },
        "resource_graph": graph,
        "created_at": timestamp(c.meta.created_at),
        "extra_info": c.meta.extra_info,
        "manifest": c.manifest.as_ref().map(|m| json!({"cut": m.cut, "objects": m.objects})),
        "error": c.error,
    })
}

fn project_filter(ctx: &RequestContext, p: &str) -> Option<String> {
    // An admin sees every project's checkpoints only on request; by default its own path's.
    let _ = ctx;
    Some(p.to_string())
}

handler!(list_checkpoints, |app,
                            headers,
                            path: (String, String),
                            _b| async move {
    let ctx = caller(&app, &headers, &path.0).await?;
    let f = project_filter(&ctx, &path.0);
    let list = app.svc.checkpoints(&path.1, f.as_deref()).await?;
    let v: Vec<Value> = list.iter().map(checkpoint_json).collect();
    ok(json!({ "checkpoints": v }))
});

handler!(create_checkpoint, |app,
                             headers,
                             path: (String, String),
                             b| async move {
    caller(&app, &headers, &path.0).await?;
    let c = body(&b, "checkpoint")?;
    let plan_id = str_field(&c, "plan_id")?;
    let extra = c.get("extra_info").cloned().unwrap_or(json!({}));
    let (meta, _) = app
        .svc
        .start_checkpoint(&path.0, &path.1, &plan_id, extra, None)
        .await?;
    let rec = CheckpointRecord {
        meta,
        status: crate::bank::CheckpointStatus::Protecting,
        manifest: None,
        error: None,
    };
    ok(json!({ "checkpoint": checkpoint_json(&rec) }))
});

handler!(show_checkpoint, |app,
                           headers,
                           path: (String, String, String),
                           _b| async move {
    caller(&app, &headers, &path.0).await?;
    let c = app.svc.checkpoint(&path.1, &path.2).await?;
    if c.meta.project_id != path.0 {
        return Err(ApiErr(not_found("Checkpoint", &path.2)));
    }
    ok(json!({ "checkpoint": checkpoint_json(&c) }))
});

handler!(delete_checkpoint, |app,
                             headers,
                             path: (String, String, String),
                             _b| async move {
    caller(&app, &headers, &path.0).await?;
    let c = app.svc.checkpoint(&path.1, &path.2).await?;
    if c.meta.project_id != path.0 {
        return Err(ApiErr(not_found("Checkpoint", &path.2)));
    }
    app.svc.delete_checkpoint(&path.1, &path.2).await?;
    Ok::<_, ApiErr>(StatusCode::ACCEPTED.into_response())
});

// ----- plans -------------------------------------------------------------------------------

fn parse_resources(v: &Value) -> Result<Vec<ResourceRef>, HttpError> {
    let list = v
        .as_array()
        .ok_or_else(|| HttpError::bad_request("'resources' must be a list"))?;
    list.iter()
        .map(|r| {
            serde_json::from_value::<ResourceRef>(r.clone())
                .map_err(|e| HttpError::bad_request(format!("invalid resource {r}: {e}")))
        })
        .collect()
}

handler!(create_plan, |app, headers, p: String, b| async move {
    caller(&app, &headers, &p).await?;
    let v = body(&b, "plan")?;
    let provider_id = str_field(&v, "provider_id")?;
    app.svc.provider(&provider_id)?;
    let plan = Plan {
        id: Uuid::new_v4().to_string(),
        name: str_field(&v, "name")?,
        description: v["description"].as_str().unwrap_or_default().to_string(),
        project_id: p.clone(),
        provider_id,
        status: "suspended".into(),
        resources: parse_resources(&v["resources"])?,
        parameters: v.get("parameters").cloned().unwrap_or(json!({})),
    };
    let out = to_json(&plan);
    app.svc
        .write(|s| {
            s.plans.insert(plan.id.clone(), plan);
            Ok(())
        })
        .await?;
    ok(json!({ "plan": out }))
});

handler!(
    update_plan,
    |app, headers, path: (String, String), b| async move {
        caller(&app, &headers, &path.0).await?;
        let v = body(&b, "plan")?;
        let resources = match v.get("resources") {
            Some(r) => Some(parse_resources(r)?),
            None => None,
        };
        if let Some(st) = v.get("status") {
            if !matches!(st.as_str(), Some("started" | "suspended")) {
                return Err(ApiErr(HttpError::bad_request(
                    "'status' must be 'started' or 'suspended'",
                )));
            }
        }
        let (p, id) = (path.0.clone(), path.1.clone());
        let plan = app
            .svc
            .write(move |s| {
                let plan = s
                    .plans
                    .get_mut(&id)
                    .filter(|x| x.project_id == p)
                    .ok_or_else(|| ServiceError::PlanNotFound(id.clone()))?;
                if let Some(n) = v["name"].as_str() {
                    plan.name = n.to_string();
                }
                if let Some(d) = v["description"].as_str() {
                    plan.description = d.to_string();
                }
                if let Some(st) = v["status"].as_str() {
                    plan.status = st.to_string();
                }
                if let Some(r) = resources {
                    plan.resources = r;
                }
                Ok(plan.clone())
            })
            .await?;
        ok(json!({ "plan": to_json(&plan) }))
    }
);

handler!(
    delete_plan,
    |app, headers, path: (String, String), _b| async move {
        caller(&app, &headers, &path.0).await?;
        let (p, id) = (path.0.clone(), path.1.clone());
        app.svc
            .write(move |s| {
                match s.plans.get(&id) {
                    Some(x) if x.project_id == p => {}
                    _ => return Err(ServiceError::PlanNotFound(id)),
                }
                s.plans.remove(&id);
                Ok(())
            })
            .await?;
        Ok::<_, ApiErr>(StatusCode::ACCEPTED.into_response())
    }
);

// ----- restores ----------------------------------------------------------------------------

handler!(create_restore, |app, headers, p: String, b| async move {
    caller(&app, &headers, &p).await?;
    let v = body(&b, "restore")?;
    let provider_id = str_field(&v, "provider_id")?;
    let checkpoint_id = str_field(&v, "checkpoint_id")?;
    // restore_target: another Neutron API; restore_auth {"type": "token", "token": ...}.
    let target = v["restore_target"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(|url| Endpoint {
            url: url.to_string(),
            token: v["restore_auth"]["token"].as_str().map(str::to_string),
        });
    let params = v.get("parameters").cloned().unwrap_or(json!({}));
    let (rec, _) = app
        .svc
        .start_restore(&p, &provider_id, &checkpoint_id, target, params)
        .await?;
    ok(json!({ "restore": to_json(&rec) }))
});

// ----- protectables ------------------------------------------------------------------------

fn parse_type(s: &str) -> Result<ResourceType, HttpError> {
    s.parse::<ResourceType>()
        .ok()
        .filter(|t| ResourceType::PROTECTABLE.contains(t))
        .ok_or_else(|| not_found("Protectable type", s))
}

handler!(
    list_protectables,
    |app, headers, p: String, _b| async move {
        caller(&app, &headers, &p).await?;
        let names: Vec<&str> = ResourceType::PROTECTABLE
            .iter()
            .map(|t| t.as_str())
            .collect();
        ok(json!({ "protectable_type": names }))
    }
);

handler!(show_protectable, |app,
                            headers,
                            path: (String, String),
                            _b| async move {
    caller(&app, &headers, &path.0).await?;
    let t = parse_type(&path.1)?;
    let deps: Vec<&str> = t.dependent_types().iter().map(|d| d.as_str()).collect();
    ok(json!({ "protectable_type": {"name": t.as_str(), "dependent_types": deps} }))
});

async fn snapshot(app: &App) -> Result<Snapshot, HttpError> {
    Snapshot::read(&NeutronClient::new(&app.svc.source))
        .await
        .map_err(|e| HttpError::new(StatusCode::BAD_GATEWAY, "HTTPBadGateway", e.to_string()))
}

/// Instances the caller may see: its own project's (an admin's view is its path's project).
fn instances_for(snap: &Snapshot, t: ResourceType, project: &str) -> Vec<Value> {
    snap.instances(t)
        .into_iter()
        .filter(|i| match t {
            ResourceType::Project => i.id == project,
            ResourceType::Network => {
                i.id.parse()
                    .ok()
                    .and_then(|id: Uuid| snap.networks.get(&id))
                    .is_some_and(|n| n.project_id == project)
            }
            ResourceType::Router => {
                i.id.parse()
                    .ok()
                    .and_then(|id: Uuid| snap.routers.get(&id))
                    .is_some_and(|r| r.project_id == project)
            }
            _ => false,
        })
        .map(|i| serde_json::to_value(i).unwrap_or(Value::Null))
        .collect()
}

handler!(list_instances, |app,
                          headers,
                          path: (String, String),
                          _b| async move {
    caller(&app, &headers, &path.0).await?;
    let t = parse_type(&path.1)?;
    let snap = snapshot(&app).await?;
    ok(json!({ "instances": instances_for(&snap, t, &path.0) }))
});

handler!(show_instance, |app,
                         headers,
                         path: (String, String, String),
                         _b| async move {
    caller(&app, &headers, &path.0).await?;
    let t = parse_type(&path.1)?;
    let snap = snapshot(&app).await?;
    let i = instances_for(&snap, t, &path.0)
        .into_iter()
        .find(|i| i["id"] == path.2.as_str())
        .ok_or_else(|| not_found("Protectable instance", &path.2))?;
    ok(json!({ "instance": i }))
});

// ----- triggers ----------------------------------------------------------------------------

fn check_trigger(v: &Value) -> Result<(), HttpError> {
    if v["type"].as_str() != Some("time") {
        return Err(HttpError::bad_request("only 'time' triggers are supported"));
    }
    let props = &v["properties"];
    if !matches!(props["format"].as_str(), None | Some("crontab")) {
        return Err(HttpError::bad_request(
            "only the 'crontab' format is supported",
        ));
    }
    let pattern = props["pattern"]
        .as_str()
        .ok_or_else(|| HttpError::bad_request("'properties.pattern' is required"))?;
    crate::cron::Cron::parse(pattern).map_err(|e| HttpError::bad_request(e.to_string()))?;
    Ok(())
}

handler!(create_trigger, |app, headers, p: String, b| async move {
    caller(&app, &headers, &p).await?;
    let v = body(&b, "trigger_info")?;
    check_trigger(&v)?;
    let mut props = v["properties"].clone();
    if props.get("format").is_none() {
        props["format"] = json!("crontab");
    }
    let t = Trigger {
        id: Uuid::new_v4().to_string(),
        name: str_field(&v, "name")?,
        project_id: p.clone(),
        ty: "time".into(),
        properties: props,
    };
    let out = to_json(&t);
    app.svc
        .write(|s| {
            s.triggers.insert(t.id.clone(), t);
            Ok(())
        })
        .await?;
    ok(json!({ "trigger_info": out }))
});

handler!(
    update_trigger,
    |app, headers, path: (String, String), b| async move {
        caller(&app, &headers, &path.0).await?;
        let v = body(&b, "trigger_info")?;
        let (p, id) = (path.0.clone(), path.1.clone());
        let t = app
            .svc
            .write(move |s| {
                let t = s
                    .triggers
                    .get_mut(&id)
                    .filter(|x| x.project_id == p)
                    .ok_or_else(|| {
                        ServiceError::Invalid(format!("trigger {id} could not be found"))
                    })?;
                if let Some(n) = v["name"].as_str() {
                    t.name = n.to_string();
                }
                if let Some(props) = v.get("properties") {
                    let check = json!({"type": "time", "properties": props});
                    check_trigger(&check).map_err(|e| ServiceError::Invalid(e.message))?;
                    t.properties = props.clone();
                }
                Ok(t.clone())
            })
            .await?;
        let ops: Vec<String> = app
            .svc
            .read(|s| {
                s.scheduled_operations
                    .values()
                    .filter(|o| o.trigger_id == t.id)
                    .map(|o| o.id.clone())
                    .collect()
            })
            .await;
        for o in ops {
            app.svc.schedule(&o).await;
        }
        ok(json!({ "trigger_info": to_json(&t) }))
    }
);

handler!(delete_trigger, |app,
                          headers,
                          path: (String, String),
                          _b| async move {
    caller(&app, &headers, &path.0).await?;
    let (p, id) = (path.0.clone(), path.1.clone());
    app.svc
        .write(move |s| {
            if s.scheduled_operations.values().any(|o| o.trigger_id == id) {
                return Err(ServiceError::Invalid(format!(
                    "trigger {id} is used by a scheduled operation"
                )));
            }
            match s.triggers.get(&id) {
                Some(t) if t.project_id == p => {}
                _ => {
                    return Err(ServiceError::Invalid(format!(
                        "trigger {id} could not be found"
                    )))
                }
            }
            s.triggers.remove(&id);
            Ok(())
        })
        .await?;
    Ok::<_, ApiErr>(StatusCode::ACCEPTED.into_response())
});

// ----- scheduled operations ----------------------------------------------------------------

handler!(create_operation, |app, headers, p: String, b| async move {
    caller(&app, &headers, &p).await?;
    let v = body(&b, "scheduled_operation")?;
    let ty = str_field(&v, "operation_type")?;
    if !matches!(ty.as_str(), "protect" | "retention_protect") {
        return Err(ApiErr(HttpError::bad_request(
            "'operation_type' must be 'protect' or 'retention_protect'",
        )));
    }
    let trigger_id = str_field(&v, "trigger_id")?;
    let def = v["operation_definition"].clone();
    let plan_id = str_field(&def, "plan_id")?;
    let provider_id = str_field(&def, "provider_id")?;
    app.svc.provider(&provider_id)?;
    let op = ScheduledOperation {
        id: Uuid::new_v4().to_string(),
        name: str_field(&v, "name")?,
        description: v["description"].as_str().unwrap_or_default().to_string(),
        project_id: p.clone(),
        operation_type: ty,
        trigger_id: trigger_id.clone(),
        operation_definition: def,
        enabled: true,
    };
    let out = to_json(&op);
    let id = op.id.clone();
    let pp = p.clone();
    app.svc
        .write(move |s| {
            if s.triggers
                .get(&trigger_id)
                .is_none_or(|t| t.project_id != pp)
            {
                return Err(ServiceError::Invalid(format!(
                    "trigger {trigger_id} could not be found"
                )));
            }
            if s.plans.get(&plan_id).is_none_or(|x| x.project_id != pp) {
                return Err(ServiceError::PlanNotFound(plan_id));
            }
            s.scheduled_operations.insert(op.id.clone(), op);
            Ok(())
        })
        .await?;
    app.svc.schedule(&id).await;
    ok(json!({ "scheduled_operation": out }))
});

handler!(delete_operation, |app,
                            headers,
                            path: (String, String),
                            _b| async move {
    caller(&app, &headers, &path.0).await?;
    let (p, id) = (path.0.clone(), path.1.clone());
    app.svc
        .write(move |s| {
            match s.scheduled_operations.get(&id) {
                Some(o) if o.project_id == p => {}
                _ => {
                    return Err(ServiceError::Invalid(format!(
                        "scheduled operation {id} could not be found"
                    )))
                }
            }
            s.scheduled_operations.remove(&id);
            Ok(())
        })
        .await?;
    app.svc.unschedule(&path.1);
    Ok::<_, ApiErr>(StatusCode::ACCEPTED.into_response())
});

// ----- operation logs and verifications -----------------------------------------------------

handler!(
    create_verification,
    |app, headers, p: String, b| async move {
        caller(&app, &headers, &p).await?;
        let v = body(&b, "verification")?;
        let provider_id = str_field(&v, "provider_id")?;
        let checkpoint_id = str_field(&v, "checkpoint_id")?;
        let params = v.get("parameters").cloned().unwrap_or(json!({}));
        let rec = app
            .svc
            .verify(&p, &provider_id, &checkpoint_id, params)
            .await?;
        ok(json!({ "verification": rec }))
    }
);
