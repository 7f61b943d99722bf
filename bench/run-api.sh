#!/usr/bin/env bash
# Builds wyvernd and bench-api in release mode and runs the API benchmark.
# Usage: bench/run-api.sh [bench-api options, e.g. --total-ports 20000]
# Prints the benchmark's JSON on stdout (progress on stderr).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p wyvern-daemon -p wyvern-bench >&2
target="${CARGO_TARGET_DIR:-target}"
exec "$target/release/bench-api" --wyvernd "$target/release/wyvernd" "$@"
