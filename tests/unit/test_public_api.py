"""florc's public API by hand (examples/handwritten/), in process: without a session it does
nothing; the compiler leaves a hand-written module's loops as written and gives them its ids.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import EXAMPLES, copy_project

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
