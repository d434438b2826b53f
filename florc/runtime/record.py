"""The session of `florc record`: checkpoints under the overhead budget, output kept.

At every boundary of the main loop and at the end of every block, the loop's changeset may be
checkpointed: the budget policy (policy.py) decides whether this one is worth its cost. The
checkpoint is copied here and written by the writer's thread (writer.py); index rows (iterations,
log lines, callees) go through the same thread, in order with the checkpoints, so a crash keeps
a consistent prefix.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from typing import Any

from florc.contract import CompileResult
from florc.runtime import checkpoint
from florc.runtime import state as st
from florc.runtime.distributed import RankGroup
from florc.runtime.loops import Block, MainLoop, checkpoint_paths
from florc.runtime.policy import CheckpointPolicy, Decision
from florc.runtime.session import Session
from florc.runtime.state.buffers import HostBuffers
from florc.runtime.state.tracker import TensorTracker
from florc.runtime.writer import CheckpointJob, Writer
from florc.store.index import Store


class RecordSession(Session):
    """The session of `florc record`: checkpoints under the budget, output kept."""

    def __init__(
        self,
        store: Store,
        run_id: int,
        compiled: CompileResult,
        writer: Writer | None = None,
        policy: CheckpointPolicy | None = None,
        tracker: TensorTracker | None = None,
        ranks: RankGroup | None = None,
    ) -> None:
        super().__init__(store, run_id, compiled)
        self.ranks = ranks  # a rank of a distributed job: what all ranks agree on
        self.writer = writer
        self.policy = policy
        self.tracker = tracker  # large tensors unchanged since a checkpoint are not copied
        self.buffers = HostBuffers()  # the copies' memory, reused from checkpoint to checkpoint
        self.lines_stored = 0  # log lines already handed to the writer
        self.callees_stored: dict[str, set[str]] = {}

    # the index ------------------------------------------------------------------------------
    def write_index(self, action: Callable[[Store], object]) -> None:
        """Write index rows: on the writer's thread (in order with checkpoints) when there is
        one, else now."""
        if self.writer is not None:
            self.writer.submit(action)
        else:
            action(self.store)

    def store_progress(self) -> None:
        """Hand the log lines and callees seen so far to the writer (kept on a crash)."""
        rows = self.log_rows(self.lines[self.lines_stored :])
        self.lines_stored = len(self.lines)
        run = self.run_id
        if rows:
            self.write_index(lambda store: store.add_logs(run, rows))
        for loop_id, fns in self.callees.items():
            new = fns - self.callees_stored.setdefault(loop_id, set())
            if new:
                self.callees_stored[loop_id] |= new
                self.write_index(_callee_rows(run, loop_id, sorted(new)))

    def keep_params(self, params: dict[str, Any]) -> None:
        run = self.run_id
        self.write_index(lambda store: store.update_env(run, params))

    # the loops' hooks -------------------------------------------------------------------------
    def start_main(self, main: MainLoop) -> None:
        if self.policy is not None:
            self.policy.start(main.loop_id)
        if main.bounded:
            main.entry = st.identities(main.scope(), main.manifest.changeset)

    def at_boundary(self, main: MainLoop, b: int) -> None:
        self.store_progress()
        if b > 0 and main.bounded:
            self.save(main, b, 0, entry=main.entry)

    def begin_iteration(self, main: MainLoop, idx: int, epoch: int | None) -> None:
        run = self.run_id
        self.write_index(lambda store: store.add_iteration(run, idx, epoch))

    def end_main(self, main: MainLoop) -> None:
        if self.policy is not None:
            self.policy.stop()

    def start_block(self, block: Block) -> None:
        block.entry = st.identities(block.scope(), block.manifest.changeset)

    def end_block(self, block: Block) -> None:
        ran = time.perf_counter() - block.started
        self.save(block, block.iteration, block.occurrence, ran, block.entry)

    # checkpoints ----------------------------------------------------------------------------
    def save(
        self,
        loop: MainLoop | Block,
        iteration: int,
        occurrence: int,
        ran_seconds: float | None = None,
        entry: dict[str, Any] | None = None,
    ) -> None:
        """Checkpoint a loop's changeset if the overhead budget allows it.

        ran_seconds: how long the block took to run; replay weighs it against restoring.
        entry: the objects at the changeset's paths when the loop began (st.identities).
        """
        if self.writer is None or self.policy is None:
            return
        if self.writer.stopped is not None:
            self._warn_stopped()
            if self.ranks is not None and isinstance(loop, MainLoop):
                self.ranks.agree(False)  # the other ranks wait for this rank's word
            return
        t0 = time.perf_counter()
        policy = self.policy
        loop_id, manifest = loop.loop_id, loop.manifest
        scope = loop.scope()
        paths = checkpoint_paths(scope, manifest)
        size = st.estimate_bytes(scope, paths) if policy.needs_size(loop_id) else None
        decision = policy.decide(loop_id, size)
        boundary = isinstance(loop, MainLoop)
        if self.ranks is not None and boundary:
            agreed = self.ranks.agree(decision.take)
            if agreed != decision.take:
                policy.overrule(loop_id, agreed)
                decision = Decision(agreed, decision.estimate)
        if not decision.take:
            self.stats.skipped += 1
            self._charge(time.perf_counter() - t0)
            return
        info: dict[str, Any] = {"format": checkpoint.FORMAT}
        tracker = self.tracker
        replicated = self.ranks.replicated if self.ranks is not None else None
        first_of_job = self.ranks is not None and boundary and replicated is None
        if first_of_job:
            tracker = None  # whole copies: the ranks compare their digests
        elif replicated and self.ranks is not None and boundary:
            # every rank is here: are the small replicated parts still equal?
            self.ranks.recheck(small_digests(scope, [p for p in paths if p in replicated]))
            replicated = self.ranks.replicated or frozenset()
        if replicated and self.ranks is not None and not self.ranks.info.leader:
            mine = [p for p in paths if p not in replicated]
            if len(mine) < len(paths):
                info["replicated"] = sorted(set(paths) - set(mine))  # rank 0 writes these
                paths = mine
        if ran_seconds is not None:
            info["ran_seconds"] = round(ran_seconds, 6)
        problems = st.capture_iterated(scope, manifest.iterated)
        snap = None
        where = None
        if problems:
            info["reason"] = "; ".join(problems.values())
        else:
            try:
                snap = st.capture(
                    scope, paths, set(manifest.required) & set(paths), entry, tracker, self.buffers
                )
            except st.CannotSnapshot as exc:
                info["reason"] = str(exc)
                where = exc.where or None
        if first_of_job and self.ranks is not None:
            # every rank reaches this checkpoint (agreed): settle what is replicated, once
            same = self.ranks.decide_replicated(path_digests(snap) if snap is not None else {})
            if snap is not None and same and not self.ranks.info.leader:
                info["replicated"] = sorted(same & set(snap.paths))
                for p in info["replicated"]:
                    del snap.paths[p]
        run = self.run_id
        if snap is None:
            self.stats.unusable_reasons.setdefault(info["reason"], [0, where])[0] += 1
            self.write_index(
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
        # the training thread's seconds for this checkpoint: the copy, then the queue's wait
        foreground = [copy_seconds]
        policy.submitted(background)
        TensorTracker.submitted(snap.tracked.values())
        waited = self.writer.submit_checkpoint(
            CheckpointJob(
                run,
                loop_id,
                iteration,
                occurrence,
                snap,
                info,
                on_done=lambda a, b: policy.job_written(
                    loop_id, foreground[0], a, b, background, nbytes
                ),
            )
        )
        foreground[0] += waited  # (read by on_done, on the writer's thread, once written)
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

    def finish(self) -> None:
        self.store_progress()
        if self.writer is not None:
            t0 = time.perf_counter()
            self.writer.verify_skipped()
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
        if self.ranks is not None:
            self.stats.notes.extend(self.ranks.notes)
        reasons = sorted(self.stats.unusable_reasons.items(), key=lambda kv: -kv[1][0])
        self.stats.notes[:0] = [unusable_note(r, n, w) for r, (n, w) in reasons[:3]]


# replicated parts up to this size are compared again at every main-loop checkpoint (a counter
# equal on every rank at the first one may not stay so); larger ones (the DDP model, its
# optimizer) are kept equal by DDP itself
RECHECK_BYTES = 2**20


def small_digests(scope: st.Scope, paths: list[str]) -> dict[str, str]:
    """Digests of the paths whose state is small (copied here, without the tracker)."""
    small = [p for p in paths if st.estimate_bytes(scope, [p]) <= RECHECK_BYTES]
    if not small:
        return {}
    try:
        snap = st.capture(scope, small, set())
    except st.CannotSnapshot:
        return {}
    return path_digests(snap)


def path_digests(snap: st.Snapshot) -> dict[str, str]:
    """A digest of each path's copy: equal on two ranks exactly when the state under that path
    is (a path plain pickle cannot write is left out: each rank keeps its own)."""
    snap.wait()
    out = {}
    for path, node in snap.paths.items():
        try:
            out[path] = checkpoint.content_digest(node)
        except Exception:  # noqa: BLE001 - pickle refuses in many ways
            continue
    return out


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


def _callee_rows(run: int, loop_id: str, functions: list[str]) -> Callable[[Store], None]:
    return lambda store: store.add_callees(run, loop_id, functions)
