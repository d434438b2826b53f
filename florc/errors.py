"""The one exception family for florc's own, user-facing errors."""

from __future__ import annotations


class FlorcError(Exception):
    """An error the user can act on: the message says what, where and what to do."""

    exit_code = 1


class UsageError(FlorcError):
    """Bad input: a script florc cannot read or compile, a bad option, an unknown run."""

    exit_code = 2


class SourceError(UsageError):
    """A problem at a position in the user's source code."""

    def __init__(self, path: str, line: int, col: int, message: str, hint: str = "") -> None:
        self.path, self.line, self.col, self.message, self.hint = path, line, col, message, hint
        text = f"{path}:{line}:{col}: {message}"
        if hint:
            text += f"\n  {hint}"
        super().__init__(text)
