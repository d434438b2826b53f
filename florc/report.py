"""How the API tells its caller what happens, without printing: a Reporter it is given.

The CLI passes one that writes to the terminal (florc/cli.py); tests pass a `Recorded` one and
read what was said. The API itself never prints.
"""

from __future__ import annotations

from typing import Protocol


class Reporter(Protocol):
    def note(self, message: str) -> None:
        """florc's own progress and summary lines ("florc: run 3 done ...")."""

    def warn(self, message: str) -> None:
        """Something the user should know that does not stop the command."""

    def output(self, text: str, err: bool = False) -> None:
        """A line of the script's own output that the command shows (a replay's new lines);
        err: the script wrote it to stderr."""

    def progress(self, text: str) -> None:
        """A status line that replaces the previous one ("w1 3/5 w2 2/5 · about 4 s left");
        "" ends it. A terminal redraws it in place; elsewhere it may be dropped."""


class Silent:
    """A reporter that drops everything (the default for API calls from Python)."""

    def note(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass

    def output(self, text: str, err: bool = False) -> None:
        pass

    def progress(self, text: str) -> None:
        pass


class Recorded:
    """A reporter that keeps what it is told, for tests."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.warnings: list[str] = []
        self.outputs: list[str] = []
        self.errors: list[str] = []  # output lines the script wrote to stderr

    def note(self, message: str) -> None:
        self.notes.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def output(self, text: str, err: bool = False) -> None:
        (self.errors if err else self.outputs).append(text)

    def progress(self, text: str) -> None:
        pass


def plural(n: int, word: str, many: str | None = None) -> str:
    """ "1 block", "2 blocks", "1 epoch checkpoint", "0 checkpoints"."""
    return f"{n} {word if n == 1 else (many or word + 's')}"
