//! wyvernd harness: a real wyvernd process with its own data dir and a free port.
//!
//! The daemon is started with `--api-listen 127.0.0.1:0`, so the kernel picks a free port
//! (no race between tests); wyvernd prints `wyvernd listening on http://ADDR` on stdout once
//! it accepts connections, and the harness then also checks that `GET /` answers.
//! Its logs go to a file in a private temp dir; errors quote their tail.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::Context;

use crate::poll::wait_for;
use crate::service::{Service, ServiceSpec};

/// How long a start may take before the harness gives up.
const START_TIMEOUT: Duration = Duration::from_secs(30);

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

    /// The shared etcd store at `endpoints` (comma-separated URLs) instead of the embedded one.
    pub fn etcd_store(self, endpoints: impl Into<String>) -> Self {
        self.arg("--store")
            .arg("etcd")
            .arg("--etcd-endpoints")
            .arg(endpoints)
    }

    /// Points wyvernd at `ovs`'s OVSDB and has it serve OpenFlow for `bridge` on the unix
    /// socket `socket` in the sandbox's run dir, with the sandbox's datapath type (what every
    /// test with a switch passes).
    pub fn switch(self, ovs: &crate::ovs::OvsSandbox, bridge: &str, socket: &str) -> Self {
        let datapath = if ovs.is_dummy() { "dummy" } else { "netdev" };
        let of = format!("unix:{}", ovs.run_dir().join(socket).display());
        self.arg("--ovsdb")
            .arg(ovs.db_target())
            .arg("--datapath-type")
            .arg(datapath)
            .arg("--openflow-listen")
            .arg(of)
            .arg("--bridge")
            .arg(bridge)
    }

    pub fn start(self) -> anyhow::Result<Wyvernd> {
        Wyvernd::start_with(self)
    }
}

/// A running (or stopped) wyvernd. Dropping it kills and reaps the process and removes the
/// temp dirs it created.
pub struct Wyvernd {
    svc: Service,
    data_dir: PathBuf,
    addr: SocketAddr,
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
        let mut spec = ServiceSpec::new("wyvernd", opts.bin, READY_PREFIX)
            .args(["--data-dir".to_string(), data_dir.display().to_string()])
            .args(["--api-listen", "127.0.0.1:0"])
            .args(opts.args)
            // Tests run many daemons at once: an ephemeral metrics port each, unless the
            // test asks for one (a flag or an env of its own wins over this env).
            .env("WYVERN_METRICS_LISTEN", "127.0.0.1:0");
        spec.envs.extend(opts.envs);
        spec.start_timeout = START_TIMEOUT;
        spec.tail_lines = 30;
        let svc = spec.start(scratch)?;
        let mut w = Wyvernd {
            svc,
            data_dir,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        w.await_ready()?;
        Ok(w)
    }

    /// Parses the ready line and waits until `GET /` answers.
    fn await_ready(&mut self) -> anyhow::Result<()> {
        let url = self.svc.ready_line();
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

    /// The address of wyvernd's `/metrics` listener (`--metrics-listen`, port 0 allowed):
    /// wyvernd logs `serving /metrics addr=IP:PORT` once it is bound.
    pub fn metrics_addr(&self, timeout: Duration) -> anyhow::Result<SocketAddr> {
        wait_for("wyvernd's metrics address in its log", timeout, || {
            let log = std::fs::read_to_string(self.log_path()).ok()?;
            log.lines()
                .filter(|l| l.contains("serving /metrics"))
                .find_map(|l| {
                    l.split_whitespace()
                        .find_map(|f| f.strip_prefix("addr="))
                        .and_then(|a| a.parse().ok())
                })
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The log file of the current (or last) run.
    pub fn log_path(&self) -> &Path {
        self.svc.log_path()
    }

    pub fn pid(&self) -> Option<u32> {
        self.svc.pid()
    }

    /// The last lines of the current log, for error messages.
    pub fn log_tail(&self) -> String {
        self.svc.log_tail()
    }

    /// Graceful stop: SIGTERM, then wait for the exit. Returns the exit status.
    pub fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        self.svc.stop()
    }

    /// Crash: SIGKILL, then reap.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.svc.kill()
    }

    /// Starts wyvernd again on the same data dir with the same options (after `stop` or
    /// `kill`; a running daemon is killed first). The port changes: use `url()` again.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.svc.restart()?;
        self.await_ready()
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
