#!/usr/bin/env python3
"""Markdown tables from wsload results (one JSON object per line, as written by
scripts/loadtest.sh and scripts/compare.sh).

    tables.py loadtest results.jsonl   > results.md
    tables.py compare  results.jsonl   > compare.md
"""

import json
import statistics
import sys
from collections import defaultdict

ECHO_SERVERS = ["wsloop-echo", "tokio-tungstenite-echo", "fastwebsockets-echo", "node-ws-echo"]
CHAT_SERVERS = ["wsloop-chat", "node-ws-chat"]
SHORT = {
    "wsloop-echo": "wsloop",
    "wsloop-chat": "wsloop",
    "tokio-tungstenite-echo": "tokio-tungstenite",
    "fastwebsockets-echo": "fastwebsockets",
    "node-ws-echo": "node ws",
    "node-ws-chat": "node ws",
}


def load(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def num(v, fmt="{:,.0f}"):
    return "–" if v is None else fmt.format(v)


def size_name(s):
    if s is None:
        return "–"
    if s >= 1024 and s % 1024 == 0:
        return f"{s // 1024} KiB"
    return f"{s} B"


def lat(d, q):
    return (d.get("latency_us") or {}).get(q)


def errs(d):
    e = d.get("errors")
    if e is None:
        return "did not run" if d.get("error") else "–"
    if e == 0:
        return "0"
    kinds = ", ".join(f"{k} {v}" for k, v in (d.get("error_kinds") or {}).items())
    return f"**{e}** ({kinds})"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def loadtest(rows):
    out = ["# wsloop load test", ""]
    first = rows[0] if rows else {}
    out.append(f"Server pinned to one core, wsload (1 thread) pinned to another; fresh server per cell. "
               f"Measured window {num(first.get('duration_s'), '{:.1f}')} s per cell.")
    out.append("")
    echo = [d for d in rows if d.get("scenario") == "echo"]
    if echo:
        out += ["## Echo", ""]
        out.append(table(
            ["connections", "in flight", "size", "msgs/s", "payload MB/s", "p50 µs", "p99 µs", "p99.9 µs",
             "server CPU %", "server CPU µs/msg", "wsload CPU %", "wsload CPU µs/msg", "other CPU %", "errors"],
            [[num(d.get("connections")), d.get("inflight"), size_name(d.get("size")), num(d.get("msgs_per_sec")),
              num((d.get("bytes_per_sec") or 0) / 1e6, "{:,.1f}"), num(lat(d, "p50"), "{:,.1f}"),
              num(lat(d, "p99"), "{:,.1f}"), num(lat(d, "p999"), "{:,.1f}"),
              num(d.get("server_cpu_pct"), "{:.0f}"), num(d.get("server_cpu_s_per_million_msgs"), "{:.2f}"),
              num(d.get("client_cpu_pct"), "{:.0f}"), num(d.get("client_cpu_s_per_million_msgs"), "{:.2f}"),
              num(d.get("other_cpu_pct"), "{:.0f}"), errs(d)] for d in echo]))
        out.append("")
        out.append("CPU: utime+stime from /proc/PID/stat over the measured window (% of one core; per message "
                   "= CPU seconds per million messages). *other CPU*: what other processes on the machine used "
                   "meanwhile; above ~20 % the cell is disturbed.")
        out.append("")
    bc = [d for d in rows if d.get("scenario") == "broadcast"]
    if bc:
        out += ["## Broadcast (chat)", ""]
        out.append(table(
            ["subscribers", "publishers", "size", "publishes/s", "deliveries/s", "p50 µs", "p99 µs", "p99.9 µs",
             "server CPU %", "server CPU µs/delivery", "errors"],
            [[num(d.get("subscribers")), d.get("publishers"), size_name(d.get("size")),
              num(d.get("publishes_per_sec")), num(d.get("deliveries_per_sec")), num(lat(d, "p50"), "{:,.1f}"),
              num(lat(d, "p99"), "{:,.1f}"), num(lat(d, "p999"), "{:,.1f}"), num(d.get("server_cpu_pct"), "{:.0f}"),
              num(d.get("server_cpu_s_per_million_msgs"), "{:.3f}"), errs(d)] for d in bc]))
        out.append("")
    idle = [d for d in rows if d.get("scenario") == "connect"]
    if idle:
        out += ["## Idle connections (memory)", ""]
        out.append(table(
            ["connections", "wsload processes", "handshakes/s", "server RSS before", "server RSS held",
             "bytes per connection", "answered final ping", "errors"],
            [[num(d.get("requested_connections")), d.get("processes", 1), num(d.get("handshakes_per_sec")),
              num(d.get("server_rss_before_kb"), "{:,} kB"), num(d.get("server_rss_held_kb"), "{:,} kB"),
              num(d.get("per_conn_bytes")), f"{num(d.get('answered'))} / {num(d.get('held'))}", errs(d)]
             for d in idle]))
        out.append("")
    return "\n".join(out)


def median(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def ratio(a, b):
    if a is None or b in (None, 0):
        return "–"
    r = a / b
    return f"{r:.2f}×" if r >= 0.1 else f"{r:.2g}×"


def compare(rows):
    by = defaultdict(list)
    for d in rows:
        by[(d.get("cell"), d.get("server"))].append(d)
    runs = max((d.get("run", 1) for d in rows), default=0)
    out = ["# wsloop vs other servers", "",
           f"Medians of {runs} runs per cell; servers alternate within each run; each server pinned to "
           "one core, wsload (1 thread) to another; fresh server per run.", ""]

    def cells(prefix):
        seen = []
        for d in rows:
            c = d.get("cell", "")
            if c.startswith(prefix) and c not in seen:
                seen.append(c)
        return seen

    def cell_label(c):
        d = next(x for x in rows if x.get("cell") == c)
        if d.get("scenario") == "echo":
            return f"{num(d.get('requested_connections'))} × {size_name(d.get('size'))}"
        if d.get("scenario") == "broadcast":
            return f"{num(d.get('subscribers'))} subscribers"
        return f"{num(d.get('requested_connections'))} conns"

    def section(title, prefix, servers, metric, fmt, better, ratios=True):
        cs = cells(prefix)
        if not cs:
            return
        base = servers[0]
        peers = servers[1:] if ratios else []
        header = ["cell"] + [SHORT[s] for s in servers] + [f"wsloop/{SHORT[p]}" for p in peers]
        body = []
        for c in cs:
            med = {s: median(metric(d) for d in by.get((c, s), [])) for s in servers}
            errors = {s: sum((d.get("errors") or 0) for d in by.get((c, s), [])) for s in servers}
            cells_txt = []
            for s in servers:
                t = num(med[s], fmt)
                if errors[s]:
                    t += f" ({errors[s]} err)"
                cells_txt.append(t)
            body.append([cell_label(c)] + cells_txt + [ratio(med[base], med[p]) for p in peers])
        out.extend([f"## {title}", "", f"({better})", "", table(header, body), ""])

    section("Echo throughput, msgs/s", "echo-", ECHO_SERVERS, lambda d: d.get("msgs_per_sec"),
            "{:,.0f}", "higher is better; ratio > 1 means wsloop is faster")
    section("Server CPU per message, µs", "echo-", ECHO_SERVERS,
            lambda d: d.get("server_cpu_s_per_million_msgs"), "{:.2f}",
            "CPU seconds per million messages = µs per message; lower is better; ratio < 1 means wsloop is cheaper")
    section("Echo latency p99, µs", "echo-", ECHO_SERVERS, lambda d: lat(d, "p99"), "{:,.0f}",
            "lower is better")
    section("wsload CPU per message, µs (load generator check)", "echo-", ECHO_SERVERS,
            lambda d: d.get("client_cpu_s_per_million_msgs"), "{:.2f}",
            "wsload's own cost against each server; below the server's CPU per message means "
            "wsload was not the bottleneck", ratios=False)
    section("Broadcast deliveries/s", "broadcast-", CHAT_SERVERS, lambda d: d.get("deliveries_per_sec"),
            "{:,.0f}", "higher is better")
    section("Idle memory per connection, bytes", "idle-", ECHO_SERVERS, lambda d: d.get("per_conn_bytes"),
            "{:,.0f}", "server RSS growth / held connections; lower is better")
    return "\n".join(out)


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("loadtest", "compare"):
        sys.exit(__doc__)
    rows = load(sys.argv[2])
    print(loadtest(rows) if sys.argv[1] == "loadtest" else compare(rows))


if __name__ == "__main__":
    main()
