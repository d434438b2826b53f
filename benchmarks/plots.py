"""Plots of the benchmark results (matplotlib, PNG, written next to the JSON they come from).

  suite_<mode>_replay.png     replay time against epochs replayed, per workload: florc with 1
                              and 2 workers, FlorDB, retraining and the physical floor, for the
                              epoch-level and the batch-level statement
  checkpoint_overhead.png     record overhead against the overhead budget, per workload
                              (from results/checkpoint.json, bench_checkpoint.py's output)

Usage: python benchmarks/plots.py   (re-draws every plot whose JSON exists)
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SERIES = [  # (key in a hindsight cell, label, style)
    ("florc_1w_s", "florc, 1 worker", "o-"),
    ("florc_2w_s", "florc, 2 workers", "s-"),
    ("flordb_s", "FlorDB", "^--"),
    ("floor_s", "physical floor", "k:"),
]


def suite_plots(result: dict, stem: Path) -> list[Path]:
    works = result["workloads"]
    if not works:
        return []
    levels = ("epoch", "batch")
    fig, axes = plt.subplots(
        len(levels), len(works), figsize=(3.6 * len(works), 3.2 * len(levels)), squeeze=False
    )
    for col, (name, w) in enumerate(works.items()):
        for row, level in enumerate(levels):
            ax, per = axes[row][col], w["hindsight"][level]
            cells = [per[r] for r in ("one", "half", "all") if r in per]
            xs = [c["epochs"] for c in cells]
            for key, label, style in SERIES:
                pts = [(x, c.get(key)) for x, c in zip(xs, cells) if c.get(key) is not None]
                if pts:
                    ax.plot(*zip(*pts), style, label=label, markersize=4)
            if per.get("retrain_s"):
                ax.axhline(per["retrain_s"], color="tab:red", lw=1, label="retrain (plain run)")
            ax.set_title(f"{name}: {level} statement", fontsize=9)
            ax.set_xlabel("epochs replayed", fontsize=8)
            ax.set_ylabel("seconds", fontsize=8)
            ax.set_ylim(bottom=0)
            ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"Hindsight replay time ({result['mode']} run)", fontsize=10)
    fig.tight_layout()
    path = stem.with_name(stem.name + "_replay.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def checkpoint_plot(data: dict, path: Path) -> Path | None:
    summary = data.get("summary")
    if not summary:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for name, w in summary.items():
        pts = sorted(
            (v["budget"], v["overhead"]) for v in w["variants"].values() if v["budget"] > 0
        )
        if pts:
            ax.plot([b * 100 for b, _ in pts], [o * 100 for _, o in pts], "o-", label=name)
    top = max(b for w in summary.values() for v in w["variants"].values() for b in [v["budget"]])
    ax.plot([0, top * 100], [0, top * 100], "k:", label="budget (overhead = budget)")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("overhead budget (%)")
    ax.set_ylabel("measured record overhead (%)")
    ax.set_title("Record overhead vs budget (median wall clock)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    for mode in ("quick", "full"):
        src = RESULTS / f"suite_{mode}.json"
        if src.exists():
            for p in suite_plots(json.loads(src.read_text()), RESULTS / f"suite_{mode}"):
                print(f"wrote {p}")
    src = RESULTS / "checkpoint.json"
    if src.exists():
        p = checkpoint_plot(json.loads(src.read_text()), RESULTS / "checkpoint_overhead.png")
        if p:
            print(f"wrote {p}")


if __name__ == "__main__":
    main()
