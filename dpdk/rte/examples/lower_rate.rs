//! Rate of rte_flow rule construction: typed rules lowered to C arrays (and dropped) per
//! second, as JSON. No EAL needed. `cargo run --release -p rte --example lower_rate -- 200000`

use std::net::Ipv4Addr;
use std::time::Instant;

use rte::flow::{FlowAction, FlowAttr, Item, LoweredRule};
use rte::MacAddr;

fn main() -> anyhow::Result<()> {
    let n: u32 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(200_000);
    let start = Instant::now();
    let mut items_total = 0usize;
    for i in 0..n {
        // An l3_lookup-shaped rule: eth dst, ipv4 dst prefix -> MAC rewrite, dec TTL, egress.
        let pattern = [
            Item::eth_dst(MacAddr([2, 0, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8])),
            Item::ipv4_dst_prefix(Ipv4Addr::from(0x0a00_0000 | (i << 8)), 24),
        ];
        let actions = [
            FlowAction::SetMacSrc(MacAddr([2, 0, 0, 0, 0, 1])),
            FlowAction::SetMacDst(MacAddr([2, 0, 0, 0, 0, 2])),
            FlowAction::DecTtl,
            FlowAction::Count { id: i },
            FlowAction::PortId {
                id: i % 8,
                original: false,
            },
        ];
        let rule = LoweredRule::new(&FlowAttr::ingress(2), &pattern, &actions)?;
        items_total += std::hint::black_box(rule.items().len() + rule.actions().len());
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"tool": "rte lower_rate", "rules": n, "seconds": secs, "rules_per_sec": n as f64 / secs, "entries": items_total})
    );
    Ok(())
}
