//! Network namespace guard: a uniquely named `ip netns` that is deleted on `Drop`.
//!
//! Kernel device names (`br-int`, `ovs-netdev`, taps) are host-wide; a namespace per test is
//! what lets tests with real devices run in parallel.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{bail, Context};

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// A network namespace owned by the test; `ip netns del` on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `<prefix>-<pid>-<n>` and brings its loopback up (so a controller on
    /// 127.0.0.1 inside the namespace is reachable).
    pub fn new(prefix: &str) -> anyhow::Result<Self> {
        let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}-{}-{n}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]))
            .with_context(|| format!("failed to create netns {name}"))?;
        let ns = Self { name };
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A `Command` that runs `program` inside the namespace (`ip netns exec NS program`).
    /// `ip netns exec` execs in place, so the child's PID is the program's PID.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs `argv` inside the namespace and returns its stdout; fails on a non-zero exit.
    pub fn exec(&self, argv: &[&str]) -> anyhow::Result<String> {
        let Some((program, args)) = argv.split_first() else {
            bail!("netns exec needs a program");
        };
        let mut cmd = self.command(program);
        cmd.args(args);
        run(&mut cmd).with_context(|| format!("failed to run {argv:?} in netns {}", self.name))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Runs a command to completion; stdout on success, an error with stderr otherwise.
pub fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("failed to spawn {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
