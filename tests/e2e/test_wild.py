"""Training scripts in the shapes people actually write (examples/wild/): record, add hindsight
log statements at epoch level, inside the batch loop and after the loop, replay two epochs in the
middle. The replay must print exactly what a plain run of the edited script prints for those
epochs (and after the loop), and its fidelity line must not report a divergence.

The unseeded script has no plain run to compare with: there the replay must reproduce the
recorded values of the script's own log statements exactly (`fidelity: exact`, values compared).

Scripts whose own prints carry wall-clock figures print other numbers in every run: there the
record's output matches a plain run's but for its numbers, and the replay's fidelity line says
it left the clock-derived values out (and no divergence).
"""

from __future__ import annotations

import re
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

WILD = EXAMPLES / "wild"
SHAPES = sorted(p.name for p in WILD.iterdir() if (p / "train.py").exists())
UNSEEDED = {"unseeded_vocab"}
CLOCKED = {"timed_epochs"}
_NUMBER = re.compile(r"\d+(?:\.\d*)?")


def _edited(shape: str, level: str, dst: Path, base: Path | None = None) -> Path:
    if base is None:
        copy_project(WILD / shape, dst)
    else:
        shutil.copytree(base, dst)
    return apply_edits(WILD / shape, level, dst)


@pytest.mark.parametrize("shape", SHAPES)
def test_wild_record_edit_replay(shape: str, tmp_path: Path) -> None:
    project = copy_project(WILD / shape, tmp_path / "recorded")
    rec = florc(["record", "--checkpoint-all", "train.py"], project)
    assert rec.returncode == 0, rec.stderr
    if shape not in UNSEEDED:
        plain = python("train.py", copy_project(WILD / shape, tmp_path / "plain"))
        if shape in CLOCKED:
            assert _NUMBER.sub("#", rec.stdout) == _NUMBER.sub("#", plain.stdout)
        else:
            assert rec.stdout == plain.stdout, "record must not change the script's own output"
    for level in LEVELS:
        work = _edited(shape, level, tmp_path / f"replay-{level}", base=project)
        if shape in UNSEEDED:
            # from the first epoch: the start state (random generators, string hashing) matters
            rep = florc(["replay", "train.py", "--epochs", "0-1"], work)
            assert rep.returncode == 0, f"{level}: {rep.stderr}"
            m = re.search(r"fidelity: exact \((\d+) recorded values", rep.stderr)
            assert m and int(m.group(1)) > 0, f"{level}: {rep.stderr}"
            assert hindsight_lines(rep.stdout), f"{level}: nothing printed"
            continue
        reference = _edited(shape, level, tmp_path / f"plain-{level}")
        lines = hindsight_lines(python("train.py", reference).stdout)
        assert lines, f"{shape}/{level}: the edit printed nothing in a plain run"
        epochs = epochs_in(lines)
        if len(epochs) >= 4:
            middle = len(epochs) // 2
            chosen = {epochs[middle - 1], epochs[middle]}
            spec = f"{epochs[middle - 1]}-{epochs[middle]}"
        else:
            chosen, spec = set(), "last"
        rep = florc(["replay", "train.py", "--epochs", spec], work)
        assert rep.returncode == 0, f"{shape}/{level}: {rep.stderr}"
        assert rep.stdout.splitlines() == expected_for(lines, chosen), (
            f"{shape}/{level} --epochs {spec}\nstderr:\n{rep.stderr}"
        )
        assert "diverged" not in rep.stderr, rep.stderr
        if shape in CLOCKED:
            assert re.search(
                r"fidelity: exact \(\d+ recorded .*; \d+ clock-derived values left out", rep.stderr
            ), rep.stderr
