"""The compiler's output as plain data: what the runtime, the compile cache and replay read.

Nothing here imports libcst: a `florc record` that finds its compile result in the cache never
loads the compiler.
"""

from __future__ import annotations

import ast
import difflib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from florc import __version__


@dataclass
class LoopManifest:
    loop_id: str
    relpath: str
    line: int
    col: int
    kind: str
    scope: str
    parent_loop: str | None
    changeset: list[str]  # access paths "model", "self.step", "@pkg.mod:name"
    bound: list[str]  # names the loop binds
    required: list[str]  # paths that must be restored (the rest are kept when possible)
    iterated: list[str]  # paths only iterated over (re-iterables need no restore)
    unbounded: list[str]  # reasons, "path:line:col: why"; non-empty -> re-executed at replay
    callees: list[str]
    log_statements: list[str]  # normalised code of log statements lexically inside
    instrumented: bool = True
    # paths of the changeset (or attributes under them: "timer.t0") holding a value derived
    # from a clock or unseeded randomness -> "clock" | "random"; left out of fidelity checks
    left_out: dict[str, str] = field(default_factory=dict)


@dataclass
class FileManifest:
    relpath: str
    module_name: str
    path: str
    source: str
    sha256: str
    instrumented: str
    loops: list[LoopManifest] = field(default_factory=list)
    # per log statement: line, col, end_line, scope, loop, code; and where it prints values
    # derived from a clock or unseeded randomness, "shapes" (its lines: parts ["text", str] or
    # ["value", None | "clock" | "random"]) and "left_out" (that kind; see transforms/clocks.py)
    log_statements: list[dict[str, object]] = field(default_factory=list)
    functions: dict[str, list[str]] = field(default_factory=dict)  # qualname -> log code inside


@dataclass
class CompileResult:
    script: str  # relpath of the entry script
    root: str
    main_loop: str | None
    main_loop_reason: str
    files: dict[str, FileManifest]  # by relpath
    main_loop_rule: str = ""  # "pragma" | "trains" | "fallback" | "" (no main loop)
    # the call that hands training to an installed package, when no loop of the project trains:
    # {"framework": "PyTorch Lightning", "code": "trainer.fit(model)", "relpath", "line", "col"}
    framework: dict[str, Any] | None = None
    florc_version: str = __version__
    warnings: list[str] = field(default_factory=list)  # "path:line:col: ..." nondeterminism

    def loop(self, loop_id: str) -> LoopManifest | None:
        relpath = loop_id.rsplit(":", 2)[0]
        fm = self.files.get(relpath)
        if fm is None:
            return None
        return next((lp for lp in fm.loops if lp.loop_id == loop_id), None)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompileResult:
        files = {
            rel: FileManifest(
                **{
                    **fm,
                    "loops": [LoopManifest(**lp) for lp in fm["loops"]],
                }
            )
            for rel, fm in data["files"].items()
        }
        return cls(**{**data, "files": files})


def line_map(original: str, instrumented: str) -> list[int]:
    """For each instrumented line (1-based index), the original line it came from."""
    a = [line.strip() for line in original.splitlines()]
    b = [line.strip() for line in instrumented.splitlines()]
    mapping = [0] * (len(b) + 1)
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for i, j, n in matcher.get_matching_blocks():
        for k in range(n):
            mapping[j + k + 1] = i + k + 1
    # generated lines take the position of the next original line (the statement they wrap)
    nxt = len(a) or 1
    for j in range(len(b), 0, -1):
        if mapping[j]:
            nxt = mapping[j]
        else:
            mapping[j] = nxt
    return mapping


def compile_instrumented(original: str, instrumented: str, filename: str) -> object:
    """Compile with every position mapped back to the user's own file and line."""
    tree = ast.parse(instrumented, filename=filename)
    mapping = line_map(original, instrumented)
    for node in ast.walk(tree):
        if hasattr(node, "lineno") and node.lineno is not None:
            node.lineno = mapping[min(node.lineno, len(mapping) - 1)]
            end = getattr(node, "end_lineno", None)
            if end is not None:
                node.end_lineno = max(node.lineno, mapping[min(end, len(mapping) - 1)])
    return compile(tree, filename, "exec", dont_inherit=True)


def is_project_file(path: Path, root: Path) -> bool:
    """A Python file of the user's project (compiled with the script), not an installed package."""
    try:
        rel = path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    bad = {"site-packages", "dist-packages", ".florc", ".venv", "venv", ".git", "__pycache__"}
    return not any(p in bad for p in rel.parts) and path.suffix == ".py"
