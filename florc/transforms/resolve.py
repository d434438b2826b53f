"""Name and call resolution: which of the project's own functions a name or a call may run.

The effect analysis (effects.py) applies the summaries of the functions a call may run, and the
main-loop search (mainloop.py) follows calls into them; both ask the same questions here, so
that a call resolves the same way in both.

A function is named by its *key*, "relpath:qualname" (`train.py:Trainer.fit`). Calling a class
runs its `__init__`, so a class resolves to the key of its `__init__` (none when it has no
`__init__` of its own). Resolution is by name and by import, without types: `x.fit()` on an
object of unknown type may be any project method named `fit`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

import libcst as cst

from florc.transforms.modules import FunctionInfo, ModuleInfo
from florc.transforms.syntax import dotted


def function_key(module: ModuleInfo, qualname: str) -> str:
    """The key of a function of module: "relpath:qualname"."""
    return f"{module.relpath}:{qualname}"


class Imported(enum.Enum):
    """What a name that an import binds stands for."""

    NOT_IMPORTED = enum.auto()  # no import binds the name
    PROJECT_MODULE = enum.auto()  # `import utils`, `from pkg import utils`: a project module
    LIBRARY_MODULE = enum.auto()  # `import torch`, `import numpy as np`
    PROJECT_OBJECT = enum.auto()  # `from model import GPT`: something a project module holds
    LIBRARY_OBJECT = enum.auto()  # `from torch import nn`: something an installed package holds


# keywords under which a call takes a function it will run: Thread(target=train), ...
FUNCTION_KEYWORDS = frozenset({"target", "func", "fn", "function", "main", "main_fn"})


class ProjectIndex:
    """The project's modules by import name, its functions by key and its methods by name, with
    name and call resolution over them. Cheap to build: the commit hook builds one per staged
    training script."""

    def __init__(self, modules: Sequence[ModuleInfo]) -> None:
        self.modules: dict[str, ModuleInfo] = {m.module_name: m for m in modules}
        self.functions: dict[str, tuple[ModuleInfo, FunctionInfo]] = {}
        self.by_method_name: dict[str, list[str]] = {}
        for m in modules:
            for q, fn in m.functions.items():
                key = function_key(m, q)
                self.functions[key] = (m, fn)
                if fn.is_method:
                    self.by_method_name.setdefault(fn.name, []).append(key)

    # imports -------------------------------------------------------------------------------
    def module_for_import(
        self, importer: ModuleInfo, target: str
    ) -> tuple[ModuleInfo | None, str | None]:
        """An `imports` value ("pkg.mod" or "pkg.mod:name", relative ones with leading dots) ->
        (the project module it names, the attribute taken from it); the module is None for an
        installed package."""
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

    def imported(self, module: ModuleInfo, name: str) -> tuple[Imported, ModuleInfo | None]:
        """What the import that binds name in module stands for, with the project module it
        names or takes the object from (None for an installed package)."""
        target = module.imports.get(name)
        if target is None:
            return Imported.NOT_IMPORTED, None
        other, attr = self.module_for_import(module, target)
        if attr is None:
            return (Imported.PROJECT_MODULE, other) if other else (Imported.LIBRARY_MODULE, None)
        return (Imported.PROJECT_OBJECT, other) if other else (Imported.LIBRARY_OBJECT, None)

    def is_library_name(self, module: ModuleInfo, name: str) -> bool:
        """Whether name is bound by an import from an installed package."""
        kind, _ = self.imported(module, name)
        return kind in (Imported.LIBRARY_MODULE, Imported.LIBRARY_OBJECT)

    # names ---------------------------------------------------------------------------------
    def class_init(self, module: ModuleInfo, cls: str) -> list[str]:
        """The key of the `__init__` of module's class cls, if it defines one."""
        q = f"{cls}.__init__"
        return [function_key(module, q)] if q in module.functions else []

    def top_level(self, module: ModuleInfo, name: str) -> list[str]:
        """What calling the module's top-level name runs: the function of that name, or the
        `__init__` of the class of that name ([] for anything else)."""
        if name in module.functions:
            return [function_key(module, name)]
        if name in module.classes:
            return self.class_init(module, name)
        return []

    def resolve_name(self, module: ModuleInfo, scope: str, name: str) -> list[str]:
        """Project functions a plain-name call in scope may run: a local function of an
        enclosing function, a function or class of the module, or one imported from a project
        module (a class resolves to its __init__)."""
        prefix = scope
        while prefix and prefix != "<module>":
            q = f"{prefix}.<locals>.{name}"
            if q in module.functions:
                return [function_key(module, q)]
            prefix = prefix.rsplit(".<locals>.", 1)[0] if ".<locals>." in prefix else ""
        if name in module.functions or name in module.classes:
            return self.top_level(module, name)
        target = module.imports.get(name)
        if target is not None:
            other, attr = self.module_for_import(module, target)
            if other is not None and attr is not None:
                return self.top_level(other, attr)
        return []

    def is_project_name(self, module: ModuleInfo, scope: str, name: str) -> bool:
        """Whether name stands for a project function or class (one without an `__init__` of
        its own included: `from model import GPTConfig`)."""
        if self.resolve_name(module, scope, name) or name in module.classes:
            return True
        target = module.imports.get(name)
        if target is not None:
            other, attr = self.module_for_import(module, target)
            return other is not None and attr is not None and attr in other.classes
        return False

    # calls ---------------------------------------------------------------------------------
    def call_targets(
        self, module: ModuleInfo, scope: str, call: cst.Call, passed: bool = False
    ) -> list[str]:
        """Project functions a call in scope may run: `f(...)` as resolve_name says;
        `utils.f(...)` the function (or class) f of the project module utils, nothing for an
        installed package's module or object (`torch.x(...)`, `nn.Linear(...)`); `obj.m(...)`
        any project method named m. passed: also the project functions handed to the call as
        arguments (`fire.Fire(main)`, `Thread(target=train)`), which the callee may call."""
        out = self._called(module, scope, call)
        if not passed:
            return out
        fn = self.functions.get(function_key(module, scope))
        params = set(fn[1].params) if fn is not None else set()
        for arg in call.args:
            value = arg.value
            if not isinstance(value, cst.Name) or value.value in params:
                continue  # `datasets.MNIST(root, train=train)` passes a parameter, not a function
            if arg.keyword is not None and arg.keyword.value not in FUNCTION_KEYWORDS:
                continue
            out += [
                k
                for k in self.resolve_name(module, scope, value.value)
                if not k.endswith(".__init__") and k not in out
            ]
        return out

    def _called(self, module: ModuleInfo, scope: str, call: cst.Call) -> list[str]:
        func = call.func
        if isinstance(func, cst.Name):
            return self.resolve_name(module, scope, func.value)
        if not isinstance(func, cst.Attribute):
            return []
        chain = dotted(func.value)
        if chain is not None and len(chain) == 1:
            kind, other = self.imported(module, chain[0])
            if kind is Imported.PROJECT_MODULE and other is not None:
                return self.top_level(other, func.attr.value)
            if kind in (Imported.LIBRARY_MODULE, Imported.LIBRARY_OBJECT):
                return []
        return list(self.by_method_name.get(func.attr.value, []))
