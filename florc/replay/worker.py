"""A parallel replay's worker: one plan file in, one output file out.

The parent prepares the replay once (prepare.py) and writes each worker a plan file: the edited
script's compile result, the recorded run's argv and environment, the segment, and the replay
plan (alignment's statement map, the checkpoint rows, the recorded values). The worker
(`python -m florc _segment PLAN`) loads it and runs the script: it neither compiles nor aligns,
and reads the store only for the checkpoints it restores. It shows nothing itself; it reports
each finished main-loop iteration on stderr (PROGRESS_PREFIX) and writes its lines, evidence and
stats as a `WorkerOutput` for the parent to merge.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from florc.contract import CompileResult, ReplayPlan
from florc.errors import UsageError
from florc.replay.executors import PROGRESS_PREFIX
from florc.replay.local import run_session
from florc.replay.results import ReplayStats, WorkerOutput
from florc.replay.segments import Segment
from florc.report import Reporter
from florc.store.index import CheckpointRow, Store

PLAN_FORMAT = 1
RANK_FIELD = "{rank}"  # in a plan file's name: the rank that reads it


@dataclass
class WorkerPlan:
    """Everything a worker needs to run its segment."""

    script: Path
    root: Path
    store: Path  # the store folder
    run: int  # the recorded run
    replay: int  # the replay this worker is part of
    segment: Segment
    compiled: CompileResult
    plan: ReplayPlan
    meta: dict[str, Any]  # the recorded run's argv and env
    threads: int | None  # torch threads (None: the recording's)
    files: Path  # where the script's writes go
    output: Path  # where the worker writes its WorkerOutput

    def write(self, path: Path) -> None:
        data = {
            "format": PLAN_FORMAT,
            "script": str(self.script),
            "root": str(self.root),
            "store": str(self.store),
            "run": self.run,
            "replay": self.replay,
            "segment": self.segment.to_dict(),
            "compiled": self.compiled.to_dict(),
            "plan": plan_to_dict(self.plan),
            "meta": {"argv": self.meta["argv"], "env": self.meta["env"]},
            "threads": self.threads,
            "files": str(self.files),
            "output": str(self.output),
        }
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, default=repr))
        tmp.replace(path)

    @classmethod
    def read(cls, path: Path) -> WorkerPlan:
        try:
            d = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(f"{path}: cannot read the worker's plan ({exc})") from None
        if d.get("format") != PLAN_FORMAT:
            raise UsageError(f"{path}: a worker plan of another florc version")
        return cls(
            script=Path(d["script"]),
            root=Path(d["root"]),
            store=Path(d["store"]),
            run=d["run"],
            replay=d["replay"],
            segment=Segment.from_dict(d["segment"]),
            compiled=CompileResult.from_dict(d["compiled"]),
            plan=plan_from_dict(d["plan"]),
            meta=d["meta"],
            threads=d["threads"],
            files=Path(d["files"]),
            output=Path(d["output"]),
        )


def plan_to_dict(plan: ReplayPlan) -> dict[str, Any]:
    """A ReplayPlan as JSON-able data (tuple keys become lists)."""
    return {
        "targets": plan.targets,
        "probed": sorted(plan.probed),
        "new_statements": sorted(plan.new_statements),
        "run_after_loop": plan.run_after_loop,
        "checkpoints": [dataclasses.asdict(row) for row in plan.checkpoints.values()],
        "final_boundary": plan.final_boundary,
        "statement_map": plan.statement_map,
        "recorded_values": [[*key, values] for key, values in plan.recorded_values.items()],
        "rank": plan.rank,
        "replicated": [dataclasses.asdict(row) for row in plan.replicated.values()],
    }


def plan_from_dict(d: dict[str, Any]) -> ReplayPlan:
    rows = [CheckpointRow(**row) for row in d["checkpoints"]]
    return ReplayPlan(
        targets=[int(t) for t in d["targets"]],
        probed=set(d["probed"]),
        new_statements=set(d["new_statements"]),
        run_after_loop=bool(d["run_after_loop"]),
        checkpoints={(r.loop, r.iteration, r.occurrence): r for r in rows},
        final_boundary=d["final_boundary"],
        statement_map=dict(d["statement_map"]),
        recorded_values={(s, it, step): list(v) for s, it, step, v in d["recorded_values"]},
        rank=d.get("rank"),
        replicated={
            (r.loop, r.iteration, r.occurrence): r
            for r in (CheckpointRow(**row) for row in d.get("replicated", []))
        },
    )


def run_worker(plan_file: Path, reporter: Reporter) -> int:
    """The `_segment` command: run one segment quietly; write its lines, evidence and stats."""
    rank = os.environ.get("RANK", "0")
    # a rank of a distributed replay: the plan of its own rank (ranks.py names them so)
    wp = WorkerPlan.read(Path(str(plan_file).replace(RANK_FIELD, rank)))
    real_stderr = sys.stderr

    def progress() -> None:
        if rank == "0":  # the ranks of a segment advance together: one speaks for them
            real_stderr.write(PROGRESS_PREFIX + "\n")
            real_stderr.flush()

    with Store(wp.root, wp.store) as store:
        store.hold_shared()
        ran = run_session(
            store,
            wp.replay,
            wp.compiled,
            wp.plan,
            wp.script,
            wp.root,
            wp.meta,
            wp.files,
            reporter,
            quiet=True,
            on_progress=progress,
            threads=wp.threads,
        )
    session, outcome = ran.session, ran.outcome
    WorkerOutput(
        status=outcome.status,
        exit_code=outcome.exit_code,
        error=outcome.error,
        seconds=ran.seconds,
        lines=list(session.lines),
        evidence=list(session.evidence),
        stats=ReplayStats.of(session.stats),
    ).write(wp.output)
    return 0
