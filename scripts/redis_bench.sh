#!/usr/bin/env bash
# Cross-instance broadcast through Redis against a single instance, side by side.
#
#   scripts/redis_bench.sh [ROUNDS]
#
# Starts redis-server on a free port, one plain `wsloop chat` (S) and two joined with
# `--redis` (A, B), each with --threads 1, unpinned. Per cell (4 publishers, 100
# subscribers, 64-byte text, 4 s after 1 s warm-up) and round it runs
#   single: publishers and subscribers on S      (wsload --url S --subscriber-url S)
#   cross:  publishers on A, subscribers on B    (wsload --url A --subscriber-url B)
# so both count deliveries and latency at the subscribers only. For the cross runs it also
# reads Redis's CPU time (/proc/<pid>/stat utime+stime) and PUBLISH calls (INFO
# commandstats) around the run: Redis CPU per PUBLISH, per message Redis writes (each
# publish goes to the 2 subscribed instances, A's copy being its own echo, dropped there)
# and per WebSocket delivery (100 per publish at B). Prints one line per run and the
# median ratios cross/single. WSLOOP_BIN / WSLOAD_BIN override the release binaries.
set -euo pipefail
ROUNDS=${1:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=${WSLOOP_BIN:-$ROOT/target/release/wsloop}; L=${WSLOAD_BIN:-$ROOT/target/release/wsload}
command -v redis-server >/dev/null || { echo "redis-server missing (apt-get install redis-server)" >&2; exit 1; }
TMP=$(mktemp -d); PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$TMP"' EXIT

RPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$TMP" >/dev/null & RPID=$!; PIDS+=($RPID)
for _ in $(seq 100); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.05; done

start() { # NAME ARGS... -> sets port in $TMP/NAME.port
  local name=$1; shift
  "$B" chat --listen 127.0.0.1:0 --no-www --threads 1 "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" & PIDS+=($!)
  echo $! >"$TMP/$name.pid"
  for _ in $(seq 100); do grep -q listening "$TMP/$name.out" && break; sleep 0.05; done
  sed -n 's/.*:\([0-9]*\)$/\1/p' "$TMP/$name.out"
}
S=$(start s); A=$(start a --redis "redis://127.0.0.1:$RPORT/"); BB=$(start b --redis "redis://127.0.0.1:$RPORT/")
ticks() { awk '{print $14+$15}' "/proc/$RPID/stat"; }
calls() { redis-cli -p "$RPORT" info commandstats | sed -n 's/^cmdstat_publish:calls=\([0-9]*\),.*/\1/p' | tr -d '\r' | grep . || echo 0; }
HZ=$(getconf CLK_TCK)

run() { # KIND PUB_PORT SUB_PORT RATE_ARGS -> one result line
  local kind=$1 pp=$2 sp=$3 rate=$4 t0 c0 json
  t0=$(ticks); c0=$(calls)
  # shellcheck disable=SC2086
  json=$("$L" broadcast --subscribers 100 --publishers 4 --size 64 $rate --duration 4 --warmup 1 --threads 1 \
    --url "ws://127.0.0.1:$pp/" --subscriber-url "ws://127.0.0.1:$sp/" -q | tail -1) || true  # exit 1 = errors, reported below
  python3 - "$kind" "$rate" "$json" "$(( $(ticks) - t0 ))" "$(( $(calls) - c0 ))" "$HZ" <<'PY'
import json, sys
kind, rate, d, dt, dc, hz = sys.argv[1], sys.argv[2].replace("--rate ", "") or "flat-out", json.loads(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
lat = d["latency_us"]
cpu = ""
if kind == "cross" and dc:
    s = dt / hz
    cpu = f"redis_cpu_us/publish={s/dc*1e6:.2f} /redis_msg={s/dc/2*1e6:.2f} /ws_delivery={s/dc/100*1e9:.1f}ns publishes={dc}"
print(f"{kind:6} {rate:>8} deliveries/s={int(d['deliveries_per_sec'])} p50_us={lat['p50']} p99_us={lat['p99']} errors={d.get('errors')} missing={d.get('missing')} {cpu}")
PY
}
echo "# redis-server $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p'), $(nproc) cores, ROUNDS=$ROUNDS"
IFS=, read -ra cells <<<"${CELLS:---rate 1000,--rate 5000,--rate 20000,flat}"  # CELLS="--rate 2000,flat" to choose
for cell in "${cells[@]}"; do
  rate=$cell; [ "$rate" = flat ] && rate=""
  for _ in $(seq "$ROUNDS"); do
    run single "$S" "$S" "$rate"
    run cross "$A" "$BB" "$rate"
  done
done | tee "$TMP/all.txt"
python3 - "$TMP/all.txt" <<'PY'
import re, statistics, sys, collections
cells = collections.defaultdict(lambda: collections.defaultdict(list))
for line in open(sys.argv[1]):
    kind, rate = line.split()[:2]
    for k in ("deliveries/s", "p50_us", "p99_us"):
        cells[rate][(kind, k)].append(float(re.search(re.escape(k) + r"=([\d.]+)", line).group(1)))
print("\n# medians: cell (publishes/s offered), single -> cross (cross/single)")
for rate, v in cells.items():
    parts = []
    for k in ("deliveries/s", "p50_us", "p99_us"):
        s, c = statistics.median(v[("single", k)]), statistics.median(v[("cross", k)])
        parts.append(f"{k} {s:.0f} -> {c:.0f} ({c/s:.2f})")
    print(f"{rate:>12}: " + "; ".join(parts))
PY
