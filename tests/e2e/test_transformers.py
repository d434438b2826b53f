"""Hugging Face transformers' epochs as florc's main loop (examples/transformers/): the script
calls `trainer.train()` and is recorded unchanged; statements added to a callback's
`on_epoch_end`, a `compute_loss` override, `compute_metrics` and after the train call replay for
a middle range of epochs exactly as a plain run of the edited script prints them for those
epochs, with one worker and with two, and with an exact fidelity line. What cannot be replayed
exactly is refused at record, with where the script calls train().
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

pytest.importorskip("transformers")
pytest.importorskip("accelerate")

pytestmark = pytest.mark.e2e

TRANSFORMERS = EXAMPLES / "transformers"


def train_call(script: Path) -> str:
    """Where the script calls `trainer.train()` (path:line:col)."""
    lines = script.read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if text.startswith("result = trainer.train()"))
    return f"train.py:{line}:{lines[line - 1].index('trainer.train()') + 1}"


TRAIN_CALL = train_call(TRANSFORMERS / "train.py")


def _edited(level: str, dst: Path, base: Path | None = None) -> Path:
    if base is None:
        copy_project(TRANSFORMERS, dst)
    else:
        shutil.copytree(base, dst)
    for edit in read_edits(TRANSFORMERS / "hindsight.edits")[level]:
        edit.apply(dst)
    return dst


def _recorded(tmp_path: Path) -> tuple[Path, str]:
    project = copy_project(TRANSFORMERS, tmp_path / "recorded")
    rec = florc(["record", "--checkpoint-all", "train.py"], project)
    assert rec.returncode == 0, rec.stderr
    assert (
        f"main loop: Hugging Face transformers' epochs, `trainer.train()` at {TRAIN_CALL}"
        in rec.stderr
    ), rec.stderr
    assert re.search(r"6 main-loop iterations, 5 checkpoints", rec.stderr), rec.stderr
    return project, rec.stdout


def _plain_lines(level: str, tmp_path: Path) -> list[str]:
    plain = python("train.py", _edited(level, tmp_path / f"plain-{level}"))
    assert plain.returncode == 0, plain.stderr
    lines = hindsight_lines(plain.stdout)
    assert lines, f"{level}: the edit printed nothing in a plain run"
    assert epochs_in(lines) == ([] if level == "after" else list(range(6)))
    return lines


def _replayed(
    level: str, lines: list[str], tmp_path: Path, project: Path, spec: str, workers: int = 1
) -> None:
    work = _edited(level, tmp_path / f"replay-{level}-{workers}", base=project)
    args = ["replay", "train.py", "--epochs", spec]
    rep = florc([*args, "--workers", str(workers)] if workers > 1 else args, work)
    assert rep.returncode == 0, f"{level}: {rep.stderr}"
    first, last = (int(e) for e in spec.split("-"))
    wanted = set(range(first, last + 1))
    assert rep.stdout.splitlines() == expected_for(lines, wanted), f"{level}\n{rep.stderr}"
    assert re.search(r"fidelity: exact \(\d+ recorded values", rep.stderr), rep.stderr
    if workers > 1:
        assert f"from the checkpoint before epoch {first}" in rep.stderr, rep.stderr
        assert f"from the checkpoint before epoch {(first + last + 1) // 2}" in rep.stderr


@pytest.mark.smoke
def test_transformers_epoch_statement_replays_a_middle_range(tmp_path: Path) -> None:
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
    assert "epochs 2–3 — Hugging Face transformers' epochs (trainer.state.epoch" in rep.stderr
    assert "1 epoch checkpoint and" in rep.stderr, rep.stderr  # epochs 0-1 were not run
    assert re.search(r"fidelity: exact \(\d+ recorded values", rep.stderr), rep.stderr


def test_transformers_step_evaluation_and_after_statements_with_one_and_two_workers(
    tmp_path: Path,
) -> None:
    project, _ = _recorded(tmp_path)
    # compute_loss: dropout draws from torch's generator, the one restored at the epoch start
    batch = _plain_lines("batch", tmp_path)
    _replayed("batch", batch, tmp_path, project, "2-3")
    _replayed("batch", batch, tmp_path, project, "1-4", workers=2)
    evaluation = _plain_lines("evaluation", tmp_path)
    _replayed("evaluation", evaluation, tmp_path, project, "2-3")
    _replayed("evaluation", evaluation, tmp_path, project, "1-4", workers=2)
    # after train(): training runs on silently; the training_loss it returns is the full run's
    _replayed("after", _plain_lines("after", tmp_path), tmp_path, project, "2-3")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("num_train_epochs=6,", "num_train_epochs=6, max_steps=15,"),
            "training stops after 15 optimizer steps, inside epoch 2 (6 steps per epoch)",
        ),
        (
            ("train_dataset=Tokens(96, seed=1),", "train_dataset=Stream(),"),
            "the training data has no length (an IterableDataset)",
        ),
    ],
)
def test_what_cannot_be_replayed_exactly_is_refused_at_record(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    project = copy_project(TRANSFORMERS, tmp_path / "refused")
    script = project / "train.py"
    text = script.read_text().replace(*change)
    text = text.replace(
        "class LossTrainer(Trainer):",
        "class Stream(torch.utils.data.IterableDataset):\n"
        "    def __iter__(self):\n"
        "        return iter(Tokens(96, seed=1))\n\n\n"
        "class LossTrainer(Trainer):",
    )
    if "Stream()" in text:
        text = text.replace("num_train_epochs=6,", "num_train_epochs=6, max_steps=12,")
    script.write_text(text)
    rec = florc(["record", "train.py"], project)
    assert rec.returncode == 2, rec.stderr
    assert f"florc: {train_call(script)}: {message}" in rec.stderr, rec.stderr
    assert "Traceback" not in rec.stderr


def test_state_a_callback_keeps_in_its_own_attributes_is_restored(tmp_path: Path) -> None:
    """The script's callback keeps a history of epoch-end steps in `self.history` (not in the
    Trainer's checkpoint): a new statement reading it at epochs 2-3 sees what a plain run
    sees there, not a history that starts at the resumed epoch."""
    project = copy_project(TRANSFORMERS, tmp_path / "history")
    script = project / "train.py"
    text = script.read_text()
    anchor = "        self.steps = state.global_step\n"
    assert anchor in text
    text = text.replace(
        "class EpochReport(TrainerCallback):\n",
        "class EpochReport(TrainerCallback):\n    def __init__(self):\n        self.history = []\n\n",
    ).replace(anchor, anchor + "        self.history.append(state.global_step)\n")
    script.write_text(text)
    rec = florc(["record", "--checkpoint-all", "train.py"], project)
    assert rec.returncode == 0, rec.stderr
    new = (
        '        print(f"HINDSIGHT e={round(state.epoch) - 1} n={len(self.history)} '
        's={sum(self.history)}")\n'
    )
    script.write_text(text.replace(anchor, anchor + new))
    plain = python("train.py", project)
    assert plain.returncode == 0, plain.stderr
    lines = hindsight_lines(plain.stdout)
    assert [ln.split()[2] for ln in lines] == [f"n={n}" for n in range(6)]
    rep = florc(["replay", "train.py", "--epochs", "2-3"], project)
    assert rep.returncode == 0, rep.stderr
    assert rep.stdout.splitlines() == expected_for(lines, {2, 3}), rep.stderr
