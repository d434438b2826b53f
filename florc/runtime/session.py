"""What record and replay do while the script runs: loop roles, checkpoints, output attribution.

Loop roles, decided when a loop starts:
- the *main loop* (its id comes from the compiler): every iteration boundary is checkpointed at
  record; at replay iterations are skipped, restored from the nearest checkpoint, or run;
- a *block*: a loop started inside the main loop while no other block runs. At record its
  changeset is checkpointed at its end; at replay it is restored instead of run unless it is
  probed (it holds a new log statement) and its iteration is one the user asked for;
- any other loop runs as written.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from florc.contract import CompileResult, LogLine, ReplayPlan, Stats
from florc.runtime import checkpoint, fidelity
from florc.runtime import state as st
from florc.runtime.api import PLAIN_LOOP
from florc.runtime.policy import CheckpointPolicy
from florc.runtime.writer import CheckpointJob, Writer
from florc.store.index import Store


class ReplayFinished(BaseException):
    """Raised out of the main loop once every requested iteration has run."""


class RestoreSpeed:
    """Seconds to restore a checkpoint of n bytes, learnt from the restores of this replay.

    Until a restore has been timed, restoring is assumed to run at PRIOR_BYTES_PER_SECOND plus
    a fixed cost; then at the measured rate. Replay re-runs a block instead of restoring it when
    the block ran faster than that at record (a GPU recomputes faster than a disk delivers).
    """

    PRIOR_BYTES_PER_SECOND = 1e9
    FIXED_SECONDS = 0.001

    def __init__(self) -> None:
        self.nbytes = 0
        self.seconds = 0.0

    def observe(self, nbytes: int, seconds: float) -> None:
        self.nbytes += nbytes
        self.seconds += seconds

    def estimate(self, nbytes: int) -> float:
        if self.seconds > 0 and self.nbytes > 0:
            return nbytes * self.seconds / self.nbytes
        return self.FIXED_SECONDS + nbytes / self.PRIOR_BYTES_PER_SECOND


class Session:
    def __init__(
        self,
        mode: str,
        store: Store,
        run_id: int,
        compiled: dict[str, Any],
        plan: ReplayPlan | None = None,
        writer: Writer | None = None,
        policy: CheckpointPolicy | None = None,
    ) -> None:
        self.mode = mode
        self.store = store
        self.writer = writer
        self.policy = policy
        self.run_id = run_id
        self.main_loop_id: str | None = compiled.get("main_loop")
        self.loops: dict[str, dict[str, Any]] = {}
        self.statement_code: dict[str, str] = {}
        # log statements printing values derived from a clock or unseeded randomness:
        # "relpath:line" -> (line shapes, kind); those values are left out of the comparison
        self.statement_shapes: dict[str, tuple[list[Any], str]] = {}
        self.register(compiled)
        self.plan = plan
        self.main: MainLoop | None = None
        self.block: Block | None = None
        self.iteration: int | None = None
        self.epoch: Any = None
        self.silent = False  # replay: the current iteration is not one the user asked for
        self.statement: str | None = None
        self.occurrences: dict[str, int] = {}
        self.callees: dict[str, set[str]] = {}
        self.lines: list[LogLine] = []
        self.lines_stored = 0  # record: lines already handed to the writer
        self.callees_stored: dict[str, set[str]] = {}
        self.stats = Stats()
        self.main_done = False
        self.on_final_restore: Any = None  # replay: files written so far give way to recorded ones
        self.quiet = False  # replay in a worker: show nothing, the parent prints merged lines
        self.on_progress: Callable[[], None] | None = None  # a main-loop iteration completed
        self.evidence: list[fidelity.Evidence] = []  # replay: recomputed vs recorded
        self.restore_speed = RestoreSpeed()  # replay: how fast checkpoints restore here

    def register(self, compiled: dict[str, Any]) -> None:
        for fm in compiled.get("files", {}).values():
            for lp in fm["loops"]:
                self.loops[lp["loop_id"]] = lp
        self.statement_code.update(statement_codes(compiled))
        for fm in compiled.get("files", {}).values():
            for ls in fm["log_statements"]:
                if ls.get("left_out"):
                    sid = f"{fm['relpath']}:{ls['line']}"
                    self.statement_shapes[sid] = (ls.get("shapes", []), ls["left_out"])

    # generated code entry points ------------------------------------------------
    def loop(self, loop_id: str) -> Any:
        if self.main is None and not self.main_done and loop_id == self.main_loop_id:
            self.main = MainLoop(self, loop_id)
            return self.main
        if self.main is not None and self.block is None and self.main.in_iteration:
            manifest = self.loops.get(loop_id)
            if manifest is not None and manifest.get("instrumented", True):
                return Block(self, loop_id, manifest)
        return PLAIN_LOOP

    def log_statement(self, statement_id: str) -> _StatementContext:
        return _StatementContext(self, statement_id)

    def entered(self, function_key: str) -> None:
        if self.block is not None:
            self.block.callees.add(function_key)

    def log_value(self, name: str, value: Any) -> None:
        stmt = self.statement or "florc.log"
        text = f"{name}={value!r}"
        shown = f"florc.log {name} = {value!r}"
        self._add_line(stmt, text, "stdout", shown)
        if self.mode == "replay" and self.is_new(stmt) and not self.silent and not self.quiet:
            from florc.runtime.capture import real_stdout

            real_stdout().write(shown + "\n")

    # output attribution ------------------------------------------------------------
    def step(self) -> int | None:
        return self.block.step if self.block is not None else None

    def is_new(self, statement: str | None) -> bool:
        return self.plan is not None and statement in self.plan.new_statements

    def should_show(self, statement: str | None) -> bool:
        """Replay shows only new log statements' output, and only for requested iterations."""
        if self.mode == "record":
            return True
        return self.is_new(statement) and not self.silent and not self.quiet

    def on_line(self, text: str, statement: str | None, stream: str = "stdout") -> None:
        if statement is not None:
            self._add_line(statement, text, stream)

    def _add_line(self, statement: str, text: str, stream: str, shown: str | None = None) -> None:
        new = self.is_new(statement)
        line = LogLine(
            statement,
            self.iteration,
            self.epoch,
            self.step(),
            text,
            new,
            stream,
            self.main_done,
            shown,
        )
        self.lines.append(line)
        if self.mode == "replay" and not new and self.plan is not None:
            self._compare_value(line)

    # fidelity ---------------------------------------------------------------------
    def _compare_value(self, line: LogLine) -> None:
        """A recorded log statement ran again: is its output what the recording logged?"""
        assert self.plan is not None
        recorded_sid = self.plan.statement_map.get(line.statement)
        if recorded_sid is None:
            return
        queue = self.plan.recorded_values.get((recorded_sid, line.iteration, line.step))
        if not queue:
            return
        recorded = queue.pop(0)
        shaped = self.statement_shapes.get(line.statement)
        if shaped is not None:
            c = fidelity.compare_shaped(recorded, line.text, *shaped)
            self.evidence.append(
                fidelity.Evidence(line.statement, line.epoch, c.diff, c.ok, c.compared, c.left_out)
            )
            return
        diff, ok = fidelity.compare_text(recorded, line.text)
        self.evidence.append(fidelity.Evidence(line.statement, line.epoch, diff, ok))

    def compare_block(
        self, loop_id: str, iteration: int, occurrence: int, frame: Any, manifest: dict[str, Any]
    ) -> None:
        """A block re-executed: is its end state the recorded checkpoint's?"""
        assert self.plan is not None
        row = self.plan.checkpoints.get((loop_id, iteration, occurrence))
        if row is None or not row.usable or row.blob is None:
            return
        scope = st.Scope(frame)
        paths = _checkpoint_paths(scope, manifest)
        try:
            recorded = self.load(row)
            now = st.capture(scope, paths, set())
        except (st.CannotSnapshot, OSError, ValueError):
            return
        now.wait()
        left_out = manifest.get("left_out") or {}
        dropped = fidelity.leave_out(recorded, left_out)
        fidelity.leave_out(now, left_out)
        d = fidelity.snapshot_diff(recorded, now)
        if d.not_compared:
            dropped[fidelity.NO_STATE] = dropped.get(fidelity.NO_STATE, 0) + d.not_compared
        diff = d.worst if d.same_kind else None
        where = f"{manifest.get('relpath', '?')}:{manifest.get('line', '?')}"
        self.evidence.append(fidelity.Evidence(where, self.epoch, diff, d.ok, True, dropped))

    # the index ---------------------------------------------------------------------
    def index(self, action: Callable[[Store], None]) -> None:
        """An index write: on the writer thread at record (in order with checkpoints)."""
        if self.writer is not None:
            self.writer.submit(action)
        else:
            action(self.store)

    def log_rows(self, lines: list[LogLine]) -> list[tuple[Any, ...]]:
        return log_rows(lines, self.statement_code)

    def store_progress(self) -> None:
        """Record: hand the log lines and callees seen so far to the writer (kept on a crash)."""
        rows = self.log_rows(self.lines[self.lines_stored :])
        self.lines_stored = len(self.lines)
        run = self.run_id
        if rows:
            self.index(lambda store: store.add_logs(run, rows))
        for loop_id, fns in self.callees.items():
            new = fns - self.callees_stored.setdefault(loop_id, set())
            if new:
                self.callees_stored[loop_id] |= new
                self.index(_callee_rows(run, loop_id, sorted(new)))

    # checkpoints ------------------------------------------------------------------
    def save(
        self,
        loop_id: str,
        iteration: int,
        occurrence: int,
        frame: Any,
        manifest: dict[str, Any],
        ran_seconds: float | None = None,
        entry: dict[str, Any] | None = None,
    ) -> None:
        """Record: checkpoint a loop's changeset if the overhead budget allows it.

        ran_seconds: how long the block took to run; replay weighs it against restoring.
        entry: the objects at the changeset's paths when the loop began (st.identities).
        """
        assert self.writer is not None and self.policy is not None
        if self.writer.stopped is not None:
            self._warn_stopped()
            return
        t0 = time.perf_counter()
        policy = self.policy
        scope = st.Scope(frame)
        iterated = manifest.get("iterated", [])
        paths = _checkpoint_paths(scope, manifest)
        size = st.estimate_bytes(scope, paths) if policy.needs_size(loop_id) else None
        decision = policy.decide(loop_id, size)
        if not decision.take:
            self.stats.skipped += 1
            self._charge(time.perf_counter() - t0)
            return
        info: dict[str, Any] = {"format": checkpoint.FORMAT}
        if ran_seconds is not None:
            info["ran_seconds"] = round(ran_seconds, 6)
        problems = st.capture_iterated(scope, iterated)
        snap = None
        where = None
        if problems:
            info["reason"] = "; ".join(problems.values())
        else:
            try:
                snap = st.capture(scope, paths, set(manifest.get("required", [])), entry)
            except st.CannotSnapshot as exc:
                info["reason"] = str(exc)
                where = exc.where or None
        run = self.run_id
        if snap is None:
            self.stats.unusable_reasons.setdefault(info["reason"], [0, where])[0] += 1
            self.index(
                lambda store: store.add_checkpoint(
                    run, loop_id, iteration, occurrence, None, 0, False, info
                )
            )
            self.stats.unusable += 1
            self._charge(time.perf_counter() - t0)
            return
        info["missing"] = snap.missing
        info["omitted"] = snap.omitted
        copy_seconds = time.perf_counter() - t0
        background = max(0.0, decision.estimate - copy_seconds)
        nbytes = snap.nbytes
        policy.submitted(background)
        self.writer.submit_checkpoint(
            CheckpointJob(
                run,
                loop_id,
                iteration,
                occurrence,
                snap,
                info,
                on_done=lambda cpu: policy.written(loop_id, copy_seconds, cpu, background, nbytes),
            )
        )
        self.stats.checkpoints += 1
        self._charge(time.perf_counter() - t0)  # includes waiting for room in the queue

    def _warn_stopped(self) -> None:
        """Say once that checkpoints can no longer be written, and why."""
        if self.writer is None or self.writer.stopped is None or self.stats.stopped_warned:
            return
        self.stats.stopped_warned = True
        sys.stderr.write(
            f"florc: warning: checkpoints stopped ({self.writer.stopped}); training goes on, "
            "and replay will re-execute from the last checkpoint written\n"
        )

    def _charge(self, seconds: float) -> None:
        if self.policy is not None:
            self.policy.charge_foreground(seconds)

    def load(self, row: Any) -> st.Snapshot:
        def read(digest: str) -> bytes:
            data = self.store.get_blob(digest)
            self.stats.bytes_read += len(data)
            return data

        return checkpoint.decode(read(row.blob), read)

    def try_restore(self, key: tuple[str, int, int], frame: Any) -> bool:
        assert self.plan is not None
        row = self.plan.checkpoints.get(key)
        if row is None or not row.usable or row.blob is None:
            return False
        t0 = time.perf_counter()
        try:
            st.restore(st.Scope(frame), self.load(row))
        except (st.CannotRestore, OSError, ValueError) as exc:
            self.stats.notes.append(
                f"{key[0]} iteration {key[1]}: not restored ({exc}); re-executed"
            )
            return False
        self.restore_speed.observe(row.nbytes, time.perf_counter() - t0)
        return True

    def cheaper_to_rerun(self, key: tuple[str, int, int]) -> bool:
        """Replay: would running this block again take less time than restoring its checkpoint?"""
        assert self.plan is not None
        row = self.plan.checkpoints.get(key)
        if row is None or not row.usable:
            return False
        ran = row.info.get("ran_seconds")
        return ran is not None and ran < self.restore_speed.estimate(row.nbytes)

    def finish(self) -> None:
        if self.mode == "record":
            self.store_progress()
        else:
            for loop_id, fns in self.callees.items():
                self.store.add_callees(self.run_id, loop_id, fns)
        if self.writer is not None:
            t0 = time.perf_counter()
            self.writer.close()
            # the script has ended and waits for the last checkpoints to be durable: a cost too
            self.stats.flush_seconds = time.perf_counter() - t0
            self._charge(self.stats.flush_seconds)
            self._warn_stopped()
            written = self.writer.stats
            self.stats.checkpoints -= written.unusable + written.dropped
            self.stats.unusable += written.unusable
            self.stats.notes.extend(f"checkpoint not written: {e}" for e in written.errors)
            for reason, (n, where) in written.unusable_reasons.items():
                self.stats.unusable_reasons.setdefault(reason, [0, where])[0] += n
        if self.mode == "record":
            reasons = sorted(self.stats.unusable_reasons.items(), key=lambda kv: -kv[1][0])
            self.stats.notes[:0] = [unusable_note(r, n, w) for r, (n, w) in reasons[:3]]


_LAST_ATTRIBUTE = re.compile(r"^(?P<owner>.+)\.(?P<attr>[A-Za-z_]\w*)(?:\[[^\]]*\])*$")


def unusable_note(reason: str, count: int, where: str | None) -> str:
    """Said once per run for each reason checkpoints could not be taken or written."""
    n = f"{count} checkpoint{'s' if count != 1 else ''}"
    text = f"{n} not usable: {reason}; that loop re-executes at replay instead of being restored"
    if where is None or "autograd graph" in reason:
        return text
    m = _LAST_ATTRIBUTE.match(where)
    if m is not None:
        return (
            f"{text}. To make it restorable, give the class of `{m['owner']}` a __getstate__ "
            f"that leaves `{m['attr']}` out (florc then keeps the live `{m['attr']}` when "
            "restoring)"
        )
    return f"{text}. To make it restorable, keep `{where}` out of what the loop changes"


def _checkpoint_paths(scope: st.Scope, manifest: dict[str, Any]) -> list[str]:
    """What a loop's checkpoint holds: its changeset, and the DataLoaders it iterates over
    (their generators decide the next epoch's shuffle)."""
    iterated = manifest.get("iterated", [])
    loaders = st.loader_generators_in(scope, iterated)
    return [*manifest["changeset"], *(p for p in iterated if p in loaders)]


def statement_codes(compiled: dict[str, Any]) -> dict[str, str]:
    """ "relpath:line" -> the log statement's code, for every log statement compiled."""
    return {
        f"{fm['relpath']}:{ls['line']}": ls["code"]
        for fm in compiled.get("files", {}).values()
        for ls in fm["log_statements"]
    }


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


def _callee_rows(run: int, loop_id: str, functions: list[str]) -> Callable[[Store], None]:
    return lambda store: store.add_callees(run, loop_id, functions)


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


class Block:
    def __init__(self, session: Session, loop_id: str, manifest: dict[str, Any]) -> None:
        self.session = session
        self.loop_id = loop_id
        self.manifest = manifest
        self.step: int | None = None
        self.run = True
        self.callees: set[str] = set()

    def __enter__(self) -> Block:
        s = self.session
        s.block = self
        it = s.iteration if s.iteration is not None else -1
        self.occurrence = s.occurrences.get(self.loop_id, 0)
        s.occurrences[self.loop_id] = self.occurrence + 1
        self.compare = True
        self.entry = None
        if s.mode == "record" and not self.manifest["unbounded"]:
            self.entry = st.identities(st.Scope(sys._getframe(1)), self.manifest["changeset"])
        if s.mode == "replay" and not self.manifest["unbounded"]:
            assert s.plan is not None
            key = (self.loop_id, it, self.occurrence)
            probed = self.loop_id in s.plan.probed and not s.silent
            if not probed and s.cheaper_to_rerun(key):
                self.compare = False  # comparing would read the checkpoint after all
                s.stats.rerun_cheaper += 1
            elif not probed and s.try_restore(key, sys._getframe(1)):
                self.run = False
                s.stats.restored_blocks += 1
            else:
                s.stats.probed_blocks += 1
        self.started = time.perf_counter()
        return self

    def iterate(self, iterable: Iterable[Any]) -> Iterator[Any]:
        self.step = -1
        for item in iterable:
            self.step += 1
            yield item

    def tick(self) -> bool:
        self.step = 0 if self.step is None else self.step + 1
        return True

    def began(self) -> bool:
        return True

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        s = self.session
        s.block = None
        if self.callees:
            s.callees.setdefault(self.loop_id, set()).update(self.callees)
        if exc_type is None and self.run and not self.manifest["unbounded"]:
            it = s.iteration if s.iteration is not None else -1
            if s.mode == "record":
                ran = time.perf_counter() - self.started
                frame = sys._getframe(1)
                s.save(self.loop_id, it, self.occurrence, frame, self.manifest, ran, self.entry)
            elif self.compare:
                s.compare_block(self.loop_id, it, self.occurrence, sys._getframe(1), self.manifest)
        self.entry = None


class MainLoop:
    """The main loop's role. Boundary b is the state before iteration b (after iteration b-1)."""

    def __init__(self, session: Session, loop_id: str) -> None:
        self.session = session
        self.loop_id = loop_id
        self.manifest = session.loops.get(
            loop_id,
            {"changeset": [], "required": [], "unbounded": ["unknown loop"], "iterated": []},
        )
        self.run = True
        self.current: int | None = None  # iteration being executed
        self.in_iteration = False
        self.last_boundary = -1
        self.pending: list[int] = list(session.plan.targets) if session.plan else []
        if session.policy is not None:
            session.policy.start(loop_id)

    def __enter__(self) -> MainLoop:
        self.entry = None
        if self.session.mode == "record" and not self.manifest["unbounded"]:
            self.entry = st.identities(st.Scope(sys._getframe(1)), self.manifest["changeset"])
        return self

    # record: boundaries --------------------------------------------------------------
    def _boundary(self, b: int, frame: Any) -> None:
        """Called before iteration b starts (b >= 1) and at the loop's end."""
        s = self.session
        ran = self.in_iteration
        self.in_iteration = False
        if ran and s.on_progress is not None:
            s.on_progress()
        if b <= self.last_boundary:
            return
        self.last_boundary = b
        s.iteration = None
        if s.mode == "record":
            s.store_progress()
            if b > 0 and not self.manifest["unbounded"]:
                s.save(self.loop_id, b, 0, frame, self.manifest, entry=self.entry)

    def _begin(self, idx: int, value: Any) -> None:
        s = self.session
        self.current = idx
        self.in_iteration = True
        s.iteration = idx
        s.occurrences = {}
        epoch = value if isinstance(value, int) and not isinstance(value, bool) else None
        s.epoch = epoch if epoch is not None else idx
        if s.mode == "record":
            run = s.run_id
            s.index(lambda store: store.add_iteration(run, idx, epoch))
        else:
            s.silent = idx not in (s.plan.targets if s.plan else [])

    # replay: where to go next --------------------------------------------------------
    def _plan_from(self, b: int, frame: Any) -> int | None:
        """At boundary b: the iteration to run next (possibly after restoring), or None to stop."""
        s = self.session
        assert s.plan is not None
        self.pending = [t for t in self.pending if t >= b]
        if not self.pending:
            if not s.plan.run_after_loop:
                raise ReplayFinished()
            # code after the loop holds a new statement: get to the loop's recorded end
            final = s.plan.final_boundary
            if final is None:
                return b  # the recorded run did not end its loop: run on as it would
            if b >= final:
                return None
            c = self._restore_latest(final, b, frame)
            if c is None:
                return b  # run on silently
            if s.on_final_restore is not None:
                s.on_final_restore()
            return None if c == final else c
        return self._restore_latest(self.pending[0], b, frame) or b

    def _restore_latest(self, target: int, b: int, frame: Any) -> int | None:
        """Restore the latest usable checkpoint in (b, target]; its boundary, or None."""
        s = self.session
        assert s.plan is not None
        for c in range(target, b, -1):
            row = s.plan.checkpoints.get((self.loop_id, c, 0))
            if row is not None and row.usable and s.try_restore((self.loop_id, c, 0), frame):
                s.stats.restored_boundaries += 1
                self.last_boundary = c
                return c
        return None

    def iterate(self, iterable: Iterable[Any]) -> Iterator[Any]:
        s = self.session
        it = iter(iterable)
        idx = 0
        while True:
            frame = sys._getframe(1)
            if idx > 0:
                self._boundary(idx, frame)
            if s.mode == "replay":
                nxt = self._plan_from(idx, frame)
                if nxt is None:
                    # the loop's final state is restored: consume what the recorded loop
                    # consumed, no more (it may have left with `break`, on an endless iterator)
                    final = s.plan.final_boundary if s.plan is not None else None
                    while final is not None and idx < final:
                        try:
                            next(it)
                        except StopIteration:
                            return
                        idx += 1
                    return
                while idx < nxt:
                    try:
                        next(it)
                    except StopIteration:
                        return
                    idx += 1
            try:
                item = next(it)
            except StopIteration:
                self._boundary(idx, frame)
                return
            self._begin(idx, item)
            yield item
            idx += 1

    def tick(self) -> bool:
        s = self.session
        frame = sys._getframe(1)
        idx = 0 if self.current is None else self.current + 1
        if idx > 0:
            self._boundary(idx, frame)
        if s.mode == "replay":
            nxt = self._plan_from(idx, frame)
            if nxt is None:
                return False
            idx = nxt
        self.current = idx - 1 if idx > 0 else None
        self._next_idx = idx
        return True

    def began(self) -> bool:
        self._begin(self._next_idx, None)
        return True

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        s = self.session
        if exc_type is None and self.in_iteration and self.current is not None:
            self._boundary(self.current + 1, sys._getframe(1))  # left with break
        elif exc_type is None and self.current is not None and s.mode == "record":
            self._boundary(self.current + 1, sys._getframe(1))
        self.in_iteration = False
        if s.policy is not None:
            s.policy.stop()
        s.main = None
        s.main_done = True
        s.iteration = None
        s.silent = False
        s.epoch = None


class RecordSession(Session):
    """The session of `florc record`: checkpoints under the budget, output kept."""

    def __init__(
        self,
        store: Store,
        run_id: int,
        compiled: CompileResult,
        writer: Writer | None = None,
        policy: CheckpointPolicy | None = None,
    ) -> None:
        super().__init__("record", store, run_id, compiled.to_dict(), writer=writer, policy=policy)


class ReplaySession(Session):
    """The session of a replay (or one replay worker): restores, re-executes, compares."""

    def __init__(
        self, store: Store, run_id: int, compiled: CompileResult, plan: ReplayPlan
    ) -> None:
        super().__init__("replay", store, run_id, compiled.to_dict(), plan)
