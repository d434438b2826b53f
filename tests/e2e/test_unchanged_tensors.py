"""Tensors a checkpoint does not copy because they did not change: replay is still exact.

The script holds the shapes PyTorch's version counter does not see: a frozen backbone (never
written: skipped), BatchNorm running statistics (written in forward, no counter bump), a fused
Adam (no counter bump), hand-written SGD through `.data` (no counter bump, every element), and a
few embedding rows written through `.data` that the byte probe does not sample (only the
periodic verification finds those, and marks the checkpoints that skipped the table unusable).
Record with a checkpoint at every opportunity, add prints, replay a middle range: the values are
those of a plain run of the edited script.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import expected_for, florc, hindsight_lines, python

from florc.runtime import checkpoint
from florc.store.index import Store

pytestmark = pytest.mark.e2e

SCRIPT = """\
import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = torch.nn.Sequential(torch.nn.Linear(32, 256), torch.nn.ReLU(),
                                            torch.nn.Linear(256, 256))
        self.norm = torch.nn.BatchNorm1d(256)
        self.emb = torch.nn.Embedding(4000, 32)
        self.head = torch.nn.Linear(256, 4)
        self.extra = torch.nn.Linear(256, 256, bias=False)

    def forward(self, x, ids):
        h = self.norm(self.backbone(x + self.emb(ids)))
        return self.head(h + self.extra(h))


torch.manual_seed(0)
model = Net()
for p in model.backbone.parameters():
    p.requires_grad_(False)
opt = torch.optim.Adam(model.head.parameters(), lr=0.01, fused=True)
x = torch.randn(256, 32)
ids = torch.randint(0, 4000, (256,))
y = torch.randint(0, 4, (256,))
for epoch in range(12):
    for i in range(4):
        out = model(x[i * 64:(i + 1) * 64], ids[i * 64:(i + 1) * 64])
        loss = torch.nn.functional.cross_entropy(out, y[i * 64:(i + 1) * 64])
        opt.zero_grad()
        model.extra.weight.grad = None
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.extra.weight.data.add_(model.extra.weight.grad, alpha=-0.01)
            model.emb.weight.data[1 + epoch % 40] += 0.25
    print(f"epoch {epoch} loss {loss.item():.6f}")
"""

EPOCH_PRINT = (
    '    print(f"HINDSIGHT e={epoch} state",'
    " sum(float(t.double().sum()) for t in model.state_dict().values()))\n"
)
BATCH_PRINT = (
    '        print(f"HINDSIGHT e={epoch} step {i} emb {float(model.emb.weight.sum()):.9f}'
    ' mean {float(model.norm.running_mean.sum()):.9f}")\n'
)


def _edited() -> str:
    lines = SCRIPT.splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if 'print(f"epoch' in line)
    lines.insert(at + 1, EPOCH_PRINT)
    step = next(i for i, line in enumerate(lines) if "model.emb.weight.data[" in line)
    lines.insert(step + 1, BATCH_PRINT)
    return "".join(lines)


def test_skipped_tensors_replay_exactly(tmp_path: Path) -> None:
    train = tmp_path / "train.py"
    train.write_text(SCRIPT)
    rec = florc(["record", "--checkpoint-all", "train.py"], tmp_path)
    assert rec.returncode == 0, rec.stderr
    assert "of unchanged tensors not copied again" in rec.stderr
    # the embedding rows written through .data without the probe seeing them: found stale
    assert "marked unusable" in rec.stderr and "`.data`" in rec.stderr
    with Store(tmp_path, readonly=True) as store:
        rows = store.checkpoints(1)
        stale = [r for r in rows if not r.usable and "version counter" in r.info.get("reason", "")]
        assert stale, [r.info for r in rows]

    train.write_text(_edited())
    plain = python("train.py", tmp_path)
    assert plain.returncode == 0, plain.stderr
    want = expected_for(hindsight_lines(plain.stdout), set(range(5, 10)))
    assert len(want) == 5 * 5
    rep = florc(["replay", "train.py", "--epochs", "5-9"], tmp_path)
    assert rep.returncode == 0, rep.stderr
    assert hindsight_lines(rep.stdout) == want
    assert "diverged" not in rep.stderr.lower()


def test_unchanged_tensors_cost_no_copy_when_nothing_writes_them(tmp_path: Path) -> None:
    """A frozen 4 MB table in the changeset: copied once, then referred to (until verified)."""
    script = (
        "import torch\n"
        "torch.manual_seed(0)\n"
        "table = torch.randn(1024, 1024)\n"
        "w = torch.zeros(8)\n"
        "for epoch in range(10):\n"
        "    for i in range(3):\n"
        "        w += table[i, :8]\n"
        "        table.mul_(1.0) if epoch < 0 else None\n"
        "    print(f'epoch {epoch} w {float(w.sum()):.6f}')\n"
    )
    (tmp_path / "train.py").write_text(script)
    rec = florc(["record", "--checkpoint-all", "train.py"], tmp_path)
    assert rec.returncode == 0, rec.stderr
    with Store(tmp_path, readonly=True) as store:
        rows = [r for r in store.checkpoints(1) if r.usable and r.loop != "<start>"]
        logical, stored = store.run_bytes(1)
        for row in rows:  # every checkpoint loads, with the table it did not copy
            snap = checkpoint.decode(store.get_blob(row.blob), store.get_blob)
            assert snap.paths["table"].value.shape == (1024, 1024)
    table = 1024 * 1024 * 4
    assert len(rows) >= 10
    assert logical > 9 * table  # each checkpoint holds the table ...
    assert stored < 1.5 * table  # ... stored once
    assert "of unchanged tensors not copied again" in rec.stderr
