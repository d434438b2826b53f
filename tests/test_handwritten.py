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
from e2e import (
    EXAMPLES,
    copy_project,
    epochs_in,
    expected_for,
    florc,
    hindsight_lines,
    python,
    read_edits,
)

import florc as api
from florc.contract import CompileResult, LoopManifest
from florc.runtime import api as runtime_api
from florc.runtime.session import Session
from florc.transforms.compiler import compile_project

HANDWRITTEN = EXAMPLES / "handwritten"


# --- in process: the API alone ----------------------------------------------------------------


def test_without_a_session_the_api_does_nothing() -> None:
    state = {"n": 0}
    with api.checkpoint(state=state):
        seen = [(e, list(api.loop("batch", "ab"))) for e in api.loop("epoch", range(2))]
    assert seen == [(0, ["a", "b"]), (1, ["a", "b"])]
    assert api.log("loss", 0.5) == 0.5


def test_checkpoint_refuses_what_cannot_be_restored_in_place() -> None:
    with pytest.raises(TypeError, match=r"florc.checkpoint\(step=...\): a int cannot"):
        api.checkpoint(step=3)
    with pytest.raises(TypeError, match="a tuple cannot"):
        api.checkpoint(shape=(1, 2))


def test_the_outermost_loop_is_the_main_loop_and_the_next_counts_steps() -> None:
    compiled = CompileResult("t.py", "", None, "", {})
    session = Session(None, 0, compiled)  # type: ignore[arg-type]
    runtime_api.activate(session)
    try:
        for _ in api.loop("warm", range(1)):
            pass  # the outermost loop: the main loop; the loop after it runs as written
        for e in api.loop("epoch", range(2)):
            for i in api.loop("batch", range(2)):
                for _ in api.loop("inner", range(2)):
                    session.on_line(f"{e}/{i}", "t.py:9")
    finally:
        runtime_api.deactivate()
    assert [(ln.iteration, ln.step, ln.text, ln.after_loop) for ln in session.lines] == [
        (None, None, f"{e}/{i}", True) for e in range(2) for i in range(2) for _ in range(2)
    ]
    assert session.main is None and session.main_done
    session = Session(None, 0, compiled)  # type: ignore[arg-type]
    runtime_api.activate(session)
    try:
        for e in api.loop("epoch", range(2)):
            for i in api.loop("batch", range(2)):
                for _ in api.loop("inner", range(2)):
                    session.on_line(f"{e}/{i}", "t.py:9")
            session.on_line(f"end {e}", "t.py:10")
    finally:
        runtime_api.deactivate()
    assert [(ln.iteration, ln.step, ln.text) for ln in session.lines] == [
        (0, 0, "0/0"),
        (0, 0, "0/0"),
        (0, 1, "0/1"),
        (0, 1, "0/1"),
        (0, None, "end 0"),
        (1, 0, "1/0"),
        (1, 0, "1/0"),
        (1, 1, "1/1"),
        (1, 1, "1/1"),
        (1, None, "end 1"),
    ]


def test_the_compiler_leaves_the_loops_of_a_handwritten_module_as_written(
    tmp_path: Path,
) -> None:
    project = copy_project(HANDWRITTEN, tmp_path / "p")
    result = compile_project(project / "train.py", project)
    fm = result.files["train.py"]
    out = fm.instrumented
    assert "__florc__.loop(" not in out
    assert 'for epoch in florc.loop("epoch", range(8)):' in out
    assert "with __florc__.log_statement('train.py:36'):" in out
    assert [(lp.loop_id, lp.instrumented) for lp in fm.loops] == [
        ("train.py:<module>:0", False),
        ("train.py:<module>:1", False),
    ]
    assert result.main_loop == "train.py:<module>:0"
    again = tmp_path / "again.py"
    again.write_text(out)
    assert compile_project(again, tmp_path).files["again.py"].instrumented == out


def test_loop_imported_by_name_marks_the_module_as_written_by_hand(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(
        "from florc import loop as epochs\n"
        "import torch\n"
        "m = torch.nn.Linear(1, 1)\n"
        "for e in epochs('e', range(2)):\n"
        "    for b in range(2):\n"
        "        m(torch.ones(1)).sum().backward()\n"
    )
    fm = compile_project(tmp_path / "train.py", tmp_path).files["train.py"]
    assert "__florc__.loop(" not in fm.instrumented
    assert not any(lp.instrumented for lp in fm.loops)


def _hand_manifest_id(where: tuple[str, int], loops: dict[tuple[str, int], LoopManifest]) -> str:
    from florc.runtime.loops import hand_manifest

    return hand_manifest("epoch", {}, loops.get(where), where).loop_id


def test_a_handwritten_loop_takes_the_compilers_id_for_its_place(tmp_path: Path) -> None:
    project = copy_project(HANDWRITTEN, tmp_path / "p")
    result = compile_project(project / "train.py", project)
    session = Session(None, 0, result)  # type: ignore[arg-type]
    path = result.files["train.py"].path
    assert _hand_manifest_id((path, 23), session.loops_at) == "train.py:<module>:0"
    assert _hand_manifest_id((path, 24), session.loops_at) == "epoch"  # no loop there


# --- end to end ---------------------------------------------------------------------------------


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
