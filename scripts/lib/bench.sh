# Shared helpers for scripts/loadtest.sh and scripts/compare.sh (sourced, not run).
#
# Every cell gets a fresh server pinned to SERVER_CORE (memory readings start clean) and
# wsload pinned to LOAD_CORE; the cell's JSON line (wsload's last stdout line, with
# "cell", "server" and "run" added) is appended to $OUT/results.jsonl.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WSLOOP_BIN="${WSLOOP_BIN:-$ROOT/target/release/wsloop}"
WSLOAD_BIN="${WSLOAD_BIN:-$ROOT/target/release/wsload}"
PEERS_DIR="${PEERS_DIR:-$ROOT/peers}"
SERVER_CORE="${SERVER_CORE:-0}"
LOAD_CORE="${LOAD_CORE:-1}"
# Extra flags for `wsloop echo|chat` (e.g. connection limits) and for every wsload run
# (e.g. --busy-poll).
WSLOOP_ARGS="${WSLOOP_ARGS:-}"
WSLOAD_ARGS="${WSLOAD_ARGS:-}"
# Client source addresses: 8 × ~28k ephemeral ports, enough for any cell and for
# TIME_WAIT left over from earlier cells.
SOURCES_A="127.0.0.2-127.0.0.5"
SOURCES_B="127.0.0.6-127.0.0.9"

SERVER_PID=""
SERVER_ADDR=""
CELL_FAILURES=0

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

raise_fd_limit() {
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  local n; n="$(ulimit -n)"
  if [ "$n" != unlimited ] && [ "$n" -lt 20000 ]; then
    log "note: open-file limit is $n; the 10 000-connection cells need more (19 000 cells use 2 processes)"
  fi
}

# The command line that starts server NAME (listening on 127.0.0.1:0).
server_cmd() {
  case "$1" in
    wsloop-echo) echo "$WSLOOP_BIN echo --listen 127.0.0.1:0 $WSLOOP_ARGS" ;;
    wsloop-chat) echo "$WSLOOP_BIN chat --listen 127.0.0.1:0 $WSLOOP_ARGS" ;;
    tokio-tungstenite-echo|fastwebsockets-echo|node-ws-echo|node-ws-chat)
      echo "$PEERS_DIR/run.sh $1 127.0.0.1:0" ;;
    *) die "unknown server $1" ;;
  esac
}

# start_server NAME LOGPREFIX: starts it pinned, waits for "listening on IP:PORT".
# Sets SERVER_PID and SERVER_ADDR.
start_server() {
  local name="$1" logp="$2" cmd
  cmd="$(server_cmd "$name")"
  # shellcheck disable=SC2086 # word splitting of the command line is intended
  taskset -c "$SERVER_CORE" $cmd >"$logp.server.out" 2>"$logp.server.err" &
  SERVER_PID=$!
  local i line
  for i in $(seq 1 100); do
    if line="$(grep -m1 'listening on ' "$logp.server.out" 2>/dev/null)"; then
      SERVER_ADDR="${line##*listening on }"
      return 0
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      log "server $name exited: $(tail -3 "$logp.server.err" 2>/dev/null)"
      SERVER_PID=""
      return 1
    fi
    sleep 0.1
  done
  log "server $name did not report 'listening on' within 10 s"
  stop_server
  return 1
}

stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  local i
  for i in $(seq 1 30); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

# Appends wsload's JSON line from FILE to results.jsonl with cell/server/run fields.
record() {
  local file="$1" cell="$2" server="$3" run="$4"
  python3 - "$file" "$cell" "$server" "$run" >>"$OUT/results.jsonl" <<'EOF'
import json, sys
path, cell, server, run = sys.argv[1:5]
lines = [l for l in open(path, encoding="utf-8").read().splitlines() if l.strip()]
try:
    d = json.loads(lines[-1])
except (IndexError, ValueError):
    d = {"errors": None, "error": "no JSON from wsload"}
d.update(cell=cell, server=server, run=int(run))
print(json.dumps(d))
EOF
}

# run_cell RUN CELL SERVER SCENARIO ARGS...: fresh server, one wsload run, record.
run_cell() {
  local run="$1" cell="$2" server="$3"; shift 3
  local logp="$OUT/cells/$cell.$server.run$run"
  if ! start_server "$server" "$logp"; then
    CELL_FAILURES=$((CELL_FAILURES + 1))
    echo '{"errors": null, "error": "server did not start"}' >"$logp.out"
    record "$logp.out" "$cell" "$server" "$run"
    return 0
  fi
  local scenario="$1"; shift
  local rc=0
  # shellcheck disable=SC2086 # WSLOAD_ARGS is a list of flags
  taskset -c "$LOAD_CORE" "$WSLOAD_BIN" "$scenario" --url "ws://$SERVER_ADDR/" \
    --server-pid "$SERVER_PID" --label "$server" --quiet "$@" $WSLOAD_ARGS \
    >"$logp.out" 2>"$logp.err" || rc=$?
  stop_server
  record "$logp.out" "$cell" "$server" "$run"
  summarize "$OUT/results.jsonl" "$rc"
}

# run_hold_split RUN CELL SERVER N HOLD: N idle connections from two wsload processes
# (each is limited to ~20 000 fds), memory per connection from the server's RSS before
# connecting and with all N held.
run_hold_split() {
  local run="$1" cell="$2" server="$3" n="$4" hold="$5"
  local logp="$OUT/cells/$cell.$server.run$run"
  if ! start_server "$server" "$logp"; then
    CELL_FAILURES=$((CELL_FAILURES + 1))
    echo '{"errors": null, "error": "server did not start"}' >"$logp.out"
    record "$logp.out" "$cell" "$server" "$run"
    return 0
  fi
  local before half=$((n / 2)) rc1=0 rc2=0 p1 p2
  before="$(awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status")"
  taskset -c "$LOAD_CORE" "$WSLOAD_BIN" connect --url "ws://$SERVER_ADDR/" \
    --server-pid "$SERVER_PID" --label "$server" --quiet --connections "$half" \
    --hold "$hold" --source-ips "$SOURCES_A" >"$logp.p1.out" 2>"$logp.p1.err" &
  p1=$!
  taskset -c "$LOAD_CORE" "$WSLOAD_BIN" connect --url "ws://$SERVER_ADDR/" \
    --server-pid "$SERVER_PID" --label "$server" --quiet --connections "$((n - half))" \
    --hold "$hold" --source-ips "$SOURCES_B" >"$logp.p2.out" 2>"$logp.p2.err" &
  p2=$!
  wait "$p1" || rc1=$?
  wait "$p2" || rc2=$?
  stop_server
  python3 - "$logp.p1.out" "$logp.p2.out" "$before" "$n" >"$logp.out" <<'EOF'
import json, sys
a, b = (json.loads(open(p, encoding="utf-8").read().strip().splitlines()[-1]) for p in sys.argv[1:3])
before, n = int(sys.argv[3]), int(sys.argv[4])
held = (a.get("held") or 0) + (b.get("held") or 0)
rss = max(a.get("server_rss_held_kb") or 0, b.get("server_rss_held_kb") or 0)
codes = dict(a.get("close_codes") or {})
for k, v in (b.get("close_codes") or {}).items():
    codes[k] = codes.get(k, 0) + v
kinds = dict(a.get("error_kinds") or {})
for k, v in (b.get("error_kinds") or {}).items():
    kinds[k] = kinds.get(k, 0) + v
out = dict(a)
out.update(
    processes=2,
    requested_connections=n,
    connections=(a.get("connections") or 0) + (b.get("connections") or 0),
    held=held,
    answered=(a.get("answered") or 0) + (b.get("answered") or 0),
    msgs=(a.get("msgs") or 0) + (b.get("msgs") or 0),
    handshakes_per_sec=(a.get("handshakes_per_sec") or 0) + (b.get("handshakes_per_sec") or 0),
    errors=(a.get("errors") or 0) + (b.get("errors") or 0),
    error_kinds=kinds,
    close_codes=codes,
    server_rss_before_kb=before,
    server_rss_held_kb=rss,
    server_rss_delta_kb=rss - before,
    per_conn_bytes=(rss - before) * 1024 / held if held else None,
)
print(json.dumps(out))
EOF
  record "$logp.out" "$cell" "$server" "$run"
  summarize "$OUT/results.jsonl" "$((rc1 | rc2))"
}

# One line per finished cell on stderr.
summarize() {
  python3 - "$1" "$2" <<'EOF' >&2
import json, sys
d = json.loads(open(sys.argv[1], encoding="utf-8").read().strip().splitlines()[-1])
rc = sys.argv[2]
def f(v, fmt="{:,.0f}"):
    return "-" if v is None else fmt.format(v)
lat = d.get("latency_us") or {}
extra = ""
if d.get("per_conn_bytes") is not None:
    extra = f"  per-conn {f(d['per_conn_bytes'])} B  held {d.get('held')}/{d.get('requested_connections')}"
elif d.get("deliveries_per_sec") is not None:
    extra = f"  deliveries/s {f(d['deliveries_per_sec'])}"
print(f"  {d.get('cell')} {d.get('server')} run {d.get('run')}: {f(d.get('msgs_per_sec'))} msgs/s"
      f"  p99 {f(lat.get('p99'), '{:,.1f}')} us  server CPU {f(d.get('server_cpu_pct'), '{:.0f}')}%"
      f"  wsload CPU {f(d.get('client_cpu_pct'), '{:.0f}')}%  other CPU {f(d.get('other_cpu_pct'), '{:.0f}')}%"
      f"{extra}  errors {d.get('errors')}"
      + ("" if rc == "0" else f"  (wsload exit {rc})") + (f"  [{d['error']}]" if d.get("error") else ""))
EOF
}

ensure_matplotlib() {
  python3 -c 'import matplotlib' 2>/dev/null && return 0
  log "installing matplotlib (pip install --quiet matplotlib)"
  pip install --quiet matplotlib >/dev/null 2>&1 || python3 -m pip install --quiet matplotlib >/dev/null 2>&1 || true
  python3 -c 'import matplotlib' 2>/dev/null
}

cleanup_server() { stop_server; }

# After the build: checks the binaries, raises the fd limit, creates $OUT (default
# results/<PREFIX><timestamp>/) and sets the cell timing T=(...) and HOLD (seconds: $2 in a
# full run, 2 with --quick). Reads QUICK and OUT.
start_results() {
  [ -x "$WSLOAD_BIN" ] || die "$WSLOAD_BIN not built"
  [ -x "${WSLOOP_BIN%% *}" ] || die "$WSLOOP_BIN not found (set WSLOOP_BIN to stand in)"
  raise_fd_limit
  OUT="${OUT:-$ROOT/results/$1$(date +%Y%m%d-%H%M%S)}"
  mkdir -p "$OUT/cells"
  : >"$OUT/results.jsonl"
  trap cleanup_server EXIT INT TERM
  if [ "$QUICK" = 1 ]; then
    T=(--warmup 0.5 --duration 2); HOLD=2
  else
    T=(--warmup 1 --duration 5); HOLD="$2"
  fi
}
