"""Which loop is the main loop: the outermost loop, in execution order, that trains.

Rules, first match wins:

1. a loop marked `# florc: main-loop`;
2. the first loop reached from the script's top level (in execution order, following calls into
   the project's functions and methods, in any of its modules) that reaches a training step:
   `.backward(...)` (`loss.backward()`, `accelerator.backward(loss)`), an optimizer step
   (`opt.step()`, `opt.step(closure)` with a function or lambda, `scaler.step(optimizer)`),
   directly or through project calls. `env.step(action)` is not a training step;
3. when no loop trains and the script hands training to an installed framework
   (`trainer.fit(model)` of PyTorch Lightning, `trainer.train()` of transformers): the
   framework's epochs (rule "framework") when florc drives that framework, else no main loop,
   and the framework call is named;
4. fallback: the first loop that has a nested loop (directly or through project calls).

A data-loading or tokenizing loop never trains, so it can only be chosen by the fallback.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import libcst as cst

from florc.contract import possessive
from florc.transforms.modules import LoopInfo, ModuleInfo
from florc.transforms.resolve import ProjectIndex
from florc.transforms.syntax import dotted, scope_qualname, source_children, source_preorder

TRAINING_STEP = "a training step (`.backward()` or an optimizer step)"


@dataclass(frozen=True)
class Witness:
    """Why a region qualifies: what it reaches, where, and through which project functions."""

    what: str  # "loss.backward()", "a nested loop"
    relpath: str
    line: int
    col: int
    via: tuple[str, ...] = ()  # qualnames of the project functions in between

    def text(self) -> str:
        out = f"{self.what} at {self.relpath}:{self.line}:{self.col}"
        if self.via:
            out += " through " + " → ".join(f"{q}()" for q in self.via)
        return out


@dataclass(frozen=True)
class FrameworkCall:
    """A call that hands the training loop to an installed package."""

    framework: str  # "PyTorch Lightning"
    code: str  # "trainer.fit(model)"
    relpath: str
    line: int
    col: int

    def where(self) -> str:
        return f"{self.relpath}:{self.line}:{self.col}"


@dataclass
class MainLoop:
    loop: LoopInfo | None
    rule: str  # "pragma" | "trains" | "fallback" | "" (none found)
    reason: str
    framework: FrameworkCall | None = None


def find_main_loop(project: ProjectIndex, script: ModuleInfo) -> MainLoop:
    for m in project.modules.values():
        for lp in m.loops:
            if lp.main_pragma:
                return MainLoop(lp, "pragma", "marked `# florc: main-loop`")
    trains = _Reach(project, _direct_training_step)
    found = _search(project, script, trains.region)
    if found is not None:
        lp, why = found
        return MainLoop(lp, "trains", f"the outermost loop that trains: it reaches {why.text()}")
    framework = find_framework_call(project, script)
    if framework is not None and framework.framework in DRIVEN:
        return MainLoop(
            None,
            "framework",
            f"{possessive(framework.framework)} epochs: {framework.code} at {framework.where()}",
            framework,
        )
    if framework is not None:
        return MainLoop(
            None,
            "",
            f"the training loop is inside {framework.framework}: {framework.code} at "
            f"{framework.where()}; florc cannot checkpoint a loop inside an installed package yet",
            framework,
        )
    nested = _Reach(project, _direct_nested_loop)
    found = _search(project, script, nested.region)
    if found is not None:
        lp, why = found
        return MainLoop(
            lp,
            "fallback",
            f"fallback: no loop reaches {TRAINING_STEP}; the outermost loop with a nested loop "
            f"({why.text()})",
        )
    return MainLoop(
        None,
        "",
        f"no loop reaches {TRAINING_STEP} or has a nested loop; mark the loop whose iterations "
        "are epochs with a `# florc: main-loop` comment",
    )


# --- what a region reaches ---------------------------------------------------------------


def _code(module: ModuleInfo, node: cst.CSTNode, limit: int = 60) -> str:
    text = " ".join(module.tree.code_for_node(node).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# optimizer, optimizerD, d_optim, opt, opt_g, g_opt, optD -- not options, adopt, optional
_OPTIMIZER = re.compile(r"[Oo]ptim|(^|_)[Oo]pt($|_|\d|[A-Z])")


def is_training_step(project: ProjectIndex, module: ModuleInfo, scope: str, call: cst.Call) -> bool:
    """`x.backward(...)`, `opt.step()`, `opt.step(closure)`, `scaler.step(optimizer)`."""
    func = call.func
    if not isinstance(func, cst.Attribute):
        return False
    name = func.attr.value
    if name in ("backward", "optimizer_step"):
        return True
    if name != "step":
        return False
    receiver = dotted(func.value)
    if receiver and "sched" in receiver[-1].lower():
        return False  # a learning-rate schedule steps beside training, it does not train
    if not call.args:
        return True
    if any(a.keyword is not None and a.keyword.value == "closure" for a in call.args):
        return True
    positional = [a.value for a in call.args if a.keyword is None and not a.star]
    if len(positional) != 1 or len(call.args) != 1:
        return False
    arg = positional[0]
    if isinstance(arg, cst.Lambda):
        return True  # opt.step(lambda: ...): the LBFGS shape
    if isinstance(arg, cst.Name) and any(
        not key.endswith(".__init__") for key in project.resolve_name(module, scope, arg.value)
    ):
        return True  # opt.step(closure) with a function of the project
    argument = dotted(arg)
    if argument and "closure" in argument[-1].lower():
        return True  # opt.step(self.closure)
    if receiver and "scaler" in receiver[-1].lower():
        return True  # scaler.step(optimizer)
    return bool(argument and _OPTIMIZER.search(argument[-1]))


def _direct_training_step(
    project: ProjectIndex, module: ModuleInfo, scope: str, region: cst.CSTNode
) -> Witness | None:
    for call in calls_in(region):
        if is_training_step(project, module, scope, call):
            line, col = module.position(call)
            return Witness(_code(module, call), module.relpath, line, col)
    return None


def _direct_nested_loop(
    project: ProjectIndex, module: ModuleInfo, scope: str, region: cst.CSTNode
) -> Witness | None:
    for node in _walk(region):
        if node is not region and isinstance(node, (cst.For, cst.While)):
            line, col = module.position(node)
            return Witness("a nested loop", module.relpath, line, col)
    return None


Direct = Callable[[ProjectIndex, ModuleInfo, str, cst.CSTNode], Witness | None]


class _Reach:
    """Whether a region reaches what `direct` finds, itself or through project calls; each
    function's answer is computed once for the whole project (a fixpoint over the call graph)."""

    def __init__(self, project: ProjectIndex, direct: Direct) -> None:
        self.project, self.direct = project, direct
        self._functions: dict[str, Witness | None] | None = None

    def _solve(self) -> dict[str, Witness | None]:
        direct: dict[str, Witness | None] = {}
        callees: dict[str, list[str]] = {}
        for key, (module, fn) in self.project.functions.items():
            direct[key] = self.direct(self.project, module, fn.qualname, fn.node.body)
            callees[key] = [
                target
                for call in calls_in(fn.node.body)
                for target in self.project.call_targets(module, fn.qualname, call)
            ]
        found = {k: w for k, w in direct.items() if w is not None}
        changed = True
        while changed:
            changed = False
            for key in self.project.functions:
                if key in found:
                    continue
                for target in callees[key]:
                    w = found.get(target)
                    if w is not None:
                        qual = self.project.functions[target][1].qualname
                        found[key] = Witness(w.what, w.relpath, w.line, w.col, (qual, *w.via))
                        changed = True
                        break
        return {k: found.get(k) for k in self.project.functions}

    def function(self, key: str) -> Witness | None:
        if self._functions is None:
            self._functions = self._solve()
        return self._functions.get(key)

    def region(self, module: ModuleInfo, scope: str, node: cst.CSTNode) -> Witness | None:
        w = self.direct(self.project, module, scope, node)
        if w is not None:
            return w
        for call in calls_in(node):
            for key in self.project.call_targets(module, scope, call):
                w = self.function(key)
                if w is not None:
                    qual = self.project.functions[key][1].qualname
                    return Witness(w.what, w.relpath, w.line, w.col, (qual, *w.via))
        return None


# --- the search in execution order ------------------------------------------------------


def _search(
    project: ProjectIndex,
    script: ModuleInfo,
    qualifies: Callable[[ModuleInfo, str, cst.CSTNode], Witness | None],
) -> tuple[LoopInfo, Witness] | None:
    """The first loop, in execution order from the script's top level, that qualifies. A loop
    that does not qualify is not entered: nothing inside it can qualify either."""
    visited: set[str] = set()

    def search(
        module: ModuleInfo, scope: str, stmts: Sequence[cst.CSTNode]
    ) -> tuple[LoopInfo, Witness] | None:
        for stmt in stmts:
            for node in _preorder(stmt):
                if isinstance(node, (cst.For, cst.While)):
                    lp = module.loop_by_node(node)
                    if lp is not None:
                        why = qualifies(module, scope, node)
                        if why is not None:
                            return lp, why
                if isinstance(node, cst.Call):
                    for key in project.call_targets(module, scope, node, passed=True):
                        if key in visited:
                            continue
                        visited.add(key)
                        m2, fn = project.functions[key]
                        found = search(m2, fn.qualname, list(fn.node.body.body))
                        if found is not None:
                            return found
        return None

    return search(script, "<module>", list(script.tree.body))


_SCOPES = (cst.FunctionDef, cst.ClassDef, cst.Lambda)


def _preorder(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """Nodes in source order; does not enter function or class bodies or loops (returned whole)."""
    return source_preorder(node, (*_SCOPES, cst.For, cst.While))


def _walk(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """Nodes in source order, not entering nested function or class bodies or lambdas."""
    stack = [node]
    while stack:
        cur = stack.pop()
        yield cur
        kids = [c for c in source_children(cur) if not isinstance(c, _SCOPES)]
        kids.reverse()
        stack.extend(kids)


def calls_in(node: cst.CSTNode) -> Iterator[cst.Call]:
    """Calls in source order, not inside nested function or class bodies or lambdas."""
    for n in _walk(node):
        if isinstance(n, cst.Call):
            yield n


# --- training inside an installed framework ---------------------------------------------


@dataclass(frozen=True)
class _Framework:
    name: str
    packages: tuple[str, ...]  # top-level import names
    methods: tuple[str, ...]  # `receiver.method(...)` that runs the training loop
    entries: tuple[str, ...] = ()  # calls that train by themselves (`LightningCLI(Model)`)
    loose: str = "."  # receiver names accepted when its construction is not seen


FRAMEWORKS = (
    _Framework(
        "PyTorch Lightning",
        ("pytorch_lightning", "lightning"),
        ("fit",),
        ("LightningCLI",),
        "trainer",
    ),
    _Framework("Hugging Face transformers", ("transformers", "trl"), ("train",), (), "trainer"),
    _Framework("SetFit", ("setfit",), ("train",), (), "trainer"),
    _Framework("Keras", ("keras", "tensorflow", "tf_keras"), ("fit", "fit_generator")),
    _Framework("skorch", ("skorch",), ("fit", "partial_fit")),
    _Framework("fastai", ("fastai",), ("fit", "fit_one_cycle", "fine_tune", "fit_flat_cos")),
    _Framework("PyTorch Ignite", ("ignite",), ("run",), (), "trainer|engine"),
)


# the frameworks whose epochs florc drives as its main loop (runtime/lightning.py,
# runtime/huggingface.py); contract.FRAMEWORK_MARKS gives each its main-loop id
DRIVEN = ("PyTorch Lightning", "Hugging Face transformers")


def scope_at(module: ModuleInfo, line: int) -> str:
    """The qualname of the innermost function or class whose body holds `line` ("<module>")."""
    return scope_qualname(_scopes_at(module, module.tree, line, []))


def _scopes_at(
    module: ModuleInfo, node: cst.CSTNode, line: int, scopes: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    for c in node.children:
        start, end = module.position(c)[0], module.end_line(c)
        if end and not start <= line <= end:
            continue
        if isinstance(c, (cst.FunctionDef, cst.ClassDef)):
            kind = "def" if isinstance(c, cst.FunctionDef) else "class"
            return _scopes_at(module, c.body, line, [*scopes, (kind, c.name.value)])
        found = _scopes_at(module, c, line, scopes)
        if found is not scopes:
            return found
    return scopes


def _imported_packages(module: ModuleInfo) -> set[str]:
    """Top-level names of the packages a module imports (star imports included)."""
    out: set[str] = set()
    for stmt in _walk(module.tree):
        if isinstance(stmt, cst.Import):
            for alias in stmt.names:
                chain = dotted(alias.name)
                if chain:
                    out.add(chain[0])
        elif isinstance(stmt, cst.ImportFrom) and not stmt.relative and stmt.module is not None:
            chain = dotted(stmt.module)
            if chain:
                out.add(chain[0])
    return out


def _from_framework(module: ModuleInfo, fw: _Framework, func: cst.BaseExpression) -> bool:
    """Whether a callee names something imported from the framework (`pl.Trainer`, `Trainer`)."""
    chain = dotted(func)
    if not chain:
        return False
    target = module.imports.get(chain[0])
    return target is not None and target.split(":")[0].split(".")[0] in fw.packages


def _framework_calls(
    module: ModuleInfo, frameworks: list[_Framework]
) -> Iterator[tuple[FrameworkCall, bool]]:
    """(call, precise): precise when the receiver is seen being built by the framework."""
    made: dict[str, _Framework] = {}  # receiver text -> framework whose object it holds
    for node in _walk_all(module.tree):
        if isinstance(node, (cst.Assign, cst.AnnAssign)) and isinstance(node.value, cst.Call):
            for fw in frameworks:
                if _from_framework(module, fw, node.value.func):
                    targets = (
                        [t.target for t in node.targets]
                        if isinstance(node, cst.Assign)
                        else [node.target]
                    )
                    for t in targets:
                        chain = dotted(t)
                        if chain:
                            made[".".join(chain)] = fw
    for node in _walk_all(module.tree):
        if not isinstance(node, cst.Call):
            continue
        line, col = module.position(node)
        for fw in frameworks:
            chain = dotted(node.func)
            if chain and chain[-1] in fw.entries and _from_framework(module, fw, node.func):
                yield FrameworkCall(fw.name, _code(module, node), module.relpath, line, col), True
            func = node.func
            if not isinstance(func, cst.Attribute) or func.attr.value not in fw.methods:
                continue
            recv = func.value
            if isinstance(recv, cst.Call) and _from_framework(module, fw, recv.func):
                precise = True
            else:
                chain = dotted(recv)
                key = ".".join(chain) if chain else ""
                precise = made.get(key) is fw
                if not precise and not (chain and re.search(fw.loose, chain[-1], re.IGNORECASE)):
                    continue
            yield FrameworkCall(fw.name, _code(module, node), module.relpath, line, col), precise


def _walk_all(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    return source_preorder(node)


def find_framework_call(project: ProjectIndex, script: ModuleInfo) -> FrameworkCall | None:
    """The first call (script first, then the other project modules) that hands training to an
    installed framework the project imports: one whose receiver was built by the framework wins
    over one recognised by its method and receiver name only."""
    loose: FrameworkCall | None = None
    modules = [script, *(m for m in project.modules.values() if m is not script)]
    for module in modules:
        imported = _imported_packages(module)
        frameworks = [fw for fw in FRAMEWORKS if imported & set(fw.packages)]
        if not frameworks:
            continue
        for call, precise in _framework_calls(module, frameworks):
            if precise:
                return call
            if loose is None:
                loose = call
    return loose
