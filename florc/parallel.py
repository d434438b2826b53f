"""Parallel replay: split the requested epochs into segments, run each in its own process, merge.

A *segment* is a contiguous run of requested main-loop iterations started from one checkpoint:
its worker runs the script's setup, restores the checkpoint at `start` (or starts from the
beginning when `start` is 0), passes silently through iterations it was not asked for, shows
its own, and stops. Only the last segment runs the code after the main loop.

The plan minimises the longest segment, counting the iterations a worker executes from its
checkpoint, so segment boundaries fall where checkpoints exist.

Workers are separate processes started fresh (`python -m florc`), never forked: forking a
process that may hold CUDA state or threads is unsafe.
"""

from __future__ import annotations

import bisect
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

PROGRESS_PREFIX = "\x1eflorc-progress "


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


# --- running segments in worker processes ---------------------------------------------


@dataclass
class WorkerResult:
    segment: Segment
    ok: bool
    output: dict[str, Any] = field(default_factory=dict)  # what the worker wrote
    error: str = ""
    seconds: float = 0.0


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def gpu_count() -> int:
    """GPUs visible to this process, without importing torch (which takes seconds)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def thread_vars(threads: int, recorded: dict[str, str] | None = None) -> dict[str, str]:
    """The thread-count variables a worker gets: the recording's own where it set them (they
    decided its thread counts), the count for the others."""
    out = {var: str(threads) for var in THREAD_VARS}
    out.update({k: v for k, v in (recorded or {}).items() if k in THREAD_VARS})
    return out


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
            f"workers get {share} torch thread{'s' if share != 1 else ''} each, the recording "
            f"used {recorded}: values computed on the CPU may differ in the last digits (each "
            "worker computes on a GPU of its own)",
        )
    head = f"{fit} worker{'s' if fit != 1 else ''} instead of {workers}"
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


def worker_env(
    index: int,
    workers: int,
    gpus: int,
    threads: int | None = None,
    recorded_vars: dict[str, str] | None = None,
) -> dict[str, str]:
    """Threads per worker: as given (the recording's count), else cores / workers; one GPU per
    worker when there are GPUs. recorded_vars: the recording's own thread variables."""
    env = dict(os.environ)
    env.update(thread_vars(threads or max(1, cpu_count() // workers), recorded_vars))
    if gpus:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        ids = [d.strip() for d in visible.split(",")] if visible else [str(i) for i in range(gpus)]
        env["CUDA_VISIBLE_DEVICES"] = ids[index % len(ids)]
    return env


class Progress:
    """Iterations done per worker, and an estimate of the time left, on stderr."""

    def __init__(self, segments: list[Segment], stream: TextIO) -> None:
        self.segments = segments
        self.stream = stream
        self.done = {s.index: 0 for s in segments}
        self.started = time.perf_counter()
        self.live = stream.isatty()
        self.lock = threading.Lock()

    def advance(self, index: int) -> None:
        with self.lock:
            self.done[index] += 1
            if self.live:
                self._draw()

    def _draw(self) -> None:
        total = sum(s.executed for s in self.segments)
        done = sum(self.done.values())
        elapsed = time.perf_counter() - self.started
        eta = f"{elapsed / done * (total - done):.0f} s" if done else "?"
        parts = " ".join(f"w{s.index + 1} {self.done[s.index]}/{s.executed}" for s in self.segments)
        self.stream.write(f"\rflorc: {parts} · about {eta} left ")
        self.stream.flush()

    def finish(self) -> None:
        if self.live:
            self.stream.write("\n")
            self.stream.flush()


def run_segments(
    segments: list[Segment],
    command: Callable[[Segment, Path], list[str]],
    workdir: Path,
    cwd: Path,
    progress: Progress,
    stderr: TextIO,
    threads: int | None = None,
    recorded_vars: dict[str, str] | None = None,
) -> list[WorkerResult]:
    """Start one worker process per segment, all at once; wait for all; collect their outputs.

    command(segment, output_path) is the worker's argv. A worker reports progress on its stderr
    (lines starting with PROGRESS_PREFIX); everything else it writes there is passed through.
    """
    gpus = gpu_count()
    workdir.mkdir(parents=True, exist_ok=True)
    procs = []
    for seg in segments:
        out_path = workdir / f"segment-{seg.index}.json"
        out_path.unlink(missing_ok=True)
        proc = subprocess.Popen(
            command(seg, out_path),
            cwd=cwd,
            env=worker_env(seg.index, len(segments), gpus, threads, recorded_vars),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append((seg, proc, out_path, time.perf_counter()))
    tails: dict[int, list[str]] = {seg.index: [] for seg in segments}

    def pump(seg: Segment, stream: Any) -> None:
        for line in stream:
            if line.startswith(PROGRESS_PREFIX):
                progress.advance(seg.index)
            else:
                tails[seg.index] = (tails[seg.index] + [line])[-20:]
                stderr.write(line)

    pumps = [threading.Thread(target=pump, args=(seg, proc.stderr)) for seg, proc, _, _ in procs]
    for t in pumps:
        t.start()
    results = []
    for seg, proc, out_path, t0 in procs:
        proc.communicate()
        results.append((seg, proc, out_path, time.perf_counter() - t0))
    for t in pumps:
        t.join()
    progress.finish()
    out = []
    for seg, proc, out_path, seconds in results:
        try:
            output = json.loads(out_path.read_text())
        except (OSError, ValueError):
            output = None
        if proc.returncode == 0 and output is not None:
            out.append(WorkerResult(seg, True, output, seconds=seconds))
        else:
            reason = "".join(tails[seg.index]).strip().splitlines()
            why = reason[-1] if reason else f"exit status {proc.returncode}"
            out.append(WorkerResult(seg, False, output or {}, why, seconds))
    return out


def segment_spec(seg: Segment) -> str:
    return json.dumps(asdict(seg))


def segment_from_spec(spec: str) -> Segment:
    d = json.loads(spec)
    targets = [int(t) for t in d["targets"]]
    return Segment(int(d["index"]), int(d["start"]), targets, bool(d["after_loop"]))


def florc_command() -> list[str]:
    return [sys.executable, "-m", "florc"]
