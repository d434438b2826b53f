"""What driving a framework's epochs as florc's main loop shares across frameworks
(lightning.py: PyTorch Lightning's fit; huggingface.py: transformers' `Trainer.train`)."""

from __future__ import annotations

import importlib
import inspect
import types
from collections.abc import Callable
from typing import Any

from florc.contract import LoopManifest
from florc.errors import UsageError
from florc.runtime import api


class FrameworkRefused(UsageError):
    """The framework runs in a way florc cannot replay exactly: said where the script calls it."""


def manifest_for(loop_id: str, framework: dict[str, Any] | None, paths: list[str]) -> LoopManifest:
    """The main loop's manifest: where the framework call is, and the scope's paths (all of them
    required: a boundary's checkpoint holds them all)."""
    fw = framework or {}
    return LoopManifest(
        loop_id=loop_id,
        relpath=str(fw.get("relpath", loop_id.rsplit(":", 2)[0])),
        line=int(fw.get("line", 0)),
        col=int(fw.get("col", 0)),
        kind="for",
        scope="",
        parent_loop=None,
        changeset=list(paths),
        required=list(paths),
        iterated=[],
        unbounded=[],
    )


def where(manifest: LoopManifest) -> str:
    return f"{manifest.relpath}:{manifest.line}:{manifest.col}"


def _plain(value: Any, depth: int = 0) -> bool:
    """Whether value is plain data (numbers, text, None, tensors, arrays, and lists, tuples,
    sets and dicts of them): state a script keeps, not a reference to another object."""
    if depth > 8:
        return False
    if value is None or isinstance(value, bool | int | float | complex | str | bytes):
        return True
    kind = type(value)
    if kind.__module__.startswith(("torch", "numpy")) and kind.__name__ in (
        "Tensor",
        "ndarray",
        "float64",
        "float32",
        "int64",
        "int32",
    ):
        return not (kind.__name__ == "Tensor" and isinstance(value, _parameter_types()))
    if isinstance(value, list | tuple | set | frozenset):
        return all(_plain(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(_plain(k, depth + 1) and _plain(v, depth + 1) for k, v in value.items())
    return False


def _parameter_types() -> tuple[type, ...]:
    import sys

    torch = sys.modules.get("torch")
    return (torch.nn.Parameter,) if torch is not None else ()


def plain_attributes(obj: Any) -> dict[str, Any]:
    """An object's own public attributes that hold plain data (`self.history = []`, a
    counter): what a framework's checkpoint leaves out of a user's LightningModule or callback.
    References to other objects (a dataset, the trainer, a config) are left as they are."""
    return {k: v for k, v in vars(obj).items() if not k.startswith("_") and _plain(v)}


WRAPPED = "__florc_wrapped__"  # set on a framework method florc has wrapped (once per class)


def wrap_entry(
    cls: type,
    name: str,
    drives: Callable[[str | None], bool],
    callbacks_module: str,
    callback_class: Callable[[types.ModuleType], type],
    run: Callable[..., Any],
) -> None:
    """Wrap the framework's training entry (`Trainer.fit`, `Trainer.train`): under a session
    whose main loop is that framework's epochs (drives(main loop id)), and not yet driven in
    this run, call run(session, trainer, original, signature, callback class, args, kwargs);
    otherwise the original, untouched."""
    original = getattr(cls, name)
    if getattr(original, WRAPPED, False):
        return
    signature = inspect.signature(original)

    def entry(self: Any, *args: Any, **kwargs: Any) -> Any:
        session: Any = api._session
        if (
            session is None
            or not drives(getattr(session, "main_loop_id", None))
            or session.main is not None
            or session.main_done
        ):
            return original(self, *args, **kwargs)
        callback_cls = callback_class(importlib.import_module(callbacks_module))
        return run(session, self, original, signature, callback_cls, args, kwargs)

    setattr(entry, WRAPPED, True)
    entry.__wrapped__ = original  # type: ignore[attr-defined]
    entry.__doc__ = original.__doc__
    entry.__name__ = name
    setattr(cls, name, entry)
