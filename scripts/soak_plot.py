#!/usr/bin/env python3
"""Plot a soak's samples (the CSV scripts/soak.py writes) as one PNG: RSS, open fds and threads,
WAL and database size, p50/p99 latency, and the request and run rates, over time.

    python3 scripts/soak_plot.py target/soak/soak.csv [--png target/soak/soak.png] [--checkpoint-mib 32]

The WAL panel draws the size at which the store checkpoints (the CSV's wal_checkpoint_bytes,
or --checkpoint-mib).

Needs matplotlib (pip install matplotlib).
"""

import argparse
import csv
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend is chosen first)


def read(csv_path):
    with open(csv_path, newline="") as file:
        return list(csv.DictReader(file))


def column(rows, key, scale=1.0):
    return [float(r[key]) / scale if r[key] not in ("", None) else float("nan") for r in rows]


def rates(rows, key):
    """Per-second rate of a cumulative counter between consecutive samples."""
    out = [float("nan")]
    for before, after in zip(rows, rows[1:]):
        dt = float(after["t_s"]) - float(before["t_s"])
        out.append((float(after[key]) - float(before[key])) / dt if dt > 0 else float("nan"))
    return out


def plot(csv_path, png_path, checkpoint_bytes=None):
    rows = read(csv_path)
    if not rows:
        print("no samples in %s" % csv_path)
        return
    minutes = column(rows, "t_s", 60.0)
    load_end = max((m for m, r in zip(minutes, rows) if r["phase"] == "load"), default=None)

    fig, axes = plt.subplots(5, 1, figsize=(11, 15), sharex=True)
    fig.suptitle("hookflow soak: %s" % Path(csv_path).resolve(), fontsize=10)

    ax = axes[0]
    ax.plot(minutes, column(rows, "rss_kib", 1024.0), color="tab:blue")
    ax.set_ylabel("RSS (MiB)")
    ax.set_ylim(bottom=0)
    ax.set_title("server memory (VmRSS)", fontsize=10)

    ax = axes[1]
    ax.plot(minutes, column(rows, "fds"), label="open fds", color="tab:orange")
    ax.plot(minutes, column(rows, "threads"), label="threads", color="tab:gray")
    ax.set_ylabel("count")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left")
    ax.set_title("open file descriptors and threads", fontsize=10)

    ax = axes[2]
    wal = column(rows, "wal_bytes", 2**20)
    ax.plot(minutes, wal, label="WAL (-wal file)", color="tab:red")
    if checkpoint_bytes is None and rows[-1].get("wal_checkpoint_bytes"):
        checkpoint_bytes = float(rows[-1]["wal_checkpoint_bytes"])
    top = max(w for w in wal if w == w)
    if checkpoint_bytes:
        ax.axhline(checkpoint_bytes / 2**20, color="tab:red", linestyle="--", linewidth=1,
                   label="WAL checkpoint size (%.0f MiB)" % (checkpoint_bytes / 2**20))
        top = max(top, checkpoint_bytes / 2**20)
    ax.set_ylabel("WAL (MiB)")
    ax.set_ylim(0, top * 1.6 or 1)
    # The database grows with the runs it keeps (pruned after the retention): its own scale.
    db_ax = ax.twinx()
    db_ax.plot(minutes, column(rows, "db_bytes", 2**20), label="database file", color="tab:purple")
    db_ax.set_ylabel("database (MiB)")
    db_ax.set_ylim(bottom=0)
    handles, labels = ax.get_legend_handles_labels()
    db_handles, db_labels = db_ax.get_legend_handles_labels()
    ax.legend(handles + db_handles, labels + db_labels, loc="upper left", ncol=3)
    ax.set_title("SQLite store", fontsize=10)

    ax = axes[3]
    ax.plot(minutes, column(rows, "p99_ms"), label="p99", color="tab:red")
    ax.plot(minutes, column(rows, "p50_ms"), label="p50", color="tab:green")
    if "commit_p99_ms" in rows[0]:
        commit = [float(r["commit_p99_ms"]) if r["commit_p99_ms"] not in ("", "inf") else float("nan")
                  for r in rows]
        ax.plot(minutes, commit, label="store commit p99 (bucket bound)", color="tab:brown",
                drawstyle="steps-mid", linewidth=1)
    ax.set_ylabel("ms")
    ax.set_ylim(bottom=0)
    handles, labels = ax.get_legend_handles_labels()
    if "loadavg" in rows[0]:
        # The machine is shared: its load explains many latency spikes.
        load_ax = ax.twinx()
        load_ax.plot(minutes, column(rows, "loadavg"), label="machine load average (1 min)",
                     color="tab:gray", linestyle=":", linewidth=1)
        load_ax.set_ylabel("load average")
        load_ax.set_ylim(bottom=0)
        more_handles, more_labels = load_ax.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    ax.legend(handles, labels, loc="upper left", ncol=2)
    ax.set_title("webhook answer latency per 10 s window (all kinds, sync included)", fontsize=10)

    ax = axes[4]
    ax.plot(minutes, rates(rows, "answered"), label="answers/s", color="tab:blue")
    finished = [sum(x) for x in zip(*(rates(rows, "runs_" + s) for s in ("succeeded", "failed", "filtered")))]
    ax.plot(minutes, finished, label="runs finished/s", color="tab:green")
    ax.plot(minutes, rates(rows, "retries"), label="retries/s", color="tab:orange")
    ax.plot(minutes, column(rows, "queue_depth"), label="queue depth", color="tab:gray")
    ax.set_ylabel("per second / count")
    ax.set_ylim(bottom=0)
    ax.legend(loc="center left", ncol=4)
    ax.set_title("throughput", fontsize=10)
    ax.set_xlabel("minutes")

    for ax in axes:
        ax.grid(True, alpha=0.3)
        if load_end is not None:
            ax.axvline(load_end, color="black", linestyle=":", linewidth=1)
    if load_end is not None:
        axes[0].annotate("load ends", (load_end, 0), xytext=(-4, 4), textcoords="offset points",
                         ha="right", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(png_path, dpi=80)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description="Plot the samples of scripts/soak.py.")
    parser.add_argument("csv", type=Path, help="the soak's CSV (target/soak/soak.csv)")
    parser.add_argument("--png", type=Path, help="the picture (default: the CSV's name with .png)")
    parser.add_argument("--checkpoint-mib", type=float, help="WAL checkpoint size to draw, in MiB")
    args = parser.parse_args()
    png = args.png or args.csv.with_suffix(".png")
    checkpoint = args.checkpoint_mib * 2**20 if args.checkpoint_mib else None
    plot(args.csv, png, checkpoint)
    print(png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
