"""The background writer: serialises, hashes, compresses and writes checkpoints off the training
thread, and commits index rows in the order they were submitted.

The training thread hands over a snapshot (already a copy) and goes on. The queue is bounded by
bytes: when the writer falls behind, `submit_checkpoint` blocks and returns how long it waited,
so the checkpoint policy sees the back-pressure as overhead. The writer reads the clocks of
the policy (policy.Sample: wall, process and its own CPU time, the seconds training has waited
for it) when each checkpoint starts and ends and whenever it wakes for index rows: the windows
between checkpoints go to `observe` (how fast training runs while the writer is idle), each
checkpoint's window to its `on_done`, so the policy can charge the slowdown training felt
while the writer worked, rather than the writer's CPU on a core training does not use.

A thread, not a process: no `fork()` (unsafe once CUDA is initialised) and no second copy of
the state; hashing, compression and file writes release the GIL.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from florc.runtime import checkpoint
from florc.runtime import state as st
from florc.runtime.policy import Sample, take_sample
from florc.runtime.state.tracker import TensorTracker
from florc.store.blobs import digest
from florc.store.index import Store

DEFAULT_QUEUE_BYTES = 512 * 2**20
STALE_REASON = (
    "a tensor it did not copy (unchanged by its version counter) had changed: written through "
    "`.data` or a kernel PyTorch does not see"
)


@dataclass
class CheckpointJob:
    run: int
    loop: str
    iteration: int
    occurrence: int
    snapshot: st.Snapshot
    info: dict[str, Any]
    on_done: Callable[[Sample, Sample], None] | None = None  # the job's window
    nbytes: int = 0


@dataclass
class _Item:
    action: Callable[[Store], object]
    nbytes: int = 0
    on_done: Callable[[Sample, Sample], None] | None = None
    checkpoint: bool = False


@dataclass
class WriterStats:
    checkpoints: int = 0
    unusable: int = 0
    dropped: int = 0  # checkpoints not written because writing failed (disk full, ...)
    blobs_shared: int = 0  # tensors already in the store: not written again
    cpu_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    # why checkpoints could not be serialised: reason -> [how many, the object's path or None]
    unusable_reasons: dict[str, list[Any]] = field(default_factory=dict)


class Writer:
    def __init__(
        self,
        root: Path,
        store_dir: Path,
        compress: bool = False,
        max_queue_bytes: int = DEFAULT_QUEUE_BYTES,
        tracker: TensorTracker | None = None,
        observe: Callable[[Sample, Sample], None] | None = None,
        sample: Callable[[float], Sample] = take_sample,
    ) -> None:
        """observe: told every window in which the writer wrote no checkpoint (on its thread);
        sample: reads the clocks, given the seconds training has waited (on the writer's
        thread)."""
        self.root = root
        self.tracker = tracker  # told which copies are durable, under which keys
        self.store_dir = store_dir
        self.compress = compress
        self.max_queue_bytes = max_queue_bytes
        self.stats = WriterStats()
        self._queue: deque[_Item | None] = deque()
        self._queued_bytes = 0
        self._cond = threading.Condition()
        self.observe = observe
        self._sample = sample
        self._blocked = 0.0  # seconds the training thread waited for the writer, so far
        self._blocked_since: float | None = None  # it waits now, since then
        self._ready = threading.Event()
        self._failed_open: BaseException | None = None
        # why checkpoints are no longer written (the disk is full, the store not writable, ...)
        self.stopped: str | None = None
        self._cloud_loops: set[str] = set()  # loops whose checkpoints need cloudpickle
        self._thread = threading.Thread(target=self._work, name="florc-writer", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._failed_open is not None:
            raise self._failed_open

    # training thread ---------------------------------------------------------------
    def submit(self, action: Callable[[Store], object]) -> None:
        """Run a small index write on the writer thread, after everything submitted before."""
        self._put(_Item(action))

    def submit_checkpoint(self, job: CheckpointJob) -> float:
        """Queue a checkpoint; returns the seconds spent waiting for room in the queue."""
        job.nbytes = job.snapshot.nbytes
        return self._put(
            _Item(lambda store: self._write(store, job), job.nbytes, job.on_done, True)
        )

    def flush(self) -> None:
        """Wait until everything submitted is durable and committed."""
        with self._cond:
            if self._queue:
                t0 = self._blocked_since = time.perf_counter()
                while self._queue:
                    self._cond.wait()
                self._blocked += time.perf_counter() - t0
                self._blocked_since = None

    def close(self) -> None:
        self.flush()
        self._put(None)
        self._thread.join()

    def _put(self, item: _Item | None) -> float:
        waited = 0.0
        with self._cond:
            size = item.nbytes if item is not None else 0
            if size and self._queued_bytes and self._queued_bytes + size > self.max_queue_bytes:
                t0 = self._blocked_since = time.perf_counter()
                while self._queued_bytes and self._queued_bytes + size > self.max_queue_bytes:
                    self._cond.wait()
                waited = time.perf_counter() - t0
                self._blocked += waited
                self._blocked_since = None
            self._queue.append(item)
            self._queued_bytes += size
            self._cond.notify_all()
        return waited

    # writer thread -------------------------------------------------------------------
    def _work(self) -> None:
        try:
            store = Store(self.root, self.store_dir)
        except BaseException as exc:  # noqa: BLE001 - reported to the constructor
            self._failed_open = exc
            self._ready.set()
            return
        self._ready.set()
        last = self._clocks()  # the end of the last checkpoint or idle window
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                item = self._queue[0]
                start = self._clocks()
            if self.observe is not None and start.wall > last.wall:
                self.observe(last, start)  # the writer wrote no checkpoint in this window
            if item is None:
                break
            try:
                item.action(store)
            except Exception as exc:  # noqa: BLE001 - a failed write must not stop training
                self.stats.errors.append(f"{type(exc).__name__}: {exc}")
            with self._cond:
                end = self._clocks()
                self._queue.popleft()
                self._queued_bytes -= item.nbytes
                self._cond.notify_all()
            self.stats.cpu_seconds += end.writer - start.writer
            # an index write belongs to the next idle window; a checkpoint's window is its own
            last = end if item.checkpoint else start
            if item.on_done is not None:
                item.on_done(start, end)
        with self._cond:
            self._queue.clear()
            self._cond.notify_all()
        store.close()

    def _clocks(self) -> Sample:
        """The clocks now, on the writer's thread, holding self._cond."""
        blocked = self._blocked
        if self._blocked_since is not None:
            blocked += time.perf_counter() - self._blocked_since
        return self._sample(blocked)

    def _write(self, store: Store, job: CheckpointJob) -> None:
        snap = job.snapshot
        try:
            self._write_or_drop(store, job)
        finally:
            snap.release()  # its copies' buffers serve the next checkpoint

    def _write_or_drop(self, store: Store, job: CheckpointJob) -> None:
        if self.stopped is not None:
            job.snapshot = st.Snapshot()
            self.stats.dropped += 1
            return
        try:
            self._write_checkpoint(store, job)
        except OSError as exc:
            self.stats.dropped += 1
            # The disk is full, a quota or file size limit is hit, the store became read-only:
            # stop checkpointing (training goes on; replay re-executes from the last checkpoint).
            # Nothing half-written is visible: blobs are renamed into place only when complete,
            # and this checkpoint's index row was never committed.
            self.stopped = f"{exc.strerror or type(exc).__name__}" + (
                f": {exc.filename}" if exc.filename else ""
            )
            self.stats.errors.append(f"{job.loop} iteration {job.iteration}: {self.stopped}")

    def _write_checkpoint(self, store: Store, job: CheckpointJob) -> None:
        info = dict(job.info)
        try:
            enc = checkpoint.encode(job.snapshot, cloud_first=job.loop in self._cloud_loops)
            if enc.cloud:
                self._cloud_loops.add(job.loop)
        except Exception as exc:  # noqa: BLE001 - pickling arbitrary user objects
            where = exc.where if isinstance(exc, checkpoint.Unserialisable) else None
            reason = (
                str(exc)
                if where or isinstance(exc, checkpoint.BaseNotWritten)
                else f"cannot serialise: {type(exc).__name__}: {exc}"
            )
            info["reason"] = reason
            self.stats.unusable += 1
            self.stats.unusable_reasons.setdefault(reason, [0, where])[0] += 1
            store.add_checkpoint(
                job.run, job.loop, job.iteration, job.occurrence, None, 0, False, info
            )
            return
        finally:
            job.snapshot = st.Snapshot()  # let the copies go as soon as they are encoded
        manifest = digest(enc.manifest)
        # one pack for the checkpoint's new blobs, durable before the index names any of them
        blobs = store.write_pack({**enc.payloads, manifest: enc.manifest}, self.compress)
        checkpoint_id = store.add_checkpoint(
            job.run,
            job.loop,
            job.iteration,
            job.occurrence,
            manifest,
            enc.nbytes,
            True,
            info,
            blobs,
            shared=enc.shared,
        )
        self.stats.checkpoints += 1
        self.stats.blobs_shared += sum(not b.written for b in blobs)
        self._tell_tracker(store, checkpoint_id, enc)

    def verify_skipped(self) -> None:
        """At the end of the run: hash the tensors skipped since their last verification once
        more, and make the checkpoints that skipped a tensor that had changed unusable."""
        tracker = self.tracker
        if tracker is None:
            return
        pending = tracker.unverified()

        def verify(store: Store) -> None:
            stale: set[int] = set()
            for entry, live in pending:
                stale.update(tracker.finish_verification(entry, checkpoint.chunk_keys(live)))
            if stale:
                store.mark_unusable(sorted(stale), STALE_REASON)

        if pending:
            self.submit(verify)

    def _tell_tracker(self, store: Store, checkpoint_id: int, enc: checkpoint.Encoded) -> None:
        """The checkpoint is durable: its copies may be skipped from now on; a verification that
        found a tensor changed behind its version counter makes the checkpoints that skipped it
        unusable."""
        if self.tracker is None:
            return
        for stored in enc.stored:
            self.tracker.referenced(stored, checkpoint_id)
        stale: set[int] = set()
        for entry, keys in enc.tracked:
            stale.update(self.tracker.committed(entry, keys))
        if stale:
            store.mark_unusable(sorted(stale), STALE_REASON)
