"""The layers in florc's tree import only what they may (docs/ARCHITECTURE.md).

Every import of every module is read from its source, those inside functions included (a lazy
import is still an edge), and checked against the table below. A new module must find its place
in the table: an unknown module fails the test.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "florc"

# the layers, from the bottom: who may import whom (besides its own layer)
FOUNDATION = ("florc._version", "florc.errors", "florc.contract", "florc.project", "florc.report")
LAYERS: dict[str, tuple[str, ...]] = {
    "florc._version": (),
    "florc.errors": (),
    "florc.report": (),
    "florc.contract": ("florc._version",),
    "florc.project": ("florc.errors",),
    "florc.store": ("florc.project", "florc.errors", "florc._version"),
    "florc.transforms": ("florc.contract", "florc.project", "florc.errors", "florc._version"),
    "florc.runtime": ("florc.contract", "florc.store", "florc.errors", "florc._version"),
    "florc.vcs": ("florc.errors", "florc.project"),
    # export and plot: read the store, write where trackers read; never compile or replay
    "florc.export": ("florc.store", "florc.project", "florc.errors", "florc._version"),
    # orchestration: everything below it
    "florc.launch": (*FOUNDATION, "florc.store", "florc.transforms", "florc.runtime", "florc.vcs"),
    "florc.record": (
        *FOUNDATION,
        "florc.store",
        "florc.transforms",
        "florc.runtime",
        "florc.launch",
        "florc.vcs",
    ),
    "florc.replay": (
        *FOUNDATION,
        "florc.store",
        "florc.transforms",
        "florc.runtime",
        "florc.launch",
        "florc.record",
    ),
    "florc.check": (*FOUNDATION, "florc.store", "florc.transforms", "florc.launch", "florc.vcs"),
    "florc.api": (
        *FOUNDATION,
        "florc.store",
        "florc.transforms",
        "florc.runtime",
        "florc.launch",
        "florc.record",
        "florc.replay",
        "florc.check",
        "florc.vcs",
        "florc.export",
    ),
    # the CLI reaches florc through the API alone
    "florc.cli": ("florc.api",),
    "florc.__main__": ("florc.cli",),
    # the public names: the runtime's hand-written API, the store's dataframe
    "florc": ("florc._version", "florc.runtime", "florc.store"),
}
# third-party packages a layer must never import
FORBIDDEN_PACKAGES = {
    "florc.runtime": ("libcst", "click"),
    "florc.store": ("libcst", "click", "torch"),
    "florc.contract": ("libcst", "click", "torch"),
    "florc.transforms": ("click",),
    "florc.api": ("click",),
    "florc.export": ("libcst", "click", "torch"),
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> str:
    """The longest key of LAYERS that is the module or a package above it."""
    best = ""
    for key in LAYERS:
        inside = module == key or (key != "florc" and module.startswith(key + "."))
        if inside and len(key) > len(best):
            best = key
    return best


def _imports(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target == "florc" or (node.level and not node.module):
                # `from florc import x` imports the submodule x when there is one
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    has_sub = (PACKAGE.parent / sub.replace(".", "/")).with_suffix(".py").exists()
                    has_pkg = (PACKAGE.parent / sub.replace(".", "/") / "__init__.py").exists()
                    out.append((sub if has_sub or has_pkg else target, node.lineno))
            else:
                out.append((target, node.lineno))
    return out


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _module_name(p))
def test_module_imports_only_what_its_layer_may(path: Path) -> None:
    module = _module_name(path)
    layer = _layer(module)
    assert layer, f"{module}: not in any layer of tests/unit/test_layers.py; give it one"
    allowed = LAYERS[layer]
    bad = []
    for target, line in _imports(path):
        top = target.split(".")[0]
        if top in FORBIDDEN_PACKAGES.get(layer, ()):
            bad.append(f"{path.name}:{line}: imports {target}")
        if top != "florc":
            continue
        target_layer = _layer(target)
        if target_layer == layer or target == "florc" and layer == "florc":
            continue
        if target_layer not in allowed:
            bad.append(f"{path.name}:{line}: {layer} imports {target} ({target_layer or '?'})")
    assert not bad, "\n".join(bad)


def test_every_layer_exists() -> None:
    """The table names real modules (a renamed module must not leave its rule behind)."""
    names = {_module_name(p) for p in MODULES}
    for key in LAYERS:
        assert any(n == key or n.startswith(key + ".") for n in names), key
