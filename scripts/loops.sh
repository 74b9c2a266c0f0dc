#!/usr/bin/env bash
# One cell with the server unpinned: starts `wsloop SERVER_ARGS` on a free port, runs
# `wsload WSLOAD_ARGS` against it, prints one line:
#   msgs/s  server-cpu-s-per-million  server-cpu%  client-cpu%  p50-us  p99-us  errors  missing
#
#   scripts/loops.sh "chat --threads 2" "broadcast --subscribers 100 --publishers 4 --rate 100000 --duration 4 --warmup 1 --threads 2"
#
# Used for the one-loop/two-loop table in BENCHMARKS.md. WSLOOP_BIN / WSLOAD_BIN override
# the release binaries.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=${WSLOOP_BIN:-$ROOT/target/release/wsloop}; L=${WSLOAD_BIN:-$ROOT/target/release/wsload}
out=$(mktemp)
# shellcheck disable=SC2086 # the argument strings are word lists on purpose
$B $1 --listen 127.0.0.1:0 --no-www >"$out" 2>/dev/null & pid=$!
for _ in $(seq 100); do grep -q listening "$out" && break; sleep 0.05; done
port=$(sed -n 's/.*:\([0-9]*\)$/\1/p' "$out")
# shellcheck disable=SC2086
$L $2 --url "ws://127.0.0.1:$port/" -q --server-pid $pid | tail -1 | python3 -c 'import json,sys; d=json.load(sys.stdin); print(int(d["msgs_per_sec"]), d["server_cpu_s_per_million_msgs"], d.get("server_cpu_pct"), d.get("client_cpu_pct"), d["latency_us"]["p50"], d["latency_us"]["p99"], d.get("errors"), d.get("missing"))'
kill $pid; wait $pid 2>/dev/null || true; rm -f "$out"
