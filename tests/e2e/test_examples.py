"""End to end on every example shape: record, add hindsight log statements, replay a range.

Each example's `hindsight.edits` adds statements at epoch level, inside the batch loop and after
the main loop. The replay's output must equal, line for line, the new statements' output of a
plain `python train.py` run of the edited script, for exactly the requested epochs (plus what
the new statements print after the main loop), and nothing else.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import (
    EXAMPLES,
    LEVELS,
    apply_edits,
    copy_project,
    epochs_in,
    expected_for,
    florc,
    hindsight_lines,
    python,
)

pytestmark = pytest.mark.e2e

# the framework examples (lightning, transformers) have end-to-end tests of their own, with
# their levels (validation, evaluation), workers and refusals: test_lightning.py,
# test_transformers.py
FRAMEWORKS = {"lightning", "transformers"}
SHAPES = sorted(
    p.name for p in EXAMPLES.iterdir() if (p / "train.py").exists() and p.name not in FRAMEWORKS
)
# the cases `make test` runs: a loop of epochs over batches, a trainer class in its own module,
# a main loop of steps with no batch loop
SMOKE = {"main_train_eval", "trainer_class", "single_step"}


def _record(shape: str, tmp: Path) -> Path:
    project = copy_project(EXAMPLES / shape, tmp / shape)
    plain = python("train.py", copy_project(EXAMPLES / shape, tmp / f"{shape}-plain"))
    assert plain.returncode == 0, plain.stderr
    rec = florc(["record", "--checkpoint-all", "train.py"], project)
    assert rec.returncode == 0, rec.stderr
    assert rec.stdout == plain.stdout, "record must not change the script's own output"
    for f in project.glob("*.pt"):
        f.unlink()  # what the recorded run saved: the replay must not depend on it
    return project


@pytest.mark.parametrize(
    "shape", [pytest.param(s, marks=pytest.mark.smoke) if s in SMOKE else s for s in SHAPES]
)
def test_record_edit_replay(shape: str, tmp_path: Path) -> None:
    project = _record(shape, tmp_path)
    for level in LEVELS:
        # a plain run of the edited script, in a fresh copy of the example
        plain = python(
            "train.py",
            apply_edits(EXAMPLES / shape, level, copy_project(EXAMPLES / shape, tmp_path / level)),
        )
        assert plain.returncode == 0, plain.stderr
        lines = hindsight_lines(plain.stdout)
        assert lines, f"{shape}/{level}: the edit printed nothing in a plain run"
        epochs = epochs_in(lines)
        if len(epochs) >= 3:
            chosen = {epochs[1], epochs[2]}
            spec = f"{epochs[1]}-{epochs[2]}"
        elif epochs:
            chosen, spec = set(epochs), "all"
        else:
            chosen, spec = set(), "last"
        # the recorded project, store included, with the edit applied
        work = apply_edits(
            EXAMPLES / shape, level, shutil.copytree(project, tmp_path / f"replay-{level}")
        )
        rep = florc(["replay", "train.py", "--epochs", spec], work)
        assert rep.returncode == 0, f"{shape}/{level}: {rep.stderr}"
        assert rep.stdout.splitlines() == expected_for(lines, chosen), (
            f"{shape}/{level} --epochs {spec}\nstderr:\n{rep.stderr}"
        )
