//! One guard for a real service process (wyvernd, wyvern-cascade, wyvern-checkpoint, ...):
//! started as a child with stdout piped, ready once it prints its ready line, logs (stderr)
//! in a file per start in a private temp dir, restartable with the same arguments, killed and
//! reaped on drop.
//!
//! Services print `<ready prefix><addresses>` on stdout once they serve; the guard hands the
//! text after the prefix to its owner, which parses its addresses from it. stdout is drained
//! after that line so a service never blocks on a full pipe.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tempfile::TempDir;

use crate::poll::wait_for;

/// How long a start may take by default before the guard gives up.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a graceful stop may take before it counts as a failure.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// What to run and how to tell that it serves.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// Short name for logs and errors, e.g. `wyvernd`.
    pub name: String,
    pub bin: PathBuf,
    pub args: Vec<String>,
    /// Extra environment, applied after `RUST_LOG` and the `WYVERN_*` cleanup.
    pub envs: Vec<(String, String)>,
    /// The stdout line prefix printed once the service serves.
    pub ready_prefix: String,
    /// Remove every `WYVERN_*` variable of the test's environment (a test's own environment
    /// must not change the service under test).
    pub clear_wyvern_env: bool,
    pub start_timeout: Duration,
    /// Lines of log quoted by [`Service::log_tail`].
    pub tail_lines: usize,
}

impl ServiceSpec {
    pub fn new(name: &str, bin: impl Into<PathBuf>, ready_prefix: &str) -> Self {
        ServiceSpec {
            name: name.to_string(),
            bin: bin.into(),
            args: Vec::new(),
            envs: Vec::new(),
            ready_prefix: ready_prefix.to_string(),
            clear_wyvern_env: true,
            start_timeout: START_TIMEOUT,
            tail_lines: 40,
        }
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.envs.push((k.into(), v.into()));
        self
    }

    /// Starts the service with its logs in `scratch` (which the guard keeps).
    pub fn start(self, scratch: TempDir) -> anyhow::Result<Service> {
        let mut s = Service {
            log: scratch.path().join(format!("{}-0.log", self.name)),
            spec: self,
            scratch,
            child: None,
            ready: String::new(),
            starts: 0,
        };
        s.spawn()?;
        Ok(s)
    }
}

/// A running (or stopped) service process.
pub struct Service {
    spec: ServiceSpec,
    scratch: TempDir,
    child: Option<Child>,
    /// The ready line of the current run, after the prefix, trimmed.
    ready: String,
    log: PathBuf,
    starts: u32,
}

impl Service {
    fn spawn(&mut self) -> anyhow::Result<()> {
        let name = self.spec.name.clone();
        self.starts += 1;
        self.log = self
            .scratch
            .path()
            .join(format!("{name}-{}.log", self.starts));
        let log = std::fs::File::create(&self.log)
            .with_context(|| format!("failed to create {}", self.log.display()))?;
        let mut cmd = Command::new(&self.spec.bin);
        cmd.args(&self.spec.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        if self.spec.clear_wyvern_env {
            for (k, _) in std::env::vars() {
                if k.starts_with("WYVERN_") {
                    cmd.env_remove(k);
                }
            }
        }
        cmd.env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
        for (k, v) in &self.spec.envs {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("failed to start {}", self.spec.bin.display()))?;
        let stdout = child
            .stdout
            .take()
            .with_context(|| format!("failed to take {name}'s stdout"))?;
        self.child = Some(child);

        // Read the ready line, then keep draining stdout.
        let (tx, rx) = mpsc::channel();
        let prefix = self.spec.ready_prefix.clone();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref() {
                let Ok(line) = line else { return };
                if let Some(rest) = line.strip_prefix(&prefix) {
                    let _ = tx.send(rest.trim().to_owned());
                    break;
                }
            }
            for _ in lines {}
        });
        let deadline = Instant::now() + self.spec.start_timeout;
        self.ready = loop {
            if let Some(status) = self.try_wait()? {
                bail!(
                    "{name} exited with {status} before serving\n{}",
                    self.log_tail()
                );
            }
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => break line,
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(_) => bail!("{name} did not print its ready line\n{}", self.log_tail()),
            }
        };
        Ok(())
    }

    /// The current run's ready line after the prefix (its addresses).
    pub fn ready_line(&self) -> &str {
        &self.ready
    }

    /// The private temp dir (logs; owners may put data dirs and configs in it).
    pub fn scratch(&self) -> &Path {
        self.scratch.path()
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
        let start = lines.len().saturating_sub(self.spec.tail_lines);
        format!(
            "--- {} log tail ({}) ---\n{}",
            self.spec.name,
            self.log.display(),
            lines[start..].join("\n")
        )
    }

    /// The exit status if the process has exited; an error if it is not running.
    pub fn try_wait(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        let name = &self.spec.name;
        match &mut self.child {
            Some(c) => Ok(c
                .try_wait()
                .with_context(|| format!("failed to poll {name}"))?),
            None => bail!("{name} is not running"),
        }
    }

    /// Sends `sig` to the process.
    pub fn signal(&self, sig: libc::c_int) -> anyhow::Result<()> {
        let name = &self.spec.name;
        let pid = self
            .pid()
            .with_context(|| format!("{name} is not running"))?;
        // SAFETY: kill(2) has no memory effects; the pid is our own unreaped child, so it
        // cannot have been recycled for another process.
        let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
        if rc != 0 {
            bail!(
                "failed to send signal {sig} to {name} {pid}: {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    /// Graceful stop: SIGTERM, then wait for the exit. Returns the exit status.
    pub fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        self.signal(libc::SIGTERM)?;
        let what = format!("{} to exit after SIGTERM", self.spec.name);
        let status = wait_for(&what, STOP_TIMEOUT, || {
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
            c.wait()
                .with_context(|| format!("failed to reap {}", self.spec.name))?;
        }
        Ok(())
    }

    /// Starts the service again with the same arguments (a running one is killed first).
    /// Addresses may change: read [`Service::ready_line`] again.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill()?;
        self.spawn()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}
