"""Align an edited script with its recorded version.

Replay is faithful when the two differ only in log statements. The comparison strips log
statements, comments and blank lines from both versions and diffs what is left (the *training
skeleton*); any remaining difference is a change to training and is listed line by line.

Replay calls compile_and_align: the edited project is compiled once, and the modules the compile
analysed are aligned as they are (align_modules), so each source text is parsed once. The same
call decides, from the syntax tree's positions, whether a new log statement lies outside the
main loop (new_statement_after_main_loop), which makes the replay run on past the loop.
"""

from __future__ import annotations

import difflib
import io
import tokenize
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from florc.contract import CompileResult, is_framework_loop
from florc.transforms.compiler import compile_modules, identifiers, module_name_for, paused_gc
from florc.transforms.mainloop import scope_at
from florc.transforms.modules import LoopInfo, ModuleInfo, analyse_module
from florc.transforms.syntax import names_in, shared_parses


@dataclass
class Change:
    relpath: str
    line: int  # in the edited version (or the recorded one for removals)
    old: str
    new: str

    def __str__(self) -> str:
        out = []
        if self.old:
            out.append(f"  {self.relpath}:{self.line}   - {self.old}")
        if self.new:
            out.append(f"  {self.relpath}:{self.line}   + {self.new}")
        return "\n".join(out)


@dataclass
class Alignment:
    changes: list[Change] = field(default_factory=list)
    new_statements: set[str] = field(default_factory=set)  # "relpath:line" in the edited version
    new_statement_lines: dict[str, tuple[int, int]] = field(default_factory=dict)
    # edited "relpath:line" -> recorded "relpath:line", for log statements both versions have
    statement_map: dict[str, str] = field(default_factory=dict)
    changed_loops: set[str] = field(default_factory=set)  # loop ids whose log statements changed
    changed_functions: set[str] = field(default_factory=set)  # "relpath:qualname"

    @property
    def faithful(self) -> bool:
        return not self.changes


def _strip_comments(source: str) -> dict[int, str]:
    """Per line: the code with comments removed."""
    lines = source.splitlines()
    cut: dict[int, int] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                cut[tok.start[0]] = tok.start[1]
    except (tokenize.TokenError, SyntaxError):
        pass
    return {
        i + 1: (line[: cut[i + 1]] if i + 1 in cut else line).rstrip()
        for i, line in enumerate(lines)
    }


def skeleton(info: ModuleInfo) -> list[tuple[int, str]]:
    log_lines: set[int] = set()
    for ls in info.log_statements:
        log_lines.update(range(ls.line, ls.end_line + 1))
    out = []
    for n, text in _strip_comments(info.source).items():
        if n in log_lines or not text.strip():
            continue
        out.append((n, text.strip()))
    return out


def _log_lists(info: ModuleInfo) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    loops = {lp.loop_id: [ls.code for ls in info.log_statements_in(lp.node)] for lp in info.loops}
    functions = {
        f"{info.relpath}:{q}": [ls.code for ls in info.log_statements_in(fn.node)]
        for q, fn in info.functions.items()
    }
    return loops, functions


def align(
    recorded: Mapping[str, str], edited: Mapping[str, str], root: Path, script_rel: str
) -> Alignment:
    """Align the edited sources with the recorded ones (both: relpath -> source text). A
    recorded file the edited project does not have is not compared. Each text is parsed once."""
    with shared_parses():
        modules = []
        for relpath in sorted(edited):
            name = "__main__" if relpath == script_rel else module_name_for(root / relpath, root)
            known = identifiers(recorded.get(relpath, ""))
            modules.append(analyse_module(edited[relpath], root / relpath, relpath, name, known))
        return align_modules(recorded, modules)


def align_modules(recorded: Mapping[str, str], edited: Sequence[ModuleInfo]) -> Alignment:
    """align() for an edited version already analysed, as compile_modules analyses it (with the
    recorded version's identifiers as its known names): only the recorded versions are
    analysed here, and only those of the edited modules."""
    result = Alignment()
    for new in sorted(edited, key=lambda m: m.relpath):
        relpath = new.relpath
        old_src = recorded.get(relpath, "")
        known = frozenset(names_in(new.tree))
        old = analyse_module(old_src, new.path, relpath, new.module_name, known)
        _compare(result, relpath, old, new)
    return result


def _compare(result: Alignment, relpath: str, old: ModuleInfo, new: ModuleInfo) -> None:
    """Add one file's differences to result."""
    a, b = skeleton(old), skeleton(new)
    matcher = difflib.SequenceMatcher(a=[t for _, t in a], b=[t for _, t in b], autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        olds = [t for _, t in a[i1:i2]]
        news = b[j1:j2]
        for k in range(max(len(olds), len(news))):
            line = news[k][0] if k < len(news) else (b[j1 - 1][0] if j1 > 0 else a[i1 + k][0])
            result.changes.append(
                Change(
                    relpath,
                    line,
                    olds[k] if k < len(olds) else "",
                    news[k][1] if k < len(news) else "",
                )
            )
    # which log statements are new: per scope, the same code in order is the same statement
    old_by_scope: dict[tuple[str, str], deque[str]] = {}
    for ls in old.log_statements:
        old_by_scope.setdefault((ls.scope, ls.code), deque()).append(f"{relpath}:{ls.line}")
    for ls in new.log_statements:
        sid = f"{relpath}:{ls.line}"
        same = old_by_scope.get((ls.scope, ls.code))
        if same:
            result.statement_map[sid] = same.popleft()
        else:
            result.new_statements.add(sid)
            result.new_statement_lines[sid] = (ls.line, ls.end_line)
    old_loops, old_fns = _log_lists(old)
    new_loops, new_fns = _log_lists(new)
    for loop_id in set(old_loops) | set(new_loops):
        if Counter(old_loops.get(loop_id, [])) != Counter(new_loops.get(loop_id, [])):
            result.changed_loops.add(loop_id)
    for fn in set(old_fns) | set(new_fns):
        if Counter(old_fns.get(fn, [])) != Counter(new_fns.get(fn, [])):
            result.changed_functions.add(fn)


def new_statement_after_main_loop(
    new_statements: Mapping[str, tuple[int, int]],
    modules: Sequence[ModuleInfo],
    main_loop: str | None,
    framework: Mapping[str, object] | None = None,
) -> bool:
    """Whether a replay has to run on past the main loop for the new log statements to run.

    False when every new statement lies inside the main loop, or before it in the scope the
    loop is in (it runs before the first replayed epoch); True when one lies after the loop,
    in its `else:` clause, in another scope (a function of the script, a project module) or in
    another file; False without a main loop.

    new_statements: "relpath:line" -> (first line, last line) of each new log statement of the
    edited version (Alignment.new_statement_lines); modules: the edited version as analysed
    (Compiled.modules); main_loop: the main loop's id (CompileResult.main_loop); framework: the
    call a framework main loop runs from (CompileResult.framework).

    Where the loop ends comes from the syntax tree: its body ends with its last statement,
    whatever the indentation of the lines in between (a triple-quoted string whose lines start
    at column 0 does not end it).
    """
    if is_framework_loop(main_loop):
        return framework is not None and _after_framework_call(new_statements, modules, framework)
    found = _loop(modules, main_loop) if main_loop is not None else None
    if found is None:
        return False
    info, loop = found
    end = _body_end(info, loop)
    scopes: dict[int, str] = {}  # line -> scope of the first log statement starting there
    for ls in info.log_statements:
        scopes.setdefault(ls.line, ls.scope)
    for sid, (line, _) in new_statements.items():
        relpath = sid.rsplit(":", 1)[0]
        if relpath != info.relpath:
            return True
        if loop.line <= line <= end:
            continue  # inside the loop
        if line < loop.line and scopes.get(line) == loop.scope:
            continue  # before the loop, in its scope
        return True
    return False


def _after_framework_call(
    new_statements: Mapping[str, tuple[int, int]],
    modules: Sequence[ModuleInfo],
    framework: Mapping[str, object],
) -> bool:
    """A framework's epochs as the main loop (`trainer.fit(...)`, `trainer.train()`): a new
    statement after the call, in the scope that makes it, runs after the loop; one anywhere else
    (a hook of the LightningModule, a callback, a `compute_loss` override, code before the call)
    runs during or before it."""
    relpath, line = str(framework["relpath"]), int(str(framework["line"]))
    info = next((m for m in modules if m.relpath == relpath), None)
    if info is None:
        return False
    scope = scope_at(info, line)
    for sid, (start, _) in new_statements.items():
        if sid.rsplit(":", 1)[0] == relpath and start > line and scope_at(info, start) == scope:
            return True
    return False


def _loop(modules: Sequence[ModuleInfo], loop_id: str) -> tuple[ModuleInfo, LoopInfo] | None:
    for info in modules:
        for lp in info.loops:
            if lp.loop_id == loop_id:
                return info, lp
    return None


def _body_end(info: ModuleInfo, loop: LoopInfo) -> int:
    """The last line of the loop's body (its `else:` clause, which runs after it, left out)."""
    body = loop.node.body
    return max(loop.line, info.end_line(body.body[-1])) if body.body else loop.line


@dataclass
class ReplayCompile:
    """What a replay needs from the compiler, as plain data: no syntax tree outlives
    compile_and_align, so none stays in memory while the script runs."""

    result: CompileResult  # the edited version, compiled
    alignment: Alignment  # the edited version against the recorded one
    run_after_loop: bool  # new_statement_after_main_loop: replay runs on past the main loop


def compile_and_align(
    script: Path,
    root: Path,
    recorded: Mapping[str, str],
    sources: Mapping[str, str] | None = None,
) -> ReplayCompile:
    """Compile the edited project (with the recorded version's identifiers as known names) and
    align it with the recorded sources (relpath -> text), each source text parsed once.
    sources: the edited version's texts where they are not the files' (relpath -> text)."""
    with shared_parses(), paused_gc():
        known = {rel: identifiers(text) for rel, text in recorded.items()}
        compiled = compile_modules(script, root, known_names=known, sources=sources)
        alignment = align_modules(recorded, compiled.modules)
        after = new_statement_after_main_loop(
            alignment.new_statement_lines,
            compiled.modules,
            compiled.result.main_loop,
            compiled.result.framework,
        )
    return ReplayCompile(compiled.result, alignment, after)
