"""Place the current script's log statements into an older recorded version of it.

A replay of many runs (florc/replay/runs.py) replays each run from its own recorded sources.
The log statements of the current version that a run's version lacks (per scope, the same
code is the same statement, as align.py decides) are placed into that run's sources by the
syntax tree around them:

- the blocks that enclose the statement: a function or class by its name; a `for`, `while`,
  `if`, `with`, `try` or `match` by its header and the part the statement is in (body, else,
  an `except` clause, ...);
- the statements next to it in its block that are not log statements (a compound one by its
  header only): the one before it and the one after it.

A statement goes in only where exactly one place of the recorded version has the same
enclosing blocks and the same neighbours. Where there is none (its anchor code changed) or more
than one, it is not placed and the reason says where it is; a run with such a statement is not
replayed. A placed statement that reads a name the recorded version never mentions would fail
there: it is refused too.

Placing is textual: the statement's lines, re-indented to the block's, go in between lines of
the recorded text, so everything else stays byte for byte what was recorded.
"""

from __future__ import annotations

import builtins
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import libcst as cst

from florc.transforms.modules import (
    LogStatementInfo,
    ModuleInfo,
    _normalise,
    _without_comments,
    analyse_module,
)
from florc.transforms.syntax import descendants, names_in, shared_parses

Key = tuple[str, str]  # (header of a compound statement, the part of it: "body", "else", ...)


@dataclass(frozen=True)
class Placed:
    """A log statement placed into the recorded version."""

    relpath: str
    line: int  # where it is in the current version
    code: str
    target_line: int  # where it starts in the recorded version with the statements placed
    where: str  # its enclosing blocks and neighbours, in words


@dataclass(frozen=True)
class Unplaced:
    """A log statement that cannot be placed, and why."""

    relpath: str
    line: int
    col: int
    code: str
    reason: str

    def __str__(self) -> str:
        return f"{self.relpath}:{self.line}:{self.col}: `{_short(self.code)}` {self.reason}"


@dataclass
class Propagation:
    sources: dict[str, str]  # the recorded sources, with the statements placed
    placed: list[Placed] = field(default_factory=list)
    unplaced: list[Unplaced] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.unplaced


@dataclass
class _Block:
    path: tuple[Key, ...]
    statements: list[cst.BaseStatement]


def _short(code: str, limit: int = 50) -> str:
    text = " ".join(code.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _code(node: cst.CSTNode) -> str:
    return _normalise(cst.Module([]).code_for_node(node))


def _header(node: cst.CSTNode) -> str | None:
    """The header of a compound statement, as a block key; None for a simple statement."""
    if isinstance(node, cst.FunctionDef):
        return f"def {node.name.value}"
    if isinstance(node, cst.ClassDef):
        return f"class {node.name.value}"
    if isinstance(node, cst.For):
        prefix = "async for" if node.asynchronous else "for"
        return f"{prefix} {_code(node.target)} in {_code(node.iter)}"
    if isinstance(node, cst.While):
        return f"while {_code(node.test)}"
    if isinstance(node, cst.If):
        return f"if {_code(node.test)}"
    if isinstance(node, cst.With):
        prefix = "async with" if node.asynchronous else "with"
        return f"{prefix} " + ", ".join(_code(item) for item in node.items)
    if isinstance(node, cst.Try | cst.TryStar):
        return "try"
    if isinstance(node, cst.Match):
        return f"match {_code(node.subject)}"
    return None


def _anchor(node: cst.CSTNode) -> str:
    """How a neighbouring statement is recognised: a compound one by its header, a simple one
    by its code without comments."""
    return _header(node) or _code(_without_comments(node))


def _suite(suite: cst.BaseSuite) -> list[cst.BaseStatement] | None:
    """A block's statements; None for one written on its header's line (`if x: y()`)."""
    return list(suite.body) if isinstance(suite, cst.IndentedBlock) else None


def _parts(node: cst.CSTNode, header: str) -> Iterator[tuple[Key, list[cst.BaseStatement] | None]]:
    """The blocks of a compound statement, each with its key."""
    if isinstance(node, cst.FunctionDef | cst.ClassDef | cst.With):
        yield (header, "body"), _suite(node.body)
    elif isinstance(node, cst.For | cst.While):
        yield (header, "body"), _suite(node.body)
        if node.orelse is not None:
            yield (header, "else"), _suite(node.orelse.body)
    elif isinstance(node, cst.If):
        yield (header, "body"), _suite(node.body)
        if isinstance(node.orelse, cst.If):
            yield (header, "else"), [node.orelse]  # an elif: the `if` it stands for
        elif node.orelse is not None:
            yield (header, "else"), _suite(node.orelse.body)
    elif isinstance(node, cst.Try | cst.TryStar):
        yield (header, "body"), _suite(node.body)
        for handler in node.handlers:
            caught = _code(handler.type) if handler.type is not None else ""
            yield (header, f"except {caught}".strip()), _suite(handler.body)
        if node.orelse is not None:
            yield (header, "else"), _suite(node.orelse.body)
        if node.finalbody is not None:
            yield (header, "finally"), _suite(node.finalbody.body)
    elif isinstance(node, cst.Match):
        for case in node.cases:
            yield (header, f"case {_code(case.pattern)}"), _suite(case.body)


def _blocks(tree: cst.Module) -> Iterator[_Block]:
    """Every block of statements (the module's first), each with the keys that lead to it."""
    todo = [_Block((), list(tree.body))]
    while todo:
        block = todo.pop()
        yield block
        for stmt in block.statements:
            header = _header(stmt)
            if header is None:
                continue
            for key, statements in _parts(stmt, header):
                if statements is not None:
                    todo.append(_Block((*block.path, key), statements))


def _path_text(path: tuple[Key, ...]) -> str:
    if not path:
        return "at module level"
    return "in " + " › ".join(h if part == "body" else f"{h} ({part})" for h, part in path)


def _missing_part(path: tuple[Key, ...], paths: set[tuple[Key, ...]]) -> str:
    """The outermost block of path the recorded version lacks, in words."""
    for n in range(1, len(path) + 1):
        if path[:n] not in paths:
            header, part = path[n - 1]
            where = _path_text(path[: n - 1])
            what = f"`{_short(header)}`" + ("" if part == "body" else f" ({part})")
            return f"{what} {where}"
    return _path_text(path)


class _Module:
    """One version of a file, with what placing needs: its blocks, by keys; where each
    statement is; which statements are log statements."""

    def __init__(self, info: ModuleInfo) -> None:
        self.info = info
        self.lines = info.source.splitlines(keepends=True)
        self.logs = {id(ls.node): ls for ls in info.log_statements}
        self.blocks: dict[tuple[Key, ...], list[_Block]] = {}
        self.home: dict[int, tuple[_Block, int]] = {}  # id(statement) -> (block, index)
        for block in _blocks(info.tree):
            self.blocks.setdefault(block.path, []).append(block)
            for i, stmt in enumerate(block.statements):
                self.home[id(stmt)] = (block, i)

    def is_log(self, node: cst.CSTNode) -> bool:
        return id(node) in self.logs

    def indent(self, node: cst.CSTNode) -> str:
        line, col = self.info.position(node)
        return self.lines[line - 1][: col - 1]


def propagate(current: Sequence[ModuleInfo], recorded: Mapping[str, str], run: int) -> Propagation:
    """Place the log statements of `current` (the current version's modules, analysed with
    the recorded version's identifiers as known names) that the recorded version (relpath ->
    text) lacks. run: the recorded run, for the reasons."""
    out = Propagation(sources=dict(recorded))
    with shared_parses():
        for new in sorted(current, key=lambda m: m.relpath):
            _propagate_file(out, new, recorded.get(new.relpath), run)
    return out


def _new_statements(new: ModuleInfo, old: ModuleInfo) -> list[LogStatementInfo]:
    """The log statements of new that old lacks: per scope, the same code in order is the
    same statement (as align.py decides)."""
    have = Counter((ls.scope, ls.code) for ls in old.log_statements)
    out = []
    for ls in new.log_statements:
        if have[(ls.scope, ls.code)]:
            have[(ls.scope, ls.code)] -= 1
        else:
            out.append(ls)
    return out


def _propagate_file(out: Propagation, new: ModuleInfo, text: str | None, run: int) -> None:
    if text is None:
        for ls in new.log_statements:
            out.unplaced.append(
                Unplaced(
                    new.relpath,
                    ls.line,
                    ls.col,
                    ls.code,
                    f"is in {new.relpath}, which run {run} did not record",
                )
            )
        return
    old_info = analyse_module(text, new.path, new.relpath, new.module_name, None)
    statements = _new_statements(new, old_info)
    if not statements:
        return
    cur, old = _Module(new), _Module(old_info)
    known = frozenset(names_in(old_info.tree)) | frozenset(dir(builtins))
    star_import = any(
        isinstance(n, cst.ImportFrom) and isinstance(n.names, cst.ImportStar)
        for n in descendants(old_info.tree)
    )
    inserts: list[tuple[int, int, list[str], LogStatementInfo, str]] = []
    bound: set[str] = set()  # names the statements placed so far bind
    for ls in statements:
        placed = _place(cur, old, ls, run)
        if isinstance(placed, str):
            out.unplaced.append(Unplaced(new.relpath, ls.line, ls.col, ls.code, placed))
            continue
        position, indent, where = placed
        missing = sorted(_names_read(ls.node) - known - bound)
        if missing and not star_import:
            names = ", ".join(f"`{n}`" for n in missing)
            out.unplaced.append(
                Unplaced(
                    new.relpath,
                    ls.line,
                    ls.col,
                    ls.code,
                    f"reads {names}, which run {run}'s version of {new.relpath} never mentions: "
                    "it would fail there",
                )
            )
            continue
        bound |= _names_bound(ls.node)
        inserts.append((position, ls.line, _reindented(cur, ls, indent), ls, where))
    if not inserts:
        return
    lines = list(old.lines)
    if lines and not lines[-1].endswith(("\n", "\r")):
        lines[-1] += "\n"
    shift = 0
    patched: list[str] = []
    done = 0
    for position, _, text_lines, ls, where in sorted(inserts, key=lambda t: (t[0], t[1])):
        patched.extend(lines[done:position])
        done = position
        out.placed.append(Placed(new.relpath, ls.line, ls.code, position + shift + 1, where))
        patched.extend(text_lines)
        shift += len(text_lines)
    patched.extend(lines[done:])
    out.sources[new.relpath] = "".join(patched)


def _place(
    cur: _Module, old: _Module, ls: LogStatementInfo, run: int
) -> tuple[int, str, str] | str:
    """Where ls goes in old: (index of the line it goes before, the block's indentation, in
    words), or why it cannot be placed."""
    home = cur.home.get(id(ls.node))
    if home is None:
        return "is on the line of its block's header: put it on a line of its own to replay it"
    block, index = home
    candidates = old.blocks.get(block.path, [])
    if not candidates:
        return (
            f"cannot be placed in run {run}: its version has no "
            f"{_missing_part(block.path, set(old.blocks))}"
        )
    if len(candidates) > 1:
        return (
            f"cannot be placed in run {run}: its version has {len(candidates)} blocks "
            f"{_path_text(block.path)}, and which one is meant is not clear"
        )
    target = candidates[0]
    before = [s for s in block.statements[:index] if not cur.is_log(s)]
    after = [s for s in block.statements[index + 1 :] if not cur.is_log(s)]
    prev = before[-1] if before else None
    nxt = after[0] if after else None
    anchors = [s for s in target.statements if not old.is_log(s)]
    gaps = [
        i
        for i in range(len(anchors) + 1)
        if (i == 0 if prev is None else i > 0 and _anchor(anchors[i - 1]) == _anchor(prev))
        and (
            i == len(anchors)
            if nxt is None
            else i < len(anchors) and _anchor(anchors[i]) == _anchor(nxt)
        )
    ]
    around = _around(prev, nxt)
    where = f"{_path_text(block.path)}, {around}"
    if len(gaps) != 1:
        how = "no such place" if not gaps else f"{len(gaps)} such places"
        return (
            f"cannot be placed in run {run}: the code around it changed — {where} in the "
            f"current script; run {run}'s version has {how}"
        )
    gap = gaps[0]
    # the log statements of the recorded version in that gap: ls goes after those that come
    # before it in the current version too
    lo = target.statements.index(anchors[gap - 1]) + 1 if gap > 0 else 0
    hi = target.statements.index(anchors[gap]) if gap < len(anchors) else len(target.statements)
    start = block.statements.index(prev) + 1 if prev is not None else 0
    earlier = Counter(cur.logs[id(s)].code for s in block.statements[start:index] if cur.is_log(s))
    last = lo - 1
    for i in range(lo, hi):
        code = old.logs[id(target.statements[i])].code
        if not earlier[code]:
            break
        earlier[code] -= 1
        last = i
    if last >= 0:
        position = old.info.end_line(target.statements[last])  # the line after it (0-based)
    else:
        first = target.statements[0]
        position = old.info.position(first)[0] - 1
    return position, old.indent(target.statements[0]), where


def _around(prev: cst.CSTNode | None, nxt: cst.CSTNode | None) -> str:
    parts = []
    if prev is not None:
        parts.append(f"after `{_short(_anchor(prev))}`")
    if nxt is not None:
        parts.append(f"before `{_short(_anchor(nxt))}`")
    return " and ".join(parts) if parts else "alone in its block"


def _reindented(cur: _Module, ls: LogStatementInfo, indent: str) -> list[str]:
    """The statement's lines, from the current version, indented as the target block."""
    own = cur.indent(ls.node)
    lines = cur.lines[ls.line - 1 : ls.end_line]
    if lines and not lines[-1].endswith(("\n", "\r")):
        lines[-1] += "\n"
    if own == indent:
        return lines
    return [indent + ln[len(own) :] if ln.startswith(own) else ln for ln in lines]


def _names_read(node: cst.CSTNode) -> set[str]:
    """Names a statement reads: its Name nodes that are not attribute names, keywords of a
    call, parameters, or names it binds itself."""
    skip: set[int] = set()
    for n in descendants(node):
        if isinstance(n, cst.Attribute):
            skip.add(id(n.attr))
        elif isinstance(n, cst.Arg) and n.keyword is not None:
            skip.add(id(n.keyword))
        elif isinstance(n, cst.Param):
            skip.add(id(n.name))
    names = {n.value for n in descendants(node) if isinstance(n, cst.Name) and id(n) not in skip}
    return names - _names_bound(node)


def _names_bound(node: cst.CSTNode) -> set[str]:
    """Names a statement binds: assignment targets, loop and comprehension targets, `:=`,
    lambda parameters."""
    out: set[str] = set()
    targets: list[cst.CSTNode] = []
    for n in descendants(node):
        if isinstance(
            n,
            cst.AssignTarget
            | cst.AnnAssign
            | cst.AugAssign
            | cst.NamedExpr
            | cst.CompFor
            | cst.For,
        ):
            targets.append(n.target)
        elif isinstance(n, cst.Param):
            out.add(n.name.value)
    for t in targets:
        out |= {n.value for n in descendants(t) if isinstance(n, cst.Name)}
    return out


def place_statements(
    script: Path, root: Path, recorded: Mapping[str, str], run: int
) -> Propagation:
    """propagate() for the current version on disk: the script and the project modules it
    imports, analysed with the recorded version's identifiers as known names."""
    from florc.transforms.compiler import discover_modules, identifiers, paused_gc

    known = {rel: identifiers(text) for rel, text in recorded.items()}
    with shared_parses(), paused_gc():
        modules = discover_modules(script.resolve(), root.resolve(), known)
        return propagate(modules, recorded, run)
