"""What florc learns from the libraries a script calls: the options argparse parsed, and the
scalars a TensorBoard writer was given.

- `ArgumentParser.parse_known_args` (which `parse_args` calls): the first top-level parse's
  result is handed to the session (`params_parsed`), which record keeps as the run's params.
- `SummaryWriter.add_scalar(tag, value, step)` and `add_scalars(main_tag, {key: value}, step)`
  of `torch.utils.tensorboard` and `tensorboardX`: each value is filed through the session as
  `florc.log` files one (`log_scalar`), under the statement that called it, with step =
  global_step when given; `add_scalars` names its values `main_tag/key`.

Nothing here imports argparse or a writer module: their classes are wrapped when the script
imports them (a meta-path finder that only looks at those module names), or at once where they
are imported already. The wrappers stay in place after a run and do nothing without a session.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Callable
from typing import Any

from florc.runtime import api, huggingface, lightning

WRITER_MODULES = ("torch.utils.tensorboard.writer", "tensorboardX.writer")
_WRAPPED = "__florc_wrapped__"


def _argparse(module: types.ModuleType) -> None:
    cls = module.ArgumentParser
    original = cls.parse_known_args
    if getattr(original, _WRAPPED, False):
        return
    depth = [0]

    def parse_known_args(self: Any, args: Any = None, namespace: Any = None) -> Any:
        depth[0] += 1
        try:
            result = original(self, args, namespace)
        finally:
            depth[0] -= 1
        session = api._session
        if session is not None and depth[0] == 0:
            report = getattr(session, "params_parsed", None)
            if report is not None:
                try:
                    given = list(sys.argv[1:] if args is None else args)
                    report(*parsed_params(self, result[0], given))
                except Exception:  # noqa: BLE001 - never fail the script's own parse
                    pass
        return result

    setattr(parse_known_args, _WRAPPED, True)
    parse_known_args.__wrapped__ = original  # type: ignore[attr-defined]
    parse_known_args.__doc__ = original.__doc__
    cls.parse_known_args = parse_known_args


def _json_scalar(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def parsed_params(parser: Any, namespace: Any, args: list[str]) -> tuple[dict[str, Any], list[str]]:
    """The parsed options as JSON scalars (others as str()), and the names of those the command
    line gave or that differ from their defaults."""
    values = {k: _json_scalar(v) for k, v in vars(namespace).items()}
    defaults: dict[str, Any] = {}
    given: set[str] = set()
    for action in parser._actions:
        dest = action.dest
        if dest == "help" or dest not in values:
            continue
        if action.default is not None and action.default != "==SUPPRESS==":
            defaults[dest] = action.default
        if not action.option_strings:
            given.add(dest)  # a positional argument
        for opt in action.option_strings:
            long = opt.startswith("--")
            if any(
                a == opt or (long and a.startswith(opt + "=")) or (not long and a.startswith(opt))
                for a in args
                if a.startswith("-")
            ):
                given.add(dest)
    defaults.update(getattr(parser, "_defaults", {}))
    for dest, value in values.items():
        if not _same(value, defaults.get(dest)):
            given.add(dest)
    return values, [k for k in values if k in given]  # in the parser's order


def _same(value: Any, default: Any) -> bool:
    if value == default:
        return True
    try:
        return float(str(value)) == float(str(default))
    except ValueError:
        return str(value) == str(default)


def _number(value: Any) -> Any:
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return item()
        except (TypeError, ValueError, RuntimeError):
            return value
    return value


def _step(step: Any) -> int | None:
    if step is None:
        return None
    try:
        return int(_number(step))
    except (TypeError, ValueError):
        return None


def _writer(module: types.ModuleType) -> None:
    cls = getattr(module, "SummaryWriter", None)
    if cls is None or getattr(cls.add_scalar, _WRAPPED, False):
        return
    add_scalar, add_scalars = cls.add_scalar, cls.add_scalars
    inside = [False]  # one library method may call the other: file a value once

    def file(tag: str, value: Any, step: Any) -> None:
        session = api._session
        report = getattr(session, "log_scalar", None)
        if report is not None:
            report(str(tag), _number(value), _step(step))

    def scalar_(
        self: Any, tag: Any, scalar_value: Any, global_step: Any = None, *a: Any, **k: Any
    ) -> Any:
        if inside[0]:
            return add_scalar(self, tag, scalar_value, global_step, *a, **k)
        inside[0] = True
        try:
            out = add_scalar(self, tag, scalar_value, global_step, *a, **k)
            file(tag, scalar_value, global_step)
        finally:
            inside[0] = False
        return out

    def scalars_(
        self: Any, main_tag: Any, tag_scalar_dict: Any, global_step: Any = None, *a: Any, **k: Any
    ) -> Any:
        if inside[0]:
            return add_scalars(self, main_tag, tag_scalar_dict, global_step, *a, **k)
        inside[0] = True
        try:
            out = add_scalars(self, main_tag, tag_scalar_dict, global_step, *a, **k)
            for key, value in dict(tag_scalar_dict).items():
                file(f"{main_tag}/{key}", value, global_step)
        finally:
            inside[0] = False
        return out

    for new, old in ((scalar_, add_scalar), (scalars_, add_scalars)):
        setattr(new, _WRAPPED, True)
        new.__dict__["__wrapped__"] = old
        new.__doc__ = old.__doc__
        new.__name__ = old.__name__
    cls.add_scalar, cls.add_scalars = scalar_, scalars_


PATCHES: dict[str, Callable[[types.ModuleType], None]] = {
    "argparse": _argparse,
    **{name: _writer for name in WRITER_MODULES},
    # Lightning's fit, driven as the main loop when the compile result says so (lightning.py)
    **{name: lightning.patch_trainer for name in lightning.TRAINER_MODULES},
    # transformers' Trainer.train, likewise (huggingface.py)
    **{name: huggingface.patch_trainer for name in huggingface.TRAINER_MODULES},
}


class _Loader(importlib.abc.Loader):
    """The module's own loader, then the patch."""

    def __init__(self, loader: Any, patch: Callable[[types.ModuleType], None]) -> None:
        self.loader = loader
        self.patch = patch

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        self.loader.exec_module(module)
        try:
            self.patch(module)
        except Exception:  # noqa: BLE001 - a library florc does not know as it expects
            pass


class Finder(importlib.abc.MetaPathFinder):
    """Wraps the classes above as their modules are imported."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        patch = PATCHES.get(fullname)
        if patch is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Loader(spec.loader, patch)
                return spec
        return None


def install() -> Finder:
    """Wrap what is imported already; wrap the rest when it is imported (until uninstall)."""
    for name, patch in PATCHES.items():
        module = sys.modules.get(name)
        if module is not None:
            try:
                patch(module)
            except Exception:  # noqa: BLE001
                pass
    finder = Finder()
    sys.meta_path.insert(0, finder)
    return finder


def uninstall(finder: Finder) -> None:
    if finder in sys.meta_path:
        sys.meta_path.remove(finder)
