#!/usr/bin/env python3
"""One soak sample of a running wsloop: RSS and open fds from /proc, and from /metrics
(Prometheus text) the open connections, buffered bytes and the loop-iteration histogram.

    soak_sample.py header
    soak_sample.py sample PID METRICS_URL T_SECONDS PHASE [PREV_HIST_JSON]

`sample` prints one CSV row; the iteration p99 is over the iterations since the previous
sample (whose cumulative histogram is kept in PREV_HIST_JSON, a file this rewrites).
"""
import json
import os
import ssl
import sys
import urllib.request

COLUMNS = [
    "t_s", "phase", "rss_kb", "fds", "connections", "buffered_bytes",
    "iterations", "iter_p99_ms", "iter_max_bucket_ms", "slow_closed", "dropped_sends",
]


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def scrape(url):
    """Process-wide samples (no `loop` label) as {name: value} and the iteration histogram
    as [(le_seconds, cumulative)]."""
    ctx = None
    if url.startswith("https:"):
        # SOAK_CA: the test CA the server's certificate chains to (soak.sh with SOAK_TLS=1).
        ctx = ssl.create_default_context(cafile=os.environ.get("SOAK_CA"))
    with urllib.request.urlopen(url, timeout=10, context=ctx) as r:
        text = r.read().decode()
    values, hist = {}, []
    for line in text.splitlines():
        if not line or line.startswith("#") or 'loop="' in line:
            continue
        name, _, value = line.rpartition(" ")
        if name.startswith("wsloop_iteration_duration_seconds_bucket"):
            le = name.split('le="')[1].split('"')[0]
            hist.append((float("inf") if le == "+Inf" else float(le), int(float(value))))
        elif "{" not in name:
            values[name] = float(value)
    hist.sort()
    return values, hist


def quantile(hist_delta, q):
    """Upper bound (seconds) of the bucket holding quantile q of a cumulative histogram."""
    total = hist_delta[-1][1] if hist_delta else 0
    if total == 0:
        return 0.0, 0.0
    want = q * total
    p = next(le for le, c in hist_delta if c >= want)
    top = next(le for le, c in hist_delta if c >= total)
    return p, top


def delta(now, prev):
    if not prev or len(prev) != len(now):
        return now
    return [(le, c - pc) for (le, c), (_, pc) in zip(now, prev)]


def main():
    if sys.argv[1] == "header":
        print(",".join(COLUMNS))
        return
    pid, url, t, phase = sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5]
    state = sys.argv[6] if len(sys.argv) > 6 else None
    prev = None
    if state and os.path.exists(state):
        with open(state) as f:
            prev = [tuple(x) for x in json.load(f)]
    try:
        values, hist = scrape(url)
    except OSError:
        values, hist = {}, []
    d = delta(hist, prev)
    p99, top = quantile(d, 0.99)
    if state and hist:
        with open(state, "w") as f:
            json.dump(hist, f)

    def ms(s):
        return "inf" if s == float("inf") else f"{s * 1000:.3f}"

    row = [
        f"{t:.1f}", phase, str(rss_kb(pid)), str(fds(pid)),
        str(int(values.get("wsloop_connections_open", -1))),
        str(int(values.get("wsloop_buffered_bytes", -1))),
        str(d[-1][1] if d else 0), ms(p99), ms(top),
        str(int(values.get("wsloop_slow_subscribers_closed_total", -1))),
        str(int(values.get("wsloop_dropped_sends_total", -1))),
    ]
    print(",".join(row))


if __name__ == "__main__":
    main()
