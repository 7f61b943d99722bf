//! etcd harness: real `etcd` processes (Debian's etcd-server, 3.4) on loopback with private
//! data dirs and free ports, one member ([`Etcd`]) or a cluster ([`EtcdCluster`]).
//!
//! Members run with `--max-txn-ops 16384` and `--max-request-bytes 16 MiB`: the northbound
//! service merges many API writes into one transaction, which etcd's defaults (128 ops,
//! 1.5 MiB) would refuse (see docs/multi-host.md). Every member is a child of the test,
//! killed and reaped on `Drop`; its log goes to a file whose tail errors quote.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use tempfile::TempDir;

use crate::poll::wait_for;

/// How long a member (or a whole cluster) may take to report healthy.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A loopback port that was free a moment ago (bind to port 0, read it back, release it).
/// Racy in principle; etcd then fails to bind and the start reports it.
fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("failed to bind a free loopback port")?;
    Ok(l.local_addr()
        .context("failed to read a bound port")?
        .port())
}

/// One member's fixed identity: name, ports, data dir, log file.
#[derive(Debug, Clone)]
struct MemberSpec {
    name: String,
    client: SocketAddr,
    peer: SocketAddr,
    data_dir: PathBuf,
    log: PathBuf,
}

impl MemberSpec {
    fn new(root: &Path, idx: usize) -> anyhow::Result<Self> {
        let name = format!("m{idx}");
        Ok(MemberSpec {
            client: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
            peer: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
            data_dir: root.join(format!("{name}.etcd")),
            log: root.join(format!("{name}.log")),
            name,
        })
    }

    fn client_url(&self) -> String {
        format!("http://{}", self.client)
    }

    fn peer_url(&self) -> String {
        format!("http://{}", self.peer)
    }
}

/// A running etcd member (or a stopped one that can be started again).
struct Member {
    spec: MemberSpec,
    child: Option<Child>,
}

impl Member {
    fn spawn(&mut self, initial_cluster: &str, state: &str) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.spec.log)
            .with_context(|| format!("failed to open {}", self.spec.log.display()))?;
        let s = &self.spec;
        let child = Command::new("etcd")
            .args(["--name", &s.name])
            .arg("--data-dir")
            .arg(&s.data_dir)
            .args(["--listen-client-urls", &s.client_url()])
            .args(["--advertise-client-urls", &s.client_url()])
            .args(["--listen-peer-urls", &s.peer_url()])
            .args(["--initial-advertise-peer-urls", &s.peer_url()])
            .args(["--initial-cluster", initial_cluster])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", "wyvern-test"])
            .args(["--max-txn-ops", "16384"])
            .args(["--max-request-bytes", "16777216"])
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .context("failed to start etcd (apt-get install etcd-server)")?;
        self.child = Some(child);
        Ok(())
    }

    fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            c.wait().context("failed to reap etcd")?;
        }
        Ok(())
    }

    fn exited(&mut self) -> Option<String> {
        let c = self.child.as_mut()?;
        match c.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.spec.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(20);
        format!(
            "--- etcd {} log tail ({}) ---\n{}",
            self.spec.name,
            self.spec.log.display(),
            lines[start..].join("\n")
        )
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// `GET /health` over plain HTTP/1.0; true when etcd answers `"health":"true"` (it has a
/// leader and serves).
pub fn healthy(addr: SocketAddr) -> bool {
    let probe = || -> Option<bool> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(s, "GET /health HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        Some(body.contains("\"health\":\"true\""))
    };
    probe().unwrap_or(false)
}

/// Whether the member at `addr` is the raft leader (its `/metrics` say
/// `etcd_server_is_leader 1`); false when it does not answer.
pub fn is_leader(addr: SocketAddr) -> bool {
    let probe = || -> Option<bool> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        Some(body.lines().any(|l| l.trim() == "etcd_server_is_leader 1"))
    };
    probe().unwrap_or(false)
}

/// An etcd cluster of N members on loopback (N = 1 for a plain test store).
pub struct EtcdCluster {
    members: Vec<Member>,
    initial_cluster: String,
    /// Holds every member's data dir and log; removed after the members are killed.
    _dir: TempDir,
}

impl EtcdCluster {
    /// Starts `n` members and waits until each reports healthy.
    pub fn start(n: usize) -> anyhow::Result<Self> {
        if n == 0 {
            bail!("an etcd cluster needs at least one member");
        }
        let dir = tempfile::Builder::new()
            .prefix("etcd-test-")
            .tempdir()
            .context("failed to create the etcd temp dir")?;
        let specs = (0..n)
            .map(|i| MemberSpec::new(dir.path(), i))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let initial_cluster = specs
            .iter()
            .map(|s| format!("{}={}", s.name, s.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = EtcdCluster {
            members: specs
                .into_iter()
                .map(|spec| Member { spec, child: None })
                .collect(),
            initial_cluster,
            _dir: dir,
        };
        for m in &mut c.members {
            m.spawn(&c.initial_cluster, "new")?;
        }
        for i in 0..n {
            c.wait_healthy(i)?;
        }
        Ok(c)
    }

    fn wait_healthy(&mut self, i: usize) -> anyhow::Result<()> {
        let addr = self.members[i].spec.client;
        let res = wait_for(
            &format!("etcd member {i} to report healthy"),
            START_TIMEOUT,
            || {
                if let Some(status) = self.members[i].exited() {
                    return Some(Err(status));
                }
                healthy(addr).then_some(Ok(()))
            },
        );
        match res {
            Ok(Ok(())) => Ok(()),
            Ok(Err(status)) => bail!(
                "etcd member {i} exited with {status}\n{}",
                self.members[i].log_tail()
            ),
            Err(e) => Err(e.context(self.members[i].log_tail())),
        }
    }

    /// Number of members (running or not).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Client URLs of every member, `http://127.0.0.1:PORT`, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.spec.client_url()).collect()
    }

    /// The client URL of member `i`.
    pub fn endpoint(&self, i: usize) -> String {
        self.members[i].spec.client_url()
    }

    /// The index of the current leader among the running members, if one is known.
    pub fn leader(&mut self) -> Option<usize> {
        (0..self.members.len())
            .find(|&i| self.is_running(i) && is_leader(self.members[i].spec.client))
    }

    /// SIGKILLs member `i` (a crash: no graceful leave) and reaps it.
    pub fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        self.members[i].kill()
    }

    /// Starts member `i` again on its data dir (it rejoins with its old identity) and waits
    /// until it is healthy.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.members[i].kill()?;
        let ic = self.initial_cluster.clone();
        self.members[i].spawn(&ic, "existing")?;
        self.wait_healthy(i)
    }

    /// Whether member `i`'s process is running.
    pub fn is_running(&mut self, i: usize) -> bool {
        self.members[i].child.is_some() && self.members[i].exited().is_none()
    }

    /// The last lines of every member's log, for error messages.
    pub fn log_tails(&self) -> String {
        self.members
            .iter()
            .map(Member::log_tail)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A single-member etcd: what most tests need.
pub struct Etcd {
    cluster: EtcdCluster,
}

impl Etcd {
    pub fn start() -> anyhow::Result<Self> {
        Ok(Etcd {
            cluster: EtcdCluster::start(1)?,
        })
    }

    /// The client URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        self.cluster.endpoint(0)
    }

    pub fn log_tail(&self) -> String {
        self.cluster.log_tails()
    }
}
