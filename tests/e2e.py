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
        src, dst, ignore=shutil.ignore_patterns("hindsight", "__pycache__", ".florc", "*.pt")
    )
    return dst


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
