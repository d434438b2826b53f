"""`florc record`: compile the script (or take it from the compile cache), open a run in the
store, and run the script under a record session that checkpoints its loops within a budget.

Also the string-hash seed: the order of a set of strings depends on PYTHONHASHSEED, which Python
draws at random at start-up. Record runs with a pinned one and keeps it with the run
(`new_hash_seed`); replay, its workers and verify run with the same (`recorded_hash_seed`).
Changing it needs a new interpreter, which only the command line can start.
"""

from __future__ import annotations

import math
import os
import random
import re
import sqlite3
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from florc import project
from florc.contract import START_LOOP, CompileResult
from florc.errors import FlorcError, UsageError
from florc.launch import (
    compiled_code,
    describe_main,
    environment,
    framework_where,
    git_commit,
    git_dirty,
    import_hook,
    make_deterministic,
    mb,
    no_main_loop,
    script_path,
)
from florc.project import find_root, store_location
from florc.report import Reporter, Silent, plural
from florc.runtime import distributed
from florc.runtime import state as st
from florc.runtime.policy import DEFAULT_BUDGET, CheckpointPolicy
from florc.runtime.record import RecordSession
from florc.runtime.runner import RunOutcome, run_script
from florc.runtime.state.tracker import TensorTracker
from florc.runtime.writer import CheckpointJob, Writer
from florc.store.index import Store
from florc.transforms import cache as compile_cache

# The compiler (libcst) is imported where it is used: a record whose compile result is in the
# cache never loads it.


@dataclass
class RecordResult:
    run_id: int
    outcome: RunOutcome

    @property
    def exit_code(self) -> int:
        return self.outcome.exit_code


def new_hash_seed() -> str | None:
    """The PYTHONHASHSEED a record should run with: a fresh one when this process's string
    hashing is random (the seed then cannot be kept), None when it is already pinned."""
    if os.environ.get("PYTHONHASHSEED", "random") == "random":
        if distributed.current() is not None:  # one seed for all the ranks of a launch
            return distributed.shared_hash_seed(distributed.launch_key())
        return str(random.SystemRandom().randint(1, 2**32 - 1))
    return None


def recorded_hash_seed(script: str | None, run: int | None, root: Path | None = None) -> str | None:
    """The PYTHONHASHSEED a recorded run ran with; None if unknown (the command will say why)."""
    try:
        if script is not None:
            path = script_path(script)
            root = find_root(path)
        assert root is not None
        with Store(root, store_location(root), readonly=True) as store:
            if run is None and script is not None:
                run = store.latest_run(str(path.relative_to(root)))
            elif run is None:
                recorded = store.runs("record")
                run = recorded[-1]["id"] if recorded else None
            meta = store.run(run) if run is not None else None
    except (FlorcError, OSError, sqlite3.Error):
        return None
    return (meta or {}).get("env", {}).get("hash_seed")


def compile_for_record(path: Path, root: Path, store_dir: Path) -> tuple[CompileResult, bool]:
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
    reporter: Reporter | None = None,
) -> RecordResult:
    """Run `script` with `args`, checkpointing its loops within the overhead budget (a fraction
    of training time; default: the configured one, else DEFAULT_BUDGET)."""
    rank = distributed.current()
    say = reporter or Silent()
    if rank is not None and not rank.leader:
        say = Silent()  # rank 0 speaks for the job; the script's own output still shows
    path = script_path(script)
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
    location = store_location(root, store_dir)
    result, cached = compile_for_record(path, root, location)
    code = compiled_code(result, result.script)
    for warning in result.warnings:
        say.warn(warning)
    if deterministic:
        make_deterministic()
    with Store(root, location) as store:
        store.hold_shared()
        env = environment()
        env["deterministic"] = deterministic
        env["git_commit"] = git_commit(root)
        env["git_dirty"] = git_dirty(root) if env["git_commit"] else None
        env["overhead_budget"] = None if checkpoint_all else overhead
        env["compress"] = compress
        env["hash_seed"] = os.environ.get("PYTHONHASHSEED")  # the CLI pins it (new_hash_seed)
        run_id = _open_run(store, result, args, env, rank)
        store.add_sources(run_id, {rel: fm.source for rel, fm in result.files.items()})
        tracker = TensorTracker()
        policy = CheckpointPolicy(overhead)
        writer = Writer(
            root, store.dir, compress=compress, tracker=tracker, observe=policy.observe_idle
        )
        session = RecordSession(
            store,
            run_id,
            result,
            writer=writer,
            policy=policy,
            tracker=tracker,
            ranks=distributed.RankGroup(rank) if rank is not None else None,
        )
        where = store.dir.relative_to(root) if store.dir.is_relative_to(root) else store.dir
        policy_text = "every opportunity" if checkpoint_all else f"overhead budget {overhead:.0%}"
        how = "instrumented (compile cache hit)" if cached else "instrumented"
        job = f" · rank 0 of {rank.world_size}" if rank is not None else ""
        say.note(
            f"{how} {result.script} ({describe_main(result)}) · run {run_id}{job} · "
            f"store {where}/ · checkpoints: {policy_text}"
        )
        if result.main_loop is None:
            say.note(no_main_loop(result))
        start = st.Snapshot(rng=st.start_rng(_imports_torch(result)))
        writer.submit_checkpoint(CheckpointJob(run_id, START_LOOP, 0, 0, start, {}))
        t0 = time.perf_counter()
        outcome = run_script(session, code, path, args, import_hook(result, root, session))
        elapsed = time.perf_counter() - t0
        status = outcome.status
        if writer.stopped is not None and status == "done":
            status = "partial"  # the script finished; its checkpoints stopped part-way
        try:
            _finish_record(store, run_id, status, outcome)
            iterations = len(store.iterations(run_id))
            total, stored = store.run_bytes(run_id)
        except (sqlite3.Error, OSError) as exc:
            # The store cannot be written any more (disk full, ...): the training itself is
            # done and its exit status stands; the run will show as killed (its process is gone).
            say.warn(f"could not mark run {run_id} as {status} in the store ({exc})")
            if outcome.error and outcome.status != "done":
                say.note(outcome.error)
            return RecordResult(run_id, outcome)
    s = session.stats
    if result.main_loop is None:
        fw = result.framework
        why = (
            f"the training loop is inside {fw['framework']} ({framework_where(fw)})"
            if fw
            else "no main loop"
        )
        line = f"run {run_id} {status} — nothing to replay: {why}, "
    else:
        line = f"run {run_id} {status} — {plural(iterations, 'main-loop iteration')}, "
    line += f"{plural(s.checkpoints, 'checkpoint')} ({mb(total)}, {mb(stored)} stored)"
    if tracker.stats.skipped_bytes:
        line += f", {mb(tracker.stats.skipped_bytes)} of unchanged tensors not copied again"
    if s.skipped:
        line += f", {s.skipped} skipped to stay within the budget"
    summary = policy.summary()
    if summary["compute_seconds"]:
        line += (
            f"; checkpointing cost {summary['cost_seconds']:.2f} s of "
            f"{summary['compute_seconds']:.2f} s training "
            f"({summary['cost_seconds'] / summary['compute_seconds']:.1%}; "
            f"writer CPU {summary['writer_cpu_seconds']:.2f} s)"
        )
    if s.flush_seconds >= 0.05:
        line += f" (incl. {s.flush_seconds:.2f} s writing the last ones after training)"
    line += f"; {elapsed:.2f} s in all"
    if s.unusable:
        line += (
            f"; {plural(s.unusable, 'checkpoint')} could not be taken "
            "(those parts re-execute at replay)"
        )
    say.note(line)
    if tracker.stats.stale:
        s.notes.insert(0, stale_note(tracker))
    for note in s.notes[:5]:
        say.note(note)
    if outcome.error and outcome.status != "done":
        say.note(outcome.error)
        missing = _missing_framework(result, outcome.error)
        if missing:
            say.note(
                f"{missing} is not installed in the Python florc runs with ({sys.executable}); "
                f"a plain run fails the same way: install it there, then record again"
            )
    return RecordResult(run_id, outcome)


def _open_run(
    store: Store,
    result: CompileResult,
    args: list[str],
    env: dict[str, Any],
    rank: distributed.RankInfo | None,
) -> int:
    """The run this process records into: the job's (rank 0, or no ranks), else its rank's run
    under the job's, once rank 0 has opened that."""
    main = result.main_loop
    if rank is None:
        return store.create_run("record", result.script, args, env, main_loop=main)
    key = distributed.launch_key()
    env["distributed"] = {"rank": rank.rank, "world_size": rank.world_size, "launch": key}
    if rank.leader:
        return store.create_run("record", result.script, args, env, main_loop=main)
    deadline = time.monotonic() + distributed.JOIN_TIMEOUT_SECONDS
    while (job := store.job_run(key)) is None:
        if time.monotonic() > deadline:
            raise FlorcError(
                f"rank {rank.rank}: rank 0 of this launch did not open its run in "
                f"{distributed.JOIN_TIMEOUT_SECONDS:.0f} s; check that every rank runs "
                "`florc record` with the same store"
            )
        time.sleep(0.05)
    return store.create_run("rank", result.script, args, env, parent=job, main_loop=main)


def record_ranks(nproc: int, florc_args: list[str]) -> int:
    """Record a job of `nproc` ranks on this machine: each rank runs `florc record florc_args`
    (torchrun's launcher sets RANK, WORLD_SIZE, MASTER_ADDR/PORT). One launch id and one
    string-hash seed for all of them. Returns the job's exit status (the first failed rank's)."""
    if nproc < 1:
        raise UsageError(f"--nproc-per-node {nproc}: give 1 or more processes")
    try:
        from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    except ImportError:
        raise UsageError(
            "--nproc-per-node launches the ranks with torchrun's launcher: install torch"
        ) from None
    key = f"florc-{uuid.uuid4().hex[:12]}"
    os.environ[distributed.LAUNCH_VAR] = key
    os.environ.setdefault("PYTHONHASHSEED", distributed.shared_hash_seed(key))
    try:
        distributed.launch(nproc, key, ["-m", "florc", "record", *florc_args])
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        code = failure.exitcode
        how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        sys.stderr.write(
            f"florc: rank {rank} ended ({how}); the job stopped. Its checkpoints that every rank "
            "wrote can be replayed\n"
        )
        return code if code > 0 else 1
    return 0


def stale_note(tracker: TensorTracker) -> str:
    """Said when tensors changed behind their version counter after checkpoints skipped them."""
    where = ", ".join(f"`{p}`" for p in tracker.stats.stale_paths[:3] if p) or "a tensor"
    return (
        f"{plural(tracker.stats.stale, 'checkpoint')} marked unusable: {where} changed without "
        "PyTorch's version counter seeing it (a write through `.data` or a kernel it does not "
        "track), after those checkpoints had skipped it as unchanged; florc copies it at every "
        "checkpoint from now on, and replay re-executes those parts"
    )


def _missing_framework(result: CompileResult, error: str) -> str | None:
    """The framework's package, when the run failed because it cannot be imported."""
    m = re.search(r"No module named '([\w.]+)'", error)
    if result.framework is None or m is None:
        return None
    return m.group(1)


_TORCH_IMPORT = re.compile(r"^\s*(?:import|from)\s+torch\b", re.MULTILINE)


def _imports_torch(result: CompileResult) -> bool:
    return any(_TORCH_IMPORT.search(fm.source) for fm in result.files.values())


def _finish_record(store: Store, run_id: int, status: str, outcome: RunOutcome) -> None:
    torch = sys.modules.get("torch")
    if torch is not None:  # replay workers use as many threads, for the same floating point
        store.update_env(run_id, {"torch_threads": torch.get_num_threads()})
    store.finish_run(run_id, status, outcome.exit_code)
