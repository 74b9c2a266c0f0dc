#!/usr/bin/env bash
# Side-by-side comparison that a busy machine cannot blur: the instructions each server
# binary executes (user space, valgrind's callgrind `Collected` total, start-up and
# shutdown included) for a fixed amount of work, alternating base and new.
#
#   scripts/ab_instr.sh BASE_WSLOOP NEW_WSLOOP [ROUNDS]
#
# Cells: echo, 10 connections x 20 B, 200 000 echoes; broadcast (chat), 4 publishers x
# 100 subscribers, 20 000 publishes (2.08 M deliveries). Server --threads 1 under
# callgrind, wsload (release) native. Kernel work (most of the CPU per message, see
# "Reading the numbers") is not counted: this checks the code we run, not the syscalls.
# Loop iterations depend on timing, so counts move by a few tenths of a percent run to run.
set -euo pipefail
BASE=${1:?base binary}; NEW=${2:?new binary}; ROUNDS=${3:-2}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WSLOAD=${WSLOAD_BIN:-$ROOT/target/release/wsload}
command -v valgrind >/dev/null || { echo "valgrind missing (apt-get install valgrind)" >&2; exit 1; }
ir() { # BIN MODE WSLOAD_ARGS -> instructions
  local bin=$1 mode=$2 extra=$3 out cg pid port
  out=$(mktemp); cg=$(mktemp)
  valgrind --tool=callgrind --callgrind-out-file="$cg" "$bin" "$mode" --listen 127.0.0.1:0 --no-www --threads 1 >"$out" 2>"$out.err" & pid=$!
  for _ in $(seq 600); do grep -q listening "$out" && break; sleep 0.1; done
  port=$(sed -n 's/.*:\([0-9]*\)$/\1/p' "$out")
  # shellcheck disable=SC2086
  "$WSLOAD" $extra --url "ws://127.0.0.1:$port/" -q --deadline 600 >/dev/null || echo "wsload reported errors" >&2
  kill -TERM $pid; wait $pid || true
  sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$out.err"
  rm -f "$out" "$out.err" "$cg"
}
for cell in "echo|echo -c 10 -s 20 --messages 200000 --warmup 0" "chat|broadcast --subscribers 100 --publishers 4 --messages 20000 --warmup 0"; do
  mode=${cell%%|*}; extra=${cell#*|}; b=(); n=()
  for _ in $(seq "$ROUNDS"); do b+=("$(ir "$BASE" "$mode" "$extra")"); n+=("$(ir "$NEW" "$mode" "$extra")"); done
  python3 -c 'import statistics as s, sys
m, b, n = sys.argv[1], list(map(int, sys.argv[2].split())), list(map(int, sys.argv[3].split()))
print(f"{m:5} instructions  base {b} new {n}  median new/base = {s.median(n)/s.median(b):.4f}")' "$mode" "${b[*]}" "${n[*]}"
done
