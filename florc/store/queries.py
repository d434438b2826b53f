"""Reading the store back: the runs, the logged values, and what gc deletes.

These answer `florc runs`, `florc logs`, `florc gc` and `florc.dataframe()`; they return rows as
values and leave presenting them (tables, sizes, dates) to the caller.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from florc.errors import FlorcError, UsageError
from florc.store.index import Store
from florc.store.selection import run_params, select_runs, shown_params
from florc.store.values import NamedValue, named_values

LOG_COLUMNS = ["run", "kind", "statement", "iteration", "epoch", "step", "name", "value", "new"]


@dataclass
class RunRow:
    """One run of the store, as `florc runs` lists it."""

    id: int
    kind: str  # record | replay | verify
    parent: int | None  # the recorded run a replay or verify is of
    script: str
    started: float  # time.time() when it started
    epochs: int  # a record's main-loop iterations; a replay's requested ones
    checkpoints: int  # the checkpoints replay can restore (the start state not counted)
    size: int  # bytes on disk of the blobs its checkpoints use
    status: str  # running | done | partial | failed | interrupted | killed
    faithful: bool  # False: replayed with changes that are not log statements
    params: dict[str, str] = field(default_factory=dict)  # a record's arguments, all of them
    args: str = ""  # the arguments the command line gave or that differ from their defaults
    commit: str = ""  # the git commit it ran at: 8 hex digits, "+dirty" with changes


ARGS_WIDTH = 40


def short_args(params: dict[str, str], width: int = ARGS_WIDTH) -> str:
    """`lr=0.01 epochs=5`, cut at about width characters (with "…")."""
    text = " ".join(f"{k}={v}" for k, v in params.items())
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def commit_text(env: dict[str, Any]) -> str:
    commit = env.get("git_commit") or ""
    if not commit:
        return ""
    return commit[:8] + ("+dirty" if env.get("git_dirty") else "")


def runs(
    store: Store, start_loop: str, spec: str | None = None, where: list[str] | None = None
) -> list[RunRow]:
    """Every run in the store, oldest first; with spec or where, only the recorded runs they
    choose (selection.select_runs) and the replays of those. start_loop: the loop id under
    which record keeps the start state (not a checkpoint the user would count)."""
    chosen: set[int] | None = None
    if spec is not None or where:
        chosen = set(select_runs(store, spec, where))
    out = []
    for r in store.runs():
        if chosen is not None and (r["parent"] if r["kind"] != "record" else r["id"]) not in chosen:
            continue
        meta = r if r["kind"] == "record" else (store.run(r["parent"]) if r["parent"] else r)
        meta = meta or r
        _, distinct = store.run_bytes(r["id"])
        info = r["epochs"] or {}
        out.append(
            RunRow(
                id=r["id"],
                kind=r["kind"],
                parent=r["parent"],
                script=r["script"],
                started=r["started"],
                epochs=len(store.iterations(r["id"]))
                if r["kind"] in ("record", "rank")
                else len(info.get("iterations", [])),
                checkpoints=sum(1 for c in store.checkpoints(r["id"]) if c.loop != start_loop),
                size=distinct,
                status=r["status"],
                faithful=info.get("faithful", True),
                params=run_params(meta),
                args=short_args(shown_params(meta)),
                commit=commit_text(meta.get("env", {})),
            )
        )
    return out


@dataclass
class LogRow:
    """One logged value: recorded, or replayed (new: printed by a statement added since)."""

    run: int
    kind: str
    statement: str  # "relpath:line"
    iteration: int | None
    epoch: Any  # the main loop's value in that iteration (decoded)
    step: int | None
    name: str  # the log statement's code
    value: str
    new: int


def logs(
    store: Store,
    run: int | None = None,
    name: str | None = None,
    spec: str | None = None,
    where: list[str] | None = None,
) -> list[LogRow]:
    """Values of `run` and its replays (of every run when None); with spec or where, of the
    recorded runs they choose and their replays; with `name`, only those whose statement or
    text contains it."""
    if run is not None and store.run(run) is None:
        raise UsageError(f"unknown run {run}; `florc runs` lists them")
    rows = [
        LogRow(**{**r, "epoch": json.loads(r["epoch"]) if r["epoch"] else None})
        for r in store.logs(run)
    ]
    if spec is not None or where:
        chosen = set(select_runs(store, spec, where))
        parent = {r["id"]: r["parent"] if r["kind"] != "record" else r["id"] for r in store.runs()}
        rows = [r for r in rows if parent.get(r.run) in chosen]
    if name is not None:
        rows = [r for r in rows if name in r.name or name in r.value]
    return rows


KEY_COLUMNS = ["run", "source", "epoch", "iteration", "step"]


@dataclass
class ValueTable:
    """Named values in wide form: one row per (run, source, iteration, step), one column per
    value name after KEY_COLUMNS."""

    columns: list[str]
    rows: list[dict[str, Any]]


def column(name: str) -> str:
    """The wide table's column of a value name: the name, or `logged_<name>` for a name that is
    a key column's (`epoch 3` printed is column logged_epoch; epoch is the main loop's value).
    A printed epoch or step equal to the key column's value is left out (wide)."""
    return f"logged_{name}" if name in KEY_COLUMNS else name


def wide(values: list[NamedValue], names: list[str] | None = None) -> ValueTable:
    """One row per (run, source, iteration, step) of values, one column per value name (in the
    order first written; `column` says which); names: only these (fnmatch patterns: `loss`,
    `val_*`). Where a name was written twice for one row (a statement that printed it twice in
    a step), the last counts."""
    if names is not None:
        values = [v for v in values if any(fnmatch.fnmatchcase(v.name, n) for n in names)]
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    columns: dict[str, None] = {}
    for v in values:
        key = (v.run, v.source, v.iteration, v.step)
        row = rows.setdefault(
            key,
            {
                "run": v.run,
                "source": v.source,
                "epoch": v.epoch,
                "iteration": v.iteration,
                "step": v.step,
            },
        )
        if v.name in ("epoch", "step") and _same_number(row[v.name], v.value):
            continue  # `epoch 3` printed in epoch 3: the key column already says so
        name = column(v.name)
        row[name] = v.value
        columns.setdefault(name, None)

    def order(key: tuple[Any, ...]) -> tuple[Any, ...]:
        # outside the main loop and at epoch level last: where scripts usually print them
        run, source, iteration, step = key
        return (run, source != "record", iteration is None, iteration or 0, step is None, step or 0)

    all_columns = KEY_COLUMNS + list(columns)
    return ValueTable(
        all_columns, [{c: rows[k].get(c) for c in all_columns} for k in sorted(rows, key=order)]
    )


def _same_number(key: Any, value: float) -> bool:
    return isinstance(key, (int, float)) and not isinstance(key, bool) and key == value


def value_table(
    store: Store,
    run: int | None = None,
    spec: str | None = None,
    where: list[str] | None = None,
    names: list[str] | None = None,
) -> ValueTable:
    """The wide table of the recorded runs chosen (run: one run, a record or a replay; spec and
    where: selection.select_runs; none of them: every recorded run) and of their replays."""
    chosen: list[int] | None = None
    replay: int | None = None
    if run is not None:
        meta = store.run(run)
        if meta is None:
            raise UsageError(f"unknown run {run}; `florc runs` lists them")
        if meta["kind"] == "record":
            chosen = [run]
        else:
            chosen, replay = [meta["parent"]], run
    if spec is not None or where:
        selected = select_runs(store, spec, where)
        chosen = selected if chosen is None else [r for r in chosen if r in selected]
    values = named_values(store, chosen)
    if replay is not None:
        values = [v for v in values if v.replay == replay]
    return wide(values, names)


@dataclass
class GcResult:
    deleted: list[int]  # run ids, replays of deleted records included
    files: int  # blob files deleted
    freed: int  # bytes


def doomed(store: Store, runs: list[int], keep_last: int | None) -> set[int]:
    """The records gc deletes: the given runs, or all but the last N records of each script."""
    if keep_last is not None and keep_last < 0:
        raise UsageError(f"--keep-last {keep_last}: give a number of runs, 0 or more")
    known = {r["id"]: r for r in store.runs()}
    unknown = [r for r in runs if r not in known]
    if unknown:
        raise UsageError(f"unknown run {', '.join(map(str, unknown))}; `florc runs` lists them")
    out = set(runs)
    if keep_last is not None:
        by_script: dict[str, list[int]] = {}
        for r in known.values():
            if r["kind"] == "record":
                by_script.setdefault(r["script"], []).append(r["id"])
        for ids in by_script.values():
            out |= set(sorted(ids)[: max(0, len(ids) - keep_last)])
    return out


def gc(store: Store, runs: list[int], keep_last: int | None) -> GcResult:
    """Delete the given runs (and their replays), or all but the last N records of each script;
    then free every blob no remaining checkpoint uses."""
    ids = doomed(store, runs, keep_last)
    with store.exclusive() as alone:
        if not alone:
            raise FlorcError("a record or replay is using this store; run gc when it has finished")
        deleted = store.delete_runs(ids)
        files, freed = store.collect_garbage()
    return GcResult(deleted, files, freed)


def dataframe(
    run: int | None = None,
    root: str | Path = ".",
    name: str | list[str] | None = None,
    *,
    runs: str | list[int] | None = None,
    where: str | list[str] | None = None,
    long: bool = False,
) -> Any:
    """Recorded and replayed values as a pandas DataFrame.

    Wide (the default): one row per (run, source, epoch, step), one column per value name
    (the numbers the log statements wrote, by name: florc/store/values.py), after the columns
    run, source (record | replay), epoch, iteration, step. `run`: one run; `runs`: a --runs
    spec (`all`, `3,5`, `2-4`, `since:2026-11-01`) or a list of run ids; `where`: `key=value`
    conditions on the runs' arguments; `name`: only these value names (fnmatch patterns).

    long=True: one row per line a log statement wrote, as stored; columns run, kind, statement,
    iteration, epoch, step, name (the statement's code), value (the text), new; `name` keeps
    the rows whose code contains it.
    """
    import pandas as pd

    from florc.project import STORE_DIRNAME, find_root, store_location

    folder = Path(root).resolve()
    if not (folder / STORE_DIRNAME).exists():
        folder = find_root(folder / "x.py")
    spec = ",".join(map(str, runs)) if isinstance(runs, list) else runs
    conditions = [where] if isinstance(where, str) else where
    with Store(folder, store_location(folder), readonly=True) as store:
        if long:
            chosen = set(select_runs(store, spec, conditions)) if spec or conditions else None
            parent = {
                r["id"]: r["parent"] if r["kind"] != "record" else r["id"] for r in store.runs()
            }
            rows = [r for r in store.logs(run) if chosen is None or parent.get(r["run"]) in chosen]
            if isinstance(name, str):
                rows = [r for r in rows if name in r["name"]]
            return pd.DataFrame(rows, columns=LOG_COLUMNS)
        names = [name] if isinstance(name, str) else name
        table = value_table(store, run, spec, conditions, names)
    return pd.DataFrame(table.rows, columns=table.columns)
