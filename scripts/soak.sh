#!/usr/bin/env bash
# Soak: one wsloop (demo mode: /echo, /chat, static files, /metrics; several loops) under
# mixed load for the whole duration, with faults, sampled every 10 s; prints the pass
# criteria at the end and exits nonzero if any fails.
#
#   scripts/soak.sh [DURATION]      DURATION: 600 (seconds), 120s, 10m, 1h (default 10m)
#
# Load (wsload, all verifying every byte they get):
#   echo       40 connections, 2 messages in flight each, every echo compared
#   broadcast  4 publishers + 20 subscribers on /chat at SOAK_RATE publishes/s of 1 KiB,
#              per-publisher sequence checks (loss, duplicates, reordering, damage)
#   churn      clean closes, TCP resets mid-exchange, half-open heads (FIN, RST, abandoned:
#              the server must close those by its handshake timeout), pipelined plain HTTP
#              with a chunked body, and slow readers the server must drop (backpressure, 1008)
# Churn waves and faults, all in the first half (the second half is for the trend):
#   wave 1: a burst of SOAK_BURST connections past the server's open-file limit (the server
#           runs under `prlimit --nofile=SOAK_NOFILE`), then SIGSTOP/SIGCONT of the echo client
#   wave 2: burst, then SIGSTOP of the server for SOAK_SERVER_STOP seconds
#   wave 3: (runs of 5 min or more) burst, then SIGSTOP/SIGCONT of the broadcast client
# After each wave settles, fds and RSS must be back near the steady baseline; at the end,
# with every client gone, back to the idle baseline (bounds in scripts/soak_check.py).
#
# Environment: SOAK_OUT (output dir, default target/soak/<time>), SOAK_THREADS (loops, 2),
# SOAK_NOFILE (1024), SOAK_BURST (NOFILE + 200), SOAK_RATE (400), SOAK_PROFILE (release),
# SOAK_NO_BUILD=1 (use existing binaries), SOAK_NICE (niceness of server and clients, 10),
# SOAK_DEFLATE=1 (permessage-deflate on server and clients, when both support it),
# SOAK_TLS=1 (TLS on the server and wss clients, when both support it).
# Output: samples.csv, soak.png (if matplotlib is installed), each client's JSON, server.log.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

dur="${1:-10m}"
if [[ "$dur" =~ ^([0-9]+)(s|m|h)?$ ]]; then
    n="${BASH_REMATCH[1]}"
    case "${BASH_REMATCH[2]}" in
        h) secs=$((n * 3600)) ;;
        m) secs=$((n * 60)) ;;
        *) secs=$n ;;
    esac
else
    echo "soak.sh: bad duration '$dur' (e.g. 600, 120s, 10m, 1h)" >&2
    exit 2
fi
if [ "$secs" -lt 60 ]; then
    echo "soak.sh: at least 60 s (the waves and the trend need it)" >&2
    exit 2
fi

out="${SOAK_OUT:-target/soak/$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
threads="${SOAK_THREADS:-2}"
nofile="${SOAK_NOFILE:-1024}"
burst="${SOAK_BURST:-$((nofile + 200))}"
rate="${SOAK_RATE:-400}"
profile="${SOAK_PROFILE:-release}"
niceness="${SOAK_NICE:-10}"
server_stop="${SOAK_SERVER_STOP:-4}"
handshake_timeout=3

if [ -z "${SOAK_NO_BUILD:-}" ]; then
    if [ "$profile" = release ]; then
        cargo build --release --bins --locked
    else
        cargo build --bins --locked
    fi
fi
bin="$root/target/$profile"
wsloop="$bin/wsloop"
wsload="$bin/wsload"

# --- features: say what is on, and why not when asked for but unsupported --------------
server_help="$("$wsloop" --help 2>&1; "$wsloop" demo --help 2>&1 || true)"
echo_help="$("$wsload" echo --help 2>&1 || true)"
bcast_help="$("$wsload" broadcast --help 2>&1 || true)"
server_args=(demo --listen 127.0.0.1:0 --threads "$threads" --metrics --www "$root/www"
    --handshake-timeout "$handshake_timeout" --max-backpressure 256KiB)
echo_args=()
bcast_args=()
scheme=ws
features="loops=$threads metrics=on nofile=$nofile"
if [ "${SOAK_DEFLATE:-0}" = 1 ]; then
    if grep -q -- '--deflate' <<<"$server_help"; then
        server_args+=(--deflate)
        on="server"
        if grep -q -- '--deflate' <<<"$echo_help"; then echo_args+=(--deflate); on+="+echo"; fi
        if grep -q -- '--deflate' <<<"$bcast_help"; then bcast_args+=(--deflate); on+="+broadcast"; fi
        features+=" deflate=on($on)"
    else
        features+=" deflate=off(wsloop has no --deflate)"
    fi
else
    features+=" deflate=off"
fi
if [ "${SOAK_TLS:-0}" = 1 ]; then
    if ! grep -q -- '--tls-cert' <<<"$server_help"; then
        features+=" tls=off(wsloop has no --tls-cert)"
    elif ! grep -qi 'wss' <<<"$echo_help"; then
        features+=" tls=off(wsload cannot speak wss)"
    else
        # A test CA and a leaf for 127.0.0.1 (rustls refuses a self-signed CA as the leaf).
        if [ -x "$root/scripts/test-cert.sh" ]; then
            "$root/scripts/test-cert.sh" "$out/tls"
        else
            mkdir -p "$out/tls"
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
                -subj /CN=localhost -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
                -addext "basicConstraints=critical,CA:FALSE" \
                -keyout "$out/tls/key.pem" -out "$out/tls/cert.pem" 2>/dev/null
            cp "$out/tls/cert.pem" "$out/tls/ca.pem"
        fi
        server_args+=(--tls-cert "$out/tls/cert.pem" --tls-key "$out/tls/key.pem")
        scheme=wss
        for opt in --tls-ca --ca --cafile; do
            if grep -q -- "$opt" <<<"$echo_help"; then
                echo_args+=("$opt" "$out/tls/ca.pem")
                bcast_args+=("$opt" "$out/tls/ca.pem")
                break
            fi
        done
        features+=" tls=on(echo+broadcast over wss; churn, HTTP and slow readers are plain-only, skipped)"
    fi
else
    features+=" tls=off"
fi
echo "soak: ${secs}s, output $out"
echo "soak: $features"
echo "$features" >"$out/features.txt"

# --- server -----------------------------------------------------------------------------
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    if [ -n "${spid:-}" ]; then kill -CONT "$spid" 2>/dev/null || true; kill "$spid" 2>/dev/null || true; fi
    if [ -n "${sampler:-}" ]; then kill "$sampler" 2>/dev/null || true; fi
}
trap cleanup EXIT

RUST_LOG="${RUST_LOG:-warn}" nice -n "$niceness" prlimit --nofile="$nofile:$nofile" -- \
    "$wsloop" "${server_args[@]}" >"$out/server.log" 2>&1 &
spid=$!
addr=""
for _ in $(seq 300); do
    addr="$(sed -n 's/.*listening on \([0-9.]*:[0-9]*\).*/\1/p' "$out/server.log" | head -1)"
    [ -n "$addr" ] && break
    kill -0 "$spid" 2>/dev/null || { cat "$out/server.log" >&2; exit 1; }
    sleep 0.1
done
[ -n "$addr" ] || { echo "soak: server did not start" >&2; exit 1; }
echo "soak: wsloop pid $spid on $addr (open-file limit $(prlimit --nofile --noheadings --output SOFT -p "$spid"))"
metrics="http://$addr/metrics"
curl_tls=()
if [ "$scheme" = wss ]; then
    metrics="https://$addr/metrics"
    export SOAK_CA="$out/tls/ca.pem" # for scripts/soak_sample.py
    curl_tls=(--cacert "$SOAK_CA")
fi

start=$(date +%s)
elapsed() { echo $(($(date +%s) - start)); }
sample() { # PHASE STATEFILE
    python3 "$root/scripts/soak_sample.py" sample "$spid" "$metrics" "$(elapsed)" "$1" "$2" \
        >>"$out/samples.csv"
}
python3 "$root/scripts/soak_sample.py" header >"$out/samples.csv"
sleep 1
sample idle "$out/hist_overall.json"

# --- load -------------------------------------------------------------------------------
load_secs=$((secs - 5))
client() { # NAME ARGS... ; records the pid in $last
    local name="$1"
    shift
    nice -n "$niceness" "$wsload" "$@" >"$out/$name.json" 2>"$out/$name.err" &
    last=$!
    pids+=("$last")
}
client echo echo --url "$scheme://$addr/echo" -c 40 -k 2 -s 256 -w 1 -d "$load_secs" \
    --connect-timeout 60 --deadline $((secs + 120)) --quiet "${echo_args[@]}"
echo_pid=$last
client broadcast broadcast --url "$scheme://$addr/chat" --publishers 4 --subscribers 20 \
    --rate "$rate" -s 1024 -w 1 -d "$load_secs" --connect-timeout 60 \
    --deadline $((secs + 120)) --quiet "${bcast_args[@]}"
bcast_pid=$last
churn_pid=""
if [ "$scheme" = ws ]; then
    client churn churn --url "ws://$addr/" -d "$load_secs" --workers 3 --pause-ms 20 \
        --slow-readers 2 --slow-hold 20 --handshake-timeout "$handshake_timeout"
    churn_pid=$last
fi

(
    while sleep 10; do sample run "$out/hist_periodic.json"; done
) &
sampler=$!

sleep_until() { local t=$1; while [ "$(elapsed)" -lt "$t" ]; do sleep 1; done; }
sleep_until $((secs / 10 > 10 ? secs / 10 : 10))
sample steady "$out/hist_checkpoint.json"
echo "soak: steady at $(elapsed)s: $(tail -1 "$out/samples.csv")"

waves=2
[ "$secs" -ge 300 ] && waves=3
for w in $(seq "$waves"); do
    sleep_until $((secs * (10 + 15 * (w - 1)) / 100 + 5))
    if [ "$scheme" = ws ]; then
        echo "soak: wave $w at $(elapsed)s: burst of $burst connections"
        set +e
        nice -n "$niceness" "$wsload" churn --url "ws://$addr/" --burst "$burst" --burst-hold 3 \
            >"$out/burst$w.json" 2>"$out/burst$w.err"
        echo $? >"$out/burst$w.rc"
        set -e
    else
        echo "soak: wave $w at $(elapsed)s: no burst (wsload churn speaks plain ws only)"
    fi
    case $w in
        1) victim=$echo_pid; what="echo client" ;;
        2) victim=$spid; what="server" ;;
        *) victim=$bcast_pid; what="broadcast client" ;;
    esac
    pause=5
    [ "$victim" = "$spid" ] && pause=$server_stop
    echo "soak: SIGSTOP $what for ${pause}s"
    kill -STOP "$victim"
    sleep "$pause"
    kill -CONT "$victim"
    sleep $((handshake_timeout + 6))
    sample "wave$w" "$out/hist_checkpoint.json"
    echo "soak: after wave $w at $(elapsed)s: $(tail -1 "$out/samples.csv")"
done

# --- end --------------------------------------------------------------------------------
for name in echo broadcast churn; do
    eval "p=\${${name/broadcast/bcast}_pid:-}"
    [ -z "$p" ] && continue
    set +e
    wait "$p"
    echo $? >"$out/$name.rc"
    set -e
done
pids=()
echo "soak: clients done at $(elapsed)s; waiting for the server to settle"
for _ in $(seq 60); do
    c="$(curl -s "${curl_tls[@]}" "$metrics" | awk '$1 == "wsloop_connections_open" {print $2}')"
    [ "$c" = 1 ] && break # the scrape itself
    sleep 1
done
sleep 2
sample final "$out/hist_overall.json"
kill "$sampler" 2>/dev/null || true
sampler=""
kill -TERM "$spid"
wait "$spid" || true
spid=""

if python3 -c 'import matplotlib' 2>/dev/null; then
    python3 "$root/scripts/soak_plot.py" "$out/samples.csv" "$out/soak.png" "$features" || true
else
    echo "soak: no matplotlib, no plot (pip install matplotlib)"
fi
echo
echo "soak: $features"
python3 "$root/scripts/soak_check.py" "$out"
