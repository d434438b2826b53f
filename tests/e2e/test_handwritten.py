"""A script instrumented by hand with florc's public API (examples/handwritten/): `florc.loop`
marks its epochs and batches, `florc.checkpoint` names what is checkpointed. The compiler leaves
its loops as written; record and replay must still behave as for an instrumented script: the
record's output is a plain run's, and a replay of epochs in the middle (and of a statement after
the loop, and with two workers) prints exactly what a plain run of the edited script prints for
those epochs, with an exact fidelity line.

Without a session the API does nothing: the script runs as plain Python.
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

pytestmark = pytest.mark.e2e

HANDWRITTEN = EXAMPLES / "handwritten"


def _edited(level: str, dst: Path, base: Path | None = None) -> Path:
    if base is None:
        copy_project(HANDWRITTEN, dst)
    else:
        shutil.copytree(base, dst)
    for edit in read_edits(HANDWRITTEN / "hindsight.edits")[level]:
        edit.apply(dst)
    return dst


def test_handwritten_record_edit_replay(tmp_path: Path) -> None:
    project = copy_project(HANDWRITTEN, tmp_path / "recorded")
    plain = python("train.py", copy_project(HANDWRITTEN, tmp_path / "plain"))
    assert plain.returncode == 0, plain.stderr
    rec = florc(["record", "--checkpoint-all", "train.py"], project)
    assert rec.returncode == 0, rec.stderr
    assert rec.stdout == plain.stdout, "record must not change the script's own output"
    assert "main loop at train.py:23" in rec.stderr, rec.stderr
    assert re.search(r"8 main-loop iterations, 8 checkpoints", rec.stderr), rec.stderr
    for level in ("epoch", "batch", "after"):
        work = _edited(level, tmp_path / f"replay-{level}", base=project)
        lines = hindsight_lines(python("train.py", _edited(level, tmp_path / level)).stdout)
        assert lines, f"{level}: the edit printed nothing in a plain run"
        assert epochs_in(lines) == ([] if level == "after" else list(range(8)))
        chosen, spec = {3, 4}, "3-4"  # the "after" edit: after the loop, reached from epoch 4
        rep = florc(["replay", "train.py", "--epochs", spec], work)
        assert rep.returncode == 0, f"{level}: {rep.stderr}"
        assert rep.stdout.splitlines() == expected_for(lines, chosen), (
            f"{level} --epochs {spec}\nstderr:\n{rep.stderr}"
        )
        # the epochs before the range were restored, not run
        restored = re.search(r"(\d+) epoch checkpoints? and", rep.stderr)
        assert restored and int(restored.group(1)) >= 1, rep.stderr
        assert re.search(r"fidelity: exact \(\d+ recorded values", rep.stderr), rep.stderr
        if level == "epoch":
            par = florc(["replay", "train.py", "--epochs", "1-6", "--workers", "2"], work)
            assert par.returncode == 0, par.stderr
            assert par.stdout.splitlines() == expected_for(lines, set(range(1, 7)))
            # each worker starts from the checkpoint before its first epoch
            assert "from the checkpoint before epoch 4" in par.stderr, par.stderr
