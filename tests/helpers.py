"""Helpers for both test tiers: run the florc CLI and plain Python on copies of example projects,
apply hindsight edits, and pick out the lines a hindsight statement printed.

Every subprocess a test starts gets its environment from `clean_env()`, so a test never sees
the PYTHONPATH of whoever runs pytest (florc must be imported from the installed package, as a
user's shell would).
"""

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
LEVELS = ("epoch", "batch", "after")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess: this process's, without PYTHONPATH, plus `extra`."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.update(extra)
    return env


@dataclass
class Result:
    """What a finished subprocess returned and printed."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()


def run(args: list[str], cwd: Path, timeout: int = 300) -> Result:
    """Run a command to its end in cwd, with `clean_env()`."""
    proc = subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=clean_env()
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def florc(args: list[str], cwd: Path) -> Result:
    """`python -m florc ARGS` in cwd."""
    return run([sys.executable, "-m", "florc", *args], cwd)


def python(script: str, cwd: Path, args: list[str] | None = None) -> Result:
    """A plain `python SCRIPT ARGS` in cwd."""
    return run([sys.executable, script, *(args or [])], cwd)


def copy_project(src: Path, dst: Path) -> Path:
    """A copy of an example project without its edits, caches, store or saved models."""
    shutil.copytree(
        src,
        dst,
        ignore=shutil.ignore_patterns("hindsight.edits", "__pycache__", ".florc", "*.pt"),
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
    `after: LINE`, `before: LINE` or `at end`, then the lines to add (indented like the anchor;
    a line's own leading spaces are kept on top of the anchor's). Several edits may follow one
    another in a section."""
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


def apply_edits(example: Path, level: str, project: Path) -> Path:
    """Apply the `level` section of `example/hindsight.edits` to project (a copy of example)."""
    edits = read_edits(example / "hindsight.edits")
    assert edits.get(level), f"{example.name}/hindsight.edits has no edits for {level!r}"
    for edit in edits[level]:
        edit.apply(project)
    return project


_EPOCH = re.compile(r"\be=(-?\d+)\b")


def hindsight_lines(output: str) -> list[str]:
    """The lines of output that hindsight statements printed (they start with `HINDSIGHT `)."""
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
    """The epochs (`e=N` fields) that lines name, sorted, each once."""
    return sorted({int(m.group(1)) for line in lines if (m := _EPOCH.search(line))})
