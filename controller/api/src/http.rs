//! The Neutron v2.0 HTTP surface: routing, bodies, status codes and `NeutronError` answers.
//!
//! One fallback handler routes by path segments, so `/v2.0/networks` and
//! `/v2.0/networks.json` behave the same and every unknown path gets a 404 in Neutron's error
//! shape. Bodies are parsed by hand (never by an extractor that could answer in another shape).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;
use wyvern_model::{
    Change, InterfaceRequest, Kind, ModelError, Network, NetworkCreate, NetworkUpdate, NetworkView,
    Object, Port, PortCreate, PortUpdate, RequestContext, Router, RouterCreate, RouterUpdate,
    Subnet, SubnetCreate, SubnetUpdate, Timestamp, Topology,
};

use crate::auth::Auth;
use crate::query::{list_body, project, Cached, ListQuery, Listable};
use crate::service::{ApiError, NbService};

/// An error answer: `{"NeutronError": {"type": ..., "message": ..., "detail": ""}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    pub status: StatusCode,
    pub ty: &'static str,
    pub message: String,
}

impl HttpError {
    pub fn new(status: StatusCode, ty: &'static str, message: impl Into<String>) -> Self {
        HttpError {
            status,
            ty,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "HTTPBadRequest", message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "HTTPInternalServerError",
            message,
        )
    }
    fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "HTTPNotFound",
            "The resource could not be found.",
        )
    }
    fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "HTTPMethodNotAllowed",
            "The method is not allowed for this resource.",
        )
    }
}

impl From<ModelError> for HttpError {
    fn from(e: ModelError) -> Self {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        HttpError::new(status, e.neutron_type(), e.to_string())
    }
}

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Model(m) => m.into(),
            other => {
                tracing::error!(error = %other, "write failed");
                HttpError::internal(other.to_string())
            }
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body =
            json!({"NeutronError": {"type": self.ty, "message": self.message, "detail": ""}});
        json_response(self.status, serde_json::to_vec(&body).unwrap_or_default())
    }
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn ok_json<T: Serialize>(status: StatusCode, v: &T) -> Result<Response, HttpError> {
    let body = serde_json::to_vec(v)
        .map_err(|e| HttpError::internal(format!("failed to serialize the answer: {e}")))?;
    Ok(json_response(status, body))
}

struct AppState {
    svc: Arc<NbService>,
    auth: Auth,
}

/// The Neutron v2.0 API over `svc`, authenticated by `auth`.
pub fn router(svc: Arc<NbService>, auth: Auth) -> axum::Router {
    axum::Router::new()
        .fallback(dispatch)
        .with_state(Arc::new(AppState { svc, auth }))
}

fn now() -> Timestamp {
    Timestamp(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    )
}

fn host(headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost:9696")
        .to_string()
}

async fn dispatch(
    State(st): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match route(&st, &method, &uri, &headers, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// Extensions wyvern actually implements (alias, name, description): clients and tempest
/// decide what to try from this list, so it must never promise more than is served.
const EXTENSIONS: &[(&str, &str, &str)] = &[
    ("router", "Neutron L3 Router", "Router abstraction for basic L3 forwarding between L2 Neutron networks"),
    ("extraroute", "Neutron Extra Route", "Extra routes configuration for L3 router"),
    ("project-id", "project_id field enabled", "Extension that indicates that project_id field is enabled."),
    ("net-mtu", "Network MTU", "Provides MTU attribute for a network resource."),
    ("port-security", "Port Security", "Provides port security"),
    ("allowed-address-pairs", "Allowed Address Pairs", "Provides allowed address pairs"),
    ("binding", "Port Binding", "Expose port bindings of a virtual port to external application"),
    ("standard-attr-description", "standard-attr-description", "Extension to add descriptions to standard attributes"),
    ("standard-attr-revisions", "Resource revision numbers", "This extension will display the revision number of neutron resources."),
    ("standard-attr-timestamp", "Resource timestamps", "Adds created_at and updated_at fields to all Neutron resources that have Neutron standard attributes."),
    ("pagination", "Pagination support", "Extension that indicates that pagination is enabled."),
    ("sorting", "Sorting support", "Extension that indicates that sorting is enabled."),
    // Tags work on subnets, ports and routers too, but `standard-attr-tag`/`tag-ext` also
    // promise subnet pools, which wyvern does not have: only the network one is listed.
    ("tag", "Tag support", "Enables to set tag on resources."),
    ("external-net", "Neutron external network", "Adds external network attribute to network resource."),
    // wyvernd runs no Neutron agents (DHCP and routing are inside the controller): the list
    // exists and is empty.
    ("agent", "agent", "The agent management extension."),
];

fn extension_json(e: &(&str, &str, &str)) -> Value {
    json!({"alias": e.0, "name": e.1, "description": e.2, "updated": "2024-01-01T00:00:00-00:00", "links": []})
}

async fn route(
    st: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, HttpError> {
    let path = uri.path().trim_matches('/');
    let mut segs: Vec<&str> = if path.is_empty() {
        Vec::new()
    } else {
        path.split('/').collect()
    };
    if let Some(last) = segs.last_mut() {
        *last = last.strip_suffix(".json").unwrap_or(last);
    }
    let host = host(headers);
    if segs.is_empty() {
        if method != Method::GET {
            return Err(HttpError::method_not_allowed());
        }
        let v = json!({"versions": [{"id": "v2.0", "status": "CURRENT", "links": [{"href": format!("http://{host}/v2.0/"), "rel": "self"}]}]});
        return ok_json(StatusCode::OK, &v);
    }
    if segs[0] != "v2.0" {
        return Err(HttpError::not_found());
    }
    let ctx = st
        .auth
        .authenticate(headers, now())
        .await
        .map_err(|e| HttpError::new(e.status(), e.neutron_type(), e.to_string()))?;
    let q = || ListQuery::parse(uri.query());
    match (&segs[1..], method.clone()) {
        ([], Method::GET) => {
            let resources: Vec<Value> = Kind::ALL
                .iter()
                .map(|k| {
                    json!({"links": [{"href": format!("http://{host}/v2.0/{}", k.as_str()), "rel": "self"}],
                           "name": k.singular(), "collection": k.as_str()})
                })
                .collect();
            ok_json(StatusCode::OK, &json!({ "resources": resources }))
        }
        (["extensions"], Method::GET) => {
            let list: Vec<Value> = EXTENSIONS.iter().map(extension_json).collect();
            ok_json(StatusCode::OK, &json!({ "extensions": list }))
        }
        (["extensions", alias], Method::GET) => match EXTENSIONS.iter().find(|e| e.0 == *alias) {
            Some(e) => ok_json(StatusCode::OK, &json!({ "extension": extension_json(e) })),
            None => Err(HttpError::new(
                StatusCode::NOT_FOUND,
                "ExtensionNotFound",
                format!("Extension with alias {alias} does not exist"),
            )),
        },
        (["wyvern", "topology"], Method::GET) => topology(st, &ctx).await,
        (["wyvern", "topology"], _) => Err(HttpError::method_not_allowed()),
        (["agents"], Method::GET) => ok_json(StatusCode::OK, &json!({ "agents": [] })),
        (["agents", id], Method::GET | Method::PUT | Method::DELETE) => Err(HttpError::new(
            StatusCode::NOT_FOUND,
            "AgentNotFound",
            format!("Agent {id} could not be found."),
        )),
        ([coll], m) => {
            let kind: Kind = coll.parse().map_err(|_| HttpError::not_found())?;
            match m {
                Method::GET => list(st, &ctx, kind, &q()?, &host),
                Method::POST => create(st, &ctx, kind, body).await,
                _ => Err(HttpError::method_not_allowed()),
            }
        }
        ([coll, id], m) => {
            let kind: Kind = coll.parse().map_err(|_| HttpError::not_found())?;
            match m {
                Method::GET => show(st, &ctx, kind, id, &q()?),
                Method::PUT => update(st, &ctx, kind, id, body).await,
                Method::DELETE => delete(st, &ctx, kind, id).await,
                _ => Err(HttpError::method_not_allowed()),
            }
        }
        (
            ["routers", id, action @ ("add_router_interface" | "remove_router_interface")],
            Method::PUT,
        ) => {
            let req = InterfaceRequest::from_json(&parse_body(body)?)?;
            let add = *action == "add_router_interface";
            let (id, ctx) = (id.to_string(), ctx.clone());
            let info = st
                .svc
                .write(move |t| {
                    if add {
                        t.add_router_interface(&ctx, &id, req)
                    } else {
                        t.remove_router_interface(&ctx, &id, req)
                    }
                })
                .await?;
            ok_json(StatusCode::OK, &info)
        }
        (["routers", _, "add_router_interface" | "remove_router_interface"], _) => {
            Err(HttpError::method_not_allowed())
        }
        ([coll, id, "tags"], m) => {
            let kind: Kind = coll.parse().map_err(|_| HttpError::not_found())?;
            tags_all(st, &ctx, kind, id, m, body).await
        }
        ([coll, id, "tags", tag], m) => {
            let kind: Kind = coll.parse().map_err(|_| HttpError::not_found())?;
            tag_one(st, &ctx, kind, id, &percent_decode(tag), m).await
        }
        _ => Err(HttpError::not_found()),
    }
}

/// `%XX` escapes of a path segment (tags may hold any character but `,` and `/`).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn no_content(status: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r
}

/// `GET/PUT/DELETE /v2.0/{collection}/{id}/tags`.
async fn tags_all(
    st: &AppState,
    ctx: &RequestContext,
    kind: Kind,
    id: &str,
    method: Method,
    body: &Bytes,
) -> Result<Response, HttpError> {
    let (ctx, id) = (ctx.clone(), id.to_string());
    match method {
        Method::GET => {
            let tags = st.svc.read(|t| t.tags_of(&ctx, kind, &id))?;
            ok_json(StatusCode::OK, &json!({ "tags": tags }))
        }
        Method::PUT => {
            let v = parse_body(body)?;
            let tags: Vec<String> = match v.get("tags") {
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|t| t.as_str().map(str::to_string))
                    .collect::<Option<_>>()
                    .ok_or_else(|| {
                        HttpError::bad_request("Invalid tags body: tags must be strings")
                    })?,
                _ => {
                    return Err(HttpError::bad_request(
                        "Invalid tags body: expected {\"tags\": [...]}",
                    ))
                }
            };
            let tags = st
                .svc
                .write(move |t| t.set_tags(&ctx, kind, &id, tags))
                .await?;
            ok_json(StatusCode::OK, &json!({ "tags": tags }))
        }
        Method::DELETE => {
            st.svc
                .write(move |t| t.set_tags(&ctx, kind, &id, Vec::new()))
                .await?;
            Ok(no_content(StatusCode::NO_CONTENT))
        }
        _ => Err(HttpError::method_not_allowed()),
    }
}

fn tag_not_found(kind: Kind, id: &str, tag: &str) -> HttpError {
    HttpError::new(
        StatusCode::NOT_FOUND,
        "TagNotFound",
        format!("Tag {tag} could not be found for {} {id}.", kind.singular()),
    )
}

/// `GET/PUT/DELETE /v2.0/{collection}/{id}/tags/{tag}`.
async fn tag_one(
    st: &AppState,
    ctx: &RequestContext,
    kind: Kind,
    id: &str,
    tag: &str,
    method: Method,
) -> Result<Response, HttpError> {
    let (ctx, id, tag) = (ctx.clone(), id.to_string(), tag.to_string());
    match method {
        Method::GET => {
            let tags = st.svc.read(|t| t.tags_of(&ctx, kind, &id))?;
            if tags.contains(&tag) {
                Ok(no_content(StatusCode::NO_CONTENT))
            } else {
                Err(tag_not_found(kind, &id, &tag))
            }
        }
        Method::PUT => {
            st.svc
                .write(move |t| {
                    let mut tags = t.tags_of(&ctx, kind, &id)?;
                    tags.push(tag);
                    t.set_tags(&ctx, kind, &id, tags)
                })
                .await?;
            Ok(no_content(StatusCode::CREATED))
        }
        Method::DELETE => {
            let (kid, ktag) = (id.clone(), tag.clone());
            let found = st
                .svc
                .write(move |t| {
                    let mut tags = t.tags_of(&ctx, kind, &id)?;
                    let before = tags.len();
                    tags.retain(|x| *x != tag);
                    if tags.len() == before {
                        // Still a permission check: a stranger gets 404 for the object first.
                        return Ok((Change::default(), false));
                    }
                    t.set_tags(&ctx, kind, &id, tags).map(|(c, _)| (c, true))
                })
                .await?;
            if found {
                Ok(no_content(StatusCode::NO_CONTENT))
            } else {
                Err(tag_not_found(kind, &kid, &ktag))
            }
        }
        _ => Err(HttpError::method_not_allowed()),
    }
}

fn parse_body(body: &Bytes) -> Result<Value, HttpError> {
    serde_json::from_slice(body)
        .map_err(|e| HttpError::bad_request(format!("Malformed request body: {e}")))
}

fn s(v: &str) -> Option<Cow<'_, str>> {
    Some(Cow::Borrowed(v))
}
fn u(v: &Uuid) -> Option<Cow<'static, str>> {
    Some(Cow::Owned(v.to_string()))
}

// `str_attr`: the attributes that serialize as plain strings (checked by the
// `typed_filters_match_json_filters` test).
impl Listable for NetworkView {
    fn id(&self) -> Uuid {
        self.network.id
    }
    fn str_attr(&self, key: &str) -> Option<Cow<'_, str>> {
        let n = &self.network;
        match key {
            "id" => u(&n.id),
            "name" => s(&n.name),
            "tenant_id" => s(&n.tenant_id),
            "project_id" => s(&n.project_id),
            "status" => s(&n.status),
            "description" => s(&n.description),
            _ => None,
        }
    }
}
impl Listable for Arc<Subnet> {
    fn id(&self) -> Uuid {
        self.id
    }
    fn str_attr(&self, key: &str) -> Option<Cow<'_, str>> {
        match key {
            "id" => u(&self.id),
            "name" => s(&self.name),
            "tenant_id" => s(&self.tenant_id),
            "project_id" => s(&self.project_id),
            "network_id" => u(&self.network_id),
            "cidr" => Some(Cow::Owned(self.cidr.to_string())),
            "description" => s(&self.description),
            _ => None,
        }
    }
}
impl Listable for Arc<Port> {
    fn id(&self) -> Uuid {
        self.id
    }
    fn str_attr(&self, key: &str) -> Option<Cow<'_, str>> {
        match key {
            "id" => u(&self.id),
            "name" => s(&self.name),
            "tenant_id" => s(&self.tenant_id),
            "project_id" => s(&self.project_id),
            "network_id" => u(&self.network_id),
            "mac_address" => Some(Cow::Owned(self.mac_address.to_string())),
            "status" => s(&self.status),
            "device_id" => s(&self.device_id),
            "device_owner" => s(&self.device_owner),
            "binding:host_id" => s(&self.binding_host_id),
            "description" => s(&self.description),
            _ => None,
        }
    }
}
impl Listable for Arc<Router> {
    fn id(&self) -> Uuid {
        self.id
    }
    fn str_attr(&self, key: &str) -> Option<Cow<'_, str>> {
        match key {
            "id" => u(&self.id),
            "name" => s(&self.name),
            "tenant_id" => s(&self.tenant_id),
            "project_id" => s(&self.project_id),
            "status" => s(&self.status),
            "description" => s(&self.description),
            _ => None,
        }
    }
}

fn not_found_for(kind: Kind) -> impl Fn(&str) -> HttpError {
    move |id: &str| {
        let id = id.to_string();
        HttpError::from(match kind {
            Kind::Network => ModelError::NetworkNotFound(id),
            Kind::Subnet => ModelError::SubnetNotFound(id),
            Kind::Port => ModelError::PortNotFound(id),
            Kind::Router => ModelError::RouterNotFound(id),
        })
    }
}

fn list(
    st: &AppState,
    ctx: &RequestContext,
    kind: Kind,
    q: &ListQuery,
    host: &str,
) -> Result<Response, HttpError> {
    let base = format!("http://{host}/v2.0/{}", kind.as_str());
    let coll = kind.as_str();
    let nf = not_found_for(kind);
    // Snapshot the Arcs and their cached JSON under the read lock; filter, sort and build
    // the body outside it.
    let body = match kind {
        Kind::Network => {
            let items: Vec<Cached<NetworkView>> = st.svc.read(|t| {
                t.visible_networks(ctx)
                    .map(|n| Cached {
                        obj: t.network_view(n),
                        json: Some(Bytes::from(t.network_view_json(n))),
                    })
                    .collect()
            });
            list_body(coll, items, q, &base, nf)?
        }
        Kind::Subnet => list_body(
            coll,
            st.svc.read(|t| {
                t.visible_subnets(ctx)
                    .map(|o| cached(t, Kind::Subnet, o))
                    .collect()
            }),
            q,
            &base,
            nf,
        )?,
        Kind::Port => list_body(
            coll,
            st.svc.read(|t| {
                t.visible_ports(ctx)
                    .map(|o| cached(t, Kind::Port, o))
                    .collect()
            }),
            q,
            &base,
            nf,
        )?,
        Kind::Router => list_body(
            coll,
            st.svc.read(|t| {
                t.visible_routers(ctx)
                    .map(|o| cached(t, Kind::Router, o))
                    .collect()
            }),
            q,
            &base,
            nf,
        )?,
    };
    Ok(json_response(StatusCode::OK, body))
}

/// Response header of `GET /v2.0/wyvern/topology`: the store revision of the answer.
const REVISION_HEADER: &str = "x-wyvern-revision";

/// `GET /v2.0/wyvern/topology`: every network, subnet, port and router the caller may see,
/// read from the store at ONE revision (named in the body and in `X-Wyvern-Revision`), as
/// `{"topology": {"revision": N, "networks": [...], "subnets": [...], "ports": [...],
/// "routers": [...]}}`, each list sorted by id. Objects have exactly their list JSON. Four
/// list requests could each see a different state; this is one consistent cut (what a
/// checkpoint needs). Served from the store rather than memory, which may hold writes whose
/// commit is still in flight.
async fn topology(st: &AppState, ctx: &RequestContext) -> Result<Response, HttpError> {
    let (t, rev) = st.svc.read_committed().await?;
    fn push_list<'a, T: 'a>(
        body: &mut Vec<u8>,
        key: &str,
        items: impl Iterator<Item = &'a Arc<T>>,
        id: fn(&T) -> Uuid,
        json: impl Fn(&Arc<T>) -> Vec<u8>,
    ) {
        let mut items: Vec<&Arc<T>> = items.collect();
        items.sort_by_key(|o| id(o));
        body.extend_from_slice(format!(",\"{key}\":[").as_bytes());
        for (i, o) in items.into_iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&json(o));
        }
        body.push(b']');
    }
    fn stored<T: Serialize>(t: &Topology, kind: Kind, id: Uuid, o: &T) -> Vec<u8> {
        match t.json_of(kind, &id) {
            Some(b) => b.to_vec(),
            None => serde_json::to_vec(o).unwrap_or_default(),
        }
    }
    let mut body = Vec::with_capacity(t.len() * 1024 + 128);
    body.extend_from_slice(format!("{{\"topology\":{{\"revision\":{}", rev.0).as_bytes());
    push_list(
        &mut body,
        "networks",
        t.visible_networks(ctx),
        |n| n.id,
        |n| t.network_view_json(n),
    );
    push_list(
        &mut body,
        "subnets",
        t.visible_subnets(ctx),
        |s| s.id,
        |s| stored(&t, Kind::Subnet, s.id, s),
    );
    push_list(
        &mut body,
        "ports",
        t.visible_ports(ctx),
        |p| p.id,
        |p| stored(&t, Kind::Port, p.id, p),
    );
    push_list(
        &mut body,
        "routers",
        t.visible_routers(ctx),
        |r| r.id,
        |r| stored(&t, Kind::Router, r.id, r),
    );
    body.extend_from_slice(b"}}");
    let mut r = json_response(StatusCode::OK, body);
    r.headers_mut()
        .insert(REVISION_HEADER, HeaderValue::from(rev.0));
    Ok(r)
}

/// A current object of the topology with its cached JSON.
fn cached<T>(t: &Topology, kind: Kind, o: &Arc<T>) -> Cached<Arc<T>>
where
    Arc<T>: Listable,
{
    Cached {
        obj: o.clone(),
        json: t.json_of(kind, &o.id()).cloned(),
    }
}

/// `obj` with its cached JSON if `obj` is still the current version (an answer must show
/// the object the write produced, even if a later write already replaced it).
fn cached_if_current<T>(t: &Topology, obj: Arc<T>, wrap: fn(Arc<T>) -> Object) -> Cached<Arc<T>> {
    let json = t.cached_json(&wrap(obj.clone())).cloned();
    Cached { obj, json }
}

fn network_cached(t: &Topology, n: Arc<Network>) -> Cached<NetworkView> {
    Cached {
        obj: t.network_view(&n),
        json: Some(Bytes::from(t.network_view_json(&n))),
    }
}

/// `{"<singular>": object}` from the object's cached JSON when there is one.
fn wrap_cached<T: Serialize>(
    status: StatusCode,
    kind: Kind,
    obj: &Cached<T>,
    fields: &[String],
) -> Result<Response, HttpError> {
    match (&obj.json, fields.is_empty()) {
        (Some(json), true) => {
            let name = kind.singular();
            let mut body = Vec::with_capacity(json.len() + name.len() + 5);
            body.extend_from_slice(b"{\"");
            body.extend_from_slice(name.as_bytes());
            body.extend_from_slice(b"\":");
            body.extend_from_slice(json);
            body.push(b'}');
            Ok(json_response(status, body))
        }
        _ => wrap_status(status, kind, &obj.obj, fields),
    }
}

fn wrap_status<T: Serialize>(
    status: StatusCode,
    kind: Kind,
    obj: &T,
    fields: &[String],
) -> Result<Response, HttpError> {
    if fields.is_empty() {
        #[derive(Serialize)]
        struct One<'a, T: Serialize>(#[serde(with = "one")] (&'static str, &'a T));
        mod one {
            use serde::ser::SerializeMap;
            pub fn serialize<S: serde::Serializer, T: serde::Serialize>(
                v: &(&'static str, &T),
                s: S,
            ) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry(v.0, v.1)?;
                m.end()
            }
        }
        return ok_json(status, &One((kind.singular(), obj)));
    }
    let v = serde_json::to_value(obj)
        .map_err(|e| HttpError::internal(format!("failed to serialize: {e}")))?;
    ok_json(status, &json!({ kind.singular(): project(v, fields) }))
}

fn show(
    st: &AppState,
    ctx: &RequestContext,
    kind: Kind,
    id: &str,
    q: &ListQuery,
) -> Result<Response, HttpError> {
    let ok = StatusCode::OK;
    match kind {
        Kind::Network => {
            let v = st.svc.read(|t| {
                t.visible_network(ctx, id)
                    .map(|n| network_cached(t, n.clone()))
            })?;
            wrap_cached(ok, kind, &v, &q.fields)
        }
        Kind::Subnet => wrap_cached(
            ok,
            kind,
            &st.svc
                .read(|t| t.visible_subnet(ctx, id).map(|o| cached(t, kind, o)))?,
            &q.fields,
        ),
        Kind::Port => wrap_cached(
            ok,
            kind,
            &st.svc
                .read(|t| t.visible_port(ctx, id).map(|o| cached(t, kind, o)))?,
            &q.fields,
        ),
        Kind::Router => wrap_cached(
            ok,
            kind,
            &st.svc
                .read(|t| t.visible_router(ctx, id).map(|o| cached(t, kind, o)))?,
            &q.fields,
        ),
    }
}

/// The single object (`{"network": {...}}`) or the bulk list (`{"networks": [...]}`).
fn body_items(kind: Kind, body: &Bytes) -> Result<(Vec<Value>, bool), HttpError> {
    let v = parse_body(body)?;
    let Value::Object(mut m) = v else {
        return Err(HttpError::bad_request(
            "Malformed request body: expected a JSON object",
        ));
    };
    if let Some(one) = m.remove(kind.singular()) {
        return Ok((vec![one], false));
    }
    match m.remove(kind.as_str()) {
        Some(Value::Array(items)) if !items.is_empty() => Ok((items, true)),
        Some(_) => Err(HttpError::bad_request(format!(
            "Resources required for bulk {} creation must be a non-empty list",
            kind.as_str()
        ))),
        None => Err(HttpError::bad_request(format!(
            "Unable to find '{}' in request body",
            kind.singular()
        ))),
    }
}

async fn create(
    st: &AppState,
    ctx: &RequestContext,
    kind: Kind,
    body: &Bytes,
) -> Result<Response, HttpError> {
    let (items, bulk) = body_items(kind, body)?;
    macro_rules! run {
        ($req:ty, $op:ident, $render:expr) => {{
            let reqs = items
                .iter()
                .map(|v| <$req>::from_json(v, ctx))
                .collect::<Result<Vec<_>, ModelError>>()?;
            let ops: Vec<_> = reqs
                .into_iter()
                .map(|r| {
                    let ctx = ctx.clone();
                    move |t: &Topology| t.$op(&ctx, r)
                })
                .collect();
            let out = st.svc.write_many(ops).await?;
            let rendered: Vec<_> = st
                .svc
                .read(|t| out.into_iter().map(|o| $render(t, o)).collect());
            if bulk {
                bulk_body(kind, &rendered)
            } else {
                let one = rendered
                    .into_iter()
                    .next()
                    .ok_or_else(|| HttpError::internal("bulk create returned nothing"))?;
                wrap_cached(StatusCode::CREATED, kind, &one, &[])
            }
        }};
    }
    match kind {
        Kind::Network => run!(NetworkCreate, create_network, network_cached),
        Kind::Subnet => run!(SubnetCreate, create_subnet, |t, o| cached_if_current(
            t,
            o,
            Object::Subnet
        )),
        Kind::Port => run!(PortCreate, create_port, |t, o| cached_if_current(
            t,
            o,
            Object::Port
        )),
        Kind::Router => run!(RouterCreate, create_router, |t, o| cached_if_current(
            t,
            o,
            Object::Router
        )),
    }
}

/// `{"<collection>": [...]}` of a bulk create, from cached JSON when every object has it.
fn bulk_body<T: Serialize>(kind: Kind, items: &[Cached<T>]) -> Result<Response, HttpError> {
    if items.iter().all(|i| i.json.is_some()) {
        let mut body = Vec::with_capacity(
            items
                .iter()
                .map(|i| i.json.as_ref().map_or(0, Bytes::len) + 1)
                .sum::<usize>()
                + 32,
        );
        body.extend_from_slice(b"{\"");
        body.extend_from_slice(kind.as_str().as_bytes());
        body.extend_from_slice(b"\":[");
        for (n, i) in items.iter().enumerate() {
            if n > 0 {
                body.push(b',');
            }
            body.extend_from_slice(i.json.as_deref().unwrap_or_default());
        }
        body.extend_from_slice(b"]}");
        return Ok(json_response(StatusCode::CREATED, body));
    }
    let objs: Vec<&T> = items.iter().map(|i| &i.obj).collect();
    ok_json(StatusCode::CREATED, &json!({ kind.as_str(): objs }))
}

async fn update(
    st: &AppState,
    ctx: &RequestContext,
    kind: Kind,
    id: &str,
    body: &Bytes,
) -> Result<Response, HttpError> {
    let (mut items, bulk) = body_items(kind, body)?;
    if bulk || items.len() != 1 {
        return Err(HttpError::bad_request(format!(
            "Unable to find '{}' in request body",
            kind.singular()
        )));
    }
    let v = items.remove(0);
    let (ctx, id) = (ctx.clone(), id.to_string());
    let ok = StatusCode::OK;
    match kind {
        Kind::Network => {
            let req = NetworkUpdate::from_json(&v)?;
            let n = st
                .svc
                .write(move |t| t.update_network(&ctx, &id, req))
                .await?;
            wrap_cached(ok, kind, &st.svc.read(|t| network_cached(t, n)), &[])
        }
        Kind::Subnet => {
            let req = SubnetUpdate::from_json(&v)?;
            let o = st
                .svc
                .write(move |t| t.update_subnet(&ctx, &id, req))
                .await?;
            let o = st.svc.read(|t| cached_if_current(t, o, Object::Subnet));
            wrap_cached(ok, kind, &o, &[])
        }
        Kind::Port => {
            let req = PortUpdate::from_json(&v)?;
            let o = st.svc.write(move |t| t.update_port(&ctx, &id, req)).await?;
            let o = st.svc.read(|t| cached_if_current(t, o, Object::Port));
            wrap_cached(ok, kind, &o, &[])
        }
        Kind::Router => {
            let req = RouterUpdate::from_json(&v)?;
            let o = st
                .svc
                .write(move |t| t.update_router(&ctx, &id, req))
                .await?;
            let o = st.svc.read(|t| cached_if_current(t, o, Object::Router));
            wrap_cached(ok, kind, &o, &[])
        }
    }
}

async fn delete(
    st: &AppState,
    ctx: &RequestContext,
    kind: Kind,
    id: &str,
) -> Result<Response, HttpError> {
    let (ctx, id) = (ctx.clone(), id.to_string());
    st.svc
        .write(move |t| {
            let c: Change = match kind {
                Kind::Network => t.delete_network(&ctx, &id)?,
                Kind::Subnet => t.delete_subnet(&ctx, &id)?,
                Kind::Port => t.delete_port(&ctx, &id)?,
                Kind::Router => t.delete_router(&ctx, &id)?,
            };
            Ok((c, ()))
        })
        .await?;
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wyvern_model::ModelConfig;

    /// Every attribute that `str_attr` answers is, in the JSON, exactly that string; so a
    /// typed filter on it matches the same objects as the JSON filter.
    #[test]
    fn typed_filters_match_json_filters() {
        let ctx = RequestContext::admin("p1", Timestamp(1_700_000_000));
        let mut t = Topology::new(ModelConfig::default());
        let (c, n) = t
            .create_network(
                &ctx,
                NetworkCreate::from_json(&json!({"name": "n\"1"}), &ctx).unwrap(),
            )
            .unwrap();
        t.apply(&c);
        let req =
            SubnetCreate::from_json(&json!({"network_id": n.id, "cidr": "10.0.0.0/24"}), &ctx);
        let (c, sn) = t.create_subnet(&ctx, req.unwrap()).unwrap();
        t.apply(&c);
        let body = json!({"network_id": n.id, "device_id": "vm-1", "device_owner": "compute:nova",
                          "binding:host_id": "h1", "description": "d"});
        let (c, p) = t
            .create_port(&ctx, PortCreate::from_json(&body, &ctx).unwrap())
            .unwrap();
        t.apply(&c);
        let req = RouterCreate::from_json(&json!({"name": "r"}), &ctx).unwrap();
        let (_, r) = t.create_router(&ctx, req).unwrap();
        fn check<T: Listable>(o: &T, keys: &[&str]) {
            let v = serde_json::to_value(o).unwrap();
            for k in keys {
                let got = o.str_attr(k).unwrap_or_else(|| panic!("{k} not typed"));
                assert_eq!(v[*k], Value::String(got.into_owned()), "{k}");
            }
            assert!(o.str_attr("fixed_ips").is_none());
            assert!(o.str_attr("admin_state_up").is_none());
        }
        let common = ["id", "name", "tenant_id", "project_id", "description"];
        check(&t.network_view(&n), &[&common[..], &["status"]].concat());
        check(&sn, &[&common[..], &["network_id", "cidr"]].concat());
        let port_keys = [
            "network_id",
            "mac_address",
            "status",
            "device_id",
            "device_owner",
            "binding:host_id",
        ];
        check(&p, &[&common[..], &port_keys[..]].concat());
        check(&r, &[&common[..], &["status"]].concat());
    }
}
