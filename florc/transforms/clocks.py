"""Which values a log statement prints derive from a clock or from randomness no seed controls.

A replay computes `time.time() - t0` again and gets another number than the recording did;
comparing it would report a divergence where training reproduced exactly. This analysis marks,
for each log statement, which of the values it formats derive from such sources, so that the
fidelity check leaves them out (and says how many it left out).

Sources: clock reads (`time.time`, `perf_counter`, `monotonic`, `process_time`,
`datetime.now`, ... see nondeterminism.CLOCKS) and the unseeded randomness nondeterminism.py
warns about (`os.urandom`, `uuid.uuid4`, `secrets`, `random.SystemRandom`). Seeded generators
are not sources: replay restores them.

The taint flows, without regard to statement order, through
- assignments (`dt = t1 - t0`, `elapsed = dt * 1000`, augmented and annotated ones, walrus),
  to names, attribute chains (`self.iter_time` is shared by the methods of its class) and the
  base of subscript targets (`times[i] = dt` taints `times`);
- mutating method calls (`times.append(dt)` taints `times`);
- `for` targets over a tainted iterable and `with ... as` targets;
- the module's own functions: their return value (also through `obj.method()` when the
  module defines a method of that name), and their parameters from the call sites
  (`log(f"... {dt}")` taints `msg` in `def log(msg): print(msg)`).
Any expression that reads a tainted name (or calls something with a tainted argument) is
tainted: `int(step / (time.time() - start))`, `model.estimate_mfu(n, dt)`.

Results:
- per log statement that prints at least one tainted value, the *shapes* of the lines it
  prints, each a list of parts: `["text", "epoch "]` (literal text), `["value", None]` (a
  value to compare) or `["value", "clock" | "random"]` (a value to leave out). The runtime
  matches recorded and replayed lines against them (florc.runtime.fidelity.compare_shaped);
- per loop, the checkpointed paths holding tainted values (`dt`, `timer.t0` for
  `timer = Timer()` whose methods set `self.t0`), left out of the block state comparison.

The analysis walks Python's own `ast` (one cheap pass): it reads values, it rewrites nothing.
A file `ast` cannot parse gets no shapes, and its lines are compared as text, as before.
"""

from __future__ import annotations

import ast
import bisect
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from florc.transforms.logstatements import is_log_chain
from florc.transforms.modules import ModuleInfo
from florc.transforms.nondeterminism import CLOCK_METHODS, source_kind
from florc.transforms.syntax import LOG_METHODS, scope_qualname

Chain = tuple[str, ...]
Key = tuple[str, Chain]  # (scope, chain): "<module>", a function's qualname, "class:<qualname>"
Part = list[Any]  # ["text", str] | ["value", None | "clock" | "random"]

MUTATORS = frozenset(
    {"append", "extend", "insert", "add", "update", "setdefault", "appendleft", "put", "push"}
)
# logging formats that put the time into every line
_LOGGING_CLOCK = re.compile(r"%\((?:asctime|created|msecs|relativeCreated)\)|\{asctime\b")
_PERCENT = re.compile(
    r"%(?:\((?P<name>[^)]*)\))?[#0\- +]*(?P<width>\*|\d+)?(?:\.(?P<prec>\*|\d+))?[hlL]?"
    r"(?P<conv>[diouxXeEfFgGcrsa%])"
)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_RETURN = "return"  # a fact's target scope: the return value of the function named in the chain


def _kind(a: str | None, b: str | None) -> str | None:
    """Clock wins over randomness (either way the value is left out)."""
    if a == "clock" or b == "clock":
        return "clock"
    return a or b


def dotted(node: ast.AST) -> Chain | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return tuple(reversed(parts))
    return None


@dataclass
class _Fn:
    qualname: str
    params: list[str]  # positional, in order
    kwonly: list[str]
    is_method: bool
    enclosing: str | None
    self_name: str | None = None
    cls: str | None = None
    locals: set[str] = field(default_factory=set)
    declared_global: set[str] = field(default_factory=set)


@dataclass
class _Fact:
    """Values flowing into `targets` from what the expression reads, calls or is."""

    targets: list[tuple[str | None, Chain]]  # (function qualname or None, chain)
    reads: list[tuple[str | None, Chain]]
    calls: list[str]  # qualnames of the module's functions whose return value flows in
    source: str | None


@dataclass
class _LogCall:
    node: ast.Call
    fn: str | None
    start: tuple[int, int]  # line, column (characters, 0-based)
    end_line: int


class ClockTaint:
    """The taint analysis of one module."""

    def __init__(self, info: ModuleInfo, foreign: dict[str, str] | None = None) -> None:
        """foreign: attribute names that other project modules' classes set from a clock
        (`self.iter_dt = tnow - self.iter_time` in a Trainer), read here as `trainer.iter_dt`."""
        self.info = info
        self.foreign = foreign or {}
        self.fns: dict[str, _Fn] = {}
        self.classes: set[str] = set()
        self.facts: list[_Fact] = []
        self.log_calls: list[_LogCall] = []
        self.logging_clock = False
        self.taint: dict[Key, str] = {}
        self.instances: list[tuple[Key, str]] = []  # `timer = Timer()`: (key, class qualname)
        self._raw_instances: list[tuple[str | None, Chain, str]] = []
        self._methods: dict[str, list[str]] = {}
        self._starts: list[tuple[int, int]] | None = None
        self._classes_of: dict[Key, set[str]] = {}  # `timer` -> {"Timer"}
        try:
            tree = info.syntax if info.syntax is not None else ast.parse(info.source)
        except (SyntaxError, ValueError):
            return
        self.lines = _LINE_BREAK.split(info.source)
        _Declare(self).visit(tree)
        for q, f in self.fns.items():
            if f.is_method:
                self._methods.setdefault(q.rsplit(".", 1)[-1], []).append(q)
        _Collect(self).visit(tree)
        self.instances = [(self.key(f, c), cls) for f, c, cls in self._raw_instances]
        for k, cls in self.instances:
            self._classes_of.setdefault(k, set()).add(cls)
        self._solve()

    # resolution -------------------------------------------------------------------
    def key(self, fn: str | None, chain: Chain) -> Key:
        head = chain[0]
        f = self.fns.get(fn) if fn is not None else None
        while f is not None:
            if head == f.self_name:  # one name for the instance in every method
                return (f"class:{f.cls}", ("self", *chain[1:]))
            if head in f.declared_global:
                break
            if head in f.locals:
                return (f.qualname, chain)
            f = self.fns.get(f.enclosing) if f.enclosing else None
        return ("<module>", chain)

    def callee(self, fn: str | None, chain: Chain) -> _Fn | None:
        """The module's own function a call names: `f(...)`, `self.m(...)`."""
        if len(chain) == 1:
            f = self.fns.get(fn) if fn is not None else None
            while f is not None:
                g = self.fns.get(f"{f.qualname}.<locals>.{chain[0]}")
                if g is not None:
                    return g
                f = self.fns.get(f.enclosing) if f.enclosing else None
            return self.fns.get(chain[0])
        f = self.fns.get(fn) if fn is not None else None
        if len(chain) == 2 and f is not None and chain[0] == f.self_name:
            return self.fns.get(f"{f.cls}.{chain[1]}")
        return None

    def class_named(self, fn: str | None, name: str) -> str | None:
        f = self.fns.get(fn) if fn is not None else None
        while f is not None:
            q = f"{f.qualname}.<locals>.{name}"
            if q in self.classes:
                return q
            f = self.fns.get(f.enclosing) if f.enclosing else None
        return name if name in self.classes else None

    def scan(
        self, fn: str | None, node: ast.AST
    ) -> tuple[list[tuple[str | None, Chain]], list[str], str | None]:
        """What an expression reads (name chains), which of the module's functions it calls,
        and whether it names a source itself."""
        reads: list[tuple[str | None, Chain]] = []
        calls: list[str] = []
        source: str | None = None
        stack = [node]
        while stack:
            cur = stack.pop()
            if isinstance(cur, (ast.Name, ast.Attribute)):
                chain = dotted(cur)
                if chain is not None:
                    source = _kind(source, source_kind(self.info, chain))
                    reads.append((fn, chain))
                    continue
                if isinstance(cur, ast.Attribute):
                    stack.append(cur.value)
                    continue
            elif isinstance(cur, ast.Call):
                chain = dotted(cur.func)
                if chain is not None:
                    g = self.callee(fn, chain)
                    if g is not None:
                        calls.append(g.qualname)
                    elif len(chain) >= 2:
                        calls.extend(self._methods.get(chain[-1], ()))
                if isinstance(cur.func, ast.Attribute) and cur.func.attr in CLOCK_METHODS:
                    source = "clock"
            stack.extend(ast.iter_child_nodes(cur))
        return reads, calls, source

    def _solve(self) -> None:
        facts = [
            (
                [(f, c) if f == _RETURN else self.key(f, c) for f, c in fact.targets],
                [self.key(f, c) for f, c in fact.reads],
                fact.calls,
                fact.source,
            )
            for fact in self.facts
        ]
        changed = True
        while changed:
            changed = False
            for targets, reads, calls, source in facts:
                kind = source or self._read_kind(reads) or self._call_kind(calls)
                if kind is None:
                    continue
                for t in targets:
                    now = _kind(self.taint.get(t), kind)
                    if now is not None and self.taint.get(t) != now:
                        self.taint[t] = now
                        changed = True

    def _read_kind(self, reads: list[Key]) -> str | None:
        out = None
        for scope, chain in reads:
            for i in range(1, len(chain) + 1):
                out = _kind(out, self.taint.get((scope, chain[:i])))
            for attr in chain[1:]:  # another module's class sets it from a clock
                out = _kind(out, self.foreign.get(attr))
            # `timer.t0` where `timer = Timer()` and a method sets `self.t0`
            for cls in self._classes_of.get((scope, chain[:1]), ()):
                for i in range(2, len(chain) + 1):
                    out = _kind(out, self.taint.get((f"class:{cls}", ("self", *chain[1:i]))))
        return out

    def _call_kind(self, calls: list[str]) -> str | None:
        out = None
        for q in calls:
            out = _kind(out, self.taint.get((_RETURN, (q,))))
        return out

    # queries ----------------------------------------------------------------------
    def instance_attributes(self) -> dict[str, str]:
        """Attributes this module's classes set from a clock or unseeded randomness, by name."""
        out: dict[str, str] = {}
        for (scope, chain), kind in self.taint.items():
            if scope.startswith("class:") and len(chain) == 2 and chain[0] == "self":
                out[chain[1]] = _kind(out.get(chain[1]), kind) or kind
        return out

    def kind_of(self, fn: str | None, node: ast.AST) -> str | None:
        """Whether an expression's value derives from a clock or unseeded randomness."""
        reads, calls, source = self.scan(fn, node)
        keys = [self.key(f, c) for f, c in reads]
        return source or self._read_kind(keys) or self._call_kind(calls)

    def statement_shapes(
        self, line: int, col: int, end_line: int
    ) -> tuple[list[list[Part]], str] | None:
        """The line shapes of the log statement at line:col (1-based) and the kind of its
        left-out values; None when none of its values is tainted."""
        if self._starts is None:
            self.log_calls.sort(key=lambda c: c.start)
            self._starts = [c.start for c in self.log_calls]
        calls = []
        for c in self.log_calls[bisect.bisect_left(self._starts, (line, col - 1)) :]:
            if c.start[0] > end_line:
                break
            if c.end_line <= end_line:
                calls.append(c)
        tainted: str | None = None
        for c in calls:
            for arg in (*c.node.args, *(k.value for k in c.node.keywords)):
                tainted = _kind(tainted, self.kind_of(c.fn, arg))
        prefix = "clock" if self.logging_clock else None
        if tainted is None and not (prefix and any(_is_logging(c.node) for c in calls)):
            return None
        out: list[list[Part]] = []
        for c in calls:
            out.extend(_Shaper(self, c.fn, prefix).call(c.node))
        return out, tainted or "clock"

    def state_left_out(self, scope: str, paths: list[str]) -> dict[str, str]:
        """Of a loop's checkpointed paths, those (or the attributes under them) that hold a
        value derived from a clock or unseeded randomness: path -> kind. `timer.t0` when
        `timer = Timer()` and a method of Timer sets `self.t0 = perf_counter()`."""
        fn = scope if scope != "<module>" else None
        out: dict[str, str] = {}
        for path in paths:
            if path.startswith("@"):
                continue
            chain = tuple(path.split("."))
            root = self.key(fn, chain)
            kind = self._read_kind([root])
            if kind is not None:
                out[path] = kind
                continue
            classes = {f"class:{c}" for k, c in self.instances if k == root}
            for (s, c), k in self.taint.items():
                if s == root[0] and len(c) > len(chain) and c[: len(chain)] == chain:
                    out[".".join(c)] = k
                elif s in classes and len(c) > 1:
                    out[".".join((*chain, *c[1:]))] = k
        return {p: k for p, k in out.items() if not any(p.startswith(q + ".") for q in out)}

    def column(self, node: ast.AST) -> int:
        """A node's column in characters (ast counts UTF-8 bytes)."""
        col = node.col_offset  # type: ignore[attr-defined]
        text = self.lines[node.lineno - 1] if node.lineno - 1 < len(self.lines) else ""  # type: ignore[attr-defined]
        if text.isascii():
            return col
        return len(text.encode()[:col].decode(errors="ignore"))


def _target_chains(t: ast.AST) -> list[Chain]:
    if isinstance(t, (ast.Name, ast.Attribute)):
        chain = dotted(t)
        if chain is not None:
            return [chain]
        return _target_chains(t.value) if isinstance(t, ast.Attribute) else []
    if isinstance(t, ast.Subscript):
        return _target_chains(t.value)
    if isinstance(t, (ast.Tuple, ast.List)):
        return [c for e in t.elts for c in _target_chains(e)]
    if isinstance(t, ast.Starred):
        return _target_chains(t.value)
    return []


_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


class _Scoped(ast.NodeVisitor):
    """Walks the module knowing the qualname of the enclosing function (as modules.py names
    them: `train`, `Trainer.fit`, `main.<locals>.step`)."""

    def __init__(self, taint: ClockTaint) -> None:
        self.t = taint
        self.scopes: list[tuple[str, str]] = []
        self.fns: list[str | None] = [None]  # the enclosing function of each scope

    def qualname(self, name: str | None = None) -> str:
        return scope_qualname(self.scopes, name)

    @property
    def fn(self) -> str | None:
        return self.fns[-1]

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.on_class(node)
        for d in (*node.decorator_list, *node.bases, *(k.value for k in node.keywords)):
            self.visit(d)
        self.scopes.append(("class", node.name))
        self.fns.append(self.fn)
        for stmt in node.body:
            self.visit(stmt)
        self.fns.pop()
        self.scopes.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.on_function(node)
        for d in (*node.decorator_list, *node.args.defaults, *node.args.kw_defaults):
            if d is not None:
                self.visit(d)
        self.fns.append(self.qualname(node.name))
        self.scopes.append(("def", node.name))
        for stmt in node.body:
            self.visit(stmt)
        self.scopes.pop()
        self.fns.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def on_class(self, node: ast.ClassDef) -> None:
        pass

    def on_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        pass


class _Declare(_Scoped):
    """First pass: the functions and classes, each function's local names."""

    def on_class(self, node: ast.ClassDef) -> None:
        self.t.classes.add(self.qualname(node.name))
        self._bind(node.name)

    def on_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._bind(node.name)
        a = node.args
        params = [p.arg for p in (*a.posonlyargs, *a.args)]
        is_method = bool(self.scopes) and self.scopes[-1][0] == "class"
        q = self.qualname(node.name)
        f = _Fn(q, params, [p.arg for p in a.kwonlyargs], is_method, self.fn)
        f.locals.update(params, f.kwonly)
        f.locals.update(p.arg for p in (a.vararg, a.kwarg) if p is not None)
        static = any(dotted(d) == ("staticmethod",) for d in node.decorator_list)
        if is_method and params and not static:
            f.self_name = params[0]
            f.cls = q.rsplit(".", 1)[0]
        self.t.fns[q] = f

    def _bind(self, name: str) -> None:
        fn = self.fn
        if fn is not None:
            self.t.fns[fn].locals.add(name)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self._bind(node.id)

    def visit_Global(self, node: ast.Global | ast.Nonlocal) -> None:
        fn = self.fn
        if fn is not None:
            self.t.fns[fn].declared_global.update(node.names)

    visit_Nonlocal = visit_Global  # resolved further out: not this function's own

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        for alias in node.names:
            self._bind((alias.asname or alias.name).split(".")[0])

    visit_ImportFrom = visit_Import

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name:
            self._bind(node.name)
        self.generic_visit(node)


class _Collect(_Scoped):
    """Second pass: the facts, and the log calls with their positions."""

    def __init__(self, taint: ClockTaint) -> None:
        super().__init__(taint)
        self.in_log = 0

    def fact(self, targets: list[Chain], value: ast.AST | None) -> None:
        if value is None or not targets:
            return
        fn = self.fn
        reads, calls, source = self.t.scan(fn, value)
        self.t.facts.append(_Fact([(fn, c) for c in targets], reads, calls, source))

    def visit_Assign(self, node: ast.Assign) -> None:
        targets = [c for t in node.targets for c in _target_chains(t)]
        self.fact(targets, node.value)
        if isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name):
            cls = self.t.class_named(self.fn, node.value.func.id)
            if cls is not None:
                self.t._raw_instances.extend((self.fn, c, cls) for c in targets)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self.fact(_target_chains(node.target), node.value)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.fact(_target_chains(node.target), node.value)
        self.generic_visit(node)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.fact(_target_chains(node.target), node.value)
        self.generic_visit(node)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.fact(_target_chains(node.target), node.iter)
        self.generic_visit(node)

    visit_AsyncFor = visit_For

    def visit_comprehension(self, node: ast.comprehension) -> None:
        self.fact(_target_chains(node.target), node.iter)
        self.generic_visit(node)

    def visit_withitem(self, node: ast.withitem) -> None:
        if node.optional_vars is not None:
            self.fact(_target_chains(node.optional_vars), node.context_expr)
        self.generic_visit(node)

    def visit_Return(self, node: ast.Return) -> None:
        fn = self.fn
        if fn is not None and node.value is not None:
            reads, calls, source = self.t.scan(fn, node.value)
            self.t.facts.append(_Fact([(_RETURN, (fn,))], reads, calls, source))
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and _LOGGING_CLOCK.search(node.value):
            self.t.logging_clock = True

    def visit_Call(self, node: ast.Call) -> None:
        fn = self.fn
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in MUTATORS:
            targets = _target_chains(func.value)
            if targets and node.args:
                self.fact(targets, ast.Tuple(elts=list(node.args), ctx=ast.Load()))
        chain = dotted(func)
        if chain is not None and not self.in_log and is_log_chain(chain):
            self.t.log_calls.append(
                _LogCall(
                    node,
                    fn,
                    (node.lineno, self.t.column(node)),
                    node.end_lineno or node.lineno,
                )
            )
            self.in_log += 1
            self.generic_visit(node)
            self.in_log -= 1
        else:
            self.generic_visit(node)
        g = self.t.callee(fn, chain) if chain is not None else None
        if g is None:
            return
        params = list(g.params)
        if g.is_method and len(chain or ()) == 2 and params:  # self.m(...): self is bound
            params = params[1:]
        for i, arg in enumerate(node.args):
            if isinstance(arg, ast.Starred) or i >= len(params):
                break
            reads, calls, source = self.t.scan(fn, arg)
            self.t.facts.append(_Fact([(g.qualname, (params[i],))], reads, calls, source))
        for kw in node.keywords:
            if kw.arg is not None:
                reads, calls, source = self.t.scan(fn, kw.value)
                self.t.facts.append(_Fact([(g.qualname, (kw.arg,))], reads, calls, source))


# --- line shapes -------------------------------------------------------------------------


def _is_logging(call: ast.Call) -> bool:
    chain = dotted(call.func)
    return (
        chain is not None
        and len(chain) >= 2
        and chain[-1] in (*LOG_METHODS, "log")
        and chain[-2:] != ("florc", "log")
    )


def _literal(node: ast.AST | None) -> str | None:
    """The value of a plain (not formatted) string literal."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


class _Shaper:
    def __init__(self, taint: ClockTaint, fn: str | None, prefix: str | None) -> None:
        self.t = taint
        self.fn = fn
        self.prefix = prefix

    def value(self, *nodes: ast.AST) -> list[Part]:
        kind = None
        for n in nodes:
            kind = _kind(kind, self.t.kind_of(self.fn, n))
        return [["value", kind]]

    def call(self, call: ast.Call) -> list[list[Part]]:
        """The lines one log call prints, as shapes; [] when that cannot be told."""
        chain = dotted(call.func) or ()
        args = call.args
        keywords = {k.arg: k.value for k in call.keywords if k.arg is not None}
        if any(k.arg is None for k in call.keywords):
            return []
        if chain == ("print",):
            sep = " "
            if "sep" in keywords:
                lit = _literal(keywords["sep"])
                if lit is None:
                    return _lines(self.value(*args))
                sep = lit
            if "end" in keywords and _literal(keywords["end"]) != "\n":
                return []  # the line goes on with whatever is written next
            parts: list[Part] = []
            for i, arg in enumerate(args):
                if i:
                    parts.append(["text", sep])
                parts += self.value(arg) if isinstance(arg, ast.Starred) else self.expr(arg)
            return _lines(parts)
        if chain[-2:] == ("florc", "log"):
            if len(args) != 2:
                return []
            return [_merge([*self.expr(args[0]), ["text", "="], *self.value(args[1])])]
        if _is_logging(call):
            at = 1 if chain[-1] == "log" else 0  # logger.log(level, msg, *args)
            if len(args) <= at or any(isinstance(a, ast.Starred) for a in args):
                return []
            msg, operands = args[at], list(args[at + 1 :])
            head: list[Part] = [["value", self.prefix]]  # the handler's format: level, name, time
            fmt = _literal(msg)
            if operands and fmt is not None:
                body = self.percent(fmt, operands, msg)
            elif operands:
                body = self.value(msg, *operands)
            else:
                body = self.expr(msg)
            return _lines([*head, *body])
        return []  # writers and trackers print no lines

    def expr(self, node: ast.AST) -> list[Part]:
        lit = _literal(node)
        if lit is not None:
            return [["text", lit]]
        if isinstance(node, ast.JoinedStr):
            out: list[Part] = []
            for v in node.values:
                lit = _literal(v)
                out += [["text", lit]] if lit is not None else self.value(v)
            return out
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
            fmt = _literal(node.left)
            if fmt is not None:
                right = node.right
                if not isinstance(right, ast.Tuple):
                    return self.percent(fmt, [right], node)
                if not any(isinstance(e, ast.Starred) for e in right.elts):
                    return self.percent(fmt, list(right.elts), node)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "format"
        ):
            fmt = _literal(node.func.value)
            if fmt is not None:
                return self.format(fmt, node)
        return self.value(node)

    def percent(self, fmt: str, operands: Sequence[ast.AST], whole: ast.AST) -> list[Part]:
        """`"... %d ... %.2f" % (a, b)`: text and values in order."""
        specs = [m for m in _PERCENT.finditer(fmt) if m.group("conv") != "%"]
        if any(m.group("width") == "*" or m.group("prec") == "*" for m in specs):
            return self.value(whole)
        named = [m.group("name") for m in specs]
        mapping: dict[str, ast.AST] = {}
        if named and all(n is not None for n in named):
            if len(operands) != 1:
                return self.value(whole)
            if not isinstance(operands[0], ast.Dict):
                return self._spread(fmt, operands[0])
            for k, v in zip(operands[0].keys, operands[0].values):
                key = _literal(k)
                if key is None:
                    return self.value(whole)
                mapping[key] = v
        elif any(n is not None for n in named):
            return self.value(whole)
        elif len(specs) != len(operands):
            return self._spread(fmt, operands[0]) if len(operands) == 1 else self.value(whole)
        out: list[Part] = []
        pos = index = 0
        for m in _PERCENT.finditer(fmt):
            out.append(["text", fmt[pos : m.start()]])
            pos = m.end()
            if m.group("conv") == "%":
                out.append(["text", "%"])
                continue
            name = m.group("name")
            if name is not None:
                if name not in mapping:
                    return self.value(whole)
                out += self.value(mapping[name])
            else:
                out += self.value(operands[index])
                index += 1
        out.append(["text", fmt[pos:]])
        return out

    def _spread(self, fmt: str, operand: ast.AST) -> list[Part]:
        """One operand (a tuple or mapping held in a name) fills every conversion."""
        out: list[Part] = []
        pos = 0
        kind = self.value(operand)
        for m in _PERCENT.finditer(fmt):
            out.append(["text", fmt[pos : m.start()]])
            pos = m.end()
            out += [["text", "%"]] if m.group("conv") == "%" else kind
        out.append(["text", fmt[pos:]])
        return out

    def format(self, fmt: str, call: ast.Call) -> list[Part]:
        """`"... {} ... {name:.2f}".format(a, name=b)`."""
        positional = call.args
        keywords = {k.arg: k.value for k in call.keywords if k.arg is not None}
        if any(isinstance(a, ast.Starred) for a in positional) or len(keywords) != len(
            call.keywords
        ):
            return self.value(call)
        try:
            fields = list(string.Formatter().parse(fmt))
        except ValueError:
            return self.value(call)
        out: list[Part] = []
        auto = 0
        for text, name, spec, _conv in fields:
            out.append(["text", text])
            if name is None:
                continue
            if spec and "{" in spec:
                return self.value(call)
            base = re.split(r"[.\[]", name, maxsplit=1)[0]
            if base == "" or base.isdigit():
                index = auto if base == "" else int(base)
                auto += base == ""
                if index >= len(positional):
                    return self.value(call)
                out += self.value(positional[index])
            elif base in keywords:
                out += self.value(keywords[base])
            else:
                return self.value(call)
        return out


def _merge(parts: list[Part]) -> list[Part]:
    """Adjacent texts joined, adjacent values joined (a value next to a value has no border)."""
    out: list[Part] = []
    for p in parts:
        if p[0] == "text" and p[1] == "":
            continue
        if out and out[-1][0] == p[0]:
            if p[0] == "text":
                out[-1] = ["text", out[-1][1] + p[1]]
            else:
                out[-1] = ["value", _kind(out[-1][1], p[1])]
        else:
            out.append(list(p))
    return out


def _lines(parts: list[Part]) -> list[list[Part]]:
    """Split at the newlines the literal text holds: one shape per printed line."""
    lines: list[list[Part]] = [[]]
    for p in parts:
        if p[0] == "text" and "\n" in p[1]:
            pieces = p[1].split("\n")
            lines[-1].append(["text", pieces[0]])
            for piece in pieces[1:]:
                lines.append([["text", piece]])
        else:
            lines[-1].append(p)
    return [_merge(line) for line in lines]


def project_taints(modules: list[ModuleInfo]) -> dict[str, ClockTaint]:
    """Each module's taint analysis, with the clock attributes of the other modules' classes
    (a module is analysed again only when its text names one of them)."""
    taints = {m.relpath: ClockTaint(m) for m in modules}
    attrs = {rel: t.instance_attributes() for rel, t in taints.items()}
    for m in modules:
        foreign: dict[str, str] = {}
        for rel, names in attrs.items():
            if rel != m.relpath:
                foreign.update({a: k for a, k in names.items() if f".{a}" in m.source})
        if foreign:
            taints[m.relpath] = ClockTaint(m, foreign)
    return taints


def log_statement_shapes(taint: ClockTaint) -> dict[int, tuple[list[list[Part]], str]]:
    """id(log statement node) -> (line shapes, kind) for the log statements that print a value
    derived from a clock or unseeded randomness."""
    out = {}
    for ls in taint.info.log_statements:
        found = taint.statement_shapes(ls.line, ls.col, ls.end_line)
        if found is not None:
            out[id(ls.node)] = found
    return out
