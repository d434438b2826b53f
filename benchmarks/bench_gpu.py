"""Benchmark on a CUDA GPU: record overhead and replay of a script whose state lives on the GPU.

Workload: benchmarks/workloads/gpu_mlp.py (a 34 M-parameter MLP trained with Adam, all on the
GPU; a checkpoint copies about 540 MB to pinned host memory). For each repetition, in an order
rotated from one repetition to the next, each a separate process timed by wall clock from here:

  plain      python gpu_mlp.py
  record     florc record gpu_mlp.py                   (default overhead budget, 5%)
  all        florc record --checkpoint-all gpu_mlp.py  (a checkpoint at every epoch)

Then, once, from the last --checkpoint-all recording: an epoch-level print added, `florc replay
--epochs <last half>`, and a plain run of the edited script as the reference (values must be
equal) and as the retraining time.

Writes benchmarks/results/gpu.json and prints a markdown summary; with --out DIR, also there.
Usage: python benchmarks/bench_gpu.py [--reps N] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKLOAD = HERE / "workloads" / "gpu_mlp.py"
RESULTS_JSON = HERE / "results" / "gpu.json"
ANCHOR = '    print(f"epoch {epoch} loss {total.item() / args.batches:.6f}")\n'
HINDSIGHT = '    print(f"HINDSIGHT {epoch} w0 {model[0].weight.norm().item():.6f}")\n'


def timed(cmd: list[str], cwd: Path) -> tuple[float, str, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"bench_gpu: {' '.join(cmd)} failed ({proc.returncode})")
    return elapsed, proc.stdout, proc.stderr


def project(parent: Path, tag: str, source: str) -> Path:
    folder = parent / tag
    folder.mkdir()
    (folder / "train.py").write_text(source)
    return folder


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    import torch

    florc = [sys.executable, "-m", "florc"]
    args = ["--epochs", str(a.epochs)]
    source = WORKLOAD.read_text()
    assert ANCHOR in source
    edited = source.replace(ANCHOR, ANCHOR + HINDSIGHT)
    kinds = {
        "plain": lambda: [sys.executable, "train.py", *args],
        "record": lambda: [*florc, "record", "train.py", *args],
        "all": lambda: [*florc, "record", "--checkpoint-all", "train.py", *args],
    }
    times: dict[str, list[float]] = {k: [] for k in kinds}
    summaries: dict[str, list[str]] = {"record": [], "all": []}
    tmp = Path(tempfile.mkdtemp(prefix="florc-gpu-"))
    last_all = None
    try:
        order = list(kinds)
        for rep in range(a.reps):
            for kind in order[rep % 3 :] + order[: rep % 3]:
                folder = project(tmp, f"{kind}{rep}", source)
                t, _, err = timed(kinds[kind](), folder)
                times[kind].append(t)
                if kind != "plain":
                    summaries[kind].append(err.strip().splitlines()[-1])
                if kind == "all":
                    last_all = folder
        assert last_all is not None
        half = f"{a.epochs // 2}-{a.epochs - 1}"
        (last_all / "train.py").write_text(edited)
        t_replay, out, err = timed([*florc, "replay", "train.py", "--epochs", half], last_all)
        ref = project(tmp, "edited", edited)
        t_edited, ref_out, _ = timed([sys.executable, "train.py", *args], ref)
        want = [x for x in ref_out.splitlines() if x.startswith("HINDSIGHT")][a.epochs // 2 :]
        got = [x for x in out.splitlines() if x.startswith("HINDSIGHT")]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU)",
        "torch": torch.__version__,
        "reps": a.reps,
        "epochs": a.epochs,
        "times": times,
        "median": med,
        "overhead": {k: med[k] / med["plain"] - 1 for k in ("record", "all")},
        "florc_summaries": summaries,
        "replay": {
            "epochs": half,
            "seconds": t_replay,
            "retrain_seconds": t_edited,
            "equal_to_plain_run": got == want and len(want) > 0,
            "summary": err.strip().splitlines()[-2:],
        },
    }
    RESULTS_JSON.parent.mkdir(exist_ok=True)
    text = json.dumps(result, indent=2)
    RESULTS_JSON.write_text(text + "\n")
    if a.out:
        (a.out / "gpu.json").write_text(text + "\n")
    print(text)
    return 0 if result["replay"]["equal_to_plain_run"] else 1


if __name__ == "__main__":
    sys.exit(main())
