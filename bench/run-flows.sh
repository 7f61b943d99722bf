#!/usr/bin/env bash
# Builds wyvernd and bench-flows in release mode and runs the flow installation benchmark
# (wyvernd vs. raw `ovs-ofctl --bundle add-flows` vs. OVN, same topology, same run).
# Needs openvswitch-switch, and ovn-central + ovn-host for the OVN baseline (--no-ovn skips it).
# Usage: bench/run-flows.sh [bench-flows options, e.g. --networks 10 --no-ovn]
# Prints the benchmark's JSON on stdout (progress on stderr).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p wyvern-daemon -p wyvern-bench >&2
target="${CARGO_TARGET_DIR:-target}"
exec "$target/release/bench-flows" --wyvernd "$target/release/wyvernd" "$@"
