"""One segment of a distributed replay: the job's ranks, launched together.

Code that runs collectives (DDP's all-reduce, a DistributedSampler's share of the data) can only
re-execute as the full set of ranks it was recorded with. `python -m florc _segment_ranks PLAN
N OUTPUT` starts N ranks through torchrun's own launcher (an elastic agent on this machine, a
rendezvous on a free port), each `florc _segment` reading the plan of its own rank (PLAN names
it with `{rank}`); once all have ended it merges their outputs into the one WorkerOutput the
executors read: lines in (iteration, step, rank) order, evidence and stats of every rank.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from florc.contract import LogLine
from florc.replay.results import ReplayStats, WorkerOutput
from florc.replay.worker import RANK_FIELD
from florc.runtime import distributed


def _in_order(lines: list[LogLine]) -> list[LogLine]:
    """The ranks' lines interleaved as the ranks ran in step: before the main loop, then per
    iteration the n-th run of lines of one step (a batch, or the code between batches) of
    every rank, rank by rank, then after the loop. Each rank's own order is kept."""
    keys = []
    group: dict[tuple[int | None, int | None], int] = {}  # (rank, iteration) -> group number
    last: dict[tuple[int | None, int | None], int | None] = {}
    for n, ln in enumerate(lines):
        phase = 2 if ln.after_loop else (0 if ln.iteration is None else 1)
        at = (ln.rank, ln.iteration)
        if at not in group or last[at] != ln.step:
            group[at] = group.get(at, -1) + 1
            last[at] = ln.step
        keys.append(((phase, ln.iteration or 0, group[at], ln.rank or 0, n), ln))
    return [ln for _, ln in sorted(keys, key=lambda kv: kv[0])]


def merge_ranks(outputs: dict[int, WorkerOutput | None], errors: str = "") -> WorkerOutput:
    """The ranks' outputs as one segment's output (failed unless every rank's is done)."""
    lines: list[LogLine] = []
    evidence = []
    stats = ReplayStats()
    failed = []
    seconds = 0.0
    for rank, out in sorted(outputs.items()):
        if out is None or out.status != "done":
            failed.append(f"rank {rank}: " + ((out.error if out else None) or errors or "failed"))
            continue
        for ln in out.lines:
            ln.rank = rank
        for e in out.evidence:
            e.rank = rank
        lines.extend(out.lines)
        evidence.extend(out.evidence)
        stats = stats.merge(out.stats)
        seconds = max(seconds, out.seconds)
    lines = _in_order(lines)
    if failed:
        return WorkerOutput("failed", 1, "; ".join(failed), seconds, lines, evidence, stats)
    return WorkerOutput("done", 0, None, seconds, lines, evidence, stats)


def run_ranks(plan_template: Path, world: int, output: Path) -> int:
    """Launch `world` ranks of one segment and write their merged output."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    error = ""
    try:
        distributed.launch(
            world, f"florc-{uuid.uuid4().hex[:12]}", ["-m", "florc", "_segment", str(plan_template)]
        )
    except ChildFailedError as exc:
        error = f"a rank failed ({exc.get_first_failure()[1].message or 'see its output'})"
    outputs = {
        r: WorkerOutput.read(
            Path(str(plan_template).replace(RANK_FIELD, str(r)).replace(".plan.json", ".out.json"))
        )
        for r in range(world)
    }
    merged = merge_ranks(outputs, error)
    merged.write(output)
    return merged.exit_code
