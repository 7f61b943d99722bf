//! The real `wyvern-p4d` binary as a child process on a free port, killed on drop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// The wyvern-p4d binary: cargo names it for tests; an example (the benchmark) finds it in
/// its profile directory (`target/<profile>/examples/..`).
fn binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = option_env!("CARGO_BIN_EXE_wyvern-p4d") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .ok_or_else(|| anyhow::anyhow!("no profile directory above {}", exe.display()))?;
    Ok(dir.join("wyvern-p4d"))
}

pub struct P4d {
    child: Child,
    pub addr: SocketAddr,
}

impl P4d {
    /// Starts wyvern-p4d with `--grpc-listen 127.0.0.1:0 --device-id 1` and `extra`
    /// arguments; returns once it serves. `WYVERN_P4D_LOG=1` shows its log.
    pub fn start(extra: &[String]) -> anyhow::Result<P4d> {
        let log = std::env::var_os("WYVERN_P4D_LOG").is_some();
        let mut child = Command::new(binary()?)
            .args(["--grpc-listen", "127.0.0.1:0", "--device-id", "1"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(if log { Stdio::inherit() } else { Stdio::null() })
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let mut line = String::new();
        // The first line comes once the server is bound; EOF if the process failed.
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = match line.trim().strip_prefix("wyvern-p4d listening on ") {
            Some(a) => a.parse()?,
            None => {
                let _ = child.kill();
                let status = child.wait()?;
                anyhow::bail!("wyvern-p4d did not start ({status}): {line:?}");
            }
        };
        Ok(P4d { child, addr })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits for the exit status.
    pub fn stop(mut self) -> anyhow::Result<std::process::ExitStatus> {
        // SAFETY: signals our own child by pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        Ok(self.child.wait()?)
    }
}

impl Drop for P4d {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
