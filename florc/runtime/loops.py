"""The roles a loop takes while a session runs, the same at record and replay.

A session gives a loop its role when the loop starts:
- the *main loop*: its iterations are epochs. Each boundary between two iterations is a point
  where record may checkpoint the loop's changeset (the budget policy decides which) and where
  replay may skip ahead by restoring one;
- a *block*: a loop the compiler instrumented, started inside an iteration of the main loop
  while no other block runs. Its changeset may be checkpointed at its end (record) and it may be
  restored instead of run (replay);
- a *step loop*: a `florc.loop(...)` started inside an iteration of the main loop; it counts the
  steps its log lines are filed under, and always runs;
- any other loop runs as written (`api.PLAIN_LOOP`).

The loops decide *when* (boundaries, iterations, a block's start and end); the session's hooks
decide *what* happens then, which is where record and replay differ (record.py, replay.py).

Where a loop's paths resolve: in the frame that runs it (instrumented code; the frame is taken
once, where the `with` statement enters the loop), or in the objects a `florc.checkpoint(...)`
named (a loop written by hand).
"""

from __future__ import annotations

import sys
import time
import types
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from florc.contract import LoopManifest
from florc.runtime import state as st

if TYPE_CHECKING:
    from florc.runtime.session import Session

T = TypeVar("T")


def unknown_loop(loop_id: str) -> LoopManifest:
    """A loop the compile result does not describe: it re-executes, nothing is checkpointed."""
    return LoopManifest(
        loop_id=loop_id,
        relpath=loop_id.rsplit(":", 2)[0],
        line=0,
        col=0,
        kind="for",
        scope="",
        parent_loop=None,
        changeset=[],
        required=[],
        iterated=[],
        unbounded=[f"{loop_id}: no compile information for this loop"],
    )


def hand_manifest(
    name: str, objects: Mapping[str, object], known: LoopManifest | None, where: tuple[str, int]
) -> LoopManifest:
    """What a loop written with `florc.loop(name, ...)` checkpoints: the objects named by the
    `florc.checkpoint(...)` around it, all of them required. It keeps the compiler's id for the
    loop at that place (so record, replay and `florc instrument --report` name it alike), or
    else takes its name as its id."""
    names = sorted(objects)
    return LoopManifest(
        loop_id=known.loop_id if known is not None else name,
        relpath=known.relpath if known is not None else where[0],
        line=known.line if known is not None else where[1],
        col=known.col if known is not None else 0,
        kind="for",
        scope=known.scope if known is not None else "",
        parent_loop=None,
        changeset=names,
        required=names,
        iterated=[],
        unbounded=[],
    )


def checkpoint_paths(scope: st.Scope, manifest: LoopManifest) -> list[str]:
    """What a loop's checkpoint holds: its changeset, and the DataLoaders it iterates over
    (their generators decide the next epoch's shuffle)."""
    loaders = st.loader_generators_in(scope, manifest.iterated)
    return [*manifest.changeset, *(p for p in manifest.iterated if p in loaders)]


class NamedScope(st.Scope):
    """Paths resolved in the objects a `florc.checkpoint(...)` named, not in a frame.

    Those objects are captured and restored in place; one that could only be restored by
    rebinding its name (the caller's variable cannot be rebound from here) is refused."""

    def __init__(self, objects: Mapping[str, object]) -> None:  # noqa: D107 -- no frame
        self.local_names: set[str] = set()
        self.is_module = True
        self.locals = self.globals = dict(objects)
        self.local_writes: dict[str, Any] = {}

    def set(self, path: str, value: Any) -> None:
        if "." not in path:
            raise st.CannotRestore(
                f"`{path}` (named by florc.checkpoint) cannot be restored in place"
            )
        super().set(path, value)

    def commit(self) -> None:
        return None


class MainLoop:
    """The main loop's role. Boundary b is the state before iteration b (after iteration b-1)."""

    # whether replay may restore a checkpoint at a boundary inside the loop (a framework's
    # epochs are restored only before the loop starts: lightning.py)
    restores_inside = True

    def __init__(
        self, session: Session, manifest: LoopManifest, named: NamedScope | None = None
    ) -> None:
        self.session = session
        self.manifest = manifest
        self.loop_id = manifest.loop_id
        self.named = named  # a loop written by hand: its paths resolve here
        self.frame: types.FrameType | None = None  # instrumented code: the frame running it
        self.run = True
        self.current: int | None = None  # iteration being executed
        self.in_iteration = False
        self.last_boundary = -1
        self.entry: dict[str, Any] | None = None  # st.identities() where the loop began
        self._next_idx = 0

    @property
    def bounded(self) -> bool:
        """Whether its changeset holds all it changes (else it is never checkpointed)."""
        return not self.manifest.unbounded

    def scope(self) -> st.Scope:
        """Where the loop's paths resolve now (a frame's locals are read afresh)."""
        if self.named is not None:
            return self.named
        assert self.frame is not None
        return st.Scope(self.frame)

    # instrumented code: `with __florc__.loop(...) as l:` ------------------------------------
    def __enter__(self) -> MainLoop:
        self.frame = sys._getframe(1)
        self.start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.stop(left=exc_type is None)
        self.frame = None

    # a loop written by hand: `for x in florc.loop(name, iterable):` --------------------------
    def drive(self, iterable: Iterable[T]) -> Iterator[T]:
        """The loop as the generator `florc.loop` returns. Leaving the loop early (`break`,
        `return`, an exception in its body) reaches here as the generator's close: the state
        then is the state the code after the loop sees, so it counts as the loop's end."""
        self.start()
        try:
            yield from self.iterate(iterable)
        except GeneratorExit:
            self.stop(left=True)
            raise
        except BaseException:
            self.stop(left=False)
            raise
        self.stop(left=True)

    # both ---------------------------------------------------------------------------------
    def start(self) -> None:
        self.session.start_main(self)

    def stop(self, left: bool) -> None:
        """The loop ended; left: without an exception (its end is a boundary)."""
        s = self.session
        if left and self.current is not None:
            self._boundary(self.current + 1)
        self.in_iteration = False
        s.end_main(self)
        s.main = None
        s.main_done = True
        s.iteration = None
        s.epoch = None
        self.entry = None

    def _boundary(self, b: int) -> None:
        """Reached before iteration b starts (b >= 1) and at the loop's end."""
        s = self.session
        ran = self.in_iteration
        self.in_iteration = False
        if ran and s.on_progress is not None:
            s.on_progress()
        if b <= self.last_boundary:
            return
        self.last_boundary = b
        s.iteration = None
        s.at_boundary(self, b)

    def _begin(self, idx: int, value: Any) -> None:
        s = self.session
        self.current = idx
        self.in_iteration = True
        s.iteration = idx
        s.occurrences = {}
        epoch = value if isinstance(value, int) and not isinstance(value, bool) else None
        s.epoch = epoch if epoch is not None else idx
        s.begin_iteration(self, idx, epoch)

    def iterate(self, iterable: Iterable[T]) -> Iterator[T]:
        s = self.session
        it = iter(iterable)
        idx = 0
        while True:
            if idx > 0:
                self._boundary(idx)
            nxt = s.next_iteration(self, idx)
            if nxt is None:
                # the loop's final state is restored: consume what the recorded loop consumed,
                # no more (it may have left with `break`, on an endless iterator)
                end = s.recorded_end()
                while end is not None and idx < end:
                    try:
                        next(it)
                    except StopIteration:
                        return
                    idx += 1
                return
            while idx < nxt:
                try:
                    next(it)
                except StopIteration:
                    return
                idx += 1
            try:
                item = next(it)
            except StopIteration:
                self._boundary(idx)
                return
            self._begin(idx, item)
            yield item
            idx += 1

    def tick(self) -> bool:
        """A while loop's test is about to run (after tick(), began() marks an iteration)."""
        idx = 0 if self.current is None else self.current + 1
        if idx > 0:
            self._boundary(idx)
        nxt = self.session.next_iteration(self, idx)
        if nxt is None:
            return False
        self.current = nxt - 1 if nxt > 0 else None
        self._next_idx = nxt
        return True

    def began(self) -> bool:
        self._begin(self._next_idx, None)
        return True


class InnerLoop:
    """A loop directly under an iteration of the main loop: its steps number the log lines."""

    def __init__(self, session: Session, loop_id: str) -> None:
        self.session = session
        self.loop_id = loop_id
        self.step: int | None = None
        self.callees: set[str] = set()  # project functions that ran inside it


class Block(InnerLoop):
    """A block: an instrumented loop under the main loop, checkpointed and restored whole."""

    def __init__(self, session: Session, manifest: LoopManifest) -> None:
        super().__init__(session, manifest.loop_id)
        self.manifest = manifest
        self.run = True
        self.compare = True  # replay: compare its end state with the recorded checkpoint
        self.entry: dict[str, Any] | None = None  # record: st.identities() at its start
        self.frame: types.FrameType | None = None
        self.iteration = -1
        self.occurrence = 0
        self.started = 0.0

    @property
    def bounded(self) -> bool:
        return not self.manifest.unbounded

    def scope(self) -> st.Scope:
        assert self.frame is not None
        return st.Scope(self.frame)

    def __enter__(self) -> Block:
        s = self.session
        self.frame = sys._getframe(1)
        s.block = self
        self.iteration = s.iteration if s.iteration is not None else -1
        self.occurrence = s.occurrences.get(self.loop_id, 0)
        s.occurrences[self.loop_id] = self.occurrence + 1
        if self.bounded:
            s.start_block(self)
        self.started = time.perf_counter()
        return self

    def iterate(self, iterable: Iterable[T]) -> Iterator[T]:
        self.step = -1
        for item in iterable:
            self.step += 1
            yield item

    def tick(self) -> bool:
        self.step = 0 if self.step is None else self.step + 1
        return True

    def began(self) -> bool:
        return True

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        s = self.session
        s.block = None
        if self.callees:
            s.callees.setdefault(self.loop_id, set()).update(self.callees)
        if exc_type is None and self.run and self.bounded:
            s.end_block(self)
        self.entry = None
        self.frame = None


class StepLoop(InnerLoop):
    """A `florc.loop(...)` inside an iteration of the main loop: counts steps, always runs."""

    def drive(self, iterable: Iterable[T]) -> Iterator[T]:
        s = self.session
        s.block = self
        self.step = -1
        try:
            for item in iterable:
                self.step += 1
                yield item
        finally:
            if s.block is self:
                s.block = None
