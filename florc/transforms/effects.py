"""Side-effect analysis: what each loop may change, across the project's own functions.

The result for a loop is its *changeset*: access paths (`model`, `self.step`, `stats`) that the
loop may bind or mutate, plus the names it binds. The analysis over-approximates: a method call
may mutate its receiver and arguments, a call of an unknown callable may mutate its arguments and
reach any project function that escapes as a value. Where effects cannot be bounded at all
(`exec`, `del`, a `return` or `yield` out of the loop) the loop is marked *unbounded* and replay
re-executes it instead of restoring it: slower, never wrong.

Paths are tuples of names. A root starting with "$" is a function parameter (in summaries), a
root "@pkg.mod:name" is a global of another project module.

The analysis is bounded, so that it ends (and ends quickly) on every program:

- A path has at most MAX_PATH names, root included. A longer one is cut to its prefix, which
  stands for that object and everything reachable under it: the runtime captures and restores a
  changeset path as the whole object found there. Without the cut, a `forward` that calls the
  objects of a ModuleList (`for block in self.h: x = block(x)`) grows `self.h.h.h...` without end.
- Path sets are kept minimal (a path covered by a shorter prefix is dropped), so summaries only
  grow along a finite lattice and the fixpoint converges.
- A summary or a changeset wider than MAX_PATHS collapses to its roots (coarser, still sound).
- The fixpoint stops after MAX_ANALYSES_PER_FUNCTION analyses per function on average. Functions
  whose summaries were still changing then, and every function that reaches them, get an
  Unbounded reason, so the loops that call them re-execute at replay instead of being restored.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

import libcst as cst

from florc.transforms.modules import FunctionInfo, ModuleInfo
from florc.transforms.resolve import Imported, ProjectIndex, function_key
from florc.transforms.syntax import (
    BUILTIN_NAMES,
    PURE_BUILTINS,
    PURE_METHODS,
    RESERVED_PREFIX,
    UNBOUNDED_BUILTINS,
    chain_base,
    child_nodes,
    descendants,
    dotted,
    walk,
)

Path = tuple[str, ...]

# Four names, root included, tell apart the objects a training loop changes in practice:
# `model`, `self.model`, `self.state.epoch`, `trainer.model.encoder.weight` -> the encoder. Deeper
# distinctions only save restoring a little more of an object that is restored in place anyway.
MAX_PATH = 4
MAX_PATHS = 128  # per summary or changeset, after minimising; more collapse to their roots
MAX_REASONS = 8  # Unbounded reasons kept per summary (one is enough to re-execute)
MAX_ANALYSES_PER_FUNCTION = 25  # average budget of the fixpoint; a guard, rarely approached


def cut(path: Path) -> Path:
    """A path of at most MAX_PATH names: a longer one stands for its prefix's whole object."""
    return path if len(path) <= MAX_PATH else path[:MAX_PATH]


def minimal(paths: Iterable[Path]) -> set[Path]:
    """Drop paths covered by a shorter prefix (restoring `self` restores `self.step`)."""
    have = set(paths)
    return {p for p in have if not any(p[:i] in have for i in range(1, len(p)))}


def bounded(paths: Iterable[Path]) -> tuple[set[Path], bool]:
    """Minimal paths; more than MAX_PATHS collapse to their roots. Returns (paths, collapsed)."""
    out = minimal(paths)
    if len(out) <= MAX_PATHS:
        return out, False
    return {p[:1] for p in out}, True


@dataclass(frozen=True)
class Unbounded:
    relpath: str
    line: int
    col: int
    reason: str
    origin: str = ""  # for a reason inherited through a call: the first cause, with its position

    def __str__(self) -> str:
        return f"{self.relpath}:{self.line}:{self.col}: {self.reason}"

    def cause(self) -> str:
        return self.origin or str(self)


@dataclass
class Effects:
    mutated: set[Path] = field(default_factory=set)  # names rebound and objects changed in place
    changed_objects: set[Path] = field(default_factory=set)  # in-place changes (alias-closed)
    bound: set[str] = field(default_factory=set)
    iterated: set[Path] = field(default_factory=set)
    unbounded: list[Unbounded] = field(default_factory=list)
    callees: set[str] = field(default_factory=set)  # "relpath:qualname"
    declared: set[str] = field(default_factory=set)  # `global` / `nonlocal` names

    def copy(self) -> Effects:
        return Effects(
            set(self.mutated),
            set(self.changed_objects),
            set(self.bound),
            set(self.iterated),
            list(self.unbounded),
            set(self.callees),
            set(self.declared),
        )


@dataclass
class Summary:
    mutated: frozenset[Path] = frozenset()
    unbounded: tuple[Unbounded, ...] = ()

    def key(self) -> tuple[frozenset[Path], tuple[Unbounded, ...]]:
        return (self.mutated, self.unbounded)


class Project(ProjectIndex):
    """All analysed modules, with name resolution (ProjectIndex) and function summaries. The
    per-scope facts and walked regions it caches live as long as it does, not the process."""

    def __init__(self, modules: Sequence[ModuleInfo], max_analyses: int | None = None) -> None:
        super().__init__(modules)
        self.summaries: dict[str, Summary] = {k: Summary() for k in self.functions}
        self.escaping: set[str] = set()
        for m in modules:
            self.escaping |= _escaping_functions(self, m)
        self.scopes: dict[tuple[int, str], _Scope] = {}
        self.plans: dict[tuple[int, str, tuple[int, ...], bool], _Plan] = {}
        self.version = 0  # bumped whenever a summary changes
        self._dynamic: _DynamicSummary | None = None
        self.analyses = 0  # function bodies analysed by the fixpoint (a measure of its work)
        budget = MAX_ANALYSES_PER_FUNCTION * len(self.functions) + len(self.functions)
        self._compute_summaries(budget if max_analyses is None else max_analyses)

    # summaries -------------------------------------------------------------
    def _compute_summaries(self, budget: int) -> None:
        """Summaries by a worklist fixpoint: a function is analysed again when a callee's
        summary changes. Paths are cut and minimised, so this converges; the budget is a guard."""
        queue = deque(self.functions)
        queued = set(queue)
        dependents: dict[str, set[str]] = {}
        while queue and self.analyses < budget:
            key = queue.popleft()
            queued.discard(key)
            self.analyses += 1
            module, fn = self.functions[key]
            eff = analyse_region(self, module, fn.qualname, fn.node.body.body, is_loop=False)
            for callee in eff.callees:
                dependents.setdefault(callee, set()).add(key)
            new = _summarise(fn, eff)
            if new.key() != self.summaries[key].key():
                self.summaries[key] = new
                self.version += 1
                for d in sorted(dependents.get(key, ())):
                    if d not in queued:
                        queue.append(d)
                        queued.add(d)
        if queue:
            self._not_converged(set(queue), dependents)

    def _not_converged(self, pending: set[str], dependents: dict[str, set[str]]) -> None:
        """Sound when the budget ran out: the summaries still changing, and those of every
        function that reaches them, may miss effects; mark them all unbounded."""
        reach = set(pending)
        todo = list(pending)
        while todo:
            for d in dependents.get(todo.pop(), ()):
                if d not in reach:
                    reach.add(d)
                    todo.append(d)
        for key in reach:
            module, fn = self.functions[key]
            line, col = module.position(fn.node)
            which = "its effects" if key in pending else "the effects of a function it calls"
            reason = (
                f"analysis did not converge: {which} were still changing after "
                f"{self.analyses} analyses (the limit)"
            )
            old = self.summaries[key]
            u = Unbounded(module.relpath, line, col, reason)
            self.summaries[key] = Summary(old.mutated, (u, *old.unbounded)[:MAX_REASONS])
        self.version += 1

    def dynamic_summary(self) -> _DynamicSummary:
        """What a call of an unknown callable may do: any escaping function, any project
        `forward` or `__call__`, merged once per version of the summaries."""
        if self._dynamic is None or self._dynamic.version != self.version:
            self._dynamic = _DynamicSummary(self)
        return self._dynamic

    def scope(self, module: ModuleInfo, scope: str) -> _Scope:
        key = (id(module), scope)
        sc = self.scopes.get(key)
        if sc is None:
            sc = self.scopes[key] = _build_scope(self, module, scope)
        return sc

    def loop_effects(self, module: ModuleInfo, scope: str, loop: cst.CSTNode) -> Effects:
        return analyse_region(self, module, scope, [loop], is_loop=True)


class _DynamicSummary:
    """The union of the summaries a dynamic call applies, split by what their paths start at:
    the receiver (`self` of a forward/__call__), any argument, or a global of some module."""

    def __init__(self, project: Project) -> None:
        self.version = project.version
        self.keys: list[str] = []
        self_rests: set[Path] = set()
        arg_rests: set[Path] = set()
        self.globals: set[tuple[str, Path]] = set()  # (defining module name, path)
        self.reasons: list[tuple[str, Unbounded]] = []
        seen: set[str] = set()
        calls = [(k, False) for k in sorted(project.escaping)]
        for method in ("forward", "__call__"):
            calls += [(k, True) for k in project.by_method_name.get(method, [])]
        for key, as_method in calls:
            if key not in seen:
                seen.add(key)
                self.keys.append(key)
            module, fn = project.functions[key]
            summary = project.summaries[key]
            self_root = "$" + fn.params[0] if as_method and fn.is_method and fn.params else None
            for path in summary.mutated:
                root = path[0]
                if root == self_root:
                    self_rests.add(path[1:])
                elif root.startswith("$"):
                    arg_rests.add(path[1:])
                else:
                    self.globals.add((module.module_name, path))
            self.reasons += [(fn.qualname, u) for u in summary.unbounded]
        self.self_rests = minimal(self_rests)
        self.arg_rests = minimal(arg_rests)
        self.self_or_arg_rests = minimal(self_rests | arg_rests)
        self.reasons = list(dict.fromkeys(self.reasons))


def _summarise(fn: FunctionInfo, eff: Effects) -> Summary:
    params = set(fn.params)
    out: set[Path] = set()
    for path in eff.mutated:
        root = path[0]
        if root in params:
            out.add(("$" + root, *path[1:]))
        elif root not in eff.bound or root in eff.declared or root.startswith("@"):
            out.add(path)  # a global, or a variable of an enclosing function
    paths, _ = bounded(out)
    reasons = tuple(dict.fromkeys(eff.unbounded))[:MAX_REASONS]
    return Summary(frozenset(paths), reasons)


def _escaping_functions(project: Project, module: ModuleInfo) -> set[str]:
    """Project functions referenced as values: callbacks, hooks, closures passed around."""
    out: set[str] = set()
    by_name: dict[str, list[FunctionInfo]] = {}
    for fn in module.functions.values():
        by_name.setdefault(fn.name, []).append(fn)

    call_funcs: set[int] = set()
    for node in descendants(module.tree):
        if isinstance(node, cst.Call):
            call_funcs.add(id(node.func))  # preorder: a Call comes before its func
        elif isinstance(node, cst.Name):
            if id(node) in call_funcs:
                continue
            for fn in by_name.get(node.value, ()):
                if fn.node.name is not node:
                    out.add(function_key(module, fn.qualname))
        elif isinstance(node, cst.Attribute):
            # bound methods passed as values: `callbacks=[self.on_epoch]`
            if id(node) in call_funcs:
                continue
            for key in project.by_method_name.get(node.attr.value, []):
                out.add(key)
    return out


class _Scope:
    """Per-scope facts: which names alias which paths."""

    def __init__(self, project: Project, module: ModuleInfo, scope: str) -> None:
        self.project, self.module, self.scope = project, module, scope
        self.aliases: dict[str, set[Path]] = {}
        self._paths: dict[int, frozenset[Path]] = {}  # id(expr) -> paths (the tree outlives us)
        self._roots: dict[str, bool] = {}

    def is_state_root(self, name: str) -> bool:
        known = self._roots.get(name)
        if known is None:
            known = self._roots[name] = self._is_state_root(name)
        return known

    def _is_state_root(self, name: str) -> bool:
        if name.startswith(RESERVED_PREFIX):
            return False
        if self.project.is_library_name(self.module, name):
            return False  # a library module or class: its own state (RNGs) is captured apart
        if name in BUILTIN_NAMES and name not in self.module.imports:
            return False
        return not self.project.is_project_name(self.module, self.scope, name)

    def paths(self, expr: cst.CSTNode) -> frozenset[Path]:
        """Access paths whose objects the value of expr may alias or be derived from."""
        known = self._paths.get(id(expr))
        if known is None:
            known = self._paths[id(expr)] = frozenset(self._compute_paths(expr))
        return known

    def _compute_paths(self, expr: cst.CSTNode) -> set[Path]:
        if isinstance(expr, cst.BaseExpression):
            chain = dotted(expr)
            if chain is not None:
                return {cut(chain)} if self.is_state_root(chain[0]) else set()
        if isinstance(expr, cst.Attribute):
            return set(self.paths(expr.value))
        if isinstance(expr, cst.Subscript):
            return set(self.paths(expr.value))
        if isinstance(expr, cst.Call):
            out = set(
                self.paths(expr.func.value)
                if isinstance(expr.func, cst.Attribute)
                else self.paths(expr.func)
            )
            for arg in expr.args:
                out |= self.paths(arg.value)
            return out
        if isinstance(expr, (cst.Lambda, cst.FunctionDef)):
            return set()
        out = set()
        for child in child_nodes(expr):
            out |= self.paths(child)
        return out

    def close_aliases(self, paths: Iterable[Path]) -> set[Path]:
        """The paths and every path their roots alias (`node = node.next` cuts, not loops)."""
        out: set[Path] = set()
        todo = list(minimal(paths))
        while todo:
            p = todo.pop()
            if p in out:
                continue
            out.add(p)
            for alias in self.aliases.get(p[0], ()):
                todo.append(cut(alias + p[1:]))
        return out


Binding = tuple[cst.BaseExpression, cst.CSTNode]


def _bindings(
    stmt_list: Sequence[cst.CSTNode], loops: list[Binding] | None = None
) -> list[Binding]:
    """(target, value) pairs for every binding under the statements, nested defs excluded.

    `for` loops' (target, iterable) pairs are also appended to `loops` when given."""
    out: list[Binding] = []

    def prune(node: cst.CSTNode) -> bool:
        return False

    def assign(node: cst.Assign) -> None:
        for t in node.targets:
            out.append((t.target, node.value))

    def ann_assign(node: cst.AnnAssign) -> None:
        if node.value is not None:
            out.append((node.target, node.value))

    def aug_assign(node: cst.AugAssign | cst.NamedExpr) -> None:
        out.append((node.target, node.value))

    def for_(node: cst.For) -> None:
        out.append((node.target, node.iter))
        if loops is not None:
            loops.append((node.target, node.iter))

    def with_item(node: cst.WithItem) -> None:
        if node.asname is not None:
            out.append((node.asname.name, node.item))

    hooks: dict[str, Callable[[Any], bool | None]] = {
        "FunctionDef": prune,
        "ClassDef": prune,
        "Lambda": prune,
        "Assign": assign,
        "AnnAssign": ann_assign,
        "AugAssign": aug_assign,
        "NamedExpr": aug_assign,
        "For": for_,
        "WithItem": with_item,
    }
    for s in stmt_list:
        walk(s, hooks)
    return out


def _target_names(target: cst.CSTNode) -> list[str]:
    if isinstance(target, cst.Name):
        return [target.value]
    if isinstance(target, (cst.Tuple, cst.List)):
        return [n for e in target.elements for n in _target_names(e.value)]
    if isinstance(target, cst.StarredElement):
        return _target_names(target.value)
    return []


def _build_scope(project: Project, module: ModuleInfo, scope: str) -> _Scope:
    sc = _Scope(project, module, scope)
    body: Sequence[cst.CSTNode]
    if scope == "<module>":
        body = module.tree.body
    else:
        body = module.functions[scope].node.body.body
    loops: list[Binding] = []
    bindings = _bindings(body, loops)
    loaders = _batching_loaders(project, module, bindings)
    over_loaders = {id(target) for target, value in loops if _iterates(value, loaders)}
    for target, value in bindings:
        if id(target) in over_loaders:
            continue  # the batches a DataLoader collates are new tensors, not views of its data
        vpaths = sc.paths(value)
        for name in _target_names(target):
            if vpaths:
                sc.aliases.setdefault(name, set()).update(vpaths)
    return sc


ITERATION_WRAPPERS = {"enumerate", "tqdm", "iter"}


def _batching_loaders(project: Project, module: ModuleInfo, bindings: list[Binding]) -> set[str]:
    """Names bound only to `torch.utils.data.DataLoader(...)` calls with automatic batching.

    Iterating such a loader yields batches that its collate function builds anew (a stack of
    samples), so a loop variable over it does not alias the dataset. `batch_size=None` turns
    batching off (samples may then be views of the dataset's tensors): such loaders are left out.
    """
    verdict: dict[str, bool] = {}
    for target, value in bindings:
        for name in _target_names(target):
            ok = (
                isinstance(target, cst.Name)
                and isinstance(value, cst.Call)
                and _is_library_dataloader(project, module, value.func)
                and not any(
                    a.keyword is not None
                    and a.keyword.value == "batch_size"
                    and isinstance(a.value, cst.Name)
                    and a.value.value == "None"
                    for a in value.args
                )
            )
            verdict[name] = verdict.get(name, True) and ok
    return {name for name, ok in verdict.items() if ok}


def _is_library_dataloader(project: Project, module: ModuleInfo, func: cst.BaseExpression) -> bool:
    chain = dotted(func)
    return (
        chain is not None
        and chain[-1] == "DataLoader"
        and project.is_library_name(module, chain[0])
    )


def _iterates(value: cst.CSTNode, loaders: set[str]) -> bool:
    """`for ... in loader`, `enumerate(loader)`, `tqdm(loader)`: the value iterates a loader."""
    if isinstance(value, cst.Call) and value.args:
        chain = dotted(value.func)
        if chain is not None and chain[-1] in ITERATION_WRAPPERS:
            value = value.args[0].value
    return isinstance(value, cst.Name) and value.value in loaders


def analyse_region(
    project: Project,
    module: ModuleInfo,
    scope: str,
    statements: Sequence[cst.CSTNode],
    *,
    is_loop: bool,
) -> Effects:
    sc = project.scope(module, scope)
    key = (id(module), scope, tuple(id(s) for s in statements), is_loop)
    plan = project.plans.get(key)
    if plan is None:
        plan = project.plans[key] = _Plan(project, module, sc, statements, is_loop)
    eff = plan.apply()
    # changing an object in place changes whatever aliases it; rebinding a name does not
    eff.mutated = {p for p in eff.mutated if len(p) == 1 and p[0] in eff.bound}
    eff.mutated |= sc.close_aliases(eff.changed_objects)
    eff.iterated = minimal(sc.close_aliases(eff.iterated) - eff.mutated)
    eff.mutated, collapsed = bounded(eff.mutated)
    if collapsed and is_loop and len(eff.mutated) > MAX_PATHS:
        line, col = module.position(statements[0])
        reason = (
            f"the loop may change {len(eff.mutated)} variables, more than the analysis tracks "
            f"({MAX_PATHS})"
        )
        eff.unbounded.append(Unbounded(module.relpath, line, col, reason))
    eff.unbounded = _distinct_causes(eff.unbounded)
    return eff


def _distinct_causes(reasons: list[Unbounded]) -> list[Unbounded]:
    """One reason per first cause (a callback reached from every dynamic call would otherwise be
    reported once per call and per project forward)."""
    out: dict[str, Unbounded] = {}
    for u in reasons:
        out.setdefault(u.cause(), u)
    return list(out.values())


class _Plan:
    """A region walked once: the effects that do not depend on callee summaries, and the calls
    whose summaries are applied anew each time the fixpoint analyses the region."""

    def __init__(
        self,
        project: Project,
        module: ModuleInfo,
        sc: _Scope,
        statements: Sequence[cst.CSTNode],
        is_loop: bool,
    ) -> None:
        self.walker = _EffectWalker(project, module, sc, is_loop)
        hooks = {
            name[len("visit_") :]: getattr(self.walker, name)
            for name in dir(self.walker)
            if name.startswith("visit_")
        }
        for s in statements:
            walk(s, hooks)
        self.static = self.walker.effects
        self.calls = self.walker.deferred

    def apply(self) -> Effects:
        eff = self.static.copy()
        self.walker.effects = eff
        for method, args, kwargs in self.calls:
            method(*args, **kwargs)
        self.walker.effects = self.static
        return eff


class _EffectWalker:
    """visit_<Node> hooks (called by `walk`) that collect a region's effects. Calls of project
    code are deferred: `_apply` and `_dynamic_call` run when the plan is applied."""

    def __init__(self, project: Project, module: ModuleInfo, sc: _Scope, is_loop: bool) -> None:
        self.project, self.module, self.sc, self.is_loop = project, module, sc, is_loop
        self.effects = Effects()
        self.finder = module.finder
        self.deferred: list[tuple[Callable[..., None], tuple[Any, ...], dict[str, Any]]] = []

    def _defer(self, method: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        self.deferred.append((method, args, kwargs))

    def _unbounded(self, node: cst.CSTNode, reason: str) -> None:
        line, col = self.module.position(node)
        self.effects.unbounded.append(Unbounded(self.module.relpath, line, col, reason))

    # stores ------------------------------------------------------------------
    def _store(self, target: cst.BaseExpression) -> None:
        if isinstance(target, cst.Name):
            self.effects.bound.add(target.value)
            self.effects.mutated.add((target.value,))
        elif isinstance(target, (cst.Tuple, cst.List)):
            for e in target.elements:
                self._store(e.value)
        elif isinstance(target, cst.StarredElement):
            self._store(target.value)
        elif isinstance(target, cst.Attribute):
            chain = dotted(target)
            if chain is not None and self.sc.is_state_root(chain[0]):
                self.effects.changed_objects.add(cut(chain))
            elif chain is None:
                self.effects.changed_objects |= self.sc.paths(target.value)
        elif isinstance(target, cst.Subscript):
            self.effects.changed_objects |= self.sc.paths(target.value)

    # skip what is not training code ------------------------------------------
    def _is_log(self, node: cst.CSTNode) -> bool:
        return self.finder is not None and self.finder.is_log_statement(node)

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> bool:
        return not self._is_log(node)

    def visit_If(self, node: cst.If) -> bool:
        return not self._is_log(node)

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        self.effects.bound.add(node.name.value)
        return False

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        self.effects.bound.add(node.name.value)
        return False

    def visit_Lambda(self, node: cst.Lambda) -> bool:
        return False

    # bindings ----------------------------------------------------------------
    def visit_For(self, node: cst.For) -> bool:
        if self._is_log(node):
            return False
        self._store(node.target)
        self.effects.iterated |= self.sc.paths(node.iter)
        return True

    def visit_Assign(self, node: cst.Assign) -> None:
        for t in node.targets:
            self._store(t.target)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        if node.value is not None:
            self._store(node.target)

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        self._store(node.target)

    def visit_NamedExpr(self, node: cst.NamedExpr) -> None:
        self._store(node.target)

    def visit_WithItem(self, node: cst.WithItem) -> None:
        if node.asname is not None:
            self._store(node.asname.name)
        self.effects.changed_objects |= _nonmodule(self.sc.paths(chain_base(node.item)), self)

    def visit_Import(self, node: cst.Import) -> None:
        for alias in node.names:
            name = alias.asname.name if alias.asname else alias.name
            root = dotted(name)
            if root:
                self.effects.bound.add(root[0])

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        if isinstance(node.names, cst.ImportStar):
            self._unbounded(node, "`from ... import *` binds names the analysis cannot see")
            return
        for alias in node.names:
            name = alias.asname.name if alias.asname else alias.name
            if isinstance(name, cst.Name):
                self.effects.bound.add(name.value)

    def visit_Global(self, node: cst.Global) -> None:
        self.effects.declared.update(n.name.value for n in node.names)

    def visit_Nonlocal(self, node: cst.Nonlocal) -> None:
        self.effects.declared.update(n.name.value for n in node.names)

    def visit_Del(self, node: cst.Del) -> None:
        targets = (
            [e.value for e in node.target.elements]
            if isinstance(node.target, (cst.Tuple, cst.List))
            else [node.target]
        )
        for target in targets:
            if isinstance(target, cst.Subscript):  # `del rewards[:]`: the container changes
                self.effects.changed_objects |= self.sc.paths(target.value)
            else:
                self._unbounded(node, "`del` removes state that a restore could not remove")
                return

    # control flow out of the region --------------------------------------------
    def visit_Return(self, node: cst.Return) -> None:
        if self.is_loop:
            self._unbounded(node, "`return` inside the loop leaves it with a value")

    # A generator or coroutine function is not unbounded for its callers: its body's effects are
    # in its summary, and it runs while they iterate or await it.
    def visit_Yield(self, node: cst.Yield) -> None:
        if self.is_loop:
            self._unbounded(node, "`yield` inside the loop suspends it")

    def visit_Await(self, node: cst.Await) -> None:
        if self.is_loop:
            self._unbounded(node, "`await` inside the loop suspends it")

    # calls -----------------------------------------------------------------------
    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        args = [a for a in node.args]
        arg_paths: set[Path] = set()
        for a in args:
            arg_paths |= self.sc.paths(a.value)
            self._escaping_arg(a.value)
        if isinstance(func, cst.Name):
            name = func.value
            if name in UNBOUNDED_BUILTINS and name not in self.module.imports:
                self._unbounded(node, f"`{name}()` can change any variable")
                return
            if name in PURE_BUILTINS and name not in self.module.imports:
                return
            if name in ("next", "setattr", "delattr") and name not in self.module.imports:
                if args:
                    self.effects.changed_objects |= self.sc.paths(args[0].value)
                return
            targets = self.project.resolve_name(self.module, self.sc.scope, name)
            if targets:
                for key in targets:
                    self._defer(
                        self._apply,
                        key,
                        node,
                        receiver=None,
                        skip_self=key.endswith(".__init__"),
                        args=arg_paths,
                    )
                return
            if self.project.is_library_name(self.module, name) or self.project.is_project_name(
                self.module, self.sc.scope, name
            ):  # a class: a library one, or a project one without an __init__ of its own
                if not name[:1].isupper():
                    self.effects.changed_objects |= arg_paths
                return
            # a variable holding a callable: an object (`model(x)`) or a callback
            self._defer(
                self._dynamic_call,
                node,
                {(name,)} if self.sc.is_state_root(name) else set(),
                arg_paths,
            )
            return
        if isinstance(func, cst.Attribute):
            method = func.attr.value
            receiver = func.value
            chain = dotted(receiver)
            if chain is not None and len(chain) == 1:
                kind, other = self.project.imported(self.module, chain[0])
                if kind is Imported.PROJECT_MODULE and other is not None:  # utils.f(...)
                    for key in self.project.top_level(other, method):
                        self._defer(
                            self._apply,
                            key,
                            node,
                            receiver=None,
                            skip_self=key.endswith(".__init__"),
                            args=arg_paths,
                        )
                    return
                if kind is Imported.LIBRARY_MODULE:  # torch.x(...), np.y(...)
                    if not method[:1].isupper():
                        self.effects.changed_objects |= arg_paths
                    return
            if method in PURE_METHODS:
                return
            self.effects.changed_objects |= _nonmodule(self.sc.paths(receiver), self)
            self.effects.changed_objects |= arg_paths
            receiver_paths = self.sc.paths(receiver)
            for key in self.project.by_method_name.get(method, []):
                self._defer(self._apply, key, node, receiver=receiver_paths, args=arg_paths)
            return
        self._defer(self._dynamic_call, node, self.sc.paths(func), arg_paths)

    def _escaping_arg(self, value: cst.BaseExpression) -> None:
        """A project function passed as an argument may be called by the callee."""
        if isinstance(value, cst.Name):
            for key in self.project.resolve_name(self.module, self.sc.scope, value.value):
                if key in self.project.escaping:
                    self._defer(self._apply, key, None, receiver=None, all_args=True, at=value)

    def _dynamic_call(self, node: cst.Call, callee: set[Path], arg_paths: set[Path]) -> None:
        """A call of a variable: it may be any escaping function, or any project object's
        `forward`/`__call__` with the callee as `self`. Applies their merged summary."""
        changed = self.effects.changed_objects
        changed |= callee | arg_paths
        dyn = self.project.dynamic_summary()
        self.effects.callees.update(dyn.keys)
        if callee:
            for p in callee:
                changed.update(cut(p + rest) for rest in dyn.self_rests)
            arg_rests = dyn.arg_rests
        else:  # no receiver: `self` may be any argument
            arg_rests = dyn.self_or_arg_rests
        for p in arg_paths:
            changed.update(cut(p + rest) for rest in arg_rests)
        for module_name, path in dyn.globals:
            changed.add(self._global(module_name, path))
        for qualname, u in dyn.reasons:
            self._inherit(node, qualname, u)

    def _global(self, module_name: str, path: Path) -> Path:
        """A global path of a summary, as seen from this module."""
        if path[0].startswith("@") or module_name == self.module.module_name:
            return path
        return cut((f"@{module_name}:{path[0]}", *path[1:]))

    def _inherit(self, call: cst.CSTNode | None, qualname: str, u: Unbounded) -> None:
        line, col = self.module.position(call) if call is not None else (0, 0)
        reason = f"calls {qualname}, which cannot be bounded ({u.cause()})"
        self.effects.unbounded.append(Unbounded(self.module.relpath, line, col, reason, u.cause()))

    def _apply(
        self,
        key: str,
        call: cst.Call | None,
        *,
        receiver: set[Path] | None,
        skip_self: bool = False,
        all_args: bool = False,
        args: set[Path] | None = None,
        at: cst.CSTNode | None = None,
    ) -> None:
        """Apply a callee's summary at a call. receiver: the paths `self` is bound to (a method
        call); args: the paths of all the call's arguments (computed here when not given)."""
        module, fn = self.project.functions[key]
        self.effects.callees.add(key)
        summary = self.project.summaries[key]
        for u in summary.unbounded:
            self._inherit(call if call is not None else at, fn.qualname, u)
        params = list(fn.params)
        bound_args: dict[str, AbstractSet[Path]] = {}
        every_arg: set[Path] = set()
        if call is not None:
            if args is None:
                for a in call.args:
                    every_arg |= self.sc.paths(a.value)
            else:
                every_arg = args
        if fn.is_method and params:
            self_name = params.pop(0)
            if receiver is not None:
                bound_args[self_name] = receiver
            elif not skip_self:
                bound_args[self_name] = every_arg
        conservative = all_args or fn.star_params or call is None or any(a.star for a in call.args)
        if call is not None and not conservative:
            pos = 0
            for a in call.args:
                if a.keyword is not None:
                    bound_args[a.keyword.value] = self.sc.paths(a.value)
                elif pos < len(params):
                    bound_args[params[pos]] = self.sc.paths(a.value)
                    pos += 1
        changed = self.effects.changed_objects
        for path in summary.mutated:
            root = path[0]
            if root.startswith("$"):
                name = root[1:]
                sources = (
                    every_arg
                    if conservative and name not in bound_args
                    else bound_args.get(name, set())
                )
                for p in sources:
                    changed.add(cut(p + path[1:]))
            else:
                changed.add(self._global(module.module_name, path))


def _nonmodule(paths: AbstractSet[Path], walker: _EffectWalker) -> set[Path]:
    """Drop receivers that are imported library modules (`torch`, `np.random`)."""
    out = set()
    for p in paths:
        kind, _ = walker.project.imported(walker.module, p[0])
        if kind is not Imported.LIBRARY_MODULE:
            out.add(p)
    return out
