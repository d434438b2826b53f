"""What record and replay share while the script runs: loop roles, statement attribution,
output lines, logged values, evidence.

A session is active while florc runs a script; `florc.runtime.api` hands it the calls of the
generated code and of the public API. It gives each loop its role when the loop starts
(loops.py), files every output line under the log statement that wrote it (with the main-loop
iteration, epoch and step it belongs to), and collects the evidence a replay's fidelity verdict
is made of. The loops call the hooks below at their boundaries; `RecordSession` (record.py) and
`ReplaySession` (replay.py) implement them. This base does nothing at a hook: a loop under it
runs as written.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar, cast

from florc.contract import CompileResult, FileManifest, LogLine, LoopManifest, Stats
from florc.runtime import distributed, fidelity
from florc.runtime.api import PLAIN_LOOP, LoopContext
from florc.runtime.loops import (
    Block,
    InnerLoop,
    MainLoop,
    NamedScope,
    StepLoop,
    hand_manifest,
    unknown_loop,
)
from florc.store.index import Store

T = TypeVar("T")


class ReplayFinished(BaseException):
    """Raised out of the main loop once every requested iteration has run."""


class Session:
    def __init__(self, store: Store, run_id: int, compiled: CompileResult) -> None:
        self.store = store
        self.run_id = run_id
        self.main_loop_id: str | None = compiled.main_loop
        self.framework: dict[str, Any] | None = compiled.framework  # the fit call, if any
        self.loops: dict[str, LoopManifest] = {}
        self.loops_at: dict[tuple[str, int], LoopManifest] = {}  # (file, line) -> its loop
        self.statement_code: dict[str, str] = {}
        # log statements printing values derived from a clock or unseeded randomness:
        # "relpath:line" -> (line shapes, kind); those values are left out of the comparison
        self.statement_shapes: dict[str, tuple[list[Any], str]] = {}
        for fm in compiled.files.values():
            self.register(fm)
        self.new_statements: set[str] = set()  # "relpath:line" of log statements added since
        self.main: MainLoop | None = None
        self.block: InnerLoop | None = None  # the loop running directly under the main loop
        self.iteration: int | None = None
        self.epoch: Any = None
        self.statement: str | None = None
        self.occurrences: dict[str, int] = {}
        self.callees: dict[str, set[str]] = {}
        self.lines: list[LogLine] = []
        self.stats = Stats()
        self.main_done = False
        self.on_progress: Callable[[], None] | None = None  # a main-loop iteration completed
        self.evidence: list[fidelity.Evidence] = []  # replay: recomputed vs recorded
        # the objects of the florc.checkpoint(...) contexts open now, outermost first
        self.named: list[Mapping[str, object]] = []
        # the script's options as argparse parsed them first (intercept.py): {"params": ...,
        # "params_set": the names the command line gave or that differ from their defaults}
        self.params: dict[str, Any] | None = None
        info = distributed.current()
        self.rank: int | None = info.rank if info is not None else None  # in a distributed job

    def register(self, fm: FileManifest) -> None:
        """Know one compiled file (the script's, or a project module's as it is imported)."""
        for lp in fm.loops:
            self.loops[lp.loop_id] = lp
            self.loops_at[(fm.path, lp.line)] = lp
        self.statement_code.update(file_statement_codes(fm))
        for ls in fm.log_statements:
            if ls.get("left_out"):
                sid = f"{fm.relpath}:{ls['line']}"
                shapes = cast("list[Any]", ls.get("shapes", []))
                self.statement_shapes[sid] = (shapes, str(ls["left_out"]))

    # the calls of generated code and of the public API ------------------------------------
    def loop(self, loop_id: str, changes: tuple[str, ...] = ()) -> LoopContext:
        """An instrumented loop starts (`changes`: its changeset as the instrumented source
        names it; the compile result's manifest, from the same compile, is what is used)."""
        if self.main is None and not self.main_done and loop_id == self.main_loop_id:
            self.main = MainLoop(self, self.loops.get(loop_id) or unknown_loop(loop_id))
            return self.main
        if self.main is not None and self.block is None and self.main.in_iteration:
            manifest = self.loops.get(loop_id)
            if manifest is not None and manifest.instrumented:
                return Block(self, manifest)
        return PLAIN_LOOP

    def loop_over(self, name: str, iterable: Iterable[T], where: tuple[str, int]) -> Iterator[T]:
        """`florc.loop(name, iterable)` written by hand, at where (file, line): the outermost
        one is the main loop, checkpointing what `florc.checkpoint` named; one inside an
        iteration of the main loop counts steps; any other runs as written."""
        if self.main is None and not self.main_done:
            objects: dict[str, object] = {}
            for named in self.named:
                objects.update(named)
            manifest = hand_manifest(name, objects, self.loops_at.get(where), where)
            self.main = MainLoop(self, manifest, NamedScope(objects))
            return self.main.drive(iterable)
        if self.main is not None and self.block is None and self.main.in_iteration:
            return StepLoop(self, name).drive(iterable)
        return iter(iterable)

    def checkpoint(self, objects: Mapping[str, object]) -> _Named:
        """`with florc.checkpoint(**objects):` names what the loops started inside checkpoint."""
        return _Named(self, objects)

    def log_statement(self, statement_id: str) -> _StatementContext:
        return _StatementContext(self, statement_id)

    def entered(self, function_key: str) -> None:
        if self.block is not None:
            self.block.callees.add(function_key)

    def log_value(self, name: str, value: Any) -> None:
        stmt = self.statement or "florc.log"
        shown = f"florc.log {name} = {value!r}"
        self._add_line(stmt, f"{name}={value!r}", "stdout", shown)
        self.show_logged(stmt, shown)

    def log_scalar(self, name: str, value: Any, step: int | None) -> None:
        """A writer's `add_scalar(name, value, step)` (intercept.py): filed as `florc.log`
        files a value, with step = the writer's global_step when it was given."""
        stmt = self.statement or "add_scalar"
        shown = f"add_scalar {name} = {value!r}" + ("" if step is None else f" (step {step})")
        self._add_line(stmt, f"{name}={value!r}", "stdout", shown, step)
        self.show_logged(stmt, shown)

    def params_parsed(self, values: dict[str, Any], given: list[str]) -> None:
        """argparse parsed the script's options (intercept.py); the first parse counts."""
        if self.params is None:
            self.params = {"params": values, "params_set": given}
            self.keep_params(self.params)

    # output attribution ---------------------------------------------------------------------
    def step(self) -> int | None:
        return self.block.step if self.block is not None else None

    def is_new(self, statement: str | None) -> bool:
        return statement in self.new_statements

    def should_show(self, statement: str | None) -> bool:
        """Whether output the script writes under this statement reaches the terminal."""
        return True

    def on_line(self, text: str, statement: str | None, stream: str = "stdout") -> None:
        if statement is not None:
            self._add_line(statement, text, stream)

    def _add_line(
        self,
        statement: str,
        text: str,
        stream: str,
        shown: str | None = None,
        step: int | None = None,
    ) -> None:
        line = LogLine(
            statement,
            self.iteration,
            self.epoch,
            self.step() if step is None else step,
            text,
            self.is_new(statement),
            stream,
            self.main_done,
            shown,
            self.rank,
        )
        self.lines.append(line)
        self.line_added(line)

    def log_rows(self, lines: list[LogLine]) -> list[tuple[Any, ...]]:
        return log_rows(lines, self.statement_code)

    # hooks: what record and replay do at the loops' boundaries ------------------------------
    def show_logged(self, statement: str, shown: str) -> None:
        """A `florc.log` value was filed under statement; shown: how it reads."""

    def line_added(self, line: LogLine) -> None:
        """An output line was filed."""

    def keep_params(self, params: dict[str, Any]) -> None:
        """The script's parsed options are known (record keeps them with the run)."""

    def start_main(self, main: MainLoop) -> None:
        """The main loop starts."""

    def at_boundary(self, main: MainLoop, b: int) -> None:
        """The main loop reached boundary b (before iteration b; b = the count at its end)."""

    def begin_iteration(self, main: MainLoop, idx: int, epoch: int | None) -> None:
        """Iteration idx of the main loop starts (epoch: its value, when an int)."""

    def next_iteration(self, main: MainLoop, b: int) -> int | None:
        """At boundary b: the iteration to run next (the loop skips to it), or None to leave
        the loop."""
        return b

    def recorded_end(self) -> int | None:
        """How many iterations the loop ran when recorded (None: unknown)."""
        return None

    def end_main(self, main: MainLoop) -> None:
        """The main loop ended."""

    def start_block(self, block: Block) -> None:
        """A bounded block starts (it may set block.run = False: it is not run)."""

    def end_block(self, block: Block) -> None:
        """A bounded block that ran ended without an exception."""

    def finish(self) -> None:
        """The script ended."""


def file_statement_codes(fm: FileManifest) -> dict[str, str]:
    return {f"{fm.relpath}:{ls['line']}": str(ls["code"]) for ls in fm.log_statements}


def statement_codes(compiled: CompileResult) -> dict[str, str]:
    """ "relpath:line" -> the log statement's code, for every log statement compiled."""
    out: dict[str, str] = {}
    for fm in compiled.files.values():
        out.update(file_statement_codes(fm))
    return out


def log_rows(lines: list[LogLine], statement_code: dict[str, str]) -> list[tuple[Any, ...]]:
    """Log lines as rows of the store's logs table."""
    return [
        (
            ln.statement,
            ln.iteration,
            json.dumps(ln.epoch),
            ln.step,
            statement_code.get(ln.statement, ln.statement),
            ln.text,
            int(ln.new),
        )
        for ln in lines
    ]


class _StatementContext:
    __slots__ = ("outer", "session", "statement")

    def __init__(self, session: Session, statement: str) -> None:
        self.session = session
        self.statement = statement

    def __enter__(self) -> None:
        self.outer = self.session.statement
        self.session.statement = self.statement

    def __exit__(self, *exc: object) -> None:
        self.session.statement = self.outer


class _Named:
    __slots__ = ("objects", "session")

    def __init__(self, session: Session, objects: Mapping[str, object]) -> None:
        self.session = session
        self.objects = objects

    def __enter__(self) -> None:
        self.session.named.append(self.objects)

    def __exit__(self, *exc: object) -> None:
        named = self.session.named
        for i in range(len(named) - 1, -1, -1):
            if named[i] is self.objects:
                del named[i]
                break
