"""The workers' outputs merged into one replay: each segment's own lines in epoch order (a worker
also runs iterations before its first target, silently, and only the first shows what precedes
the main loop), their evidence and stats, and a record per segment for the store."""

from __future__ import annotations

from dataclasses import dataclass, field

from florc.contract import Evidence, LogLine
from florc.replay.executors import WorkerResult
from florc.replay.results import ReplayStats, SegmentRecord
from florc.runtime.runner import RunOutcome


@dataclass
class Merged:
    outcome: RunOutcome
    lines: list[LogLine] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    stats: ReplayStats = field(default_factory=ReplayStats)
    records: list[SegmentRecord] = field(default_factory=list)  # per segment, in order

    @property
    def failed(self) -> list[SegmentRecord]:
        return [r for r in self.records if not r.ok]


def _belongs(line: LogLine, record: SegmentRecord) -> bool:
    seg = record.segment
    before_loop = line.iteration is None and not line.after_loop
    return (
        line.iteration in seg.targets
        or (before_loop and seg.index == 0)
        or (line.after_loop and seg.after_loop)
    )


def merge(results: list[WorkerResult]) -> Merged:
    """One replay from its workers' results (in any order)."""
    out = Merged(RunOutcome("done", 0))
    for r in sorted(results, key=lambda r: r.segment.index):
        record = SegmentRecord(r.segment)
        out.records.append(record)
        if not r.ok or r.output is None or r.output.status != "done":
            record.error = (r.output.error if r.output else None) or r.error
            continue
        record.ok = True
        record.evidence = r.output.evidence
        out.lines.extend(ln for ln in r.output.lines if _belongs(ln, record))
        out.evidence.extend(r.output.evidence)
        out.stats = out.stats.merge(r.output.stats)
    if out.failed:
        out.outcome = RunOutcome("failed", 1, f"{len(out.failed)} of {len(results)} workers failed")
    return out
