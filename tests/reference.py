"""Slow reference versions of the compiler's one-pass walks, for tests: libcst's own
PositionProvider, `node.children`, a CSTVisitor and a CSTTransformer calling the same hooks.
The compiler's fast passes must compute exactly what these compute."""

from __future__ import annotations

from pathlib import Path

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from florc.transforms import instrument as ins
from florc.transforms import modules as mod
from florc.transforms.syntax import source_children


class _ReferenceCollector(mod._Collector, cst.CSTVisitor):
    """The collector's hooks, called by libcst's visitor over every node."""


class _ReferenceInstrumenter(ins._Instrumenter, cst.CSTTransformer):
    """The transform's hooks, called by libcst's transformer (which rebuilds every node)."""

    def __init__(self, info: mod.ModuleInfo) -> None:
        ins._Instrumenter.__init__(self, info)
        cst.CSTTransformer.__init__(self)


def _collected(info: mod.ModuleInfo) -> dict[str, object]:
    return {
        "imports": info.imports,
        "functions": [
            (q, id(f.node), f.params, f.line, f.enclosing) for q, f in info.functions.items()
        ],
        "classes": [(q, id(c)) for q, c in info.classes.items()],
        "loops": [(lp.loop_id, id(lp.node), lp.line, lp.col, lp.parent_loop) for lp in info.loops],
        "logs": [
            (id(ls.node), ls.line, ls.col, ls.end_line, ls.scope, ls.loop_id, ls.code)
            for ls in info.log_statements
        ],
    }


def check_against_reference(source: str, known_names: frozenset[str] | None = None) -> None:
    """Assert that positions, child order, collection and instrumenting of source equal what
    libcst's slow general machinery computes."""
    info = mod.analyse_module(source, Path("train.py"), "train.py", "__main__", known_names)
    tree = info.tree
    positions = MetadataWrapper(tree, unsafe_skip_copy=True).resolve(PositionProvider)
    assert len(positions) == len(info.spans)
    for node, pos in positions.items():
        span = (pos.start.line, pos.start.column, pos.end.line, pos.end.column)
        assert info.spans[id(node)] == span, (type(node).__name__, span)
    stack: list[cst.CSTNode] = [tree]
    while stack:
        node = stack.pop()
        fast = source_children(node)
        ids = {id(c) for c in fast}
        slow = node.children
        assert ids <= {id(c) for c in slow}, type(node).__name__
        assert [id(c) for c in slow if id(c) in ids] == [id(c) for c in fast], type(node).__name__
        stack.extend(slow)
    reference = mod.ModuleInfo(
        info.path, info.relpath, info.module_name, source, tree, spans=info.spans
    )
    reference.finder = info.finder
    tree.visit(_ReferenceCollector(reference))
    assert _collected(reference) == _collected(info)
    if not ins.is_instrumented(source):
        expected = tree.visit(_ReferenceInstrumenter(info)).code  # type: ignore[attr-defined]
        assert ins.instrument(info) == expected
