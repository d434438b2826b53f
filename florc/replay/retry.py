"""`florc replay --retry`: rerun only the failed workers of a run's latest parallel replay and
merge their results into that replay (the store keeps each segment's record: its plan, whether
it succeeded, its evidence)."""

from __future__ import annotations

import time

from florc.errors import UsageError
from florc.replay.epochs import epochs_text
from florc.replay.prepare import PreparedReplay
from florc.replay.results import ReplayResult, SegmentRecord
from florc.replay.run import run_workers
from florc.report import Reporter, plural
from florc.runtime import fidelity
from florc.runtime.runner import RunOutcome
from florc.runtime.session import log_rows, statement_codes


def retry(
    prep: PreparedReplay,
    reporter: Reporter,
    executor: str = "local",
    address: str | None = None,
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
    records = [SegmentRecord.from_dict(d) for d in latest["epochs"]["segments"]]
    failed = [rec.segment for rec in records if not rec.ok]
    values = prep.values
    reporter.note(
        f"run {prep.run} · replay {replay_id} · retrying "
        + ", ".join(
            f"worker {s.index + 1} (epochs {epochs_text(values, s.targets)})" for s in failed
        )
    )
    t0 = time.perf_counter()
    done = run_workers(prep, replay_id, failed, executor, address, threads, reporter)
    redone = {rec.segment.index: rec for rec in done.records}
    records = [redone.get(rec.segment.index, rec) for rec in records]
    store.add_logs(replay_id, log_rows(done.lines, statement_codes(prep.result)))
    evidence = [e for rec in records for e in rec.evidence]
    verdict = fidelity.verdict(evidence, prep.threads_note(threads))
    outcome = RunOutcome("done", 0) if all(rec.ok for rec in records) else done.outcome
    store.finish_run(replay_id, outcome.status, outcome.exit_code)
    store.set_replay_info(
        replay_id, {"fidelity": verdict.line, "segments": [r.to_dict() for r in records]}
    )
    reporter.note(
        f"replay {replay_id} {outcome.status} after retry in {time.perf_counter() - t0:.2f} s: "
        f"{plural(len(failed), 'worker')} ({executor}); {done.stats.summary()}"
    )
    reporter.note(verdict.line)
    return ReplayResult(replay_id, outcome, prep.alignment.faithful, verdict, done.stats, records)
