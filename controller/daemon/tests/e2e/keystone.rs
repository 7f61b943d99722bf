//! wyvernd behind a real Keystone (PyPI `keystone` on SQLite, served by uWSGI): tokens of
//! two projects and their isolation, Neutron's roles, revocation honoured once the token
//! cache's TTL has passed, 503 while Keystone is down and recovery without a restart, and the
//! `openstack` CLI authenticating with a password against Keystone.

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wyvern_testkit::keystone::{Keystone, KsUser, REGION};
use wyvern_testkit::openstack::{Os, OsAuth};
use wyvern_testkit::wyvernd::Wyvernd;

use crate::common::*;

const SERVICE_PASSWORD: &str = "wyvern-service-pw";

/// The Keystone of a [`Cloud`]: the process-wide shared one, or one of the test's own (to stop).
pub enum Ks {
    Shared(&'static Keystone),
    Own(Keystone),
}

impl std::ops::Deref for Ks {
    type Target = Keystone;
    fn deref(&self) -> &Keystone {
        match self {
            Ks::Shared(k) => k,
            Ks::Own(k) => k,
        }
    }
}

impl Ks {
    /// The test's own Keystone (to stop and restart it).
    pub fn own(&mut self) -> &mut Keystone {
        match self {
            Ks::Own(k) => k,
            Ks::Shared(_) => panic!("the shared Keystone must not be stopped"),
        }
    }
}

/// wyvern's service user and three people: alice (member of alpha), bob (member of beta),
/// carol (reader of alpha).
#[derive(Clone)]
struct People {
    alice: KsUser,
    bob: KsUser,
    carol: KsUser,
}

fn people(ks: &Keystone) -> People {
    ks.ensure_user("wyvern", SERVICE_PASSWORD, "service", &["service"])
        .expect("service user");
    People {
        alice: ks
            .ensure_user("alice", "alice-pw", "alpha", &["member"])
            .expect("alice"),
        bob: ks
            .ensure_user("bob", "bob-pw", "beta", &["member"])
            .expect("bob"),
        carol: ks
            .ensure_user("carol", "carol-pw", "alpha", &["reader"])
            .expect("carol"),
    }
}

/// The shared Keystone with its people, made once per test process (concurrent first
/// callers wait for one setup rather than racing to create the same users).
fn shared() -> (&'static Keystone, People) {
    static SHARED: OnceLock<(&'static Keystone, People)> = OnceLock::new();
    let (ks, p) = SHARED.get_or_init(|| {
        let ks = Keystone::shared(Path::new(env!("CARGO_TARGET_TMPDIR")))
            .expect("shared Keystone starts");
        (ks, people(ks))
    });
    (ks, p.clone())
}

/// Keystone with its people; wyvernd (a fresh one per test) validating against it.
pub struct Cloud {
    pub ks: Ks,
    pub w: Wyvernd,
    pub alice: KsUser,
    pub bob: KsUser,
    pub carol: KsUser,
    _dir: tempfile::TempDir,
}

impl Cloud {
    /// On the shared Keystone; `ttl`: wyvernd's token cache TTL in seconds.
    pub fn start(ttl: u64) -> Cloud {
        let (ks, p) = shared();
        Cloud::with(Ks::Shared(ks), p, ttl)
    }

    /// On a Keystone of the test's own, for a test that stops it.
    pub fn start_own(ttl: u64) -> Cloud {
        let ks = Keystone::start(Path::new(env!("CARGO_TARGET_TMPDIR"))).expect("Keystone starts");
        let p = people(&ks);
        Cloud::with(Ks::Own(ks), p, ttl)
    }

    fn with(ks: Ks, p: People, ttl: u64) -> Cloud {
        // Service credentials live in the config file, as an operator would keep them.
        let dir = tempfile::tempdir().expect("temp dir");
        let cfg = dir.path().join("wyvernd.toml");
        std::fs::write(
            &cfg,
            format!(
                "auth = \"keystone\"\nkeystone_url = \"{}\"\nkeystone_username = \"wyvern\"\n\
                 keystone_password = \"{SERVICE_PASSWORD}\"\nkeystone_project_name = \"service\"\n\
                 token_cache_ttl = {ttl}\n",
                ks.url()
            ),
        )
        .expect("config written");
        let w = options()
            .arg("--config")
            .arg(cfg.display().to_string())
            .start()
            .expect("wyvernd starts");
        Cloud {
            ks,
            w,
            alice: p.alice,
            bob: p.bob,
            carol: p.carol,
            _dir: dir,
        }
    }

    pub fn api(&self, user: &KsUser) -> Api {
        let token = self.ks.token(user).expect("token issued");
        Api::of(&self.w).with_token(&token)
    }

    pub fn admin(&self) -> Api {
        let token = self.ks.admin_token().expect("admin token");
        Api::of(&self.w).with_token(&token)
    }
}

/// Polls `GET path` until it answers `status` (with a deadline; the pause grows to 200 ms).
async fn wait_status(api: &Api, path: &str, status: u16, timeout: Duration) -> Resp {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(10);
    loop {
        let r = api.get(path).await;
        if r.status.as_u16() == status {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "no {status} for GET {path} within {timeout:?}; last answer {} {}",
            r.status,
            r.body
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

#[tokio::test]
async fn keystone_tokens_isolate_projects_and_enforce_roles() {
    let c = Cloud::start(10);
    let anon = Api::of(&c.w);
    anon.get("/v2.0/networks")
        .await
        .err(401, "HTTPUnauthorized");
    anon.with_token("gAAAAAnot-a-token")
        .get("/v2.0/networks")
        .await
        .err(401, "HTTPUnauthorized");

    let alice = c.api(&c.alice);
    let bob = c.api(&c.bob);
    let carol = c.api(&c.carol);
    let net = alice.network("alpha-net").await;
    // The owner is the token's project, by id.
    assert_eq!(net["project_id"], json!(c.alice.project_id));
    assert_eq!(net["tenant_id"], json!(c.alice.project_id));
    let sub = alice.subnet(&net, "10.20.0.0/24").await;
    let port = alice.port(&net, "p1").await;

    // bob (another project) sees none of it and cannot touch it.
    assert!(bob.list("networks", "").await.is_empty());
    assert!(bob.list("ports", "").await.is_empty());
    bob.get(&format!("/v2.0/networks/{}", id(&net)))
        .await
        .err(404, "NetworkNotFound");
    bob.delete(&format!("/v2.0/ports/{}", id(&port)))
        .await
        .err(404, "PortNotFound");
    // A member may not create for another project.
    bob.post(
        "/v2.0/networks",
        json!({"network": {"name": "x", "project_id": c.alice.project_id}}),
    )
    .await
    .err(403, "PolicyNotAuthorized");
    let bnet = bob.network("beta-net").await;
    assert_eq!(ids(&alice.list("networks", "").await), vec![id(&net)]);

    // carol reads alpha's objects but may write nothing.
    assert_eq!(ids(&carol.list("networks", "").await), vec![id(&net)]);
    assert_eq!(ids(&carol.list("subnets", "").await), vec![id(&sub)]);
    carol
        .post("/v2.0/networks", json!({"network": {"name": "c"}}))
        .await
        .err(403, "PolicyNotAuthorized");
    carol
        .put(
            &format!("/v2.0/ports/{}", id(&port)),
            json!({"port": {"name": "renamed"}}),
        )
        .await
        .err(403, "PolicyNotAuthorized");
    carol
        .delete(&format!("/v2.0/networks/{}", id(&net)))
        .await
        .err(403, "PolicyNotAuthorized");

    // The admin sees both projects and may act for one; bob can use a shared network.
    let admin = c.admin();
    let mut all = ids(&admin.list("networks", "").await);
    all.sort();
    let mut want = vec![id(&net).to_string(), id(&bnet).to_string()];
    want.sort();
    assert_eq!(all, want);
    let shared = admin
        .create(
            "network",
            json!({"name": "pub", "shared": true, "project_id": c.alice.project_id}),
        )
        .await;
    assert_eq!(shared["project_id"], json!(c.alice.project_id));
    admin.subnet(&shared, "10.30.0.0/24").await;
    let bport = bob.port(&shared, "on-shared").await;
    assert_eq!(bport["project_id"], json!(c.bob.project_id));
    bob.put(
        &format!("/v2.0/networks/{}", id(&shared)),
        json!({"network": {"name": "mine"}}),
    )
    .await
    .err(403, "PolicyNotAuthorized");
}

#[tokio::test]
async fn keystone_revoked_token_is_refused_once_the_cache_ttl_passed() {
    let ttl = 2;
    let c = Cloud::start(ttl);
    let token = c.ks.token(&c.alice).expect("token");
    let alice = Api::of(&c.w).with_token(&token);
    alice.network("before").await;
    c.ks.revoke(&token).expect("revoked");
    let revoked_at = Instant::now();
    // Trusted from the cache for at most the TTL, then refused; never longer.
    wait_status(&alice, "/v2.0/networks", 401, Duration::from_secs(ttl + 10)).await;
    let waited = revoked_at.elapsed();
    assert!(
        waited <= Duration::from_secs(ttl + 5),
        "revocation took {waited:?} with a {ttl} s cache TTL"
    );
    alice
        .get("/v2.0/networks")
        .await
        .err(401, "HTTPUnauthorized");
    // A new token of the same user works at once.
    assert_eq!(c.api(&c.alice).list("networks", "").await.len(), 1);
}

#[tokio::test]
async fn keystone_outage_is_503_then_recovers_without_restarting_wyvernd() {
    let mut c = Cloud::start_own(1);
    let alice = c.api(&c.alice);
    let net = alice.network("n").await;
    let pid = c.w.pid();
    c.ks.own().stop().expect("Keystone stops");
    // Once the cached validation is older than the TTL, nothing gets through: 503.
    wait_status(&alice, "/v2.0/networks", 503, Duration::from_secs(15))
        .await
        .err(503, "HTTPServiceUnavailable");
    Api::of(&c.w)
        .with_token("gAAAAAunknown")
        .post("/v2.0/networks", json!({"network": {}}))
        .await
        .err(503, "HTTPServiceUnavailable");
    c.ks.own().start_again().expect("Keystone restarts");
    let body = wait_status(&alice, "/v2.0/networks", 200, Duration::from_secs(20))
        .await
        .body;
    assert_eq!(body["networks"][0]["id"], net["id"]);
    assert_eq!(c.w.pid(), pid, "wyvernd was not restarted");
    alice.network("after").await;
}

/// The openstack CLI against the catalog: `--os-auth-url` plus user, password and project.
fn cli(c: &Cloud, user: &KsUser) -> Os {
    Os::new(
        c.ks.venv(),
        OsAuth::Password {
            auth_url: c.ks.url(),
            username: user.name.clone(),
            password: user.password.clone(),
            project: user.project.clone(),
            region: REGION.to_string(),
        },
    )
}

fn names(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .expect("a JSON list")
        .iter()
        .filter_map(|o| o["Name"].as_str().map(str::to_owned))
        .collect();
    v.sort();
    v
}

#[test]
fn openstack_cli_with_keystone_auth_drives_the_lifecycle() {
    let c = Cloud::start(10);
    c.ks.register_endpoint("network", "neutron", &c.w.url())
        .expect("wyvernd in the catalog");
    let alice = cli(&c, &c.alice);
    let bob = cli(&c, &c.bob);

    let net = alice.json(&["network", "create", "net1"]);
    assert_eq!(net["project_id"], json!(c.alice.project_id));
    let sub = alice.json(&[
        "subnet",
        "create",
        "sub1",
        "--network",
        "net1",
        "--subnet-range",
        "10.40.0.0/24",
    ]);
    assert_eq!(sub["gateway_ip"], json!("10.40.0.1"));
    let port = alice.json(&["port", "create", "--network", "net1", "p1"]);
    assert_eq!(port["fixed_ips"][0]["ip_address"], json!("10.40.0.2"));
    alice.json(&["router", "create", "r1"]);
    alice.run(&["router", "add", "subnet", "r1", "sub1"]);
    let ports = alice.json(&["port", "list", "--router", "r1"]);
    assert_eq!(ports.as_array().map(Vec::len), Some(1), "{ports}");
    alice.run(&["network", "set", "--name", "net1b", "net1"]);
    assert_eq!(names(&alice.json(&["network", "list"])), ["net1b"]);
    // Another project's CLI user sees nothing of it.
    assert_eq!(names(&bob.json(&["network", "list"])), Vec::<String>::new());
    assert_eq!(names(&bob.json(&["router", "list"])), Vec::<String>::new());

    alice.run(&["router", "remove", "subnet", "r1", "sub1"]);
    alice.run(&["router", "delete", "r1"]);
    alice.run(&["port", "delete", "p1"]);
    alice.run(&["subnet", "delete", "sub1"]);
    alice.run(&["network", "delete", "net1b"]);
    assert_eq!(
        names(&alice.json(&["network", "list"])),
        Vec::<String>::new()
    );
}
