"""florc's API: every command as a function that returns a typed result and prints nothing.

What a command has to say goes to the `Reporter` it is given (default: `Silent()`); the CLI
(florc/cli.py) passes one that writes to the terminal, tests a `Recorded` one. The CLI imports
this module only, so everything it needs is here, re-exported where it lives elsewhere.

    instrument, report, check     the compiler's view of a script (florc/check.py)
    record                        florc/record.py
    replay, verify, run_worker    florc/replay/
    runs, logs, gc                florc/store/queries.py
    export, plot                  florc/export/
"""

from __future__ import annotations

from pathlib import Path

from florc._version import __version__
from florc.check import CheckResult
from florc.check import check as _check
from florc.check import instrument as _instrument
from florc.check import report as _report
from florc.contract import START_LOOP
from florc.errors import FlorcError, UsageError
from florc.export import TARGETS, ExportResult
from florc.export.plot import PlotResult
from florc.project import find_root, store_location
from florc.record import RecordResult, new_hash_seed, recorded_hash_seed
from florc.record import record as _record
from florc.replay.prepare import prepare
from florc.replay.results import ReplayResult, ReplayStats, SegmentRecord
from florc.replay.runs import RunReplay, RunsResult
from florc.report import Recorded, Reporter, Silent, plural
from florc.runtime.fidelity import Verdict, VerdictKind
from florc.runtime.policy import DEFAULT_BUDGET
from florc.store import queries
from florc.store.index import Store
from florc.store.queries import GcResult, LogRow, RunRow, ValueTable
from florc.store.selection import RUNS_HELP, WHERE_HELP

__all__ = [
    "DEFAULT_BUDGET",
    "EXPORT_TARGETS",
    "RUNS_HELP",
    "WHERE_HELP",
    "CheckResult",
    "ExportResult",
    "FlorcError",
    "GcResult",
    "LogRow",
    "PlotResult",
    "RecordResult",
    "Recorded",
    "ReplayResult",
    "ReplayStats",
    "RunReplay",
    "RunsResult",
    "Reporter",
    "RunRow",
    "SegmentRecord",
    "ValueTable",
    "Silent",
    "UsageError",
    "Verdict",
    "VerdictKind",
    "__version__",
    "check",
    "export",
    "gc",
    "install_hook",
    "instrument",
    "logs",
    "new_hash_seed",
    "plot",
    "plural",
    "project_root",
    "record",
    "recorded_hash_seed",
    "replay",
    "replay_runs",
    "run_replay_child",
    "report",
    "run_worker",
    "runs",
    "uninstall_hook",
    "values",
    "verify",
]


EXPORT_TARGETS = TARGETS


def project_root(folder: Path) -> Path:
    """The project a command run in `folder` works on (the git root above it, else itself)."""
    return find_root(folder / "x.py")


# --- the compiler's view ---------------------------------------------------------------


def instrument(script: str) -> str:
    """The script as florc instruments it."""
    return _instrument(script)


def report(script: str) -> str:
    """What the analysis found: the main loop, each loop's changeset, the log statements."""
    return _report(script)


def check(files: list[str], staged: bool, cwd: Path) -> CheckResult:
    """Instrument the training scripts among `files` (or the staged ones, or all of the
    project's); keep them in the compile cache. What `instrument --check` and the hooks run."""
    return _check(files, staged, cwd)


def install_hook(cwd: Path) -> str:
    """Add florc's check to the repository's pre-commit hook; what was done."""
    from florc import vcs

    return vcs.install(cwd)


def uninstall_hook(cwd: Path) -> str:
    """Take florc's check out of the pre-commit hook; what was done."""
    from florc import vcs

    return vcs.uninstall(cwd)


# --- record and replay -----------------------------------------------------------------


def record(
    script: str,
    args: list[str],
    store_dir: Path | None = None,
    overhead: float | None = None,
    compress: bool = False,
    checkpoint_all: bool = False,
    deterministic: bool = False,
    reporter: Reporter | None = None,
) -> RecordResult:
    """Run the script unmodified, checkpointing its loops. The string-hash seed is this
    process's: pin PYTHONHASHSEED before (the CLI re-executes with `new_hash_seed()`)."""
    return _record(
        script,
        args,
        store_dir=store_dir,
        overhead=overhead,
        compress=compress,
        checkpoint_all=checkpoint_all,
        deterministic=deterministic,
        reporter=reporter or Silent(),
    )


def replay(
    script: str,
    epochs: str = "all",
    run: int | None = None,
    allow_changes: bool = False,
    store_dir: Path | None = None,
    workers: int = 1,
    retry: bool = False,
    executor: str = "local",
    address: str | None = None,
    threads: int | None = None,
    reporter: Reporter | None = None,
    sources: dict[str, str] | None = None,
) -> ReplayResult:
    """Show the edited script's new log statements for `epochs` of a recorded run (default:
    the script's latest). threads: torch threads per worker (default: the recording's);
    sources: relpath -> text to compile instead of the files (replay_runs gives each run its
    recorded sources with the statements placed)."""
    from florc.replay.retry import retry as _retry
    from florc.replay.run import replay as _replay

    say = reporter or Silent()
    if workers < 1:
        raise UsageError(f"--workers {workers}: give 1 or more")
    if threads is not None and threads < 1:
        raise UsageError(f"--threads {threads}: give 1 or more")
    if executor not in ("local", "ray"):
        raise UsageError(f"--executor {executor}: give local or ray")
    with prepare(script, run, allow_changes, store_dir, say, sources) as prep:
        if retry:
            return _retry(prep, say, executor, address, threads)
        return _replay(prep, epochs, say, workers, executor, address, threads)


def replay_runs(
    script: str,
    spec: str | None = None,
    where: list[str] | None = None,
    epochs: str = "all",
    dry_run: bool = False,
    store_dir: Path | None = None,
    workers: int = 1,
    threads: int | None = None,
    allow_changes: bool = False,
    reporter: Reporter | None = None,
) -> RunsResult:
    """Place the current script's log statements into each chosen recorded run's sources
    (spec: all, 3,5,9, 2-4, since:DATE, latest; where: key=value filters) and replay `epochs`
    of each, in parallel; with dry_run, only say where each statement would go."""
    from florc.replay.runs import replay_runs as _replay_runs

    if workers < 1:
        raise UsageError(f"--workers {workers}: give 1 or more")
    if threads is not None and threads < 1:
        raise UsageError(f"--threads {threads}: give 1 or more")
    return _replay_runs(
        script,
        spec,
        where,
        epochs,
        reporter or Silent(),
        store_dir,
        dry_run,
        workers,
        threads,
        allow_changes,
    )


def run_replay_child(plan_file: Path) -> int:
    """One run of a `replay --runs` (started by replay_runs): replay it as its plan says."""
    from florc.replay.runs import run_child

    return run_child(plan_file, replay)


def verify(
    root: Path,
    run: int | None = None,
    sample: int = 3,
    store_dir: Path | None = None,
    threads: int | None = None,
    reporter: Reporter | None = None,
) -> ReplayResult:
    """Re-execute every block in `sample` recorded epochs of `run` (default: the latest
    recorded run) and compare with the recording; the verdict's kind says what was found."""
    from florc.replay.verify import verify as _verify

    if sample < 1:
        raise UsageError(f"--sample {sample}: give 1 or more epochs")
    if threads is not None and threads < 1:
        raise UsageError(f"--threads {threads}: give 1 or more")
    with Store(root, store_location(root, store_dir), readonly=True) as store:
        if run is None:
            records = store.runs("record")
            if not records:
                raise UsageError(f"no recorded run in {store.dir}; run `florc record` first")
            run = records[-1]["id"]
        meta = store.run(run)
        if meta is None or meta["kind"] != "record":
            raise UsageError(f"run {run} is not a recorded run; `florc runs` lists them")
    say = reporter or Silent()
    with prepare(str(root / meta["script"]), run, False, store_dir, say) as prep:
        return _verify(prep, sample, say, threads)


def run_worker(plan_file: Path, reporter: Reporter | None = None) -> int:
    """One worker of a parallel replay: run the segment its plan file names."""
    from florc.replay.worker import run_worker as _run_worker

    return _run_worker(plan_file, reporter or Silent())


def run_ranks(plan_template: Path, world: int, output: Path) -> int:
    """One segment of a distributed replay: its ranks, launched together (replay/ranks.py)."""
    from florc.replay.ranks import run_ranks as _run_ranks

    return _run_ranks(plan_template, world, output)


def record_ranks(nproc: int, florc_args: list[str]) -> int:
    """`florc record --nproc-per-node N ...`: every rank runs `florc record` with florc_args,
    launched by torchrun's launcher; the exit status of the job."""
    from florc.record import record_ranks as _record_ranks

    return _record_ranks(nproc, florc_args)


# --- the store -------------------------------------------------------------------------


def runs(
    root: Path,
    store_dir: Path | None = None,
    spec: str | None = None,
    where: list[str] | None = None,
) -> list[RunRow]:
    """The store's runs, oldest first (an empty list where there is no store); with spec
    (`--runs`) or where (`--where key=value`), the recorded runs chosen and their replays."""
    with Store(root, store_location(root, store_dir), readonly=True) as store:
        return queries.runs(store, START_LOOP, spec, where)


def logs(
    root: Path,
    run: int | None = None,
    name: str | None = None,
    store_dir: Path | None = None,
    spec: str | None = None,
    where: list[str] | None = None,
) -> list[LogRow]:
    """Recorded and replayed lines of `run` and its replays (of every run when None; of the
    recorded runs spec and where choose, and their replays)."""
    with Store(root, store_location(root, store_dir), readonly=True) as store:
        return queries.logs(store, run, name, spec, where)


def values(
    root: Path,
    run: int | None = None,
    spec: str | None = None,
    where: list[str] | None = None,
    names: list[str] | None = None,
    store_dir: Path | None = None,
) -> ValueTable:
    """Named values, one row per (run, source, iteration, step), one column per name."""
    with Store(root, store_location(root, store_dir), readonly=True) as store:
        return queries.value_table(store, run, spec, where, names)


def gc(
    root: Path, runs: list[int], keep_last: int | None, store_dir: Path | None = None
) -> GcResult:
    """Delete the given runs (and their replays), or all but the last N records of each
    script; then free every blob no remaining checkpoint uses."""
    location = store_location(root, store_dir)
    if not Store.exists(location):  # nothing to collect: check the arguments, create nothing
        with Store(root, location, readonly=True) as empty:
            queries.doomed(empty, runs, keep_last)
        return GcResult([], 0, 0)
    with Store(root, location) as store:
        return queries.gc(store, runs, keep_last)


# --- export and plot -------------------------------------------------------------------


def export_folder(root: Path, store_dir: Path | None = None) -> Path:
    """Where exports go unless told: the store's export/ folder."""
    return store_location(root, store_dir) / "export"


def export(
    root: Path,
    to: str,
    spec: str | None = None,
    where: list[str] | None = None,
    out: Path | None = None,
    tracking_uri: str | None = None,
    store_dir: Path | None = None,
) -> ExportResult:
    """Write the recorded and replayed values of the runs spec and where choose (default: every
    recorded run) where `to` (tensorboard, mlflow, wandb) expects them: under out (default:
    the store's export/tensorboard; W&B: its wandb/ folder there), MLflow into tracking_uri
    (default: a SQLite file there)."""
    from florc.export import mlflow, tensorboard, wandb
    from florc.export.runs import choose, gather

    if to not in TARGETS:
        raise UsageError(f"--to {to}: give one of {', '.join(TARGETS)}")
    if tracking_uri is not None and to != "mlflow":
        raise UsageError("--tracking-uri is for --to mlflow")
    with Store(root, store_location(root, store_dir), readonly=True) as store:
        runs = gather(store, choose(store, spec, where))
    base = export_folder(root, store_dir)
    if to == "tensorboard":
        return tensorboard.export(runs, out or base / "tensorboard")
    if to == "wandb":
        return wandb.export(runs, out or base)
    folder = out or base
    return mlflow.export(
        runs, tracking_uri or mlflow.default_uri(folder), artifacts=folder / "mlflow-artifacts"
    )


def plot(
    root: Path,
    name: str,
    out: Path,
    spec: str | None = None,
    where: list[str] | None = None,
    store_dir: Path | None = None,
) -> PlotResult:
    """Draw the value `name` over the epochs of the runs spec and where choose (default: every
    recorded run) into the PNG out: one colour per run, recorded solid, replayed dashed."""
    from florc.export.plot import plot as _plot
    from florc.export.runs import choose, gather

    with Store(root, store_location(root, store_dir), readonly=True) as store:
        runs = gather(store, choose(store, spec, where))
    return _plot(runs, name, out)
