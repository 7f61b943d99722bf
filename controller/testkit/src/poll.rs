//! Polling with a deadline: the only way tests wait.

use std::time::{Duration, Instant};

/// Calls `probe` until it returns `Some`, or fails after `timeout` naming `what`.
/// The pause between probes starts at 5 ms and doubles up to 200 ms.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(v) = probe() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Like `wait_for` for a boolean condition.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    wait_for(what, timeout, || cond().then_some(()))
}
