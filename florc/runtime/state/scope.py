"""Access paths and the frames they are resolved in.

An access path names a value the way the compiler found it in the source: `model`,
`trainer.optimizer`, or `@pkg.mod:name` for a global of another module. Paths are resolved
against a running frame: a function's locals (and cells), else its module's globals. A local
rebound by restore is written back into the frame itself (`commit`), since writing to
`frame.f_locals` alone does not change a running function's variables before Python 3.13.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from florc.runtime.state.nodes import MISSING


class Scope:
    """Where access paths are resolved: a frame's locals, its globals, other modules."""

    def __init__(self, frame: types.FrameType) -> None:
        self.frame = frame
        code = frame.f_code
        self.local_names = set(code.co_varnames) | set(code.co_cellvars) | set(code.co_freevars)
        self.is_module = frame.f_globals is frame.f_locals
        self.locals = frame.f_locals
        self.globals = frame.f_globals
        self.local_writes: dict[str, Any] = {}

    def _root(self, name: str) -> tuple[dict[str, Any] | None, str]:
        if name.startswith("@"):
            modname, _, var = name[1:].partition(":")
            mod = sys.modules.get(modname)
            return (vars(mod) if mod is not None else None), var
        if not self.is_module and name in self.local_names:
            return self.locals, name
        return self.globals, name

    def get(self, path: str) -> Any:
        """The object at `path` now, or MISSING when some part of it is not bound."""
        parts = split(path)
        ns, name = self._root(parts[0])
        if ns is None or name not in ns:
            return MISSING
        obj = ns[name]
        for attr in parts[1:]:
            try:
                obj = getattr(obj, attr)
            except Exception:  # noqa: BLE001
                return MISSING
        return obj

    def set(self, path: str, value: Any) -> None:
        """Bind `path` to `value` (a local is written to the frame on `commit`)."""
        parts = split(path)
        if len(parts) == 1:
            ns, name = self._root(parts[0])
            if ns is None:
                return
            if ns is self.locals and not self.is_module:
                self.local_writes[name] = value
            ns[name] = value
            return
        parent = self.get(".".join(parts[:-1]))
        if parent is not MISSING:
            setattr(parent, parts[-1], value)

    def commit(self) -> None:
        """Write rebound locals back into the running function's frame."""
        if self.local_writes:
            write_frame_locals(self.frame, self.local_writes)
            self.local_writes = {}


def split(path: str) -> list[str]:
    """A path's root name (`@mod:var` whole) and its attribute names."""
    if path.startswith("@"):
        head, _, rest = path.partition(":")
        var, *attrs = rest.split(".")
        return [f"{head}:{var}", *attrs]
    return path.split(".")


def write_frame_locals(frame: types.FrameType, values: dict[str, Any]) -> None:
    """Set local variables of a running function."""
    if sys.version_info >= (3, 13):
        for k, v in values.items():
            frame.f_locals[k] = v  # write-through proxy (PEP 667)
        return
    import ctypes

    f_locals = frame.f_locals
    f_locals.update(values)
    ctypes.pythonapi.PyFrame_LocalsToFast(ctypes.py_object(frame), ctypes.c_int(0))
