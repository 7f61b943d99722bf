//! wyvern-cascade harness: a real `wyvern-cascade` process with its own data dir and free
//! ports (both APIs on `127.0.0.1:0`; the ready line names them), killed and reaped on drop.
//! Also [`workspace_bin`], which builds another package's binary (the bottoms' `wyvernd`)
//! for tests that live outside that package.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::poll::wait_for;
use crate::service::{Service, ServiceSpec};
use crate::wyvernd::http_get_status;

/// The line prefix wyvern-cascade prints on stdout once it serves:
/// `wyvern-cascade listening on http://API admin http://ADMIN`.
pub const READY_PREFIX: &str = "wyvern-cascade listening on ";
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Path of binary `bin` of workspace package `package`, for tests of another package (cargo
/// gives `CARGO_BIN_EXE_*` only for a package's own binaries). In order:
/// 1. `$WYVERN_TEST_<BIN>` (upper case, `-` as `_`), e.g. `WYVERN_TEST_WYVERND`;
/// 2. `<target>/debug/<bin>` if it exists: `cargo test --workspace` (README, CI) builds every
///    workspace binary before any test runs, with the same features as the tests, so a nested
///    build would only risk rebuilding it with another feature set under a running test;
/// 3. else `cargo build -p package --bin bin` into the same target dir (a lone
///    `cargo test -p ...`; when iterating on the daemon that way, rebuild it first).
///
/// `target_tmpdir` is any path in the target dir, e.g. `env!("CARGO_TARGET_TMPDIR")`.
pub fn workspace_bin(package: &str, bin: &str, target_tmpdir: &Path) -> anyhow::Result<PathBuf> {
    let var = format!("WYVERN_TEST_{}", bin.to_uppercase().replace('-', "_"));
    if let Some(p) = std::env::var_os(&var) {
        return Ok(PathBuf::from(p));
    }
    // <target>/tmp -> <target>/debug/<bin>
    let target = target_tmpdir
        .parent()
        .context("CARGO_TARGET_TMPDIR has no parent")?;
    let built = target.join("debug").join(bin);
    if built.exists() {
        return Ok(built);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "-q", "-p", package, "--bin", bin])
        .env("CARGO_TARGET_DIR", target)
        .output()
        .with_context(|| format!("failed to run cargo build -p {package}"))?;
    if !out.status.success() {
        bail!(
            "cargo build -p {package} --bin {bin} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let path = target.join("debug").join(bin);
    if !path.exists() {
        bail!("{} was not built", path.display());
    }
    Ok(path)
}

/// A running (or stopped) wyvern-cascade; killed and reaped on drop.
pub struct Cascade {
    svc: Service,
    data_dir: PathBuf,
    api: SocketAddr,
    admin: SocketAddr,
}

impl Cascade {
    /// Starts `bin` (`env!("CARGO_BIN_EXE_wyvern-cascade")`) with a fresh data dir.
    pub fn start(bin: impl Into<PathBuf>, args: &[&str]) -> anyhow::Result<Cascade> {
        let scratch = tempfile::Builder::new()
            .prefix("cascade-test-")
            .tempdir()
            .context("failed to create the harness temp dir")?;
        let data_dir = scratch.path().join("data");
        let svc = ServiceSpec::new("wyvern-cascade", bin, READY_PREFIX)
            .args(["--data-dir".to_string(), data_dir.display().to_string()])
            .args([
                "--api-listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .args(args.iter().copied())
            .start(scratch)?;
        let mut c = Cascade {
            svc,
            data_dir,
            api: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        c.await_ready()?;
        Ok(c)
    }

    /// Parses the ready line (`http://API admin http://ADMIN`) and waits until the admin
    /// API answers.
    fn await_ready(&mut self) -> anyhow::Result<()> {
        let line = self.svc.ready_line();
        let mut parts = line.split_whitespace();
        let parse = |s: Option<&str>| -> anyhow::Result<SocketAddr> {
            s.context("short ready line")?
                .trim_start_matches("http://")
                .parse()
                .with_context(|| format!("failed to parse the ready line {line:?}"))
        };
        let api = parse(parts.next())?;
        let _ = parts.next();
        let admin = parse(parts.next())?;
        self.api = api;
        self.admin = admin;
        wait_for("wyvern-cascade to answer GET /", START_TIMEOUT, || {
            http_get_status(admin, "/").filter(|s| *s == 200)
        })
        .with_context(|| self.log_tail())?;
        Ok(())
    }

    /// The top Neutron API (changes after a restart).
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api)
    }

    /// The admin API root (changes after a restart).
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The last lines of the current log.
    pub fn log_tail(&self) -> String {
        self.svc.log_tail()
    }

    /// Crash: SIGKILL, then reap.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.svc.kill()
    }

    /// Starts again on the same data dir (new ports).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.svc.restart()?;
        self.await_ready()
    }
}
