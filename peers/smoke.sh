#!/usr/bin/env bash
# Smoke-test all four peers: start each on 127.0.0.1:0, read the real port from its
# "NAME listening on IP:PORT" line, run smoke.mjs against it, then stop it.
#   peers/smoke.sh [--build]     (--build runs peers/build.sh first)
# Exits nonzero if any peer fails. Every wait is bounded; loopback only.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [ "${1:-}" = "--build" ]; then
  "$here/build.sh" || { echo "smoke.sh: build failed" >&2; exit 1; }
fi

tmp="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

passed=0
failed=0

# smoke_one NAME MODE [smoke.mjs args...]
smoke_one() {
  local name="$1" mode="$2"; shift 2
  local out="$tmp/$name.out" err="$tmp/$name.err" line="" port=""
  echo "== $name"
  "$here/run.sh" "$name" 127.0.0.1:0 >"$out" 2>"$err" &
  server_pid=$!
  # Wait up to 10 s for the listening line.
  for _ in $(seq 1 100); do
    line="$(head -n 1 "$out" 2>/dev/null)"
    [ -n "$line" ] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  if [[ "$line" =~ ^"$name listening on "127\.0\.0\.1:([0-9]+)$ ]] && [ "${BASH_REMATCH[1]}" != 0 ]; then
    port="${BASH_REMATCH[1]}"
    echo "  ok   stdout: $line"
    if timeout 40 node "$here/smoke.mjs" "$mode" "ws://127.0.0.1:$port/" "$@"; then
      passed=$((passed + 1))
    else
      echo "FAIL $name: smoke.mjs failed"
      failed=$((failed + 1))
    fi
    if [ "$(wc -l <"$out")" -ne 1 ]; then
      echo "FAIL $name: expected exactly one stdout line, got:"; sed 's/^/    /' "$out"
      failed=$((failed + 1)); passed=$((passed - 1))
    fi
  else
    echo "FAIL $name: no valid listening line within 10 s (got: '${line}')"
    sed 's/^/    stderr: /' "$err"
    failed=$((failed + 1))
  fi
  kill "$server_pid" 2>/dev/null
  wait "$server_pid" 2>/dev/null
  server_pid=""
}

smoke_one tokio-tungstenite-echo echo
smoke_one fastwebsockets-echo echo
smoke_one node-ws-echo echo
smoke_one node-ws-chat chat --fresh

echo "peers smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
