"""The `florc` command line: options in, plain function calls, results out."""

from __future__ import annotations

import csv
import json
import os
import random
import sys
from pathlib import Path
from typing import Any

import click

from florc import commands
from florc._version import __version__
from florc.errors import FlorcError
from florc.runtime.policy import DEFAULT_BUDGET

SCRIPT_ARGS = {"ignore_unknown_options": True, "allow_interspersed_args": False}


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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
@click.argument("script")
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED)
def record(
    overhead: float | None,
    checkpoint_all: bool,
    compress: bool,
    deterministic: bool,
    script: str,
    script_args: tuple[str, ...],
) -> None:
    """Run SCRIPT unmodified, checkpointing its loops. Arguments after SCRIPT go to the script.

    florc options go before SCRIPT: florc record --overhead 0.02 train.py --lr 0.1
    """
    if os.environ.get("PYTHONHASHSEED", "random") == "random":
        _run_with_hash_seed(str(random.SystemRandom().randint(1, 2**32 - 1)))
    args = list(script_args)
    if args and args[0] == "--":
        args = args[1:]
    result = commands.record(
        script,
        args,
        overhead=overhead,
        compress=compress,
        checkpoint_all=checkpoint_all,
        deterministic=deterministic,
    )
    sys.exit(result.outcome.exit_code)


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
) -> None:
    """Re-run SCRIPT's new log statements for past epochs, restoring the rest from checkpoints.

    Ends with a fidelity line: whether the values replay recomputed match the recording.
    """
    _run_with_hash_seed(commands.recorded_hash_seed(script, run_id))
    result = commands.replay(
        script,
        epochs,
        run_id,
        allow_changes,
        workers=workers,
        retry=retry,
        executor=executor,
        address=address,
        threads=threads,
    )
    sys.exit(result.outcome.exit_code)


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
    _run_with_hash_seed(commands.recorded_hash_seed(None, run_id, _root()))
    result = commands.verify(_root(), run_id, sample, threads=threads)
    code = result.outcome.exit_code
    sys.exit(code or (1 if "diverged" in result.fidelity else 0))


@cli.command("_segment", hidden=True)
@click.argument("script")
@click.option("--run", "run_id", type=int, required=True)
@click.option("--replay", "replay_id", type=int, required=True)
@click.option("--segment", "spec", required=True)
@click.option("--output", type=click.Path(path_type=Path), required=True)
@click.option("--allow-changes", is_flag=True)
@click.option("--threads", type=int, default=None)
def segment(
    script: str,
    run_id: int,
    replay_id: int,
    spec: str,
    output: Path,
    allow_changes: bool,
    threads: int | None,
) -> None:
    """One worker of a parallel replay (started by `florc replay --workers N`)."""
    sys.exit(
        commands.replay_segment(script, run_id, replay_id, spec, output, allow_changes, threads)
    )


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
        result = commands.check(list(scripts), staged, Path.cwd())
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
    click.echo(commands.report(script) if report else commands.instrument(script), nl=False)


@cli.group()
def hook() -> None:
    """Instrument training scripts on every commit (a git pre-commit hook)."""


@hook.command("install")
def hook_install() -> None:
    """Add florc's check to this repository's pre-commit hook (an existing hook is kept)."""
    from florc import vcs as hooks

    click.echo(hooks.install(Path.cwd()))


@hook.command("uninstall")
def hook_uninstall() -> None:
    """Take florc's check out of the pre-commit hook, leaving the rest as it was."""
    from florc import vcs as hooks

    click.echo(hooks.uninstall(Path.cwd()))


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
def runs(fmt: str) -> None:
    """List recorded runs and replays in this project's store."""
    rows = commands.runs_table(_root())
    _emit(
        rows,
        ["id", "kind", "of", "script", "started", "epochs", "checkpoints", "size", "status"],
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
    result = commands.gc(_root(), list(run_ids), keep_last)
    if result.deleted:
        click.echo(f"deleted runs {', '.join(map(str, result.deleted))}")
    click.echo(f"freed {result.freed / 1e6:.1f} MB ({result.files} files)")


@cli.command()
@click.argument("run_id", type=int, required=False)
@click.option("--name", default=None, help="Only values whose name or text contains this.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
def logs(run_id: int | None, name: str | None, fmt: str) -> None:
    """Recorded and replayed values (of RUN and its replays, or of all runs)."""
    rows = commands.logs_rows(_root(), run_id, name=name)
    if fmt == "table":
        rows = [{k: ("" if v is None else v) for k, v in r.items()} for r in rows]
    _emit(rows, ["run", "kind", "epoch", "step", "statement", "value"], fmt)


def _root() -> Path:
    from florc.project import find_root

    return find_root(Path.cwd() / "x.py")


def _emit(rows: list[dict[str, Any]], columns: list[str], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(rows, indent=1, default=str))
    elif fmt == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else columns)
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
        sys.stderr.write("florc: aborted\n")
        sys.exit(130)
    except FlorcError as exc:
        sys.stderr.write(f"florc: {exc}\n")
        sys.exit(exc.exit_code)
