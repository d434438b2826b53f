"""Side-effect analysis: what each loop may change, across the project's own functions.

The result for a loop is its *changeset*: access paths (`model`, `self.step`, `stats`) that the
loop may bind or mutate, plus the names it binds. The analysis over-approximates: a method call
may mutate its receiver and arguments, a call of an unknown callable may mutate its arguments and
reach any project function that escapes as a value. Where effects cannot be bounded at all
(`exec`, `del`, a `return` or `yield` out of the loop) the loop is marked *unbounded* and replay
re-executes it instead of restoring it: slower, never wrong.

Paths are tuples of names. A root starting with "$" is a function parameter (in summaries), a
root "@pkg.mod:name" is a global of another project module.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import libcst as cst

from florc.transforms.modules import FunctionInfo, ModuleInfo
from florc.transforms.syntax import (
    BUILTIN_NAMES,
    PURE_BUILTINS,
    PURE_METHODS,
    RESERVED_PREFIX,
    UNBOUNDED_BUILTINS,
    chain_base,
    dotted,
)

Path = tuple[str, ...]


@dataclass(frozen=True)
class Unbounded:
    relpath: str
    line: int
    col: int
    reason: str

    def __str__(self) -> str:
        return f"{self.relpath}:{self.line}:{self.col}: {self.reason}"


@dataclass
class Effects:
    mutated: set[Path] = field(default_factory=set)  # names rebound and objects changed in place
    changed_objects: set[Path] = field(default_factory=set)  # in-place changes (alias-closed)
    bound: set[str] = field(default_factory=set)
    iterated: set[Path] = field(default_factory=set)
    unbounded: list[Unbounded] = field(default_factory=list)
    callees: set[str] = field(default_factory=set)  # "relpath:qualname"
    declared: set[str] = field(default_factory=set)  # `global` / `nonlocal` names


@dataclass
class Summary:
    mutated: frozenset[Path] = frozenset()
    unbounded: tuple[Unbounded, ...] = ()

    def key(self) -> tuple[frozenset[Path], tuple[Unbounded, ...]]:
        return (self.mutated, self.unbounded)


def function_key(module: ModuleInfo, qualname: str) -> str:
    return f"{module.relpath}:{qualname}"


class Project:
    """All analysed modules, with name resolution and function summaries."""

    def __init__(self, modules: Sequence[ModuleInfo]) -> None:
        self.modules = {m.module_name: m for m in modules}
        self.functions: dict[str, tuple[ModuleInfo, FunctionInfo]] = {}
        self.by_method_name: dict[str, list[str]] = {}
        for m in modules:
            for q, fn in m.functions.items():
                key = function_key(m, q)
                self.functions[key] = (m, fn)
                if fn.is_method:
                    self.by_method_name.setdefault(fn.name, []).append(key)
        self.summaries: dict[str, Summary] = {k: Summary() for k in self.functions}
        self.escaping: set[str] = set()
        for m in modules:
            self.escaping |= _escaping_functions(self, m)
        self._compute_summaries()

    # resolution ------------------------------------------------------------
    def module_for_import(
        self, importer: ModuleInfo, target: str
    ) -> tuple[ModuleInfo | None, str | None]:
        """`imports` value -> (project module, attribute) when it names project code."""
        mod, _, attr = target.partition(":")
        if mod.startswith("."):
            level = len(mod) - len(mod.lstrip("."))
            pkg = importer.module_name.split(".")
            if importer.path.name != "__init__.py":
                pkg = pkg[:-1]
            pkg = pkg[: len(pkg) - (level - 1)] if level > 1 else pkg
            rest = mod.lstrip(".")
            mod = ".".join([*pkg, rest] if rest else pkg)
        if attr and f"{mod}.{attr}" in self.modules:
            return self.modules[f"{mod}.{attr}"], None
        return self.modules.get(mod), (attr or None)

    def resolve_name(self, module: ModuleInfo, scope: str, name: str) -> list[str]:
        """Project functions a plain-name call may reach (a class resolves to its __init__)."""
        prefix = scope
        while prefix and prefix != "<module>":
            q = f"{prefix}.<locals>.{name}"
            if q in module.functions:
                return [function_key(module, q)]
            prefix = prefix.rsplit(".<locals>.", 1)[0] if ".<locals>." in prefix else ""
        if name in module.functions:
            return [function_key(module, name)]
        if name in module.classes:
            return self._class_init(module, name)
        target = module.imports.get(name)
        if target is not None:
            other, attr = self.module_for_import(module, target)
            if other is not None and attr is not None:
                if attr in other.functions:
                    return [function_key(other, attr)]
                if attr in other.classes:
                    return self._class_init(other, attr)
        return []

    def _class_init(self, module: ModuleInfo, cls: str) -> list[str]:
        q = f"{cls}.__init__"
        return [function_key(module, q)] if q in module.functions else []

    def is_project_name(self, module: ModuleInfo, scope: str, name: str) -> bool:
        return bool(self.resolve_name(module, scope, name)) or name in module.classes

    def is_library_name(self, module: ModuleInfo, name: str) -> bool:
        target = module.imports.get(name)
        if target is None:
            return False
        other, _ = self.module_for_import(module, target)
        return other is None

    # summaries -------------------------------------------------------------
    def _compute_summaries(self) -> None:
        for _ in range(12):
            changed = False
            for key, (module, fn) in self.functions.items():
                eff = analyse_region(self, module, fn.qualname, fn.node.body.body, is_loop=False)
                new = _summarise(fn, eff)
                if new.key() != self.summaries[key].key():
                    self.summaries[key] = new
                    changed = True
            if not changed:
                return

    def loop_effects(self, module: ModuleInfo, scope: str, loop: cst.CSTNode) -> Effects:
        return analyse_region(self, module, scope, [loop], is_loop=True)


def _summarise(fn: FunctionInfo, eff: Effects) -> Summary:
    params = set(fn.params)
    out: set[Path] = set()
    for path in eff.mutated:
        root = path[0]
        if root in params:
            out.add(("$" + root, *path[1:]))
        elif root not in eff.bound or root in eff.declared or root.startswith("@"):
            out.add(path)  # a global, or a variable of an enclosing function
    return Summary(frozenset(out), tuple(eff.unbounded))


def _escaping_functions(project: Project, module: ModuleInfo) -> set[str]:
    """Project functions referenced as values: callbacks, hooks, closures passed around."""
    out: set[str] = set()

    class V(cst.CSTVisitor):
        def __init__(self) -> None:
            self.call_funcs: set[int] = set()

        def visit_Call(self, node: cst.Call) -> None:
            self.call_funcs.add(id(node.func))

        def visit_Name(self, node: cst.Name) -> None:
            if id(node) in self.call_funcs:
                return
            for fn in module.functions.values():
                if fn.name == node.value and fn.node.name is not node:
                    out.add(function_key(module, fn.qualname))

        def visit_Attribute(self, node: cst.Attribute) -> None:
            # bound methods passed as values: `callbacks=[self.on_epoch]`
            if id(node) in self.call_funcs:
                return
            for key in project.by_method_name.get(node.attr.value, []):
                out.add(key)

    module.tree.visit(V())
    return out


class _Scope:
    """Per-scope facts: which names alias which paths."""

    def __init__(self, project: Project, module: ModuleInfo, scope: str) -> None:
        self.project, self.module, self.scope = project, module, scope
        self.aliases: dict[str, set[Path]] = {}

    def is_state_root(self, name: str) -> bool:
        if name.startswith(RESERVED_PREFIX):
            return False
        target = self.module.imports.get(name)
        if target is not None:
            other, _ = self.project.module_for_import(self.module, target)
            if other is None:
                return False  # a library module or class: its own state (RNGs) is captured apart
        if name in BUILTIN_NAMES and name not in self.module.imports:
            return False
        return not self.project.is_project_name(self.module, self.scope, name)

    def paths(self, expr: cst.CSTNode) -> set[Path]:
        """Access paths whose objects the value of expr may alias or be derived from."""
        if isinstance(expr, cst.BaseExpression):
            chain = dotted(expr)
            if chain is not None:
                return {chain} if self.is_state_root(chain[0]) else set()
        if isinstance(expr, cst.Attribute):
            return self.paths(expr.value)
        if isinstance(expr, cst.Subscript):
            return self.paths(expr.value)
        if isinstance(expr, cst.Call):
            out = (
                self.paths(expr.func.value)
                if isinstance(expr.func, cst.Attribute)
                else self.paths(expr.func)
            )
            for arg in expr.args:
                out |= self.paths(arg.value)
            return out
        if isinstance(expr, (cst.Lambda, cst.FunctionDef)):
            return set()
        out: set[Path] = set()
        for child in expr.children:
            out |= self.paths(child)
        return out

    def close_aliases(self, paths: Iterable[Path]) -> set[Path]:
        out: set[Path] = set()
        todo = list(paths)
        while todo:
            p = todo.pop()
            if p in out:
                continue
            out.add(p)
            for alias in self.aliases.get(p[0], ()):
                todo.append(alias + p[1:])
        return out


Binding = tuple[cst.BaseExpression, cst.CSTNode]


def _bindings(
    stmt_list: Sequence[cst.CSTNode], loops: list[Binding] | None = None
) -> list[Binding]:
    """(target, value) pairs for every binding under the statements, nested defs excluded.

    `for` loops' (target, iterable) pairs are also appended to `loops` when given."""
    out: list[Binding] = []

    class V(cst.CSTVisitor):
        def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
            return False

        def visit_ClassDef(self, node: cst.ClassDef) -> bool:
            return False

        def visit_Lambda(self, node: cst.Lambda) -> bool:
            return False

        def visit_Assign(self, node: cst.Assign) -> None:
            for t in node.targets:
                out.append((t.target, node.value))

        def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
            if node.value is not None:
                out.append((node.target, node.value))

        def visit_AugAssign(self, node: cst.AugAssign) -> None:
            out.append((node.target, node.value))

        def visit_NamedExpr(self, node: cst.NamedExpr) -> None:
            out.append((node.target, node.value))

        def visit_For(self, node: cst.For) -> None:
            out.append((node.target, node.iter))
            if loops is not None:
                loops.append((node.target, node.iter))

        def visit_WithItem(self, node: cst.WithItem) -> None:
            if node.asname is not None:
                out.append((node.asname.name, node.item))

    for s in stmt_list:
        s.visit(V())
    return out


def _target_names(target: cst.CSTNode) -> list[str]:
    if isinstance(target, cst.Name):
        return [target.value]
    if isinstance(target, (cst.Tuple, cst.List)):
        return [n for e in target.elements for n in _target_names(e.value)]
    if isinstance(target, cst.StarredElement):
        return _target_names(target.value)
    return []


_SCOPE_CACHE: dict[tuple[int, str], _Scope] = {}


def _scope_for(project: Project, module: ModuleInfo, scope: str) -> _Scope:
    key = (id(module), scope)
    cached = _SCOPE_CACHE.get(key)
    if cached is not None and cached.project is project:
        return cached
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
    _SCOPE_CACHE[key] = sc
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
    sc = _scope_for(project, module, scope)
    walker = _EffectWalker(project, module, sc, is_loop)
    for s in statements:
        s.visit(walker)
    eff = walker.effects
    # changing an object in place changes whatever aliases it; rebinding a name does not
    eff.mutated = {p for p in eff.mutated if len(p) == 1 and p[0] in eff.bound}
    eff.mutated |= sc.close_aliases(eff.changed_objects)
    eff.iterated = sc.close_aliases(eff.iterated) - eff.mutated
    return eff


class _EffectWalker(cst.CSTVisitor):
    def __init__(self, project: Project, module: ModuleInfo, sc: _Scope, is_loop: bool) -> None:
        self.project, self.module, self.sc, self.is_loop = project, module, sc, is_loop
        self.effects = Effects()
        self.finder = module.finder
        self.depth = 0  # function nesting inside the region

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
                self.effects.changed_objects.add(chain)
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
            root = dotted(name)  # type: ignore[arg-type]
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

    def visit_Yield(self, node: cst.Yield) -> None:
        self._unbounded(node, "`yield` inside the loop suspends it")

    def visit_Await(self, node: cst.Await) -> None:
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
                    self._apply(key, node, receiver=None, skip_self=key.endswith(".__init__"))
                return
            if self.project.is_library_name(self.module, name) or name in self.module.classes:
                if not name[:1].isupper():
                    self.effects.changed_objects |= arg_paths
                return
            # a variable holding a callable: an object (`model(x)`) or a callback
            self._dynamic_call(node, {(name,)} if self.sc.is_state_root(name) else set(), arg_paths)
            return
        if isinstance(func, cst.Attribute):
            method = func.attr.value
            receiver = func.value
            chain = dotted(receiver)
            if chain is not None and len(chain) == 1 and chain[0] in self.module.imports:
                other, attr = self.project.module_for_import(
                    self.module, self.module.imports[chain[0]]
                )
                if other is not None and attr is None:
                    if method in other.functions:
                        self._apply(f"{other.relpath}:{method}", node, receiver=None)
                    elif method in other.classes:
                        for key in self.project._class_init(other, method):
                            self._apply(key, node, receiver=None, skip_self=True)
                    return
                if other is None and attr is None:  # a library module: torch.x(...), np.y(...)
                    if not method[:1].isupper():
                        self.effects.changed_objects |= arg_paths
                    return
            if method in PURE_METHODS:
                return
            self.effects.changed_objects |= _nonmodule(self.sc.paths(receiver), self)
            self.effects.changed_objects |= arg_paths
            for key in self.project.by_method_name.get(method, []):
                self._apply(key, node, receiver=receiver)
            return
        self._dynamic_call(node, self.sc.paths(func), arg_paths)

    def _escaping_arg(self, value: cst.BaseExpression) -> None:
        """A project function passed as an argument may be called by the callee."""
        if isinstance(value, cst.Name):
            for key in self.project.resolve_name(self.module, self.sc.scope, value.value):
                if key in self.project.escaping:
                    self._apply(key, None, receiver=None, all_args=True)

    def _dynamic_call(self, node: cst.Call, callee: set[Path], arg_paths: set[Path]) -> None:
        self.effects.changed_objects |= callee | arg_paths
        receiver = node.func if callee else None
        for key in self.project.escaping:
            self._apply(key, node, receiver=None, all_args=True)
        for method in ("forward", "__call__"):
            for key in self.project.by_method_name.get(method, []):
                self._apply(key, node, receiver=receiver, all_args=True)

    def _apply(
        self,
        key: str,
        call: cst.Call | None,
        *,
        receiver: cst.BaseExpression | None,
        skip_self: bool = False,
        all_args: bool = False,
    ) -> None:
        module, fn = self.project.functions[key]
        self.effects.callees.add(key)
        summary = self.project.summaries[key]
        for u in summary.unbounded:
            line, col = self.module.position(call) if call is not None else (0, 0)
            reason = f"calls {fn.qualname}, which cannot be bounded ({u})"
            self.effects.unbounded.append(Unbounded(self.module.relpath, line, col, reason))
        params = list(fn.params)
        bound_args: dict[str, set[Path]] = {}
        every_arg: set[Path] = set()
        if call is not None:
            for a in call.args:
                every_arg |= self.sc.paths(a.value)
        if fn.is_method and params:
            self_name = params.pop(0)
            if receiver is not None:
                bound_args[self_name] = self.sc.paths(receiver)
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
                    self.effects.changed_objects.add(p + path[1:])
            elif root.startswith("@") or module is self.module:
                self.effects.changed_objects.add(path)
            else:
                self.effects.changed_objects.add((f"@{module.module_name}:{root}", *path[1:]))


def _nonmodule(paths: set[Path], walker: _EffectWalker) -> set[Path]:
    """Drop receivers that are imported library modules (`torch`, `np.random`)."""
    out = set()
    for p in paths:
        target = walker.module.imports.get(p[0])
        if target is not None and ":" not in target:
            other, _ = walker.project.module_for_import(walker.module, target)
            if other is None:
                continue
        out.add(p)
    return out
