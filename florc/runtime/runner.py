"""Run an instrumented script as `__main__`, as `python train.py args` would.

The script gets its own argv, `sys.path[0]` (its folder), `__file__` and a fresh `__main__`
module; the project's own modules it imports are instrumented by an import hook (files under
the project root only, never installed packages). Tracebacks are shown without florc's frames.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import traceback
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from florc.contract import FileManifest
from florc.runtime import api, capture, intercept
from florc.runtime.frameworks import FrameworkRefused
from florc.runtime.session import ReplayFinished, Session

# compile_module(path, module name) -> (code object, the file's compile result), or None to
# import the module unchanged
ModuleCompiler = Callable[[Path, str], "tuple[Any, FileManifest] | None"]


@dataclass
class RunOutcome:
    status: str  # done | failed | interrupted
    exit_code: int
    error: str | None = None


class _InstrumentingLoader(importlib.abc.Loader):
    def __init__(self, path: Path, code: Any) -> None:
        self.path = path
        self.code = code

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        exec(self.code, module.__dict__)


class ProjectImportHook(importlib.abc.MetaPathFinder):
    def __init__(
        self,
        root: Path,
        is_project_file: Callable[[Path], bool],
        compile_module: ModuleCompiler,
        session: Session,
    ) -> None:
        self.root = root
        self.is_project_file = is_project_file
        self.compile_module = compile_module
        self.session = session

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        root = str(self.root)
        if path is not None and not any(str(p).startswith(root) for p in path):
            return None  # a submodule of an installed package: the usual finders handle it
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.origin is None or not spec.origin.startswith(root):
            return None
        origin = Path(spec.origin)
        if origin.suffix != ".py" or not self.is_project_file(origin):
            return None
        compiled = self.compile_module(origin, fullname)
        if compiled is None:
            return spec
        code, fm = compiled
        self.session.register(fm)
        spec.loader = _InstrumentingLoader(origin, code)
        return spec


def _florc_frame(filename: str) -> bool:
    here = Path(__file__).resolve().parent.parent
    try:
        return Path(filename).resolve().is_relative_to(here)
    except (OSError, ValueError):
        return False


def format_user_traceback(exc: BaseException) -> str:
    tb = exc.__traceback__
    frames = [f for f in traceback.extract_tb(tb) if not _florc_frame(f.filename)]
    lines = ["Traceback (most recent call last):\n"]
    lines += traceback.format_list(frames)
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines)


def run_script(
    session: Session, code: Any, script: Path, argv: list[str], hook: ProjectImportHook | None
) -> RunOutcome:
    module = types.ModuleType("__main__")
    module.__file__ = str(script)
    module.__dict__["__builtins__"] = __builtins__
    saved_main = sys.modules.get("__main__")
    saved_argv, saved_path0 = sys.argv, sys.path[0] if sys.path else None
    saved_cwd = os.getcwd()
    sys.modules["__main__"] = module
    sys.argv = [str(script), *argv]
    if sys.path:
        sys.path[0] = str(script.parent)
    else:
        sys.path.append(str(script.parent))
    if hook is not None:
        sys.meta_path.insert(0, hook)
    streams = capture.install(session)
    finder = intercept.install()
    api.activate(session)
    outcome = RunOutcome("done", 0)
    try:
        exec(code, module.__dict__)
    except ReplayFinished:
        pass
    except SystemExit as exc:
        code_ = exc.code
        if code_ is None or code_ == 0:
            outcome = RunOutcome("done", 0)
        elif isinstance(code_, int):
            outcome = RunOutcome("failed", code_, f"the script exited with status {code_}")
        else:
            capture.real_stderr().write(f"{code_}\n")
            outcome = RunOutcome("failed", 1, str(code_))
    except KeyboardInterrupt:
        outcome = RunOutcome("interrupted", 130, "interrupted (Ctrl-C)")
    except FrameworkRefused as exc:  # said where the script calls the framework, no traceback
        capture.real_stderr().write(f"florc: {exc}\n")
        outcome = RunOutcome("failed", exc.exit_code, str(exc))
    except BaseException as exc:  # noqa: BLE001 - the user's own error, shown as Python would
        capture.real_stderr().write(format_user_traceback(exc))
        outcome = RunOutcome("failed", 1, f"{type(exc).__name__}: {exc}")
    finally:
        api.deactivate()
        intercept.uninstall(finder)
        capture.uninstall(streams)
        # before __main__ is put back: checkpoints still queued may name the script's classes
        session.finish()
        if hook is not None and hook in sys.meta_path:
            sys.meta_path.remove(hook)
        sys.argv = saved_argv
        if saved_path0 is not None and sys.path:
            sys.path[0] = saved_path0
        if saved_main is not None:
            sys.modules["__main__"] = saved_main
        os.chdir(saved_cwd)
    return outcome
