"""When to checkpoint: flor's adaptive rule, over one overhead budget shared by all loops.

Training time inside the main loop is *compute*; everything checkpointing adds to it is *cost*:
the synchronous copy, the wait when the writer's queue is full, sizing, and the writer thread's
CPU time (on a machine whose cores all train, the writer's CPU is taken from training). A
checkpoint is taken when the cost spent so far, the cost of checkpoints still being written and
this checkpoint's estimated cost fit within `budget x compute`. Cheap checkpoints are therefore
taken at every opportunity; expensive ones periodically, as compute accumulates.

A budget of `math.inf` takes every checkpoint (`florc record --checkpoint-all`).

Main-loop boundaries are the anchors of replay, so a block's checkpoint is taken only if the
budget also leaves room for the next boundary's.

Estimates: a loop's cost per checkpoint is an exponential average of what its checkpoints
actually cost, so drift is followed. Before a loop's first checkpoint its cost is estimated from
the bytes it would copy, at the average cost per byte seen so far (or a conservative default).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_BUDGET = 0.05
# Before anything is measured: copy + hash + write of one byte, plus a fixed cost per checkpoint.
DEFAULT_SECONDS_PER_BYTE = 3e-9
DEFAULT_FIXED_SECONDS = 0.002
SMOOTHING = 0.3


@dataclass
class LoopCosts:
    estimate: float | None = None  # seconds per checkpoint
    nbytes: int | None = None
    taken: int = 0
    skipped: int = 0


@dataclass
class Decision:
    take: bool
    estimate: float


class CheckpointPolicy:
    def __init__(
        self, budget: float = DEFAULT_BUDGET, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        if budget < 0:
            raise ValueError("the overhead budget cannot be negative")
        self.budget = budget
        self.clock = clock
        self.started: float | None = None
        self.stopped: float | None = None
        self.foreground = 0.0  # training-thread seconds spent on checkpointing
        self.foreground_in_loop = 0.0  # ... of which while the main loop ran
        self.background = 0.0  # writer CPU seconds, reported when each checkpoint is written
        self.in_flight = 0.0  # estimated writer cost of checkpoints not yet written
        self.seconds_per_byte = DEFAULT_SECONDS_PER_BYTE
        self.fixed = DEFAULT_FIXED_SECONDS
        self.loops: dict[str, LoopCosts] = {}
        self.boundary_loop: str | None = None
        self._lock = threading.Lock()

    # clocks ----------------------------------------------------------------------------
    def start(self, boundary_loop: str) -> None:
        """The main loop begins: compute is counted from here."""
        if self.started is None:
            self.started = self.clock()
        self.boundary_loop = boundary_loop

    def stop(self) -> None:
        """The main loop has ended: compute stops counting (costs still may not)."""
        if self.started is not None and self.stopped is None:
            self.stopped = self.clock()

    def compute(self) -> float:
        if self.started is None:
            return 0.0
        end = self.stopped if self.stopped is not None else self.clock()
        return max(0.0, end - self.started - self.foreground_in_loop)

    def spent(self) -> float:
        with self._lock:
            return self.foreground + self.background + self.in_flight

    # decisions ----------------------------------------------------------------------------
    def costs(self, loop: str) -> LoopCosts:
        return self.loops.setdefault(loop, LoopCosts())

    def needs_size(self, loop: str) -> bool:
        return self.costs(loop).nbytes is None

    def estimate(self, loop: str) -> float:
        c = self.costs(loop)
        if c.estimate is not None:
            return c.estimate
        return self.fixed + self.seconds_per_byte * (c.nbytes or 0)

    def decide(self, loop: str, nbytes: int | None = None) -> Decision:
        c = self.costs(loop)
        if nbytes is not None:
            c.nbytes = nbytes
        est = self.estimate(loop)
        need = est
        if loop != self.boundary_loop and self.boundary_loop is not None:
            need += self.estimate(self.boundary_loop)
        take = self.budget == math.inf or self.spent() + need <= self.budget * self.compute()
        if take:
            c.taken += 1
        else:
            c.skipped += 1
        return Decision(take, est)

    # accounting ---------------------------------------------------------------------------
    def charge_foreground(self, seconds: float) -> None:
        with self._lock:
            self.foreground += seconds
            if self.stopped is None:
                self.foreground_in_loop += seconds

    def submitted(self, estimate_background: float) -> None:
        with self._lock:
            self.in_flight += estimate_background

    def written(
        self,
        loop: str,
        foreground: float,
        background: float,
        estimate_background: float,
        nbytes: int,
    ) -> None:
        """A checkpoint is durable: replace its estimate by what it cost (from any thread)."""
        with self._lock:
            self.in_flight = max(0.0, self.in_flight - estimate_background)
            self.background += background
            actual = foreground + background
            c = self.costs(loop)
            c.nbytes = nbytes
            c.estimate = (
                actual if c.estimate is None else SMOOTHING * actual + (1 - SMOOTHING) * c.estimate
            )
            if nbytes > 2**20:
                observed = max(0.0, actual - self.fixed) / nbytes
                previous = self.seconds_per_byte
                self.seconds_per_byte = SMOOTHING * observed + (1 - SMOOTHING) * previous

    def summary(self) -> dict[str, float | int]:
        return {
            "budget": self.budget,
            "compute_seconds": round(self.compute(), 4),
            "cost_seconds": round(self.spent(), 4),
            "taken": sum(c.taken for c in self.loops.values()),
            "skipped": sum(c.skipped for c in self.loops.values()),
        }
