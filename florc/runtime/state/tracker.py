"""Which large tensors have not changed since a checkpoint stored them: capture skips those.

A tensor is *unchanged* when its storage, layout and in-place version counter (`t._version`)
are what they were when an earlier checkpoint copied it, and a probe of its bytes (up to
`PROBE_ELEMENTS` elements at fixed, spread positions) still reads the same. Capture then neither
copies nor hashes it: the snapshot holds a `StoredTensor`, and the checkpoint refers to the blobs
the earlier checkpoint wrote.

What is trusted, and why the probe is there: PyTorch bumps the version counter on every in-place
operation on a tensor (also under `torch.no_grad()`), but not for writes it does not see. Measured
with torch 2.13: writes through `.data` (`p.data.add_(...)`, the update of hand-written SGD
loops), fused optimizers (`Adam(fused=True)` leaves the counter of its parameters and moments as
it was), BatchNorm's running statistics updated in `forward`, and any kernel writing through
`data_ptr()`. All of those rewrite every element, which the probe sees. A write the counter misses
*and* the probe does not sample (a few rows of a table changed by a custom kernel) is caught by
verification: every `VERIFY_EVERY`-th time a tensor would be skipped it is copied and hashed
instead; if its bytes differ from the stored ones, every checkpoint that skipped it since the
last verification is marked unusable (replay re-executes from an earlier one: slower, never
wrong), and the tensor is copied at every checkpoint from then on. When the run ends, the
tensors skipped since their last verification are verified once more, so the last checkpoints
are checked too. Not checked: a tensor skipped and written behind its counter (sparsely, between
probed elements) whose counter then moves, or whose probed elements then change too, before it
is verified (its earlier skips are taken as right).

Threads: the training thread asks (`unchanged`, `copied`, `submitted`); the writer thread fills in
the keys of a copy once its checkpoint is durable (`committed`). A checkpoint may skip a tensor
whose earlier copy is still queued: the writer works in order, so those keys are known when the
later checkpoint is encoded (if the earlier one could not be written, neither can the later).
An entry is made per copy and never reused for a later one, so a late answer about an old copy
cannot vouch for a newer one.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from florc.runtime.state import lazy

TRACK_BYTES = 64 * 1024  # smaller tensors are always copied (they are pickled inline)
PROBE_ELEMENTS = 64
VERIFY_EVERY = 8


@dataclass(eq=False)
class Entry:
    """One copy of one tensor, as a checkpoint took it."""

    ref: Any  # weakref.ref to the live tensor
    signature: tuple[Any, ...]
    probe: Probe
    nbytes: int
    path: str = ""
    stored: StoredTensor | None = None  # what stands for it in a snapshot that skips it
    keys: tuple[str, ...] | None = None  # the blobs holding it, once its checkpoint is durable
    submitted: bool = False  # its checkpoint went to the writer (which writes it, or says why not)
    skips: int = 0
    # checkpoints that referred to these blobs instead of copying (for verification)
    skipped_in: list[int] = field(default_factory=list)
    base: Entry | None = None  # copied again while unchanged by the counter: verifies `base`
    changed: bool = False  # the probe saw it change: its skips cannot be verified any more


@dataclass(eq=False)
class StoredTensor:
    """Stands in a snapshot for a tensor not copied: its bytes are the blobs `entry.keys`."""

    entry: Entry
    kind: str  # "torch"
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return self.entry.nbytes


@dataclass
class TrackerStats:
    skipped: int = 0  # tensors referred to instead of copied
    skipped_bytes: int = 0
    verified: int = 0
    stale: int = 0  # checkpoints found to hold a tensor that had changed behind its counter
    stale_paths: list[str] = field(default_factory=list)


class TensorTracker:
    """The copies checkpoints took of large tensors, per live tensor (one per record session)."""

    def __init__(self, verify_every: int = VERIFY_EVERY) -> None:
        self.verify_every = verify_every
        self.stats = TrackerStats()
        self._entries: dict[int, Entry] = {}
        self._untrusted: set[int] = set()  # ids of tensors always copied (found stale once)
        self._lock = threading.Lock()

    # training thread -----------------------------------------------------------------------
    def unchanged(self, t: Any) -> StoredTensor | None:
        """A StoredTensor for `t` when it can be skipped; None when it must be copied."""
        key = id(t)
        entry = self._entries.get(key)
        if entry is None or not entry.submitted or entry.ref() is not t or key in self._untrusted:
            return None
        if _signature(t) != entry.signature:
            return None  # written in place, or its storage replaced: copied as usual
        if not entry.probe.same(t):
            entry.changed = True
            self._untrusted.add(key)  # it changes behind its version counter
            return None
        if entry.skips + 1 >= self.verify_every:
            return None  # copied this time: copied() makes it a verification
        entry.skips += 1
        self.stats.skipped += 1
        self.stats.skipped_bytes += entry.nbytes
        if entry.stored is None:
            dtype = str(t.dtype).removeprefix("torch.")
            entry.stored = StoredTensor(entry, "torch", dtype, tuple(t.shape))
        return entry.stored

    def copied(self, t: Any, path: str = "") -> Entry | None:
        """`t` was copied now: a new entry for it (None when `t` cannot be tracked)."""
        sig = _signature(t)
        if sig is None:
            return None
        nbytes = t.nelement() * t.element_size()
        if nbytes < TRACK_BYTES:
            return None
        entry = Entry(weakref.ref(t, self._forget(id(t))), sig, Probe(t), nbytes, path)
        old = self._entries.get(id(t))
        if (
            old is not None
            and old.skips
            and old.ref() is t
            and sig == old.signature
            and not old.changed  # the probe saw it change since its last skip
        ):
            entry.base = old  # skipped, and unchanged as far as counter and probe tell: verify
        self._entries[id(t)] = entry
        return entry

    @staticmethod
    def submitted(entries: Iterable[Entry]) -> None:
        """These copies' checkpoint is handed to the writer: later checkpoints may refer to it.
        The writer works in order, so their keys are known when those are encoded."""
        for entry in entries:
            entry.submitted = True

    def _forget(self, key: int) -> Callable[[Any], None]:
        def gone(ref: Any) -> None:
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None and entry.ref is ref:
                    del self._entries[key]
                self._untrusted.discard(key)

        return gone

    # writer thread --------------------------------------------------------------------------
    def committed(self, entry: Entry, keys: tuple[str, ...]) -> list[int]:
        """A copy's checkpoint is durable with its bytes in blobs `keys`. Returns the checkpoints
        found stale: they skipped this tensor while it had changed behind its version counter."""
        stale: list[int] = []
        base, entry.base = entry.base, None
        if base is not None:
            self.stats.verified += 1
            if keys != base.keys:
                live = entry.ref()
                if live is not None:
                    self._untrusted.add(id(live))
                stale = list(base.skipped_in)
                if stale:
                    self.stats.stale += len(stale)
                    if entry.path not in self.stats.stale_paths:
                        self.stats.stale_paths.append(entry.path)
        entry.keys = keys
        return stale

    def unverified(self) -> list[tuple[Entry, Any]]:
        """(entry, live tensor) for each tensor skipped since it was last verified and still
        unchanged by its counter: verified once more when the run ends (`finish_verification`),
        so that the last checkpoints of a run are checked too."""
        out = []
        for entry in list(self._entries.values()):
            live = entry.ref()
            if (
                live is not None
                and entry.skips
                and not entry.changed
                and _signature(live) == entry.signature
            ):
                out.append((entry, live))
        return out

    def finish_verification(self, entry: Entry, keys: tuple[str, ...] | None) -> list[int]:
        """The keys of a tensor's bytes at the end of the run (None: not hashable): the
        checkpoints that skipped it since its last verification, if it had changed."""
        self.stats.verified += 1
        if keys is None or keys == entry.keys:
            return []
        stale = list(entry.skipped_in)
        self.stats.stale += len(stale)
        if stale and entry.path not in self.stats.stale_paths:
            self.stats.stale_paths.append(entry.path)
        return stale

    @staticmethod
    def referenced(stored: StoredTensor, checkpoint: int) -> None:
        """A durable checkpoint refers to `stored` instead of a copy."""
        stored.entry.skipped_in.append(checkpoint)


def _signature(t: Any) -> tuple[Any, ...] | None:
    """What must be equal for `t` to be the same tensor, unchanged; None: never tracked. (Its
    storage is at `data_ptr`: a tensor given new storage, `p.data = ...`, differs.)"""
    torch = lazy.torch()
    try:
        if t.layout != torch.strided or t.is_quantized or not t.is_contiguous():
            return None
        if t.device.type not in ("cpu", "cuda") or t.nelement() == 0:
            return None
        return (t._version, t.data_ptr(), t.shape, t.dtype, t.device)
    except Exception:  # noqa: BLE001
        return None  # an inference tensor (no version counter), a lazy parameter, a subclass


class Probe:
    """The elements of a tensor at up to PROBE_ELEMENTS fixed, spread positions — the first,
    the last, one in each equal stretch between them at a varying offset (no random generator
    is touched) — read when it was copied, and whether they still read the same, bitwise (a
    NaN reads as itself). On the CPU through a NumPy view of its memory (a fraction of a
    microsecond); on a GPU, or without NumPy, with torch."""

    def __init__(self, t: Any) -> None:
        n = t.nelement()
        k = min(PROBE_ELEMENTS, n)
        if k <= 2:
            positions = list(range(n))
        else:
            step = (n - 1) / (k - 1)
            positions = [0, n - 1] + [
                min(n - 1, int(i * step + ((i * 0.6180339887) % 1.0) * step))
                for i in range(1, k - 1)
            ]
        positions = sorted(set(positions))
        self.view: Any = None
        np = lazy.numpy()
        if t.device.type == "cpu" and np is not None and t.element_size() in (1, 2, 4, 8):
            try:
                raw = t.detach().reshape(-1).view(lazy.torch().uint8).numpy()
                self.view = raw.view(f"u{t.element_size()}")  # the live memory, not a copy
                self.index = np.array(positions, dtype=np.int64)
            except (RuntimeError, TypeError, ValueError):
                self.view = None
        if self.view is None:
            torch = lazy.torch()
            self.index = torch.tensor(positions, dtype=torch.long, device=t.device)
        self.bytes = self._read(t)

    def _read(self, t: Any) -> Any:
        if self.view is not None:
            return self.view[self.index].tobytes()
        torch = lazy.torch()
        return torch.take(t.detach(), self.index).view(torch.uint8)

    def same(self, t: Any) -> bool:
        """`t` (the tensor probed, or one at the same memory) reads as it did."""
        now = self._read(t)
        if self.view is not None:
            return bool(now == self.bytes)
        return bool(lazy.torch().equal(now, self.bytes))
