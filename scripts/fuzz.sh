#!/usr/bin/env bash
# Runs each cargo-fuzz target for a bounded time and exits nonzero if any target crashes
# (a panic in a check, an ASan report, a timeout or OOM).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 60 s, all targets)
#
# Works on stable Rust: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass `-Zsanitizer=address`. Set
# FUZZ_SANITIZER=none to build without ASan (faster, but catches only panics), and
# FUZZ_JOBS to run that many libFuzzer processes per target (default 1).
# New corpus entries go to fuzz/target/corpus/<target>/ (ignored by git); the checked-in
# seeds in fuzz/corpus/<target>/ are only read. Crash inputs land in fuzz/artifacts/<target>/.
set -euo pipefail

secs="${1:-60}"
shift || true
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(decoder handshake http1 deflate_negotiate deflate_inflate resp)
fi
sanitizer="${FUZZ_SANITIZER:-address}"
jobs="${FUZZ_JOBS:-1}"
export RUSTC_BOOTSTRAP=1

failed=()
for t in "${targets[@]}"; do
    work="target/corpus/$t"
    mkdir -p "$work" "artifacts/$t"
    echo "=== fuzz $t: ${secs}s, sanitizer=$sanitizer, jobs=$jobs ==="
    args=(-max_total_time="$secs" -timeout=10 -print_final_stats=1)
    if [ "$jobs" -gt 1 ]; then
        args+=(-jobs="$jobs" -workers="$jobs")
    fi
    if cargo fuzz run -O --sanitizer "$sanitizer" "$t" "$work" "corpus/$t" -- "${args[@]}"; then
        echo "=== fuzz $t: clean ==="
    else
        echo "=== fuzz $t: FAILED (build error, or a crash input in fuzz/artifacts/$t/) ===" >&2
        failed+=("$t")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: crashes in: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz.sh: all targets ran clean"
