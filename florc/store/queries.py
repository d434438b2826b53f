"""Reading the store back: the runs, the logged values, and what gc deletes.

These answer `florc runs`, `florc logs`, `florc gc` and `florc.dataframe()`; they return rows as
values and leave presenting them (tables, sizes, dates) to the caller.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from florc.errors import FlorcError, UsageError
from florc.store.index import Store

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


def runs(store: Store, start_loop: str) -> list[RunRow]:
    """Every run in the store, oldest first. start_loop: the loop id under which record keeps
    the start state (not a checkpoint the user would count)."""
    out = []
    for r in store.runs():
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
                if r["kind"] == "record"
                else len(info.get("iterations", [])),
                checkpoints=sum(1 for c in store.checkpoints(r["id"]) if c.loop != start_loop),
                size=distinct,
                status=r["status"],
                faithful=info.get("faithful", True),
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


def logs(store: Store, run: int | None = None, name: str | None = None) -> list[LogRow]:
    """Values of `run` and its replays (of every run when None); with `name`, only those
    whose statement or text contains it."""
    if run is not None and store.run(run) is None:
        raise UsageError(f"unknown run {run}; `florc runs` lists them")
    rows = [
        LogRow(**{**r, "epoch": json.loads(r["epoch"]) if r["epoch"] else None})
        for r in store.logs(run)
    ]
    if name is not None:
        rows = [r for r in rows if name in r.name or name in r.value]
    return rows


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


def dataframe(run: int | None = None, root: str | Path = ".", name: str | None = None) -> Any:
    """Logged values as a pandas DataFrame: one row per value, recorded and replayed.

    Columns: run, kind (record | replay), statement, iteration, epoch, step, name, value, new.
    """
    import pandas as pd

    from florc.project import STORE_DIRNAME, find_root, store_location

    folder = Path(root).resolve()
    if not (folder / STORE_DIRNAME).exists():
        folder = find_root(folder / "x.py")
    with Store(folder, store_location(folder), readonly=True) as store:
        rows = store.logs(run)
    if name is not None:
        rows = [r for r in rows if name in r["name"]]
    return pd.DataFrame(rows, columns=LOG_COLUMNS)
