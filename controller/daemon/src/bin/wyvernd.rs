//! `wyvernd`: the per-host daemon. Configuration and wiring live in `wyvern_daemon`.

use anyhow::Context;
use clap::Parser;
use wyvern_daemon::config::{Args, Config};
use wyvern_daemon::server;

/// mimalloc instead of glibc malloc: the API's write path allocates many small short-lived
/// buffers on several threads (see docs/api-bench.md for the measured difference).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cfg = Config::resolve(Args::parse()).context("failed to load the configuration")?;
    server::init_logging(cfg.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the tokio runtime")?;
    rt.block_on(async {
        let shutdown = server::shutdown_signal()?;
        server::run(cfg, shutdown, |addr| {
            // Scripts and test harnesses wait for this line.
            println!("wyvernd listening on http://{addr}");
        })
        .await
    })
    .context("wyvernd failed")
}
