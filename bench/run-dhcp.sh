#!/usr/bin/env bash
# DHCP under load: wyvern vs Kea's kea-dhcp4 in the same run (see src/bin/bench-dhcp.rs).
# Needs root, Open vSwitch, and the Debian packages kea-dhcp4-server and kea-admin
# (perfdhcp). Usage: bench/run-dhcp.sh [bench-dhcp options, e.g. --clients 128 --seconds 20]
# Prints the benchmark's JSON on stdout (progress on stderr).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v kea-dhcp4 >/dev/null || { echo "kea-dhcp4 missing: apt-get install -y kea-dhcp4-server kea-admin" >&2; exit 1; }
cargo build --release -p wyvern-daemon -p wyvern-bench >&2
target="${CARGO_TARGET_DIR:-target}"
exec "$target/release/bench-dhcp" --wyvernd "$target/release/wyvernd" \
    --dhcp-load "$target/release/dhcp-load" "$@"
