#!/usr/bin/env bash
# ws vs wss side by side with one wsloop binary: echo msgs/s and server CPU per message
# (100 and 1 000 connections x 20 B and 16 KiB), handshakes per second, and server
# memory per idle connection. Runs alternate (ws, wss, ws, wss, ...) so the machine's
# noise hits both alike; prints each run and the ratio of medians (wss/ws).
#
#   scripts/tls-bench.sh [WSLOOP] [ROUNDS]     (default target/release/wsloop, 3 rounds)
#   ONLY='16 KiB' scripts/tls-bench.sh           (only the cells whose name matches)
#
# Server pinned to core 0 with --threads 1, wsload (target/release/wsload, or
# $WSLOAD_BIN) to core 1, like scripts/ab.sh. The certificate is made by
# scripts/test-cert.sh (ECDSA P-256) in a temporary directory.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-$ROOT/target/release/wsloop}; ROUNDS=${2:-3}
WSLOAD=${WSLOAD_BIN:-$ROOT/target/release/wsload}
CERTS=$(mktemp -d); trap 'rm -rf "$CERTS"' EXIT
"$ROOT/scripts/test-cert.sh" "$CERTS"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

run() { # SCHEME EXTRA FIELDS -> the JSON fields asked for, comma-separated
  local scheme=$1 extra=$2 fields=$3 port out pid tls=() ca=()
  if [ "$scheme" = wss ]; then
    tls=(--tls-cert "$CERTS/cert.pem" --tls-key "$CERTS/key.pem"); ca=(--tls-ca "$CERTS/ca.pem")
  fi
  out=$(mktemp)
  taskset -c 0 "$BIN" echo --listen 127.0.0.1:0 --no-www --threads 1 "${tls[@]}" >"$out" 2>/dev/null & pid=$!
  for _ in $(seq 100); do grep -q listening "$out" && break; sleep 0.05; done
  port=$(sed -n 's/.*listening on .*:\([0-9]*\)$/\1/p' "$out")
  local json
  # shellcheck disable=SC2086
  json=$(taskset -c 1 "$WSLOAD" $extra --url "$scheme://localhost:$port/" "${ca[@]}" -q --server-pid $pid | tail -1)
  kill $pid; wait $pid 2>/dev/null || true; rm -f "$out"
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(",".join(str(d[k]) for k in sys.argv[2].split(",")))' "$json" "$fields"
}

cell() { # NAME EXTRA FIELDS LABELS
  local name=$1 extra=$2 fields=$3 labels=$4 a=() b=()
  [[ "$name" =~ ${ONLY:-.} ]] || return 0
  for _ in $(seq "$ROUNDS"); do
    a+=("$(run ws "$extra" "$fields")"); b+=("$(run wss "$extra" "$fields")")
  done
  python3 - "$name" "$labels" "${a[*]}" "${b[*]}" <<'PY'
import statistics, sys
name, labels = sys.argv[1], sys.argv[2].split(",")
parse = lambda s: [[float(v) if v != "None" else float("nan") for v in x.split(",")] for x in s.split()]
a, b = parse(sys.argv[3]), parse(sys.argv[4])
for i, label in enumerate(labels):
    ma, mb = statistics.median(x[i] for x in a), statistics.median(x[i] for x in b)
    print(f"{name:22} {label:14} ws {[round(x[i], 2) for x in a]} wss {[round(x[i], 2) for x in b]}"
          f"  median ws {ma:.2f} wss {mb:.2f}  wss/ws = {mb / ma:.3f}")
PY
}

E="msgs_per_sec,server_cpu_s_per_million_msgs"; L="msgs/s,cpu-s/M-msgs"
cell "echo 100 x 20 B"    "echo -c 100 -s 20 --duration 4 --warmup 1"      "$E" "$L"
cell "echo 100 x 16 KiB"  "echo -c 100 -s 16384 --duration 4 --warmup 1"   "$E" "$L"
cell "echo 1000 x 20 B"   "echo -c 1000 -s 20 --duration 4 --warmup 1"     "$E" "$L"
cell "echo 1000 x 16 KiB" "echo -c 1000 -s 16384 --duration 4 --warmup 1"  "$E" "$L"
# Server CPU seconds for the 2 000 handshakes (/2000 = per handshake): the figure that
# does not depend on how promptly a busy machine schedules client and server.
cell "connect 2000"       "connect -c 2000 --connect-concurrency 64"       "handshakes_per_sec,server_cpu_s" "handshakes/s,cpu-s/2000"
cell "idle 5000 held"     "connect -c 5000 --hold 2"                       "per_conn_bytes" "bytes/conn"
