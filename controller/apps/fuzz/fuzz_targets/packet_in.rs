//! Arbitrary bytes as a packet-in frame through parse, DHCP, ICMP and ARP handlers.
//! Run: `cargo +nightly fuzz run packet_in fuzz/seeds/packet_in` from controller/apps.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wyvern_apps::fuzzing::{fuzz_context, run_all};
use wyvern_apps::{DhcpConfig, DhcpPortContext};

static CONTEXT: OnceLock<(DhcpPortContext, DhcpConfig)> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let (ctx, cfg) = CONTEXT.get_or_init(fuzz_context);
    run_all(data, ctx, cfg);
});
