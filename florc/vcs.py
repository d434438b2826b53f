"""`florc hook install | uninstall`: a git pre-commit hook that runs `florc instrument --check`.

The hook goes into the repository's hooks folder (`git rev-parse --git-path hooks`, so
core.hooksPath is respected). An existing pre-commit hook is kept: florc's lines go into it
between two marker lines, right after its `#!` line, and uninstall takes exactly those lines out
again (and deletes the file only if florc created it). A hook that is not a shell script is left
alone, with a message saying what to add to it.
"""

from __future__ import annotations

import shlex
import stat
import subprocess
import sys
from pathlib import Path

from florc.errors import UsageError

BEGIN = "# >>> florc: instrument training scripts on commit >>>"
END = "# <<< florc <<<"
CREATED = "# (this file was created by `florc hook install`)"
SHELLS = ("sh", "bash", "dash", "zsh", "ksh")


def hooks_dir(cwd: Path) -> Path:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--git-path", "hooks"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        raise UsageError(
            f"{cwd}: not inside a git repository; run `florc hook install` in one "
            "(or `git init` first)"
        ) from None
    path = Path(out)
    return path if path.is_absolute() else cwd / path


def _block() -> str:
    py = shlex.quote(sys.executable)
    return (
        f"{BEGIN}\n"
        f"if [ -x {py} ]; then {py} -m florc instrument --check --staged || exit $?\n"
        "else florc instrument --check --staged || exit $?\n"
        "fi\n"
        f"{END}\n"
    )


def _is_shell(first_line: str) -> bool:
    if not first_line.startswith("#!"):
        return False
    words = first_line[2:].split()
    prog = Path(words[0]).name if words else ""
    if prog == "env" and len(words) > 1:
        prog = words[1]
    return prog in SHELLS


def install(cwd: Path) -> str:
    hook = hooks_dir(cwd) / "pre-commit"
    if hook.exists():
        text = hook.read_text(encoding="utf-8", errors="replace")
        if BEGIN in text:
            return f"florc's hook is already in {hook}"
        first, _, rest = text.partition("\n")
        if not _is_shell(first):
            raise UsageError(
                f"{hook}: an existing pre-commit hook that is not a shell script; florc leaves "
                "it as it is. Add this command to it: florc instrument --check --staged"
            )
        hook.write_text(f"{first}\n{_block()}{rest}", encoding="utf-8")
        return f"added florc's check to the existing hook {hook}"
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text(f"#!/bin/sh\n{CREATED}\n{_block()}", encoding="utf-8")
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return f"installed {hook}"


def uninstall(cwd: Path) -> str:
    hook = hooks_dir(cwd) / "pre-commit"
    if not hook.exists():
        return "no pre-commit hook: nothing to remove"
    text = hook.read_text(encoding="utf-8", errors="replace")
    if BEGIN not in text or END not in text:
        return f"{hook} has no florc lines: left as it is"
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END + "\n", 1)[1] if END + "\n" in rest else rest.split(END, 1)[1]
    remaining = head + tail
    if remaining.replace(CREATED + "\n", "").strip() in ("#!/bin/sh", ""):
        hook.unlink()
        return f"removed {hook}"
    hook.write_text(remaining, encoding="utf-8")
    return f"removed florc's lines from {hook}; the rest of the hook is as it was"


def staged_python_files(cwd: Path) -> list[Path]:
    """Python files added, copied, modified or renamed in the index."""
    out = subprocess.run(
        ["git", "diff", "--cached", "--name-only", "--diff-filter=ACMR", "-z", "--", "*.py"],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    top = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout.strip()
    return [Path(top) / name for name in out.split("\0") if name]


def unstaged_changes(path: Path) -> bool:
    proc = subprocess.run(
        ["git", "diff", "--quiet", "--", path.name], cwd=path.parent, capture_output=True
    )
    return proc.returncode == 1


def head_version(path: Path) -> str | None:
    """The file's text in HEAD, or None (no repository, no commit yet, not in HEAD)."""
    try:
        proc = subprocess.run(
            ["git", "show", f"HEAD:./{path.name}"],
            cwd=path.parent,
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.decode("utf-8", errors="replace")
