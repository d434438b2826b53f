"""Helpers for end-to-end tests: run the florc CLI and plain Python on copies of example projects."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()


def run(args: list[str], cwd: Path, timeout: int = 300) -> Result:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def florc(args: list[str], cwd: Path) -> Result:
    return run([sys.executable, "-m", "florc", *args], cwd)


def python(script: str, cwd: Path, args: list[str] | None = None) -> Result:
    return run([sys.executable, script, *(args or [])], cwd)


def copy_project(src: Path, dst: Path) -> Path:
    shutil.copytree(
        src,
        dst,
        ignore=shutil.ignore_patterns(
            "hindsight", "hindsight.edits", "__pycache__", ".florc", "*.pt"
        ),
    )
    return dst


@dataclass
class Edit:
    """Lines added to a file of a project: after (or before) an anchor line, or at its end."""

    file: str
    where: str  # "after", "before" or "end"
    anchor: str
    lines: list[str]

    def apply(self, project: Path) -> None:
        path = project / self.file
        text = path.read_text().splitlines(keepends=True)
        if self.where == "end":
            text.append("".join(f"{line}\n" for line in self.lines))
        else:
            hits = [i for i, line in enumerate(text) if line.strip() == self.anchor]
            assert len(hits) == 1, f"{self.file}: anchor {self.anchor!r} found {len(hits)} times"
            i = hits[0]
            indent = text[i][: len(text[i]) - len(text[i].lstrip())]
            at = i + 1 if self.where == "after" else i
            text[at:at] = [f"{indent}{line}\n" for line in self.lines]
        path.write_text("".join(text))


def read_edits(path: Path) -> dict[str, list[Edit]]:
    """A `hindsight.edits` file: sections `== NAME`, each with optional `file: PATH`, then
    `after: LINE`, `before: LINE` or `at end`, then the lines to add (indented like the anchor).
    Several edits may follow one another in a section."""
    edits: dict[str, list[Edit]] = {}
    name, file = "", "train.py"
    for raw in path.read_text().splitlines():
        if raw.startswith("== "):
            name, file = raw[3:].strip(), "train.py"
            edits[name] = []
        elif raw.startswith("file: "):
            file = raw[6:].strip()
        elif raw.startswith(("after: ", "before: ")):
            where, anchor = raw.split(": ", 1)
            edits[name].append(Edit(file, where, anchor.strip(), []))
        elif raw.strip() == "at end":
            edits[name].append(Edit(file, "end", "", []))
        elif raw.strip():
            edits[name][-1].lines.append(raw)
    return edits


def overlay(edit: Path, project: Path) -> None:
    for f in edit.rglob("*"):
        if f.is_file():
            target = project / f.relative_to(edit)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, target)


_EPOCH = re.compile(r"\be=(-?\d+)\b")


def hindsight_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("HINDSIGHT ")]


def expected_for(lines: list[str], epochs: set[int]) -> list[str]:
    """HINDSIGHT lines of the requested epochs, plus the ones printed after the main loop."""
    out = []
    for line in lines:
        m = _EPOCH.search(line)
        if m is None or int(m.group(1)) in epochs:
            out.append(line)
    return out


def epochs_in(lines: list[str]) -> list[int]:
    return sorted({int(m.group(1)) for line in lines if (m := _EPOCH.search(line))})
