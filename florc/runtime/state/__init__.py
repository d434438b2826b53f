"""Capture and restore program state, in place, so object identity survives.

A snapshot is a tree of small nodes that copies values at the moment it is taken (never a live
tensor). Restoring walks the tree against the objects that exist now: modules, optimizers and
schedulers get `load_state_dict`, tensors `copy_`, lists and dicts are mutated in place, plain
objects have their `__dict__` restored attribute by attribute. Only values that cannot be updated
in place (numbers, strings, a name rebound to a new object) are rebound.

Restoring is two-phase: a check pass first verifies every path can be restored, so a checkpoint
that does not fit the current objects is refused before anything changes.

torch and numpy are imported lazily: a script without them still works.

The package's modules:
- nodes.py: `Kind`, `Node`, `Snapshot` and the errors (the pickled form of a checkpoint);
- kinds.py: the registry, one handler per node kind (capture, restore, compare, parts), which
  capture, restore, checkpoint.py and fidelity.py all dispatch on;
- capture.py, restore.py: the walks over the paths of a snapshot;
- objects.py: where a live object keeps its state; scope.py: access paths and frames;
- rng.py: the global random generators; lazy.py: torch and numpy, if the script has them.
"""

from __future__ import annotations

from florc.runtime.state.capture import (
    capture,
    capture_iterated,
    estimate_bytes,
    identities,
    loader_generators_in,
)
from florc.runtime.state.nodes import MISSING, CannotRestore, CannotSnapshot, Kind, Node, Snapshot
from florc.runtime.state.objects import importable, same_class
from florc.runtime.state.restore import restore
from florc.runtime.state.rng import capture_rng, restore_rng, start_rng
from florc.runtime.state.scope import Scope

__all__ = [
    "MISSING",
    "CannotRestore",
    "CannotSnapshot",
    "Kind",
    "Node",
    "Scope",
    "Snapshot",
    "capture",
    "capture_iterated",
    "capture_rng",
    "estimate_bytes",
    "identities",
    "importable",
    "loader_generators_in",
    "restore",
    "restore_rng",
    "same_class",
    "start_rng",
]
