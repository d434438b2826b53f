"""PyTorch Lightning's epochs as florc's main loop (examples/lightning/): the script calls
`trainer.fit(...)` and is recorded unchanged; statements added to `on_train_epoch_end`,
`training_step`, `validation_step` and after the fit call replay for a middle range of epochs
exactly as a plain run of the edited script prints them for those epochs, with one worker and
with two, and with an exact fidelity line. A Trainer on several devices is refused at record.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from helpers import (
    EXAMPLES,
    copy_project,
    epochs_in,
    expected_for,
    florc,
    hindsight_lines,
    python,
    read_edits,
)

pytest.importorskip("lightning")

pytestmark = pytest.mark.e2e

LIGHTNING = EXAMPLES / "lightning"


def _edited(level: str, dst: Path, base: Path | None = None) -> Path:
    if base is None:
        copy_project(LIGHTNING, dst)
    else:
        shutil.copytree(base, dst)
    for edit in read_edits(LIGHTNING / "hindsight.edits")[level]:
        edit.apply(dst)
    return dst


def _recorded(tmp_path: Path) -> tuple[Path, str]:
    project = copy_project(LIGHTNING, tmp_path / "recorded")
    rec = florc(["record", "--checkpoint-all", "train.py"], project)
    assert rec.returncode == 0, rec.stderr
    assert "main loop: PyTorch Lightning's epochs, `trainer.fit(" in rec.stderr, rec.stderr
    assert re.search(r"6 main-loop iterations, 5 checkpoints", rec.stderr), rec.stderr
    return project, rec.stdout


@pytest.mark.smoke
def test_lightning_epoch_statement_replays_a_middle_range(tmp_path: Path) -> None:
    project, recorded = _recorded(tmp_path)
    plain = python("train.py", _edited("epoch", tmp_path / "plain"))
    assert plain.returncode == 0, plain.stderr
    assert [ln for ln in plain.stdout.splitlines() if not ln.startswith("HINDSIGHT")] == (
        recorded.splitlines()
    ), "record must not change the script's own output"
    lines = hindsight_lines(plain.stdout)
    assert epochs_in(lines) == list(range(6))
    work = _edited("epoch", tmp_path / "replay", base=project)
    rep = florc(["replay", "train.py", "--epochs", "2-3"], work)
    assert rep.returncode == 0, rep.stderr
    assert rep.stdout.splitlines() == expected_for(lines, {2, 3}), rep.stderr
    assert "epochs 2–3 — PyTorch Lightning's epochs (trainer.current_epoch" in rep.stderr
    assert "1 epoch checkpoint and" in rep.stderr, rep.stderr  # epochs 0-1 were not run
    assert re.search(r"fidelity: exact \(\d+ recorded values", rep.stderr), rep.stderr


def test_lightning_step_validation_and_after_statements_with_one_and_two_workers(
    tmp_path: Path,
) -> None:
    project, _ = _recorded(tmp_path)
    for level in ("batch", "validation", "after"):
        lines = hindsight_lines(python("train.py", _edited(level, tmp_path / level)).stdout)
        assert lines, f"{level}: the edit printed nothing in a plain run"
        assert epochs_in(lines) == ([] if level == "after" else list(range(6)))
        work = _edited(level, tmp_path / f"replay-{level}", base=project)
        rep = florc(["replay", "train.py", "--epochs", "2-3"], work)
        assert rep.returncode == 0, f"{level}: {rep.stderr}"
        assert rep.stdout.splitlines() == expected_for(lines, {2, 3}), f"{level}\n{rep.stderr}"
        assert re.search(r"fidelity: exact \(\d+ recorded values", rep.stderr), rep.stderr
        if level == "batch":  # dropout draws from torch's generator: the restored one
            par = florc(["replay", "train.py", "--epochs", "1-4", "--workers", "2"], work)
            assert par.returncode == 0, par.stderr
            assert par.stdout.splitlines() == expected_for(lines, {1, 2, 3, 4})
            assert "from the checkpoint before epoch 3" in par.stderr, par.stderr
            assert re.search(r"fidelity: exact \(\d+ recorded values", par.stderr), par.stderr


def test_lightning_on_several_devices_is_refused_at_record(tmp_path: Path) -> None:
    project = copy_project(LIGHTNING, tmp_path / "ddp")
    script = project / "train.py"
    script.write_text(script.read_text().replace("devices=1,", 'devices=2, strategy="ddp",'))
    rec = florc(["record", "train.py"], project)
    assert rec.returncode == 2, rec.stderr
    assert "florc: train.py:58:1: the Trainer trains on 2 devices (DDPStrategy)" in rec.stderr
    assert "Record with `devices=1`" in rec.stderr and "Traceback" not in rec.stderr


def test_state_the_module_keeps_in_its_own_attributes_is_restored(tmp_path: Path) -> None:
    """A LightningModule that keeps a history of epoch losses in `self.history` (not in its
    state_dict, so not in Lightning's checkpoint): a new statement reading it at epochs 2-3
    sees what a plain run sees there, not a history that starts at the resumed epoch."""
    project = copy_project(LIGHTNING, tmp_path / "history")
    script = project / "train.py"
    text = script.read_text()
    text = text.replace(
        "        self.totals: list[float] = []\n",
        "        self.totals: list[float] = []\n        self.history: list[float] = []\n",
    ).replace(
        "        self.totals.clear()\n",
        "        self.totals.clear()\n        self.history.append(round(mean, 6))\n",
    )
    assert text.count("self.history") == 2
    # and a callback of the script's that keeps its own list of the epochs it saw
    text = text.replace(
        "model = Regressor()\n",
        "class Seen(L.Callback):\n    def __init__(self):\n        self.seen = []\n\n"
        "    def on_train_epoch_end(self, trainer, pl_module):\n"
        "        self.seen.append(trainer.current_epoch)\n\n\nSEEN = Seen()\n"
        "model = Regressor()\n",
    ).replace("    max_epochs=6,\n", "    max_epochs=6,\n    callbacks=[SEEN],\n")
    assert text.count("SEEN") == 2
    script.write_text(text)
    rec = florc(["record", "--checkpoint-all", "train.py"], project)
    assert rec.returncode == 0, rec.stderr
    anchor = '        print(f"epoch {self.current_epoch} loss {mean:.6f}")\n'
    new = (
        '        print(f"HINDSIGHT e={self.current_epoch} n={len(self.history)} '
        's={sum(self.history):.6f} seen={SEEN.seen}")\n'
    )
    script.write_text(text.replace(anchor, anchor + new))
    plain = python("train.py", project)
    assert plain.returncode == 0, plain.stderr
    lines = hindsight_lines(plain.stdout)
    assert [ln.split()[2] for ln in lines] == [f"n={n}" for n in range(1, 7)]
    rep = florc(["replay", "train.py", "--epochs", "2-3"], project)
    assert rep.returncode == 0, rep.stderr
    assert rep.stdout.splitlines() == expected_for(lines, {2, 3}), rep.stderr
    assert "1 epoch checkpoint and" in rep.stderr, rep.stderr  # resumed, not re-run from 0
