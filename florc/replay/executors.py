"""Where a parallel replay's workers run: processes on this machine, or Ray tasks.

Each worker is `python -m florc _segment PLAN` (worker.py) started fresh, never forked: forking
a process that may hold CUDA state or threads is unsafe. Both executors give a worker the same
environment (the thread counts of the recording, the recording's string-hash seed) and read its
output file the same way (`WorkerOutput.read`); they differ in how they start it and where.

A local worker reports progress on its stderr (lines starting with PROGRESS_PREFIX); everything
else it writes there is passed through to the reporter as the script's own stderr.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from florc.errors import UsageError
from florc.launch import thread_vars
from florc.replay.results import WorkerOutput
from florc.replay.segments import Segment
from florc.report import Reporter

PROGRESS_PREFIX = "\x1eflorc-progress "


@dataclass
class Job:
    """One worker to start: its segment, its command line, and where it writes its output."""

    segment: Segment
    argv: list[str]
    output: Path
    processes: int = 1  # a distributed job's segment: its ranks


@dataclass
class WorkerResult:
    segment: Segment
    ok: bool
    output: WorkerOutput | None = None  # what the worker wrote
    error: str = ""
    seconds: float = 0.0


def florc_command() -> list[str]:
    return [sys.executable, "-m", "florc"]


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


def worker_vars(
    threads: int, recorded_vars: dict[str, str] | None, hash_seed: str | None
) -> dict[str, str]:
    """What every worker's environment sets, wherever it runs: the thread-count variables
    (the recording's own where it set them) and the recording's string-hash seed."""
    out = thread_vars(threads, recorded_vars)
    if hash_seed is not None:  # string hashing as in the recording (set order of str keys)
        out["PYTHONHASHSEED"] = hash_seed
    return out


def worker_env(
    index: int,
    workers: int,
    gpus: int,
    threads: int | None = None,
    recorded_vars: dict[str, str] | None = None,
) -> dict[str, str]:
    """A local worker's environment: threads as given (the recording's count), else cores /
    workers; one GPU per worker when there are GPUs."""
    env = dict(os.environ)
    count = threads or max(1, cpu_count() // workers)
    env.update(worker_vars(count, recorded_vars, os.environ.get("PYTHONHASHSEED")))
    if gpus:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        ids = [d.strip() for d in visible.split(",")] if visible else [str(i) for i in range(gpus)]
        env["CUDA_VISIBLE_DEVICES"] = ids[index % len(ids)]
    return env


class Progress:
    """Iterations done per worker, and an estimate of the time left, as a status line."""

    def __init__(self, segments: list[Segment], reporter: Reporter) -> None:
        self.segments = segments
        self.reporter = reporter
        self.done = {s.index: 0 for s in segments}
        self.started = time.perf_counter()
        self.lock = threading.Lock()

    def advance(self, index: int) -> None:
        with self.lock:
            self.done[index] += 1
            self.reporter.progress(self.text())

    def text(self) -> str:
        total = sum(s.executed for s in self.segments)
        done = sum(self.done.values())
        elapsed = time.perf_counter() - self.started
        eta = f"{elapsed / done * (total - done):.0f} s" if done else "?"
        parts = " ".join(f"w{s.index + 1} {self.done[s.index]}/{s.executed}" for s in self.segments)
        return f"{parts} · about {eta} left"

    def finish(self) -> None:
        self.reporter.progress("")


class Executor(Protocol):
    name: str  # "local" | "ray", as `--executor` names it

    def run(self, jobs: list[Job], cwd: Path, reporter: Reporter) -> list[WorkerResult]:
        """Run every job; wait for all; their results (in any order)."""


def _failure(tail: list[str], returncode: int) -> str:
    lines = "".join(tail).strip().splitlines()
    return lines[-1] if lines else f"exit status {returncode}"


class LocalExecutor:
    """One worker process per segment on this machine, all at once."""

    name = "local"

    def __init__(self, threads: int | None, recorded_vars: dict[str, str] | None) -> None:
        self.threads = threads
        self.recorded_vars = recorded_vars

    def run(self, jobs: list[Job], cwd: Path, reporter: Reporter) -> list[WorkerResult]:
        gpus = gpu_count()
        progress = Progress([j.segment for j in jobs], reporter)
        procs = []
        for job in jobs:
            job.output.unlink(missing_ok=True)
            index = job.segment.index
            proc = subprocess.Popen(
                job.argv,
                cwd=cwd,
                env=worker_env(index, len(jobs), gpus, self.threads, self.recorded_vars),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            procs.append((job, proc, time.perf_counter()))
        tails: dict[int, list[str]] = {job.segment.index: [] for job in jobs}

        def pump(seg: Segment, stream: IO[str]) -> None:
            for line in stream:
                if line.startswith(PROGRESS_PREFIX):
                    progress.advance(seg.index)
                else:
                    tails[seg.index] = (tails[seg.index] + [line])[-20:]
                    reporter.output(line.rstrip("\n"), err=True)

        def drain(stream: IO[str]) -> None:
            for _ in stream:  # a quiet worker's stdout holds nothing the replay shows
                pass

        # stderr is read by its pump alone (communicate() would take lines from under it)
        pumps = [
            threading.Thread(target=f, args=args)
            for job, proc, _ in procs
            for f, args in ((pump, (job.segment, proc.stderr)), (drain, (proc.stdout,)))
        ]
        for t in pumps:
            t.start()
        ended = []
        for job, proc, t0 in procs:
            proc.wait()
            ended.append((job, proc, time.perf_counter() - t0))
        for t in pumps:
            t.join()
        progress.finish()
        out = []
        for job, proc, seconds in ended:
            seg = job.segment
            output = WorkerOutput.read(job.output)
            if proc.returncode == 0 and output is not None:
                out.append(WorkerResult(seg, True, output, seconds=seconds))
            else:
                why = _failure(tails[seg.index], proc.returncode)
                out.append(WorkerResult(seg, False, output, why, seconds))
        return out


RAY_RETRIES = 2


def _ray_task(argv: list[str], cwd: str, env_vars: dict[str, str]) -> dict[str, Any]:
    """Body of a Ray task: run one worker in a fresh process on the node Ray picked."""
    env = {**os.environ, **env_vars}
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    return {"returncode": proc.returncode, "stderr": proc.stderr[-4000:]}


class RayExecutor:
    """Each segment a Ray task (`pip install 'florc[ray]'`).

    A task runs the same worker command as the local executor in a fresh process on whichever
    node Ray picks, with the CPUs and GPU Ray accounts for it (Ray sets CUDA_VISIBLE_DEVICES
    for a task that asks for a GPU). Ray retries a task whose worker process died. Every node
    must see the project and its store at the same path: a shared file system.
    """

    name = "ray"

    def __init__(
        self, address: str | None, threads: int | None, recorded_vars: dict[str, str] | None
    ) -> None:
        self.address = address
        self.threads = threads
        self.recorded_vars = recorded_vars

    def run(self, jobs: list[Job], cwd: Path, reporter: Reporter) -> list[WorkerResult]:
        try:
            import ray
        except ImportError:
            raise UsageError(
                "--executor ray needs Ray: pip install 'florc[ray]' (or use the local executor)"
            ) from None
        started_here = not ray.is_initialized()
        if started_here:
            try:
                ray.init(
                    address=self.address,
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                )
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = self.address or "a new local cluster"
                raise UsageError(f"--executor ray: cannot reach Ray at {where}: {exc}") from None
        try:
            return self._run(ray, jobs, cwd, reporter)
        finally:
            if started_here:
                ray.shutdown()

    def _run(self, ray: Any, jobs: list[Job], cwd: Path, reporter: Reporter) -> list[WorkerResult]:
        resources = ray.cluster_resources()
        cpus = max(1, int(resources.get("CPU", 1)))
        gpus = int(resources.get("GPU", 0))
        cpus_each = max(1, cpus // len(jobs))
        env_vars = worker_vars(
            self.threads or cpus_each, self.recorded_vars, os.environ.get("PYTHONHASHSEED")
        )
        task = ray.remote(_ray_task)
        progress = Progress([j.segment for j in jobs], reporter)
        refs = {}
        for job in jobs:
            job.output.unlink(missing_ok=True)
            ref = task.options(
                num_cpus=min(max(cpus_each, job.processes), cpus),
                num_gpus=min(job.processes, gpus),
                max_retries=RAY_RETRIES,
            ).remote(job.argv, str(cwd), env_vars)
            refs[ref] = job
        results = []
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                job = refs[ref]
                seg = job.segment
                try:
                    res = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - Ray wraps the task's failure
                    results.append(WorkerResult(seg, False, None, f"Ray task failed: {exc}"))
                    continue
                for _ in range(seg.executed):
                    progress.advance(seg.index)
                output = WorkerOutput.read(job.output)
                ok = res["returncode"] == 0 and output is not None
                error = "" if ok else _failure([res["stderr"]], res["returncode"])
                results.append(WorkerResult(seg, ok, output, error))
        progress.finish()
        return results
