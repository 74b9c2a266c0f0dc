#!/usr/bin/env python3
"""Pass criteria of a soak run (scripts/soak.sh), printed one per line; exit 1 if any fails.

    soak_check.py OUTDIR

Reads OUTDIR/samples.csv (periodic rows have phase "run"; checkpoints are "idle" before
any load, "steady" once the load is up, "wave<N>" after each churn wave has settled,
"final" after every client is gone) and the clients' JSON results (OUTDIR/*.json, the
last stdout line of each wsload run, with its exit code in OUTDIR/*.rc).
"""
import csv
import glob
import json
import os
import sys

# Bounds, stated once (BENCHMARKS.md quotes them).
FD_SLACK_AFTER_WAVE = 64       # churn in flight: workers, slow readers, parked half-opens
RSS_SLACK_AFTER_WAVE_KB = 8 * 1024
FD_SLACK_FINAL = 2
RSS_SLACK_FINAL_KB = 8 * 1024     # allocator and slab capacity kept from the peak
TREND_BOUND_KB = 2 * 1024      # RSS growth the last half's trend may explain ...
TREND_BOUND_FRACTION = 0.05    # ... or this fraction of the mean RSS, whichever is larger;
TREND_BOUND_SHORT_KB = 4 * 1024  # a last half under 5 minutes (a handful of samples, where
                                 # traffic buffered at sample time is most of the slope)
ITER_P99_BOUND_MS = 50.0


def load(outdir):
    with open(os.path.join(outdir, "samples.csv")) as f:
        rows = list(csv.DictReader(f))
    clients = {}
    for path in sorted(glob.glob(os.path.join(outdir, "*.json"))):
        name = os.path.basename(path)[:-5]
        if name.startswith("hist_"):
            continue
        rc_path = os.path.join(outdir, name + ".rc")
        rc = int(open(rc_path).read().strip() or -1) if os.path.exists(rc_path) else -1
        try:
            with open(path) as f:
                lines = [l for l in f.read().splitlines() if l.startswith("{")]
            data = json.loads(lines[-1]) if lines else {}
        except (OSError, ValueError):
            data = {}
        clients[name] = (rc, data)
    return rows, clients


def slope(points):
    """Least-squares slope of y over x."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return 0.0 if sxx == 0 else sum((x - mx) * (y - my) for x, y in points) / sxx


def main():
    outdir = sys.argv[1]
    rows, clients = load(outdir)
    results = []

    def check(name, ok, detail):
        results.append(ok)
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")

    by_phase = {}
    for r in rows:
        by_phase.setdefault(r["phase"], []).append(r)
    idle, steady = by_phase["idle"][0], by_phase["steady"][0]
    final = by_phase.get("final", [None])[-1]

    # 1. Nothing lost or corrupted, every client clean.
    for name, (rc, data) in sorted(clients.items()):
        errors = data.get("errors", data.get("broken", "?"))
        if isinstance(errors, list):
            errors = data.get("broken", len(errors))
        detail = f"exit {rc}, errors {errors}"
        for key in ("connections", "msgs", "messages_verified", "http", "clean", "rst", "refused",
                    "half_parked", "half_closed_by_server", "burst_open", "burst_refused"):
            if key in data:
                detail += f", {key} {data[key]}"
        if data.get("errors") and isinstance(data["errors"], list):
            detail += f", first: {data['errors'][:2]}"
        check(f"client {name}", rc == 0 and errors in (0, "0"), detail)

    # 2. Slow readers were dropped by the server's backpressure policy.
    churn = clients.get("churn", (None, {}))[1]
    if churn.get("slow_started", 0) > 0:
        dropped = churn.get("slow_dropped_1008", 0) + churn.get("slow_dropped_other", 0)
        # The server's own count says it was its backpressure policy that closed them.
        server_closed = int(final["slow_closed"]) if final else -1
        check("slow readers dropped", dropped >= 1 and churn.get("slow_not_dropped", 0) == 0
              and server_closed >= dropped,
              f"{churn['slow_started']} started, {churn.get('slow_dropped_1008', 0)} saw close 1008, "
              f"{churn.get('slow_dropped_other', 0)} found closed (the 1008 frame queued behind "
              f"unsent data), {churn.get('slow_not_dropped', 0)} still open; server closed "
              f"{server_closed} slow subscribers")

    # 3. Back to the steady baseline after each churn wave.
    s_rss, s_fds = int(steady["rss_kb"]), int(steady["fds"])
    for w in sorted(p for p in by_phase if p.startswith("wave")):
        r = by_phase[w][-1]
        rss, fds = int(r["rss_kb"]), int(r["fds"])
        check(f"{w} back to baseline",
              fds <= s_fds + FD_SLACK_AFTER_WAVE and rss <= s_rss + RSS_SLACK_AFTER_WAVE_KB,
              f"fds {fds} (steady {s_fds}, bound +{FD_SLACK_AFTER_WAVE}), RSS {rss} KiB "
              f"(steady {s_rss}, bound +{RSS_SLACK_AFTER_WAVE_KB})")

    # 4. At the end, with every client gone: nothing open, nothing buffered, fds and RSS
    #    back to the idle baseline.
    if final is None:
        check("final sample", False, "missing")
    else:
        rss, fds = int(final["rss_kb"]), int(final["fds"])
        i_rss, i_fds = int(idle["rss_kb"]), int(idle["fds"])
        # The scrape's own connection is the one left open.
        check("final: connections and buffers empty",
              final["connections"] == "1" and final["buffered_bytes"] == "0",
              f"connections {final['connections']} (the scrape itself), "
              f"buffered {final['buffered_bytes']} bytes")
        check("final: fds back to idle", abs(fds - i_fds) <= FD_SLACK_FINAL,
              f"{fds} (idle {i_fds}, bound ±{FD_SLACK_FINAL})")
        check("final: RSS back to idle", rss <= i_rss + RSS_SLACK_FINAL_KB,
              f"{rss} KiB (idle {i_rss}, bound +{RSS_SLACK_FINAL_KB}; peak "
              f"{max(int(r['rss_kb']) for r in rows)})")
        p99 = float(final["iter_p99_ms"])
        check("loop iteration p99 over the run",
              p99 <= ITER_P99_BOUND_MS and int(final["iterations"]) > 0,
              f"≤ {p99:g} ms (bucket bound; limit {ITER_P99_BOUND_MS:g} ms; "
              f"slowest bucket {final['iter_max_bucket_ms']} ms; {final['iterations']} iterations)")

    # 5. No growth trend: RSS over the last half of the periodic samples.
    run = [(float(r["t_s"]), int(r["rss_kb"])) for r in by_phase.get("run", [])]
    if len(run) >= 4:
        t_end = run[-1][0]
        t_mid = run[0][0] + (t_end - run[0][0]) / 2
        half = [p for p in run if p[0] >= t_mid]
        k = slope(half)
        span = half[-1][0] - half[0][0]
        growth = k * span
        mean = sum(y for _, y in half) / len(half)
        bound = max(TREND_BOUND_KB, TREND_BOUND_FRACTION * mean)
        if span < 300:
            bound = max(bound, TREND_BOUND_SHORT_KB)
        fd_k = slope([(float(r["t_s"]), int(r["fds"])) for r in by_phase["run"]
                      if float(r["t_s"]) >= t_mid])
        check("no RSS growth trend over the last half", growth <= bound,
              f"slope {k * 60:+.1f} KiB/min over {span:.0f} s = {growth:+.0f} KiB "
              f"(bound {bound:.0f} KiB); fd slope {fd_k * 60:+.2f}/min; {len(half)} samples")
    else:
        check("no RSS growth trend over the last half", False, f"only {len(run)} samples")

    print(f"\nsoak: {'PASSED' if all(results) else 'FAILED'} "
          f"({sum(results)}/{len(results)} criteria)")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
