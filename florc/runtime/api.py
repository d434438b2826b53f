"""The small public API that instrumented code calls (imported as `__florc__`).

Each function is cheap and safe without an active session: an instrumented module imported by
plain Python behaves like the original.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

_session: Any = None  # florc.runtime.session.Session while a record or replay runs


def activate(session: Any) -> None:
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

    def iterate(self, iterable: Iterable[Any]) -> Iterable[Any]:
        return iterable

    def tick(self) -> bool:
        return True

    def began(self) -> bool:
        return True


PLAIN_LOOP = _PlainLoop()


def loop(loop_id: str) -> Any:
    """Context for one execution of a loop; the session gives it its role."""
    if _session is None:
        return PLAIN_LOOP
    return _session.loop(loop_id)


class _NoStatement:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_STATEMENT = _NoStatement()


def log_statement(statement_id: str) -> Any:
    """Context around one log statement, so its output is attributed to it."""
    if _session is None:
        return _NO_STATEMENT
    return _session.log_statement(statement_id)


def entered(function_key: str) -> None:
    """A project function started (replay probes blocks whose callees changed)."""
    if _session is not None:
        _session.entered(function_key)


def log(name: str, value: Any) -> Any:
    """Log a named value: stored with its epoch and step; returns the value unchanged."""
    if _session is not None:
        _session.log_value(name, value)
    return value
