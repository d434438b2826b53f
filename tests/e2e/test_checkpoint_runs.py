"""Checkpoints end to end: runs, sizes and gc; a budget out of range; classes defined in the
script; a block faster to run than to restore; an object neither pickle nor cloudpickle can
serialise, reported once with its path, and the fix the note suggests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import florc

from florc.runtime import checkpoint
from florc.store.index import Store

pytestmark = pytest.mark.e2e

# --- gc and runs ------------------------------------------------------------------------------

SCRIPT = """\
import torch

torch.manual_seed(0)
frozen = torch.nn.Embedding(4000, 32)
frozen.weight.requires_grad_(False)
head = torch.nn.Linear(32, 2)
opt = torch.optim.SGD(head.parameters(), lr=0.1)
for epoch in range(4):
    for i in range(3):
        loss = head(frozen(torch.arange(i, i + 8))).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    frozen.weight.add_(0)  # in place: part of the changeset, unchanged bytes
    print(f"epoch {epoch} loss {loss.item():.6f}")
"""


def test_runs_sizes_and_gc(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(SCRIPT)
    for _ in range(3):
        assert florc(["record", "--checkpoint-all", "train.py"], tmp_path).returncode == 0
    runs = json.loads(florc(["runs", "--format", "json"], tmp_path).stdout)
    assert [r["checkpoints"] for r in runs] == [8, 8, 8]
    store = Store(tmp_path)
    logical, stored = store.run_bytes(1)
    embedding = 4000 * 32 * 4
    assert logical > 8 * embedding and stored < 2 * embedding
    store.close()
    packs = tmp_path / ".florc" / "blobs" / "packs"
    assert len(list(packs.glob("*.pack"))) >= 8  # one per checkpoint with new blobs
    orphan = packs / "0-0-0.pack"
    orphan.write_bytes(b"FLRC\0\0\0\0left by a crash")  # written, never committed
    (tmp_path / ".florc" / "blobs" / "ab").mkdir(exist_ok=True)
    loose = tmp_path / ".florc" / "blobs" / "ab" / ("c" * 30)
    loose.write_bytes(b"a loose blob file no row names")

    res = florc(["gc", "--keep-last", "1"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert "deleted runs 1, 2" in res.stdout
    assert not orphan.exists() and not loose.exists()
    runs = json.loads(florc(["runs", "--format", "json"], tmp_path).stdout)
    assert [r["id"] for r in runs] == [3]
    store = Store(tmp_path)
    # what is left is exactly what run 3 uses, on disk as in the index
    assert store.store_bytes() == store.run_bytes(3)[1] > 0
    # on disk: run 3's packs, and the packs of runs 1 and 2 whose blobs it shares (the frozen
    # embedding, stored once), kept because less than half of each is dead
    files = [f for f in (tmp_path / ".florc" / "blobs").rglob("*") if f.is_file()]
    assert all(f.parent == packs for f in files)
    on_disk = sum(f.stat().st_size for f in files)
    assert store.store_bytes() <= on_disk < store.store_bytes() + 8 * 4096
    for row in store.checkpoints(3):  # what is kept still loads
        checkpoint.decode(store.get_blob(row.blob), store.get_blob)
    with store.exclusive() as alone:
        assert alone
        busy = florc(["gc", "3"], tmp_path)
    assert busy.returncode == 1 and "record or replay is using this store" in busy.stderr
    store.close()
    assert florc(["gc", "7"], tmp_path).returncode == 2


def test_record_rejects_a_budget_outside_0_to_1(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("print(1)\n")
    res = florc(["record", "--overhead", "5", "train.py"], tmp_path)
    assert res.returncode == 2 and "between 0 and 1" in res.stderr
    assert not (tmp_path / ".florc").exists() or not list((tmp_path / ".florc").glob("*.db"))


CLASS_SCRIPT = """\
import torch


class Classifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.table = torch.nn.Embedding(200_000, 64)  # 51 MB: the writer is still busy at exit
        self.head = torch.nn.Linear(64, 2)

    def forward(self, idx):
        return self.head(self.table(idx))


torch.manual_seed(0)
model = Classifier()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for epoch in range(3):
    loss = model(torch.arange(epoch, epoch + 4)).sum()
    opt.zero_grad()
    loss.backward()
    opt.step()
    print(f"epoch {epoch} loss {loss.item():.6f}")
"""


def test_checkpoints_of_classes_defined_in_the_script_are_written_after_it_ends(
    tmp_path: Path,
) -> None:
    (tmp_path / "train.py").write_text(CLASS_SCRIPT)
    rec = florc(["record", "--checkpoint-all", "train.py"], tmp_path)
    assert rec.returncode == 0, rec.stderr
    store = Store(tmp_path)
    rows = store.checkpoints(1)
    assert len(rows) == 4 and all(r.usable for r in rows), [r.info for r in rows]
    store.close()


# --- replay: restore or re-run ----------------------------------------------------------

CHEAP_BLOCK = """\
import numpy as np

table = np.zeros(1_000_000)  # 8 MB of state, changed a little each epoch
for epoch in range(5):
    for i in range(3):
        table[i] += epoch + i
    # HINDSIGHT
    print(f"epoch {epoch} {table[:3].sum()}")
"""


@pytest.mark.smoke
def test_a_block_faster_to_run_than_to_restore_is_run_again(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(CHEAP_BLOCK)
    rec = florc(["record", "--checkpoint-all", "train.py"], tmp_path)
    assert rec.returncode == 0, rec.stderr
    store = Store(tmp_path)
    blocks = [c for c in store.checkpoints(1) if c.info.get("ran_seconds") is not None]
    store.close()
    assert len(blocks) == 5  # each block says how long it ran

    edited = CHEAP_BLOCK.replace("# HINDSIGHT", 'print(f"HINDSIGHT e={epoch} {table[2]}")')
    (tmp_path / "train.py").write_text(edited)
    rep = florc(["replay", "train.py", "--epochs", "2-4"], tmp_path)
    assert rep.returncode == 0, rep.stderr
    assert [x for x in rep.stdout.splitlines() if x.startswith("HINDSIGHT")] == [
        f"HINDSIGHT e={e} {float(2 + sum(range(e + 1)) + 2 * e)}" for e in (2, 3, 4)
    ]
    # the epoch boundary is restored (the only way to skip epochs 0-1); the blocks run again
    assert "because that was faster than restoring" in rep.stderr, rep.stderr
    assert "fidelity: exact" in rep.stderr


LOCK_SCRIPT = """\
import threading

import torch


class Counter:
    def __init__(self):
        self.lock = threading.Lock()
        self.seen = 0
{getstate}

torch.manual_seed(0)
counter = Counter()
w = torch.zeros(3)
for epoch in range(4):
    for i in range(3):
        with counter.lock:
            counter.seen += 1
        w += i
    print(f"epoch {epoch} seen {counter.seen} w {w.sum().item()}")
"""

GETSTATE = """
    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "lock"}
"""


def test_an_object_neither_can_serialise_is_reported_once_with_its_path(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(LOCK_SCRIPT.replace("{getstate}", ""))
    rec = florc(["record", "--checkpoint-all", "train.py"], tmp_path)
    assert rec.returncode == 0, rec.stderr
    notes = [ln for ln in rec.stderr.splitlines() if "counter.lock" in ln]
    assert len(notes) == 1, rec.stderr  # once per run, not once per checkpoint
    assert "not usable" in notes[0] and "give the class of `counter` a __getstate__" in notes[0]

    # what the note says to do works: the lock is left out, the rest is restored
    work = tmp_path / "fixed"
    work.mkdir()
    (work / "train.py").write_text(LOCK_SCRIPT.replace("{getstate}", GETSTATE))
    rec = florc(["record", "--checkpoint-all", "train.py"], work)
    assert rec.returncode == 0 and "not usable" not in rec.stderr, rec.stderr
    edited = LOCK_SCRIPT.replace("{getstate}", GETSTATE).replace(
        '    print(f"epoch', '    print(f"HINDSIGHT {epoch} {counter.seen}")\n    print(f"epoch'
    )
    (work / "train.py").write_text(edited)
    rep = florc(["replay", "train.py", "--epochs", "2-3"], work)
    assert rep.returncode == 0, rep.stderr
    assert [x for x in rep.stdout.splitlines() if x.startswith("HINDSIGHT")] == [
        "HINDSIGHT 2 9",
        "HINDSIGHT 3 12",
    ]
    # epochs 0-1 were skipped: the boundary checkpoint holding `counter` was restored, and the
    # loop's `with counter.lock` ran on the live lock
    assert "1 epoch checkpoint and" in rep.stderr, rep.stderr
