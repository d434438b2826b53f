"""What each CLI command does, as plain functions: compile, run, and read the store.

This is the one layer that uses both the compiler (`florc.transforms`) and the runtime
(`florc.runtime`); the CLI only parses options and prints.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from florc import project

# The compiler (libcst) is imported where it is used: a record whose compile result is in the
# cache never loads it.
from florc.contract import START_LOOP, CompileResult, LogLine, ReplayPlan
from florc.errors import FlorcError, UsageError
from florc.launch import (
    compiled_code as _code_for,
)
from florc.launch import (
    describe_main as _describe_main,
)
from florc.launch import (
    environment as _env,
)
from florc.launch import (
    framework_where as _framework_where,
)
from florc.launch import (
    git_commit as _git_commit,
)
from florc.launch import (
    import_hook as _hook,
)
from florc.launch import (
    make_deterministic as _make_deterministic,
)
from florc.launch import (
    mb as _mb,
)
from florc.launch import (
    no_main_loop as _no_main_loop,
)
from florc.launch import (
    script_path as _script_path,
)
from florc.launch import (
    what_works as _what_works,
)
from florc.parallel import (
    PROGRESS_PREFIX,
    Progress,
    Segment,
    cpu_count,
    florc_command,
    gpu_count,
    plan_segments,
    plan_threads,
    run_segments,
    segment_from_spec,
    segment_spec,
    thread_vars,
)
from florc.project import find_root, is_project_file, store_location
from florc.runtime import fidelity
from florc.runtime import state as st
from florc.runtime.files import FileSandbox
from florc.runtime.policy import DEFAULT_BUDGET, CheckpointPolicy
from florc.runtime.record import RecordSession
from florc.runtime.replay import ReplaySession
from florc.runtime.runner import RunOutcome, run_script
from florc.runtime.session import Session, log_rows, statement_codes
from florc.runtime.writer import CheckpointJob, Writer
from florc.store.index import Store
from florc.transforms import cache as compile_cache


def _say(message: str, stream: TextIO | None = None) -> None:
    (stream or sys.stderr).write(f"florc: {message}\n")
    (stream or sys.stderr).flush()


# --- instrument ----------------------------------------------------------------


def instrument(script: str) -> str:
    from florc.transforms.compiler import compile_project

    path = _script_path(script)
    result = compile_project(path, find_root(path))
    return result.files[result.script].instrumented


@dataclass
class CheckResult:
    problems: list[str]  # "path:line:col: message" -- these fail the check
    notes: list[str]  # said, but not failures
    checked: list[str]  # training scripts instrumented (and cached)
    ignored: list[str]  # Python files that are not training scripts


def check(files: list[str], staged: bool, cwd: Path) -> CheckResult:
    """Instrument each training script among files (or the staged ones); keep the results in
    the compile cache. What `florc instrument --check` and the commit hooks run."""
    from florc import vcs as hooks

    if staged:
        paths = hooks.staged_python_files(cwd)
    elif files:
        paths = [cwd / f for f in files]
    else:
        root = find_root(cwd / "x.py")
        paths = sorted(p for p in root.rglob("*.py") if is_project_file(p, root))
    out = CheckResult([], [], [], [])
    for path in paths:
        if not path.is_file():
            continue  # deleted, or not a file: nothing to instrument
        root = find_root(path)
        cfg = project.load(root)
        rel = path.resolve().relative_to(root.resolve()).as_posix()
        why = _training_script(path, root, cfg)
        if why is None:
            out.ignored.append(rel)
            continue
        problem, note = _check_one(path, root, rel, cfg)
        if problem:
            out.problems.append(problem)
            if why:
                out.notes.append(f"{rel}: checked as a training script because {why}")
        else:
            out.checked.append(rel)
        if note:
            out.notes.append(note)
        if staged and not problem and hooks.unstaged_changes(path):
            out.notes.append(f"{rel}: has unstaged changes; the working-tree version was checked")
    return out


_TRAINING_TEXT = re.compile(r"\.(?:backward|step)\s*\(|#\s*florc:\s*main-loop")


def _training_script(path: Path, root: Path, cfg: project.Config) -> str | None:
    """Why a file counts as a training script ("" when the configured globs name it), or None.

    Beyond the globs: a file in which the main-loop search finds a loop that trains; a file
    that does not parse, when its text has a training step (`.backward(`, `.step(`) or its
    version in HEAD was a training script. Cheap first: a file whose text, and that of the
    project modules it imports, has no training step is decided without the analysis."""
    if cfg.is_training_script(path, root):
        return ""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return _training_text(path, root, text, head=True)


def _training_text(path: Path, root: Path, text: str, head: bool) -> str | None:
    import ast

    from florc import vcs as hooks

    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        if _TRAINING_TEXT.search(text):
            return "it has a training step (`.backward(` or `.step(`)"
        old = hooks.head_version(path) if head else None
        if old is not None and _training_text(path, root, old, head=False) is not None:
            return "it was a training script in HEAD"
        return None
    if not _reaches_training_text(path, root, text, tree):
        return None
    from florc.transforms.compiler import find_script_main_loop

    try:
        main = find_script_main_loop(path, root, source=text)
    except Exception:  # noqa: BLE001 -- training text that florc cannot analyse: check it
        return "it has a training step (`.backward(` or `.step(`)"
    if main.rule in ("pragma", "trains"):
        return f"its main loop is {main.reason}"
    return None


def _reaches_training_text(path: Path, root: Path, text: str, tree: Any) -> bool:
    """Whether the file or a project module it imports (transitively) has a training step in
    its text: the cheap test that spares most files the analysis."""
    import ast

    from florc.transforms.compiler import _resolve_import_file as resolve_import_file

    seen = {path.resolve()}
    todo = [(path, text, tree)]
    while todo:
        here, source, parsed = todo.pop()
        if _TRAINING_TEXT.search(source):
            return True
        if parsed is None:
            continue
        found: list[Path] = []
        for node in ast.walk(parsed):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    found += resolve_import_file(root, here.parent, alias.name, 0)
            elif isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                found += resolve_import_file(root, here.parent, mod, node.level)
                for alias in node.names:
                    sub = f"{mod}.{alias.name}" if mod else alias.name
                    found += resolve_import_file(root, here.parent, sub, node.level)
        for f in found:
            f = f.resolve()
            if f in seen or not is_project_file(f, root) or len(seen) > 500:
                continue
            seen.add(f)
            try:
                other = f.read_text(encoding="utf-8")
                todo.append((f, other, ast.parse(other)))
            except (OSError, UnicodeDecodeError):
                continue
            except (SyntaxError, ValueError):
                todo.append((f, other, None))
    return False


def _check_one(path: Path, root: Path, rel: str, cfg: project.Config) -> tuple[str, str]:
    """(problem, note) for one training script; on success its compile result is cached."""
    from florc.errors import SourceError
    from florc.transforms.compiler import compile_project

    try:
        result = compile_project(path, root)
    except SourceError as exc:
        return str(exc), ""
    except FlorcError as exc:
        return f"{rel}:1:1: {exc}", ""
    except Exception as exc:  # noqa: BLE001 -- a compiler bug must not pass as a good script
        return (
            f"{rel}:1:1: florc could not instrument this script ({type(exc).__name__}: {exc}); "
            "please report this with the script",
            "",
        )
    if result.main_loop is None:
        fw = result.framework
        where = _framework_where(fw) if fw else f"{rel}:1:1"
        message = f"{where}: no main loop found: {result.main_loop_reason}"
        if cfg.configured_scripts:
            return message + f" (it is a training script by {cfg.source} scripts)", ""
        return "", "note: " + message
    compile_cache.store(result, path, root, store_location(root))
    return "", ""


def report(script: str) -> str:
    from florc.transforms.compiler import compile_project

    path = _script_path(script)
    result = compile_project(path, find_root(path))
    out = []
    main = result.loop(result.main_loop) if result.main_loop else None
    if main is not None:
        out.append(f"main loop: {main.relpath}:{main.line} ({result.main_loop_reason})")
    else:
        out.append(f"main loop: none — {result.main_loop_reason}")
        out.append(f"  {_what_works(result)}")
    for fm in result.files.values():
        for lp in fm.loops:
            role = "main loop" if lp.loop_id == result.main_loop else "block"
            if lp.parent_loop not in (None, result.main_loop) and lp.loop_id != result.main_loop:
                role = f"inner loop (part of {lp.parent_loop})"
            out.append(f"\n{lp.relpath}:{lp.line}:{lp.col} {lp.kind} loop [{lp.loop_id}] — {role}")
            out.append(f"  changeset: {', '.join(lp.changeset) or '(nothing)'}")
            optional = sorted(set(lp.changeset) - set(lp.required))
            if optional:
                out.append(f"  kept when possible (not read after the loop): {', '.join(optional)}")
            if lp.iterated:
                out.append(f"  iterates over: {', '.join(lp.iterated)}")
            if not lp.instrumented:
                out.append(
                    "  left as written (inside a generator function, or in a module that "
                    "uses florc.loop)"
                )
            if lp.unbounded:
                out.append("  re-executes at replay:")
                out.extend(f"    {reason}" for reason in lp.unbounded)
            elif role == "block" and lp.instrumented:
                out.append(
                    "  at replay: restored from its checkpoint unless it gains a log statement"
                )
    if result.warnings:
        out.append("\nnondeterminism (replayed values may differ from the recording):")
        out.extend(f"  {w}" for w in result.warnings)
    out.append("\nlog statements:")
    for fm in result.files.values():
        for ls in fm.log_statements:
            out.append(f"  {fm.relpath}:{ls['line']}:{ls['col']}  {ls['code']}")
    return "\n".join(out) + "\n"


# --- record ------------------------------------------------------------------------


@dataclass
class RecordResult:
    run_id: int
    outcome: RunOutcome


def _compile_for_record(path: Path, root: Path, store_dir: Path) -> tuple[CompileResult, bool]:
    """The script's compile result: from the compile cache if this version is there (True)."""
    cached = compile_cache.lookup(path, root, store_dir)
    if cached is not None:
        return cached, True
    from florc.transforms.compiler import compile_project

    result = compile_project(path, root)
    try:
        compile_cache.store(result, path, root, store_dir)
    except OSError:
        pass  # a cache that cannot be written only costs the next record a compile
    return result, False


def record(
    script: str,
    args: list[str],
    store_dir: Path | None = None,
    overhead: float | None = None,
    compress: bool = False,
    checkpoint_all: bool = False,
    deterministic: bool = False,
) -> RecordResult:
    path = _script_path(script)
    root = find_root(path)
    if checkpoint_all:
        overhead = math.inf
    elif overhead is None:
        configured = project.load(root).overhead
        overhead = DEFAULT_BUDGET if configured is None else configured
    elif not 0 <= overhead <= 1:
        raise UsageError(
            f"--overhead {overhead}: give a fraction of training time between 0 and 1, "
            "e.g. 0.05 for 5%"
        )
    result, cached = _compile_for_record(path, root, store_location(root, store_dir))
    code = _code_for(result, result.script)
    for warning in result.warnings:
        _say(f"warning: {warning}")
    if deterministic:
        _make_deterministic()
    store = Store(root, store_dir)
    store.hold_shared()
    env = _env()
    env["deterministic"] = deterministic
    env["git_commit"] = _git_commit(root)
    env["overhead_budget"] = None if checkpoint_all else overhead
    env["compress"] = compress
    env["hash_seed"] = os.environ.get("PYTHONHASHSEED")  # the CLI pins it (cli.py)
    run_id = store.create_run("record", result.script, args, env, main_loop=result.main_loop)
    store.add_sources(run_id, {rel: fm.source for rel, fm in result.files.items()})
    writer = Writer(root, store.dir, compress=compress)
    policy = CheckpointPolicy(overhead)
    session = RecordSession(store, run_id, result, writer=writer, policy=policy)
    where = store.dir.relative_to(root) if store.dir.is_relative_to(root) else store.dir
    policy_text = "every opportunity" if checkpoint_all else f"overhead budget {overhead:.0%}"
    how = "instrumented (compile cache hit)" if cached else "instrumented"
    _say(
        f"{how} {result.script} ({_describe_main(result)}) · run {run_id} · "
        f"store {where}/ · checkpoints: {policy_text}"
    )
    if result.main_loop is None:
        _say(_no_main_loop(result))
    writer.submit_checkpoint(
        CheckpointJob(
            run_id, START_LOOP, 0, 0, st.Snapshot(rng=st.start_rng(_imports_torch(result))), {}
        )
    )
    t0 = time.perf_counter()
    outcome = run_script(session, code, path, args, _hook(result, root, session))
    elapsed = time.perf_counter() - t0
    status = outcome.status
    if writer.stopped is not None and status == "done":
        status = "partial"  # the script finished; its checkpoints stopped part-way
    try:
        _finish_record(store, run_id, status, outcome)
        iterations = len(store.iterations(run_id))
        total, stored = store.run_bytes(run_id)
    except (sqlite3.Error, OSError) as exc:
        # The store cannot be written any more (disk full, ...): the training itself is done
        # and its exit status stands; the run will show as killed (its process is gone).
        _say(f"warning: could not mark run {run_id} as {status} in the store ({exc})")
        if outcome.error and outcome.status != "done":
            _say(outcome.error)
        return RecordResult(run_id, outcome)
    s = session.stats
    if result.main_loop is None:
        fw = result.framework
        why = (
            f"the training loop is inside {fw['framework']} ({_framework_where(fw)})"
            if fw
            else "no main loop"
        )
        line = f"run {run_id} {status} — nothing to replay: {why}, "
    else:
        line = f"run {run_id} {status} — {iterations} main-loop iterations, "
    line += f"{s.checkpoints} checkpoints ({_mb(total)}, {_mb(stored)} stored)"
    if s.skipped:
        line += f", {s.skipped} skipped to stay within the budget"
    summary = policy.summary()
    if summary["compute_seconds"]:
        line += (
            f"; checkpointing cost {summary['cost_seconds']:.2f} s of "
            f"{summary['compute_seconds']:.2f} s training "
            f"({summary['cost_seconds'] / summary['compute_seconds']:.1%})"
        )
    if s.flush_seconds >= 0.05:
        line += f" (incl. {s.flush_seconds:.2f} s writing the last ones after training)"
    line += f"; {elapsed:.2f} s in all"
    if s.unusable:
        line += f"; {s.unusable} checkpoints could not be taken (those parts re-execute at replay)"
    _say(line)
    for note in s.notes[:5]:
        _say(note)
    if outcome.error and outcome.status != "done":
        _say(outcome.error)
        missing = _missing_framework(result, outcome.error)
        if missing:
            _say(
                f"{missing} is not installed in the Python florc runs with ({sys.executable}); "
                f"a plain run fails the same way: install it there, then record again"
            )
    store.close()
    return RecordResult(run_id, outcome)


def _missing_framework(result: CompileResult, error: str) -> str | None:
    """The framework's package, when the run failed because it cannot be imported."""
    m = re.search(r"No module named '([\w.]+)'", error)
    if result.framework is None or m is None:
        return None
    return m.group(1)


_TORCH_IMPORT = re.compile(r"^\s*(?:import|from)\s+torch\b", re.MULTILINE)


def _imports_torch(result: CompileResult) -> bool:
    return any(_TORCH_IMPORT.search(fm.source) for fm in result.files.values())


def recorded_hash_seed(script: str | None, run: int | None, root: Path | None = None) -> str | None:
    """The PYTHONHASHSEED a recorded run ran with; None if unknown (the command will say why)."""
    try:
        if script is not None:
            path = _script_path(script)
            root = find_root(path)
        assert root is not None
        store = Store(root)
        try:
            if run is None and script is not None:
                run = store.latest_run(str(path.relative_to(root)))
            elif run is None:
                recorded = store.runs("record")
                run = recorded[-1]["id"] if recorded else None
            meta = store.run(run) if run is not None else None
        finally:
            store.close()
    except (FlorcError, OSError, sqlite3.Error):
        return None
    return (meta or {}).get("env", {}).get("hash_seed")


def _finish_record(store: Store, run_id: int, status: str, outcome: RunOutcome) -> None:
    torch = sys.modules.get("torch")
    if torch is not None:  # replay workers use as many threads, for the same floating point
        store.update_env(run_id, {"torch_threads": torch.get_num_threads()})
    store.finish_run(run_id, status, outcome.exit_code)


# --- replay --------------------------------------------------------------------------


_RANGE = re.compile(r"^\s*(-?\d+)\s*(?:-\s*(-?\d+))?\s*$")


def parse_epochs(spec: str, values: list[Any]) -> tuple[list[int], str]:
    """`5-9`, `3`, `1,4,7-9`, `last`, `all` -> (iteration indices, how numbers were read)."""
    n = len(values)
    if n == 0:
        raise UsageError("the recorded run has no main-loop iterations to replay")
    counted = all(isinstance(v, int) for v in values)
    numbers = values if counted else list(range(n))
    how = (
        "epochs as the script counts them (the main loop's variable)"
        if counted
        else "0-based main-loop iterations"
    )
    valid = f"{numbers[0]}-{numbers[-1]}" if n > 1 else f"{numbers[0]}"
    spec = spec.strip().lower()
    if spec == "all":
        return list(range(n)), how
    if spec == "last":
        return [n - 1], how
    index = {v: i for i, v in enumerate(numbers)}
    out: set[int] = set()
    for part in spec.split(","):
        m = _RANGE.match(part)
        if not m:
            raise UsageError(f"--epochs {spec!r}: expected e.g. 5-9, 3, 1,4,7-9, last or all")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise UsageError(f"--epochs {part!r}: the range is empty (start after end)")
        for v in range(lo, hi + 1):
            if v not in index:
                raise UsageError(
                    f"--epochs {part!r}: epoch {v} was not recorded; the recorded range is {valid} "
                    f"({how})"
                )
            out.add(index[v])
    return sorted(out), how


@dataclass
class ReplayResult:
    replay_id: int
    outcome: RunOutcome
    faithful: bool
    fidelity: str = ""


@dataclass
class PreparedReplay:
    """What every replay (and every worker of a parallel one) works from."""

    path: Path
    root: Path
    store: Store
    run: int
    meta: dict[str, Any]
    result: CompileResult
    alignment: Any
    edited: dict[str, str]
    iterations: list[tuple[int, Any]]
    checkpoints: dict[tuple[str, int, int], Any]
    probed: set[str]
    run_after_loop: bool

    def plan(self, targets: list[int], run_after_loop: bool) -> ReplayPlan:
        recorded_values: dict[tuple[str, int | None, int | None], list[str]] = {}
        for row in self.store.logs(self.run):
            if row["run"] == self.run:
                key = (row["statement"], row["iteration"], row["step"])
                recorded_values.setdefault(key, []).append(row["value"])
        return ReplayPlan(
            targets=targets,
            probed=self.probed,
            new_statements=self.alignment.new_statements,
            run_after_loop=run_after_loop,
            checkpoints=self.checkpoints,
            final_boundary=(
                len(self.iterations) if self.meta["status"] in ("done", "partial") else None
            ),
            statement_map=self.alignment.statement_map,
            recorded_values=recorded_values,
        )

    def anchors(self) -> list[int]:
        """Main-loop boundaries with a usable checkpoint."""
        main = self.result.main_loop
        return sorted(
            it
            for (loop, it, occ), row in self.checkpoints.items()
            if loop == main and occ == 0 and row.usable and row.blob
        )


def _prepare_replay(
    script: str, run: int | None, allow_changes: bool, store_dir: Path | None, announce: bool
) -> PreparedReplay:
    path = _script_path(script)
    root = find_root(path)
    store = Store(root, store_dir)
    store.hold_shared()
    relpath = str(path.relative_to(root))
    if run is None:
        run = store.latest_run(relpath)
        if run is None:
            raise UsageError(
                f"no recorded run of {relpath} in {store.dir}; run `florc record {script}` first"
            )
    meta = store.run(run)
    if meta is None or meta["kind"] != "record":
        known = ", ".join(str(r["id"]) for r in store.runs("record")) or "none"
        raise UsageError(f"run {run} is not a recorded run in {store.dir} (recorded runs: {known})")
    from florc.transforms.align import align
    from florc.transforms.compiler import compile_project, identifiers, paused_gc
    from florc.transforms.syntax import shared_parses

    recorded = store.sources(run)
    with shared_parses(), paused_gc():  # each version of each file parsed once
        known_names = {rel: identifiers(text) for rel, text in recorded.items()}
        result = compile_project(path, root, known_names=known_names)
        edited = {rel: fm.source for rel, fm in result.files.items()}
        alignment = align(recorded, edited, root, result.script)
    if not alignment.faithful:
        listing = "\n".join(str(c) for c in alignment.changes)
        if not allow_changes:
            raise FlorcError(
                f"{relpath} has changes that are not log statements — replay would not be "
                f"faithful:\n{listing}\n  Undo them, or run with --allow-changes to replay anyway "
                "(results marked unfaithful)."
            )
        if announce:
            _say(
                "replaying with changes that are not log statements (results marked unfaithful):\n"
                + listing
            )
    if announce:
        for note in _version_differences(meta["env"], _env()):
            _say(f"warning: run {run} {note}")
    main = result.main_loop
    if main != meta["main_loop"]:
        raise FlorcError(
            f"the main loop moved ({meta['main_loop']} when recorded, {main} now: "
            f"{result.main_loop_reason}); replay needs the recorded structure: record the "
            "script again (or mark the recorded loop `# florc: main-loop`)"
        )
    probed = set(alignment.changed_loops)
    for loop_id, fns in store.callees(run).items():
        if fns & alignment.changed_functions:
            probed.add(loop_id)
    main_manifest = result.loop(main) if main else None
    return PreparedReplay(
        path=path,
        root=root,
        store=store,
        run=run,
        meta=meta,
        result=result,
        alignment=alignment,
        edited=edited,
        iterations=store.iterations(run),
        checkpoints={(c.loop, c.iteration, c.occurrence): c for c in store.checkpoints(run)},
        probed=probed,
        run_after_loop=_new_statement_after_main_loop(
            alignment.new_statement_lines, result, main_manifest
        ),
    )


def _use_threads(threads: int | None, recorded_vars: dict[str, str] | None) -> None:
    """Run the script with this many torch threads (the recording's, unless asked otherwise):
    through the environment for a torch not imported yet, directly for one that is."""
    if threads is None:
        return
    os.environ.update(thread_vars(threads, recorded_vars))
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _threads_note(prep: PreparedReplay, used: int | None) -> tuple[int, int] | None:
    """(used, recorded) when this replay runs with another torch thread count."""
    recorded = prep.meta["env"].get("torch_threads")
    return (used, recorded) if used and recorded and used != recorded else None


def _run_replay_session(
    prep: PreparedReplay,
    replay_id: int,
    plan: ReplayPlan,
    files: Path,
    quiet: bool = False,
    on_progress: Any = None,
    threads: int | None = None,
) -> tuple[Session, RunOutcome, float]:
    """threads: torch threads to run with; None: the recording's."""
    env = prep.meta["env"]
    explicit = threads is not None
    _use_threads(threads or env.get("torch_threads"), None if explicit else env.get("thread_env"))
    if env.get("deterministic"):
        _make_deterministic()
    session = ReplaySession(prep.store, replay_id, prep.result, plan)
    session.echo = not quiet
    session.on_progress = on_progress
    start = prep.checkpoints.get((START_LOOP, 0, 0))
    if start is not None and start.blob:
        try:
            rng = session.load(start).rng
        except (OSError, ValueError) as exc:
            _say(
                f"warning: the recorded start state (random generators) cannot be read ({exc}); "
                "a script that does not seed them may replay differently (see the fidelity line)"
            )
        else:
            st.start_rng(with_torch="torch" in rng)  # import what record imported, then restore
            st.restore_rng(rng)
    sandbox = FileSandbox(prep.root, files, prep.store.dir)
    session.on_final_restore = sandbox.forget
    t0 = time.perf_counter()
    sandbox.install()
    try:
        outcome = run_script(
            session,
            _code_for(prep.result, prep.result.script),
            prep.path,
            prep.meta["argv"],
            _hook(prep.result, prep.root, session),
        )
    finally:
        sandbox.uninstall()
    return session, outcome, time.perf_counter() - t0


def replay(
    script: str,
    epochs: str,
    run: int | None = None,
    allow_changes: bool = False,
    store_dir: Path | None = None,
    workers: int = 1,
    retry: bool = False,
    executor: str = "local",
    address: str | None = None,
    threads: int | None = None,
) -> ReplayResult:
    """threads: torch threads per worker (default: the recording's count)."""
    if workers < 1:
        raise UsageError(f"--workers {workers}: give 1 or more")
    if threads is not None and threads < 1:
        raise UsageError(f"--threads {threads}: give 1 or more")
    prep = _prepare_replay(script, run, allow_changes, store_dir, announce=True)
    if retry:
        return _retry(prep, allow_changes, executor, address, threads)
    store, meta = prep.store, prep.meta
    values = [v for _, v in prep.iterations]
    if not values:
        raise UsageError(_nothing_to_replay(prep))
    targets, how = parse_epochs(epochs, values)
    recorded_threads = meta["env"].get("torch_threads")
    per_worker = threads  # None: the recording's count
    if executor == "local" and workers > 1 and len(targets) > 1:
        tp = plan_threads(workers, recorded_threads, threads, cpu_count(), gpu_count())
        if tp.note:
            _say(tp.note)
        workers = tp.workers
        if tp.threads != recorded_threads:
            per_worker = tp.threads
    used_threads = per_worker or recorded_threads
    faithful = prep.alignment.faithful
    replay_id = store.create_run(
        "replay",
        prep.result.script,
        meta["argv"],
        _env(),
        parent=prep.run,
        main_loop=prep.result.main_loop,
        epochs={"spec": epochs, "iterations": targets, "faithful": faithful},
    )
    store.add_sources(replay_id, prep.edited)
    _say(
        f"run {prep.run} · replay {replay_id} · epochs {_epochs_text(values, targets)} — {how}"
        + ("" if faithful else " · UNFAITHFUL (code changed)")
    )
    if not prep.alignment.new_statements:
        _say("no new log statements: nothing to show (add print/log statements to the script)")
    replay_dir = store.dir / "replays" / str(replay_id)
    t0 = time.perf_counter()
    info: dict[str, Any] = {}
    if (workers > 1 and len(targets) > 1) or executor != "local":
        segments = plan_segments(targets, prep.anchors(), workers)
        if len(segments) < min(workers, len(targets)):
            _say(
                f"{len(segments)} of {workers} workers would shorten this replay: more would "
                "start from the same checkpoint (record with a larger --overhead or "
                "--checkpoint-all for more starting points)"
            )
        for seg in segments:
            origin = (
                "from the start"
                if seg.start == 0
                else f"from the checkpoint before epoch {_epochs_text(values, [seg.start])}"
            )
            _say(f"worker {seg.index + 1}: epochs {_epochs_text(values, seg.targets)} ({origin})")
        done = _run_workers(prep, replay_id, segments, allow_changes, executor, address, per_worker)
        info["segments"] = done.records
        outcome, lines, evidence, summary = done.outcome, done.lines, done.evidence, done.summary
    else:
        plan = prep.plan(targets, prep.run_after_loop)
        session, outcome, _ = _run_replay_session(
            prep, replay_id, plan, replay_dir / "files", threads=threads
        )
        lines, evidence = session.lines, session.evidence
        s = session.stats
        for note in s.notes[:5]:
            _say(note)
        summary = restore_summary(
            s.restored_boundaries,
            s.restored_blocks,
            s.probed_blocks + s.rerun_cheaper,
            s.rerun_cheaper,
            s.bytes_read,
        )
    elapsed = time.perf_counter() - t0
    store.add_logs(replay_id, log_rows(lines, statement_codes(prep.result)))
    verdict = fidelity.verdict(evidence, _threads_note(prep, used_threads))
    store.finish_run(replay_id, outcome.status, outcome.exit_code)
    store.set_replay_info(replay_id, {"fidelity": verdict.line, **info})
    recorded_seconds = (meta["finished"] or time.time()) - meta["started"]
    _say(
        f"replay {replay_id} {outcome.status} in {elapsed:.2f} s (recording took "
        f"{recorded_seconds:.2f} s): {summary}"
    )
    if info.get("segments") and outcome.status != "done":
        _say("rerun only the failed workers with: florc replay --retry " + prep.result.script)
    _say(verdict.line)
    store.close()
    return ReplayResult(replay_id, outcome, faithful, verdict.line)


def _nothing_to_replay(prep: PreparedReplay) -> str:
    result, run = prep.result, prep.run
    if result.main_loop is None:
        return f"run {run} has no main-loop iterations to replay. " + _no_main_loop(result)
    lp = result.loop(result.main_loop)
    where = f" at {lp.relpath}:{lp.line}:{lp.col}" if lp is not None else ""
    return (
        f"run {run} has no main-loop iterations to replay: it ended ({prep.meta['status']}) "
        f"before its main loop{where} finished one iteration; record again"
    )


def restore_summary(boundaries: int, blocks: int, rerun: int, cheaper: int, read: int) -> str:
    why = f" ({cheaper} of them because that was faster than restoring)" if cheaper else ""
    return (
        f"{boundaries} epoch checkpoints and {blocks} blocks restored, {rerun} blocks "
        f"re-executed{why}; {read / 1e6:.1f} MB read"
    )


def _version_differences(recorded: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs between the software a run was recorded with and this replay's.

    Checkpoints carry their own format number and the store its schema version (both checked
    where they are read); a different torch, numpy or Python can still change floating-point
    results, so replay says so and its fidelity line reports what it found."""
    out = []
    for name in ("florc", "torch", "numpy", "python"):
        was, is_ = recorded.get(name), now.get(name)
        if was and is_ and was != is_:
            out.append(
                f"was recorded with {name} {was}, this replay runs {name} {is_}: values may "
                "differ in the last digits (the fidelity line below reports any difference)"
            )
    return out


def _epochs_text(values: list[Any], iterations: list[int]) -> str:
    counted = all(isinstance(v, int) for v in values)
    return _ranges([values[i] if counted else i for i in iterations])


@dataclass
class WorkersDone:
    outcome: RunOutcome
    lines: list[Any]
    evidence: list[Any]
    summary: str
    records: list[dict[str, Any]]  # per segment: its plan, whether it succeeded, its evidence


def _run_workers(
    prep: PreparedReplay,
    replay_id: int,
    segments: list[Segment],
    allow_changes: bool,
    executor: str,
    address: str | None,
    asked_threads: int | None = None,
) -> WorkersDone:
    """Run segments in worker processes; print the new statements' output, merged in order.

    Each worker runs with the recording's torch thread count (replay() chose how many workers
    the cores hold), or with asked_threads (given, or fewer where each worker has a GPU)."""
    values = [v for _, v in prep.iterations]
    env = prep.meta["env"]
    threads = asked_threads or env.get("torch_threads")
    recorded_vars = None if asked_threads else env.get("thread_env")

    def command(seg: Segment, output: Path) -> list[str]:
        cmd = [
            *florc_command(),
            "_segment",
            str(prep.path),
            "--run",
            str(prep.run),
            "--replay",
            str(replay_id),
            "--segment",
            segment_spec(seg),
            "--output",
            str(output),
        ]
        if asked_threads:  # else the worker takes the recording's, as a replay here does
            cmd += ["--threads", str(asked_threads)]
        return [*cmd, "--allow-changes"] if allow_changes else cmd

    replay_dir = prep.store.dir / "replays" / str(replay_id)
    progress = Progress(segments, sys.stderr)
    if executor == "ray":
        from florc.ray_executor import run_segments_on_ray

        results = run_segments_on_ray(
            segments, command, replay_dir, Path.cwd(), progress, address, threads
        )
    else:
        results = run_segments(
            segments, command, replay_dir, Path.cwd(), progress, sys.stderr, threads, recorded_vars
        )
    lines: list[Any] = []
    evidence: list[Any] = []
    records = []
    failed = []
    restored = blocks = probed = cheaper = read = 0
    for r in sorted(results, key=lambda r: r.segment.index):
        seg = r.segment
        record = {**dataclasses.asdict(seg), "ok": False, "error": "", "evidence": []}
        records.append(record)
        if not r.ok or r.output.get("status") != "done":
            record["error"] = r.output.get("error") or r.error
            failed.append(record)
            continue
        record["ok"] = True
        for d in r.output["lines"]:
            ln = LogLine(**d)
            before_loop = ln.iteration is None and not ln.after_loop
            if (
                ln.iteration in seg.targets
                or (before_loop and seg.index == 0)
                or (ln.after_loop and seg.after_loop)
            ):
                lines.append(ln)
        record["evidence"] = r.output["evidence"]
        evidence.extend(fidelity.Evidence(**e) for e in r.output["evidence"])
        stats = r.output["stats"]
        restored += stats["restored_boundaries"]
        blocks += stats["restored_blocks"]
        probed += stats["probed_blocks"] + stats["rerun_cheaper"]
        cheaper += stats["rerun_cheaper"]
        read += stats["bytes_read"]
    for ln in lines:
        if ln.new:
            stream = sys.stdout if ln.stream == "stdout" else sys.stderr
            stream.write((ln.shown if ln.shown is not None else ln.text) + "\n")
    sys.stdout.flush()
    for rec in failed:
        epochs = _epochs_text(values, rec["targets"])
        _say(f"worker {rec['index'] + 1} (epochs {epochs}) failed: {rec['error']}")
    outcome = (
        RunOutcome("failed", 1, f"{len(failed)} of {len(segments)} workers failed")
        if failed
        else RunOutcome("done", 0)
    )
    summary = f"{len(segments)} workers ({executor}); " + restore_summary(
        restored, blocks, probed, cheaper, read
    )
    return WorkersDone(outcome, lines, evidence, summary, records)


def _retry(
    prep: PreparedReplay,
    allow_changes: bool,
    executor: str,
    address: str | None,
    threads: int | None = None,
) -> ReplayResult:
    """Rerun the failed workers of the latest parallel replay of this run; merge their results."""
    store = prep.store
    replays = [r for r in store.runs("replay") if r["parent"] == prep.run]
    latest = next(
        (
            r
            for r in reversed(replays)
            if any(not seg["ok"] for seg in (r["epochs"] or {}).get("segments", []))
        ),
        None,
    )
    if latest is None:
        raise UsageError(f"no replay of run {prep.run} has failed workers to retry")
    replay_id = latest["id"]
    records = latest["epochs"]["segments"]
    failed = [
        Segment(rec["index"], rec["start"], rec["targets"], rec["after_loop"])
        for rec in records
        if not rec["ok"]
    ]
    values = [v for _, v in prep.iterations]
    _say(
        f"run {prep.run} · replay {replay_id} · retrying "
        + ", ".join(
            f"worker {s.index + 1} (epochs {_epochs_text(values, s.targets)})" for s in failed
        )
    )
    t0 = time.perf_counter()
    done = _run_workers(prep, replay_id, failed, allow_changes, executor, address, threads)
    redone = {rec["index"]: rec for rec in done.records}
    records = [redone.get(rec["index"], rec) for rec in records]
    store.add_logs(replay_id, log_rows(done.lines, statement_codes(prep.result)))
    evidence = [fidelity.Evidence(**e) for rec in records for e in rec["evidence"]]
    verdict = fidelity.verdict(evidence, _threads_note(prep, threads))
    all_ok = all(rec["ok"] for rec in records)
    outcome = RunOutcome("done", 0) if all_ok else done.outcome
    store.finish_run(replay_id, outcome.status, outcome.exit_code)
    store.set_replay_info(replay_id, {"fidelity": verdict.line, "segments": records})
    _say(
        f"replay {replay_id} {outcome.status} after retry in {time.perf_counter() - t0:.2f} s: "
        + done.summary
    )
    _say(verdict.line)
    store.close()
    return ReplayResult(replay_id, outcome, prep.alignment.faithful, verdict.line)


def verify(
    root: Path,
    run: int | None,
    sample: int,
    store_dir: Path | None = None,
    threads: int | None = None,
) -> ReplayResult:
    """Re-execute every block in a sample of recorded epochs and compare with the recording
    (with the recording's torch thread count, unless `threads` asks for another)."""
    if sample < 1:
        raise UsageError(f"--sample {sample}: give 1 or more epochs")
    if threads is not None and threads < 1:
        raise UsageError(f"--threads {threads}: give 1 or more")
    store = Store(root, store_dir)
    try:
        if run is None:
            records = store.runs("record")
            if not records:
                raise UsageError(f"no recorded run in {store.dir}; run `florc record` first")
            run = records[-1]["id"]
        meta = store.run(run)
        if meta is None or meta["kind"] != "record":
            raise UsageError(f"run {run} is not a recorded run; `florc runs` lists them")
    finally:
        store.close()
    prep = _prepare_replay(str(root / meta["script"]), run, False, store_dir, announce=True)
    main = prep.result.main_loop
    candidates = sorted(
        {
            it
            for (loop, it, _), row in prep.checkpoints.items()
            if loop not in (main, START_LOOP) and row.usable and it >= 0
        }
    )
    if len(candidates) > sample:
        step = (len(candidates) - 1) / (sample - 1) if sample > 1 else 0
        candidates = sorted({candidates[round(i * step)] for i in range(sample)})
    blocks = {
        lp.loop_id
        for fm in prep.result.files.values()
        for lp in fm.loops
        if lp.loop_id != main and not lp.unbounded
    }
    plan = prep.plan(candidates, run_after_loop=False)
    plan.probed = blocks
    store = prep.store
    values = [v for _, v in prep.iterations]
    shown = [values[i] if all(isinstance(v, int) for v in values) else i for i in candidates]
    verify_id = store.create_run(
        "verify",
        prep.result.script,
        meta["argv"],
        _env(),
        parent=run,
        main_loop=main,
        epochs={"spec": "verify", "iterations": candidates, "faithful": True},
    )
    session: Session | None = None
    outcome, elapsed = RunOutcome("done", 0), 0.0
    if not candidates:
        _say(f"run {run} has no block checkpoints to compare with: nothing to verify")
    else:
        _say(f"run {run} · verify {verify_id} · re-running every block of epochs {_ranges(shown)}")
        files = store.dir / "replays" / str(verify_id) / "files"
        session, outcome, elapsed = _run_replay_session(
            prep, verify_id, plan, files, quiet=True, threads=threads
        )
    evidence = session.evidence if session is not None else []
    verdict = fidelity.verdict(evidence, _threads_note(prep, threads))
    store.finish_run(verify_id, outcome.status, outcome.exit_code)
    store.set_replay_info(verify_id, {"fidelity": verdict.line})
    if session is not None:
        _say(
            f"verify {verify_id} {outcome.status} in {elapsed:.2f} s: "
            f"{session.stats.probed_blocks} blocks re-executed"
        )
    _say(verdict.line)
    store.close()
    return ReplayResult(verify_id, outcome, True, verdict.line)


def replay_segment(
    script: str,
    run: int,
    replay_id: int,
    spec: str,
    output: Path,
    allow_changes: bool,
    threads: int | None = None,
) -> int:
    """A parallel replay's worker: run one segment quietly; write its lines and evidence."""
    seg = segment_from_spec(spec)
    prep = _prepare_replay(script, run, allow_changes, None, announce=False)
    plan = prep.plan(seg.targets, prep.run_after_loop and seg.after_loop)
    real_stderr = sys.stderr

    def progress() -> None:
        real_stderr.write(PROGRESS_PREFIX + "\n")
        real_stderr.flush()

    files = prep.store.dir / "replays" / str(replay_id) / f"worker-{seg.index + 1}" / "files"
    session, outcome, elapsed = _run_replay_session(
        prep, replay_id, plan, files, quiet=True, on_progress=progress, threads=threads
    )
    s = session.stats
    result = {
        "status": outcome.status,
        "exit_code": outcome.exit_code,
        "error": outcome.error,
        "seconds": elapsed,
        "lines": [dataclasses.asdict(ln) for ln in session.lines],
        "evidence": [dataclasses.asdict(e) for e in session.evidence],
        "stats": {
            "restored_boundaries": s.restored_boundaries,
            "restored_blocks": s.restored_blocks,
            "probed_blocks": s.probed_blocks,
            "bytes_read": s.bytes_read,
            "rerun_cheaper": s.rerun_cheaper,
            "notes": s.notes,
        },
    }
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_text(json.dumps(result, default=repr))
    tmp.replace(output)
    prep.store.close()
    return 0


def _new_statement_after_main_loop(
    new: dict[str, tuple[int, int]], result: CompileResult, main: Any
) -> bool:
    if main is None:
        return False
    main_file = result.files[main.relpath]
    end = main.line
    for lp in main_file.loops:
        if lp.loop_id == main.loop_id:
            end = _loop_end(main_file.source, lp.line)
    for sid, (line, _) in new.items():
        rel = sid.rsplit(":", 1)[0]
        if rel == main.relpath and main.line <= line <= end:
            continue
        if rel == main.relpath and line < main.line and _same_scope_before(main_file, line, main):
            continue
        return True
    return False


def _same_scope_before(fm: Any, line: int, main: Any) -> bool:
    for ls in fm.log_statements:
        if ls["line"] == line:
            return ls["scope"] == main.scope
    return False


def _loop_end(source: str, start: int) -> int:
    lines = source.splitlines()
    header = lines[start - 1]
    indent = len(header) - len(header.lstrip())
    end = start
    for i in range(start, len(lines)):
        text = lines[i]
        code = text.strip() and not text.lstrip().startswith("#")
        if code and len(text) - len(text.lstrip()) <= indent:
            break
        end = i + 1
    return end


def _ranges(values: list[Any]) -> str:
    if not values:
        return "(none)"
    if not all(isinstance(v, int) for v in values):
        return ",".join(map(str, values))
    parts, lo, prev = [], values[0], values[0]
    for v in values[1:]:
        if v == prev + 1:
            prev = v
            continue
        parts.append(f"{lo}–{prev}" if lo != prev else f"{lo}")
        lo = prev = v
    parts.append(f"{lo}–{prev}" if lo != prev else f"{lo}")
    return ",".join(parts)


# --- looking at results -----------------------------------------------------------------


def runs_table(root: Path, store_dir: Path | None = None) -> list[dict[str, Any]]:
    store = Store(root, store_dir)
    out = []
    for r in store.runs():
        total, distinct = store.run_bytes(r["id"])
        cps = [c for c in store.checkpoints(r["id"]) if c.loop != START_LOOP]
        out.append(
            {
                "id": r["id"],
                "kind": r["kind"],
                "of": r["parent"] or "",
                "script": r["script"],
                "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["started"])),
                "epochs": len(store.iterations(r["id"]))
                if r["kind"] == "record"
                else len((r["epochs"] or {}).get("iterations", [])),
                "checkpoints": len(cps),
                "size": _mb(distinct),
                "status": r["status"]
                + ("" if (r["epochs"] or {}).get("faithful", True) else " (unfaithful)"),
            }
        )
    store.close()
    return out


@dataclass
class GcResult:
    deleted: list[int]
    files: int
    freed: int


def gc(
    root: Path, runs: list[int], keep_last: int | None, store_dir: Path | None = None
) -> GcResult:
    """Delete the given runs (and their replays), or all but the last N records of each script;
    then free every blob no remaining checkpoint uses."""
    if keep_last is not None and keep_last < 0:
        raise UsageError(f"--keep-last {keep_last}: give a number of runs, 0 or more")
    store = Store(root, store_dir)
    try:
        known = {r["id"]: r for r in store.runs()}
        unknown = [r for r in runs if r not in known]
        if unknown:
            raise UsageError(f"unknown run {', '.join(map(str, unknown))}; `florc runs` lists them")
        doomed = set(runs)
        if keep_last is not None:
            by_script: dict[str, list[int]] = {}
            for r in known.values():
                if r["kind"] == "record":
                    by_script.setdefault(r["script"], []).append(r["id"])
            for ids in by_script.values():
                doomed |= set(sorted(ids)[: max(0, len(ids) - keep_last)])
        with store.exclusive() as alone:
            if not alone:
                raise FlorcError(
                    "a record or replay is using this store; run gc when it has finished"
                )
            deleted = store.delete_runs(doomed)
            files, freed = store.collect_garbage()
        return GcResult(deleted, files, freed)
    finally:
        store.close()


def logs_rows(
    root: Path, run: int | None, store_dir: Path | None = None, name: str | None = None
) -> list[dict[str, Any]]:
    store = Store(root, store_dir)
    if run is not None and store.run(run) is None:
        raise UsageError(f"unknown run {run}; `florc runs` lists them")
    rows = store.logs(run)
    store.close()
    for r in rows:
        r["epoch"] = json.loads(r["epoch"]) if r["epoch"] else None
    if name is not None:
        rows = [r for r in rows if name in r["name"] or name in r["value"]]
    return rows
