"""Aligning an edited script with its recorded version (in-process, no script runs): each source
parsed once, and whether a new log statement needs the replay to run on past the main loop."""

from __future__ import annotations

from pathlib import Path

import libcst
import pytest

from florc.transforms.align import (
    align,
    align_modules,
    compile_and_align,
    new_statement_after_main_loop,
)
from florc.transforms.compiler import compile_modules, identifiers

TRAIN = """\
import torch

model = torch.nn.Linear(2, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)


def evaluate():
    return model.weight.sum().item()


for epoch in range(3):
    loss = model(torch.ones(1, 2)).sum()
    opt.zero_grad()
    loss.backward()
    opt.step()
    note = \"\"\"
a text whose lines start at column 0,
inside the loop
\"\"\"
    x = epoch
print("done")
"""


def _edit(text: str, anchor: str, line: str, after: bool = True) -> str:
    """text with line added after (or before) the only line that is anchor, indented like it."""
    lines = text.splitlines(keepends=True)
    [i] = [n for n, t in enumerate(lines) if t.strip() == anchor]
    indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
    lines.insert(i + 1 if after else i, f"{indent}{line}\n")
    return "".join(lines)


def _replay(tmp_path: Path, edited: str, recorded: str = TRAIN, **files: str):
    (tmp_path / "train.py").write_text(edited)
    for name, text in files.items():
        (tmp_path / f"{name}.py").write_text(text)
    sources = {"train.py": recorded, **{f"{n}.py": t for n, t in files.items()}}
    return compile_and_align(tmp_path / "train.py", tmp_path, sources)


@pytest.mark.parametrize(
    ("anchor", "line", "after", "runs_on"),
    [
        # inside the loop, after a string whose lines start at column 0 (an indentation scan
        # ended the loop at the string)
        ("x = epoch", "print('x', x)", True, False),
        ("opt.step()", "print('stepped', epoch)", True, False),
        ("for epoch in range(3):", "print('start')", False, False),  # before, same scope
        ('print("done")', "print('w', model.weight.sum().item())", True, True),  # after
        ("return model.weight.sum().item()", "print('eval')", False, True),  # another scope
    ],
)
def test_a_new_statement_after_the_main_loop_is_found_from_positions(
    tmp_path: Path, anchor: str, line: str, after: bool, runs_on: bool
) -> None:
    replay = _replay(tmp_path, _edit(TRAIN, anchor, line, after))
    assert replay.alignment.faithful, replay.alignment.changes
    assert len(replay.alignment.new_statements) == 1
    assert replay.result.main_loop == "train.py:<module>:0"
    assert replay.run_after_loop is runs_on


def test_a_statement_in_the_loops_else_clause_runs_after_it(tmp_path: Path) -> None:
    recorded = TRAIN.replace('print("done")', 'else:\n    y = 1\nprint("done")')
    replay = _replay(tmp_path, _edit(recorded, "y = 1", "print('y', y)"), recorded)
    assert replay.alignment.new_statements == {"train.py:23"}
    assert replay.run_after_loop is True


def test_a_loop_on_one_line_ends_on_its_line(tmp_path: Path) -> None:
    recorded = (
        "import torch\nm = torch.nn.Linear(1, 1)\nopt = torch.optim.SGD(m.parameters(), lr=1)\n"
        "for e in range(2): opt.step()\nz = 1\n"
    )
    before = _replay(tmp_path, recorded.replace("for e", "print(opt)\nfor e"), recorded)
    assert before.result.main_loop == "train.py:<module>:0"
    assert before.alignment.new_statements == {"train.py:4"}
    assert before.run_after_loop is False
    after = _replay(tmp_path, recorded.replace("z = 1", "print(m)\nz = 1"), recorded)
    assert after.alignment.new_statements == {"train.py:5"}
    assert after.run_after_loop is True


def test_a_new_statement_in_another_file_runs_outside_the_main_loop(tmp_path: Path) -> None:
    helper = "def report(v):\n    return v\n"
    script = "from helper import report\n" + TRAIN.replace("x = epoch", "x = report(epoch)")
    (tmp_path / "train.py").write_text(script)
    (tmp_path / "helper.py").write_text(_edit(helper, "return v", "print(v)", False))
    replay = compile_and_align(
        tmp_path / "train.py", tmp_path, {"train.py": script, "helper.py": helper}
    )
    assert replay.alignment.faithful, replay.alignment.changes
    assert replay.result.main_loop == "train.py:<module>:0"
    assert replay.alignment.new_statements == {"helper.py:2"}
    assert replay.run_after_loop is True


def test_no_main_loop_no_new_statement_and_an_unknown_loop_do_not_run_on(tmp_path: Path) -> None:
    path = tmp_path / "train.py"
    path.write_text("x = 1\nprint(x)\n")
    compiled = compile_modules(path, tmp_path, {"train.py": frozenset({"x"})})
    assert compiled.result.main_loop is None
    new = {"train.py:2": (2, 2)}
    assert new_statement_after_main_loop(new, compiled.modules, None) is False
    assert new_statement_after_main_loop(new, compiled.modules, "train.py:<module>:7") is False
    assert _replay(tmp_path, TRAIN).run_after_loop is False  # nothing new


def _count_parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = libcst.parse_module

    def counting(source: str, *args: object, **kwargs: object) -> libcst.Module:
        seen.append(source)
        return real(source, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(libcst, "parse_module", counting)
    return seen


def test_compile_and_align_parse_each_source_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helper = "def report(v):\n    return v\n"
    recorded = "from helper import report\n" + TRAIN
    edited = _edit(recorded, "x = epoch", "print(report(x))")
    parsed = _count_parses(monkeypatch)
    replay = _replay(tmp_path, edited, recorded, helper=helper)
    assert replay.alignment.new_statements == {"train.py:22"}
    # three texts: the recorded and the edited script, the helper (the same in both)
    assert sorted(parsed) == sorted([recorded, edited, helper])
    parsed.clear()
    old = align({"train.py": recorded}, {"train.py": edited}, tmp_path, "train.py")
    assert sorted(parsed) == sorted([recorded, edited])
    assert old.new_statements == replay.alignment.new_statements
    assert old.statement_map == replay.alignment.statement_map


def test_align_modules_equals_align_on_the_same_sources(tmp_path: Path) -> None:
    recorded = TRAIN
    edited = _edit(TRAIN, "x = epoch", "msg = f'{x}'")
    edited = _edit(edited, "msg = f'{x}'", "print(msg)")
    path = tmp_path / "train.py"
    path.write_text(edited)
    compiled = compile_modules(path, tmp_path, {"train.py": identifiers(recorded)})
    via_modules = align_modules({"train.py": recorded}, compiled.modules)
    via_text = align({"train.py": recorded}, {"train.py": edited}, tmp_path, "train.py")
    assert via_modules.faithful and via_text.faithful  # `msg` is a new name only logs read
    assert via_modules.new_statements == via_text.new_statements == {"train.py:21", "train.py:22"}
    assert via_modules.changed_loops == via_text.changed_loops == {"train.py:<module>:0"}
    assert via_modules.statement_map == via_text.statement_map
