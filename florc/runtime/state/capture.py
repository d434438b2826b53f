"""Capture: copy the values at access paths into a snapshot, at the moment it is taken.

A snapshot never holds a live tensor: every tensor is copied once (memoized by identity), and
every other object becomes one node (kinds.py decides which kind), so two paths to one object
share one node and restore to one object again.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from florc.runtime.state import kinds, lazy
from florc.runtime.state.buffers import HostBuffers
from florc.runtime.state.nodes import MISSING, CannotSnapshot, Node, Snapshot
from florc.runtime.state.objects import is_reiterable, loader_generators
from florc.runtime.state.rng import capture_rng
from florc.runtime.state.scope import Scope
from florc.runtime.state.tracker import TRACK_BYTES, TensorTracker

MAX_DEPTH = 60

_side_streams: dict[Any, Any] = {}


def _side_stream(device: Any) -> Any:
    stream = _side_streams.get(device)
    if stream is None:
        stream = _side_streams[device] = lazy.torch().cuda.Stream(device=device)
    return stream


class Capturer:
    """Copies state into a snapshot tree. Every tensor is copied once (memoized by identity).

    CPU tensors are copied synchronously. GPU tensors go to pinned host buffers on a side
    stream that first waits for the training stream; the training stream then waits (on the
    GPU, not the CPU) for the copies before running anything else, so no later in-place update
    can tear them. `Snapshot.wait()` blocks until they have landed.

    With a tracker (record), a large tensor unchanged since a checkpoint stored it is not copied
    (tracker.py); with buffers, large copies go into reused host buffers (buffers.py).

    With dry=True nothing is copied: it only adds up the bytes a capture would copy.
    """

    def __init__(
        self,
        dry: bool = False,
        tracker: TensorTracker | None = None,
        buffers: HostBuffers | None = None,
    ) -> None:
        self.memo: dict[int, Node] = {}
        self.keep: list[Any] = []  # keep ids stable while capturing
        self.clones: dict[int, Any] = {}
        self.dry = dry
        self.nbytes = 0
        self.cuda_devices: set[Any] = set()
        self.asked: dict[type, tuple[kinds.Handler, ...]] = {}  # type -> kinds.candidates()
        self.tracker = tracker
        self.buffers = buffers
        self.tracked: dict[int, Any] = {}  # id(copy) -> its tracker entry
        self.taken: list[tuple[Any, bool]] = []  # pooled buffers the copies live in

    def clone(self, t: Any) -> Any:
        """A copy of tensor `t` (one per tensor, however often it is met)."""
        key = id(t)
        if key in self.clones:
            return self.clones[key]
        self.keep.append(t)
        nbytes = t.nelement() * t.element_size()
        large = nbytes >= TRACK_BYTES
        tracker = self.tracker if large and not self.dry else None
        if tracker is not None:
            stored = tracker.unchanged(t)
            if stored is not None:
                self.clones[key] = stored
                return stored
        self.nbytes += nbytes
        torch = lazy.torch()
        if self.dry:
            copy_ = None
        elif t.device.type == "cuda":
            copy_ = self._clone_cuda(t)
        elif t.layout != torch.strided:
            copy_ = t.detach().clone()  # a sparse gradient (nn.Embedding(sparse=True)), ...
        elif self.buffers is not None and large and not t.is_quantized:
            copy_, buf = self.buffers.like(t)
            self.taken.append((buf, False))
            copy_.copy_(t.detach())
        else:
            copy_ = t.detach().clone(memory_format=torch.contiguous_format)
        if tracker is not None:
            entry = tracker.copied(t)
            if entry is not None:
                self.tracked[id(copy_)] = entry
        self.clones[key] = copy_
        return copy_

    def _clone_cuda(self, t: Any) -> Any:
        torch = lazy.torch()
        side = _side_stream(t.device)
        if t.device not in self.cuda_devices:
            side.wait_stream(torch.cuda.current_stream(t.device))
            self.cuda_devices.add(t.device)
        if self.buffers is not None:
            buf, raw = self.buffers.like(t, pinned=True)
            self.taken.append((raw, True))
        else:
            buf = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        with torch.cuda.stream(side):
            buf.copy_(t.detach(), non_blocking=True)
        t.record_stream(side)
        return buf

    def finish(self) -> list[Any]:
        """Make the training streams wait for the side-stream copies; events for the writer."""
        events = []
        torch = lazy.torch()
        for device in self.cuda_devices:
            event = torch.cuda.Event()
            event.record(_side_stream(device))
            torch.cuda.current_stream(device).wait_event(event)
            events.append(event)
        return events

    def copy_tree(self, tree: Any) -> Any:
        """A copy of a state_dict-like tree of dicts, lists and tuples; tensors via clone()."""
        if lazy.is_tensor(tree):
            return self.clone(tree)
        if isinstance(tree, dict):
            return type(tree)((k, self.copy_tree(v)) for k, v in tree.items())
        if isinstance(tree, list):
            return [self.copy_tree(v) for v in tree]
        if type(tree) is tuple:
            return tuple(self.copy_tree(v) for v in tree)
        if isinstance(tree, kinds.IMMUTABLE):
            return tree
        return None if self.dry else copy.deepcopy(tree)

    def capture(self, obj: Any, depth: int = 0) -> Node:
        """The node for `obj`: the first handler that takes it decides its kind. A builtin type
        goes straight to its handler (kinds.EXACT); for other types, the handlers its class
        rules out (kinds.candidates) are not asked, which is most of them for a plain object."""
        if depth > MAX_DEPTH:
            raise CannotSnapshot("object graph too deep")
        exact = kinds.EXACT.get(type(obj))
        if exact is None:
            for handler in kinds.UNSHARED:
                node = handler.capture(self, obj, depth)
                if node is not None:
                    return node
        elif not exact.shared:
            node = exact.capture(self, obj, depth)
            if node is not None:
                return node
        key = id(obj)
        hit = self.memo.get(key)
        if hit is not None:
            return hit
        self.keep.append(obj)
        for handler in self._handlers(obj) if exact is None else (exact,):
            node = handler.capture(self, obj, depth)
            if node is not None:
                self.memo[key] = node
                return node
        raise AssertionError("the copy kind takes every object")

    def _handlers(self, obj: Any) -> tuple[kinds.Handler, ...]:
        cls = type(obj)
        if obj.__class__ is not cls:  # a proxy: isinstance() sees its __class__
            return kinds.SHARED
        found = self.asked.get(cls)
        if found is None:
            found = self.asked[cls] = kinds.candidates(cls)
        return found

    def share(self, obj: Any, node: Node) -> None:
        """Memoize `node` for `obj` before its children are captured (they may refer back)."""
        self.memo[id(obj)] = node

    def child(self, obj: Any, depth: int, segment: str) -> Node:
        """The node of a child reached by `segment` (`[0]`, `.attr`): errors name it."""
        try:
            return self.capture(obj, depth + 1)
        except CannotSnapshot as exc:
            raise exc.under(segment) from None


def identities(scope: Scope, paths: Iterable[str]) -> dict[str, Any]:
    """The objects at these paths now, for a later capture() to tell which paths were rebound
    in between. They are held, so that no other object can take their id meanwhile."""
    return {path: scope.get(path) for path in paths}


def capture(
    scope: Scope,
    paths: Iterable[str],
    required: set[str],
    entry: dict[str, Any] | None = None,
    tracker: TensorTracker | None = None,
    buffers: HostBuffers | None = None,
) -> Snapshot:
    """Snapshot the given paths. Raises CannotSnapshot when a required path fails.

    entry: identities() taken where the code that changes these paths began (a block's entry,
    the main loop's start); the paths holding other objects now are marked rebound.
    tracker, buffers: see Capturer. The snapshot's `buffers` go back to the pool once it is
    written (`Snapshot.release`)."""
    snap = Snapshot()
    cap = Capturer(tracker=tracker, buffers=buffers)
    try:
        _capture_paths(cap, snap, scope, paths, required)
    except BaseException:
        if buffers is not None:
            buffers.give_back(cap.taken)
        raise
    finally:
        if cap.cuda_devices:
            snap.pending = cap.finish()
    snap.tracked = cap.tracked
    if buffers is not None and cap.taken:
        taken = cap.taken
        snap.on_release = lambda: buffers.give_back(taken)
    if entry:
        snap.rebound = [
            p
            for p in snap.paths
            if p in entry and entry[p] is not MISSING and entry[p] is not scope.get(p)
        ]
    snap.nbytes = cap.nbytes
    snap.rng = capture_rng()
    return snap


def estimate_bytes(scope: Scope, paths: Iterable[str]) -> int:
    """The bytes of tensor and array data a capture of these paths would copy (copies nothing)."""
    cap = Capturer(dry=True)
    try:
        _capture_paths(cap, Snapshot(), scope, paths, set())
    except CannotSnapshot:
        pass
    return cap.nbytes


def _capture_paths(
    cap: Capturer, snap: Snapshot, scope: Scope, paths: Iterable[str], required: set[str]
) -> None:
    for path in paths:
        obj = scope.get(path)
        if obj is MISSING:
            snap.missing.append(path)
            continue
        try:
            snap.paths[path] = cap.capture(obj)
        except CannotSnapshot as exc:
            if path in required:
                raise CannotSnapshot(f"`{path}{exc.where}`: {exc}", path + exc.where) from None
            snap.omitted[path] = f"`{path}{exc.where}`: {exc}"


def capture_iterated(scope: Scope, paths: Iterable[str]) -> dict[str, str]:
    """Iterated paths that are iterators (consumed by the loop): not restorable -> reasons."""
    problems = {}
    for path in paths:
        obj = scope.get(path)
        if obj is not MISSING and not is_reiterable(obj):
            problems[path] = f"`{path}` is an iterator that the loop consumes"
    return problems


def loader_generators_in(scope: Scope, paths: Iterable[str]) -> dict[str, Any]:
    """For the paths that hold a DataLoader: its generators' states."""
    out = {}
    for path in paths:
        obj = scope.get(path)
        if lazy.is_dataloader(obj):
            out[path] = loader_generators(obj)
    return out
