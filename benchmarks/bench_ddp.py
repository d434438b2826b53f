"""Distributed training: record overhead and replay time of a 2-rank DDP job (gloo, CPU).

A DDP script (an MLP on seeded synthetic data, DistributedSampler with set_epoch, dropout, 6
epochs, 1 torch thread per rank) run REPS times each way, from the command line:

  plain     `torchrun --standalone --nproc-per-node 2 train.py`
  record    `florc record --nproc-per-node 2 train.py` at the default overhead budget
  retrain   plain torchrun of the script with an epoch-level statement every rank prints
  replay    `florc replay train.py --epochs 3-4` of the latest recording, with that statement
            (2 ranks relaunched by florc)

Medians of wall-clock seconds; florc's own account of the recording (rank 0's checkpointing
against training seconds). Exact: each rank's replayed lines equal its lines of the retrain.

Writes benchmarks/results/ddp.json and the section between `<!-- ddp:begin -->` and
`<!-- ddp:end -->` of RESULTS.md. Usage: python benchmarks/bench_ddp.py [--reps N]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_suite import RESULTS_DIR, RESULTS_MD, florc_command, machine, replace_section, timed

SCRIPT = """\
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)
x = torch.randn(8192, 32)
y = (x[:, :16].sum(dim=1, keepdim=True) > x[:, 16:].sum(dim=1, keepdim=True)).float()
data = TensorDataset(x, y)
sampler = DistributedSampler(data, shuffle=True, seed=1)
loader = DataLoader(data, batch_size=64, sampler=sampler)
model = DDP(nn.Sequential(nn.Linear(32, 512), nn.ReLU(), nn.Dropout(0.1), nn.Linear(512, 512),
                          nn.ReLU(), nn.Linear(512, 1)))
torch.manual_seed(100 + rank)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
loss_fn = nn.BCEWithLogitsLoss()

for epoch in range(6):
    sampler.set_epoch(epoch)
    total = 0.0
    for xb, yb in loader:
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        total += loss.item()
    if rank == 0:
        print(f"epoch {epoch} loss {total:.6f}")

dist.destroy_process_group()
"""
STATEMENT = (
    '    print(f"rank {rank} epoch {epoch} total {total:.6f} '
    'w {model.module[0].weight.norm().item():.6f}")\n'
)
EDITED = SCRIPT.replace("    if rank == 0:\n", STATEMENT + "    if rank == 0:\n")
LINE = re.compile(r"^rank (\d) epoch (\d+) ")
EPOCHS = {3, 4}
_COST = re.compile(r"checkpointing cost ([\d.]+) s of ([\d.]+) s training")


def torchrun(script: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc-per-node", "2", script]


def by_rank(text: str) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {0: [], 1: []}
    for ln in text.splitlines():
        m = LINE.match(ln)
        if m and int(m[2]) in EPOCHS:
            out[int(m[1])].append(ln)
    return out


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def run(reps: int, tmp: Path) -> dict:
    (tmp / "train.py").write_text(SCRIPT)
    (tmp / "edited.py").write_text(EDITED)
    out: dict = {"plain": [], "record": [], "retrain": [], "replay": [],
                 "checkpoint_seconds": [], "training_seconds": [], "checkpoints": []}
    for _ in range(reps):
        out["plain"].append(timed(torchrun("train.py"), tmp).seconds)
    for _ in range(reps):
        rec = timed([*florc_command(), "record", "--nproc-per-node", "2", "train.py"], tmp)
        out["record"].append(rec.seconds)
        m = _COST.search(rec.stderr)
        if m:
            out["checkpoint_seconds"].append(float(m.group(1)))
            out["training_seconds"].append(float(m.group(2)))
        n = re.search(r"(\d+) checkpoints? \(", rec.stderr)
        out["checkpoints"].append(int(n.group(1)) if n else 0)
    want: dict[int, list[str]] = {}
    for _ in range(reps):
        plain = timed(torchrun("edited.py"), tmp)
        out["retrain"].append(plain.seconds)
        want = by_rank(plain.stdout)
    (tmp / "train.py").write_text(EDITED)
    exact = True
    for _ in range(reps):
        rep = timed([*florc_command(), "replay", "train.py", "--epochs", "3-4"], tmp)
        out["replay"].append(rep.seconds)
        # the plain run's ranks share one stdout: compare each rank's lines as sets of lines
        got = by_rank(rep.stdout)
        exact = exact and all(sorted(got[r]) == sorted(want[r]) for r in (0, 1)) and all(
            want.values()
        )
        out["fidelity"] = [ln for ln in rep.stderr.splitlines() if "fidelity" in ln]
    out["exact"] = exact
    out["lines"] = sum(len(v) for v in want.values())
    return out


def markdown(result: dict) -> str:
    m, r = result["machine"], result["row"]
    ck, tr = med(r["checkpoint_seconds"]), med(r["training_seconds"])
    return "\n".join([
        "## Distributed training: a 2-rank DDP job (torchrun, gloo, CPU)",
        "",
        f"`{result['command']}` ({result['minutes']:.1f} min), {m['date']}, commit {m['commit']},"
        f" {m['cores']} cores ({m['cpu']}), torch {m['torch']}; medians of {result['reps']} "
        "runs each, wall-clock seconds from the command line, 1 torch thread per rank.",
        "",
        "An MLP (32-512-512-1, Adam) on 8192 synthetic samples, 6 epochs, each rank a "
        "DistributedSampler's half of the data; the statement prints every rank's epoch total "
        "and the first layer's weight norm. The replay relaunches both ranks (florc's "
        "`_segment_ranks`, through torchrun's launcher) from the checkpoint before epoch 3.",
        "",
        "| plain torchrun | florc record --nproc-per-node 2 | record ÷ plain | checkpointing / "
        "training (rank 0, florc's account) | checkpoints (rank 0) | retrain with the statement "
        "| replay --epochs 3-4 | replay ÷ retrain | exact |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        f"| {med(r['plain']):.2f} | {med(r['record']):.2f} | "
        f"{med(r['record']) / med(r['plain']):.2f}x | {ck:.2f} s / {tr:.2f} s "
        f"({100 * ck / tr:.1f}%) | {med(r['checkpoints']):.0f} | {med(r['retrain']):.2f} | "
        f"{med(r['replay']):.2f} | {med(r['replay']) / med(r['retrain']):.2f}x | "
        f"{'yes' if r['exact'] else 'NO'} ({r['lines']} lines) |",
        "",
    ])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"
    t0 = time.perf_counter()
    result: dict = {"command": "python benchmarks/bench_ddp.py", "reps": a.reps,
                    "machine": machine()}
    tmp = Path(tempfile.mkdtemp(prefix="florc-ddp-"))
    try:
        result["row"] = run(a.reps, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["minutes"] = (time.perf_counter() - t0) / 60
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "ddp.json").write_text(json.dumps(result, indent=1) + "\n")
    text = markdown(result)
    doc = RESULTS_MD.read_text()
    RESULTS_MD.write_text(replace_section(doc, "<!-- ddp:begin -->", "<!-- ddp:end -->", text))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
