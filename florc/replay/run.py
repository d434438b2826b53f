"""`florc replay`: show the new log statements' output for the requested epochs.

One process runs the edited script under a replay session (local.py); with `--workers N` the
epochs are split into segments (segments.py), each worker gets a plan file (worker.py) and runs
on an executor (executors.py), and their outputs are merged (merge.py). Either way the replay's
values are stored, its fidelity verdict computed, and the run closed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from florc.contract import loop_framework
from florc.errors import UsageError
from florc.launch import environment
from florc.replay.epochs import epochs_text, parse_epochs
from florc.replay.executors import (
    Executor,
    Job,
    LocalExecutor,
    RayExecutor,
    cpu_count,
    florc_command,
    gpu_count,
)
from florc.replay.local import run_session
from florc.replay.merge import Merged, merge
from florc.replay.prepare import PreparedReplay
from florc.replay.results import ReplayResult, ReplayStats, SegmentRecord
from florc.replay.segments import Segment, plan_segments, plan_threads
from florc.replay.worker import RANK_FIELD, WorkerPlan
from florc.report import Reporter, plural
from florc.runtime import fidelity
from florc.runtime.session import log_rows, statement_codes

# how a replay's first line names a framework's epochs
FRAMEWORK_EPOCHS = {
    "PyTorch Lightning": "PyTorch Lightning's epochs (trainer.current_epoch, from 0)",
    "Hugging Face transformers": (
        "Hugging Face transformers' epochs (trainer.state.epoch at the epoch's start, from 0)"
    ),
}


def replay(
    prep: PreparedReplay,
    epochs: str,
    reporter: Reporter,
    workers: int = 1,
    executor: str = "local",
    address: str | None = None,
    threads: int | None = None,
) -> ReplayResult:
    """Replay `epochs` of the prepared run. threads: torch threads per worker (default: the
    recording's count)."""
    store, meta = prep.store, prep.meta
    values = prep.values
    if not values:
        raise UsageError(prep.nothing_to_replay())
    targets, how = parse_epochs(epochs, values)
    framework = loop_framework(prep.result.main_loop)
    if framework is not None:
        how = FRAMEWORK_EPOCHS[framework]
    recorded_threads = meta["env"].get("torch_threads")
    per_worker = threads  # None: the recording's count
    world = prep.world_size
    if world > 1:  # each segment is a set of `world` ranks: as many sets as the cores hold
        per_rank = threads or recorded_threads or 1
        fits = max(1, cpu_count() // (world * per_rank))
        if workers > fits and executor == "local":
            reporter.note(
                f"{plural(fits, 'worker')} instead of {workers}: each runs {world} ranks of "
                f"{plural(per_rank, 'thread')} on {plural(cpu_count(), 'core')}"
            )
            workers = fits
    elif executor == "local" and workers > 1 and len(targets) > 1:
        tp = plan_threads(workers, recorded_threads, threads, cpu_count(), gpu_count())
        if tp.note:
            reporter.note(tp.note)
        workers = tp.workers
        if tp.threads != recorded_threads:
            per_worker = tp.threads
    used_threads = per_worker or recorded_threads
    faithful = prep.alignment.faithful
    replay_id = store.create_run(
        "replay",
        prep.result.script,
        meta["argv"],
        environment(),
        parent=prep.run,
        main_loop=prep.result.main_loop,
        epochs={"spec": epochs, "iterations": targets, "faithful": faithful},
    )
    store.add_sources(replay_id, prep.edited)
    reporter.note(
        f"run {prep.run} · replay {replay_id} · epochs {epochs_text(values, targets)} — {how}"
        + ("" if faithful else " · UNFAITHFUL (code changed)")
    )
    if not prep.alignment.new_statements:
        reporter.note(
            "no new log statements: nothing to show (add print/log statements to the script)"
        )
    t0 = time.perf_counter()
    info: dict[str, Any] = {}
    records: list[SegmentRecord] = []
    if (workers > 1 and len(targets) > 1) or executor != "local" or world > 1:
        segments = plan_segments(targets, prep.anchors(), workers)
        if len(segments) < min(workers, len(targets)):
            reporter.note(
                f"{len(segments)} of {workers} workers would shorten this replay: more would "
                "start from the same checkpoint (record with a larger --overhead or "
                "--checkpoint-all for more starting points)"
            )
        for seg in segments:
            origin = (
                "from the start"
                if seg.start == 0
                else f"from the checkpoint before epoch {epochs_text(values, [seg.start])}"
            )
            ranks = f", {world} ranks" if world > 1 else ""
            reporter.note(
                f"worker {seg.index + 1}: epochs {epochs_text(values, seg.targets)} "
                f"({origin}{ranks})"
            )
        done = run_workers(prep, replay_id, segments, executor, address, per_worker, reporter)
        records = done.records
        info["segments"] = [r.to_dict() for r in records]
        outcome, lines, evidence, stats = done.outcome, done.lines, done.evidence, done.stats
        summary = f"{plural(len(segments), 'worker')} ({executor}); " + stats.summary()
        if world > 1:
            for line in rank_verdicts(evidence, world, prep.threads_note(used_threads)):
                reporter.note(line)
    else:
        plan = prep.plan(targets, prep.run_after_loop)
        ran = run_session(
            store,
            replay_id,
            prep.result,
            plan,
            prep.path,
            prep.root,
            meta,
            store.replay_dir(replay_id) / "files",
            reporter,
            threads=threads,
        )
        outcome, lines, evidence = ran.outcome, ran.session.lines, ran.session.evidence
        stats = ReplayStats.of(ran.session.stats)
        for note in stats.notes[:5]:
            reporter.note(note)
        summary = stats.summary()
    elapsed = time.perf_counter() - t0
    store.add_logs(replay_id, log_rows(lines, statement_codes(prep.result)))
    verdict = fidelity.verdict(evidence, prep.threads_note(used_threads))
    store.finish_run(replay_id, outcome.status, outcome.exit_code)
    store.set_replay_info(replay_id, {"fidelity": verdict.line, **info})
    recorded_seconds = (meta["finished"] or time.time()) - meta["started"]
    reporter.note(
        f"replay {replay_id} {outcome.status} in {elapsed:.2f} s (recording took "
        f"{recorded_seconds:.2f} s): {summary}"
    )
    if records and outcome.status != "done":
        reporter.note(
            "rerun only the failed workers with: florc replay --retry " + prep.result.script
        )
    reporter.note(verdict.line)
    return ReplayResult(replay_id, outcome, faithful, verdict, stats, records)


def rank_verdicts(
    evidence: list[fidelity.Evidence], world: int, threads: tuple[int, int] | None
) -> list[str]:
    """The fidelity verdict of each rank of a distributed replay."""
    return [
        f"rank {r}: " + fidelity.verdict([e for e in evidence if e.rank == r], threads).line
        for r in range(world)
    ]


def executor_for(
    name: str, address: str | None, threads: int | None, recorded_vars: dict[str, str] | None
) -> Executor:
    if name == "ray":
        return RayExecutor(address, threads, recorded_vars)
    return LocalExecutor(threads, recorded_vars)


def run_workers(
    prep: PreparedReplay,
    replay_id: int,
    segments: list[Segment],
    executor: str,
    address: str | None,
    asked_threads: int | None,
    reporter: Reporter,
) -> Merged:
    """Run segments in worker processes; show the new statements' output, merged in order.

    Each worker runs with the recording's torch thread count (replay() chose how many workers
    the cores hold), or with asked_threads (given, or fewer where each worker has a GPU)."""
    values = prep.values
    env = prep.meta["env"]
    threads = asked_threads or env.get("torch_threads")
    recorded_vars = None if asked_threads else env.get("thread_env")
    folder = prep.store.replay_dir(replay_id)
    folder.mkdir(parents=True, exist_ok=True)
    jobs = []
    world = prep.world_size
    for seg in segments:
        name = f"segment-{seg.index}" + (f".rank-{RANK_FIELD}" if world > 1 else "")
        output = folder / f"segment-{seg.index}.json"
        for rank in range(world):
            WorkerPlan(
                script=prep.path,
                root=prep.root,
                store=prep.store.dir,
                run=prep.ranks.get(rank, prep.run),
                replay=replay_id,
                segment=seg,
                compiled=prep.result,
                plan=prep.plan(seg.targets, prep.run_after_loop and seg.after_loop, rank),
                meta=prep.meta,
                threads=asked_threads,
                files=folder
                / f"worker-{seg.index + 1}"
                / (f"rank-{rank}" if world > 1 else "")
                / "files",
                output=Path(str(folder / f"{name}.out.json").replace(RANK_FIELD, str(rank)))
                if world > 1
                else output,
            ).write(Path(str(folder / f"{name}.plan.json").replace(RANK_FIELD, str(rank))))
        plan_file = folder / f"{name}.plan.json"
        if world > 1:  # the segment's ranks, launched together by torchrun's launcher
            argv = [*florc_command(), "_segment_ranks", str(plan_file), str(world), str(output)]
        else:
            argv = [*florc_command(), "_segment", str(plan_file)]
        jobs.append(Job(seg, argv, output, processes=world))
    results = executor_for(executor, address, threads, recorded_vars).run(
        jobs, Path.cwd(), reporter
    )
    done = merge(results)
    for ln in done.lines:
        if ln.new:
            text = ln.shown if ln.shown is not None else ln.text
            reporter.output(text, err=ln.stream != "stdout")
    for rec in done.failed:
        epochs = epochs_text(values, rec.segment.targets)
        reporter.note(f"worker {rec.segment.index + 1} (epochs {epochs}) failed: {rec.error}")
    return done
