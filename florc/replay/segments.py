"""Parallel replay's plan: split the requested epochs into segments, and size the workers.

A *segment* is a contiguous run of requested main-loop iterations started from one checkpoint:
its worker runs the script's setup, restores the checkpoint at `start` (or starts from the
beginning when `start` is 0), passes silently through iterations it was not asked for, shows
its own, and stops. Only the last segment runs the code after the main loop.

The plan minimises the longest segment, counting the iterations a worker executes from its
checkpoint, so segment boundaries fall where checkpoints exist. Everything here is pure: the
executors (executors.py) run what it plans.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from florc.report import plural


@dataclass
class Segment:
    index: int
    start: int  # the main-loop boundary restored first; 0: from the script's own start
    targets: list[int]  # iteration indices this segment shows
    after_loop: bool = False  # it also runs the code after the main loop

    @property
    def executed(self) -> int:
        """Iterations its worker runs (from its checkpoint to its last target)."""
        return self.targets[-1] + 1 - self.start

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Segment:
        targets = [int(t) for t in d["targets"]]
        return cls(int(d["index"]), int(d["start"]), targets, bool(d["after_loop"]))


def plan_segments(targets: Sequence[int], anchors: Sequence[int], workers: int) -> list[Segment]:
    """Split sorted target iterations into at most `workers` contiguous segments.

    anchors: main-loop boundaries with a usable checkpoint (boundary b = the state before
    iteration b). Each segment starts at the latest anchor at or before its first target (or
    at 0). The split minimises the largest number of iterations any worker executes.
    """
    targets = sorted(set(targets))
    if not targets:
        return []
    points = sorted({0, *(a for a in anchors if a >= 0)})

    def anchor(t: int) -> int:
        return points[bisect.bisect_right(points, t) - 1]

    def greedy(cap: int) -> list[list[int]] | None:
        groups: list[list[int]] = []
        for t in targets:
            if groups and t + 1 - anchor(groups[-1][0]) <= cap:
                groups[-1].append(t)
            else:
                if t + 1 - anchor(t) > cap or len(groups) == workers:
                    return None
                groups.append([t])
        return groups

    # binary search for the smallest feasible longest segment; one segment is always feasible
    lo = max(t + 1 - anchor(t) for t in targets)  # no segment can do less than its hardest target
    hi = targets[-1] + 1
    while lo < hi:
        mid = (lo + hi) // 2
        if greedy(mid) is None:
            lo = mid + 1
        else:
            hi = mid
    best = greedy(lo)
    assert best is not None
    segments = [Segment(i, anchor(g[0]), g) for i, g in enumerate(best)]
    segments[-1].after_loop = True
    return segments


@dataclass
class ThreadPlan:
    workers: int
    threads: int | None  # torch threads per worker; None: not known, cores / workers
    note: str | None = None  # why fewer workers run than were asked for


def plan_threads(
    workers: int, recorded: int | None, asked: int | None, cores: int, gpus: int = 0
) -> ThreadPlan:
    """How many workers, with how many threads each.

    Floating-point sums are split over threads, so their rounding depends on the thread
    count: each worker gets the recording's count (or the one asked for). When the cores do
    not hold workers x threads, fewer workers run: oversubscribed threads slow every worker
    down many times over. With GPUs (a GPU per worker, where training computes) the workers
    all run, with the threads the cores hold, and the note says so."""
    want = asked or recorded
    if want is None or workers <= 1:
        return ThreadPlan(workers, want)
    fit = max(1, cores // want)
    if workers <= fit:
        return ThreadPlan(workers, want)
    if gpus and not asked:
        share = max(1, cores // workers)
        return ThreadPlan(
            workers,
            share,
            f"workers get {plural(share, 'torch thread')} each, the recording "
            f"used {recorded}: values computed on the CPU may differ in the last digits (each "
            "worker computes on a GPU of its own)",
        )
    head = f"{plural(fit, 'worker')} instead of {workers}"
    if asked:
        note = (
            f"{head}: {workers} workers with {asked} threads each need {workers * asked} cores "
            f"and this machine has {cores}"
        )
    else:
        alt = max(1, cores // workers)
        note = (
            f"{head}: the recording used {recorded} torch threads and this machine has {cores} "
            f"cores; --threads {alt} runs {workers} workers (values may differ in the last "
            "digits)"
        )
    return ThreadPlan(fit, want, note)
