"""Distributed training: a DDP script recorded with 2 ranks (gloo, CPU) and replayed as 2 ranks.

The script shards its data with a DistributedSampler (set_epoch each epoch), draws dropout masks
from a per-rank seed, and prints its loss on rank 0 only. The edit adds an epoch-level and a
batch-level statement that every rank prints. A replay of a middle range prints, per rank,
exactly what a plain `torchrun` run of the edited script prints for those epochs.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import clean_env, florc, run

pytestmark = pytest.mark.e2e

SCRIPT = """\
import argparse
import time

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--sleep", type=float, default=0.0)
args = parser.parse_args()

dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)
x = torch.randn(192, 8)
y = (x.sum(dim=1, keepdim=True) > 0).float()
data = TensorDataset(x, y)
sampler = DistributedSampler(data, shuffle=True, seed=1)
loader = DataLoader(data, batch_size=16, sampler=sampler)
model = DDP(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1)))
torch.manual_seed(100 + rank)
opt = torch.optim.SGD(model.parameters(), lr=0.05)
loss_fn = nn.BCEWithLogitsLoss()

seen = 0  # equal on both ranks at the first checkpoints, then not
for epoch in range(args.epochs):
    sampler.set_epoch(epoch)
    seen += rank * (epoch >= 2)
    total = 0.0
    for i, (xb, yb) in enumerate(loader):
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        total += loss.item()
    if rank == 0:
        print(f"epoch {epoch} loss {total:.6f}")
    time.sleep(args.sleep)

dist.destroy_process_group()
"""

EDITED = SCRIPT.replace(
    "        total += loss.item()\n",
    "        total += loss.item()\n"
    "        if i % 3 == 0:\n"
    '            print(f"rank {rank} epoch {epoch} step {i} loss {loss.item():.6f}")\n',
).replace(
    "    time.sleep(args.sleep)\n",
    '    print(f"rank {rank} epoch {epoch} total {total:.6f} seen {seen} '
    'w {model.module[0].weight.sum().item():.6f}")\n'
    "    time.sleep(args.sleep)\n",
)

LINE = re.compile(r"^rank (\d) epoch (\d+) ")


def _project(tmp_path: Path) -> Path:
    (tmp_path / "train.py").write_text(SCRIPT)
    return tmp_path


def _plain_torchrun(project: Path, script: str, args: list[str]) -> dict[int, list[str]]:
    """Each rank's stdout of a plain torchrun run (per-rank files: no interleaving)."""
    (project / "plain.py").write_text(script)
    logs = project / "plain-logs"
    res = run(
        [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc-per-node", "2", "--redirects", "1", "--log-dir", str(logs),
            "plain.py", *args,
        ],
        project,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    out: dict[int, list[str]] = {}
    for path in logs.rglob("stdout.log"):
        rank = int(path.parent.name)
        out[rank] = path.read_text().splitlines()
    assert sorted(out) == [0, 1]
    return out


def _by_rank(lines: list[str], epochs: set[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {0: [], 1: []}
    for ln in lines:
        m = LINE.match(ln)
        if m and int(m[2]) in epochs:
            out[int(m[1])].append(ln)
    return out


def _replay_and_compare(project: Path, epochs: str, wanted: set[int], plain_args: list[str]):
    (project / "train.py").write_text(EDITED)
    res = florc(["replay", "train.py", "--epochs", epochs], project)
    assert res.returncode == 0, res.stdout + res.stderr
    replayed = [ln for ln in res.stdout.splitlines() if LINE.match(ln)]
    plain = _plain_torchrun(project, EDITED, plain_args)
    expected = {r: _by_rank(lines, wanted)[r] for r, lines in plain.items()}
    got = _by_rank(replayed, wanted)
    assert got == expected and expected[0] and expected[1]
    assert len(replayed) == len(got[0]) + len(got[1])  # nothing outside the asked epochs
    # merged in (epoch, step, rank) order: rank 0's line of a step, then rank 1's
    assert [LINE.match(ln)[1] for ln in replayed[:2]] == ["0", "1"]  # type: ignore[index]
    assert "rank 0: fidelity: exact" in res.stderr and "rank 1: fidelity: exact" in res.stderr
    return res


@pytest.mark.smoke
def test_ddp_record_and_replay_as_two_ranks(tmp_path: Path) -> None:
    project = _project(tmp_path)
    res = florc(["record", "--nproc-per-node", "2", "--checkpoint-all", "train.py"], project)
    assert res.returncode == 0, res.stderr
    assert "rank 0 of 2" in res.stderr
    db = sqlite3.connect(project / ".florc" / "florc.db")
    runs = db.execute("SELECT id, kind, parent FROM runs ORDER BY id").fetchall()
    assert runs == [(1, "record", None), (2, "rank", 1)]
    # the DDP model and optimizer are written by rank 0 only; rank 1 keeps what is its own
    info = db.execute(
        "SELECT info FROM checkpoints WHERE run=2 AND loop LIKE '%:0' AND iteration=2"
    ).fetchone()[0]
    assert '"model"' in info and '"opt"' in info and '"total"' not in info.split("replicated")[1]
    res = _replay_and_compare(project, "2-3", {2, 3}, [])
    assert "2 ranks" in res.stderr


def test_torchrun_module_record_and_epoch_level_replay(tmp_path: Path) -> None:
    project = _project(tmp_path)
    res = run(
        [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc-per-node", "2", "-m", "florc", "record", "--checkpoint-all", "train.py",
        ],
        project,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("epoch 4 loss") == 1  # the script's own output, rank 0 only
    _replay_and_compare(project, "3", {3}, [])


def test_rank_killed_mid_record_leaves_a_replayable_store(tmp_path: Path) -> None:
    project = _project(tmp_path)
    args = ["--epochs", "12", "--sleep", "0.4"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "florc", "record", "--nproc-per-node", "2", "--checkpoint-all",
         "train.py", *args],
        cwd=project, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    db_path = project / ".florc" / "florc.db"
    deadline = time.monotonic() + 120
    pid = None
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if not db_path.exists():
            continue
        try:
            with sqlite3.connect(db_path) as db:
                row = db.execute("SELECT pid FROM runs WHERE kind='rank'").fetchone()
                done = db.execute(
                    "SELECT COUNT(DISTINCT run) FROM checkpoints WHERE loop LIKE '%:0'"
                    " AND iteration=3"
                ).fetchone()[0]
        except sqlite3.OperationalError:
            continue
        if row and done == 2:
            pid = row[0]
            break
    assert pid is not None, "the job did not reach epoch 3"
    os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "rank 1 ended (killed by signal 9)" in err
    runs = florc(["runs"], project)
    assert "killed" in runs.stdout or "failed" in runs.stdout or "interrupted" in runs.stdout
    _replay_and_compare(project, "1-2", {1, 2}, args[:2] + ["--sleep", "0"])
