"""The script's output: passed through as usual at record, filtered at replay, always captured
line by line with the log statement that wrote it and its loop context."""

from __future__ import annotations

import io
import sys
import warnings
from typing import Any, TextIO

_REAL: dict[str, TextIO] = {}


def real_stdout() -> TextIO:
    return _REAL.get("stdout", sys.__stdout__ or sys.stdout)


def real_stderr() -> TextIO:
    return _REAL.get("stderr", sys.__stderr__ or sys.stderr)


class StreamTee(io.TextIOBase):
    """Replaces sys.stdout / sys.stderr while the script runs."""

    def __init__(self, session: Any, target: TextIO, name: str) -> None:
        self.session = session
        self.target = target
        self.name = name
        self.partial: dict[str | None, str] = {}

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.target, "encoding", "utf-8")

    def isatty(self) -> bool:
        return self.target.isatty()

    def fileno(self) -> int:
        return self.target.fileno()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        s = self.session
        stmt = s.statement
        if s.should_show(stmt):
            self.target.write(text)
        buf = self.partial.get(stmt, "") + text
        *lines, rest = buf.split("\n")
        for line in lines:
            s.on_line(line, stmt, self.name)
        self.partial[stmt] = rest
        return len(text)

    def flush(self) -> None:
        self.target.flush()


def install(session: Any) -> tuple[TextIO, TextIO]:
    old = (sys.stdout, sys.stderr)
    _REAL["stdout"], _REAL["stderr"] = old
    sys.stdout = StreamTee(session, old[0], "stdout")
    sys.stderr = StreamTee(session, old[1], "stderr")
    _WARNINGS["showwarning"] = show = warnings.showwarning

    def showwarning(*args: Any, **kwargs: Any) -> None:
        # a warning is shown once per place and process: whether a statement prints it depends
        # on what ran before in this process, not on its values, so it is nobody's output
        statement, session.statement = session.statement, None
        try:
            show(*args, **kwargs)
        finally:
            session.statement = statement

    warnings.showwarning = showwarning
    return old


_WARNINGS: dict[str, Any] = {}


def uninstall(old: tuple[TextIO, TextIO]) -> None:
    if "showwarning" in _WARNINGS:
        warnings.showwarning = _WARNINGS.pop("showwarning")
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, StreamTee):
            for stmt, rest in stream.partial.items():
                if rest:
                    stream.session.on_line(rest, stmt, stream.name)
            stream.partial.clear()
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
    sys.stdout, sys.stderr = old
    _REAL.clear()
