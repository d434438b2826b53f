"""Replay never changes files the recorded run wrote: writes under the project land in the
replay's own folder, and reads of a file the replay wrote see the replay's copy."""

from __future__ import annotations

import builtins
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

_WRITE_MODES = set("wax+")


class FileSandbox:
    def __init__(self, root: Path, folder: Path, store_dir: Path) -> None:
        self.root = root.resolve()
        self.folder = folder
        self.store_dir = store_dir.resolve()
        self.redirected: set[Path] = set()
        self._saved: dict[str, Any] = {}

    def _target(self, file: Any) -> Path | None:
        if not isinstance(file, (str, bytes, os.PathLike)):
            return None
        path = Path(os.fsdecode(file))
        full = (Path.cwd() / path).resolve() if not path.is_absolute() else path.resolve()
        if not full.is_relative_to(self.root) or full.is_relative_to(self.store_dir):
            return None
        return full

    def _shadow(self, full: Path) -> Path:
        return self.folder / full.relative_to(self.root)

    def map(self, file: Any, writing: bool) -> Any:
        full = self._target(file)
        if full is None:
            return file
        shadow = self._shadow(full)
        if writing:
            shadow.parent.mkdir(parents=True, exist_ok=True)
            if full not in self.redirected and full.exists() and not shadow.exists():
                # appending or updating: start from the recorded content
                shadow.write_bytes(full.read_bytes())
            self.redirected.add(full)
            return str(shadow)
        return str(shadow) if full in self.redirected else file

    def forget(self) -> None:
        """After restoring the recorded run's final state, reads see the recorded files again."""
        self.redirected.clear()

    def install(self) -> None:
        real_open = builtins.open
        self._saved = {
            "open": real_open,
            "io_open": io.open,
            "replace": os.replace,
            "rename": os.rename,
            "remove": os.remove,
            "unlink": os.unlink,
        }

        def sandbox_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            writing = bool(_WRITE_MODES & set(mode))
            if writing and "w" in mode:
                full = self._target(file)
                if full is not None:
                    shadow = self._shadow(full)
                    shadow.parent.mkdir(parents=True, exist_ok=True)
                    self.redirected.add(full)
                    return real_open(str(shadow), mode, *args, **kwargs)
            return real_open(self.map(file, writing), mode, *args, **kwargs)

        def two(fn: Callable[..., Any]) -> Callable[..., Any]:
            def wrapped(src: Any, dst: Any, *a: Any, **k: Any) -> Any:
                return fn(self.map(src, False), self.map(dst, True), *a, **k)

            return wrapped

        def one(fn: Callable[..., Any]) -> Callable[..., Any]:
            def wrapped(path: Any, *a: Any, **k: Any) -> Any:
                full = self._target(path)
                if full is None:
                    return fn(path, *a, **k)
                if full in self.redirected:
                    self.redirected.discard(full)
                    return fn(str(self._shadow(full)), *a, **k)
                return None  # the recorded run's file stays

            return wrapped

        builtins.open = sandbox_open
        io.open = sandbox_open
        os.replace = two(os.replace)
        os.rename = two(os.rename)
        os.remove = one(os.remove)
        os.unlink = one(os.unlink)

    def uninstall(self) -> None:
        if not self._saved:
            return
        builtins.open = self._saved["open"]
        io.open = self._saved["io_open"]
        os.replace = self._saved["replace"]
        os.rename = self._saved["rename"]
        os.remove = self._saved["remove"]
        os.unlink = self._saved["unlink"]
        self._saved = {}
