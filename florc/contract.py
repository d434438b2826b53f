"""The contract between compile time and run time: typed, standard library only.

The compiler (`florc/transforms/`) produces a `CompileResult`; the runtime, the compile cache and
replay read it. Nothing here imports libcst or the runtime, so a `florc record` that finds its
compile result in the cache never loads the compiler.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from florc._version import __version__


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
    required: list[str]  # paths that must be restored (the rest are kept when possible)
    iterated: list[str]  # paths only iterated over (re-iterables need no restore)
    unbounded: list[str]  # reasons, "path:line:col: why"; non-empty -> re-executed at replay
    instrumented: bool = True
    # paths of the changeset (or attributes under them: "timer.t0") holding a value derived
    # from a clock or unseeded randomness -> "clock" | "random"; left out of fidelity checks
    left_out: dict[str, str] = field(default_factory=dict)


@dataclass
class FileManifest:
    relpath: str
    path: str
    source: str
    sha256: str
    instrumented: str
    loops: list[LoopManifest] = field(default_factory=list)
    # per log statement: line, col, end_line, scope, loop, code; and where it prints values
    # derived from a clock or unseeded randomness, "shapes" (its lines: parts ["text", str] or
    # ["value", None | "clock" | "random"]) and "left_out" (that kind; see transforms/clocks.py)
    log_statements: list[dict[str, object]] = field(default_factory=list)


@dataclass
class CompileResult:
    script: str  # relpath of the entry script
    root: str
    main_loop: str | None
    main_loop_reason: str
    files: dict[str, FileManifest]  # by relpath
    # "pragma" | "trains" | "fallback" | "framework" (a framework's epochs) | "" (no main loop)
    main_loop_rule: str = ""
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


# a main loop that is a framework's epochs (PyTorch Lightning's `trainer.fit`, transformers'
# `trainer.train()`): its id names the file of the call that runs them and the framework,
# "relpath:<lightning>:0", "relpath:<transformers>:0" (stable when lines are added above it;
# CompileResult.framework says where the call is); the runtime drives it from the framework's
# hooks (runtime/lightning.py, runtime/huggingface.py)
LIGHTNING_MARK = "<lightning>"
TRANSFORMERS_MARK = "<transformers>"
FRAMEWORK_MARKS = {
    "PyTorch Lightning": LIGHTNING_MARK,
    "Hugging Face transformers": TRANSFORMERS_MARK,
}


def framework_loop_id(relpath: str, framework: str) -> str:
    """The main-loop id of a framework's epochs run from a call in relpath (framework: its name
    in FRAMEWORK_MARKS)."""
    return f"{relpath}:{FRAMEWORK_MARKS[framework]}:0"


def possessive(name: str) -> str:
    """ "PyTorch Lightning's", "Hugging Face transformers'"."""
    return f"{name}'" if name.endswith("s") else f"{name}'s"


def lightning_loop_id(relpath: str) -> str:
    return f"{relpath}:{LIGHTNING_MARK}:0"


def transformers_loop_id(relpath: str) -> str:
    return f"{relpath}:{TRANSFORMERS_MARK}:0"


def loop_framework(loop_id: str | None) -> str | None:
    """The framework whose epochs a main-loop id names (None: a loop of the project's own)."""
    if loop_id is None:
        return None
    for name, mark in FRAMEWORK_MARKS.items():
        if f":{mark}:" in loop_id:
            return name
    return None


def is_framework_loop(loop_id: str | None) -> bool:
    return loop_framework(loop_id) is not None


def is_lightning_loop(loop_id: str | None) -> bool:
    return loop_id is not None and f":{LIGHTNING_MARK}:" in loop_id


def is_transformers_loop(loop_id: str | None) -> bool:
    return loop_id is not None and f":{TRANSFORMERS_MARK}:" in loop_id


# the recorded start state (RNGs before the script's first line) is stored as this loop's
# checkpoint at iteration 0
START_LOOP = "<start>"


@dataclass
class ReplayPlan:
    targets: list[int]  # main-loop iteration indices to show, sorted
    probed: set[str]  # loop ids that must run when shown
    new_statements: set[str]  # "relpath:line" of new log statements
    run_after_loop: bool  # code after the main loop holds a new log statement
    checkpoints: dict[tuple[str, int, int], Any]  # (loop, iteration, occurrence) -> CheckpointRow
    final_boundary: int | None  # boundary index of the recorded loop's end
    statement_map: dict[str, str] = field(default_factory=dict)  # edited -> recorded statement
    # what the recording logged: (recorded statement, iteration, step) -> texts in order
    recorded_values: dict[tuple[str, int | None, int | None], list[str]] = field(
        default_factory=dict
    )
    # a rank of a distributed job (None: not one); its checkpoints leave out what rank 0 wrote
    # for every rank: rank 0's rows, by (loop, iteration, occurrence)
    rank: int | None = None
    replicated: dict[tuple[str, int, int], Any] = field(default_factory=dict)


@dataclass
class LogLine:
    statement: str
    iteration: int | None
    epoch: Any
    step: int | None
    text: str
    new: bool
    stream: str = "stdout"
    after_loop: bool = False  # written after the main loop ended
    shown: str | None = None  # what replay printed, when not the text itself (florc.log)
    rank: int | None = None  # the rank that wrote it, in a distributed job


@dataclass
class Stats:
    checkpoints: int = 0
    unusable: int = 0
    skipped: int = 0  # opportunities the overhead budget passed over
    flush_seconds: float = 0.0  # waiting at the end for the last checkpoints to be written
    restored_blocks: int = 0
    probed_blocks: int = 0
    restored_boundaries: int = 0
    stopped_warned: bool = False  # record: said once that checkpoints could not be written
    rerun_cheaper: int = 0  # blocks re-executed because that was faster than restoring them
    bytes_read: int = 0  # checkpoint bytes read from the store (restores and fidelity checks)
    notes: list[str] = field(default_factory=list)
    # record: why checkpoints could not be taken: reason -> [how many, the object's path or None]
    unusable_reasons: dict[str, list[Any]] = field(default_factory=dict)


@dataclass
class Evidence:
    where: str  # "train.py:59" (a block) or "train.py:68" (a log statement)
    epoch: Any
    diff: float | None  # 0.0 identical; the max abs difference; None: differs in kind
    ok: bool  # within tolerance
    compared: bool = True  # False: every value in it was left out
    # values left out of the comparison, by why: "clock", "random" (unseeded), or another word
    left_out: dict[str, int] = field(default_factory=dict)
    rank: int | None = None  # the rank it was found on, in a distributed job
