"""On a CUDA GPU: record → edit → replay of a training script whose state lives on the GPU.

Skipped without CUDA. The checkpoints copy GPU tensors to pinned host buffers on a side stream
(runtime/state/capture.py); replay must restore them onto the GPU and print exactly what a plain run prints.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import florc, hindsight_lines, python

from florc.store.index import Store

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

TRAIN = """\
import torch
from torch import nn

torch.manual_seed(0)
device = "cuda"
x = torch.randn(2048, 64, device=device)
y = (x[:, :8].sum(1) > 0).long()
model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 2)).to(device)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
loss_fn = nn.CrossEntropyLoss()

for epoch in range(6):
    perm = torch.randperm(len(x), device=device)
    total = 0.0
    for i in range(0, len(x), 256):
        idx = perm[i : i + 256]
        loss = loss_fn(model(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item()
        # BATCH
    # EPOCH
    print(f"epoch {epoch} loss {total:.6f}")
# AFTER
"""

EDITS = {
    "# EPOCH": 'print(f"HINDSIGHT e={epoch} w={model[0].weight.norm().item():.6f}")',
    "# BATCH": 'print(f"HINDSIGHT e={epoch} i={i} loss={loss.item():.6f}")',
    "# AFTER": 'print(f"HINDSIGHT after w={model[2].weight.sum().item():.6f}")',
}


def edited() -> str:
    text = TRAIN
    for marker, statement in EDITS.items():
        text = text.replace(marker, statement)
    return text


@pytest.mark.parametrize("workers", [1, 2])
def test_gpu_state_replays_exactly(tmp_path: Path, workers: int) -> None:
    (tmp_path / "train.py").write_text(TRAIN)
    rec = florc(["record", "--checkpoint-all", "train.py"], tmp_path)
    assert rec.returncode == 0, rec.stderr
    # every checkpoint of the GPU state was taken and written (none marked not usable)
    store = Store(tmp_path)
    rows = store.checkpoints(1)
    store.close()
    assert rows and all(r.usable for r in rows), [r.info for r in rows if not r.usable]

    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "train.py").write_text(edited())
    want = hindsight_lines(python("train.py", plain).stdout)
    assert len(want) == 6 + 6 * 8 + 1

    (tmp_path / "train.py").write_text(edited())
    rep = florc(["replay", "train.py", "--epochs", "all", "--workers", str(workers)], tmp_path)
    assert rep.returncode == 0, rep.stderr
    assert hindsight_lines(rep.stdout) == want
    assert "fidelity: exact" in rep.stderr
