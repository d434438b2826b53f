"""What one source file holds: imports, functions, loops and log statements, with positions."""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import libcst as cst
from libcst._nodes.internal import CodegenState

from florc.errors import SourceError
from florc.transforms.logstatements import LogStatementFinder
from florc.transforms.syntax import (
    MAIN_LOOP_PRAGMA,
    SKIP_PRAGMA,
    has_pragma,
    is_block_part,
    parse_trees,
    scope_qualname,
    shared_spans,
    source_children,
)

Loop = cst.For | cst.While


@dataclass
class FunctionInfo:
    qualname: str  # "train", "Trainer.fit", "main.<locals>.step"
    name: str
    node: cst.FunctionDef
    params: list[str]
    star_params: bool  # has *args or **kwargs
    is_method: bool
    enclosing: str | None  # qualname of the enclosing function, for closures
    line: int


@dataclass
class LoopInfo:
    loop_id: str  # stable: "<relpath>:<scope>:<index>"
    node: Loop
    scope: str  # qualname of the enclosing function, or "<module>"
    index: int
    line: int
    col: int
    kind: str  # "for" | "while"
    parent_loop: str | None  # enclosing loop in the same scope
    main_pragma: bool
    skip_pragma: bool


@dataclass
class LogStatementInfo:
    node: cst.BaseStatement
    line: int
    col: int
    end_line: int
    scope: str
    loop_id: str | None  # innermost enclosing (non-log) loop
    code: str  # normalised source text


@dataclass
class ModuleInfo:
    path: Path
    relpath: str
    module_name: str  # dotted import name, "__main__" for the script
    source: str
    tree: cst.Module
    imports: dict[str, str] = field(default_factory=dict)  # local alias -> dotted module/object
    functions: dict[str, FunctionInfo] = field(default_factory=dict)
    classes: dict[str, cst.ClassDef] = field(default_factory=dict)
    loops: list[LoopInfo] = field(default_factory=list)
    log_statements: list[LogStatementInfo] = field(default_factory=list)
    # id(node) -> (start line, start column, end line, end column) of every node of tree, as
    # libcst's PositionProvider defines them (lines from 1, columns from 0)
    spans: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)
    finder: LogStatementFinder | None = None
    syntax: ast.Module | None = None  # Python's own tree of source

    def loop_by_node(self, node: cst.CSTNode) -> LoopInfo | None:
        for loop in self.loops:
            if loop.node is node:
                return loop
        return None

    def position(self, node: cst.CSTNode) -> tuple[int, int]:
        """(line, column), both from 1; (0, 0) for a node not in the tree."""
        span = self.spans.get(id(node))
        if span is None:
            return (0, 0)
        return (span[0], span[1] + 1)

    def end_line(self, node: cst.CSTNode) -> int:
        """The line the node ends on (from 1); 0 for a node not in the tree."""
        span = self.spans.get(id(node))
        return span[2] if span is not None else 0

    def inside(self, inner: cst.CSTNode, outer: cst.CSTNode) -> bool:
        """Whether inner lies within outer's span (outer itself included); False for a node
        not in the tree."""
        a, b = self.spans.get(id(inner)), self.spans.get(id(outer))
        if a is None or b is None:
            return False
        return b[:2] <= a[:2] and a[2:] <= b[2:]

    def log_statements_in(self, node: cst.CSTNode) -> list[LogStatementInfo]:
        """The module's log statements inside node (a loop, a function), in source order."""
        return [ls for ls in self.log_statements if self.inside(ls.node, node)]


def read_source(path: Path, shown: str) -> str:
    """A source file's text; a missing, unreadable or non-UTF-8 file is a SourceError."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SourceError(
            shown, 0, 0, "no such file", "Check the path of the training script."
        ) from None
    except OSError as exc:
        raise SourceError(shown, 0, 0, f"cannot read: {exc.strerror}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SourceError(
            shown, line, col, "not valid UTF-8 text", "Save the file as UTF-8 (PEP 3120)."
        ) from None


def analyse_module(
    source: str,
    path: Path,
    relpath: str,
    module_name: str,
    known_names: frozenset[str] | None = None,
) -> ModuleInfo:
    syntax, tree = parse_trees(source, relpath)
    info = ModuleInfo(
        path, relpath, module_name, source, tree, spans=shared_spans(tree, node_spans)
    )
    info.syntax = syntax
    info.finder = LogStatementFinder(tree, known_names)
    _Collector(info).statements(tree.body)
    return info


_NEWLINE = re.compile(r"\r\n?|\n")


class _SpanState(CodegenState):
    """A code generator that only tracks where each node starts and ends: the positions of
    libcst's PositionProvider (syntactic: without most surrounding whitespace), computed the same
    way, without its metadata machinery (a second pass over the whole tree) and its per-token
    regular expression and per-node objects."""

    def __init__(self, module: cst.Module, spans: dict[int, tuple[int, int, int, int]]) -> None:
        super().__init__(
            default_indent=module.default_indent, default_newline=module.default_newline
        )
        self.spans = spans
        self.line = 1
        self.column = 0
        self.starts: list[tuple[int, int]] = []

    def add_indent_tokens(self) -> None:
        for token in self.indent_tokens:
            self.add_token(token)

    def add_token(self, value: str) -> None:
        self.tokens.append(value)
        if "\n" in value or "\r" in value:
            segments = _NEWLINE.split(value)
            self.line += len(segments) - 1
            self.column = len(segments[-1])
        else:
            self.column += len(value)

    def before_codegen(self, node: cst.CSTNode) -> None:
        self.starts.append((self.line, self.column))

    def after_codegen(self, node: cst.CSTNode) -> None:
        line, column = self.starts.pop()
        key = id(node)
        if key not in self.spans:  # a syntactic position recorded inside wins
            self.spans[key] = (line, column, self.line, self.column)

    def record_syntactic_position(  # type: ignore[override]
        self,
        node: cst.CSTNode,
        *,
        start_node: cst.CSTNode | None = None,
        end_node: cst.CSTNode | None = None,
    ) -> _Syntactic:
        return _Syntactic(self, node, start_node, end_node)


class _Syntactic:
    """`with state.record_syntactic_position(node, ...)`: the node's span is what the block
    generates, or from start_node's start / to end_node's end."""

    __slots__ = ("state", "node", "start_node", "end_node", "start")

    def __init__(
        self,
        state: _SpanState,
        node: cst.CSTNode,
        start_node: cst.CSTNode | None,
        end_node: cst.CSTNode | None,
    ) -> None:
        self.state, self.node, self.start_node, self.end_node = state, node, start_node, end_node

    def __enter__(self) -> None:
        self.start = (self.state.line, self.state.column)

    def __exit__(self, *exc: object) -> None:
        spans = self.state.spans
        line, column = self.start
        end_line, end_column = self.state.line, self.state.column
        if self.start_node is not None:
            line, column = spans[id(self.start_node)][:2]
        if self.end_node is not None:
            end_line, end_column = spans[id(self.end_node)][2:]
        spans[id(self.node)] = (line, column, end_line, end_column)


def node_spans(tree: cst.Module) -> dict[int, tuple[int, int, int, int]]:
    """id(node) -> (start line, start column, end line, end column) for every node of tree."""
    spans: dict[int, tuple[int, int, int, int]] = {}
    tree._codegen(_SpanState(tree, spans))
    return spans


class _Collector:
    """One pass over the statements, in source order, with the hooks a CSTVisitor would call
    (statements never sit inside expressions, so no expression is walked)."""

    def __init__(self, info: ModuleInfo) -> None:
        self.info = info
        self.scopes: list[tuple[str, str]] = []  # (kind, name): ("def"|"class", name)
        self.loop_stack: list[list[LoopInfo | None]] = [[]]  # per scope: enclosing loops
        self.loop_counts: dict[str, int] = {}
        self.in_log = 0
        self.elifs: set[int] = set()  # ids of the If nodes that are `elif` branches

    def statements(self, nodes: Sequence[cst.CSTNode]) -> None:
        for node in nodes:
            self.node(node)

    def node(self, node: cst.CSTNode) -> None:
        kind = type(node)
        if kind is cst.SimpleStatementLine or kind is cst.SimpleStatementSuite:
            if kind is cst.SimpleStatementLine:
                self.visit_SimpleStatementLine(node)  # type: ignore[arg-type]
            for small in node.body:  # type: ignore[attr-defined]
                if isinstance(small, cst.Import):
                    self.visit_Import(small)
                elif isinstance(small, cst.ImportFrom):
                    self.visit_ImportFrom(small)
            if kind is cst.SimpleStatementLine:
                self.leave_SimpleStatementLine(node)  # type: ignore[arg-type]
            return
        name = kind.__name__
        visit = _HOOKS.get("visit_" + name)
        if visit is not None:
            visit(self, node)
        for child in source_children(node):
            if is_block_part(child):
                self.node(child)
        leave = _HOOKS.get("leave_" + name)
        if leave is not None:
            leave(self, node)

    # scopes --------------------------------------------------------------
    def _qualname(self, name: str | None = None) -> str:
        return scope_qualname(self.scopes, name)

    def _enclosing_function(self) -> str | None:
        for i in range(len(self.scopes) - 1, -1, -1):
            if self.scopes[i][0] == "def":
                saved = self.scopes
                self.scopes = saved[: i + 1]
                q = self._qualname()
                self.scopes = saved
                return q
        return None

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self.info.classes[self._qualname(node.name.value)] = node
        self.scopes.append(("class", node.name.value))
        self.loop_stack.append([])

    def leave_ClassDef(self, original_node: cst.ClassDef) -> None:
        self.scopes.pop()
        self.loop_stack.pop()

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        qual = self._qualname(node.name.value)
        params = node.params
        names = [p.name.value for p in (*params.posonly_params, *params.params)]
        names += [p.name.value for p in params.kwonly_params]
        star = isinstance(params.star_arg, cst.Param) or params.star_kwarg is not None
        is_method = bool(self.scopes) and self.scopes[-1][0] == "class"
        line, _ = self.info.position(node)
        self.info.functions[qual] = FunctionInfo(
            qual, node.name.value, node, names, star, is_method, self._enclosing_function(), line
        )
        self.scopes.append(("def", node.name.value))
        self.loop_stack.append([])

    def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:
        self.scopes.pop()
        self.loop_stack.pop()

    # imports -------------------------------------------------------------
    def visit_Import(self, node: cst.Import) -> None:
        for alias in node.names:
            full = cst.Module([]).code_for_node(alias.name)
            if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                self.info.imports[alias.asname.name.value] = full
            else:
                root = full.split(".")[0]
                self.info.imports.setdefault(root, root)

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        mod = cst.Module([]).code_for_node(node.module) if node.module is not None else ""
        dots = "".join("." for _ in node.relative)
        base = dots + mod
        if isinstance(node.names, cst.ImportStar):
            return
        for alias in node.names:
            name = cst.Module([]).code_for_node(alias.name)
            local = name
            if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                local = alias.asname.name.value
            self.info.imports[local] = f"{base}:{name}"

    # statements ----------------------------------------------------------
    def _log_check(self, node: cst.CSTNode) -> bool:
        assert self.info.finder is not None
        if self.in_log:
            return True
        if self.info.finder.is_log_statement(node):
            line, col = self.info.position(node)
            loops = [lp for lp in self.loop_stack[-1] if lp is not None]
            code = cst.Module([]).code_for_node(_without_comments(node)).strip()
            self.info.log_statements.append(
                LogStatementInfo(
                    node,  # type: ignore[arg-type]
                    line,
                    col,
                    self.info.end_line(node),
                    self._enclosing_function() or "<module>",
                    loops[-1].loop_id if loops else None,
                    _normalise(code),
                )
            )
            self.in_log += 1
            return True
        return False

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> None:
        self._log_check(node)

    def leave_SimpleStatementLine(self, original_node: cst.SimpleStatementLine) -> None:
        self._leave_log(original_node)

    def visit_If(self, node: cst.If) -> None:
        if isinstance(node.orelse, cst.If):
            self.elifs.add(id(node.orelse))
        if id(node) in self.elifs and not self.in_log:
            return  # an `elif` belongs to its `if`: it is a log statement only with it
        self._log_check(node)

    def leave_If(self, original_node: cst.If) -> None:
        self._leave_log(original_node)

    def _leave_log(self, node: cst.CSTNode) -> None:
        if self.in_log and self.info.log_statements and self.info.log_statements[-1].node is node:
            self.in_log -= 1

    def _visit_loop(self, node: Loop, kind: str) -> None:
        if self._log_check(node):
            self.loop_stack[-1].append(None)
            return
        scope = self._enclosing_function() or "<module>"
        index = self.loop_counts.get(scope, 0)
        self.loop_counts[scope] = index + 1
        line, col = self.info.position(node)
        parents = [lp for lp in self.loop_stack[-1] if lp is not None]
        loop = LoopInfo(
            loop_id=f"{self.info.relpath}:{scope}:{index}",
            node=node,
            scope=scope,
            index=index,
            line=line,
            col=col,
            kind=kind,
            parent_loop=parents[-1].loop_id if parents else None,
            main_pragma=has_pragma(node, MAIN_LOOP_PRAGMA),
            skip_pragma=has_pragma(node, SKIP_PRAGMA),
        )
        self.info.loops.append(loop)
        self.loop_stack[-1].append(loop)

    def _leave_loop(self, node: Loop) -> None:
        self.loop_stack[-1].pop()
        self._leave_log(node)

    def visit_For(self, node: cst.For) -> None:
        self._visit_loop(node, "for")

    def leave_For(self, original_node: cst.For) -> None:
        self._leave_loop(original_node)

    def visit_While(self, node: cst.While) -> None:
        self._visit_loop(node, "while")

    def leave_While(self, original_node: cst.While) -> None:
        self._leave_loop(original_node)


_HOOKS = {
    name: getattr(_Collector, name)
    for name in dir(_Collector)
    if name.startswith(("visit_", "leave_"))
}


def _normalise(code: str) -> str:
    return " ".join(code.split())


def _without_comments(node: cst.CSTNode) -> cst.CSTNode:
    """A statement line without the comment lines above it or the comment after it: editing a
    comment must not make a log statement look new."""
    if isinstance(node, cst.SimpleStatementLine):
        return node.with_changes(leading_lines=(), trailing_whitespace=cst.TrailingWhitespace())
    return node
