"""The source-to-source transform: loops become memoizable blocks, log statements are tagged.

Every loop of training code becomes

    with __florc__.loop('train.py:main:0', changes=('model', 'opt')) as __florc_l0:
        if __florc_l0.run:
            for batch in __florc_l0.iterate(loader):
                ...

`changes` is the loop's changeset as the effect analysis found it, so the instrumented source
shows what each loop checkpoints. The runtime decides each loop's role when it starts: the main
loop (epoch boundaries are checkpointed, and at replay skipped or restored), a block under the
main loop (its changeset is checkpointed at its end, and at replay it is restored instead of run
unless it is probed), or a plain loop. Log statements run inside
`with __florc__.log_statement(...)` so their output is attributed to them, and every project
function notes that it ran.

A module that iterates over `florc.loop(...)` has been instrumented by hand: its author said
which loop is the main loop and what it checkpoints (`florc.checkpoint`), so none of its loops is
rewritten; its log statements are still tagged and its functions still note that they ran.

Every string in generated code is a `SimpleString` of the value's `repr()`: a path holding a
quote or a backslash cannot break the output or change an id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import libcst as cst

from florc.transforms.modules import LoopInfo, ModuleInfo
from florc.transforms.syntax import RESERVED_PREFIX, dotted, is_block_part, source_fields

RUNTIME_IMPORT = "import florc.runtime.api as __florc__"


def _stmt(code: str) -> cst.SimpleStatementLine | cst.BaseCompoundStatement:
    return cst.parse_statement(code)


# the public loop API; a module iterating over it is instrumented by hand
API_LOOP = "florc.loop"


def string(value: str) -> cst.SimpleString:
    """A string literal holding exactly value (whatever quotes or backslashes it contains)."""
    return cst.SimpleString(repr(value))


def _strings(values: Sequence[str]) -> cst.Tuple:
    """`('a', 'b')`, `('a',)` or `()`."""
    last = len(values) - 1
    return cst.Tuple(
        [
            cst.Element(
                string(v),
                comma=(
                    cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
                    if i < last
                    else cst.Comma()
                    if last == 0
                    else cst.MaybeSentinel.DEFAULT
                ),
            )
            for i, v in enumerate(values)
        ]
    )


def _runtime_call(method: str, argument: str, changes: Sequence[str] | None = None) -> cst.Call:
    """`__florc__.method('argument')` (with `changes=(...)` when given), built as nodes:
    parsing it costs a libcst parse per call."""
    args = [cst.Arg(string(argument))]
    if changes is not None:
        args[0] = args[0].with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
        args.append(
            cst.Arg(
                _strings(changes),
                keyword=cst.Name("changes"),
                equal=cst.AssignEqual(
                    whitespace_before=cst.SimpleWhitespace(""),
                    whitespace_after=cst.SimpleWhitespace(""),
                ),
            )
        )
    return cst.Call(func=cst.Attribute(cst.Name("__florc__"), cst.Name(method)), args=args)


def uses_loop_api(info: ModuleInfo) -> bool:
    """Whether a loop of this module iterates over `florc.loop(...)` (however florc or its
    `loop` was imported): the module is then instrumented by hand."""
    for lp in info.loops:
        it = lp.node.iter if isinstance(lp.node, cst.For) else None
        if not isinstance(it, cst.Call):
            continue
        name = dotted(it.func)
        if not name:
            continue
        # imports: alias -> "pkg.module" or "pkg.module:object"
        head = info.imports.get(name[0], "").replace(":", ".")
        if ".".join((head, *name[1:])) == API_LOOP:
            return True
    return False


def _contains_yield(fn: cst.FunctionDef) -> bool:
    from florc.transforms.effects import walk

    found = False

    def yield_(node: cst.Yield) -> None:
        nonlocal found
        found = True

    def prune(node: cst.CSTNode) -> bool:
        return node is fn

    walk(fn, {"FunctionDef": prune, "Lambda": lambda node: False, "Yield": yield_})
    return found or fn.asynchronous is not None


class _Instrumenter:
    """The transform, as the hooks of a CSTTransformer (visit_X before a node's children,
    leave_X after, with the original and the updated node) called over the statements only.
    Statements never sit inside expressions, so it rebuilds only the statements on the way to
    what it changes and leaves every expression as it is (a CSTTransformer rebuilds every
    node)."""

    def __init__(
        self, info: ModuleInfo, changes: Mapping[str, Sequence[str]] | None = None
    ) -> None:
        self.info = info
        self.changes = changes  # loop id -> changeset; None: the calls do not name it
        self.by_hand = uses_loop_api(info)
        self.loops = {id(lp.node): lp for lp in info.loops}
        self.logs = {id(ls.node): ls for ls in info.log_statements}
        self.qualnames: dict[int, str] = {}
        for q, f in info.functions.items():
            self.qualnames.setdefault(id(f.node), q)
        self.function_stack: list[tuple[cst.FunctionDef, bool]] = []  # (node, is_generator)
        self.class_depth: list[bool] = []  # True when directly in a class body

    def rewrite(self, node: cst.CSTNode) -> cst.CSTNode:
        kind = type(node)
        if kind is cst.SimpleStatementSuite:
            return node
        if kind is cst.SimpleStatementLine:
            return self.leave_SimpleStatementLine(node, node)  # type: ignore[arg-type]
        name = kind.__name__
        visit = _VISIT.get(name)
        if visit is not None:
            visit(self, node)
        updated = self._children(node)
        leave = _LEAVE.get(name)
        return leave(self, node, updated) if leave is not None else updated

    def _children(self, node: cst.CSTNode) -> cst.CSTNode:
        changes: dict[str, object] = {}
        for name in source_fields(type(node)):
            value = getattr(node, name)
            if is_block_part(value):
                new = self.rewrite(value)
                if new is not value:
                    changes[name] = new
            elif isinstance(value, (list, tuple)) and any(is_block_part(v) for v in value):
                items = tuple(self.rewrite(v) if is_block_part(v) else v for v in value)
                if any(a is not b for a, b in zip(items, value, strict=True)):
                    changes[name] = items
        return node.with_changes(**changes) if changes else node

    # scopes -------------------------------------------------------------------
    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self.class_depth.append(True)

    def leave_ClassDef(
        self, original_node: cst.ClassDef, updated_node: cst.ClassDef
    ) -> cst.ClassDef:
        self.class_depth.pop()
        return updated_node

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.function_stack.append((node, _contains_yield(node)))
        self.class_depth.append(False)

    def leave_FunctionDef(
        self, original_node: cst.FunctionDef, updated_node: cst.FunctionDef
    ) -> cst.FunctionDef:
        self.function_stack.pop()
        self.class_depth.pop()
        qual = self.qualnames.get(id(original_node))
        if qual is None or not isinstance(updated_node.body, cst.IndentedBlock):
            return updated_node
        marker = cst.SimpleStatementLine(
            [cst.Expr(_runtime_call("entered", f"{self.info.relpath}:{qual}"))]
        )
        body = list(updated_node.body.body)
        at = 1 if body and _is_docstring(body[0]) else 0
        body.insert(at, marker)
        return updated_node.with_changes(body=updated_node.body.with_changes(body=body))

    def _instrument_loops_here(self) -> bool:
        if self.by_hand:
            return False
        if self.class_depth and self.class_depth[-1]:
            return False
        return not (self.function_stack and self.function_stack[-1][1])

    # log statements -----------------------------------------------------------
    def _wrap_log(self, original: cst.CSTNode, updated: cst.BaseStatement) -> cst.BaseStatement:
        ls = self.logs.get(id(original))
        if ls is None:
            return updated
        leading = getattr(updated, "leading_lines", ())
        inner = updated.with_changes(leading_lines=())
        return cst.With(
            items=[cst.WithItem(_runtime_call("log_statement", f"{self.info.relpath}:{ls.line}"))],
            body=cst.IndentedBlock(body=[inner]),
            leading_lines=leading,
        )

    def leave_SimpleStatementLine(
        self, original_node: cst.SimpleStatementLine, updated_node: cst.SimpleStatementLine
    ) -> cst.BaseStatement:
        return self._wrap_log(original_node, updated_node)

    def leave_If(self, original_node: cst.If, updated_node: cst.If) -> cst.BaseStatement:
        return self._wrap_log(original_node, updated_node)

    # loops ----------------------------------------------------------------------
    def _wrap_loop(
        self, original: cst.For | cst.While, updated: cst.For | cst.While
    ) -> cst.BaseStatement:
        if id(original) in self.logs:
            return self._wrap_log(original, updated)
        loop = self.loops.get(id(original))
        if loop is None or not self._instrument_loops_here():
            return updated
        alias = f"{RESERVED_PREFIX}_l{loop.index}"
        leading = updated.leading_lines
        if isinstance(updated, cst.For):
            it = cst.Call(
                func=cst.Attribute(cst.Name(alias), cst.Name("iterate")),
                args=[cst.Arg(updated.iter)],
            )
            inner: cst.BaseStatement = updated.with_changes(iter=it, leading_lines=())
        else:
            # tick() marks the iteration boundary (and may restore state) before the test runs;
            # began() marks that an iteration really starts
            tick = cst.Call(func=cst.Attribute(cst.Name(alias), cst.Name("tick")))
            began = cst.Call(func=cst.Attribute(cst.Name(alias), cst.Name("began")))
            test = updated.test
            if not isinstance(test, (cst.Name, cst.Call, cst.Attribute, cst.Comparison)):
                test = test.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
            inner = updated.with_changes(
                test=cst.BooleanOperation(
                    cst.BooleanOperation(tick, cst.And(), test), cst.And(), began
                ),
                leading_lines=(),
            )
        guarded = cst.If(
            test=cst.Attribute(cst.Name(alias), cst.Name("run")),
            body=cst.IndentedBlock(body=[inner]),
        )
        return cst.With(
            items=[
                cst.WithItem(
                    _runtime_call(
                        "loop",
                        loop.loop_id,
                        None if self.changes is None else self.changes.get(loop.loop_id, ()),
                    ),
                    asname=cst.AsName(cst.Name(alias)),
                )
            ],
            body=cst.IndentedBlock(body=[guarded]),
            leading_lines=leading,
        )

    def leave_For(self, original_node: cst.For, updated_node: cst.For) -> cst.BaseStatement:
        return self._wrap_loop(original_node, updated_node)

    def leave_While(self, original_node: cst.While, updated_node: cst.While) -> cst.BaseStatement:
        return self._wrap_loop(original_node, updated_node)

    # module -----------------------------------------------------------------------
    def leave_Module(self, original_node: cst.Module, updated_node: cst.Module) -> cst.Module:
        body = list(updated_node.body)
        at = 0
        if body and _is_docstring(body[0]):
            at = 1
        while at < len(body) and _is_future_import(body[at]):
            at += 1
        body.insert(at, _stmt(RUNTIME_IMPORT + "\n"))
        return updated_node.with_changes(body=body)


_VISIT = {n[6:]: getattr(_Instrumenter, n) for n in dir(_Instrumenter) if n.startswith("visit_")}
_LEAVE = {n[6:]: getattr(_Instrumenter, n) for n in dir(_Instrumenter) if n.startswith("leave_")}


def _is_docstring(stmt: cst.CSTNode) -> bool:
    return (
        isinstance(stmt, cst.SimpleStatementLine)
        and len(stmt.body) == 1
        and isinstance(stmt.body[0], cst.Expr)
        and isinstance(stmt.body[0].value, (cst.SimpleString, cst.ConcatenatedString))
    )


def _is_future_import(stmt: cst.CSTNode) -> bool:
    return isinstance(stmt, cst.SimpleStatementLine) and any(
        isinstance(s, cst.ImportFrom)
        and isinstance(s.module, cst.Name)
        and s.module.value == "__future__"
        for s in stmt.body
    )


def is_instrumented(source: str) -> bool:
    return RUNTIME_IMPORT in source


def instrument(info: ModuleInfo, changes: Mapping[str, Sequence[str]] | None = None) -> str:
    """Instrumented source text for one analysed module (already instrumented: unchanged).

    changes: loop id -> changeset, named in each loop's call (None: the calls do not name it)."""
    if is_instrumented(info.source):
        return info.source
    return _Instrumenter(info, changes).rewrite(info.tree).code  # type: ignore[attr-defined]


def loops_not_instrumented(info: ModuleInfo) -> Sequence[LoopInfo]:
    """Loops left as they are: in generator functions, or all of a module instrumented by
    hand."""
    if uses_loop_api(info):
        return list(info.loops)
    out = []
    gens = {id(f.node) for f in info.functions.values() if _contains_yield(f.node)}
    for lp in info.loops:
        fn = info.functions.get(lp.scope)
        if fn is not None and id(fn.node) in gens:
            out.append(lp)
    return out
