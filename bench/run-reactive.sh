#!/usr/bin/env bash
# Reactive L3: first-packet cost (packet-in -> flow installed -> packet released), p50/p99,
# and flow counts of proactive vs reactive mode (see src/bin/bench-reactive.rs).
# Needs root and Open vSwitch. Usage: bench/run-reactive.sh [--samples N]
# Prints the benchmark's JSON on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p wyvern-daemon -p wyvern-bench >&2
target="${CARGO_TARGET_DIR:-target}"
exec "$target/release/bench-reactive" --wyvernd "$target/release/wyvernd" "$@"
