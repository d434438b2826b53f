"""`florc plot NAME`: one value over the epochs of the chosen runs, as a PNG (matplotlib).

One colour per run; recorded values a solid line, replayed ones a dashed line with markers.
The x axis is the epoch axis of runs.py (the loop's value, or the iteration's index); a value
written only inside the epochs (a batch-level print, a writer's add_scalar) is drawn over the
step axis instead. Values written outside the main loop are left out. The legend names each
run with the arguments its command line gave.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from florc.errors import UsageError
from florc.export.runs import EPOCH, STEP, Point, RunValues, missing_extra

RECORDED_STYLE: dict[str, Any] = {"linestyle": "-", "marker": ".", "linewidth": 1.6}
LABEL_WIDTH = 40
REPLAYED_STYLE: dict[str, Any] = {
    "linestyle": "--",
    "marker": "o",
    "markersize": 4,
    "linewidth": 1.6,
}


@dataclass
class PlotResult:
    path: str  # the picture written
    name: str
    axis: str  # epoch | step
    runs: list[int] = field(default_factory=list)  # the runs drawn
    points: int = 0
    sources: list[str] = field(default_factory=list)  # record, replay: what was drawn


def _matches(p: Point, name: str) -> bool:
    return p.name == name or p.series == name


def plot(runs: list[RunValues], name: str, out: Path) -> PlotResult:
    try:
        from matplotlib import colormaps
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise missing_extra("matplotlib", "plot") from None
    chosen = {rv.run: [p for p in rv.points if _matches(p, name)] for rv in runs}
    if not any(chosen.values()):
        names = sorted({p.name for rv in runs for p in rv.points})
        which = ", ".join(str(rv.run) for rv in runs)
        there = ", ".join(names) if names else "none"
        raise UsageError(
            f"no values named {name!r} in run{'s' if len(runs) != 1 else ''} {which} "
            f"(names there: {there}); `florc logs --format csv` shows them"
        )
    axis = EPOCH if any(p.axis == EPOCH for ps in chosen.values() for p in ps) else STEP
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colours = colormaps["tab10"]
    result = PlotResult(str(out), name, axis)
    labels = _labels([rv for rv in runs if chosen[rv.run]])
    for i, rv in enumerate(runs):
        pts = [
            p
            for p in chosen[rv.run]
            if p.axis == axis and not (axis == EPOCH and p.iteration is None)
        ]
        if not pts:
            continue
        result.runs.append(rv.run)
        for source, style, word in (
            ("record", RECORDED_STYLE, "recorded"),
            ("replay", REPLAYED_STYLE, "replayed"),
        ):
            line = sorted((p.x, p.value) for p in pts if p.source == source)
            if not line:
                continue
            xs, ys = zip(*line)
            ax.plot(xs, ys, color=colours(i % 10), label=f"{labels[rv.run]}, {word}", **style)
            result.points += len(line)
            if source not in result.sources:
                result.sources.append(source)
    if not result.runs:
        raise UsageError(
            f"the values named {name!r} were written outside the main loop only: "
            "nothing to draw over epochs"
        )
    scripts = sorted({rv.script for rv in runs if rv.run in result.runs})
    ax.set_title(f"{name} — {', '.join(scripts)}")
    ax.set_xlabel(axis)
    ax.set_ylabel(name)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    if axis == EPOCH:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    return result


def _labels(runs: list[RunValues]) -> dict[int, str]:
    """`run 3 (lr=0.1)`: each run with the arguments that tell it from the others drawn (those
    its command line gave where none differ)."""
    keys = list(dict.fromkeys(k for rv in runs for k in rv.params))
    differ = [k for k in keys if len({rv.params.get(k) for rv in runs}) > 1]
    out = {}
    for rv in runs:
        args = {k: rv.params[k] for k in differ if k in rv.params} if differ else rv.shown
        text = " ".join(f"{k}={v}" for k, v in args.items())
        if len(text) > LABEL_WIDTH:
            text = text[: LABEL_WIDTH - 1].rstrip() + "…"
        out[rv.run] = f"run {rv.run}" + (f" ({text})" if text else "")
    return out
