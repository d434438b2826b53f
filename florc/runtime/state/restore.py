"""Restore a snapshot in place, so object identity survives.

Restoring walks the snapshot's tree against the objects that exist now: modules, optimizers and
schedulers get `load_state_dict`, tensors `copy_`, lists and dicts are mutated in place, plain
objects have their `__dict__` restored attribute by attribute (kinds.py, kind by kind). Only
values that cannot be updated in place (numbers, strings, a name rebound to a new object) are
rebound. So a restored optimizer still holds the model's parameters, and every alias of a list
sees its restored items.

Restoring is two-phase: a first pass with `apply=False` walks the whole tree and changes
nothing, verifying that every path can be restored; only then does the second pass change
objects. A checkpoint that does not fit the current objects is refused before anything changes.

An object met twice (two paths to it, a back-reference) is one node and restores to one object:
a container says which object it restores into before its children are restored.
"""

from __future__ import annotations

from typing import Any

from florc.runtime.state import kinds
from florc.runtime.state.nodes import MISSING, Node, Snapshot
from florc.runtime.state.rng import restore_rng
from florc.runtime.state.scope import Scope


class Restorer:
    """Applies nodes to current objects. With apply=False it only checks."""

    def __init__(self, apply: bool) -> None:
        self.apply = apply
        self.done: dict[int, Any] = {}

    def restore(self, current: Any, node: Node) -> Any:
        """The object `node` restores to, given the one its place holds now (MISSING: none).
        A node met twice (two paths to one object) gives the same object both times."""
        key = id(node)
        if key in self.done:
            return self.done[key]
        result = kinds.KINDS.get(node.kind, kinds.UNKNOWN).restore(self, current, node)
        self.done[key] = result
        return result

    def begin(self, node: Node, target: Any) -> None:
        """`node` restores to `target`: said before its children are restored, so that a
        child referring back to it (a callback's `trainer`, a list holding itself) finds the
        object instead of restoring it again, endlessly."""
        self.done[id(node)] = target


def restore(scope: Scope, snap: Snapshot) -> None:
    """Restore all paths in place; raises CannotRestore (before changing anything) if it can't."""
    rebound = set(getattr(snap, "rebound", ()))  # snapshots of older versions have none
    for phase_apply in (False, True):
        r = Restorer(apply=phase_apply)
        for path, node in snap.paths.items():
            cur = scope.get(path)
            value = r.restore(MISSING if path in rebound else cur, node)
            if phase_apply and value is not cur:
                scope.set(path, value)
    scope.commit()
    restore_rng(snap.rng)
