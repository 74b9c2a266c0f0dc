#!/bin/sh
# Pause/resume churn and throughput: wsload broadcast against `wsloop chat` under pace
# and close, many publishers with a big window. Prints deliveries/s and paced counts.
# usage: attack/churn.sh PUBLISHERS WINDOW SIZE [extra wsloop args]
P=$1 W=$2 S=$3; shift 3
cd "$(dirname "$0")/.."
for policy in close pace; do
  PORT=$((20000 + $$ % 20000))
  target/release/wsloop --listen 127.0.0.1:$PORT --metrics --slow-subscriber $policy "$@" chat >/tmp/attack_churn_srv.log 2>&1 &
  SRV=$!
  sleep 0.5
  timeout 60 target/release/wsload broadcast --url ws://127.0.0.1:$PORT/ --subscribers 100 --publishers $P --window $W --size $S --duration 8 --server-pid $SRV -q --json 2>&1 | python3 -c '
import json,sys
t=sys.stdin.read()
try:
  j=json.loads(t[t.index("{"):])
  print({k:j[k] for k in ('deliveries_per_sec','publishes_per_sec','missing','errors','server_rss_kb','server_rss_delta_kb','server_cpu_pct') if k in j})
except Exception as e: print(t[-600:])'
  curl -s http://127.0.0.1:$PORT/metrics | grep -E "^wsloop_(publishers_paced|slow_sub|dropped_sends|mailbox_dropped|congested)" | tr '\n' ' '; echo " [$policy]"
  kill $SRV; wait $SRV 2>/dev/null
done
