//! wyvern-cascade harness: a real `wyvern-cascade` process with its own data dir and free
//! ports (both APIs on `127.0.0.1:0`; the ready line names them), killed and reaped on drop.
//! Also [`workspace_bin`], which builds another package's binary (the bottoms' `wyvernd`)
//! for tests that live outside that package.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tempfile::TempDir;

use crate::poll::wait_for;
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

/// A running (or stopped) wyvern-cascade.
pub struct Cascade {
    bin: PathBuf,
    args: Vec<String>,
    scratch: TempDir,
    data_dir: PathBuf,
    child: Option<Child>,
    api: SocketAddr,
    admin: SocketAddr,
    log: PathBuf,
    starts: u32,
}

impl Cascade {
    /// Starts `bin` (`env!("CARGO_BIN_EXE_wyvern-cascade")`) with a fresh data dir.
    pub fn start(bin: impl Into<PathBuf>, args: &[&str]) -> anyhow::Result<Cascade> {
        let scratch = tempfile::Builder::new()
            .prefix("cascade-test-")
            .tempdir()
            .context("failed to create the harness temp dir")?;
        let data_dir = scratch.path().join("data");
        let mut c = Cascade {
            bin: bin.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            log: scratch.path().join("cascade-0.log"),
            scratch,
            data_dir,
            child: None,
            api: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            starts: 0,
        };
        c.spawn()?;
        Ok(c)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        self.starts += 1;
        self.log = self
            .scratch
            .path()
            .join(format!("cascade-{}.log", self.starts));
        let log = std::fs::File::create(&self.log)
            .with_context(|| format!("failed to create {}", self.log.display()))?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--data-dir")
            .arg(&self.data_dir)
            .args([
                "--api-listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        for (k, _) in std::env::vars() {
            if k.starts_with("WYVERN_") {
                cmd.env_remove(k);
            }
        }
        cmd.env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
        let mut child = cmd
            .spawn()
            .with_context(|| format!("failed to start {}", self.bin.display()))?;
        let stdout = child.stdout.take().context("failed to take stdout")?;
        self.child = Some(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref() {
                let Ok(line) = line else { return };
                if let Some(rest) = line.strip_prefix(READY_PREFIX) {
                    let _ = tx.send(rest.trim().to_owned());
                    break;
                }
            }
            for _ in lines {}
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let line = loop {
            if let Some(c) = &mut self.child {
                if let Some(st) = c.try_wait().context("failed to poll wyvern-cascade")? {
                    bail!("wyvern-cascade exited with {st}\n{}", self.log_tail());
                }
            }
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(l) => break l,
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(_) => bail!(
                    "wyvern-cascade did not report its addresses\n{}",
                    self.log_tail()
                ),
            }
        };
        // "http://API admin http://ADMIN"
        let mut parts = line.split_whitespace();
        let parse = |s: Option<&str>| -> anyhow::Result<SocketAddr> {
            s.context("short ready line")?
                .trim_start_matches("http://")
                .parse()
                .with_context(|| format!("failed to parse the ready line {line:?}"))
        };
        self.api = parse(parts.next())?;
        let _ = parts.next();
        self.admin = parse(parts.next())?;
        let admin = self.admin;
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
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(40);
        format!(
            "--- wyvern-cascade log tail ({}) ---\n{}",
            self.log.display(),
            lines[start..].join("\n")
        )
    }

    /// Crash: SIGKILL, then reap.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            c.wait().context("failed to reap wyvern-cascade")?;
        }
        Ok(())
    }

    /// Starts again on the same data dir (new ports).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill()?;
        self.spawn()
    }
}

impl Drop for Cascade {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}
