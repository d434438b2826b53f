"""Parallel replay on a Ray cluster: each segment is a Ray task.

A task runs the same worker command as the local executor (`python -m florc _segment ...`) in a
fresh process on whichever node Ray picks, with the CPUs and GPU Ray accounts for it (Ray sets
CUDA_VISIBLE_DEVICES for a task that asks for a GPU). Ray retries a task whose worker process
died. Every node must see the project and its `.florc/` store at the same path: a shared file
system.

Ray is an optional dependency: `pip install 'florc[ray]'`.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from florc.errors import UsageError
from florc.parallel import Progress, Segment, WorkerResult

MAX_RETRIES = 2


def _run_segment(
    cmd: list[str], cwd: str, threads: int, hash_seed: str | None = None
) -> dict[str, Any]:
    """Body of the Ray task: run one worker; return its exit status and output."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    if hash_seed is not None:  # string hashing as in the recording (set order of str keys)
        env["PYTHONHASHSEED"] = hash_seed
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    output_path = Path(cmd[cmd.index("--output") + 1])
    try:
        output = json.loads(output_path.read_text())
    except (OSError, ValueError):
        output = None
    return {
        "returncode": proc.returncode,
        "output": output,
        "stderr": proc.stderr[-4000:],
        "node": os.uname().nodename,
    }


def run_segments_on_ray(
    segments: list[Segment],
    command: Callable[[Segment, Path], list[str]],
    workdir: Path,
    cwd: Path,
    progress: Progress,
    address: str | None,
    threads: int | None = None,
) -> list[WorkerResult]:
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
                address=address,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = address or "a new local cluster"
            raise UsageError(f"--executor ray: cannot reach Ray at {where}: {exc}") from None
    try:
        resources = ray.cluster_resources()
        cpus = max(1, int(resources.get("CPU", 1)))
        gpus = int(resources.get("GPU", 0))
        cpus_each = max(1, cpus // len(segments))
        threads = threads or cpus_each
        task = ray.remote(_run_segment)
        workdir.mkdir(parents=True, exist_ok=True)
        refs = {}
        for seg in segments:
            out = workdir / f"segment-{seg.index}.json"
            out.unlink(missing_ok=True)
            ref = task.options(
                num_cpus=min(cpus_each, cpus),
                num_gpus=1 if gpus else 0,
                max_retries=MAX_RETRIES,
            ).remote(command(seg, out), str(cwd), threads, os.environ.get("PYTHONHASHSEED"))
            refs[ref] = seg
        results = []
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                seg = refs[ref]
                try:
                    res = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - Ray wraps the task's failure
                    results.append(WorkerResult(seg, False, {}, f"Ray task failed: {exc}"))
                    continue
                for _ in range(seg.executed):
                    progress.advance(seg.index)
                ok = res["returncode"] == 0 and res["output"] is not None
                tail = res["stderr"].strip().splitlines()
                error = "" if ok else (tail[-1] if tail else f"exit status {res['returncode']}")
                results.append(WorkerResult(seg, ok, res["output"] or {}, error))
        progress.finish()
        return results
    finally:
        if started_here:
            ray.shutdown()
