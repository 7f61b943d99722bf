#!/usr/bin/env bash
# OpenStack's network API tests (tempest 47 from PyPI) against wyvernd behind a real
# Keystone (keystone 30 on SQLite, uWSGI), both started by the e2e harness on free loopback
# ports. Prints passed/skipped/failed and every skip with tempest's reason; the report is also
# written to $CARGO_TARGET_DIR/tmp/tempest-report.txt (full output: tempest-output.txt).
#
#   bench/run-tempest.sh                       # the whole tempest.api.network suite
#   TEMPEST_REGEX='^tempest\.api\.network\.test_ports' bench/run-tempest.sh
#
# CI runs a fixed, fast subset through `cargo test -p wyvern-daemon --test e2e tempest_network_subset`.
# Results and why each skip is a skip: docs/tempest.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export TEMPEST_REGEX="${TEMPEST_REGEX:-^tempest\.api\.network}"
cargo test -p wyvern-daemon --test e2e tempest_network_full -- --ignored --nocapture
