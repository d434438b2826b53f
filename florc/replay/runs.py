"""`florc replay --runs`: the current script's log statements, replayed in many recorded runs.

For each chosen run, propagate.py places the log statements the current script has and the
run's recorded sources lack into those sources (a run where one cannot be placed is skipped,
with the reason and the place). The run is then replayed as a single-run replay would be, from
its own checkpoints, compiling its recorded sources with the statements placed, never the files
on disk: a child process (`florc _replay_run PLAN`) per run, with the run's own string-hash seed
and torch threads, as many at once as the cores hold. What each child says is kept and shown per
run, in run order, then a table of the runs.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from florc.errors import FlorcError, UsageError
from florc.launch import script_path
from florc.project import find_root, store_location
from florc.replay.executors import cpu_count, florc_command, worker_vars
from florc.report import Reporter, plural
from florc.store.index import Store
from florc.store.queries import commit_text, short_args
from florc.store.selection import run_params, select_runs, shown_params

PLAN_FORMAT = 1


@dataclass
class RunReplay:
    """One chosen run: where the statements go, and how its replay went."""

    run: int
    args: str
    commit: str
    placed: list[dict[str, Any]] = field(default_factory=list)  # propagate.Placed, as dicts
    skipped: list[str] = field(default_factory=list)  # why it is not replayed (one per cause)
    replay: int | None = None  # the replay's run id
    status: str = ""  # the replayed script's end: done, failed, ...
    exit_code: int = 0
    verdict: str = ""  # the fidelity verdict's kind: exact, within, diverged, unchecked
    fidelity: str = ""  # the fidelity line
    error: str = ""  # the replay could not run: why
    events: list[list[Any]] = field(default_factory=list)  # what the child said, in order
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (
            not self.skipped
            and not self.error
            and self.exit_code == 0
            and (self.verdict != "diverged")
        )


@dataclass
class RunsResult:
    runs: list[RunReplay]
    dry_run: bool

    @property
    def exit_code(self) -> int:
        """0 when every run replayed (or was skipped) and none failed or diverged, and at least
        one replayed (or, with --dry-run, could be); else 1."""
        tried = [r for r in self.runs if not r.skipped]
        if not tried:
            return 1
        return 0 if self.dry_run or all(r.ok for r in tried) else 1


def replay_runs(
    script: str,
    spec: str | None,
    where: list[str] | None,
    epochs: str,
    reporter: Reporter,
    store_dir: Path | None = None,
    dry_run: bool = False,
    workers: int = 1,
    threads: int | None = None,
    allow_changes: bool = False,
) -> RunsResult:
    """Place the current script's log statements into each chosen recorded run's sources and
    replay `epochs` of each (spec: `--runs`; where: `--where`)."""
    from florc.transforms.propagate import place_statements

    path = script_path(script)
    root = find_root(path)
    location = store_location(root, store_dir)
    relpath = str(path.relative_to(root))
    chosen: list[RunReplay] = []
    metas: dict[int, dict[str, Any]] = {}
    sources: dict[int, dict[str, str]] = {}
    with Store(root, location, readonly=True) as store:
        if spec == "latest":
            latest = store.latest_run(relpath)
            ids = select_runs(store, str(latest), where, relpath) if latest is not None else []
        else:
            ids = select_runs(store, spec, where, relpath)
        if not ids:
            what = f" with {' and '.join(where)}" if where else ""
            raise UsageError(
                f"no recorded run of {relpath}{what} in {store.dir} (see `florc runs`)"
            )
        for run in ids:
            meta = store.run(run)
            assert meta is not None
            metas[run] = meta
        args = _telling_args(list(metas.values()))
        for run in ids:
            meta = metas[run]
            item = RunReplay(run, args[run], commit_text(meta.get("env", {})) or "-")
            chosen.append(item)
            recorded = store.sources(run)
            placing = place_statements(path, root, recorded, run)
            item.placed = [
                {
                    "relpath": p.relpath,
                    "line": p.line,
                    "target_line": p.target_line,
                    "code": p.code,
                    "where": p.where,
                }
                for p in placing.placed
            ]
            item.skipped = [str(u) for u in placing.unplaced]
            item.skipped += [
                f"{rel}, which run {run} imported, is no longer on disk; restore it to replay "
                f"this run (git checkout {meta['env'].get('git_commit') or 'COMMIT'} -- {rel})"
                for rel in sorted(recorded)
                if not (root / rel).is_file()
            ]
            if not item.skipped and not placing.placed:
                item.skipped = [
                    f"run {run}'s code already has every log statement of {relpath}: "
                    "nothing new to replay"
                ]
            sources[run] = placing.sources
    for item in chosen:
        _show_placing(item, reporter)
    if dry_run:
        return RunsResult(chosen, dry_run=True)
    todo = [r for r in chosen if not r.skipped]
    if todo:
        _run_children(
            todo, metas, sources, path, location, epochs, workers, threads, allow_changes, reporter
        )
    for item in chosen:
        _show_replay(item, reporter)
    _summary(chosen, reporter)
    return RunsResult(chosen, dry_run=False)


def _telling_args(metas: list[dict[str, Any]]) -> dict[int, str]:
    """Per run, the arguments that tell the chosen runs apart (all of a run's given ones where
    only one run is chosen or none differ): `lr=0.1`, not the ten options every run shares."""
    params = {m["id"]: run_params(m) for m in metas}
    keys = {k for p in params.values() for k in p}
    differ = sorted(k for k in keys if len({p.get(k) for p in params.values()}) > 1)
    out = {}
    for m in metas:
        p = params[m["id"]]
        telling = {k: p[k] for k in differ if k in p}
        out[m["id"]] = short_args(telling or shown_params(m)) or "(no arguments)"
    return out


def _show_placing(item: RunReplay, reporter: Reporter) -> None:
    head = f"run {item.run} · {item.args}" + (
        f" · commit {item.commit}" if item.commit != "-" else ""
    )
    if item.skipped:
        reporter.note(f"{head}: skipped —")
        for reason in item.skipped:
            reporter.note(f"  {reason}")
        return
    reporter.note(f"{head}: {plural(len(item.placed), 'statement')} placed")
    for p in item.placed:
        reporter.note(
            f"  {p['relpath']}:{p['line']} → {p['relpath']}:{p['target_line']}  "
            f"`{_short(p['code'])}` {p['where']}"
        )


def _short(code: str, limit: int = 48) -> str:
    text = " ".join(code.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _run_children(
    todo: list[RunReplay],
    metas: dict[int, dict[str, Any]],
    sources: dict[int, dict[str, str]],
    path: Path,
    location: Path,
    epochs: str,
    workers: int,
    threads: int | None,
    allow_changes: bool,
    reporter: Reporter,
) -> None:
    """Replay each run in a child process, as many at once as the cores hold."""
    per_run = max(
        (threads or metas[r.run]["env"].get("torch_threads") or 1) * workers for r in todo
    )
    at_once = max(1, min(len(todo), cpu_count() // per_run))
    if at_once < len(todo):
        reporter.note(
            f"replaying {plural(len(todo), 'run')}, {at_once} at a time "
            f"({plural(per_run, 'thread')} each, {plural(cpu_count(), 'core')})"
        )
    else:
        reporter.note(f"replaying {plural(len(todo), 'run')} at once")
    with tempfile.TemporaryDirectory(prefix="florc-runs-") as tmp:
        folder = Path(tmp)
        waiting = list(todo)
        running: list[tuple[RunReplay, subprocess.Popen[bytes], Path, float]] = []
        done = 0
        while waiting or running:
            while waiting and len(running) < at_once:
                item = waiting.pop(0)
                plan = folder / f"run-{item.run}.json"
                out = folder / f"run-{item.run}.out.json"
                plan.write_text(
                    json.dumps(
                        {
                            "format": PLAN_FORMAT,
                            "script": str(path),
                            "store": str(location),
                            "run": item.run,
                            "epochs": epochs,
                            "sources": sources[item.run],
                            "workers": workers,
                            "threads": threads,
                            "allow_changes": allow_changes,
                            "output": str(out),
                        }
                    )
                )
                env = dict(os.environ)
                run_env = metas[item.run]["env"]
                env.update(
                    worker_vars(
                        threads or run_env.get("torch_threads") or 1,
                        None if threads else run_env.get("thread_env"),
                        run_env.get("hash_seed"),
                    )
                )
                proc = subprocess.Popen(
                    [*florc_command(), "_replay_run", str(plan)],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
                running.append((item, proc, out, time.perf_counter()))
            for entry in list(running):
                item, proc, out, started = entry
                if proc.poll() is None:
                    continue
                running.remove(entry)
                stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                item.seconds = time.perf_counter() - started
                _read_child(item, out, proc.returncode, stderr)
                done += 1
            reporter.progress(
                f"runs: {done} of {len(todo)} replayed, {len(running)} running" if running else ""
            )
            if running:
                time.sleep(0.05)


def _read_child(item: RunReplay, out: Path, returncode: int, stderr: str) -> None:
    try:
        data = json.loads(out.read_text())
    except (OSError, ValueError):
        tail = "\n".join(stderr.strip().splitlines()[-8:])
        item.error = f"its replay process ended ({returncode}) without a result" + (
            f":\n{tail}" if tail else ""
        )
        item.exit_code = returncode or 1
        return
    item.events = data.get("events", [])
    item.replay = data.get("replay")
    item.status = data.get("status", "")
    item.exit_code = int(data.get("exit_code", returncode))
    item.verdict = data.get("verdict", "")
    item.fidelity = data.get("fidelity", "")
    item.error = data.get("error", "")


def _show_replay(item: RunReplay, reporter: Reporter) -> None:
    if item.skipped:
        return
    reporter.note(f"── run {item.run} · {item.args} ──")
    for kind, text, err in item.events:
        if kind == "output":
            reporter.output(text, err=bool(err))
        elif kind == "warn":
            reporter.warn(text)
        elif kind == "note":
            reporter.note(text)
    if item.error:
        reporter.note(f"run {item.run} not replayed: {item.error}")


def _summary(items: list[RunReplay], reporter: Reporter) -> None:
    rows = []
    for r in items:
        if r.skipped:
            result = "skipped"
        elif r.error:
            result = "error"
        else:
            result = f"{r.status or '?'}, {r.verdict or '?'}"
        rows.append(
            (
                str(r.run),
                str(r.replay) if r.replay is not None else "-",
                r.args,
                r.commit,
                result,
                f"{r.seconds:.1f} s" if r.seconds else "-",
            )
        )
    head = ("run", "replay", "args", "commit", "result", "time")
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    reporter.note("runs replayed:")
    for row in (head, *rows):
        reporter.note("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    replayed = sum(1 for r in items if not r.skipped and not r.error)
    skipped = sum(1 for r in items if r.skipped)
    line = f"{plural(replayed, 'run')} replayed"
    if skipped:
        line += f", {skipped} skipped (see above)"
    reporter.note(line)


class _Kept:
    """The child's reporter: keeps what the replay says, in order, for the parent to show."""

    def __init__(self) -> None:
        self.events: list[list[Any]] = []

    def note(self, message: str) -> None:
        self.events.append(["note", message, False])

    def warn(self, message: str) -> None:
        self.events.append(["warn", message, False])

    def output(self, text: str, err: bool = False) -> None:
        self.events.append(["output", text, err])

    def progress(self, text: str) -> None:
        pass


class _KeptStream(io.TextIOBase):
    """sys.stdout or sys.stderr of the child: each line the replay shows becomes an output
    event, in order with florc's own notes."""

    def __init__(self, kept: _Kept, err: bool, real: TextIO) -> None:
        self.kept, self.err, self.real, self.partial = kept, err, real, ""

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.real.fileno()

    def write(self, text: str) -> int:
        *lines, self.partial = (self.partial + text).split("\n")
        for line in lines:
            self.kept.output(line, self.err)
        return len(text)

    def close_line(self) -> None:
        if self.partial:
            self.kept.output(self.partial, self.err)
            self.partial = ""


def run_child(plan_file: Path, replay: Callable[..., Any]) -> int:
    """One run of a `--runs` replay (`florc _replay_run PLAN`): replay it with the sources the
    plan gives, write what it said and how it ended to the plan's output file. replay: the
    single-run replay (api.replay)."""
    plan = json.loads(plan_file.read_text())
    if plan.get("format") != PLAN_FORMAT:
        raise UsageError(f"{plan_file}: not a plan this florc writes")
    kept = _Kept()
    result: dict[str, Any] = {"events": kept.events}
    streams = (sys.stdout, sys.stderr)
    out, err = _KeptStream(kept, False, streams[0]), _KeptStream(kept, True, streams[1])
    sys.stdout, sys.stderr = out, err
    try:
        done = replay(
            plan["script"],
            plan["epochs"],
            plan["run"],
            plan["allow_changes"],
            store_dir=Path(plan["store"]),
            workers=plan["workers"],
            threads=plan["threads"],
            reporter=kept,
            sources=plan["sources"],
        )
        result.update(
            replay=done.replay_id,
            status=done.outcome.status,
            exit_code=done.exit_code,
            verdict=done.verdict.kind.value,
            fidelity=done.verdict.line,
        )
    except FlorcError as exc:
        result.update(error=str(exc), exit_code=2)
    finally:
        sys.stdout, sys.stderr = streams
        out.close_line()
        err.close_line()
    Path(plan["output"]).write_text(json.dumps(result))
    return int(result["exit_code"])
