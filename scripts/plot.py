#!/usr/bin/env python3
"""Plot echo msgs/s by connection count, one line per payload size (K = 1 cells).

    plot.py results.jsonl out.png

With several servers in the file (scripts/compare.sh), draws one panel per payload size
with a line per server (medians over runs).
"""

import json
import statistics
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def size_name(s):
    return f"{s // 1024} KiB" if s >= 1024 and s % 1024 == 0 else f"{s} B"


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1], encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    echo = [d for d in rows if d.get("scenario") == "echo" and d.get("inflight") == 1
            and d.get("msgs_per_sec") is not None]
    if not echo:
        sys.exit("no echo results to plot")
    servers = list(dict.fromkeys(d.get("server") or d.get("label") or "server" for d in echo))
    sizes = sorted({d["size"] for d in echo})
    pts = defaultdict(list)  # (server, size, conns) -> [msgs/s]
    for d in echo:
        pts[(d.get("server") or d.get("label") or "server", d["size"], d["requested_connections"])].append(
            d["msgs_per_sec"])

    def series(server, size):
        xs = sorted(c for (sv, sz, c) in pts if sv == server and sz == size)
        return xs, [statistics.median(pts[(server, size, c)]) for c in xs]

    if len(servers) == 1:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for size in sizes:
            xs, ys = series(servers[0], size)
            ax.plot(xs, ys, marker="o", label=size_name(size))
        axes = [ax]
        ax.set_title(f"{servers[0]}: echo, 1 message in flight per connection")
        ax.legend(title="payload")
    else:
        fig, axes = plt.subplots(1, len(sizes), figsize=(5 * len(sizes), 4.5), sharey=False)
        axes = list(axes) if len(sizes) > 1 else [axes]
        for ax, size in zip(axes, sizes):
            for server in servers:
                xs, ys = series(server, size)
                if xs:
                    ax.plot(xs, ys, marker="o", label=server)
            ax.set_title(f"echo {size_name(size)}, 1 in flight")
            ax.legend(fontsize="small")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("connections")
        ax.set_ylabel("messages/s")
        ax.set_ylim(bottom=0)
        ax.grid(True, which="both", alpha=0.3)
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)


if __name__ == "__main__":
    main()
