#!/usr/bin/env bash
# Run one benchmark peer in the foreground (exec), listening on ADDR.
#   peers/run.sh NAME [ADDR]
# NAME: tokio-tungstenite-echo | fastwebsockets-echo | node-ws-echo | node-ws-chat
# ADDR defaults to 127.0.0.1:8001; use 127.0.0.1:0 for an ephemeral port. The server
# prints one line `NAME listening on IP:PORT` to stdout once it is accepting.
# Build first with peers/build.sh.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 NAME [ADDR]   (NAME: tokio-tungstenite-echo | fastwebsockets-echo | node-ws-echo | node-ws-chat)" >&2
  exit 2
fi
name="$1"
addr="${2:-127.0.0.1:8001}"

# Load tests open up to ~19k connections: raise the open-file soft limit to the hard
# limit (the Rust peers also do this themselves; node cannot).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

case "$name" in
  tokio-tungstenite-echo|fastwebsockets-echo)
    bin="$here/target/release/$name"
    [ -x "$bin" ] || { echo "$0: $bin not built (run peers/build.sh)" >&2; exit 1; }
    exec "$bin" --listen "$addr"
    ;;
  node-ws-echo|node-ws-chat)
    [ -d "$here/node/node_modules/ws" ] || { echo "$0: peers/node/node_modules missing (run peers/build.sh)" >&2; exit 1; }
    script="$here/node/${name#node-ws-}.mjs"
    exec node "$script" --listen "$addr"
    ;;
  *)
    echo "$0: unknown peer '$name'" >&2
    exit 2
    ;;
esac
