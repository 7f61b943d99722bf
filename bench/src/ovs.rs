//! The Open vSwitch side of the flow and metrics benchmarks: many interfaces on a private
//! `ovs-vswitchd --enable-dummy`, bound by `external_ids:iface-id`, and flow-table polling.
//!
//! Interfaces are created and bound with raw OVSDB `transact` requests (RFC 7047) rather than
//! `ovs-vsctl`: ovs-vsctl rewrites the bridge's `ports` set once per `add-port` command, so a
//! 5,000-port transaction is quadratic on the client before ovs-vswitchd sees it (96 s in
//! session 1; about 28 s this way, nearly all of it ovs-vswitchd's own userspace-datapath
//! port additions, which are quadratic in the port count too).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use wyvern_testkit::ovs::OvsSandbox;

/// The integration bridge both benchmarks use.
pub const BRIDGE: &str = "br-int";

/// The name of the `i`-th benchmark interface.
pub fn iface_name(i: usize) -> String {
    format!("p{i:05}")
}

/// Runs an `ovs-vsctl` with many commands in one transaction.
pub fn vsctl_batch(sb: &OvsSandbox, cmds: &[Vec<String>], no_wait: bool) -> anyhow::Result<()> {
    let mut args: Vec<String> = vec![format!("--db={}", sb.db_target()), "--timeout=900".into()];
    if no_wait {
        args.push("--no-wait".into());
    }
    for (i, c) in cmds.iter().enumerate() {
        if i > 0 {
            args.push("--".into());
        }
        args.extend(c.iter().cloned());
    }
    let out = Command::new("ovs-vsctl")
        .env("OVS_RUNDIR", sb.run_dir())
        .args(&args)
        .output()
        .context("failed to run ovs-vsctl")?;
    if !out.status.success() {
        bail!(
            "ovs-vsctl failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// One OVSDB `transact` on the sandbox's database; fails on any operation's error.
fn transact(sb: &OvsSandbox, ops: Vec<Value>) -> anyhow::Result<Vec<Value>> {
    let mut params = vec![json!("Open_vSwitch")];
    params.extend(ops);
    let req = json!({"method": "transact", "params": params, "id": 1});
    let mut s = UnixStream::connect(sb.db_socket())
        .with_context(|| format!("failed to connect to {}", sb.db_socket().display()))?;
    s.set_read_timeout(Some(Duration::from_secs(900)))?;
    s.write_all(&serde_json::to_vec(&req)?)
        .context("failed to send the OVSDB transaction")?;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    let reply: Value = loop {
        let n = s
            .read(&mut chunk)
            .context("failed to read the OVSDB reply")?;
        if n == 0 {
            bail!("ovsdb-server closed the connection before replying");
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut it = serde_json::Deserializer::from_slice(&buf).into_iter::<Value>();
        match it.next() {
            Some(Ok(v)) if v["id"] == json!(1) => break v,
            // A request of the server's own (echo) or an incomplete reply: read on.
            Some(Ok(_)) => {
                let used = it.byte_offset();
                buf.drain(..used);
            }
            Some(Err(e)) if e.is_eof() => {}
            Some(Err(e)) => bail!("failed to parse the OVSDB reply: {e}"),
            None => {}
        }
    };
    let results = reply["result"]
        .as_array()
        .with_context(|| format!("OVSDB transaction failed: {}", reply["error"]))?
        .clone();
    if let Some(err) = results.iter().find(|r| r.get("error").is_some()) {
        bail!("OVSDB transaction failed: {err}");
    }
    Ok(results)
}

/// Waits until ovs-vswitchd has applied the configuration up to `next_cfg`.
fn wait_cur_cfg(sb: &OvsSandbox, next_cfg: i64, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let cur: i64 = sb
            .vsctl_no_wait(&["get", "open_vswitch", ".", "cur_cfg"])?
            .trim()
            .parse()
            .context("cur_cfg is not a number")?;
        if cur >= next_cfg {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("ovs-vswitchd did not reach next_cfg {next_cfg} (at {cur})");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Bumps `next_cfg` in a transaction with `ops`; returns the new value.
fn transact_and_bump(sb: &OvsSandbox, mut ops: Vec<Value>) -> anyhow::Result<i64> {
    let next: i64 = sb
        .vsctl_no_wait(&["get", "open_vswitch", ".", "next_cfg"])?
        .trim()
        .parse()
        .context("next_cfg is not a number")?;
    ops.push(json!({"op": "mutate", "table": "Open_vSwitch", "where": [],
                    "mutations": [["next_cfg", "+=", 1]]}));
    transact(sb, ops)?;
    Ok(next + 1)
}

/// Creates `type=dummy` interfaces `first..first+n` (no iface-id) on [`BRIDGE`] in one OVSDB
/// transaction and waits until ovs-vswitchd has added them all.
pub fn create_interfaces(
    sb: &OvsSandbox,
    first: usize,
    n: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let mut ops = Vec::with_capacity(2 * n + 2);
    let mut ports = Vec::with_capacity(n);
    for k in first..first + n {
        let name = iface_name(k);
        ops.push(
            json!({"op": "insert", "table": "Interface", "uuid-name": format!("i{k}"),
                        "row": {"name": name, "type": "dummy"}}),
        );
        ops.push(
            json!({"op": "insert", "table": "Port", "uuid-name": format!("p{k}"),
                        "row": {"name": name, "interfaces": ["named-uuid", format!("i{k}")]}}),
        );
        ports.push(json!(["named-uuid", format!("p{k}")]));
    }
    ops.push(
        json!({"op": "mutate", "table": "Bridge", "where": [["name", "==", BRIDGE]],
                    "mutations": [["ports", "insert", ["set", ports]]]}),
    );
    let next = transact_and_bump(sb, ops)?;
    wait_cur_cfg(sb, next, timeout)
}

/// Sets `external_ids:iface-id` on interfaces (name, logical port id) in one OVSDB
/// transaction; returns once ovsdb-server committed it (what a hypervisor agent's write is).
pub fn bind(sb: &OvsSandbox, pairs: &[(String, String)]) -> anyhow::Result<()> {
    let ops: Vec<Value> = pairs
        .iter()
        .map(|(iface, id)| {
            json!({"op": "mutate", "table": "Interface", "where": [["name", "==", iface]],
                   "mutations": [["external_ids", "insert", ["map", [["iface-id", id]]]]]})
        })
        .collect();
    transact(sb, ops).map(drop)
}

/// Runs `ovs-ofctl` against [`BRIDGE`] with `args` after the bridge name.
fn ofctl_bridge(sb: &OvsSandbox, cmd: &str, extra: &[&str]) -> anyhow::Result<String> {
    let mut args = vec![cmd, BRIDGE];
    args.extend(extra);
    sb.ofctl(&args)
}

/// `ovs-ofctl dump-aggregate`'s flow_count of the flows matching `filter` (e.g.
/// `table=7`), or of all.
pub fn flow_count_of(sb: &OvsSandbox, filter: Option<&str>) -> anyhow::Result<u64> {
    let out = ofctl_bridge(sb, "dump-aggregate", filter.as_slice())?;
    out.split_whitespace()
        .find_map(|w| w.strip_prefix("flow_count="))
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no flow_count in {out:?}"))
}

/// The bridge's flow count.
pub fn flow_count(sb: &OvsSandbox) -> anyhow::Result<u64> {
    flow_count_of(sb, None)
}

/// Polls the flow count until it held for `stable`; returns it and when it first appeared.
pub fn wait_settled(
    sb: &OvsSandbox,
    stable: Duration,
    timeout: Duration,
    min: u64,
) -> anyhow::Result<(u64, Instant)> {
    let deadline = Instant::now() + timeout;
    let mut last = u64::MAX;
    let mut since = Instant::now();
    loop {
        let n = flow_count(sb)?;
        let now = Instant::now();
        if n != last {
            last = n;
            since = now;
        } else if n >= min && now - since >= stable {
            return Ok((n, since));
        }
        if now > deadline {
            bail!("flow table did not settle (last count {last})");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls until the flow count reaches `want`; returns when it did.
pub fn wait_count(sb: &OvsSandbox, want: u64, timeout: Duration) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        let n = flow_count(sb)?;
        if n == want {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            bail!("flow count stuck at {n}, want {want}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `ovs-ofctl --timestamp snoop` on the bridge's controller connection (millisecond
/// timestamps from the switch's side); killed and reaped on drop.
pub struct Snoop {
    child: Child,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

/// One bundle as snoop saw it, in milliseconds from its OPEN_REQUEST.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct BundleTiming {
    /// When the switch read the OPEN_REQUEST, in seconds of the (UTC) day, snoop's clock
    /// (1 ms resolution): to place a bundle on the timeline of the writes that caused it.
    pub open_at_s: f64,
    /// OpenFlow messages, both directions, from the OPEN_REQUEST to the BARRIER_REPLY, both
    /// included.
    pub messages: usize,
    pub commit_reply_ms: Option<f64>,
    pub barrier_reply_ms: f64,
}

impl Snoop {
    pub fn start(sb: &OvsSandbox) -> anyhow::Result<Snoop> {
        let dir = tempfile::tempdir()?;
        let out = dir.path().join("snoop.txt");
        let file = std::fs::File::create(&out)?;
        let child = Command::new("ovs-ofctl")
            .args(["-O", "OpenFlow13", "--timestamp", "snoop"])
            .env("OVS_RUNDIR", sb.run_dir())
            .arg(format!(
                "unix:{}",
                sb.run_dir().join(format!("{BRIDGE}.snoop")).display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file))
            .spawn()
            .context("failed to start ovs-ofctl snoop")?;
        Ok(Snoop {
            child,
            out,
            _dir: dir,
        })
    }

    /// Per bundle: from its OPEN_REQUEST to the COMMIT_REPLY and to the BARRIER_REPLY that
    /// follows, as snoop saw them, and how many messages it took.
    pub fn bundles(&self) -> Vec<BundleTiming> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        parse_bundles(&text)
    }
}

/// Parses `ovs-ofctl --timestamp snoop` output into bundle timings.
fn parse_bundles(text: &str) -> Vec<BundleTiming> {
    let round = |ms: f64| (ms * 1e3).round() / 1e3;
    let mut out = Vec::new();
    let mut open: Option<f64> = None;
    let mut commit = None;
    let mut messages = 0;
    let mut last_ts = None;
    for line in text.lines() {
        let ts = parse_ts(line);
        if let Some(ts) = ts {
            last_ts = Some(ts);
        }
        if ts.is_some() && open.is_some() {
            messages += 1;
        }
        if line.contains("type=OPEN_REQUEST") && open.is_none() {
            open = last_ts;
            commit = None;
            messages = 1;
        } else if line.contains("type=COMMIT_REPLY") {
            commit = last_ts;
        } else if line.contains("OFPT_BARRIER_REPLY") {
            if let (Some(a), Some(b)) = (open.take(), last_ts) {
                out.push(BundleTiming {
                    open_at_s: a,
                    messages,
                    commit_reply_ms: commit.take().map(|c| round((c - a) * 1e3)),
                    barrier_reply_ms: round((b - a) * 1e3),
                });
            }
        }
    }
    out
}

/// The host's wall clock in seconds of the UTC day, the clock of [`BundleTiming::open_at_s`]
/// (this host runs in UTC, as does snoop's `--timestamp`; a run across midnight is not
/// placed).
pub fn seconds_of_day_now() -> f64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    now.as_secs_f64() % 86_400.0
}

/// Seconds of the day from snoop's `2026-11-28 14:31:17.123: ` prefix.
fn parse_ts(line: &str) -> Option<f64> {
    let time = line.get(11..23)?;
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    line.get(23..25).filter(|t| *t == ": ")?;
    Some(h * 3600.0 + m * 60.0 + s)
}

impl Drop for Snoop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snoop_bundles_are_timed_from_open_to_barrier_reply() {
        let text = "\
2026-11-28 14:31:17.100: OFPT_BUNDLE_CONTROL (OF1.3) (xid=0x10): bundle_id=0x1 type=OPEN_REQUEST flags=atomic ordered
2026-11-28 14:31:17.101: OFPT_BUNDLE_CONTROL (OF1.3) (xid=0x10): bundle_id=0x1 type=OPEN_REPLY flags=0
2026-11-28 14:31:17.101: OFPT_BUNDLE_ADD_MESSAGE (OF1.3) (xid=0x11):
 bundle_id=0x1 flags=atomic ordered
OFPT_FLOW_MOD (OF1.3) (xid=0x11): ADD table:7 priority=100 actions=output:5
2026-11-28 14:31:17.102: OFPT_BUNDLE_CONTROL (OF1.3) (xid=0x12): bundle_id=0x1 type=COMMIT_REQUEST flags=atomic ordered
2026-11-28 14:31:17.103: OFPT_BARRIER_REQUEST (OF1.3) (xid=0x13):
2026-11-28 14:31:17.105: OFPT_BUNDLE_CONTROL (OF1.3) (xid=0x12): bundle_id=0x1 type=COMMIT_REPLY flags=0
2026-11-28 14:31:17.106: OFPT_BARRIER_REPLY (OF1.3) (xid=0x13):
";
        let b = parse_bundles(text);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].barrier_reply_ms, 6.0);
        assert_eq!(b[0].open_at_s, 14.0 * 3600.0 + 31.0 * 60.0 + 17.1);
        assert_eq!(b[0].commit_reply_ms, Some(5.0));
        // OPEN and its reply, ADD, COMMIT, BARRIER and their replies.
        assert_eq!(b[0].messages, 7);
    }
}
