#!/usr/bin/env bash
# The slow-subscriber policies side by side: a 100-subscriber chat room fed by one
# publisher at full speed (a window of WINDOW unacknowledged publishes, default 1 000:
# 100 000 deliveries in flight, so the server, not the publisher's window, decides),
# under `--slow-subscriber pace` and `close`, alternating, ROUNDS times each. Server pinned to core 0 (`--threads 1`), wsload to
# core 1. Per run: deliveries/s, server CPU per million deliveries, server peak RSS
# (VmHWM), the worst reader's lag (max publish->receive latency), and what the server
# counted: slow subscribers closed, publishers paced.
#
#   scripts/pace_bench.sh [ROUNDS] [SIZE] [WINDOW]      (defaults 3, 1024, 1000)
#
# The lag is publish->receive as wsload sees it, so under `pace` it includes the time a
# held publish waits in the publisher's own socket buffers: that is where pacing keeps it.
# With a huge WINDOW, wsload counts what is still unacknowledged when it stops as missing.
#
# WSLOOP_BIN / WSLOAD_BIN override the release binaries.
set -euo pipefail
ROUNDS=${1:-3}; SIZE=${2:-1024}; WINDOW=${3:-1000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=${WSLOOP_BIN:-$ROOT/target/release/wsloop}; L=${WSLOAD_BIN:-$ROOT/target/release/wsload}
run() { # POLICY -> one line
  local policy=$1 out port pid json metrics
  out=$(mktemp)
  taskset -c 0 "$B" chat --listen 127.0.0.1:0 --no-www --threads 1 --metrics \
    --slow-subscriber "$policy" >"$out" 2>/dev/null & pid=$!
  for _ in $(seq 100); do grep -q listening "$out" && break; sleep 0.05; done
  port=$(sed -n 's/.*:\([0-9]*\)$/\1/p' "$out")
  json=$(taskset -c 1 "$L" broadcast --subscribers 100 --publishers 1 --window "$WINDOW" \
    -s "$SIZE" --binary --duration 5 --warmup 1 --url "ws://127.0.0.1:$port/" -q \
    --server-pid $pid | tail -1 || true)
  hwm=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$pid/status")
  metrics=$(curl -s "http://127.0.0.1:$port/metrics" || true)
  kill $pid; wait $pid 2>/dev/null || true; rm -f "$out"
  python3 - "$policy" "$json" "$hwm" "$metrics" <<'PY'
import json, sys
policy, d, hwm, metrics = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3] or 0), sys.argv[4]
m = {}
for line in metrics.splitlines():
    if line and not line.startswith('#') and ' ' in line:
        k, v = line.rsplit(' ', 1)
        m[k] = float(v)
print(f"{policy:5} deliveries/s {int(d['msgs_per_sec']):>9}  cpu s/M {d['server_cpu_s_per_million_msgs']:.3f}  "
      f"peak RSS {hwm/1024:6.1f} MiB  worst lag {d['latency_us']['max']/1000:8.1f} ms  p99 {d['latency_us']['p99']/1000:7.1f} ms  "
      f"slow closed {int(m.get('wsloop_slow_subscribers_closed_total', -1))}  paced {int(m.get('wsloop_publishers_paced_total', -1))}  "
      f"errors {d.get('errors')} missing {d.get('missing')}")
PY
}
for _ in $(seq "$ROUNDS"); do
  run pace
  run close
done
