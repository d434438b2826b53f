"""`florc instrument`: the instrumented code, the analysis report, and the check the commit
hooks run (which files are training scripts, and whether each can be instrumented).

The compiler (libcst) is imported where it is used, so that importing this module stays cheap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from florc import project
from florc.errors import FlorcError
from florc.launch import framework_where, script_path, what_works
from florc.project import find_root, is_project_file, store_location
from florc.transforms import cache as compile_cache


def instrument(script: str) -> str:
    from florc.transforms.compiler import compile_project

    path = script_path(script)
    result = compile_project(path, find_root(path))
    return result.files[result.script].instrumented


@dataclass
class CheckResult:
    problems: list[str]  # "path:line:col: message" -- these fail the check
    notes: list[str]  # said, but not failures
    checked: list[str]  # training scripts instrumented (and cached)
    ignored: list[str]  # Python files that are not training scripts


def check(files: list[str], staged: bool, cwd: Path) -> CheckResult:
    """Instrument each training script among files (or the staged ones); keep the results in
    the compile cache. What `florc instrument --check` and the commit hooks run."""
    from florc import vcs as hooks

    if staged:
        paths = hooks.staged_python_files(cwd)
    elif files:
        paths = [cwd / f for f in files]
    else:
        root = find_root(cwd / "x.py")
        paths = sorted(p for p in root.rglob("*.py") if is_project_file(p, root))
    out = CheckResult([], [], [], [])
    for path in paths:
        if not path.is_file():
            continue  # deleted, or not a file: nothing to instrument
        root = find_root(path)
        cfg = project.load(root)
        rel = path.resolve().relative_to(root.resolve()).as_posix()
        why = _training_script(path, root, cfg)
        if why is None:
            out.ignored.append(rel)
            continue
        problem, note = _check_one(path, root, rel, cfg)
        if problem:
            out.problems.append(problem)
            if why:
                out.notes.append(f"{rel}: checked as a training script because {why}")
        else:
            out.checked.append(rel)
        if note:
            out.notes.append(note)
        if staged and not problem and hooks.unstaged_changes(path):
            out.notes.append(f"{rel}: has unstaged changes; the working-tree version was checked")
    return out


_TRAINING_TEXT = re.compile(r"\.(?:backward|step)\s*\(|#\s*florc:\s*main-loop")


def _training_script(path: Path, root: Path, cfg: project.Config) -> str | None:
    """Why a file counts as a training script ("" when the configured globs name it), or None.

    Beyond the globs: a file in which the main-loop search finds a loop that trains; a file
    that does not parse, when its text has a training step (`.backward(`, `.step(`) or its
    version in HEAD was a training script. Cheap first: a file whose text, and that of the
    project modules it imports, has no training step is decided without the analysis."""
    if cfg.is_training_script(path, root):
        return ""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return _training_text(path, root, text, head=True)


def _training_text(path: Path, root: Path, text: str, head: bool) -> str | None:
    import ast

    from florc import vcs as hooks

    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        if _TRAINING_TEXT.search(text):
            return "it has a training step (`.backward(` or `.step(`)"
        old = hooks.head_version(path) if head else None
        if old is not None and _training_text(path, root, old, head=False) is not None:
            return "it was a training script in HEAD"
        return None
    if not _reaches_training_text(path, root, text, tree):
        return None
    from florc.transforms.compiler import find_script_main_loop

    try:
        main = find_script_main_loop(path, root, source=text)
    except Exception:  # noqa: BLE001 -- training text that florc cannot analyse: check it
        return "it has a training step (`.backward(` or `.step(`)"
    if main.rule in ("pragma", "trains"):
        return f"its main loop is {main.reason}"
    return None


def _reaches_training_text(path: Path, root: Path, text: str, tree: Any) -> bool:
    """Whether the file or a project module it imports (transitively) has a training step in
    its text: the cheap test that spares most files the analysis."""
    import ast

    from florc.transforms.compiler import resolve_import_file

    seen = {path.resolve()}
    todo = [(path, text, tree)]
    while todo:
        here, source, parsed = todo.pop()
        if _TRAINING_TEXT.search(source):
            return True
        if parsed is None:
            continue
        found: list[Path] = []
        for node in ast.walk(parsed):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    found += resolve_import_file(root, here.parent, alias.name, 0)
            elif isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                found += resolve_import_file(root, here.parent, mod, node.level)
                for alias in node.names:
                    sub = f"{mod}.{alias.name}" if mod else alias.name
                    found += resolve_import_file(root, here.parent, sub, node.level)
        for f in found:
            f = f.resolve()
            if f in seen or not is_project_file(f, root) or len(seen) > 500:
                continue
            seen.add(f)
            try:
                other = f.read_text(encoding="utf-8")
                todo.append((f, other, ast.parse(other)))
            except (OSError, UnicodeDecodeError):
                continue
            except (SyntaxError, ValueError):
                todo.append((f, other, None))
    return False


def _check_one(path: Path, root: Path, rel: str, cfg: project.Config) -> tuple[str, str]:
    """(problem, note) for one training script; on success its compile result is cached."""
    from florc.errors import SourceError
    from florc.transforms.compiler import compile_project

    try:
        result = compile_project(path, root)
    except SourceError as exc:
        return str(exc), ""
    except FlorcError as exc:
        return f"{rel}:1:1: {exc}", ""
    except Exception as exc:  # noqa: BLE001 -- a compiler bug must not pass as a good script
        return (
            f"{rel}:1:1: florc could not instrument this script ({type(exc).__name__}: {exc}); "
            "please report this with the script",
            "",
        )
    if result.main_loop is None:
        fw = result.framework
        where = framework_where(fw) if fw else f"{rel}:1:1"
        message = f"{where}: no main loop found: {result.main_loop_reason}"
        if cfg.configured_scripts:
            return message + f" (it is a training script by {cfg.source} scripts)", ""
        return "", "note: " + message
    compile_cache.store(result, path, root, store_location(root))
    return "", ""


def report(script: str) -> str:
    from florc.transforms.compiler import compile_project

    path = script_path(script)
    result = compile_project(path, find_root(path))
    out = []
    main = result.loop(result.main_loop) if result.main_loop else None
    if main is not None:
        out.append(f"main loop: {main.relpath}:{main.line} ({result.main_loop_reason})")
    elif result.main_loop_rule == "framework":
        out.append(
            f"main loop: {result.main_loop_reason} — each epoch is an iteration, checkpointed at "
            "its start (docs/FRAMEWORKS.md)"
        )
    else:
        out.append(f"main loop: none — {result.main_loop_reason}")
        out.append(f"  {what_works(result)}")
    for fm in result.files.values():
        for lp in fm.loops:
            role = "main loop" if lp.loop_id == result.main_loop else "block"
            if lp.parent_loop not in (None, result.main_loop) and lp.loop_id != result.main_loop:
                role = f"inner loop (part of {lp.parent_loop})"
            out.append(f"\n{lp.relpath}:{lp.line}:{lp.col} {lp.kind} loop [{lp.loop_id}] — {role}")
            out.append(f"  changeset: {', '.join(lp.changeset) or '(nothing)'}")
            optional = sorted(set(lp.changeset) - set(lp.required))
            if optional:
                out.append(f"  kept when possible (not read after the loop): {', '.join(optional)}")
            if lp.iterated:
                out.append(f"  iterates over: {', '.join(lp.iterated)}")
            if not lp.instrumented:
                out.append(
                    "  left as written (inside a generator function, or in a module that "
                    "uses florc.loop)"
                )
            if lp.unbounded:
                out.append("  re-executes at replay:")
                out.extend(f"    {reason}" for reason in lp.unbounded)
            elif role == "block" and lp.instrumented:
                out.append(
                    "  at replay: restored from its checkpoint unless it gains a log statement"
                )
    if result.warnings:
        out.append("\nnondeterminism (replayed values may differ from the recording):")
        out.extend(f"  {w}" for w in result.warnings)
    out.append("\nlog statements:")
    for fm in result.files.values():
        for ls in fm.log_statements:
            out.append(f"  {fm.relpath}:{ls['line']}:{ls['col']}  {ls['code']}")
    return "\n".join(out) + "\n"
