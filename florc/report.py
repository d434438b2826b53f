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

    def output(self, text: str) -> None:
        """Lines of the script's own output that the command shows (a replay's new lines)."""


class Silent:
    """A reporter that drops everything (the default for API calls from Python)."""

    def note(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass

    def output(self, text: str) -> None:
        pass


class Recorded:
    """A reporter that keeps what it is told, for tests."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.warnings: list[str] = []
        self.outputs: list[str] = []

    def note(self, message: str) -> None:
        self.notes.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def output(self, text: str) -> None:
        self.outputs.append(text)


def plural(n: int, word: str, many: str | None = None) -> str:
    """"1 block", "2 blocks", "1 epoch checkpoint", "0 checkpoints"."""
    return f"{n} {word if n == 1 else (many or word + 's')}"
