"""What a replay returns, as values: its stats, each worker's output, each segment's record.

The same values cross every boundary: a worker writes its `WorkerOutput` as JSON, the parent
reads it back as one, and `ReplayStats.merge` adds the workers' stats up, so no field is copied
by hand.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from florc.contract import Evidence, LogLine, Stats
from florc.replay.segments import Segment
from florc.report import plural
from florc.runtime.fidelity import Verdict
from florc.runtime.runner import RunOutcome


@dataclass
class ReplayStats:
    """What a replay restored, re-executed and read."""

    restored_boundaries: int = 0  # main-loop (epoch) checkpoints restored
    restored_blocks: int = 0
    probed_blocks: int = 0  # blocks re-executed because the plan needs them to run
    rerun_cheaper: int = 0  # blocks re-executed because that was faster than restoring them
    bytes_read: int = 0
    notes: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, stats: Stats) -> ReplayStats:
        """A replay session's stats."""
        return cls(
            stats.restored_boundaries,
            stats.restored_blocks,
            stats.probed_blocks,
            stats.rerun_cheaper,
            stats.bytes_read,
            list(stats.notes),
        )

    @property
    def reexecuted(self) -> int:
        return self.probed_blocks + self.rerun_cheaper

    def merge(self, other: ReplayStats) -> ReplayStats:
        """The stats of two parts of one replay (two workers), added up."""
        return ReplayStats(
            self.restored_boundaries + other.restored_boundaries,
            self.restored_blocks + other.restored_blocks,
            self.probed_blocks + other.probed_blocks,
            self.rerun_cheaper + other.rerun_cheaper,
            self.bytes_read + other.bytes_read,
            self.notes + other.notes,
        )

    def summary(self) -> str:
        """`1 epoch checkpoint and 4 blocks restored, 0 blocks re-executed; 2.1 MB read`."""
        cheaper = self.rerun_cheaper
        why = f" ({cheaper} of them because that was faster than restoring)" if cheaper else ""
        return (
            f"{plural(self.restored_boundaries, 'epoch checkpoint')} and "
            f"{plural(self.restored_blocks, 'block')} restored, "
            f"{plural(self.reexecuted, 'block')} re-executed{why}; "
            f"{self.bytes_read / 1e6:.1f} MB read"
        )


@dataclass
class WorkerOutput:
    """What one worker of a parallel replay ran, and found: its output file."""

    status: str
    exit_code: int
    error: str | None
    seconds: float
    lines: list[LogLine]
    evidence: list[Evidence]
    stats: ReplayStats

    def write(self, path: Path) -> None:
        """Written whole or not at all (a temporary file renamed)."""
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(self), default=repr))
        tmp.replace(path)

    @classmethod
    def read(cls, path: Path) -> WorkerOutput | None:
        """The output a worker wrote; None when it wrote none (or not a whole one)."""
        try:
            d = json.loads(path.read_text())
            return cls(
                d["status"],
                d["exit_code"],
                d["error"],
                d["seconds"],
                [LogLine(**ln) for ln in d["lines"]],
                [Evidence(**e) for e in d["evidence"]],
                ReplayStats(**d["stats"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None


@dataclass
class SegmentRecord:
    """One segment of a parallel replay as the store keeps it (its replay's `segments`)."""

    segment: Segment
    ok: bool = False
    error: str = ""
    evidence: list[Evidence] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.segment.to_dict(),
            "ok": self.ok,
            "error": self.error,
            "evidence": [dataclasses.asdict(e) for e in self.evidence],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SegmentRecord:
        return cls(
            Segment.from_dict(d),
            bool(d["ok"]),
            d.get("error") or "",
            [Evidence(**e) for e in d.get("evidence", [])],
        )


@dataclass
class ReplayResult:
    """A replay's (or a verify's) result: its run id, how the script ended, what it found."""

    replay_id: int
    outcome: RunOutcome
    faithful: bool
    verdict: Verdict
    stats: ReplayStats = field(default_factory=ReplayStats)
    segments: list[SegmentRecord] = field(default_factory=list)  # parallel replays only

    @property
    def exit_code(self) -> int:
        return self.outcome.exit_code
