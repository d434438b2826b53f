"""Align an edited script with its recorded version.

Replay is faithful when the two differ only in log statements. The comparison strips log
statements, comments and blank lines from both versions and diffs what is left (the *training
skeleton*); any remaining difference is a change to training and is listed line by line.
"""

from __future__ import annotations

import difflib
import io
import tokenize
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

from florc.transforms.compiler import _inside, identifiers, module_name_for
from florc.transforms.modules import ModuleInfo, analyse_module


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
    loops = {
        lp.loop_id: [ls.code for ls in info.log_statements if _inside(info, ls.node, lp.node)]
        for lp in info.loops
    }
    functions = {
        f"{info.relpath}:{q}": [
            ls.code for ls in info.log_statements if _inside(info, ls.node, fn.node)
        ]
        for q, fn in info.functions.items()
    }
    return loops, functions


def align(
    recorded: dict[str, str], edited: dict[str, str], root: Path, script_rel: str
) -> Alignment:
    """recorded / edited: relpath -> source text."""
    result = Alignment()
    for relpath in sorted(set(recorded) | set(edited)):
        old_src = recorded.get(relpath, "")
        new_src = edited.get(relpath)
        if new_src is None:
            continue  # a recorded module the edited project no longer imports: not compared
        name = "__main__" if relpath == script_rel else module_name_for(root / relpath, root)
        old = analyse_module(old_src, root / relpath, relpath, name, identifiers(new_src))
        new = analyse_module(new_src, root / relpath, relpath, name, identifiers(old_src))
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
    return result
