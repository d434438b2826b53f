"""When to checkpoint: flor's adaptive rule, over one overhead budget shared by all loops.

Training time inside the main loop is *compute*; what checkpointing takes from training is
*cost*. A checkpoint is taken when the cost spent so far, the cost of checkpoints still being
written and this checkpoint's estimated cost fit within `budget x compute`. Cheap checkpoints
are therefore taken at every opportunity; expensive ones periodically, as compute accumulates.

A budget of `math.inf` takes every checkpoint (`florc record --checkpoint-all`).

Main-loop boundaries are the anchors of replay, so a block's checkpoint is taken only if the
budget also leaves room for the next boundary's.

What is charged: what training feels, not what the writer computes.

- *Foreground*: the seconds the training thread spends in florc: sizing, the copy, waiting for
  room in the writer's queue, and at the end waiting for the last checkpoints to be durable.
  Measured exactly, on the training thread.
- *Background*: the slowdown of training while the writer thread works on a checkpoint. The
  writer takes a `Sample` (wall clock, the process's CPU time over all its threads, its own
  thread's CPU time, the seconds training has been blocked on the writer so far) when it starts
  and ends each job and whenever it wakes for an index write. Training's CPU in a window is the
  process's minus the writer's (torch's intra-op threads count as training). Over windows in
  which the writer is idle and the main loop runs, the policy keeps the rate `r_idle` at which
  training uses CPU (seconds of CPU per second of wall time, an average over the last minute or
  so of idle time); over a job's window, the rate `r_busy`. Training ran at `r_busy` instead of
  `r_idle` for the job's wall time (less the time it was blocked, already charged as
  foreground), so the job costs `wall x max(0, 1 - r_busy / r_idle)`. On an idle core this is
  about 0; where the writer competes with training for cores, or holds the GIL while training
  waits for it, training's rate drops and the difference is charged. Before `r_idle` is known
  (the first 50 ms of the main loop) training's wish is unknown, so the cores decide: with `n`
  usable cores, if training and the writer together left a quarter of a core or more unused
  during the job (`n - r_busy - w`, `w` the cores the writer used), nothing waited for a core
  and nothing is charged; if they used all `n`, the writer's CPU seconds are charged in full
  (training may have been deprived of them: on 2 cores where training uses both the contention
  is real); linearly in between.
  What this does not see: a slowdown that does not lower training's CPU rate (memory bandwidth
  and caches shared with the writer, whose hashing and writing stream through memory; OpenMP
  threads that spin while they wait count as working). So a job is charged at least
  `MEMORY_SHARE` (one half) of the writer's CPU seconds: on the benchmarks' memory-bound
  `state_heavy` (a 160 MB state, the writer on an otherwise idle core), runs that took 12-20
  checkpoints took about half the writer's CPU seconds longer than runs without checkpoints,
  while training's CPU rate hardly dropped (benchmarks/RESULTS.md, checkpoint section). The
  writer's CPU seconds are reported beside the charged cost (`summary()`).

Estimates: a loop's cost per checkpoint is an exponential average of what its checkpoints
actually cost (foreground + charged background), so drift is followed. Before a loop's first
checkpoint its cost is estimated from the bytes it would copy, at the average cost per byte seen
so far; before any is measured, at defaults: the copy at memory speed, plus the writer's
hashing and writing charged in full unless training leaves a core free for the writer (then
the writer's work is assumed to cost training nothing until measured).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_BUDGET = 0.05
# Before a byte is measured, what one costs: the training thread's copy (memcpy into fresh or
# pooled host buffers runs at 1.7-1.8 GB/s on a 2-core CPU: 0.6 ns; 1 ns leaves a margin) ...
DEFAULT_COPY_SECONDS_PER_BYTE = 1e-9
# ... plus, unless a core is free for the writer (r_idle + 1 core fits), the writer's hashing and
# writing charged in full (3.4 ns measured for a 160 MB state on the same CPU)
DEFAULT_WRITER_SECONDS_PER_BYTE = 3e-9
DEFAULT_SECONDS_PER_BYTE = DEFAULT_COPY_SECONDS_PER_BYTE + DEFAULT_WRITER_SECONDS_PER_BYTE
# and a fixed cost per checkpoint
DEFAULT_FIXED_SECONDS = 0.002
SMOOTHING = 0.3
# r_idle: an average over about this much idle wall time (older windows weigh exp(-age/this))
IDLE_HORIZON_SECONDS = 60.0
# ... known once this much idle time inside the main loop has been measured
MIN_IDLE_SECONDS = 0.05
# before then: a job that left this many cores unused took none from training
SLACK_CORES = 0.25
# the least share of the writer's CPU seconds a job costs training (memory bandwidth, caches)
MEMORY_SHARE = 0.5


@dataclass(frozen=True)
class Sample:
    """Clocks read on the writer thread: see the module's docstring."""

    wall: float  # time.perf_counter()
    process: float  # time.process_time(): CPU seconds of all the process's threads
    writer: float  # time.thread_time() on the writer thread
    blocked: float = 0.0  # seconds the training thread has waited for the writer so far


def take_sample(blocked: float = 0.0) -> Sample:
    """The clocks now; call it on the writer thread."""
    return Sample(time.perf_counter(), time.process_time(), time.thread_time(), blocked)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


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
        self,
        budget: float = DEFAULT_BUDGET,
        clock: Callable[[], float] = time.perf_counter,
        cores: int | None = None,
        memory_share: float = MEMORY_SHARE,
    ) -> None:
        if budget < 0:
            raise ValueError("the overhead budget cannot be negative")
        self.budget = budget
        self.clock = clock  # the clock of Sample.wall
        self.cores = cores if cores is not None else usable_cores()
        self.memory_share = memory_share
        self.started: float | None = None
        self.stopped: float | None = None
        self.foreground = 0.0  # training-thread seconds spent on checkpointing
        self.foreground_in_loop = 0.0  # ... of which while the main loop ran
        self.background = 0.0  # training's slowdown while the writer worked, charged per job
        self.writer_cpu = 0.0  # the writer thread's CPU seconds on checkpoints (reported)
        self.in_flight = 0.0  # estimated background cost of checkpoints not yet written
        self.idle_cpu = 0.0  # training's CPU seconds in idle windows (decayed) ...
        self.idle_wall = 0.0  # ... over these wall seconds (decayed)
        self.idle_measured = 0.0  # idle wall seconds measured in all (not decayed)
        self.seconds_per_byte: float | None = None  # measured (None: the defaults)
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
        per_byte = self.seconds_per_byte
        if per_byte is None:
            per_byte = DEFAULT_SECONDS_PER_BYTE
            idle = self.idle_rate()
            if idle is not None and idle + 1 <= self.cores + 0.1:
                # the writer has a core to itself: it costs training only its memory share
                per_byte = (
                    DEFAULT_COPY_SECONDS_PER_BYTE
                    + self.memory_share * DEFAULT_WRITER_SECONDS_PER_BYTE
                )
        return self.fixed + per_byte * (c.nbytes or 0)

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

    def overrule(self, loop: str, take: bool) -> None:
        """The ranks of a job agreed otherwise than this rank's last decision for loop."""
        c = self.costs(loop)
        if take:
            c.skipped, c.taken = c.skipped - 1, c.taken + 1
        else:
            c.taken, c.skipped = c.taken - 1, c.skipped + 1

    # accounting ---------------------------------------------------------------------------
    def charge_foreground(self, seconds: float) -> None:
        with self._lock:
            self.foreground += seconds
            if self.stopped is None:
                self.foreground_in_loop += seconds

    def submitted(self, estimate_background: float) -> None:
        with self._lock:
            self.in_flight += estimate_background

    def in_main_loop(self, a: float, b: float) -> bool:
        """Whether the wall-clock window [a, b] lies inside the main loop."""
        return (
            self.started is not None
            and a >= self.started
            and (self.stopped is None or b <= self.stopped)
        )

    def observe_idle(self, a: Sample, b: Sample) -> None:
        """A window in which the writer wrote no checkpoint (from the writer's thread)."""
        if not self.in_main_loop(a.wall, b.wall):
            return
        wall = b.wall - a.wall - (b.blocked - a.blocked)
        if wall <= 0:
            return
        train = max(0.0, (b.process - a.process) - (b.writer - a.writer))
        with self._lock:
            keep = math.exp(-wall / IDLE_HORIZON_SECONDS)
            self.idle_cpu = self.idle_cpu * keep + train
            self.idle_wall = self.idle_wall * keep + wall
            self.idle_measured += wall

    def idle_rate(self) -> float | None:
        """r_idle: training's CPU seconds per wall second while the writer is idle."""
        if self.idle_measured < MIN_IDLE_SECONDS or self.idle_wall <= 0:
            return None
        return self.idle_cpu / self.idle_wall

    def background_cost(self, a: Sample, b: Sample) -> float:
        """What training lost while the writer worked from `a` to `b` (see the docstring)."""
        wall = b.wall - a.wall - (b.blocked - a.blocked)  # blocked time is foreground
        writer = max(0.0, b.writer - a.writer)
        if wall <= 0:
            return 0.0
        busy = max(0.0, (b.process - a.process) - writer) / wall  # r_busy
        idle = self.idle_rate()
        if idle is not None and idle > 0:
            lost = wall * max(0.0, 1.0 - busy / idle)
        else:
            slack = self.cores - busy - writer / wall  # cores nobody used
            lost = writer * min(1.0, max(0.0, 1.0 - slack / SLACK_CORES))
        return max(lost, self.memory_share * writer)

    def job_written(
        self,
        loop: str,
        foreground: float,
        a: Sample,
        b: Sample,
        estimate_background: float,
        nbytes: int,
    ) -> None:
        """The writer wrote a checkpoint from `a` to `b` (called on the writer's thread)."""
        self.written(
            loop,
            foreground,
            self.background_cost(a, b),
            estimate_background,
            nbytes,
            writer_cpu=max(0.0, b.writer - a.writer),
        )

    def written(
        self,
        loop: str,
        foreground: float,
        background: float,
        estimate_background: float,
        nbytes: int,
        writer_cpu: float = 0.0,
    ) -> None:
        """A checkpoint is durable: replace its estimate by what it cost (from any thread).

        foreground: the training thread's seconds for it; background: training's slowdown
        while it was written (charged); writer_cpu: the writer's CPU seconds (reported)."""
        with self._lock:
            self.in_flight = max(0.0, self.in_flight - estimate_background)
            self.background += background
            self.writer_cpu += writer_cpu
            actual = foreground + background
            c = self.costs(loop)
            c.nbytes = nbytes
            c.estimate = (
                actual if c.estimate is None else SMOOTHING * actual + (1 - SMOOTHING) * c.estimate
            )
            if nbytes > 2**20:
                observed = max(0.0, actual - self.fixed) / nbytes
                previous = self.seconds_per_byte
                self.seconds_per_byte = (
                    observed
                    if previous is None
                    else SMOOTHING * observed + (1 - SMOOTHING) * previous
                )

    def summary(self) -> dict[str, float | int]:
        idle = self.idle_rate()
        return {
            "budget": self.budget,
            "compute_seconds": round(self.compute(), 4),
            "cost_seconds": round(self.spent(), 4),  # charged: foreground + background
            "foreground_seconds": round(self.foreground, 4),
            "background_seconds": round(self.background, 4),
            "writer_cpu_seconds": round(self.writer_cpu, 4),  # not charged as such
            "training_cores": round(idle, 3) if idle is not None else -1,
            "taken": sum(c.taken for c in self.loops.values()),
            "skipped": sum(c.skipped for c in self.loops.values()),
        }
