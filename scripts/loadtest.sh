#!/usr/bin/env bash
# wsloop's standard load matrix, measured with wsload.
#
#   scripts/loadtest.sh [--quick] [--out DIR] [--no-build]
#
# Builds release binaries, then for every cell starts a fresh `wsloop echo|chat` pinned
# to core 0 and runs wsload pinned to core 1:
#   echo        100, 1 000, 10 000 connections × 20 B, 1 KiB, 16 KiB, one message in flight
#   pipelined   1 connection, 100 (and 1 000) messages in flight, 20 B
#   broadcast   wsloop chat, 4 publishers, 100 and 1 000 subscribers, 64 B
#   idle        1 000 and 19 000 held connections (19 000 from two wsload processes:
#               each is limited to 20 000 open files)
# Each cell: 1 s warmup + 5 s measured (--quick: 0.5 s + 2 s). Writes results.jsonl
# (one wsload JSON line per cell), results.md and msgs_per_sec.png under
# results/<timestamp>/ (or --out DIR). Exit status 1 if any cell reported errors.
#
# Environment: WSLOOP_BIN (default target/release/wsloop; any server with
# `echo|chat --listen ADDR` printing "... listening on IP:PORT" can stand in),
# WSLOOP_ARGS (extra server flags), WSLOAD_ARGS (extra wsload flags, e.g. --busy-poll),
# WSLOAD_BIN, SERVER_CORE (0), LOAD_CORE (1).
set -euo pipefail
# shellcheck source=scripts/lib/bench.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/bench.sh"

QUICK=0
BUILD=1
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --no-build) BUILD=0 ;;
    --out) OUT="${2:?--out needs a directory}"; shift ;;
    --out=*) OUT="${1#--out=}" ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
  shift
done

cd "$ROOT"
if [ "$BUILD" = 1 ]; then
  log "cargo build --release --bins"
  nice -n 10 cargo build --release --bins
fi
start_results "" 5
log "results in $OUT"

for conns in 100 1000 10000; do
  for size in 20 1024 16384; do
    run_cell 1 "echo-c$conns-s$size" wsloop-echo echo --connections "$conns" --inflight 1 \
      --size "$size" "${T[@]}" --source-ips "$SOURCES_A"
  done
done
run_cell 1 "pipelined-c1-k100-s20" wsloop-echo echo --connections 1 --inflight 100 --size 20 "${T[@]}"
# K=100 is bound by round-trip wake-ups, not by the server; K=1000 shows more of what
# corking is worth.
run_cell 1 "pipelined-c1-k1000-s20" wsloop-echo echo --connections 1 --inflight 1000 --size 20 "${T[@]}"
for subs in 100 1000; do
  run_cell 1 "broadcast-n$subs" wsloop-chat broadcast --subscribers "$subs" --publishers 4 \
    --window 16 --size 64 "${T[@]}" --source-ips "$SOURCES_A" --connect-timeout 60
done
run_cell 1 "idle-c1000" wsloop-echo connect --connections 1000 --hold "$HOLD" --source-ips "$SOURCES_A"
run_hold_split 1 "idle-c19000" wsloop-echo 19000 "$HOLD"

python3 "$ROOT/scripts/tables.py" loadtest "$OUT/results.jsonl" >"$OUT/results.md"
if ensure_matplotlib; then
  python3 "$ROOT/scripts/plot.py" "$OUT/results.jsonl" "$OUT/msgs_per_sec.png" \
    || log "plot failed"
else
  log "matplotlib unavailable: no plot"
fi
cat "$OUT/results.md"
log "wrote $OUT/results.md, $OUT/results.jsonl, $OUT/msgs_per_sec.png"

errors="$(python3 -c 'import json,sys; print(sum(1 for l in open(sys.argv[1]) if json.loads(l).get("errors") != 0))' "$OUT/results.jsonl")"
if [ "$errors" != 0 ]; then
  log "$errors cell(s) reported errors or did not run; see $OUT/cells/"
  exit 1
fi
