#!/usr/bin/env bash
# wsloop against the peer servers in peers/, same machine, same load generator.
#
#   scripts/compare.sh [--runs 3] [--quick] [--out DIR] [--no-build]
#
# Builds the peers (peers/build.sh) and wsloop, then RUNS times (at least 3), alternating
# servers within each run (run 1: every cell on every server, run 2: again, ...):
#   echo       100, 1 000, 10 000 connections × 20 B, 1 KiB, 16 KiB, one message in flight:
#              wsloop echo, tokio-tungstenite-echo, fastwebsockets-echo, node-ws-echo
#   broadcast  wsloop chat vs node-ws-chat, 4 publishers, 100 and 1 000 subscribers
#   idle       1 000 held connections (connect --hold): memory per connection, every echo server
# Each server is pinned to core 0 and wsload to core 1; a fresh server per cell and run.
# Each cell: 1 s warmup + 5 s measured (--quick: 0.5 s + 2 s, hold 2 s).
# Prints and writes compare.md (medians, wsloop/peer ratios for msgs/s, server CPU µs
# per message and memory per connection), results.jsonl and compare.png under
# results/compare-<timestamp>/ (or --out DIR).
#
# Environment: WSLOOP_BIN (default target/release/wsloop), WSLOOP_ARGS, WSLOAD_ARGS, WSLOAD_BIN,
# PEERS_DIR (default peers/), SERVER_CORE (0), LOAD_CORE (1),
# SERVERS (space-separated subset of the echo servers), CHAT_SERVERS.
set -euo pipefail
# shellcheck source=scripts/lib/bench.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/bench.sh"

RUNS=3
QUICK=0
BUILD=1
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS="${2:?--runs needs a number}"; shift ;;
    --runs=*) RUNS="${1#--runs=}" ;;
    --quick) QUICK=1 ;;
    --no-build) BUILD=0 ;;
    --out) OUT="${2:?--out needs a directory}"; shift ;;
    --out=*) OUT="${1#--out=}" ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
  shift
done
[[ "$RUNS" =~ ^[0-9]+$ ]] || die "--runs must be a number"
if [ "$RUNS" -lt 3 ]; then
  log "note: fewer than 3 runs ($RUNS): medians are not robust"
fi

read -r -a SERVERS <<<"${SERVERS:-wsloop-echo tokio-tungstenite-echo fastwebsockets-echo node-ws-echo}"
read -r -a CHATS <<<"${CHAT_SERVERS:-wsloop-chat node-ws-chat}"

cd "$ROOT"
if [ "$BUILD" = 1 ]; then
  log "peers/build.sh"
  nice -n 10 "$PEERS_DIR/build.sh"
  log "cargo build --release --bins"
  nice -n 10 cargo build --release --bins
fi
start_results compare- 3
log "results in $OUT; servers: ${SERVERS[*]} / ${CHATS[*]}; $RUNS runs"

for run in $(seq 1 "$RUNS"); do
  log "run $run of $RUNS"
  for conns in 100 1000 10000; do
    for size in 20 1024 16384; do
      for server in "${SERVERS[@]}"; do
        run_cell "$run" "echo-c$conns-s$size" "$server" echo --connections "$conns" \
          --inflight 1 --size "$size" "${T[@]}" --source-ips "$SOURCES_A"
      done
    done
  done
  for subs in 100 1000; do
    for server in "${CHATS[@]}"; do
      run_cell "$run" "broadcast-n$subs" "$server" broadcast --subscribers "$subs" \
        --publishers 4 --window 16 --size 64 "${T[@]}" --source-ips "$SOURCES_A" --connect-timeout 60
    done
  done
  for server in "${SERVERS[@]}"; do
    run_cell "$run" "idle-c1000" "$server" connect --connections 1000 --hold "$HOLD" \
      --source-ips "$SOURCES_A"
  done
done

python3 "$ROOT/scripts/tables.py" compare "$OUT/results.jsonl" >"$OUT/compare.md"
if ensure_matplotlib; then
  python3 "$ROOT/scripts/plot.py" "$OUT/results.jsonl" "$OUT/compare.png" || log "plot failed"
fi
cat "$OUT/compare.md"
log "wrote $OUT/compare.md, $OUT/results.jsonl"
