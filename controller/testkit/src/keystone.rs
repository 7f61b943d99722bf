//! A real Keystone (PyPI `keystone`, SQLite, fernet tokens) served by uWSGI on a free
//! loopback port, for the tests that authenticate wyvernd's API against it.
//!
//! `keystone-manage db_sync` + `bootstrap` take ~15 s, so they run once per target dir into
//! a template (database, fernet and credential keys) that every instance copies; the copy's
//! identity endpoint is then pointed at the instance's own port. The admin user (`admin`,
//! [`ADMIN_PASSWORD`], project `admin`) has the admin, member and reader roles; projects and
//! users are made with [`Keystone::ensure_user`]. Keystone admin calls go through a small
//! stdlib-only Python helper run with the venv's interpreter (the harness needs no HTTP client).
//!
//! uWSGI, not gunicorn: Keystone's config parser reads gunicorn's own argv and fails.
//! One uWSGI worker with one thread: Keystone on SQLite fails concurrent writes (a password
//! login writes) with "database is locked", and uWSGI then closes the connection without an
//! answer, which clients see as "Connection reset by peer"; one worker also imports Keystone
//! once (tens of CPU-seconds on a loaded machine). `Connection: close` on every answer because
//! uWSGI's http-socket closes after each request: a client must never pool such a connection.
//! Tests that do not stop Keystone share one per process ([`Keystone::shared`]).
//! Passwords are hashed with bcrypt's minimum of 4 rounds: the default makes every password
//! login (each token the tests ask for) cost a large share of a second on this machine.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::poll::wait_for;
use crate::venv::Venv;
use crate::wyvernd::http_get_status;

/// Pinned PyPI packages of the OpenStack venv (Keystone, its WSGI server, the CLI, tempest):
/// one venv so that the tempest run and the CLI test reuse what the Keystone tests installed.
pub const OPENSTACK_PACKAGES: &[&str] = &[
    "keystone==30.0.0",
    "pyuwsgi==2.0.30.post1",
    "python-openstackclient==10.5.0",
    "tempest==47.0.0",
];
/// Name of that venv under the target dir.
pub const OPENSTACK_VENV: &str = "openstack";
/// Password of Keystone's bootstrap admin.
pub const ADMIN_PASSWORD: &str = "wyvern-admin-pw";
/// The region the bootstrap creates and endpoints are registered in.
pub const REGION: &str = "RegionOne";

/// Generous: three Keystones starting beside a build take over a minute on two cores.
const START_TIMEOUT: Duration = Duration::from_secs(180);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Bump when the template's contents change.
const TEMPLATE: &str = "keystone-template-v2";

/// Keystone admin calls over urllib (stdlib only). argv: base_url command json_args.
const HELPER: &str = r#"
import json, sys, urllib.request, urllib.error
base, cmd, args = sys.argv[1].rstrip('/'), sys.argv[2], json.loads(sys.argv[3])
def call(method, path, body=None, token=None, subject=None, ok=(200, 201, 204)):
    req = urllib.request.Request(base + path, method=method,
        data=None if body is None else json.dumps(body).encode())
    req.add_header('Content-Type', 'application/json')
    if token: req.add_header('X-Auth-Token', token)
    if subject: req.add_header('X-Subject-Token', subject)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            data = r.read()
            return r.status, r.headers, (json.loads(data) if data else None)
    except urllib.error.HTTPError as e:
        if e.code in ok: return e.code, e.headers, None
        sys.exit(f'{method} {path}: {e.code} {e.read().decode()}')
def token(user, password, project):
    body = {'auth': {'identity': {'methods': ['password'], 'password': {'user': {
        'name': user, 'domain': {'name': 'Default'}, 'password': password}}},
        'scope': {'project': {'name': project, 'domain': {'name': 'Default'}}}}}
    st, h, b = call('POST', '/auth/tokens?nocatalog', body)
    return h['X-Subject-Token']
def admin(): return token('admin', args.get('admin_password', ''), 'admin')
def find(kind, name, t):
    st, h, b = call('GET', f'/{kind}?name={name}', token=t)
    items = b[kind]
    return items[0]['id'] if items else None
if cmd == 'token':
    print(token(args['user'], args['password'], args['project']))
elif cmd == 'revoke':
    t = admin()
    call('DELETE', '/auth/tokens', token=t, subject=args['token'])
elif cmd == 'user':
    t = admin()
    pid = find('projects', args['project'], t)
    if pid is None:
        st, h, b = call('POST', '/projects', {'project': {'name': args['project'], 'domain_id': 'default'}}, token=t)
        pid = b['project']['id']
    uid = find('users', args['name'], t)
    if uid is None:
        st, h, b = call('POST', '/users', {'user': {'name': args['name'], 'password': args['password'], 'domain_id': 'default'}}, token=t)
        uid = b['user']['id']
    for role in args['roles']:
        rid = find('roles', role, t)
        call('PUT', f'/projects/{pid}/users/{uid}/roles/{rid}', token=t)
    print(json.dumps({'project_id': pid, 'user_id': uid}))
elif cmd == 'endpoint':
    t = admin()
    st, h, b = call('POST', '/services', {'service': {'type': args['type'], 'name': args['name']}}, token=t)
    sid = b['service']['id']
    for iface in ('public', 'internal', 'admin'):
        call('POST', '/endpoints', {'endpoint': {'service_id': sid, 'interface': iface,
             'url': args['url'], 'region_id': args['region']}}, token=t)
    print(sid)
elif cmd == 'retarget':
    import sqlite3
    db = sqlite3.connect(args['db'])
    db.execute("UPDATE endpoint SET url = ? WHERE service_id IN (SELECT id FROM service WHERE type = 'identity')", (args['url'],))
    db.commit()
else:
    sys.exit('unknown command ' + cmd)
"#;

/// A project and user made by [`Keystone::ensure_user`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KsUser {
    pub name: String,
    pub password: String,
    pub project: String,
    pub project_id: String,
    pub user_id: String,
}

/// A running Keystone; stopped and reaped on drop.
#[derive(Debug)]
pub struct Keystone {
    venv: Venv,
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("failed to run {what}"))?;
    if !out.status.success() {
        bail!(
            "failed to {what}:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("failed to bind a free port")?;
    Ok(l.local_addr()
        .context("failed to read a bound port")?
        .port())
}

fn keystone_conf(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "[DEFAULT]\nlog_file = {d}/keystone.log\n\
         [database]\nconnection = sqlite:///{d}/keystone.db\n\
         [token]\nprovider = fernet\nexpiration = 3600\n\
         [identity]\npassword_hash_rounds = 4\n\
         [fernet_tokens]\nkey_repository = {d}/fernet\n\
         [fernet_receipts]\nkey_repository = {d}/fernet\n\
         [credential]\nkey_repository = {d}/credential\n"
    )
}

/// Creates the bootstrapped template once per target dir (under a file lock).
fn template(venv: &Venv, target_dir: &Path) -> Result<PathBuf> {
    let root = venv
        .dir()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| target_dir.to_path_buf());
    let dir = root.join(TEMPLATE);
    let lock_path = root.join(format!("{TEMPLATE}.lock"));
    let lock = File::create(&lock_path)
        .with_context(|| format!("failed to create {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("failed to lock {}", lock_path.display()))?;
    let marker = dir.join(".bootstrapped");
    if marker.exists() {
        return Ok(dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
    for sub in ["fernet", "credential"] {
        std::fs::create_dir_all(dir.join(sub))
            .with_context(|| format!("failed to create {}", dir.display()))?;
    }
    let conf = dir.join("keystone.conf");
    std::fs::write(&conf, keystone_conf(&dir))
        .with_context(|| format!("failed to write {}", conf.display()))?;
    let manage = |args: &[&str], what: &str| {
        run(
            Command::new(venv.bin("keystone-manage"))
                .arg("--config-file")
                .arg(&conf)
                .args(args),
            what,
        )
    };
    manage(&["db_sync"], "keystone-manage db_sync")?;
    let owner = ["--keystone-user", "root", "--keystone-group", "root"];
    manage(
        &[&["fernet_setup"][..], &owner[..]].concat(),
        "keystone-manage fernet_setup",
    )?;
    manage(
        &[&["credential_setup"][..], &owner[..]].concat(),
        "keystone-manage credential_setup",
    )?;
    let url = "http://127.0.0.1:1/v3/"; // retargeted per instance
    manage(
        &[
            "bootstrap",
            "--bootstrap-password",
            ADMIN_PASSWORD,
            "--bootstrap-admin-url",
            url,
            "--bootstrap-public-url",
            url,
            "--bootstrap-internal-url",
            url,
            "--bootstrap-region-id",
            REGION,
        ],
        "keystone-manage bootstrap",
    )?;
    std::fs::write(&marker, b"")
        .with_context(|| format!("failed to write {}", marker.display()))?;
    Ok(dir)
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("failed to create {}", to.display()))?;
    for e in
        std::fs::read_dir(from).with_context(|| format!("failed to read {}", from.display()))?
    {
        let e = e.with_context(|| format!("failed to read {}", from.display()))?;
        let dst = to.join(e.file_name());
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            copy_dir(&e.path(), &dst)?;
        } else {
            std::fs::copy(e.path(), &dst)
                .with_context(|| format!("failed to copy {}", e.path().display()))?;
        }
    }
    Ok(())
}

/// The Keystone of [`Keystone::shared`], started once per test process.
static SHARED: OnceLock<std::result::Result<Keystone, String>> = OnceLock::new();

/// atexit hook: stops the shared Keystone's uWSGI, reaps it and removes its directory (a
/// static is never dropped).
extern "C" fn stop_shared() {
    let Some(Ok(ks)) = SHARED.get() else {
        return;
    };
    if let Some(pid) = ks.child.as_ref().map(|c| c.id() as libc::pid_t) {
        // SAFETY: kill(2)/waitpid(2) on our own unreaped child; no memory is shared.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let reaped = wait_for("the shared uwsgi to exit", STOP_TIMEOUT, || {
            let mut status = 0;
            // SAFETY: as above; `status` is a valid out pointer.
            (unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } != 0).then_some(())
        });
        if reaped.is_err() {
            let mut status = 0;
            // SAFETY: as above.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
        }
    }
    let _ = std::fs::remove_dir_all(ks.dir());
}

impl Keystone {
    /// One Keystone for every test of this process that does not stop it. Starting one costs
    /// tens of CPU-seconds on a loaded two-core machine (importing Keystone), so parallel
    /// tests that each start their own miss any start deadline. It runs until the process
    /// exits: an atexit hook stops it and removes its directory, and if the process is
    /// killed uWSGI gets SIGTERM through PR_SET_PDEATHSIG of the thread that started it.
    /// Tests sharing it must use distinct users/projects or only read shared ones, and must
    /// not register the same catalog service type twice.
    pub fn shared(target_dir: &Path) -> Result<&'static Keystone> {
        let ks = SHARED.get_or_init(|| {
            let (tx, rx) = mpsc::channel();
            let target = target_dir.to_path_buf();
            // PDEATHSIG follows the thread that spawned uWSGI: this one lives as long as the
            // process (a test's thread ends with its test).
            let spawned = std::thread::Builder::new()
                .name("keystone-shared".into())
                .spawn(move || {
                    let _ = tx.send(Keystone::start(&target).map_err(|e| format!("{e:#}")));
                    loop {
                        std::thread::park();
                    }
                });
            if let Err(e) = spawned {
                return Err(format!("failed to spawn the Keystone thread: {e}"));
            }
            let ks = rx
                .recv()
                .map_err(|e| format!("failed to hear from the Keystone thread: {e}"))??;
            // SAFETY: registers a plain extern "C" fn that does not unwind.
            unsafe { libc::atexit(stop_shared) };
            Ok(ks)
        });
        ks.as_ref()
            .map_err(|e| anyhow::anyhow!("failed to start the shared Keystone: {e}"))
    }

    /// Installs the venv if needed, copies the template and starts Keystone on a free port.
    /// `target_dir`: `env!("CARGO_TARGET_TMPDIR")` of an integration test.
    pub fn start(target_dir: &Path) -> Result<Keystone> {
        let venv = Venv::ensure(target_dir, OPENSTACK_VENV, OPENSTACK_PACKAGES)?;
        let tpl = template(&venv, target_dir)?;
        let dir = tempfile::Builder::new()
            .prefix("wyvern-keystone-")
            .tempdir()
            .context("failed to create Keystone's temp dir")?;
        for sub in ["fernet", "credential"] {
            copy_dir(&tpl.join(sub), &dir.path().join(sub))?;
        }
        std::fs::copy(tpl.join("keystone.db"), dir.path().join("keystone.db"))
            .context("failed to copy the template database")?;
        std::fs::write(dir.path().join("keystone.conf"), keystone_conf(dir.path()))
            .context("failed to write keystone.conf")?;
        let port = free_port()?;
        let mut ks = Keystone {
            venv,
            dir,
            port,
            child: None,
        };
        ks.helper(
            "retarget",
            &format!(
                r#"{{"db": "{}", "url": "{}"}}"#,
                ks.dir.path().join("keystone.db").display(),
                ks.url()
            ),
        )?;
        ks.start_again()?;
        Ok(ks)
    }

    /// `http://127.0.0.1:PORT/v3`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v3", self.port)
    }

    /// The venv with keystone, the openstack CLI and tempest.
    pub fn venv(&self) -> &Venv {
        &self.venv
    }

    /// Keystone's working directory (config, database, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// (Re)starts uWSGI on the same port and waits until Keystone answers.
    pub fn start_again(&mut self) -> Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let d = self.dir.path();
        let ini = d.join("uwsgi.ini");
        std::fs::write(
            &ini,
            format!(
                "[uwsgi]\nhttp-socket = 127.0.0.1:{}\nmodule = keystone.wsgi.api:application\n\
                 processes = 1\nthreads = 1\nmaster = true\ndie-on-term = true\n\
                 no-orphans = true\nneed-app = true\nlisten = 1024\n\
                 add-header = Connection: close\n",
                self.port
            ),
        )
        .context("failed to write uwsgi.ini")?;
        let log = File::create(d.join("uwsgi.log")).context("failed to create uwsgi.log")?;
        let mut cmd = Command::new(self.venv.bin("uwsgi"));
        // SAFETY: prctl(2) is async-signal-safe; the closure allocates nothing.
        unsafe {
            cmd.pre_exec(|| {
                // uWSGI dies with the thread that started it, even when the test process is
                // killed: a static shared Keystone is never dropped.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd
            .arg("--ini")
            .arg(&ini)
            .env("OS_KEYSTONE_CONFIG_FILES", d.join("keystone.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("failed to clone the log handle")?)
            .stderr(log)
            .spawn()
            .context("failed to start uwsgi")?;
        self.child = Some(child);
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        let up = wait_for("Keystone to answer GET /v3", START_TIMEOUT, || {
            (http_get_status(addr, "/v3") == Some(200)).then_some(())
        });
        if let Err(e) = up {
            let tail = std::fs::read_to_string(d.join("uwsgi.log")).unwrap_or_default();
            self.stop()?;
            return Err(e.context(tail));
        }
        Ok(())
    }

    /// Stops uWSGI (SIGTERM, then SIGKILL after a deadline) and reaps it.
    pub fn stop(&mut self) -> Result<Option<ExitStatus>> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        // SAFETY: kill(2) has no memory effects; the pid is our own unreaped child.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let status = wait_for("uwsgi to exit after SIGTERM", STOP_TIMEOUT, || {
            child.try_wait().ok().flatten()
        });
        match status {
            Ok(s) => Ok(Some(s)),
            Err(e) => {
                let _ = child.kill();
                child.wait().context("failed to reap uwsgi")?;
                Err(e)
            }
        }
    }

    fn helper(&self, cmd: &str, args: &str) -> Result<String> {
        run(
            Command::new(self.venv.python())
                .arg("-c")
                .arg(HELPER)
                .arg(self.url())
                .arg(cmd)
                .arg(args),
            &format!("run the Keystone helper ({cmd})"),
        )
    }

    fn admin_args(extra: &str) -> String {
        format!(r#"{{"admin_password": "{ADMIN_PASSWORD}"{extra}}}"#)
    }

    /// A user with `roles` in `project` (both created when missing). Names and passwords
    /// must be plain (no quotes).
    pub fn ensure_user(
        &self,
        name: &str,
        password: &str,
        project: &str,
        roles: &[&str],
    ) -> Result<KsUser> {
        let roles: Vec<String> = roles.iter().map(|r| format!("\"{r}\"")).collect();
        let out = self.helper(
            "user",
            &Self::admin_args(&format!(
                r#", "name": "{name}", "password": "{password}", "project": "{project}", "roles": [{}]"#,
                roles.join(",")
            )),
        )?;
        let field = |k: &str| -> Result<String> {
            let pat = format!("\"{k}\": \"");
            let start = out
                .find(&pat)
                .with_context(|| format!("no {k} in the helper's answer {out}"))?
                + pat.len();
            let end = out[start..]
                .find('"')
                .with_context(|| format!("bad {k} in {out}"))?;
            Ok(out[start..start + end].to_string())
        };
        Ok(KsUser {
            name: name.into(),
            password: password.into(),
            project: project.into(),
            project_id: field("project_id")?,
            user_id: field("user_id")?,
        })
    }

    /// A project-scoped token of `user`.
    pub fn token(&self, user: &KsUser) -> Result<String> {
        self.helper(
            "token",
            &format!(
                r#"{{"user": "{}", "password": "{}", "project": "{}"}}"#,
                user.name, user.password, user.project
            ),
        )
    }

    /// A token of the bootstrap admin (project `admin`).
    pub fn admin_token(&self) -> Result<String> {
        self.helper(
            "token",
            &format!(r#"{{"user": "admin", "password": "{ADMIN_PASSWORD}", "project": "admin"}}"#),
        )
    }

    /// Revokes `token` (Keystone answers 404 for it from now on).
    pub fn revoke(&self, token: &str) -> Result<()> {
        self.helper(
            "revoke",
            &Self::admin_args(&format!(r#", "token": "{token}""#)),
        )
        .map(drop)
    }

    /// Registers a service with public/internal/admin endpoints at `url` in [`REGION`].
    pub fn register_endpoint(&self, service_type: &str, name: &str, url: &str) -> Result<()> {
        self.helper(
            "endpoint",
            &Self::admin_args(&format!(
                r#", "type": "{service_type}", "name": "{name}", "url": "{url}", "region": "{REGION}""#
            )),
        )
        .map(drop)
    }

    /// The last lines of Keystone's and uWSGI's logs (for assertion messages).
    pub fn log_tail(&self) -> String {
        let mut out = String::new();
        for f in ["keystone.log", "uwsgi.log"] {
            let text = std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(20);
            out.push_str(&format!("--- {f} ---\n{}\n", lines[start..].join("\n")));
        }
        out
    }
}

impl Drop for Keystone {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
