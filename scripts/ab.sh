#!/usr/bin/env bash
# Side-by-side comparison of two wsloop binaries (e.g. the previous commit's and this
# one's), alternating runs so the machine's noise hits both alike; prints msgs/s per run
# and the ratio of medians.
#
#   scripts/ab.sh BASE_WSLOOP NEW_WSLOOP [ROUNDS]
#
# Cells: echo (100 connections x 20 B, one in flight) and broadcast (chat, 4 publishers,
# 100 subscribers). Server pinned to core 0 with --threads 1 where supported, wsload to
# core 1; 4 s per run. Two figures per run: msgs/s (deliveries/s for broadcast), and the
# server's CPU seconds per million messages, which stays meaningful when the load
# generator is the limit (broadcast saturates wsload's one core).
set -euo pipefail
BASE=${1:?base binary}; NEW=${2:?new binary}; ROUNDS=${3:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WSLOAD=${WSLOAD_BIN:-$ROOT/target/release/wsload}
run() { # BIN MODE EXTRA -> "msgs/s,server-cpu-s-per-million"
  local bin=$1 mode=$2 extra=$3 port out pid
  local args=("$mode" --listen 127.0.0.1:0 --no-www)
  if "$bin" --help 2>&1 | grep -q -- --threads; then args+=(--threads 1); fi
  out=$(mktemp)
  taskset -c 0 "$bin" "${args[@]}" >"$out" 2>/dev/null & pid=$!
  for _ in $(seq 100); do grep -q listening "$out" && break; sleep 0.05; done
  port=$(sed -n 's/.*listening on .*:\([0-9]*\)$/\1/p' "$out")
  local json
  json=$(taskset -c 1 "$WSLOAD" $extra --url "ws://127.0.0.1:$port/" -q --server-pid $pid | tail -1)
  kill $pid; wait $pid 2>/dev/null || true; rm -f "$out"
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("%d,%s" % (d["msgs_per_sec"], d["server_cpu_s_per_million_msgs"]))' "$json"
}
for cell in "echo|echo -c 100 -s 20 --duration 4 --warmup 1" "chat|broadcast --subscribers 100 --publishers 4 --duration 4 --warmup 1"; do
  mode=${cell%%|*}; extra=${cell#*|}
  b=(); n=()
  for _ in $(seq "$ROUNDS"); do b+=("$(run "$BASE" "$mode" "$extra")"); n+=("$(run "$NEW" "$mode" "$extra")"); done
  python3 - "$mode" "${b[*]}" "${n[*]}" <<'PY'
import statistics, sys
mode = sys.argv[1]
b = [tuple(map(float, x.split(","))) for x in sys.argv[2].split()]
n = [tuple(map(float, x.split(","))) for x in sys.argv[3].split()]
med = lambda xs, i: statistics.median(x[i] for x in xs)
print(f"{mode:5} msgs/s   base {[int(x[0]) for x in b]} new {[int(x[0]) for x in n]}  median new/base = {med(n,0)/med(b,0):.3f}")
print(f"{mode:5} cpu s/M  base {[x[1] for x in b]} new {[x[1] for x in n]}  median new/base = {med(n,1)/med(b,1):.3f}")
PY
done
