"""Hindsight across recorded runs: `florc replay --runs`.

Four runs of one script: two of version 1 with different learning rates, one of version 2 (a
layer added, a line moved), one of version 3 (gradient clipping between backward and step). The
current script is version 2 with a new epoch-level and a new batch-level statement. Replayed
with `--runs all`, each of the first three runs shows exactly what a plain run of *its* version
with the statements added prints; the fourth is skipped, with the reason and the place.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from helpers import florc, python

pytestmark = pytest.mark.e2e

V1 = """\
import argparse

import torch
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.05)
parser.add_argument("--epochs", type=int, default=4)
args = parser.parse_args()

torch.manual_seed(0)
X = torch.randn(48, 4)
Y = X @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1
model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
criterion = nn.MSELoss()
opt = torch.optim.SGD(model.parameters(), lr=args.lr)

for epoch in range(args.epochs):
    total = 0.0
    for i in range(0, 48, 16):
        x, y = X[i : i + 16], Y[i : i + 16]
        opt.zero_grad()
        loss = criterion(model(x).squeeze(-1), y)
        loss.backward()
        opt.step()
        total += loss.item()
    print(f"epoch {epoch} loss {total:.4f}")
"""

# version 2: a layer added, a line moved (the loss function is made before the model)
V2 = V1.replace(
    "model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))\n"
    "criterion = nn.MSELoss()\n",
    "criterion = nn.MSELoss()\n"
    "model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), "
    "nn.Linear(8, 1))\n",
)
# version 3: the batch-level statement's neighbours changed
V3 = V2.replace(
    "        loss.backward()\n",
    "        loss.backward()\n        nn.utils.clip_grad_norm_(model.parameters(), 1.0)\n",
)

BATCH = (
    "        gnorm = sum(float(p.grad.norm()) for p in model.parameters())\n"
    '        print(f"hindsight lr {args.lr} epoch {epoch} step {i} gnorm {gnorm:.6f}")\n'
)
EPOCH = (
    '    print(f"hindsight lr {args.lr} epoch {epoch} wnorm {float(model[0].weight.norm()):.6f}")\n'
)


def with_statements(version: str) -> str:
    """A version with the two new statements, written by hand where they belong."""
    out = version.replace("        loss.backward()\n", "        loss.backward()\n" + BATCH)
    out = out.replace(
        '    print(f"epoch {epoch} loss {total:.4f}")\n',
        '    print(f"epoch {epoch} loss {total:.4f}")\n' + EPOCH,
    )
    assert out.count("hindsight") == 2
    return out


RUNS = [(V1, "0.05"), (V1, "0.1"), (V2, "0.02"), (V3, "0.03")]


def hindsight(text: str, lr: str, epochs: set[int]) -> list[str]:
    """The new statements' lines of one run (by its learning rate) for the given epochs."""
    out = []
    for line in text.splitlines():
        m = re.match(r"hindsight lr (\S+) epoch (\d+) ", line)
        if m and m.group(1) == lr and int(m.group(2)) in epochs:
            out.append(line)
    return out


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The four runs recorded (with a checkpoint at every epoch), the current script in place."""
    root = tmp_path_factory.mktemp("multirun")
    for version, lr in RUNS:
        (root / "train.py").write_text(version)
        rec = florc(["record", "--checkpoint-all", "train.py", "--lr", lr], root)
        assert rec.returncode == 0, rec.stderr
    (root / "train.py").write_text(with_statements(V2))
    return root


def copy_of(recorded: Path, tmp_path: Path) -> Path:
    work = tmp_path / "project"
    shutil.copytree(recorded, work)
    return work


@pytest.mark.smoke
def test_replay_runs_all_equals_a_plain_run_of_each_version(recorded: Path, tmp_path: Path) -> None:
    work = copy_of(recorded, tmp_path)
    rep = florc(["replay", "train.py", "--runs", "all", "--epochs", "2-3"], work)
    assert rep.returncode == 0, rep.stderr
    for n, (version, lr) in enumerate(RUNS[:3], start=1):
        (work / "plain.py").write_text(with_statements(version))
        plain = python("plain.py", work, ["--lr", lr])
        assert plain.returncode == 0, plain.stderr
        want = hindsight(plain.stdout, lr, {2, 3})
        assert len(want) == 2 * (3 + 1), plain.stdout  # per epoch: 3 batches, 1 epoch line
        assert hindsight(rep.stdout, lr, {2, 3}) == want, f"run {n}"
    # run 4's version has gradient clipping between backward and step: skipped, with why
    assert hindsight(rep.stdout, "0.03", {0, 1, 2, 3}) == []
    assert "run 4 · lr=0.03" in rep.stderr and "skipped" in rep.stderr
    assert re.search(
        r"train\.py:25:9: `gnorm = sum\(.*` cannot be placed in run 4: the code around it "
        r"changed — .*after `loss.backward\(\)` and before `opt.step\(\)`",
        rep.stderr,
    ), rep.stderr
    # the summary: three replays, exact, one skipped
    for n in (1, 2, 3):
        assert re.search(rf"florc:\s+{n}\s+\d+\s+lr=\S+\s+\S+\s+done, exact", rep.stderr)
    assert "3 runs replayed, 1 skipped" in rep.stderr
    # each replay is stored with the run it replays, and its values are named
    runs = florc(["runs"], work).stdout
    assert len([ln for ln in runs.splitlines() if " replay " in f" {ln} "]) == 3, runs


def test_dry_run_says_where_each_statement_goes_and_replays_nothing(
    recorded: Path, tmp_path: Path
) -> None:
    work = copy_of(recorded, tmp_path)
    dry = florc(["replay", "train.py", "--runs", "all", "--dry-run"], work)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout == ""
    # run 1 (version 1): the statements go to lines 25-26 and 30 of its code
    assert "run 1 · lr=0.05: 3 statements placed" in dry.stderr
    assert "train.py:25 → train.py:25  `gnorm = sum(" in dry.stderr
    assert 'train.py:30 → train.py:30  `print(f"hindsight lr {args.lr} epoch {epoch}' in (
        dry.stderr
    )
    assert "in for epoch in range(args.epochs), after `for i in range(0, 48, 16)`" in dry.stderr
    assert "cannot be placed in run 4" in dry.stderr
    runs = florc(["runs"], work).stdout
    assert " replay " not in runs


def test_where_chooses_the_runs_by_argument(recorded: Path, tmp_path: Path) -> None:
    work = copy_of(recorded, tmp_path)
    rep = florc(["replay", "train.py", "--where", "lr=0.1", "--epochs", "last"], work)
    assert rep.returncode == 0, rep.stderr
    assert hindsight(rep.stdout, "0.1", {3}) and not hindsight(rep.stdout, "0.05", {0, 1, 2, 3})
    assert "1 run replayed" in rep.stderr
    both = florc(["replay", "train.py", "--run", "2", "--runs", "all"], work)
    assert both.returncode == 2 and "give either --run or --runs" in both.stderr
    none = florc(["replay", "train.py", "--where", "lr=9"], work)
    assert none.returncode != 0 and "no recorded run of train.py with lr=9" in none.stderr
    assert "Traceback" not in none.stderr


def test_statements_in_a_local_module_go_into_each_runs_recorded_module(tmp_path: Path) -> None:
    """examples/trainer_class: the loops live in trainer.py. Run 2's trainer.py clips gradients
    (a change away from the statements); the epoch-level statement goes into each run's own
    trainer.py, the after-loop one into its train.py."""
    from helpers import EXAMPLES

    work = tmp_path / "project"
    shutil.copytree(EXAMPLES / "trainer_class", work)
    trainer = (work / "trainer.py").read_text()
    clipped = trainer.replace(
        "        loss.backward()\n",
        "        loss.backward()\n"
        "        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)\n",
    )
    assert clipped != trainer
    script = (work / "train.py").read_text()
    epoch_line = '            print(f"epoch {epoch} loss {self.epoch_loss:.6f}")\n'
    after_line = 'print(f"train acc {acc:.4f}")\n'
    assert epoch_line in trainer and after_line in script

    def edited(trainer_text: str) -> tuple[str, str]:
        return (
            trainer_text.replace(
                epoch_line,
                epoch_line + "            print(f\"HS lr {self.optimizer.defaults['lr']} "
                'epoch {epoch} count {count} loss {self.epoch_loss:.6f}")\n',
            ),
            script.replace(
                after_line, after_line + 'print(f"HS lr {args.lr} after acc {acc:.6f}")\n'
            ),
        )

    for text, lr in ((trainer, "0.05"), (clipped, "0.1")):
        (work / "trainer.py").write_text(text)
        rec = florc(["record", "train.py", "--lr", lr], work)
        assert rec.returncode == 0, rec.stderr
    new_trainer, new_script = edited(clipped)
    (work / "trainer.py").write_text(new_trainer)
    (work / "train.py").write_text(new_script)
    rep = florc(["replay", "train.py", "--runs", "all", "--epochs", "3-4"], work)
    assert rep.returncode == 0, rep.stderr
    got = [ln for ln in rep.stdout.splitlines() if ln.startswith("HS ")]
    want = []
    for text, lr in ((trainer, "0.05"), (clipped, "0.1")):
        plain_trainer, plain_script = edited(text)
        (work / "trainer.py").write_text(plain_trainer)
        (work / "train.py").write_text(plain_script)
        plain = python("train.py", work, ["--lr", lr])
        assert plain.returncode == 0, plain.stderr
        lines = [ln for ln in plain.stdout.splitlines() if ln.startswith("HS ")]
        want += [ln for ln in lines if " epoch 3 " in ln or " epoch 4 " in ln or " after " in ln]
    assert len(want) == 2 * 3 and got == want
    assert "trainer.py:" in rep.stderr and "2 runs replayed" in rep.stderr
