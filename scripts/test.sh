#!/usr/bin/env bash
# The whole test suite, on a clean machine: installs what the tests need (Python
# `websockets` + pytest, Node `ws` + `playwright-core`, Debian's chromium and
# redis-server, which the backplane tests start on a free port), then runs
# the Rust unit, property, conformance, hostile and interop tests (every target, even
# after one fails) and the doctests, the Python and Node interop tests and the browser
# tests, and a 2-minute soak (scripts/soak.sh). Exits non-zero if anything fails; the
# summary names each failing group and each failing Rust test target.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

step() { printf '\n==> %s\n' "$*"; }
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi

step "installing test dependencies"
if ! command -v chromium >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
# The TLS interop tests make their certificate with the openssl CLI (scripts/test-cert.sh).
if ! command -v openssl >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq openssl >/dev/null
fi
if ! command -v redis-server >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi
python3 -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt 2>&1 \
  | grep -v -i "running pip as the 'root' user" || true
(cd tests/node && npm ci --no-audit --no-fund --loglevel=error)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

step "cargo build (the binaries the Python, Node and browser tests start)"
cargo build --bins --locked
export WSLOOP_BIN="$ROOT/target/debug/wsloop"

failed=0
passed=0
failures=()
run() {
  step "$*"
  if "$@"; then
    passed=$((passed + 1))
  else
    echo "FAILED: $*" >&2
    failed=$((failed + 1))
    failures+=("$*")
  fi
}

# Every Rust test target runs even when one fails (--no-fail-fast); the summary names
# each failing target, from cargo's own list.
cargo_tests() {
  local log="$ROOT/target/test-cargo.log"
  # Run as an `if` condition by `run`, so a failure here does not end the script.
  cargo test --locked --all-targets --no-fail-fast 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  if [ "$rc" != 0 ]; then
    # cargo ends with "error: N targets failed:" and one "`--test name`" line each.
    local t
    while read -r t; do failures+=("cargo test $t"); done < <(
      sed -n '/targets\? failed:/,$p' "$log" | grep -o '`[^`]*`' | tr -d '`')
  fi
  return "$rc"
}

run cargo_tests
run cargo test --locked --doc
# Two minutes of soak on the debug binaries built above (churn, faults, fd/RSS baselines;
# scripts/soak.sh for the criteria); its samples, plot and client logs stay in target/soak/ci.
run env SOAK_PROFILE=debug SOAK_NO_BUILD=1 SOAK_OUT="$ROOT/target/soak/ci" scripts/soak.sh 120s
if [ -f tests/python/test_interop.py ]; then
  run python3 -m pytest -q tests/python
fi
node_tests=(tests/node/*.test.mjs)
if [ -e "${node_tests[0]}" ]; then
  run node --test --test-concurrency=1 "${node_tests[@]}"
fi

echo
echo "groups: $passed passed, $failed failed"
for f in "${failures[@]}"; do
  echo "  failed: $f"
done
[ "$failed" -eq 0 ]
