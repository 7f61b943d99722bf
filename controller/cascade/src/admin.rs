//! The admin API `/v1.0/`, in Tricircle's shapes: pods (create/list/show/update/delete),
//! routings (list/show/delete), jobs (list/show, redo with PUT, delete), plus `/metrics`
//! (merged in by the service from wyvern-metrics).
//!
//! Errors answer `{"error": {"code": N, "message": "..."}}`. Lists accept equality filters
//! on their attributes as query parameters (`?pod_id=...&status=Fail`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::engine::Engine;
use crate::state::{Batch, JobStatus, Pod};

/// An admin API error answer.
pub struct AdminError(StatusCode, String);

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        (
            self.0,
            Json(json!({"error": {"code": self.0.as_u16(), "message": self.1}})),
        )
            .into_response()
    }
}

fn not_found(what: &str, id: &str) -> AdminError {
    AdminError(StatusCode::NOT_FOUND, format!("{what} {id} not found"))
}
fn bad(msg: impl Into<String>) -> AdminError {
    AdminError(StatusCode::BAD_REQUEST, msg.into())
}
fn internal(e: impl std::fmt::Display) -> AdminError {
    AdminError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}
fn parse_id(what: &str, id: &str) -> Result<Uuid, AdminError> {
    id.parse().map_err(|_| not_found(what, id))
}

type St = State<Arc<Engine>>;
type Answer = Result<Response, AdminError>;

/// The admin router over a running engine.
pub fn router(engine: Arc<Engine>) -> axum::Router {
    axum::Router::new()
        .route("/", get(versions))
        .route("/v1.0/pods", get(list_pods).post(create_pod))
        .route(
            "/v1.0/pods/{id}",
            get(show_pod).put(update_pod).delete(delete_pod),
        )
        .route("/v1.0/routings", get(list_routings))
        .route(
            "/v1.0/routings/{id}",
            get(show_routing).delete(delete_routing),
        )
        .route("/v1.0/jobs", get(list_jobs))
        .route(
            "/v1.0/jobs/{id}",
            get(show_job).put(redo_job).delete(delete_job),
        )
        .with_state(engine)
}

async fn versions() -> Json<Value> {
    Json(json!({"versions": [{"id": "v1.0", "status": "CURRENT"}]}))
}

fn matches(v: &Value, filters: &HashMap<String, String>) -> bool {
    filters.iter().all(|(k, want)| match &v[k.as_str()] {
        Value::String(s) => s == want,
        Value::Null => v["resource"][k.as_str()].as_str() == Some(want.as_str()),
        other => serde_json::to_string(other).is_ok_and(|s| s == *want),
    })
}

fn pod_json(p: &Pod) -> Value {
    // The token is a credential: never shown.
    let mut v = serde_json::to_value(p).unwrap_or(Value::Null);
    if let Some(m) = v.as_object_mut() {
        m.remove("token");
    }
    v
}

async fn list_pods(State(e): St, Query(f): Query<HashMap<String, String>>) -> Json<Value> {
    let pods: Vec<Value> = e
        .ledger
        .read(|s| {
            s.pods
                .values()
                .map(pod_json)
                .filter(|v| matches(v, &f))
                .collect()
        })
        .await;
    Json(json!({ "pods": pods }))
}

async fn show_pod(State(e): St, Path(id): Path<String>) -> Answer {
    let pid = parse_id("pod", &id)?;
    let p = e.ledger.read(|s| s.pods.get(&pid).map(pod_json)).await;
    let p = p.ok_or_else(|| not_found("pod", &id))?;
    Ok(Json(json!({ "pod": p })).into_response())
}

fn text(v: &Value, k: &str) -> Result<Option<String>, AdminError> {
    match &v[k] {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(bad(format!("{k} must be a string"))),
    }
}

async fn create_pod(State(e): St, Json(body): Json<Value>) -> Answer {
    let v = &body["pod"];
    if !v.is_object() {
        return Err(bad("expected {\"pod\": {...}}"));
    }
    let region_name = text(v, "region_name")?.filter(|s| !s.is_empty());
    let region_name = region_name.ok_or_else(|| bad("region_name is required"))?;
    let api_url = text(v, "api_url")?.ok_or_else(|| bad("api_url is required"))?;
    if !(api_url.starts_with("http://") || api_url.starts_with("https://")) {
        return Err(bad("api_url must be an http(s) URL"));
    }
    let pod = Pod {
        pod_id: Uuid::new_v4(),
        region_name,
        az_name: text(v, "az_name")?.unwrap_or_default(),
        dc_name: text(v, "dc_name")?.unwrap_or_default(),
        pod_az_name: text(v, "pod_az_name")?.unwrap_or_default(),
        api_url,
        token: text(v, "token")?,
    };
    {
        let mut g = e.ledger.lock().await;
        if g.pods.values().any(|p| p.region_name == pod.region_name) {
            return Err(AdminError(
                StatusCode::CONFLICT,
                format!("a pod with region_name {} exists", pod.region_name),
            ));
        }
        let mut b = Batch::default();
        b.put_pod(pod.clone());
        e.ledger.commit_locked(&mut g, b).await.map_err(internal)?;
    }
    // Ports already placed there (by region or az name) get their copies.
    e.resync_pod(pod.pod_id).await.map_err(internal)?;
    e.ledger.jobs_changed.notify_waiters();
    Ok((StatusCode::OK, Json(json!({ "pod": pod_json(&pod) }))).into_response())
}

/// wyvern's extension: a pod's endpoint or token may change (a site moved or rotated its
/// credentials); names and zones may not, since placement depends on them.
async fn update_pod(State(e): St, Path(id): Path<String>, Json(body): Json<Value>) -> Answer {
    let pid = parse_id("pod", &id)?;
    let v = &body["pod"];
    let mut g = e.ledger.lock().await;
    let mut pod = g
        .pods
        .get(&pid)
        .cloned()
        .ok_or_else(|| not_found("pod", &id))?;
    for k in v
        .as_object()
        .map(|m| m.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default()
    {
        match k.as_str() {
            "api_url" => pod.api_url = text(v, "api_url")?.unwrap_or_default(),
            "token" => pod.token = text(v, "token")?,
            "dc_name" => pod.dc_name = text(v, "dc_name")?.unwrap_or_default(),
            other => return Err(bad(format!("{other} cannot be updated"))),
        }
    }
    let mut b = Batch::default();
    b.put_pod(pod.clone());
    e.ledger.commit_locked(&mut g, b).await.map_err(internal)?;
    drop(g);
    e.ledger.jobs_changed.notify_waiters();
    Ok(Json(json!({ "pod": pod_json(&pod) })).into_response())
}

/// Refused while the pod holds copies (their routings would be orphaned).
async fn delete_pod(State(e): St, Path(id): Path<String>) -> Answer {
    let pid = parse_id("pod", &id)?;
    let mut g = e.ledger.lock().await;
    if !g.pods.contains_key(&pid) {
        return Err(not_found("pod", &id));
    }
    if g.routings.keys().any(|(p, _, _)| *p == pid) {
        return Err(AdminError(
            StatusCode::CONFLICT,
            format!("pod {id} still holds resources (see routings)"),
        ));
    }
    let mut b = Batch::default();
    b.delete_pod(pid);
    for j in g.jobs.values().filter(|j| j.pod_id == pid) {
        b.delete_job(j.seq);
    }
    e.ledger.commit_locked(&mut g, b).await.map_err(internal)?;
    Ok(StatusCode::OK.into_response())
}

async fn list_routings(State(e): St, Query(f): Query<HashMap<String, String>>) -> Json<Value> {
    let mut list: Vec<Value> = e
        .ledger
        .read(|s| {
            s.routings
                .values()
                .filter_map(|r| serde_json::to_value(r).ok())
                .filter(|v| matches(v, &f))
                .collect()
        })
        .await;
    list.sort_by(|a, b| {
        a["created_at"]
            .to_string()
            .cmp(&b["created_at"].to_string())
    });
    Json(json!({ "routings": list }))
}

async fn show_routing(State(e): St, Path(id): Path<String>) -> Answer {
    let rid = parse_id("routing", &id)?;
    let r = e
        .ledger
        .read(|s| s.routings.values().find(|r| r.id == rid).cloned())
        .await
        .ok_or_else(|| not_found("routing", &id))?;
    Ok(Json(json!({ "routing": r })).into_response())
}

/// Forgets a mapping (the bottom object stays; a later sync finds it by id again).
async fn delete_routing(State(e): St, Path(id): Path<String>) -> Answer {
    let rid = parse_id("routing", &id)?;
    let mut g = e.ledger.lock().await;
    let key = g
        .routings
        .iter()
        .find(|(_, r)| r.id == rid)
        .map(|(k, _)| *k)
        .ok_or_else(|| not_found("routing", &id))?;
    let mut b = Batch::default();
    b.delete_routing(key);
    e.ledger.commit_locked(&mut g, b).await.map_err(internal)?;
    Ok(StatusCode::OK.into_response())
}

async fn list_jobs(State(e): St, Query(f): Query<HashMap<String, String>>) -> Json<Value> {
    let list: Vec<Value> = e
        .ledger
        .read(|s| {
            s.jobs
                .values()
                .map(|j| j.to_api())
                .filter(|v| matches(v, &f))
                .collect()
        })
        .await;
    Json(json!({ "jobs": list }))
}

async fn show_job(State(e): St, Path(id): Path<String>) -> Answer {
    let jid = parse_id("job", &id)?;
    let j = e
        .ledger
        .read(|s| s.job_by_id(jid).map(|j| j.to_api()))
        .await
        .ok_or_else(|| not_found("job", &id))?;
    Ok(Json(json!({ "job": j })).into_response())
}

/// Redo: a failed (or finished) job runs again, at the end of its pod's queue.
async fn redo_job(State(e): St, Path(id): Path<String>) -> Answer {
    let jid = parse_id("job", &id)?;
    let mut g = e.ledger.lock().await;
    let mut j = g
        .job_by_id(jid)
        .cloned()
        .ok_or_else(|| not_found("job", &id))?;
    if j.status == JobStatus::Running || j.status == JobStatus::New {
        return Err(AdminError(
            StatusCode::CONFLICT,
            format!("job {id} is already queued"),
        ));
    }
    let mut b = Batch::default();
    b.delete_job(j.seq);
    let kind = j.kind().ok_or_else(|| bad("unknown resource type"))?;
    b.enqueue(j.pod_id, kind, j.resource_id, &j.project_id);
    let queued = e.ledger.commit_locked(&mut g, b).await.map_err(internal)?;
    drop(g);
    if let Some(q) = queued.into_iter().next() {
        j = q;
    }
    Ok(Json(json!({ "job": j.to_api() })).into_response())
}

/// Only jobs that are not running may be deleted (as in Tricircle).
async fn delete_job(State(e): St, Path(id): Path<String>) -> Answer {
    let jid = parse_id("job", &id)?;
    let mut g = e.ledger.lock().await;
    let j = g
        .job_by_id(jid)
        .cloned()
        .ok_or_else(|| not_found("job", &id))?;
    if j.status == JobStatus::Running {
        return Err(AdminError(
            StatusCode::CONFLICT,
            format!("job {id} is running"),
        ));
    }
    let mut b = Batch::default();
    b.delete_job(j.seq);
    e.ledger.commit_locked(&mut g, b).await.map_err(internal)?;
    Ok(StatusCode::OK.into_response())
}
