#!/usr/bin/env bash
# permessage-deflate figures for BENCHMARKS.md, release binaries:
#
#   scripts/deflate.sh echo [ROUNDS]     echo msgs/s, server CPU per message and bytes on the
#                                        wire, without and with --deflate (shared, and dedicated
#                                        = context takeover), 1 KiB and 16 KiB JSON-like text;
#                                        the variants alternate within each round
#   scripts/deflate.sh memory [CONNS]    server RSS per idle and per active connection (CONNS,
#                                        default 1000) without deflate, shared and dedicated
#   scripts/deflate.sh broadcast [ROUNDS] chat deliveries/s without and with --deflate
#
# Server pinned to core 0 (--threads 1), wsload to core 1, as scripts/ab.sh does.
# WSLOOP_BIN / WSLOAD_BIN override the binaries.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=${WSLOOP_BIN:-$ROOT/target/release/wsloop}
L=${WSLOAD_BIN:-$ROOT/target/release/wsload}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

PID=""
PORT=""
start() { # MODE SERVER_FLAGS...
  local out; out=$(mktemp)
  taskset -c 0 "$B" "$1" --listen 127.0.0.1:0 --no-www --threads 1 "${@:2}" >"$out" 2>/dev/null &
  PID=$!
  for _ in $(seq 100); do grep -q listening "$out" && break; sleep 0.05; done
  PORT=$(sed -n 's/.*listening on .*:\([0-9]*\)$/\1/p' "$out")
  rm -f "$out"
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; }
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$PID/status"; }
field() { python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print(" ".join(str(d.get(k)) for k in sys.argv[1:]))' "$@"; }

# The three variants: name | server flags | wsload flags.
VARIANTS=(
  "off||"
  "shared|--deflate|--deflate"
  "dedicated|--deflate --deflate-context-takeover|--deflate --deflate-context-takeover"
)

echo_cells() {
  local rounds=${1:-3}
  for size in 1024 16384; do
    local rows=()
    for r in $(seq "$rounds"); do
      for v in "${VARIANTS[@]}"; do
        IFS='|' read -r name sflags lflags <<<"$v"
        # shellcheck disable=SC2086 # flag lists
        start echo $sflags
        # shellcheck disable=SC2086
        line=$(taskset -c 1 "$L" echo --url "ws://127.0.0.1:$PORT/" -q -c 100 -s "$size" --json \
          --duration 4 --warmup 1 --server-pid "$PID" $lflags | tail -1 |
          field msgs_per_sec server_cpu_s_per_million_msgs wire_in_per_msg wire_out_per_msg errors)
        stop
        echo "echo $size $name round $r: $line" >&2
        rows+=("$name $line")
      done
    done
    python3 - "$size" "${rows[@]}" <<'PY'
import statistics, sys
size = sys.argv[1]
by = {}
for row in sys.argv[2:]:
    name, mps, cpu, win, wout, err = row.split()
    by.setdefault(name, []).append((float(mps), float(cpu), float(win), float(wout), int(err)))
base = by["off"]
med = lambda xs, i: statistics.median(x[i] for x in xs)
for name, xs in by.items():
    print(f"echo {size:>5} B {name:9} msgs/s {[int(x[0]) for x in xs]} median {med(xs,0):9.0f} "
          f"({med(xs,0)/med(base,0):.2f}x)  server µs/msg {med(xs,1):6.2f} ({med(xs,1)/med(base,1):.2f}x)  "
          f"wire in {med(xs,2):7.1f} B/msg out {med(xs,3):7.1f} B/msg  errors {sum(x[4] for x in xs)}")
PY
  done
}

memory_cells() {
  local n=${1:-1000}
  for v in "${VARIANTS[@]}"; do
    IFS='|' read -r name sflags lflags <<<"$v"
    # Idle: n connections opened (deflate agreed) and held.
    # shellcheck disable=SC2086
    start echo $sflags
    sleep 0.3
    local r0; r0=$(rss)
    # shellcheck disable=SC2086
    idle=$(taskset -c 1 "$L" connect --url "ws://127.0.0.1:$PORT/" -q -c "$n" --hold 2 \
      --server-pid "$PID" $lflags | tail -1 | field server_rss_held_kb errors)
    stop
    # Active: n connections each echoing 1 KiB JSON-like messages, RSS read mid-run.
    # shellcheck disable=SC2086
    start echo $sflags
    sleep 0.3
    local a0; a0=$(rss)
    # shellcheck disable=SC2086
    taskset -c 1 "$L" echo --url "ws://127.0.0.1:$PORT/" -q -c "$n" -s 1024 --json \
      --duration 4 --warmup 1 $lflags >/tmp/deflate-active.$$ &
    local lp=$!
    sleep 4
    local a1; a1=$(rss)
    wait $lp
    local aerr; aerr=$(tail -1 /tmp/deflate-active.$$ | field msgs errors)
    rm -f /tmp/deflate-active.$$
    stop
    python3 - "$name" "$n" "$r0" "$idle" "$a0" "$a1" "$aerr" <<'PY'
import sys
name, n, r0, idle, a0, a1, aerr = sys.argv[1:]
n = int(n); held, ierr = idle.split()
msgs, aerr_n = aerr.split()
print(f"memory {name:9} idle {(int(held)-int(r0))*1024/n:8.0f} B/conn (errors {ierr})  "
      f"active {(int(a1)-int(a0))*1024/n:8.0f} B/conn ({msgs} echoes, errors {aerr_n})")
PY
  done
}

broadcast_cells() {
  local rounds=${1:-3}
  local rows=()
  for r in $(seq "$rounds"); do
    for v in "off||" "shared|--deflate|--deflate"; do
      IFS='|' read -r name sflags lflags <<<"$v"
      # shellcheck disable=SC2086
      start chat $sflags
      # shellcheck disable=SC2086
      line=$(taskset -c 1 "$L" broadcast --url "ws://127.0.0.1:$PORT/" -q --subscribers 100 \
        --publishers 4 -s 1024 --json --duration 4 --warmup 1 --server-pid "$PID" $lflags |
        tail -1 | field deliveries_per_sec server_cpu_s_per_million_msgs wire_in_per_msg errors)
      stop
      echo "broadcast $name round $r: $line" >&2
      rows+=("$name $line")
    done
  done
  python3 - "${rows[@]}" <<'PY'
import statistics, sys
by = {}
for row in sys.argv[1:]:
    name, dps, cpu, win, err = row.split()
    by.setdefault(name, []).append((float(dps), float(cpu), float(win), int(err)))
med = lambda xs, i: statistics.median(x[i] for x in xs)
for name, xs in by.items():
    print(f"broadcast 1 KiB {name:7} deliveries/s {[int(x[0]) for x in xs]} median {med(xs,0):9.0f} "
          f"({med(xs,0)/med(by['off'],0):.2f}x)  server µs/delivery {med(xs,1):6.2f}  "
          f"wire in {med(xs,2):6.1f} B/delivery  errors {sum(x[3] for x in xs)}")
PY
}

case "${1:-}" in
  echo) echo_cells "${2:-3}" ;;
  memory) memory_cells "${2:-1000}" ;;
  broadcast) broadcast_cells "${2:-3}" ;;
  *) sed -n '2,13p' "$0"; exit 2 ;;
esac
