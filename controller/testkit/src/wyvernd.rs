//! wyvernd harness: a real wyvernd process with its own data dir and a free port.
//!
//! The daemon is started with `--api-listen 127.0.0.1:0`, so the kernel picks a free port
//! (no race between tests); wyvernd prints `wyvernd listening on http://ADDR` on stdout once
//! it accepts connections, and the harness then also checks that `GET /` answers.
//! Its logs go to a file in a private temp dir; errors quote their tail.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tempfile::TempDir;

use crate::poll::wait_for;

/// How long a start may take before the harness gives up.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a graceful stop may take before the harness calls it a failure.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The line prefix wyvernd prints on stdout once it serves.
pub const READY_PREFIX: &str = "wyvernd listening on ";

/// Options for starting wyvernd.
#[derive(Debug, Clone)]
pub struct WyverndOptions {
    bin: PathBuf,
    data_dir: Option<PathBuf>,
    args: Vec<String>,
    envs: Vec<(String, String)>,
}

impl WyverndOptions {
    /// `bin` is the wyvernd executable, e.g. `env!("CARGO_BIN_EXE_wyvernd")`.
    pub fn new(bin: impl Into<PathBuf>) -> Self {
        WyverndOptions {
            bin: bin.into(),
            data_dir: None,
            args: Vec::new(),
            envs: Vec::new(),
        }
    }

    /// Use this data dir (kept after the harness is dropped) instead of a fresh temp one.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// An extra command-line argument.
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    /// An extra environment variable.
    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.envs.push((k.into(), v.into()));
        self
    }

    /// Token-file authentication with the given file.
    pub fn token_file(self, path: impl AsRef<Path>) -> Self {
        let p = path.as_ref().display().to_string();
        self.arg("--auth")
            .arg("token-file")
            .arg("--token-file")
            .arg(p)
    }

    pub fn start(self) -> anyhow::Result<Wyvernd> {
        Wyvernd::start_with(self)
    }
}

/// A running (or stopped) wyvernd. Dropping it kills and reaps the process and removes the
/// temp dirs it created.
pub struct Wyvernd {
    opts: WyverndOptions,
    data_dir: PathBuf,
    /// Holds the temp data dir (when none was given) and the log files.
    scratch: TempDir,
    child: Option<Child>,
    addr: SocketAddr,
    log: PathBuf,
    starts: u32,
}

impl Wyvernd {
    /// Starts `bin` with a fresh temp data dir and no auth.
    pub fn start(bin: impl Into<PathBuf>) -> anyhow::Result<Self> {
        WyverndOptions::new(bin).start()
    }

    fn start_with(opts: WyverndOptions) -> anyhow::Result<Self> {
        let scratch = tempfile::Builder::new()
            .prefix("wyvernd-test-")
            .tempdir()
            .context("failed to create the harness temp dir")?;
        let data_dir = match &opts.data_dir {
            Some(d) => d.clone(),
            None => scratch.path().join("data"),
        };
        let mut w = Wyvernd {
            opts,
            data_dir,
            log: scratch.path().join("wyvernd-0.log"),
            scratch,
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            starts: 0,
        };
        w.spawn()?;
        Ok(w)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        self.starts += 1;
        self.log = self
            .scratch
            .path()
            .join(format!("wyvernd-{}.log", self.starts));
        let log = std::fs::File::create(&self.log)
            .with_context(|| format!("failed to create {}", self.log.display()))?;
        let mut cmd = Command::new(&self.opts.bin);
        cmd.arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--api-listen")
            .arg("127.0.0.1:0")
            .args(&self.opts.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        // A test's own environment must not change the daemon under test.
        for (k, _) in std::env::vars() {
            if k.starts_with("WYVERN_") {
                cmd.env_remove(k);
            }
        }
        cmd.env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
        // Tests run many daemons at once: an ephemeral metrics port each, unless the test
        // asks for one (a flag or an env of its own wins over this env).
        cmd.env("WYVERN_METRICS_LISTEN", "127.0.0.1:0");
        for (k, v) in &self.opts.envs {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("failed to start {}", self.opts.bin.display()))?;
        let stdout = child
            .stdout
            .take()
            .context("failed to take wyvernd's stdout")?;
        self.child = Some(child);

        // Read the ready line, then keep draining stdout so the daemon never blocks on it.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref() {
                let Ok(line) = line else { return };
                if let Some(url) = line.strip_prefix(READY_PREFIX) {
                    let _ = tx.send(url.trim().to_owned());
                    break;
                }
            }
            for _ in lines {}
        });

        let deadline = Instant::now() + START_TIMEOUT;
        let url = loop {
            if let Some(status) = self.try_wait()? {
                bail!(
                    "wyvernd exited with {status} before serving\n{}",
                    self.log_tail()
                );
            }
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(url) => break url,
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(_) => bail!("wyvernd did not report its address\n{}", self.log_tail()),
            }
        };
        let addr: SocketAddr = url
            .trim_start_matches("http://")
            .parse()
            .with_context(|| format!("failed to parse wyvernd's address {url:?}"))?;
        self.addr = addr;
        wait_for("wyvernd to answer GET /", START_TIMEOUT, || {
            http_get_status(addr, "/").filter(|s| *s == 200)
        })
        .with_context(|| self.log_tail())?;
        Ok(())
    }

    /// `http://127.0.0.1:PORT`, the Neutron endpoint (changes after a restart).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The log file of the current (or last) run.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The last lines of the current log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(30);
        format!(
            "--- wyvernd log tail ({}) ---\n{}",
            self.log.display(),
            lines[start..].join("\n")
        )
    }

    fn try_wait(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        match &mut self.child {
            Some(c) => Ok(c.try_wait().context("failed to poll wyvernd")?),
            None => bail!("wyvernd is not running"),
        }
    }

    fn signal(&self, sig: libc::c_int) -> anyhow::Result<()> {
        let pid = self.pid().context("wyvernd is not running")?;
        // SAFETY: kill(2) has no memory effects; the pid is our own unreaped child, so it
        // cannot have been recycled for another process.
        let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
        if rc != 0 {
            bail!(
                "failed to send signal {sig} to wyvernd {pid}: {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    /// Graceful stop: SIGTERM, then wait for the exit. Returns the exit status.
    pub fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        self.signal(libc::SIGTERM)?;
        let status = wait_for("wyvernd to exit after SIGTERM", STOP_TIMEOUT, || {
            self.child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
        });
        match status {
            Ok(s) => {
                self.child = None;
                Ok(s)
            }
            Err(e) => {
                self.kill()?;
                Err(e.context(self.log_tail()))
            }
        }
    }

    /// Crash: SIGKILL, then reap.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            c.wait().context("failed to reap wyvernd")?;
        }
        Ok(())
    }

    /// Starts wyvernd again on the same data dir with the same options (after `stop` or
    /// `kill`; a running daemon is killed first). The port changes: use `url()` again.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill()?;
        self.spawn()
    }
}

impl Drop for Wyvernd {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// A minimal HTTP/1.0 GET returning the status code, so the harness needs no HTTP client.
pub fn http_get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}
