#!/usr/bin/env bash
# Build every benchmark peer: the Rust echo servers (release) and the Node `ws` servers.
# Idempotent: re-running only rebuilds what changed. Exits nonzero on any failure.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

echo "peers/build.sh: cargo build --release (peers workspace)" >&2
(cd "$here" && cargo build --release --locked)

echo "peers/build.sh: npm (peers/node)" >&2
command -v node >/dev/null || { echo "peers/build.sh: node not found" >&2; exit 1; }
command -v npm >/dev/null || { echo "peers/build.sh: npm not found" >&2; exit 1; }
cd "$here/node"
# `npm ci` reinstalls from scratch; skip it when the installed tree already matches the lock.
if [ -f node_modules/.package-lock.json ] && [ -d node_modules/ws ] \
   && cmp -s <(node -p 'JSON.stringify(require("./package-lock.json").packages["node_modules/ws"].version)') \
             <(node -p 'JSON.stringify(require("./node_modules/ws/package.json").version)'); then
  echo "peers/build.sh: node_modules up to date" >&2
else
  npm ci --no-audit --no-fund
fi
node -e 'require("ws")' >/dev/null
echo "peers/build.sh: ok" >&2
