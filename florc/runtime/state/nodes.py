"""The snapshot tree: the kinds of node, the node, the snapshot, the errors of capture and restore.

A snapshot is pickled into the store (checkpoint.py) with its nodes, so what is written here is
part of the store's format. `Node` and `Snapshot` are pickled by name as
`florc.runtime.state.Node` and `florc.runtime.state.Snapshot`, the names they had when the state
code was one module: their `__module__` says so, and a checkpoint written before or after reads
the same. A node's `kind` is stored as a plain string (a `Kind` value, never the enum member),
and its fields keep their meaning per kind (see kinds.py).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

# the name a snapshot's classes are pickled under (the package re-exports them)
PICKLED_MODULE = "florc.runtime.state"


# what an access path that is not bound (a name not assigned yet) resolves to
MISSING: Any = object()


class Kind(enum.StrEnum):
    """What a node holds; each kind has its handler in kinds.py (capture, restore, compare)."""

    VALUE = "value"  # an immutable value: a number, a string, None, an enum member
    REF = "ref"  # a function, class, module or weak reference: kept, never copied
    TENSOR = "tensor"
    MODULE = "module"  # a torch.nn.Module: its state_dict, grads, modes and plain attributes
    OPTIMIZER = "optimizer"
    DATALOADER = "dataloader"  # the states of its generators
    GENERATOR = "generator"  # a torch.Generator
    NDARRAY = "ndarray"
    NP_GENERATOR = "np_generator"  # numpy.random.Generator
    NP_RANDOMSTATE = "np_randomstate"  # numpy.random.RandomState
    RANDOM = "random"  # random.Random
    STATEFUL = "stateful"  # anything else with state_dict() and load_state_dict()
    LIST = "list"
    DEQUE = "deque"
    TUPLE = "tuple"
    NAMEDTUPLE = "namedtuple"  # a namedtuple or a structseq (torch.return_types)
    DICT = "dict"  # a dict or an OrderedDict
    OBJECT = "object"  # a plain Python object: its attributes, one node each
    COPY = "copy"  # anything else: a deep copy


class CannotSnapshot(Exception):
    """Raised while capturing; `where` is the access path below the captured root (`.sock`,
    `[0].log_prob`), filled in on the way out so the message can name the object."""

    def __init__(self, message: str, where: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.where = where

    def under(self, segment: str) -> CannotSnapshot:
        """The same error, one access segment further from the root."""
        self.where = segment + self.where
        return self

    def __str__(self) -> str:
        return self.message


class CannotRestore(Exception):
    """A node does not fit the object it would be restored into (raised before any change)."""


@dataclass
class Node:
    """One captured value. `kind` is a `Kind` value (a plain string); the other fields are the
    kind's own (kinds.py says what each holds)."""

    kind: str
    value: Any = None
    children: Any = None
    cls: Any = None
    extra: Any = None


@dataclass
class Snapshot:
    """Named roots (access paths) -> nodes, plus RNG states."""

    paths: dict[str, Node] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # paths unbound when captured
    omitted: dict[str, str] = field(
        default_factory=dict
    )  # optional paths that could not be captured
    rng: dict[str, Any] = field(default_factory=dict)
    # GPU copies still in flight: the writer waits on these events before reading tensors.
    pending: list[Any] = field(default_factory=list, repr=False, compare=False)
    nbytes: int = 0  # bytes of tensor and array data copied
    # paths whose object at capture is not the one they held when the code began (a loop body
    # that rebinds `output = ...`): restore gives them new objects instead of writing into the
    # current ones, which other variables may still hold (the last output in a list of them)
    rebound: list[str] = field(default_factory=list)
    # not written: id(copy) -> its tensor tracker entry; what gives the copies' buffers back
    tracked: dict[int, Any] = field(default_factory=dict, repr=False, compare=False)
    on_release: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["pending"] = []
        state.pop("tracked", None)
        state.pop("on_release", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # a snapshot written by an older florc lacks the fields added since: their defaults
        for f in fields(self):
            if f.name not in state:
                state[f.name] = f.default_factory() if callable(f.default_factory) else f.default
        self.__dict__.update(state)

    def release(self) -> None:
        """Done with this snapshot's copies (written): buffers from a pool go back to it, and
        the snapshot is emptied (its tensors would change under a reader)."""
        release, self.on_release = self.on_release, None
        if release is not None:
            self.paths, self.tracked = {}, {}
            release()

    def wait(self) -> None:
        """Block until every GPU-to-host copy of this snapshot has landed."""
        for event in self.pending:
            event.synchronize()
        self.pending = []


Node.__module__ = PICKLED_MODULE
Snapshot.__module__ = PICKLED_MODULE
