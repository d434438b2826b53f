"""The primer's pure parts: its manifest, the edits it applies, the line comparison. No network,
no repositories (the primer itself runs with `make primer`)."""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import REPO

EPOCH_FIELD = re.compile(r"\be=\{")

_spec = importlib.util.spec_from_file_location("primer_run", REPO / "primer" / "run.py")
primer = importlib.util.module_from_spec(_spec)
sys.modules["primer_run"] = primer
_spec.loader.exec_module(primer)


def test_manifest_is_complete() -> None:
    scripts = primer.load_manifest()
    assert len(scripts) >= 12
    assert len({s.owner_name for s in scripts}) >= 6
    for s in scripts:
        assert set(s.hindsight) == set(primer.LEVELS), s.name
        assert all(s.hindsight[level] for level in primer.LEVELS), s.name
        assert primer.epochs_of(s.epochs), s.name
        assert s.files and s.shape and s.command, s.name
        for level, edits in s.hindsight.items():
            for e in edits:
                # the added lines are Python on their own, and main-loop lines name their epoch
                ast.parse(textwrap.dedent("\n".join(e.lines)))
                if level != "after":
                    assert any(EPOCH_FIELD.search(line) for line in e.lines), (s.name, level)
                else:
                    assert not any(EPOCH_FIELD.search(line) for line in e.lines), (s.name, level)
        for e in s.setup:
            src = textwrap.dedent("\n".join(e.lines))
            ast.parse(src + ("\n    pass" if src.rstrip().endswith(":") else ""))


SOURCE = """\
for epoch in range(3):
    for i in range(2):
        loss = step(i)
    print(epoch)
print("done")
"""


def _edit(**kw) -> primer.Edit:
    raw = {"lines": kw.pop("lines")}
    raw.update(kw)
    return primer._edit(raw, "train.py", "test")


def test_edits_after_before_replace_end() -> None:
    text = _edit(after="loss = step(i)", lines=['print(f"HINDSIGHT e={epoch}")']).apply_text(SOURCE)
    assert '        loss = step(i)\n        print(f"HINDSIGHT e={epoch}")\n' in text
    text = _edit(before="print(epoch)", lines=["if epoch:", "    print('HINDSIGHT')"]).apply_text(
        SOURCE
    )
    assert "    if epoch:\n        print('HINDSIGHT')\n    print(epoch)\n" in text
    text = _edit(replace="for epoch in range(3):", lines=["for epoch in range(1):"]).apply_text(
        SOURCE
    )
    assert text.startswith("for epoch in range(1):\n    for i")
    text = _edit(at_end=True, lines=["print('HINDSIGHT after')"]).apply_text(SOURCE.rstrip("\n"))
    assert text.endswith("print(\"done\")\nprint('HINDSIGHT after')\n")


def test_edit_anchor_must_match_once() -> None:
    with pytest.raises(primer.ManifestError, match="found 0 times"):
        _edit(after="nothing like this", lines=["x = 1"]).apply_text(SOURCE)
    with pytest.raises(primer.ManifestError, match="found 2 times"):
        _edit(after="x", lines=["y = 1"]).apply_text("x\nx\n")
    with pytest.raises(primer.ManifestError, match="one of after"):
        _edit(after="x", before="x", lines=["y = 1"])


def test_manifest_errors() -> None:
    with pytest.raises(primer.ManifestError, match="missing"):
        primer.parse_manifest('[[script]]\nname = "a"\n')
    entry = """
[[script]]
name = "a"
repo = "https://github.com/o/r"
commit = "0123456789012345678901234567890123456789"
files = ["t.py"]
shape = "s"
command = ["t.py"]
epochs = "1-2"
[[script.hindsight.epoch]]
after = "x"
lines = ['print(f"HINDSIGHT e={e}")']
[[script.hindsight.batch]]
after = "x"
lines = ['print(f"HINDSIGHT e={e}")']
"""
    with pytest.raises(primer.ManifestError, match="level 'after'"):
        primer.parse_manifest(entry)
    ok = primer.parse_manifest(
        entry + "[[script.hindsight.after]]\nat_end = true\nlines = [\"print('HINDSIGHT')\"]\n"
    )
    assert ok[0].owner_name == "o/r" and ok[0].hindsight["after"][0].where == "end"


def test_epochs_and_expected_lines() -> None:
    assert primer.epochs_of("5-7") == {5, 6, 7}
    assert primer.epochs_of("1,4,7-8") == {1, 4, 7, 8}
    with pytest.raises(primer.ManifestError):
        primer.epochs_of("last")
    lines = [
        "HINDSIGHT e=1 a",
        "HINDSIGHT e=2 b",
        "HINDSIGHT e=2 i=0 c",
        "HINDSIGHT e=12 d",
        "HINDSIGHT after z",
    ]
    assert primer.expected_for(lines, {2}) == [
        "HINDSIGHT e=2 b",
        "HINDSIGHT e=2 i=0 c",
        "HINDSIGHT after z",
    ]
    assert primer.hindsight_lines("x\nHINDSIGHT e=1\n  HINDSIGHT no\n") == ["HINDSIGHT e=1"]


def test_compare_lines() -> None:
    assert primer.compare_lines(["a", "b"], ["a", "b"])["exact"]
    c = primer.compare_lines(["a", "x"], ["a", "b"])
    assert not c["exact"] and c["first_diff"] == {"line": 2, "got": "x", "want": "b"}
    c = primer.compare_lines(["a"], ["a", "b"])
    assert c["first_diff"] == {"line": 2, "got": "<end of output>", "want": "b"}
    c = primer.compare_lines(["a", "b", "c"], ["a", "b"])
    assert c["first_diff"] == {"line": 3, "got": "c", "want": "<end of output>"}
    assert primer.mask("step time 12.5ms ok", [r"time [0-9.]+ms"]) == "step <masked> ok"


def test_mirror_layouts(tmp_path: Path) -> None:
    (tmp_path / "o+r" / "repo").mkdir(parents=True)
    (tmp_path / "o+r" / "repo" / "HEAD").write_text("ref: refs/heads/main\n")
    assert primer.mirror_dir("o/r", tmp_path) == tmp_path / "o+r" / "repo"
    (tmp_path / "p" / "q" / ".git").mkdir(parents=True)
    assert primer.mirror_dir("p/q", tmp_path) == tmp_path / "p" / "q"
    assert primer.mirror_dir("x/y", tmp_path) is None
