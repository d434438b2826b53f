"""`florc verify`: re-execute every block in a sample of recorded epochs and compare each
block's end state with its recorded checkpoint (and the recorded log statements' output with
what they print again). A divergence means the recording cannot be trusted to replay exactly."""

from __future__ import annotations

from florc.contract import START_LOOP
from florc.launch import environment
from florc.replay.epochs import epochs_text
from florc.replay.local import SessionRun, run_session
from florc.replay.prepare import PreparedReplay
from florc.replay.results import ReplayResult, ReplayStats
from florc.report import Reporter, plural
from florc.runtime import fidelity
from florc.runtime.runner import RunOutcome


def sample_epochs(prep: PreparedReplay, sample: int) -> list[int]:
    """Up to `sample` iterations with block checkpoints, spread evenly over the run."""
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
    return candidates


def verify(
    prep: PreparedReplay, sample: int, reporter: Reporter, threads: int | None = None
) -> ReplayResult:
    """Re-execute every block of `sample` recorded epochs (with the recording's torch thread
    count, unless `threads` asks for another) and compare with the recording."""
    main = prep.result.main_loop
    candidates = sample_epochs(prep, sample)
    blocks = {
        lp.loop_id
        for fm in prep.result.files.values()
        for lp in fm.loops
        if lp.loop_id != main and not lp.unbounded
    }
    plan = prep.plan(candidates, run_after_loop=False)
    plan.probed = blocks
    store = prep.store
    verify_id = store.create_run(
        "verify",
        prep.result.script,
        prep.meta["argv"],
        environment(),
        parent=prep.run,
        main_loop=main,
        epochs={"spec": "verify", "iterations": candidates, "faithful": True},
    )
    ran: SessionRun | None = None
    if not candidates:
        reporter.note(f"run {prep.run} has no block checkpoints to compare with: nothing to verify")
    else:
        reporter.note(
            f"run {prep.run} · verify {verify_id} · re-running every block of epochs "
            f"{epochs_text(prep.values, candidates)}"
        )
        ran = run_session(
            store,
            verify_id,
            prep.result,
            plan,
            prep.path,
            prep.root,
            prep.meta,
            store.replay_dir(verify_id) / "files",
            reporter,
            quiet=True,
            threads=threads,
        )
    outcome = ran.outcome if ran is not None else RunOutcome("done", 0)
    evidence = ran.session.evidence if ran is not None else []
    verdict = fidelity.verdict(evidence, prep.threads_note(threads))
    store.finish_run(verify_id, outcome.status, outcome.exit_code)
    store.set_replay_info(verify_id, {"fidelity": verdict.line})
    stats = ReplayStats.of(ran.session.stats) if ran is not None else ReplayStats()
    if ran is not None:
        reporter.note(
            f"verify {verify_id} {outcome.status} in {ran.seconds:.2f} s: "
            f"{plural(stats.probed_blocks, 'block')} re-executed"
        )
    reporter.note(verdict.line)
    return ReplayResult(verify_id, outcome, True, verdict, stats)
