//! Open vSwitch harness: a private ovsdb-server and ovs-vswitchd per test.
//!
//! Both daemons are children of the test (no `--detach`: orphans become zombies here), use
//! the default pidfile names inside a unique run dir (so `ovs-appctl` finds them), and every
//! command the harness runs gets `OVS_RUNDIR`/`OVS_LOGDIR`/`OVS_DBDIR` pointing at that dir.
//!
//! Two flavours:
//! - `dummy` (`ovs-vswitchd --enable-dummy`, bridges `datapath_type=dummy`, ports
//!   `type=dummy`): no kernel devices, any number of sandboxes in parallel.
//! - netdev (userspace datapath with real kernel taps named after the bridges): run it in a
//!   network namespace (`OvsOptions::netns`, or [`OvsSandbox::netdev_in_new_netns`]) so two
//!   tests' `br-int` do not collide. Unix sockets (db, mgmt, control) live in the run dir and
//!   work across namespaces; a TCP controller target such as `tcp:127.0.0.1:6653` is the
//!   namespace's own loopback, so prefer a `unix:` controller target there.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::netns::{run, Netns};
use crate::poll::wait_until;

/// How long daemons get to become ready or to exit.
const DAEMON_TIMEOUT: Duration = Duration::from_secs(20);

const SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";

/// How to start a sandbox.
#[derive(Debug, Clone, Default)]
pub struct OvsOptions {
    /// `ovs-vswitchd --enable-dummy`; `add_bridge` then uses `datapath_type=dummy`.
    pub dummy: bool,
    /// Run both daemons with `ip netns exec NETNS` (the namespace must exist).
    pub netns: Option<String>,
}

impl OvsOptions {
    /// Dummy datapath, no namespace: the cheap default for most tests.
    pub fn dummy() -> Self {
        Self {
            dummy: true,
            netns: None,
        }
    }
}

/// A private ovsdb-server + ovs-vswitchd; stopped, reaped and deleted on `Drop`.
#[derive(Debug)]
pub struct OvsSandbox {
    // Field order matters for drop: daemons are stopped in `Drop::drop`, then the namespace
    // (if owned) is deleted, then the run dir.
    ovsdb: Option<Child>,
    vswitchd: Option<Child>,
    opts: OvsOptions,
    own_netns: Option<Netns>,
    dir: tempfile::TempDir,
}

impl OvsSandbox {
    /// Starts a sandbox with a dummy datapath.
    pub fn dummy() -> anyhow::Result<Self> {
        Self::start(OvsOptions::dummy())
    }

    /// Starts a netdev (userspace datapath) sandbox in a fresh namespace owned by the sandbox.
    pub fn netdev_in_new_netns() -> anyhow::Result<Self> {
        let ns = Netns::new("wyv-ovs")?;
        let mut sb = Self::start(OvsOptions {
            dummy: false,
            netns: Some(ns.name().to_owned()),
        })?;
        sb.own_netns = Some(ns);
        Ok(sb)
    }

    /// Creates the run dir and database, starts both daemons and waits until they answer.
    pub fn start(opts: OvsOptions) -> anyhow::Result<Self> {
        // Short path under /tmp: unix socket paths are limited to 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("wyv-ovs-")
            .tempdir_in("/tmp")
            .context("failed to create OVS run dir")?;
        let mut sb = Self {
            ovsdb: None,
            vswitchd: None,
            opts,
            own_netns: None,
            dir,
        };
        let db = sb.dir.path().join("conf.db");
        run(sb.tool("ovsdb-tool").arg("create").arg(&db).arg(SCHEMA))?;
        sb.start_ovsdb()?;
        sb.vsctl_no_wait(&["init"])?;
        sb.start_vswitchd()?;
        Ok(sb)
    }

    /// The run dir (pidfiles, sockets, logs, database).
    pub fn run_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Path of ovsdb-server's unix socket.
    pub fn db_socket(&self) -> PathBuf {
        self.dir.path().join("db.sock")
    }

    /// The OVSDB remote as OVS tools spell it: `unix:PATH`.
    pub fn db_target(&self) -> String {
        format!("unix:{}", self.db_socket().display())
    }

    /// Whether the sandbox runs the dummy datapath.
    pub fn is_dummy(&self) -> bool {
        self.opts.dummy
    }

    /// The namespace the daemons run in, if any.
    pub fn netns(&self) -> Option<&str> {
        self.opts.netns.as_deref()
    }

    /// PID of the running ovs-vswitchd, if it runs.
    pub fn vswitchd_pid(&self) -> Option<u32> {
        self.vswitchd.as_ref().map(Child::id)
    }

    /// PID of the running ovsdb-server, if it runs.
    pub fn ovsdb_pid(&self) -> Option<u32> {
        self.ovsdb.as_ref().map(Child::id)
    }

    /// `ovs-vsctl --db=... ARGS` (waits for ovs-vswitchd to apply the change, 10 s max).
    pub fn vsctl(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut cmd = self.tool("ovs-vsctl");
        cmd.arg(format!("--db={}", self.db_target()))
            .arg("--timeout=10")
            .args(args);
        run(&mut cmd)
    }

    /// `ovs-vsctl --no-wait ...`: for when ovs-vswitchd is down or irrelevant.
    pub fn vsctl_no_wait(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut cmd = self.tool("ovs-vsctl");
        cmd.arg(format!("--db={}", self.db_target()))
            .args(["--timeout=10", "--no-wait"])
            .args(args);
        run(&mut cmd)
    }

    /// `ovs-ofctl -O OpenFlow13 ARGS` (a bridge name resolves to `RUNDIR/BRIDGE.mgmt`).
    pub fn ofctl(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut cmd = self.tool("ovs-ofctl");
        cmd.args(["-O", "OpenFlow13"]).args(args);
        run(&mut cmd)
    }

    /// `ovs-appctl -t <ovs-vswitchd control socket> ARGS`.
    pub fn appctl(&self, args: &[&str]) -> anyhow::Result<String> {
        let pid = self.vswitchd_pid().context("ovs-vswitchd is not running")?;
        self.appctl_to(&self.ctl_socket("ovs-vswitchd", pid), args)
    }

    /// `ovs-appctl -t <ovsdb-server control socket> ARGS`.
    pub fn appctl_ovsdb(&self, args: &[&str]) -> anyhow::Result<String> {
        let pid = self.ovsdb_pid().context("ovsdb-server is not running")?;
        self.appctl_to(&self.ctl_socket("ovsdb-server", pid), args)
    }

    /// Adds a bridge with this sandbox's datapath type, OpenFlow13+15, fail-mode secure, and
    /// the controller `target` (e.g. `tcp:127.0.0.1:6653` or `unix:PATH`) if given.
    pub fn add_bridge(&self, name: &str, controller_target: Option<&str>) -> anyhow::Result<()> {
        let dp = format!(
            "datapath_type={}",
            if self.opts.dummy { "dummy" } else { "netdev" }
        );
        let mut args = vec![
            "add-br",
            name,
            "--",
            "set",
            "bridge",
            name,
            &dp,
            "protocols=OpenFlow13,OpenFlow15",
            "fail-mode=secure",
        ];
        if let Some(target) = controller_target {
            args.extend(["--", "set-controller", name, target]);
        }
        self.vsctl(&args)
            .with_context(|| format!("failed to add bridge {name}"))?;
        Ok(())
    }

    /// Adds a `type=dummy` port (with `external_ids:iface-id` if given) and returns the ofport
    /// ovs-vswitchd assigned.
    pub fn add_dummy_port(
        &self,
        bridge: &str,
        name: &str,
        iface_id: Option<&str>,
    ) -> anyhow::Result<u32> {
        let mut args = vec![
            "add-port".to_owned(),
            bridge.to_owned(),
            name.to_owned(),
            "--".to_owned(),
            "set".to_owned(),
            "interface".to_owned(),
            name.to_owned(),
            "type=dummy".to_owned(),
        ];
        if let Some(id) = iface_id {
            args.push(format!("external_ids:iface-id={id}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.vsctl(&args)
            .with_context(|| format!("failed to add dummy port {name} to {bridge}"))?;
        self.ofport(name)?
            .with_context(|| format!("port {name} has no ofport after add-port"))
    }

    /// The interface's ofport, or `None` while unassigned (`[]` or `-1`).
    pub fn ofport(&self, iface: &str) -> anyhow::Result<Option<u32>> {
        let out = self.vsctl(&["get", "Interface", iface, "ofport"])?;
        let out = out.trim();
        Ok(match out {
            "[]" | "-1" => None,
            n => Some(
                n.parse()
                    .with_context(|| format!("unexpected ofport {n:?} for {iface}"))?,
            ),
        })
    }

    /// `ovs-ofctl dump-flows BRIDGE`, without the reply header and the fields that change on
    /// their own (duration, packet/byte counters, ages), sorted: two dumps of the same flow
    /// table compare equal.
    pub fn dump_flows(&self, bridge: &str) -> anyhow::Result<Vec<String>> {
        let out = self.ofctl(&["dump-flows", bridge])?;
        Ok(normalize_flow_dump(&out))
    }

    /// Stops ovs-vswitchd (`exit`, no cleanup, as a real restart would) and starts it again.
    pub fn restart_vswitchd(&mut self) -> anyhow::Result<()> {
        self.stop_vswitchd(false)?;
        self.start_vswitchd()
    }

    /// Stops ovsdb-server and starts it again on the same database and socket.
    pub fn restart_ovsdb(&mut self) -> anyhow::Result<()> {
        self.stop_ovsdb()?;
        self.start_ovsdb()
    }

    /// Stops ovs-vswitchd: `ovs-appctl exit [--cleanup]`, then kill after a deadline; reaped.
    pub fn stop_vswitchd(&mut self, cleanup: bool) -> anyhow::Result<()> {
        let Some(child) = self.vswitchd.take() else {
            return Ok(());
        };
        let ctl = self.ctl_socket("ovs-vswitchd", child.id());
        let args: &[&str] = if cleanup {
            &["exit", "--cleanup"]
        } else {
            &["exit"]
        };
        let _ = self.appctl_to(&ctl, args);
        reap(child, "ovs-vswitchd")
    }

    /// Stops ovsdb-server (`ovs-appctl exit`, kill after a deadline); reaped.
    pub fn stop_ovsdb(&mut self) -> anyhow::Result<()> {
        let Some(child) = self.ovsdb.take() else {
            return Ok(());
        };
        let ctl = self.ctl_socket("ovsdb-server", child.id());
        let _ = self.appctl_to(&ctl, &["exit"]);
        reap(child, "ovsdb-server")
    }

    /// Starts ovsdb-server (if stopped) and waits until `ovs-vsctl show` answers.
    pub fn start_ovsdb(&mut self) -> anyhow::Result<()> {
        if self.ovsdb.is_some() {
            return Ok(());
        }
        let mut cmd = self.daemon("ovsdb-server");
        cmd.arg(format!("--remote=punix:{}", self.db_socket().display()))
            .args(["--pidfile", "--log-file"])
            .arg(self.dir.path().join("conf.db"));
        let child = cmd.spawn().context("failed to spawn ovsdb-server")?;
        self.ovsdb = Some(child);
        let ready = wait_until("ovsdb-server to answer", DAEMON_TIMEOUT, || {
            self.exited("ovsdb-server") || self.vsctl_no_wait(&["show"]).is_ok()
        });
        self.check_started(ready, "ovsdb-server")
    }

    /// Starts ovs-vswitchd (if stopped) and waits until its control socket answers.
    pub fn start_vswitchd(&mut self) -> anyhow::Result<()> {
        if self.vswitchd.is_some() {
            return Ok(());
        }
        let mut cmd = self.daemon("ovs-vswitchd");
        cmd.arg(self.db_target()).args(["--pidfile", "--log-file"]);
        if self.opts.dummy {
            cmd.args(["--enable-dummy", "--disable-system"]);
        }
        let child = cmd.spawn().context("failed to spawn ovs-vswitchd")?;
        let ctl = self.ctl_socket("ovs-vswitchd", child.id());
        self.vswitchd = Some(child);
        let ready = wait_until("ovs-vswitchd control socket", DAEMON_TIMEOUT, || {
            self.exited("ovs-vswitchd")
                || (ctl.exists() && self.appctl_to(&ctl, &["version"]).is_ok())
        });
        self.check_started(ready, "ovs-vswitchd")
    }

    /// The tail of a daemon's log file, for error messages.
    pub fn log_tail(&self, daemon: &str) -> String {
        let path = self.dir.path().join(format!("{daemon}.log"));
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn check_started(&mut self, ready: anyhow::Result<()>, daemon: &str) -> anyhow::Result<()> {
        let exited = self.exited(daemon);
        if ready.is_err() || exited {
            let tail = self.log_tail(daemon);
            let slot = if daemon == "ovsdb-server" {
                &mut self.ovsdb
            } else {
                &mut self.vswitchd
            };
            if let Some(mut child) = slot.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            bail!("failed to start {daemon} (exited early: {exited}); log tail:\n{tail}");
        }
        Ok(())
    }

    /// Whether the daemon's child has already exited (without reaping it twice).
    fn exited(&self, daemon: &str) -> bool {
        let child = if daemon == "ovsdb-server" {
            &self.ovsdb
        } else {
            &self.vswitchd
        };
        // try_wait needs &mut; a /proc check keeps this usable from `&self` closures.
        child.as_ref().is_none_or(|c| {
            std::fs::read_to_string(format!("/proc/{}/stat", c.id()))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true)
        })
    }

    fn ctl_socket(&self, daemon: &str, pid: u32) -> PathBuf {
        self.dir.path().join(format!("{daemon}.{pid}.ctl"))
    }

    fn appctl_to(&self, ctl: &Path, args: &[&str]) -> anyhow::Result<String> {
        let mut cmd = self.tool("ovs-appctl");
        cmd.arg("--timeout=10").arg("-t").arg(ctl).args(args);
        run(&mut cmd)
    }

    /// A tool invocation with the sandbox's environment (tools run in the test's namespace:
    /// every socket they use is a unix socket in the run dir).
    fn tool(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        self.env(&mut cmd);
        cmd
    }

    /// A daemon invocation: in the namespace if configured, output to the log file only.
    fn daemon(&self, program: &str) -> Command {
        let mut cmd = match &self.opts.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, program]);
                c
            }
            None => Command::new(program),
        };
        self.env(&mut cmd);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }

    fn env(&self, cmd: &mut Command) {
        let d = self.dir.path();
        cmd.env("OVS_RUNDIR", d)
            .env("OVS_LOGDIR", d)
            .env("OVS_DBDIR", d)
            .env("OVS_PKGDATADIR", "/usr/share/openvswitch");
    }
}

impl Drop for OvsSandbox {
    fn drop(&mut self) {
        // --cleanup removes the datapath and its internal (tap) devices.
        let _ = self.stop_vswitchd(true);
        let _ = self.stop_ovsdb();
    }
}

/// Waits for a child that was asked to exit; kills it after the deadline. Always reaps.
fn reap(mut child: Child, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + DAEMON_TIMEOUT;
    let mut pause = Duration::from_millis(5);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return Ok(()),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            _ => {
                let _ = child.kill();
                child
                    .wait()
                    .with_context(|| format!("failed to reap {what}"))?;
                return Ok(());
            }
        }
    }
}

/// Drops the `OFPST_FLOW reply` header and the volatile fields of each flow line, then sorts.
pub fn normalize_flow_dump(dump: &str) -> Vec<String> {
    const VOLATILE: [&str; 5] = [
        "duration=",
        "n_packets=",
        "n_bytes=",
        "idle_age=",
        "hard_age=",
    ];
    let mut flows: Vec<String> = dump
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("OFPST_FLOW") && !l.starts_with("NXST_FLOW"))
        .map(|line| {
            let (head, actions) = split_flow_line(line);
            let fields: Vec<&str> = head
                .split(", ")
                .map(|f| f.trim_end_matches(','))
                .filter(|f| !VOLATILE.iter().any(|v| f.starts_with(v)))
                .collect();
            format!("{} {}", fields.join(", "), actions)
                .trim()
                .to_owned()
        })
        .collect();
    flows.sort();
    flows
}

/// Splits `cookie=0x0, duration=1s, table=0, ..., priority=0 actions=drop` into the field
/// list (`..., priority=0`) and the rest (`actions=drop`).
fn split_flow_line(line: &str) -> (String, String) {
    match line.find(" actions=") {
        Some(i) => (line[..i].to_owned(), line[i + 1..].to_owned()),
        None => (line.to_owned(), String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_flow_dump;

    #[test]
    fn flow_dump_normalization_removes_volatile_fields() {
        let a = "OFPST_FLOW reply (OF1.3) (xid=0x2):\n \
                 cookie=0x5, duration=3.2s, table=0, n_packets=7, n_bytes=700, idle_age=1, priority=100,in_port=1 actions=output:2\n \
                 cookie=0x0, duration=9.1s, table=0, n_packets=0, n_bytes=0, priority=0 actions=drop\n";
        let b = "OFPST_FLOW reply (OF1.3) (xid=0x9):\n \
                 cookie=0x0, duration=0.1s, table=0, n_packets=3, n_bytes=1, priority=0 actions=drop\n \
                 cookie=0x5, duration=0.2s, table=0, n_packets=0, n_bytes=0, priority=100,in_port=1 actions=output:2\n";
        let na = normalize_flow_dump(a);
        assert_eq!(na, normalize_flow_dump(b));
        assert_eq!(
            na,
            vec![
                "cookie=0x0, table=0, priority=0 actions=drop",
                "cookie=0x5, table=0, priority=100,in_port=1 actions=output:2",
            ]
        );
    }
}
