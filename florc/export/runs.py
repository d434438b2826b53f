"""What an export or a plot works on: for each chosen recorded run, its named values (recorded
and replayed) as points of series, with the run's arguments, git commit and script.

A point lies on one of two x axes, each ascending in the order the values were written:

- **epoch**: values written once at the level of an iteration of the main loop (a print after
  the batch loop) and values written outside the main loop. x is the loop's value when the
  loop ran over ascending integers (`for epoch in range(1, 11)`: 1..10), else the iteration's
  index (0, 1, ...); a value written after the loop lies one past the last epoch.
- **step**: values written inside a loop of an iteration (a print in the batch loop) and a
  writer's `add_scalar(tag, value, global_step)`. A writer's value keeps its global_step. A
  value of a step loop lies at `iteration * steps + step`, steps being one more than the
  largest step that series was written at in any epoch of the run: ascending in (epoch, step).

A series is what a tracker calls a tag or a metric: the value's name for a recorded value,
`replay/NAME` for a replayed one (a replayed statement is new code: its values never mix with
what the run itself wrote). Where one name has values on both axes in a run, the step axis's
series is `NAME/step`. Two values of a series at the same x (a statement that printed a name
twice in a step): the last counts. A printed `epoch N` or `step N` equal to the loop's own
epoch or step is the axis itself and is left out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from florc.errors import FlorcError, UsageError
from florc.store.index import Store
from florc.store.selection import run_params, select_runs, shown_params
from florc.store.values import NamedValue, named_values

EPOCH, STEP = "epoch", "step"
REPLAY_PREFIX = "replay/"


def series_name(name: str, source: str) -> str:
    """The tag or metric of a value: NAME recorded, replay/NAME replayed."""
    return name if source == "record" else REPLAY_PREFIX + name


@dataclass(frozen=True)
class Point:
    """One named value placed on its series and axis."""

    series: str  # the tag or metric: NAME, replay/NAME (NAME/step: see the module's docstring)
    name: str  # the value's name as written
    source: str  # record | replay
    replay: int | None  # the replay that computed it
    axis: str  # EPOCH | STEP
    x: int  # where on its axis
    iteration: int | None
    epoch: Any
    step: int | None
    value: float
    wall_time: float  # when its run (the record, or the replay) started


@dataclass
class RunValues:
    """A recorded run and the values it and its replays wrote."""

    run: int
    script: str  # the script's relpath in the project
    started: float
    params: dict[str, str]  # every argument (selection.run_params)
    shown: dict[str, str]  # what the command line gave or differs from the defaults
    commit: str  # the git commit it ran at ("" unknown)
    dirty: bool  # with uncommitted changes
    replays: list[int] = field(default_factory=list)  # the replays whose values are kept
    points: list[Point] = field(default_factory=list)

    @property
    def key(self) -> str:
        """A name for this run that stays the same wherever its store is (script, id and start):
        what the trackers find an earlier export of it by."""
        digest = hashlib.sha1(f"{self.script}\0{self.run}\0{self.started!r}".encode()).hexdigest()
        return f"florc-{self.run}-{digest[:8]}"

    @property
    def label(self) -> str:
        """`run 3 (lr=0.1 epochs=5)`: how a legend or a tracker names it."""
        args = " ".join(f"{k}={v}" for k, v in self.shown.items())
        return f"run {self.run}" + (f" ({args})" if args else "")

    @property
    def sources(self) -> list[str]:
        """Which sources its points have: record, replay, both (in that order)."""
        have = {p.source for p in self.points}
        return [s for s in ("record", "replay") if s in have]

    def names(self) -> list[str]:
        return list(dict.fromkeys(p.name for p in self.points))


def choose(store: Store, spec: str | None, where: list[str] | None) -> list[int]:
    """The recorded runs `spec` and `where` choose (every recorded run when neither is given);
    a UsageError when that is none."""
    chosen = select_runs(store, spec, where)
    if chosen:
        return chosen
    if not store.runs("record"):
        raise UsageError(f"no recorded run in {store.dir}; run `florc record` first")
    what = " ".join([f"--runs {spec}"] * (spec is not None) + [f"--where {w}" for w in where or []])
    raise UsageError(f"no recorded run matches {what}; `florc runs` lists them")


def gather(store: Store, runs: list[int]) -> list[RunValues]:
    """The chosen recorded runs, ascending, each with its points in ascending x per series."""
    values = named_values(store, runs)
    by_run: dict[int, list[NamedValue]] = {r: [] for r in runs}
    for v in values:
        by_run.setdefault(v.run, []).append(v)
    started = {r["id"]: r["started"] for r in store.runs()}
    out = []
    for run in sorted(by_run):
        meta = store.run(run)
        if meta is None or meta["kind"] != "record":
            raise FlorcError(f"run {run} is not a recorded run; `florc runs` lists them")
        env = meta.get("env", {})
        rv = RunValues(
            run=run,
            script=meta["script"],
            started=meta["started"],
            params=run_params(meta),
            shown=shown_params(meta),
            commit=str(env.get("git_commit") or ""),
            dirty=bool(env.get("git_dirty")),
        )
        epochs = _epoch_axis(store.iterations(run))
        rv.points = _points(by_run[run], epochs, started)
        rv.replays = sorted({p.replay for p in rv.points if p.replay is not None})
        out.append(rv)
    return out


def _epoch_axis(iterations: list[tuple[int, Any]]) -> dict[int | None, int]:
    """iteration -> x on the epoch axis (None: after the loop): the loop's values when they are
    ascending integers, else the iterations' indices."""
    values = [v for _, v in iterations]
    ints = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
    ascending = ints and all(a < b for a, b in zip(values, values[1:]))
    axis: dict[int | None, int] = {i: (v if ascending else i) for i, v in iterations}
    last = max(axis.values(), default=-1)
    axis[None] = last + 1
    return axis


def _is_axis(v: NamedValue) -> bool:
    """A printed `epoch 3` in epoch 3 (or `step 7` at step 7): the axis itself."""
    key = v.epoch if v.name == "epoch" else v.step if v.name == "step" else None
    return isinstance(key, (int, float)) and not isinstance(key, bool) and key == v.value


def _points(
    values: list[NamedValue], epochs: dict[int | None, int], started: dict[int, float]
) -> list[Point]:
    def epoch_x(iteration: int | None) -> int:
        if iteration in epochs:
            return epochs[iteration]
        return iteration if iteration is not None else epochs[None]  # not a recorded one

    kept = [v for v in values if not _is_axis(v)]
    # steps per epoch of each step-loop series: one more than its largest step
    steps: dict[str, int] = {}
    for v in kept:
        if v.step is not None and not v.writer:
            name = series_name(v.name, v.source)
            steps[name] = max(steps.get(name, 0), v.step + 1)
    placed: list[tuple[str, str, int, NamedValue]] = []
    for v in kept:
        base = series_name(v.name, v.source)
        if v.step is None:
            placed.append((base, EPOCH, epoch_x(v.iteration), v))
        elif v.writer:
            placed.append((base, STEP, v.step, v))
        else:
            x = max(0, v.iteration or 0) * steps[base] + v.step
            placed.append((base, STEP, x, v))
    both = {b for b, a, _, _ in placed if a == EPOCH} & {b for b, a, _, _ in placed if a == STEP}
    latest: dict[tuple[str, int], Point] = {}
    for base, axis, x, v in placed:
        series = f"{base}/step" if axis == STEP and base in both else base
        latest[(series, x)] = Point(
            series=series,
            name=v.name,
            source=v.source,
            replay=v.replay,
            axis=axis,
            x=x,
            iteration=v.iteration,
            epoch=v.epoch,
            step=v.step,
            value=v.value,
            wall_time=started.get(v.replay if v.replay is not None else v.run, 0.0),
        )
    return sorted(latest.values(), key=lambda p: (p.series, p.x))


def missing_extra(what: str, extra: str) -> FlorcError:
    """The error for an optional library that is not installed."""
    return FlorcError(f"{what} is not installed: pip install 'florc[{extra}]'")
