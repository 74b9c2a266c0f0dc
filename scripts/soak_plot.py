#!/usr/bin/env python3
"""Plots a soak run's samples (scripts/soak.sh): RSS, open fds, connections, buffered
bytes and loop-iteration p99 over time, with the checkpoints (steady, waves, final) marked.

    soak_plot.py SAMPLES.csv OUT.png [TITLE_SUFFIX]
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    path, png = sys.argv[1], sys.argv[2]
    suffix = sys.argv[3] if len(sys.argv) > 3 else ""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    run = [r for r in rows if r["phase"] in ("run", "idle", "final")]
    marks = [r for r in rows if r["phase"] not in ("run",)]
    t = [float(r["t_s"]) for r in run]

    def col(name, scale=1.0):
        out = []
        for r in run:
            v = r[name]
            out.append(float("nan") if v in ("inf", "-1") else float(v) * scale)
        return out

    panels = [
        ("RSS (MiB)", col("rss_kb", 1 / 1024)),
        ("open fds", col("fds")),
        ("connections", col("connections")),
        ("buffered (KiB)", col("buffered_bytes", 1 / 1024)),
        ("iteration p99 (ms, bucket bound)", col("iter_p99_ms")),
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 11), sharex=True)
    for ax, (label, ys) in zip(axes, panels):
        ax.plot(t, ys, marker=".", linewidth=1)
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        for m in marks:
            ax.axvline(float(m["t_s"]), color="grey", linestyle=":", linewidth=0.8)
    for m in marks:
        axes[0].annotate(m["phase"], (float(m["t_s"]), axes[0].get_ylim()[1]),
                         fontsize=7, rotation=90, va="top", ha="right")
    axes[-1].set_xlabel("seconds")
    fig.suptitle(f"wsloop soak ({t[-1]:.0f} s) {suffix}", fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    print(f"soak: plot in {png}")


if __name__ == "__main__":
    main()
