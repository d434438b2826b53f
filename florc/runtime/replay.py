"""The session of a replay (or of one replay worker): restores, re-executes, compares.

The plan (`contract.ReplayPlan`, built before the script runs) says which main-loop iterations
to show, which blocks must run because they gained a log statement, and which checkpoints
exist. At each boundary of the main loop the session skips ahead to the next requested
iteration by restoring the latest checkpoint before it; a block is restored instead of run
unless it must run (or running it is faster than restoring it). Only the output of new log
statements, in requested iterations, reaches the terminal; every recorded statement that runs
again, and every block that re-executes, is compared with what the recording logged or
checkpointed: that is the fidelity evidence.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from florc.contract import CompileResult, LogLine, ReplayPlan
from florc.runtime import checkpoint, fidelity
from florc.runtime import state as st
from florc.runtime.capture import real_stdout
from florc.runtime.loops import Block, MainLoop, checkpoint_paths
from florc.runtime.session import ReplayFinished, Session
from florc.store.index import CheckpointRow, Store


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


class ReplaySession(Session):
    """The session of a replay (or one replay worker): restores, re-executes, compares."""

    def __init__(
        self, store: Store, run_id: int, compiled: CompileResult, plan: ReplayPlan
    ) -> None:
        super().__init__(store, run_id, compiled)
        self.plan = plan
        self.new_statements = plan.new_statements
        self.in_target = True  # the current main-loop iteration is one the user asked for
        self.echo = True  # False in a worker: the parent prints the merged lines
        self.on_final_restore: Callable[[], None] | None = None  # the files give way
        self.restore_speed = RestoreSpeed()  # how fast checkpoints restore here
        self.pending: list[int] = []  # requested iterations not reached yet

    # output ---------------------------------------------------------------------------------
    def should_show(self, statement: str | None) -> bool:
        """Only new log statements' output, and only in the iterations the user asked for."""
        return self.is_new(statement) and self.in_target and self.echo

    def show_logged(self, statement: str, shown: str) -> None:
        if self.should_show(statement):
            real_stdout().write(shown + "\n")

    def line_added(self, line: LogLine) -> None:
        if not line.new:
            self._compare_value(line)

    # fidelity -------------------------------------------------------------------------------
    def _compare_value(self, line: LogLine) -> None:
        """A recorded log statement ran again: is its output what the recording logged?"""
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

    def compare_block(self, block: Block) -> None:
        """A block re-executed: is its end state the recorded checkpoint's?"""
        manifest = block.manifest
        row = self.plan.checkpoints.get((block.loop_id, block.iteration, block.occurrence))
        if row is None or not row.usable or row.blob is None:
            return
        scope = block.scope()
        paths = checkpoint_paths(scope, manifest)
        try:
            recorded = self.load(row)
            now = st.capture(scope, paths, set())
        except (st.CannotSnapshot, OSError, ValueError):
            return
        now.wait()
        dropped = fidelity.leave_out(recorded, manifest.left_out)
        fidelity.leave_out(now, manifest.left_out)
        d = fidelity.snapshot_diff(recorded, now)
        if d.not_compared:
            dropped[fidelity.NO_STATE] = dropped.get(fidelity.NO_STATE, 0) + d.not_compared
        diff = d.worst if d.same_kind else None
        where = f"{manifest.relpath}:{manifest.line}"
        self.evidence.append(fidelity.Evidence(where, self.epoch, diff, d.ok, True, dropped))

    # checkpoints ----------------------------------------------------------------------------
    def load(self, row: CheckpointRow) -> st.Snapshot:
        """A recorded checkpoint, read from the store."""

        def read(digest: str) -> bytes:
            data = self.store.get_blob(digest)
            self.stats.bytes_read += len(data)
            return data

        assert row.blob is not None
        snap = checkpoint.decode(read(row.blob), read)
        shared = row.info.get("replicated")
        if shared:  # a rank's part: what every rank holds alike, rank 0 wrote
            base = self.plan.replicated.get((row.loop, row.iteration, row.occurrence))
            if base is None or base.blob is None:
                raise st.CannotRestore("rank 0's part of this checkpoint is missing")
            whole = checkpoint.decode(read(base.blob), read)
            for path in shared:
                if path in whole.paths:
                    snap.paths[path] = whole.paths[path]
                elif path not in whole.missing:
                    raise st.CannotRestore(f"`{path}` is in neither rank's part")
        return snap

    def try_restore(self, key: tuple[str, int, int], scope: st.Scope) -> bool:
        """Restore the checkpoint (loop, iteration, occurrence) into scope, if it can be."""
        row = self.plan.checkpoints.get(key)
        if row is None or not row.usable or row.blob is None:
            return False
        t0 = time.perf_counter()
        try:
            st.restore(scope, self.load(row))
        except (st.CannotRestore, OSError, ValueError) as exc:
            self.stats.notes.append(
                f"{key[0]} iteration {key[1]}: not restored ({exc}); re-executed"
            )
            return False
        self.restore_speed.observe(row.nbytes, time.perf_counter() - t0)
        return True

    def cheaper_to_rerun(self, key: tuple[str, int, int]) -> bool:
        """Would running this block again take less time than restoring its checkpoint?"""
        row = self.plan.checkpoints.get(key)
        if row is None or not row.usable or self.plan.rank is not None:
            return False  # ranks decide alike: a rank re-running what another restores would hang
        ran = row.info.get("ran_seconds")
        return ran is not None and ran < self.restore_speed.estimate(row.nbytes)

    # the loops' hooks -------------------------------------------------------------------------
    def start_main(self, main: MainLoop) -> None:
        self.pending = list(self.plan.targets)

    def begin_iteration(self, main: MainLoop, idx: int, epoch: int | None) -> None:
        self.in_target = idx in self.plan.targets

    def end_main(self, main: MainLoop) -> None:
        self.in_target = True

    def recorded_end(self) -> int | None:
        return self.plan.final_boundary

    def next_iteration(self, main: MainLoop, b: int) -> int | None:
        """At boundary b: the iteration to run next (possibly after restoring), or None to stop."""
        plan = self.plan
        self.pending = [t for t in self.pending if t >= b]
        if not self.pending:
            if not plan.run_after_loop:
                raise ReplayFinished()
            # code after the loop holds a new statement: get to the loop's recorded end
            final = plan.final_boundary
            if final is None:
                return b  # the recorded run did not end its loop: run on as it would
            if b >= final:
                return None
            c = self._restore_latest(main, final, b)
            if c is None:
                return b  # run on silently
            if self.on_final_restore is not None:
                self.on_final_restore()
            return None if c == final else c
        return self._restore_latest(main, self.pending[0], b) or b

    def _restore_latest(self, main: MainLoop, target: int, b: int) -> int | None:
        """Restore the latest usable checkpoint in (b, target]; its boundary, or None."""
        if b > 0 and not main.restores_inside:
            return None
        for c in range(target, b, -1):
            key = (main.loop_id, c, 0)
            row = self.plan.checkpoints.get(key)
            if row is not None and row.usable and self.try_restore(key, main.scope()):
                self.stats.restored_boundaries += 1
                main.last_boundary = c
                return c
        return None

    def start_block(self, block: Block) -> None:
        key = (block.loop_id, block.iteration, block.occurrence)
        must_run = block.loop_id in self.plan.probed and self.in_target
        if not must_run and self.cheaper_to_rerun(key):
            block.compare = False  # comparing would read the checkpoint after all
            self.stats.rerun_cheaper += 1
        elif not must_run and self.try_restore(key, block.scope()):
            block.run = False
            self.stats.restored_blocks += 1
        else:
            self.stats.probed_blocks += 1

    def end_block(self, block: Block) -> None:
        if block.compare:
            self.compare_block(block)

    def finish(self) -> None:
        for loop_id, fns in self.callees.items():
            self.store.add_callees(self.run_id, loop_id, fns)
