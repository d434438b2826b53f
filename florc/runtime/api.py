"""florc's run-time API: what a training script calls, by hand or through generated code.

Written by hand (`import florc`):

    with florc.checkpoint(model=model, optimizer=optimizer):
        for epoch in florc.loop("epoch", range(epochs)):
            for x, y in florc.loop("batch", loader):
                ...
            florc.log("loss", loss.item())

- `florc.loop(name, iterable)` iterates over iterable. The outermost one is the main loop: its
  iterations are epochs, checkpointed at their boundaries under the overhead budget at record,
  and skipped or restored at replay. One inside it counts the steps its log lines are filed
  under. `florc record` leaves the loops of a module that uses it as written.
- `florc.checkpoint(**objects)` names what the loops started inside it checkpoint: models,
  optimizers, any picklable state held in a mutable object. They are restored in place, so
  every reference to them sees the restored state.
- `florc.log(name, value)` logs a value under the current epoch and step; returns it.

Generated code (`import florc.runtime.api as __florc__`) uses the statement form of the loop,
which also covers `while` loops and lets replay skip a loop's body:

    with __florc__.loop('train.py:<module>:0', changes=('model', 'opt')) as __florc_l0:
        if __florc_l0.run:
            for batch in __florc_l0.iterate(loader):
                with __florc__.log_statement('train.py:12'):
                    print(...)

Its id is the compiler's and `changes` the loop's changeset, as the compiler found it (what a
reader sees; the session uses the compile result it came with). `log_statement` files output
under the statement that wrote it, and `entered` notes that a project function ran.

Every function here is cheap and does nothing without an active session: a script, or an
instrumented module imported by plain Python, behaves like the original.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol, TypeVar, overload

T = TypeVar("T")


class LoopContext(Protocol):
    """One execution of an instrumented loop (`with __florc__.loop(...) as l:`)."""

    run: bool  # False: replay restored the loop's state, its body is skipped

    def __enter__(self) -> LoopContext: ...

    def __exit__(self, *exc: Any) -> None: ...

    def iterate(self, iterable: Iterable[T]) -> Iterator[T]:
        """A for loop's iterable, as the loop's role iterates it."""
        ...

    def tick(self) -> bool:
        """Before a while loop's test."""
        ...

    def began(self) -> bool:
        """After a while loop's test passed: an iteration begins."""
        ...


class ActiveSession(Protocol):
    """What the functions here hand their calls to while florc runs a script."""

    def loop(self, loop_id: str, changes: tuple[str, ...] = ()) -> LoopContext: ...

    def loop_over(
        self, name: str, iterable: Iterable[T], where: tuple[str, int]
    ) -> Iterator[T]: ...

    def checkpoint(self, objects: Mapping[str, object]) -> Any: ...

    def log_statement(self, statement_id: str) -> Any: ...

    def entered(self, function_key: str) -> None: ...

    def log_value(self, name: str, value: Any) -> None: ...


_session: ActiveSession | None = None  # florc.runtime.session.Session while a run is on


def activate(session: ActiveSession) -> None:
    global _session
    _session = session


def deactivate() -> None:
    global _session
    _session = None


class _PlainLoop:
    """A loop outside any session, or one the session leaves alone."""

    run = True

    def __enter__(self) -> _PlainLoop:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def iterate(self, iterable: Iterable[T]) -> Iterator[T]:
        return iter(iterable)

    def tick(self) -> bool:
        return True

    def began(self) -> bool:
        return True


PLAIN_LOOP = _PlainLoop()


class _Nothing:
    """No iterable given: the statement form of loop()."""


_NOTHING: Any = _Nothing()


@overload
def loop(name: str, iterable: Iterable[T]) -> Iterator[T]: ...


@overload
def loop(name: str, *, changes: tuple[str, ...] = ()) -> LoopContext: ...


def loop(
    name: str, iterable: Any = _NOTHING, *, changes: tuple[str, ...] = ()
) -> Iterator[Any] | LoopContext:
    """`for x in loop(name, iterable):` a loop florc checkpoints and replays (the outermost
    is the main loop, one inside it counts steps). Without an iterable, the statement form
    generated code uses: `with loop(loop_id, changes=(...)) as l:`."""
    if iterable is not _NOTHING:
        if _session is None:
            return iter(iterable)
        caller = sys._getframe(1)  # the loop's place, to find what the compiler knows of it
        return _session.loop_over(name, iterable, (caller.f_code.co_filename, caller.f_lineno))
    if _session is None:
        return PLAIN_LOOP
    return _session.loop(name, tuple(changes))


# values restored by rebinding a name, which florc.checkpoint cannot do for its caller
_NOT_IN_PLACE = (type(None), bool, int, float, complex, str, bytes, tuple, frozenset, range)


class _NoContext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_CONTEXT = _NoContext()


def checkpoint(**objects: object) -> Any:
    """`with checkpoint(model=model, optimizer=opt):` names the objects the loops started
    inside it checkpoint and restore, in place. A number, a string or a tuple cannot be
    restored in place: keep such state in a mutable object (a dict, a list, an attribute)."""
    for key, value in objects.items():
        if isinstance(value, _NOT_IN_PLACE):
            raise TypeError(
                f"florc.checkpoint({key}=...): a {type(value).__name__} cannot be restored in "
                f"place; keep it in a mutable object (a dict, a list, an object's attribute) "
                "and name that"
            )
    if _session is None:
        return _NO_CONTEXT
    return _session.checkpoint(objects)


def log_statement(statement_id: str) -> Any:
    """Context around one log statement, so its output is attributed to it."""
    if _session is None:
        return _NO_CONTEXT
    return _session.log_statement(statement_id)


def entered(function_key: str) -> None:
    """A project function started (replay re-executes blocks whose callees changed)."""
    if _session is not None:
        _session.entered(function_key)


def log(name: str, value: T) -> T:
    """Log a named value: stored with its epoch and step; returns the value unchanged."""
    if _session is not None:
        _session.log_value(name, value)
    return value
