#!/usr/bin/env bash
# Baseline for examples/null_fwd.rs: dpdk-testpmd io forwarding between two null PMD ports
# on one forwarding core for SECONDS (default 5). Prints one JSON line with the Mpps that
# testpmd itself measures between two "show port stats all" (sum of both ports' Rx-pps).
set -euo pipefail
SECONDS_RUN=${1:-5}
command -v dpdk-testpmd >/dev/null || { echo "dpdk-testpmd not found: apt-get install -y dpdk" >&2; exit 1; }
PREFIX="bench-testpmd-$$"
WORK=$(mktemp -d)
FIFO="$WORK/in"
OUT="$WORK/out"
mkfifo "$FIFO"
cleanup() {
    exec 3>&- 2>/dev/null || true
    if [[ -n "${PID:-}" ]] && kill -0 "$PID" 2>/dev/null; then kill "$PID"; wait "$PID" 2>/dev/null || true; fi
    rm -rf "$WORK" "/var/run/dpdk/$PREFIX"
}
trap cleanup EXIT
dpdk-testpmd --no-huge --no-pci -m 512 --file-prefix "$PREFIX" -l 0-1 --no-telemetry \
    --vdev=net_null0 --vdev=net_null1 -- -i --forward-mode=io --nb-cores=1 \
    --total-num-mbufs=16384 <"$FIFO" >"$OUT" 2>&1 &
PID=$!
exec 3>"$FIFO"
# Wait (with a deadline) for the interactive prompt: EAL and ports are up.
for _ in $(seq 1 300); do
    grep -q 'testpmd>' "$OUT" 2>/dev/null && break
    kill -0 "$PID" 2>/dev/null || { cat "$OUT" >&2; echo "dpdk-testpmd exited early" >&2; exit 1; }
    sleep 0.1
done
grep -q 'testpmd>' "$OUT" || { cat "$OUT" >&2; echo "dpdk-testpmd never showed its prompt" >&2; exit 1; }
echo "start" >&3
sleep 1                                   # warm-up, then the measured window
echo "show port stats all" >&3
sleep "$SECONDS_RUN"                      # the benchmark's duration, not synchronisation
echo "show port stats all" >&3
echo "stop" >&3
echo "quit" >&3
exec 3>&-
wait "$PID" || true
PID=
# Rx-pps of the last "show port stats all" (one line per port): testpmd's own rate over the window.
MPPS=$(grep -o 'Rx-pps: *[0-9]*' "$OUT" | awk '{print $2}' | tail -n 2 | awk '{s+=$1} END {printf "%.3f", s/1e6}')
printf '{"tool":"dpdk-testpmd","mode":"io","ports":2,"cores":1,"seconds":%s,"mpps":%s}\n' "$SECONDS_RUN" "$MPPS"
