//! Who is calling: turns request headers into a [`RequestContext`].
//!
//! Three modes behind one enum, so the handlers never know which one runs:
//! - [`Auth::NoAuth`]: every request is an admin of `default_project` (one-host setups,
//!   Neutron's `auth_strategy = noauth`). A `tenant_id`/`project_id` in a create body still
//!   chooses the owner, as admins may.
//! - [`Auth::TokenFile`]: `X-Auth-Token` is required and looked up in a token table loaded
//!   from a JSON file; a missing or unknown token is a 401. The `admin` role makes the caller
//!   an admin; a token without `roles` is a `member`; `["reader"]` may only read.
//! - [`Auth::Keystone`]: `X-Auth-Token` is validated against Keystone v3
//!   (`GET /v3/auth/tokens` with `X-Subject-Token`), authenticated by wyvern's own service
//!   token (see [`KeystoneAuth`]).
//!
//! Token file format (JSON):
//! ```json
//! {"tokens": {
//!     "s3cr3t-admin": {"project_id": "admin-project", "roles": ["admin"]},
//!     "s3cr3t-alice": {"project_id": "alice-project", "roles": ["member"]}
//! }}
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::json;
use wyvern_model::{RequestContext, Timestamp};

/// One token's identity.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TokenInfo {
    pub project_id: String,
    /// `["member"]` when the file names none (the token file predates roles-based policy).
    #[serde(default = "default_roles")]
    pub roles: Vec<String>,
}

fn default_roles() -> Vec<String> {
    vec!["member".into()]
}

/// The parsed token file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct TokenTable {
    pub tokens: HashMap<String, TokenInfo>,
}

/// Why an auth mode could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("failed to read token file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to parse token file {path} (expected {{\"tokens\": {{TOKEN: {{\"project_id\": ..., \"roles\": [...]}}}}}}): {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("failed to build the HTTP client for Keystone at {url}: {source}")]
    KeystoneClient {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("failed to configure Keystone auth: the url {0:?} is not an http:// or https:// URL")]
    KeystoneUrl(String),
}

/// How requests are authenticated.
#[derive(Debug, Clone)]
pub enum Auth {
    /// No authentication: every caller is an admin of `default_project`.
    NoAuth { default_project: String },
    /// `X-Auth-Token` checked against a table (see [`Auth::load_token_file`]).
    TokenFile(Arc<TokenTable>),
    /// `X-Auth-Token` validated by Keystone (see [`Auth::keystone`]).
    Keystone(Arc<KeystoneAuth>),
}

/// Why a request was not authenticated: 401, or 503 when Keystone cannot answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("Authentication required: the X-Auth-Token header is missing")]
    MissingToken,
    #[error("Authentication failed: the token is not valid")]
    InvalidToken,
    #[error("Authentication failed: the token has expired")]
    ExpiredToken,
    #[error("Authentication failed: the token is not scoped to a project")]
    UnscopedToken,
    /// Keystone could not be reached or could not validate (never a reason to let a request
    /// through).
    #[error("Authentication service unavailable: {0}")]
    Unavailable(String),
}

impl AuthFailure {
    /// The HTTP status of this failure.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthFailure::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// Neutron's error type name for this failure.
    pub fn neutron_type(&self) -> &'static str {
        match self {
            AuthFailure::Unavailable(_) => "HTTPServiceUnavailable",
            _ => "HTTPUnauthorized",
        }
    }
}

impl Auth {
    /// Token mode from a JSON token file (format in the module docs).
    pub fn load_token_file(path: &Path) -> Result<Auth, AuthError> {
        let bytes = std::fs::read(path).map_err(|source| AuthError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let table: TokenTable =
            serde_json::from_slice(&bytes).map_err(|source| AuthError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Auth::TokenFile(Arc::new(table)))
    }

    /// Keystone mode. Nothing is fetched yet: the service token is obtained on the first
    /// request, so wyvernd starts (and answers 503) while Keystone is down.
    pub fn keystone(cfg: KeystoneConfig) -> Result<Auth, AuthError> {
        Ok(Auth::Keystone(Arc::new(KeystoneAuth::new(cfg)?)))
    }

    /// The caller's context, or why there is none.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        now: Timestamp,
    ) -> Result<RequestContext, AuthFailure> {
        match self {
            Auth::NoAuth { default_project } => {
                Ok(RequestContext::admin(default_project.clone(), now))
            }
            Auth::TokenFile(table) => {
                let token = header_token(headers)?;
                let info = table.tokens.get(token).ok_or(AuthFailure::InvalidToken)?;
                Ok(context(&info.project_id, &info.roles, now))
            }
            Auth::Keystone(ks) => {
                let token = header_token(headers)?;
                let id = ks.validate(token).await?;
                Ok(context(&id.project_id, &id.roles, now))
            }
        }
    }
}

fn header_token(headers: &HeaderMap) -> Result<&str, AuthFailure> {
    headers
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(AuthFailure::MissingToken)
}

/// Roles are matched case-insensitively (Keystone role names are case-insensitive).
fn context(project_id: &str, roles: &[String], now: Timestamp) -> RequestContext {
    let roles: Vec<String> = roles.iter().map(|r| r.to_ascii_lowercase()).collect();
    RequestContext {
        project_id: project_id.to_string(),
        is_admin: roles.iter().any(|r| r == "admin"),
        roles,
        now,
    }
}

/// Where Keystone is and who wyvern is to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeystoneConfig {
    /// Keystone's public endpoint, with or without the trailing `/v3`.
    pub url: String,
    /// wyvern's service user (needs the `service` or `admin` role to validate tokens).
    pub username: String,
    pub password: String,
    pub user_domain_name: String,
    /// The project the service token is scoped to.
    pub project_name: String,
    pub project_domain_name: String,
    /// How long a validated token is trusted without asking Keystone again. Short, so that
    /// a revoked token stops working soon; never longer than the token's own expiry.
    pub cache_ttl: Duration,
    /// Timeout of one request to Keystone (a slow Keystone becomes a 503, not a hang).
    pub timeout: Duration,
    /// The most tokens kept in the cache (bounded memory under token churn).
    pub cache_capacity: usize,
}

/// Default [`KeystoneConfig::cache_ttl`]: revocation takes effect within this time.
pub const DEFAULT_TOKEN_CACHE_TTL: Duration = Duration::from_secs(10);
/// Default [`KeystoneConfig::timeout`]: generous, because a loaded Keystone takes seconds per
/// password login (bcrypt) and a timeout turns into 503s for every caller.
pub const DEFAULT_KEYSTONE_TIMEOUT: Duration = Duration::from_secs(15);
/// Default [`KeystoneConfig::cache_capacity`].
pub const DEFAULT_TOKEN_CACHE_CAPACITY: usize = 10_000;

impl KeystoneConfig {
    /// Defaults for everything but the endpoint and the service user.
    pub fn new(
        url: impl Into<String>,
        username: impl Into<String>,
        password: impl Into<String>,
        project_name: impl Into<String>,
    ) -> Self {
        KeystoneConfig {
            url: url.into(),
            username: username.into(),
            password: password.into(),
            user_domain_name: "Default".into(),
            project_name: project_name.into(),
            project_domain_name: "Default".into(),
            cache_ttl: DEFAULT_TOKEN_CACHE_TTL,
            timeout: DEFAULT_KEYSTONE_TIMEOUT,
            cache_capacity: DEFAULT_TOKEN_CACHE_CAPACITY,
        }
    }
}

/// The identity a Keystone token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeystoneIdentity {
    pub user_id: String,
    pub user_name: String,
    pub user_domain_id: String,
    pub project_id: String,
    pub project_domain_id: String,
    pub roles: Vec<String>,
    /// Unix seconds at which Keystone stops honouring the token.
    pub expires_at: u64,
}

#[derive(Debug)]
struct CachedIdentity {
    id: KeystoneIdentity,
    /// Trusted until then (cache TTL or the token's expiry, whichever comes first).
    until: Instant,
}

#[derive(Debug, Clone)]
struct ServiceToken {
    token: String,
    /// Fetch a new one from then on (well before Keystone's expiry).
    renew_at: Instant,
}

/// Validates user tokens against Keystone v3 and caches the answers.
///
/// wyvern's own (service) token is obtained with password auth on first use and renewed
/// once three quarters of its lifetime have passed (or when Keystone rejects it). One lock
/// serialises service-token fetches, so a burst of requests asks Keystone for one token.
#[derive(Debug)]
pub struct KeystoneAuth {
    cfg: KeystoneConfig,
    /// `<url>/v3`.
    v3: String,
    http: reqwest::Client,
    service: tokio::sync::Mutex<Option<ServiceToken>>,
    cache: RwLock<HashMap<String, CachedIdentity>>,
    /// Validations in flight, by token: requests that miss the cache for a token already
    /// being validated wait for that answer instead of asking Keystone again.
    flights: std::sync::Mutex<HashMap<String, Flight>>,
}

/// One validation of one token, shared by every request that waits for it.
type Flight = Arc<tokio::sync::OnceCell<Result<KeystoneIdentity, AuthFailure>>>;

#[derive(Deserialize)]
struct TokenBody {
    token: TokenDoc,
}
#[derive(Deserialize)]
struct TokenDoc {
    expires_at: String,
    user: Named,
    project: Option<Named>,
    #[serde(default)]
    roles: Vec<Role>,
}
#[derive(Deserialize)]
struct Named {
    id: String,
    #[serde(default)]
    name: String,
    domain: Option<Domain>,
}
#[derive(Deserialize)]
struct Domain {
    id: String,
}
#[derive(Deserialize)]
struct Role {
    name: String,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Keystone's `2026-11-28T16:17:03.000000Z` as Unix seconds (fraction dropped).
fn parse_expiry(s: &str) -> Option<u64> {
    let s = s.trim_end_matches('Z');
    let s = s.split_once('.').map_or(s, |(a, _)| a);
    let s = s.split_once('+').map_or(s, |(a, _)| a);
    s.parse::<Timestamp>().ok().map(|t| t.0)
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> AuthFailure {
    tracing::warn!(error = %e, "keystone: {what}");
    AuthFailure::Unavailable(format!("failed to {what}: {e}"))
}

impl KeystoneAuth {
    /// A validator for `cfg` (no request is made yet).
    pub fn new(cfg: KeystoneConfig) -> Result<Self, AuthError> {
        let base = cfg.url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(AuthError::KeystoneUrl(cfg.url.clone()));
        }
        let v3 = if base.ends_with("/v3") {
            base.to_string()
        } else {
            format!("{base}/v3")
        };
        // No idle pool: WSGI servers in front of Keystone (uWSGI's http-socket) close
        // connections after an answer, and a request sent on such a connection fails as
        // "unreachable". Validations are rare (cache misses), a connect each is cheap.
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|source| AuthError::KeystoneClient {
                url: cfg.url.clone(),
                source,
            })?;
        Ok(KeystoneAuth {
            cfg,
            v3,
            http,
            service: tokio::sync::Mutex::new(None),
            cache: RwLock::new(HashMap::new()),
            flights: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The identity of `token`: from the cache while trusted, else from Keystone.
    ///
    /// One validation per token at a time: when a busy token's cache entry ends, every
    /// request carrying it misses at once. Without this each asked Keystone (measured with
    /// 64 clients: 64 validations queued on a one-worker Keystone, some past the timeout,
    /// answered 503). Waiters share the answer, failures included (a Keystone that hangs
    /// costs each of them one timeout, not one per request ahead of them); failures are not
    /// cached beyond that.
    pub async fn validate(&self, token: &str) -> Result<KeystoneIdentity, AuthFailure> {
        if let Some(id) = self.cached(token)? {
            return Ok(id);
        }
        let flight: Flight = {
            let mut f = self.flights.lock().map_err(|_| {
                AuthFailure::Unavailable("the validation table lock is poisoned".into())
            })?;
            f.entry(token.to_string()).or_default().clone()
        };
        let answer = flight
            .get_or_init(|| async {
                // Filled while this request waited its turn (a flight that just ended).
                match self.cached(token) {
                    Ok(Some(id)) => Ok(id),
                    Ok(None) => self.ask_keystone(token).await,
                    Err(e) => Err(e),
                }
            })
            .await
            .clone();
        if let Ok(mut f) = self.flights.lock() {
            if f.get(token).is_some_and(|g| Arc::ptr_eq(g, &flight)) {
                f.remove(token);
            }
        }
        answer
    }

    /// Validates `token` with Keystone (remembering a valid answer).
    async fn ask_keystone(&self, token: &str) -> Result<KeystoneIdentity, AuthFailure> {
        let mut retried = false;
        loop {
            let service = self.service_token(retried).await?;
            let resp = self
                .http
                .get(format!("{}/auth/tokens?nocatalog", self.v3))
                .header("X-Auth-Token", &service)
                .header("X-Subject-Token", token)
                .send()
                .await
                .map_err(|e| unavailable("reach Keystone to validate a token", e))?;
            let status = resp.status();
            match status.as_u16() {
                200 => {
                    let body: TokenBody = resp
                        .json()
                        .await
                        .map_err(|e| unavailable("parse Keystone's token validation", e))?;
                    let id = self.identity(body.token)?;
                    self.remember(token, &id);
                    return Ok(id);
                }
                // Keystone answers 404 for unknown, expired and revoked tokens alike.
                404 | 400 => return Err(AuthFailure::InvalidToken),
                // Our own token was rejected (expired early, revoked, Keystone restarted
                // with new keys): fetch a new one once.
                401 if !retried => {
                    retried = true;
                    continue;
                }
                _ => {
                    return Err(unavailable(
                        "validate a token",
                        format!("Keystone answered {status}"),
                    ))
                }
            }
        }
    }

    fn cached(&self, token: &str) -> Result<Option<KeystoneIdentity>, AuthFailure> {
        let cache = self
            .cache
            .read()
            .map_err(|_| AuthFailure::Unavailable("the token cache lock is poisoned".into()))?;
        Ok(match cache.get(token) {
            Some(c) if c.until > Instant::now() => {
                if c.id.expires_at <= unix_now() {
                    return Err(AuthFailure::ExpiredToken);
                }
                Some(c.id.clone())
            }
            _ => None,
        })
    }

    fn identity(&self, t: TokenDoc) -> Result<KeystoneIdentity, AuthFailure> {
        let expires_at = parse_expiry(&t.expires_at).ok_or_else(|| {
            unavailable(
                "parse a token's expiry",
                format!("unexpected expires_at {:?}", t.expires_at),
            )
        })?;
        if expires_at <= unix_now() {
            return Err(AuthFailure::ExpiredToken);
        }
        let project = t.project.ok_or(AuthFailure::UnscopedToken)?;
        Ok(KeystoneIdentity {
            user_domain_id: t.user.domain.map(|d| d.id).unwrap_or_default(),
            user_id: t.user.id,
            user_name: t.user.name,
            project_domain_id: project.domain.map(|d| d.id).unwrap_or_default(),
            project_id: project.id,
            roles: t.roles.into_iter().map(|r| r.name).collect(),
            expires_at,
        })
    }

    fn remember(&self, token: &str, id: &KeystoneIdentity) {
        let left = Duration::from_secs(id.expires_at.saturating_sub(unix_now()));
        let until = Instant::now() + self.cfg.cache_ttl.min(left);
        let Ok(mut cache) = self.cache.write() else {
            return;
        };
        if cache.len() >= self.cfg.cache_capacity {
            let now = Instant::now();
            cache.retain(|_, c| c.until > now);
            if cache.len() >= self.cfg.cache_capacity {
                cache.clear();
            }
        }
        cache.insert(
            token.to_string(),
            CachedIdentity {
                id: id.clone(),
                until,
            },
        );
    }

    /// wyvern's own token, fetched or renewed when due (or when `force`).
    async fn service_token(&self, force: bool) -> Result<String, AuthFailure> {
        let mut slot = self.service.lock().await;
        if let Some(t) = slot.as_ref() {
            if !force && t.renew_at > Instant::now() {
                return Ok(t.token.clone());
            }
        }
        *slot = None;
        let c = &self.cfg;
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": c.username, "domain": {"name": c.user_domain_name}, "password": c.password}}},
            "scope": {"project": {"name": c.project_name, "domain": {"name": c.project_domain_name}}}
        }});
        let resp = self
            .http
            .post(format!("{}/auth/tokens?nocatalog", self.v3))
            .json(&body)
            .send()
            .await
            .map_err(|e| unavailable("reach Keystone for the service token", e))?;
        if resp.status() != StatusCode::CREATED {
            let status = resp.status();
            tracing::error!(%status, user = %c.username, "keystone refused wyvern's service credentials");
            return Err(unavailable(
                "obtain the service token",
                format!("Keystone answered {status} for user {}", c.username),
            ));
        }
        let token = resp
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| {
                unavailable(
                    "obtain the service token",
                    "no X-Subject-Token in Keystone's answer",
                )
            })?;
        let doc: TokenBody = resp
            .json()
            .await
            .map_err(|e| unavailable("parse the service token", e))?;
        let expires = parse_expiry(&doc.token.expires_at).unwrap_or(0);
        let life = Duration::from_secs(expires.saturating_sub(unix_now()));
        let renew_at = Instant::now() + life * 3 / 4;
        *slot = Some(ServiceToken {
            token: token.clone(),
            renew_at,
        });
        Ok(token)
    }

    /// Forgets every cached validation (tests, and an operator's revocation emergency).
    pub fn clear_cache(&self) {
        if let Ok(mut c) = self.cache.write() {
            c.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keystone_expiry_parses_with_and_without_fraction() {
        assert_eq!(parse_expiry("1970-01-01T00:01:00.000000Z"), Some(60));
        assert_eq!(parse_expiry("1970-01-01T00:01:00Z"), Some(60));
        assert_eq!(parse_expiry("1970-01-02T00:00:00.5+00:00"), Some(86_400));
        assert_eq!(parse_expiry("tomorrow"), None);
    }

    #[test]
    fn keystone_url_must_be_http() {
        let e = KeystoneAuth::new(KeystoneConfig::new("localhost:5000", "u", "p", "s"));
        assert!(matches!(e, Err(AuthError::KeystoneUrl(_))));
        let k = KeystoneAuth::new(KeystoneConfig::new("http://k:5000/v3/", "u", "p", "s"));
        assert_eq!(k.map(|k| k.v3).ok().as_deref(), Some("http://k:5000/v3"));
    }

    #[tokio::test]
    async fn unreachable_keystone_is_503_never_a_pass() {
        // A port nobody listens on (bound, then closed).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let mut cfg = KeystoneConfig::new(format!("http://127.0.0.1:{port}"), "u", "p", "s");
        cfg.timeout = Duration::from_secs(2);
        let auth = Auth::keystone(cfg).unwrap();
        let mut h = HeaderMap::new();
        let err = auth.authenticate(&h, Timestamp(0)).await.unwrap_err();
        assert_eq!(err, AuthFailure::MissingToken);
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
        h.insert("x-auth-token", "abc".parse().unwrap());
        let err = auth.authenticate(&h, Timestamp(0)).await.unwrap_err();
        assert!(matches!(err, AuthFailure::Unavailable(_)), "{err:?}");
        assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    /// A minimal Keystone on a loopback port: the service login (POST) and slow token
    /// validations (GET, 100 ms each), counting the validations it answered.
    async fn fake_keystone(validations: Arc<std::sync::atomic::AtomicUsize>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move {
            loop {
                let Ok((mut c, _)) = l.accept().await else {
                    return;
                };
                let validations = validations.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // Headers, then the body by Content-Length.
                    let (head_end, len) = loop {
                        let n = c.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                            let len = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (i + 4, len);
                        }
                    };
                    while buf.len() < head_end + len {
                        let n = c.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let doc = r#"{"token": {"expires_at": "2999-01-01T00:00:00Z",
                        "user": {"id": "u1", "name": "alice"},
                        "project": {"id": "p1", "name": "pa"},
                        "roles": [{"name": "member"}]}}"#;
                    let (status, extra) = if buf.starts_with(b"POST") {
                        ("201 Created", "X-Subject-Token: service-token\r\n")
                    } else {
                        validations.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        ("200 OK", "")
                    };
                    let resp = format!(
                        "HTTP/1.1 {status}\r\n{extra}Content-Type: application/json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{doc}",
                        doc.len()
                    );
                    let _ = c.write_all(resp.as_bytes()).await;
                });
            }
        });
        url
    }

    /// 32 requests with one uncached token make ONE validation (a cache miss under load
    /// must not turn into a burst on Keystone), and all get the identity.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_for_one_token_share_one_validation() {
        let validations = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let url = fake_keystone(validations.clone()).await;
        let auth = Arc::new(KeystoneAuth::new(KeystoneConfig::new(url, "u", "p", "s")).unwrap());
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let auth = auth.clone();
                tokio::spawn(async move { auth.validate("user-token").await })
            })
            .collect();
        for t in tasks {
            let id = t.await.unwrap().unwrap();
            assert_eq!(id.project_id, "p1");
        }
        assert_eq!(validations.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Cached now; a different token is validated on its own.
        auth.validate("user-token").await.unwrap();
        auth.validate("other-token").await.unwrap();
        assert_eq!(validations.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[test]
    fn roles_decide_admin() {
        let c = context("p", &["Admin".into(), "member".into()], Timestamp(0));
        assert!(c.is_admin);
        assert_eq!(c.roles, vec!["admin", "member"]);
        let c = context("p", &["reader".into()], Timestamp(0));
        assert!(!c.is_admin);
    }
}
