"""The `florc` command line: options in, API calls, results out; the only place that prints.

Every command calls `florc.api` with a `Terminal` reporter: florc's own lines go to stderr as
`florc: ...`, the script's output that a command shows to stdout (or stderr, where the script
wrote it there). Exit codes come from the results' kinds, never from their text.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from florc import api
from florc.api import DEFAULT_BUDGET, FlorcError, VerdictKind, __version__

SCRIPT_ARGS = {"ignore_unknown_options": True, "allow_interspersed_args": False}


class Terminal:
    """The reporter the commands get: florc's lines on stderr, the script's where it wrote them.

    ANSI colours in the script's output are passed through as they are (color=True)."""

    def __init__(self) -> None:
        self.drawn = False  # a progress line is on the screen

    def note(self, message: str) -> None:
        click.echo(f"florc: {message}", err=True, color=True)

    def warn(self, message: str) -> None:
        click.echo(f"florc: warning: {message}", err=True, color=True)

    def output(self, text: str, err: bool = False) -> None:
        click.echo(text, err=err, color=True)

    def progress(self, text: str) -> None:
        if not sys.stderr.isatty():
            return
        if text:
            click.echo(f"\rflorc: {text} ", err=True, nl=False, color=True)
            self.drawn = True
        elif self.drawn:
            click.echo("", err=True)
            self.drawn = False


def _run_with_hash_seed(seed: str | None) -> None:
    """Run this command in a process whose string hashing uses `seed`.

    The order of a set of strings (a vocabulary built with set(), say) depends on PYTHONHASHSEED,
    which Python draws at random at start-up. Record pins one and keeps it with the run; replay,
    its workers and verify run with the same. Changing it needs a new interpreter: re-exec.
    """
    if seed is None or os.environ.get("PYTHONHASHSEED") == seed:
        return
    os.environ["PYTHONHASHSEED"] = seed
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "florc", *sys.argv[1:]])


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "(none)\n"
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(line.rstrip() for line in lines) + "\n"


class FlorcGroup(click.Group):
    """The command group: a FlorcError (a user's mistake, a script florc cannot handle) ends
    the command with its message and exit code, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FlorcError as exc:
            click.echo(f"florc: {exc}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=FlorcGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="florc")
def cli() -> None:
    """Hindsight logging: record a training script once, add log statements later, replay."""


@cli.command(context_settings=SCRIPT_ARGS)
@click.option(
    "--overhead",
    type=float,
    default=None,
    help="Checkpointing may add at most this fraction of training time "
    f"(default: [tool.florc] overhead, else {DEFAULT_BUDGET}).",
)
@click.option(
    "--checkpoint-all",
    is_flag=True,
    help="Checkpoint at every opportunity, whatever it costs (fastest replay).",
)
@click.option("--compress", is_flag=True, help="Compress checkpoint data (zstd).")
@click.option(
    "--deterministic",
    is_flag=True,
    help="Switch torch, cuDNN and cuBLAS to deterministic algorithms (replay does the same).",
)
@click.option(
    "--nproc-per-node",
    type=int,
    default=None,
    help="Launch N ranks on this machine as torchrun does (a DDP script); each records.",
)
@click.argument("script")
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED)
def record(
    overhead: float | None,
    checkpoint_all: bool,
    compress: bool,
    deterministic: bool,
    nproc_per_node: int | None,
    script: str,
    script_args: tuple[str, ...],
) -> None:
    """Run SCRIPT unmodified, checkpointing its loops. Arguments after SCRIPT go to the script.

    florc options go before SCRIPT: florc record --overhead 0.02 train.py --lr 0.1
    """
    args = list(script_args)
    if args and args[0] == "--":
        args = args[1:]
    if nproc_per_node is not None:
        florc_args = [
            *(["--overhead", str(overhead)] if overhead is not None else []),
            *(["--checkpoint-all"] if checkpoint_all else []),
            *(["--compress"] if compress else []),
            *(["--deterministic"] if deterministic else []),
            script,
            *args,
        ]
        sys.exit(api.record_ranks(nproc_per_node, florc_args))
    _run_with_hash_seed(api.new_hash_seed())
    result = api.record(
        script,
        args,
        overhead=overhead,
        compress=compress,
        checkpoint_all=checkpoint_all,
        deterministic=deterministic,
        reporter=Terminal(),
    )
    sys.exit(result.exit_code)


@cli.command()
@click.argument("script")
@click.option(
    "--epochs", default="all", show_default=True, help="Which epochs: 5-9, 3, 1,4,7-9, last or all."
)
@click.option("--run", "run_id", type=int, default=None, help="Recorded run (default: the latest).")
@click.option(
    "--allow-changes",
    is_flag=True,
    help="Replay even if training code changed (results marked unfaithful).",
)
@click.option(
    "--workers",
    type=int,
    default=1,
    show_default=True,
    help="Split the epochs over this many processes, each from its own checkpoint.",
)
@click.option("--retry", is_flag=True, help="Rerun only the failed workers of the last replay.")
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="Where workers run: processes here, or Ray tasks (pip install 'florc[ray]').",
)
@click.option("--address", default=None, help="Ray cluster address (default: start one here).")
@click.option(
    "--threads",
    type=int,
    default=None,
    help="Torch threads per worker (default: as many as the recording used, for the same "
    "floating-point sums; fewer workers run when the cores do not hold them all).",
)
@click.option(
    "--runs",
    "spec",
    default=None,
    help="Replay in many recorded runs: all, 3,5,9, 2-4 or since:2026-11-01.",
)
@click.option("--where", multiple=True, metavar="KEY=VALUE", help=api.WHERE_HELP)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Only show where each new statement would go in each run's code (with --runs).",
)
def replay(
    script: str,
    epochs: str,
    run_id: int | None,
    allow_changes: bool,
    workers: int,
    retry: bool,
    executor: str,
    address: str | None,
    threads: int | None,
    spec: str | None,
    where: tuple[str, ...],
    dry_run: bool,
) -> None:
    """Re-run SCRIPT's new log statements for past epochs, restoring the rest from checkpoints.

    With --runs (or --where), in each chosen recorded run: the statements are placed into the
    code that run recorded, then each run is replayed from its own checkpoints, in parallel.

    Ends with a fidelity line: whether the values replay recomputed match the recording.
    """
    if spec is not None or where or dry_run:
        if run_id is not None:
            raise click.UsageError("give either --run or --runs, not both")
        if retry or executor != "local":
            raise click.UsageError("--runs replays locally; --retry and --executor are for one run")
        many = api.replay_runs(
            script,
            spec if spec is not None else ("all" if where else "latest"),
            list(where),
            epochs,
            dry_run=dry_run,
            workers=workers,
            threads=threads,
            allow_changes=allow_changes,
            reporter=Terminal(),
        )
        sys.exit(many.exit_code)
    _run_with_hash_seed(api.recorded_hash_seed(script, run_id))
    result = api.replay(
        script,
        epochs,
        run_id,
        allow_changes,
        workers=workers,
        retry=retry,
        executor=executor,
        address=address,
        threads=threads,
        reporter=Terminal(),
    )
    sys.exit(result.exit_code)


@cli.command()
@click.argument("run_id", type=int, required=False)
@click.option("--sample", type=int, default=3, show_default=True, help="How many epochs to check.")
@click.option(
    "--threads",
    type=int,
    default=None,
    help="Torch threads (default: as many as the recording used).",
)
def verify(run_id: int | None, sample: int, threads: int | None) -> None:
    """Re-execute the blocks of a few recorded epochs of RUN (default: the latest) and compare
    them with the recording. Exit status 1 if they diverged."""
    _run_with_hash_seed(api.recorded_hash_seed(None, run_id, _root()))
    result = api.verify(_root(), run_id, sample, threads=threads, reporter=Terminal())
    code = result.exit_code
    sys.exit(code or (1 if result.verdict.kind is VerdictKind.DIVERGED else 0))


@cli.command("_segment", hidden=True)
@click.argument("plan", type=click.Path(path_type=Path))
def segment(plan: Path) -> None:
    """One worker of a parallel replay (started by `florc replay --workers N`): run the
    segment its PLAN file describes."""
    sys.exit(api.run_worker(plan, reporter=Terminal()))


@cli.command("_segment_ranks", hidden=True)
@click.argument("plan", type=click.Path(path_type=Path))
@click.argument("world", type=int)
@click.argument("output", type=click.Path(path_type=Path))
def segment_ranks(plan: Path, world: int, output: Path) -> None:
    """One segment of a distributed replay: launch its WORLD ranks, each running `_segment` on
    its own rank's plan (PLAN names it with {rank}); write their merged output to OUTPUT."""
    sys.exit(api.run_ranks(plan, world, output))


@cli.command("_replay_run", hidden=True)
@click.argument("plan", type=click.Path(path_type=Path))
def replay_run(plan: Path) -> None:
    """One run of `florc replay --runs` (started by it): replay the run its PLAN file names."""
    sys.exit(api.run_replay_child(plan))


@cli.command()
@click.argument("scripts", nargs=-1)
@click.option("--report", is_flag=True, help="Print the analysis instead of the code.")
@click.option(
    "--check",
    is_flag=True,
    help="Instrument the training scripts among SCRIPTS (all of the project's when none are "
    "given), print path:line:col for each that cannot be, keep the rest in the compile cache. "
    "Exit status 1 if any failed. Never modifies files.",
)
@click.option("--staged", is_flag=True, help="With --check: the Python files staged in git.")
def instrument(scripts: tuple[str, ...], report: bool, check: bool, staged: bool) -> None:
    """Print SCRIPT as florc instruments it (or, with --report, what the analysis found).

    With --check (what the commit hooks run): check that training scripts can be instrumented.
    """
    if check or staged:
        result = api.check(list(scripts), staged, Path.cwd())
        for line in result.problems:
            click.echo(line, err=True)
        for line in result.notes:
            click.echo(f"florc: {line}", err=True)
        if result.checked or result.problems:
            click.echo(
                f"florc: {len(result.checked)} training scripts instrumented and cached, "
                f"{len(result.problems)} failed",
                err=True,
            )
        sys.exit(1 if result.problems else 0)
    if len(scripts) != 1:
        raise click.UsageError("give one SCRIPT (or --check to check several)")
    script = scripts[0]
    click.echo(api.report(script) if report else api.instrument(script), nl=False)


@cli.group()
def hook() -> None:
    """Instrument training scripts on every commit (a git pre-commit hook)."""


@hook.command("install")
def hook_install() -> None:
    """Add florc's check to this repository's pre-commit hook (an existing hook is kept)."""
    click.echo(api.install_hook(Path.cwd()))


@hook.command("uninstall")
def hook_uninstall() -> None:
    """Take florc's check out of the pre-commit hook, leaving the rest as it was."""
    click.echo(api.uninstall_hook(Path.cwd()))


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@click.option("--runs", "spec", default=None, help=api.RUNS_HELP.replace("the latest", "all"))
@click.option("--where", multiple=True, help=api.WHERE_HELP + " Repeatable.")
def runs(fmt: str, spec: str | None, where: tuple[str, ...]) -> None:
    """List recorded runs and replays in this project's store, with their arguments and git
    commit."""
    rows: list[dict[str, Any]] = []
    for r in api.runs(_root(), spec=spec, where=list(where)):
        row: dict[str, Any] = {
            "id": r.id,
            "kind": r.kind,
            "of": r.parent or "",
            "script": r.script,
            "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.started)),
            "epochs": r.epochs,
            "checkpoints": r.checkpoints,
            "size": f"{r.size / 1e6:.1f} MB",
            "status": r.status + ("" if r.faithful else " (unfaithful)"),
            "commit": r.commit,
            "args": r.args if r.kind == "record" else "",
        }
        if fmt != "table":
            row["params"] = r.params if r.kind == "record" else {}
        rows.append(row)
    _emit(
        rows,
        [
            "id",
            "kind",
            "of",
            "script",
            "started",
            "epochs",
            "checkpoints",
            "size",
            "status",
            "commit",
            "args",
        ],
        fmt,
    )


@cli.command()
@click.argument("run_ids", nargs=-1, type=int)
@click.option(
    "--keep-last",
    type=int,
    default=None,
    help="Keep only the last N recorded runs of each script (and their replays).",
)
def gc(run_ids: tuple[int, ...], keep_last: int | None) -> None:
    """Delete RUN_IDS (with their replays), or old runs with --keep-last; free unused data."""
    result = api.gc(_root(), list(run_ids), keep_last)
    if result.deleted:
        click.echo(f"deleted runs {', '.join(map(str, result.deleted))}")
    click.echo(f"freed {result.freed / 1e6:.1f} MB ({result.files} files)")


@cli.command()
@click.argument("run_id", type=int, required=False)
@click.option("--runs", "spec", default=None, help=api.RUNS_HELP.replace("the latest", "all"))
@click.option("--where", multiple=True, help=api.WHERE_HELP + " Repeatable.")
@click.option(
    "--name",
    default=None,
    help="Table and --long: only lines whose statement or text contains this. csv, json: only "
    "values of this name (a pattern: val_*).",
)
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@click.option(
    "--long", "long_", is_flag=True, help="csv, json: the lines as stored, one row per line."
)
def logs(
    run_id: int | None,
    spec: str | None,
    where: tuple[str, ...],
    name: str | None,
    fmt: str,
    long_: bool,
) -> None:
    """Recorded and replayed values (of RUN and its replays, or of the runs chosen).

    The table shows the lines the log statements wrote; csv and json the named values, one row
    per run, source, epoch and step with a column per value name (--long: the lines)."""
    root = _root()
    if fmt == "table" or long_:
        rows = [
            dataclasses.asdict(r)
            for r in api.logs(root, run_id, name=name, spec=spec, where=list(where))
        ]
        if fmt == "table":
            rows = [{k: ("" if v is None else v) for k, v in r.items()} for r in rows]
        _emit(rows, ["run", "kind", "epoch", "step", "statement", "value"], fmt)
        return
    table = api.values(
        root, run_id, spec=spec, where=list(where), names=None if name is None else [name]
    )
    _emit(table.rows, table.columns, fmt)


@cli.command()
@click.argument("spec", metavar="[RUNS]", required=False)
@click.option(
    "--to",
    "target",
    type=click.Choice(list(api.EXPORT_TARGETS)),
    required=True,
    help="TensorBoard event files, an MLflow tracking store, or W&B offline runs.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The folder to write into (default: .florc/export/tensorboard for TensorBoard; "
    ".florc/export for MLflow's SQLite file and W&B's wandb/ folder).",
)
@click.option("--where", multiple=True, help=api.WHERE_HELP + " Repeatable.")
@click.option(
    "--tracking-uri",
    default=None,
    help="MLflow: the tracking store (default: sqlite:///.florc/export/mlflow.db).",
)
def export(
    spec: str | None,
    target: str,
    out: Path | None,
    where: tuple[str, ...],
    tracking_uri: str | None,
) -> None:
    """Write recorded and replayed values of RUNS where a tracker reads them.

    RUNS: all (the default), 3,5,9, 2-4 or since:2026-11-01. Each florc run becomes a
    TensorBoard folder run-N, an MLflow run or a W&B offline run; replayed values are named
    replay/NAME. Exporting again writes only what is new."""
    result = api.export(
        _root(), target, spec=spec, where=list(where), out=out, tracking_uri=tracking_uri
    )
    runs = ", ".join(map(str, result.runs))
    already = f" ({result.skipped} already there)" if result.skipped else ""
    click.echo(
        f"exported {result.written} values of {api.plural(len(result.runs), 'run')} ({runs}) "
        f"to {_shown(result.location)}{already}"
    )
    click.echo(f"open it: {_shown(result.open_command)}")


@cli.command()
@click.argument("name")
@click.argument("spec", metavar="[RUNS]", required=False)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The PNG file to write (default: NAME.png).",
)
@click.option("--where", multiple=True, help=api.WHERE_HELP + " Repeatable.")
def plot(name: str, spec: str | None, out: Path | None, where: tuple[str, ...]) -> None:
    """Draw the value NAME over the epochs of RUNS (default: all recorded runs) into a PNG.

    One colour per run; recorded values solid, replayed ones dashed with markers."""
    if out is None:
        out = Path("".join(c if c.isalnum() or c in "._-" else "_" for c in name) + ".png")
    result = api.plot(_root(), name, out, spec=spec, where=list(where))
    click.echo(
        f"plotted {result.points} values of {name} over {result.axis}s for "
        f"{api.plural(len(result.runs), 'run')} ({', '.join(map(str, result.runs))}) "
        f"into {result.path}"
    )


def _shown(text: str) -> str:
    """Paths under the current folder as relative ones."""
    cwd = str(Path.cwd())
    return text.replace(cwd + os.sep, "").replace(cwd, ".")


def _root() -> Path:
    return api.project_root(Path.cwd())


def _emit(rows: list[dict[str, Any]], columns: list[str], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(rows, indent=1, default=str))
    elif fmt == "csv":
        writer = csv.DictWriter(
            sys.stdout, fieldnames=list(rows[0]) if rows else columns, extrasaction="ignore"
        )
        writer.writeheader()
        writer.writerows(rows)
    else:
        click.echo(_table(rows, columns), nl=False)


def main() -> None:
    try:
        cli.main(standalone_mode=False, prog_name="florc")
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("florc: aborted", err=True)
        sys.exit(130)
    except FlorcError as exc:
        click.echo(f"florc: {exc}", err=True)
        sys.exit(exc.exit_code)
