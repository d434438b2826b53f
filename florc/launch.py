"""What record and replay share to run a script: the script's path, the environment it runs
in, its compiled modules behind an import hook, torch's deterministic mode, and what to say when
a script has no main loop."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from florc._version import __version__
from florc.contract import CompileResult, FileManifest, possessive
from florc.errors import UsageError
from florc.project import is_project_file
from florc.report import plural
from florc.runtime.linemap import compile_instrumented
from florc.runtime.runner import ProjectImportHook
from florc.runtime.session import Session

# what decides torch's thread count (and so how floating-point sums are split)
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def thread_vars(threads: int, recorded: dict[str, str] | None = None) -> dict[str, str]:
    """The thread-count variables a replay runs with: the recording's own where it set them
    (they decided its thread counts), the count for the others."""
    out = {var: str(threads) for var in THREAD_VARS}
    out.update({k: v for k, v in (recorded or {}).items() if k in THREAD_VARS})
    return out


def script_path(script: str) -> Path:
    path = Path(script)
    if not path.exists():
        raise UsageError(f"{script}: no such file. Give the path of the training script.")
    if path.is_dir():
        raise UsageError(f"{script}: is a folder. Give the path of the training script.")
    return path.resolve()


def environment() -> dict[str, Any]:
    def version(pkg: str) -> str | None:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "torch": version("torch"),
        "numpy": version("numpy"),
        "florc": __version__,
        "platform": platform.platform(),
        # what decides torch's thread count (and so how floating-point sums are split)
        "thread_env": {k: os.environ[k] for k in THREAD_VARS if k in os.environ},
    }


def git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def git_dirty(root: Path) -> bool | None:
    """Whether the work tree has changes to tracked files (None: not a git repository)."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def compiled_code(result: CompileResult, relpath: str) -> Any:
    fm = result.files[relpath]
    return compile_instrumented(fm.source, fm.instrumented, fm.path)


def import_hook(result: CompileResult, root: Path, session: Session) -> ProjectImportHook:
    by_path = {Path(fm.path).resolve(): rel for rel, fm in result.files.items()}

    def compile_module(path: Path, fullname: str) -> tuple[Any, FileManifest] | None:
        rel = by_path.get(path.resolve())
        if rel is None or rel == result.script:
            return None
        return compiled_code(result, rel), result.files[rel]

    return ProjectImportHook(root, lambda p: is_project_file(p, root), compile_module, session)


def describe_main(result: CompileResult) -> str:
    fw = result.framework
    if result.main_loop is None and fw:
        return f"no main loop of its own: training runs inside {fw['framework']}"
    if result.main_loop is None:
        return "no main loop found"
    if result.main_loop_rule == "framework" and fw:
        who = possessive(str(fw["framework"]))
        return f"main loop: {who} epochs, `{fw['code']}` at {framework_where(fw)}"
    lp = result.loop(result.main_loop)
    assert lp is not None
    blocks = sum(
        1
        for fm in result.files.values()
        for other in fm.loops
        if other.parent_loop == lp.loop_id and other.instrumented
    )
    out = f"main loop at {lp.relpath}:{lp.line}, {plural(blocks, 'block')} under it"
    if result.main_loop_rule == "fallback":
        out += "; no loop trains, so the first loop with a nested loop"
    return out


def framework_where(fw: dict[str, Any]) -> str:
    return f"{fw['relpath']}:{fw['line']}:{fw['col']}"


def what_works(result: CompileResult) -> str:
    """For a script without a main loop: what record and replay do with it, and what works."""
    fw = result.framework
    own = (
        "a training loop of your own (one that calls model.training_step(batch, i), "
        "loss.backward() and optimizer.step() per batch)"
        if fw
        else "a loop of your own that trains (calls loss.backward() or optimizer.step())"
    )
    return (
        "Record runs the script unchanged, without checkpoints; replay has no epochs to restore "
        "(run the edited script again to see new statements). florc can replay "
        f"{own}, or a loop of yours marked `# florc: main-loop`."
    )


def no_main_loop(result: CompileResult) -> str:
    """Why a script has no main loop, at the place that explains it, and what works today."""
    fw = result.framework
    if fw:
        head = (
            f"{framework_where(fw)}: the training loop runs inside {fw['framework']} "
            f"(`{fw['code']}`); florc cannot checkpoint a loop inside an installed package yet."
        )
    else:
        head = f"{result.script}: no main loop: {result.main_loop_reason}."
    return f"{head}\n  {what_works(result)}"


def mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def make_deterministic() -> None:
    """Deterministic algorithms in torch, cuDNN and cuBLAS, before the script runs."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
    try:
        import torch
    except ImportError:
        raise UsageError(
            "--deterministic sets torch's deterministic mode; torch is not installed"
        ) from None
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
