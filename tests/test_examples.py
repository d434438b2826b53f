"""End to end on every example shape: record, add hindsight log statements, replay a range.

The replay's output must equal, line for line, the new statements' output of a plain
`python train.py` run of the edited script, for exactly the requested epochs (plus what the new
statements print after the main loop), and nothing else.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e import (
    EXAMPLES,
    copy_project,
    epochs_in,
    expected_for,
    florc,
    hindsight_lines,
    overlay,
    python,
)

SHAPES = (
    sorted(p.name for p in EXAMPLES.iterdir() if (p / "train.py").exists())
    if EXAMPLES.exists()
    else []
)


def _record(shape: str, tmp: Path) -> Path:
    project = copy_project(EXAMPLES / shape, tmp / shape)
    plain = python("train.py", project)
    assert plain.returncode == 0, plain.stderr
    rec = florc(["record", "--checkpoint-all", "train.py"], project)
    assert rec.returncode == 0, rec.stderr
    assert rec.stdout == plain.stdout, "record must not change the script's own output"
    for f in project.glob("*.pt"):
        f.unlink()
    return project


@pytest.mark.parametrize("shape", SHAPES)
def test_record_edit_replay(shape: str, tmp_path: Path) -> None:
    project = _record(shape, tmp_path)
    edits = sorted((EXAMPLES / shape / "hindsight").iterdir())
    assert edits, f"{shape} has no hindsight edits"
    for edit in edits:
        work = tmp_path / f"{shape}-{edit.name}"
        # the recorded project, store included, with the edit applied
        import shutil

        shutil.copytree(project, work)
        overlay(edit, work)
        plain = python("train.py", work)
        assert plain.returncode == 0, plain.stderr
        lines = hindsight_lines(plain.stdout)
        assert lines, f"{shape}/{edit.name}: the edit printed nothing in a plain run"
        epochs = epochs_in(lines)
        for f in work.glob("*.pt"):
            f.unlink()
        shutil.rmtree(work)
        shutil.copytree(project, work)
        overlay(edit, work)
        if len(epochs) >= 3:
            chosen = {epochs[1], epochs[2]}
            spec = f"{epochs[1]}-{epochs[2]}"
        else:
            chosen, spec = set(epochs), "all"
        if not epochs:
            chosen, spec = set(), "last"
        rep = florc(["replay", "train.py", "--epochs", spec], work)
        assert rep.returncode == 0, f"{shape}/{edit.name}: {rep.stderr}"
        assert rep.stdout.splitlines() == expected_for(lines, chosen), (
            f"{shape}/{edit.name} --epochs {spec}\nstderr:\n{rep.stderr}"
        )
