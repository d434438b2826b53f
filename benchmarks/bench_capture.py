"""Micro-benchmark: what one checkpoint costs the training thread and the writer, against the
hardware's own copy, hash and write speeds measured in the same run.

States (built in this process; `--size-mb` sets the size, 256 MiB by default; 1 MiB = 2^20
bytes, 1 GB = 10^9 bytes):

  all_changed  a 12-layer transformer-like stack of `nn.Linear`/`nn.LayerNorm` layers (per layer
               d×3d, d×d, d×4d, 4d×d weights) plus a d×3d head, with Adam's moments: about
               `--size-mb` in all with the gradients and Adam's moments. Between
               checkpoints every gradient is written in place (as backward accumulates it)
               and Adam steps, so every tensor is updated in place (its version counter
               moves).
  frozen       the same model and moments; only the head (about 2% of the state) gets
               gradients (the others' are None), so only the head, its gradients and its
               moments change.
  embedding    one `nn.Embedding` table of half `--size-mb` (256 columns, requires_grad off) of
               which 512 random rows are updated in place between checkpoints
               (`weight.index_add_` under no_grad), plus a small Adam-trained head (its
               parameters, gradients and moments about 1% of `--size-mb`).

A state is the globals `model`, `optimizer` and `step` of a stand-in module frame, checkpointed
through florc's real code path, as `RecordSession.save` does it: `florc.runtime.state.capture`
over a `Scope` of those globals, then `Writer.submit_checkpoint(CheckpointJob(...))` into a
fresh store in a temporary folder (`--tmp`, default the system's). Each repetition of a state
opens a new store and takes: 1 checkpoint into the empty store (reported apart: every blob is
new), `--checkpoints` steady checkpoints, each after an update and followed by
`writer.flush()`, one more whose encoding and writing are done by hand (below), and 3
back-to-back checkpoints with only an update between them and no flush (the queue can fill).

Measured per checkpoint:
- blocked: wall time on the calling thread of capture + submit (submit includes waiting for
  room in the writer's queue, reported apart as queue wait); GB of state per second blocked;
- writer: from submit until `writer.flush()` returns (every blob durable, the index row
  committed); GB/s of state and of the bytes the store folder grew by (what was written);
- breakdown (the hand-written checkpoint): `florc.runtime.checkpoint.encode` (pickle + hash),
  the blob writes (write + fsync per blob), the folder fsyncs and the index commit, timed
  apart, as the writer's `_write_checkpoint` does them;
- changed: the bytes of the tensors whose version counter moved in the update (what a tracker
  must copy), and the bytes whose values changed (the embedding's rows);
- memcpy of the changed tensors: `copy_` of exactly those tensors into preallocated tensors,
  warm, timed right after the checkpoint.
On a CUDA machine, every state is also placed on the GPU (`--gpu-size-mb`, 400 MiB by
default) and "visible" is capture + submit + the training stream's wait for the side-stream
copies (`current_stream().synchronize()` right after): what the next training kernel waits.

Baselines, each repetition, on one buffer of `--size-mb`: `dst.copy_(src)` into a preallocated
tensor (warm) and `src.clone()` (a fresh allocation: pays page faults), xxhash.xxh3_128,
hashlib.sha256 and blake3 (one thread, and all threads) over its bytes, and an fsync'd write
of it to a new file in the temporary folder; on CUDA also device→pinned copies (`non_blocking`
on a side stream, synchronized) and the allocation of a pinned buffer of that size.

Reported: medians over repetitions (pooled over the steady checkpoints); targets from the issue
next to them: blocked ≤ memcpy of the changed tensors + 1 ms; writer ≥ 1 GB/s of state; on a
GPU ≤ 10 ms visible per 400 MB of state. Rows that need a GPU are skipped without one, and the
section says so. No timing here is a test: nothing fails on a slow number.

Results: benchmarks/results/capture-<label>.json (`--label before|after`, default after); the
section between `<!-- capture:begin -->` and `<!-- capture:end -->` of benchmarks/RESULTS.md
shows every label whose file exists, side by side. --quick (16 MiB, one repetition) writes to
benchmarks/scratch/ only; --render measures nothing and rewrites the section from the files.
Set OMP_NUM_THREADS=1 (or --threads) on a shared machine.

The florc calls are isolated in `make_recorder`, `florc_capture`, `florc_submit`, `open_store`
and `encode_and_write`, which follow what `florc record` does (the tensor tracker and host
buffer pool where capture takes them, the pack store). The "before" column was measured on
florc a7e4177 (per-tensor copies and loose SHA-256 blob files, each fsynced), with this script
as it was then; its results file is kept.

Usage: python benchmarks/bench_capture.py [--size-mb N] [--reps N] [--checkpoints N]
       [--label before|after] [--threads N] [--gpu-size-mb N] [--tmp DIR] [--states A,B]
       [--quick] [--render]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import hashlib
import inspect
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from florc.runtime import checkpoint
from florc.runtime import state as st
from florc.runtime.writer import CheckpointJob, Writer
from florc.store.blobs import digest
from florc.store.index import Store

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS_MD = HERE / "RESULTS.md"
RESULTS_DIR = HERE / "results"
SCRATCH = HERE / "scratch"
BEGIN, END = "<!-- capture:begin -->", "<!-- capture:end -->"
LABELS = ("before", "after")
MIB = 2**20
GB = 1e9
LOOP = "bench.py:main"  # the loop id the checkpoints are filed under
PATHS = ["model", "optimizer", "step"]
LAYERS = 12
EMBED_DIM = 256
EMBED_ROWS_CHANGED = 512
BACK_TO_BACK = 3
TARGET_SLACK_S = 1e-3  # blocked <= memcpy of the changed tensors + 1 ms
TARGET_WRITER_GBS = 1.0
TARGET_GPU_S_PER_400MB = 10e-3


def json_path(label: str, quick: bool) -> Path:
    return (
        (SCRATCH / f"capture-{label}-quick.json")
        if quick
        else RESULTS_DIR / f"capture-{label}.json"
    )


# --- the florc calls (adapt here when florc's internals change) --------------------------


@dataclass
class Recorder:
    """What `florc record` captures with: the tensor tracker and the host buffer pool (None:
    older florc, whose capture takes neither)."""

    tracker: Any | None = None
    buffers: Any | None = None


def make_recorder() -> Recorder:
    if "tracker" not in inspect.signature(st.capture).parameters:
        return Recorder()
    from florc.runtime.state.buffers import HostBuffers
    from florc.runtime.state.tracker import TensorTracker

    return Recorder(TensorTracker(), HostBuffers())


def florc_capture(scope: st.Scope, entry: dict[str, Any], rec: Recorder) -> st.Snapshot:
    """A checkpoint's capture on the training thread, as RecordSession.save calls it."""
    if rec.tracker is None:
        return st.capture(scope, PATHS, set(PATHS), entry)
    snap = st.capture(scope, PATHS, set(PATHS), entry, rec.tracker, rec.buffers)
    rec.tracker.submitted(snap.tracked.values())
    return snap


def florc_submit(writer: Writer, run: int, iteration: int, snap: st.Snapshot) -> float:
    """Hand the snapshot to the writer; the seconds spent waiting for room in its queue."""
    info: dict[str, Any] = {"format": checkpoint.FORMAT, "missing": snap.missing}
    info["omitted"] = snap.omitted
    waited = writer.submit_checkpoint(CheckpointJob(run, LOOP, iteration, 0, snap, info))
    return float(waited or 0.0)


def open_store(folder: Path, rec: Recorder) -> tuple[Store, Writer, int]:
    """A fresh store in `folder`, a run row and the background writer, as `florc record` makes
    them."""
    store = Store(folder)
    run = store.create_run("record", "bench.py", [], {}, main_loop=LOOP)
    kwargs = {"tracker": rec.tracker} if rec.tracker is not None else {}
    return store, Writer(folder, store.dir, **kwargs), run


def encode_and_write(
    store: Store, run: int, iteration: int, snap: st.Snapshot, rec: Recorder
) -> dict[str, Any]:
    """One checkpoint written by hand on this thread, its steps timed apart (the writer's
    `_write_checkpoint`, step by step: encode, the pack and its two fsyncs, the index)."""
    t0 = time.perf_counter()
    enc = checkpoint.encode(snap)
    t1 = time.perf_counter()
    manifest = digest(enc.manifest)
    blobs = store.write_pack({**enc.payloads, manifest: enc.manifest}, False)
    t2 = time.perf_counter()
    info = {"format": checkpoint.FORMAT, "missing": snap.missing, "omitted": snap.omitted}
    shared = getattr(enc, "shared", [])
    cid = store.add_checkpoint(
        run, LOOP, iteration, 0, manifest, enc.nbytes, True, info, blobs, shared=shared
    )
    t3 = time.perf_counter()
    if rec.tracker is not None:  # what the writer tells the tracker once a checkpoint is durable
        for stored in enc.stored:
            rec.tracker.referenced(stored, cid)
        for entry, keys in enc.tracked:
            rec.tracker.committed(entry, keys)
    snap.release()
    return {
        "encode_s": t1 - t0,
        "write_s": t2 - t1,
        "sync_dirs_s": 0.0,  # the pack's folder fsync is part of write_s
        "index_s": t3 - t2,
        "encoded_bytes": enc.nbytes,
        "written_bytes": sum(b.stored for b in blobs if b.written),
        "blobs": len(blobs),
        "blobs_written": sum(b.written for b in blobs),
        "blobs_shared": len(shared),
    }


def scope_of(names: dict[str, Any]) -> st.Scope:
    """The scope of a stand-in module frame whose globals (and locals) are `names`."""
    code = SimpleNamespace(co_varnames=(), co_cellvars=(), co_freevars=())
    frame = SimpleNamespace(f_code=code, f_globals=names, f_locals=names)
    return st.Scope(frame)  # type: ignore[arg-type]


# --- the states --------------------------------------------------------------------------


@dataclass
class State:
    name: str
    what: str
    ns: dict[str, Any]  # the globals a checkpoint captures
    update: Callable[[], None]  # one training step's in-place changes
    # the bytes whose values changed, given the tensors whose version moved (None: those)
    content_changed: Callable[[list[torch.Tensor]], int | None] = lambda changed: None

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor of the state now: parameters, gradients, buffers, optimizer state."""
        model, opt = self.ns["model"], self.ns["optimizer"]
        params = list(model.parameters())
        found = [*params, *(p.grad for p in params if p.grad is not None), *model.buffers()]
        for s in opt.state.values():
            found += [v for v in s.values() if isinstance(v, torch.Tensor)]
        return found

    @property
    def nbytes(self) -> int:
        return sum(nbytes(t) for t in self.tensors())

    def versions(self) -> dict[int, tuple[torch.Tensor, int]]:
        return {id(t): (t, t._version) for t in self.tensors()}

    def changed(self, before: dict[int, tuple[torch.Tensor, int]]) -> list[torch.Tensor]:
        """The tensors that are new since `before` or whose version counter moved."""
        return [t for t in self.tensors() if id(t) not in before or before[id(t)][1] != t._version]


def nbytes(t: torch.Tensor) -> int:
    return t.nelement() * t.element_size()


def _linear(n_in: int, n_out: int, device: str) -> torch.nn.Linear:
    return torch.nn.Linear(n_in, n_out, device=device)


def _adam_state(
    name: str,
    what: str,
    model: torch.nn.Module,
    optimized: list[torch.nn.Parameter],
    trained: list[torch.nn.Parameter],
) -> State:
    """Adam over `optimized` (moments for each, from a first step), of which only `trained` get
    gradients in an update: written in place, as a backward pass accumulates them. Adam skips a
    parameter without a gradient: it and its moments stay as they are."""
    opt = torch.optim.Adam(optimized, lr=1e-4)
    # random, so that no two tensors hold the same bytes (the store would share their blobs)
    grads = {id(p): torch.randn_like(p).mul_(1e-3) for p in optimized}
    for p in optimized:
        p.grad = grads[id(p)]
    opt.step()
    keep = {id(p) for p in trained}
    ns: dict[str, Any] = {"model": model, "optimizer": opt, "step": 0}

    def update() -> None:
        for p in optimized:
            if id(p) in keep:
                p.grad = grads[id(p)]
                p.grad.mul_(0.99)  # a new gradient, in place: new values, its version moves
            else:
                p.grad = None
        opt.step()
        ns["step"] += 1

    return State(name, what, ns, update)


def transformer(size: int, device: str, frozen: bool) -> State:
    # per layer 12 d² weights (+ small biases and norms), the head 3 d²: 147 d² parameters,
    # four times over with their gradients and Adam's two moments
    d = max(16, round(math.sqrt(size / (4 * 4 * (LAYERS * 12 + 3))) / 8) * 8)
    torch.manual_seed(0)
    blocks = torch.nn.ModuleList(
        torch.nn.ModuleDict(
            {
                "ln1": torch.nn.LayerNorm(d, device=device),
                "qkv": _linear(d, 3 * d, device),
                "proj": _linear(d, d, device),
                "ln2": torch.nn.LayerNorm(d, device=device),
                "fc1": _linear(d, 4 * d, device),
                "fc2": _linear(4 * d, d, device),
            }
        )
        for _ in range(LAYERS)
    )
    head = _linear(d, 3 * d, device)
    model = torch.nn.ModuleDict({"blocks": blocks, "head": head})
    if frozen:
        what = f"{LAYERS} layers, d = {d}, Adam; only the d×3d head is trained"
        trained = list(head.parameters())
    else:
        what = f"{LAYERS} layers, d = {d}, Adam; every parameter is trained"
        trained = list(model.parameters())
    name = "frozen" if frozen else "all_changed"
    return _adam_state(name, what, model, list(model.parameters()), trained)


def embedding(size: int, device: str) -> State:
    rows = max(EMBED_ROWS_CHANGED * 4, size // 2 // (EMBED_DIM * 4))
    out = max(8, round(0.01 * size / (4 * 4 * EMBED_DIM) / 8) * 8)
    torch.manual_seed(0)
    table = torch.nn.Embedding(rows, EMBED_DIM, device=device)
    table.weight.requires_grad_(False)
    head = _linear(EMBED_DIM, out, device)
    model = torch.nn.ModuleDict({"table": table, "head": head})
    what = (
        f"Embedding {rows} × {EMBED_DIM} ({rows * EMBED_DIM * 4 / MIB:.0f} MiB), "
        f"{EMBED_ROWS_CHANGED} random rows updated per step; Adam head {EMBED_DIM}×{out}"
    )
    trained = list(head.parameters())
    state = _adam_state("embedding", what, model, trained, trained)
    adam_update = state.update
    gen = torch.Generator().manual_seed(1)
    delta = torch.full((EMBED_ROWS_CHANGED, EMBED_DIM), 1e-3, device=device)
    last: list[int] = [0]

    def update() -> None:
        idx = torch.randint(rows, (EMBED_ROWS_CHANGED,), generator=gen)
        last[0] = int(idx.unique().numel())
        with torch.no_grad():
            table.weight.index_add_(0, idx.to(device), delta)
        adam_update()

    def content_changed(changed: list[torch.Tensor]) -> int:
        rest = sum(nbytes(t) for t in changed if t is not table.weight)
        return last[0] * EMBED_DIM * 4 + rest

    state.update = update
    state.content_changed = content_changed
    return state


STATES: dict[str, Callable[[int, str], State]] = {
    "all_changed": lambda size, device: transformer(size, device, frozen=False),
    "frozen": lambda size, device: transformer(size, device, frozen=True),
    "embedding": embedding,
}


# --- measuring ---------------------------------------------------------------------------


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def memcpy_seconds(tensors: list[torch.Tensor], device: str, times: int = 3) -> float:
    """Warm `copy_` of these tensors into preallocated ones of the same size: the fastest."""
    if not tensors:
        return 0.0
    dsts = [torch.empty_like(t) for t in tensors]
    best = math.inf
    for i in range(times + 1):
        sync(device)
        t0 = time.perf_counter()
        for d, s in zip(dsts, tensors, strict=True):
            d.copy_(s)
        sync(device)
        if i:  # the first one is the warm-up
            best = min(best, time.perf_counter() - t0)
    return best


def one_checkpoint(
    state: State,
    scope: st.Scope,
    entry: dict[str, Any],
    rec: Recorder,
    store: Store,
    writer: Writer,
    run: int,
    iteration: int,
    device: str,
    how: str,
) -> dict[str, Any]:
    """An update, then one checkpoint of the state. how: "flush" (timed until durable), "hand"
    (written by hand, steps timed), "queue" (submitted and left in the queue)."""
    before = state.versions()
    t0 = time.perf_counter()
    state.update()
    sync(device)
    row: dict[str, Any] = {"update_s": time.perf_counter() - t0}
    changed = state.changed(before)
    row["changed_tensors"] = len(changed)
    row["changed_bytes"] = sum(nbytes(t) for t in changed)
    row["content_changed_bytes"] = state.content_changed(changed)
    if how != "queue":
        gc.collect()
    grown0 = folder_bytes(store.dir) if how == "flush" else 0
    faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0 = time.perf_counter()
    snap = florc_capture(scope, entry, rec)
    t1 = time.perf_counter()
    row["capture_s"] = t1 - t0
    row["capture_page_faults"] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0
    row["copied_bytes"] = getattr(snap, "nbytes", None)
    if how == "hand":
        row["blocked_s"] = row["capture_s"]
        try:
            row.update(encode_and_write(store, run, iteration, snap, rec))
        except Exception as exc:  # noqa: BLE001 - florc's store API may have changed
            row["breakdown_error"] = f"{type(exc).__name__}: {exc}"
        return row
    row["queue_wait_s"] = florc_submit(writer, run, iteration, snap)
    t2 = time.perf_counter()
    del snap
    row["blocked_s"] = t2 - t0
    if device == "cuda":
        torch.cuda.current_stream().synchronize()
        row["visible_s"] = time.perf_counter() - t0
    if how == "flush":
        writer.flush()
        row["writer_s"] = time.perf_counter() - t2
        row["written_bytes"] = folder_bytes(store.dir) - grown0
        row["memcpy_changed_s"] = memcpy_seconds(changed, device)
    return row


def measure_state(
    name: str, size: int, device: str, checkpoints: int, tmp_parent: Path
) -> dict[str, Any]:
    """One repetition of one state: a fresh store, its checkpoints."""
    state = STATES[name](size, device)
    folder = Path(tempfile.mkdtemp(prefix=f"florc-bench-capture-{name}-", dir=tmp_parent))
    rec = make_recorder()
    store, writer, run = open_store(folder, rec)
    try:
        scope = scope_of(state.ns)
        entry = st.identities(scope, PATHS)
        args = (state, scope, entry, rec, store, writer, run)
        first = one_checkpoint(*args, 0, device, "flush")
        steady = [one_checkpoint(*args, 1 + i, device, "flush") for i in range(checkpoints)]
        hand = one_checkpoint(*args, 1 + checkpoints, device, "hand")
        t0 = time.perf_counter()
        queued = [
            one_checkpoint(*args, 2 + checkpoints + i, device, "queue") for i in range(BACK_TO_BACK)
        ]
        writer.flush()
        queue_total_s = time.perf_counter() - t0
        if writer.stats.errors or writer.stats.unusable:
            raise SystemExit(
                f"bench_capture: the writer failed on {name}: {writer.stats.errors} "
                f"{writer.stats.unusable_reasons}"
            )
        usable = [c for c in store.checkpoints(run) if c.usable]
        expected = 1 + checkpoints + 1 + BACK_TO_BACK
        if len(usable) != expected:
            raise SystemExit(
                f"bench_capture: {name}: {len(usable)} usable checkpoints, expected {expected}"
            )
    finally:
        writer.close()
        store.close()
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "what": state.what,
        "state_bytes": state.nbytes,
        "tensors": len(state.tensors()),
        "tracker": type(rec.tracker).__name__ if rec.tracker is not None else None,
        "first": first,
        "steady": steady,
        "hand": hand,
        "back_to_back": queued,
        "back_to_back_total_s": queue_total_s,
    }


def timed(fn: Callable[[], Any], device: str = "cpu") -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def baselines(size: int, tmp_parent: Path) -> dict[str, float]:
    """GB/s of copying, hashing and durably writing one buffer of `size` bytes (CPU)."""
    import xxhash

    src = torch.rand(size // 4)
    raw = src.view(torch.uint8).numpy()
    out: dict[str, float] = {"bytes": float(src.nelement() * 4)}
    out["memcpy_warm"] = size / memcpy_seconds([src], "cpu") / GB
    gc.collect()
    out["clone_cold"] = size / timed(lambda: src.clone()) / GB
    out["xxh3_128"] = size / timed(lambda: xxhash.xxh3_128(raw).digest()) / GB
    out["sha256"] = size / timed(lambda: hashlib.sha256(raw).digest()) / GB
    try:
        import blake3
    except ImportError:
        pass
    else:
        out["blake3_1"] = size / timed(lambda: blake3.blake3(raw).digest()) / GB
        auto = blake3.blake3.AUTO
        out["blake3_all"] = size / timed(lambda: blake3.blake3(raw, max_threads=auto).digest()) / GB
    path = Path(tempfile.mkdtemp(prefix="florc-bench-capture-io-", dir=tmp_parent)) / "data"

    def write() -> None:
        with open(path, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())

    out["fsync_write"] = size / timed(write) / GB
    shutil.rmtree(path.parent, ignore_errors=True)
    return out


def gpu_baselines(size: int) -> dict[str, float]:
    """Device→pinned copy bandwidth (side stream, non_blocking) and a pinned allocation."""
    src = torch.rand(size // 4, device="cuda")
    t0 = time.perf_counter()
    pinned = torch.empty(src.shape, dtype=src.dtype, pin_memory=True)
    alloc_s = time.perf_counter() - t0
    side = torch.cuda.Stream()

    def copy() -> None:
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            pinned.copy_(src, non_blocking=True)
        side.synchronize()

    copy()
    best = min(timed(copy, "cuda") for _ in range(3))
    return {"bytes": float(size), "pinned_d2h": size / best / GB, "pinned_alloc_s": alloc_s}


# --- summary -----------------------------------------------------------------------------


def med(values: list[Any]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize_state(reps: list[dict[str, Any]]) -> dict[str, Any]:
    steady = [row for r in reps for row in r["steady"]]
    hand = [r["hand"] for r in reps if "breakdown_error" not in r["hand"]]
    queued = [row for r in reps for row in r["back_to_back"]]
    state_bytes = reps[0]["state_bytes"]

    def m(key: str, rows: list[dict[str, Any]] = steady) -> float | None:
        return med([row.get(key) for row in rows])

    blocked, writer = m("blocked_s"), m("writer_s")
    out: dict[str, Any] = {
        "what": reps[0]["what"],
        "state_bytes": state_bytes,
        "tensors": reps[0]["tensors"],
        "tracker": reps[0]["tracker"],
        "checkpoints": len(steady),
        "changed_bytes": m("changed_bytes"),
        "changed_tensors": m("changed_tensors"),
        "content_changed_bytes": m("content_changed_bytes"),
        "copied_bytes": m("copied_bytes"),
        "update_s": m("update_s"),
        "capture_s": m("capture_s"),
        "capture_page_faults": m("capture_page_faults"),
        "queue_wait_s": m("queue_wait_s"),
        "blocked_s": blocked,
        "blocked_min_s": min(row["blocked_s"] for row in steady),
        "blocked_max_s": max(row["blocked_s"] for row in steady),
        "blocked_state_gbs": state_bytes / blocked / GB if blocked else None,
        "memcpy_changed_s": m("memcpy_changed_s"),
        "writer_s": writer,
        "writer_state_gbs": state_bytes / writer / GB if writer else None,
        "written_bytes": m("written_bytes"),
        "written_gbs": (m("written_bytes") or 0) / writer / GB if writer else None,
        "visible_s": m("visible_s"),
        "first_blocked_s": med([r["first"]["blocked_s"] for r in reps]),
        "first_writer_s": med([r["first"]["writer_s"] for r in reps]),
        "first_written_bytes": med([r["first"]["written_bytes"] for r in reps]),
        "back_to_back_blocked_s": m("blocked_s", queued),
        "back_to_back_blocked_max_s": max(row["blocked_s"] for row in queued),
        "back_to_back_queue_wait_s": m("queue_wait_s", queued),
        "back_to_back_queue_wait_max_s": max(row["queue_wait_s"] for row in queued),
        "back_to_back_page_faults": m("capture_page_faults", queued),
        "breakdown_errors": sorted(
            {r["hand"]["breakdown_error"] for r in reps if "breakdown_error" in r["hand"]}
        ),
    }
    for key in ("encode_s", "write_s", "sync_dirs_s", "index_s", "written_bytes"):
        out[f"hand_{key}"] = m(key, hand)
    if out["memcpy_changed_s"] is not None and blocked is not None:
        limit = out["memcpy_changed_s"] + TARGET_SLACK_S
        out["target_blocked_s"] = limit
        out["target_blocked_met"] = blocked <= limit
    if out["writer_state_gbs"] is not None:
        out["target_writer_met"] = out["writer_state_gbs"] >= TARGET_WRITER_GBS
    if out["visible_s"] is not None:
        limit = TARGET_GPU_S_PER_400MB * state_bytes / 400e6
        out["target_visible_s"] = limit
        out["target_visible_met"] = out["visible_s"] <= limit
    return out


def summarize_baselines(reps: list[dict[str, float]]) -> dict[str, float | None]:
    return {k: med([r.get(k) for r in reps]) for k in reps[0]} if reps else {}


# --- the report --------------------------------------------------------------------------


def ms(s: float | None) -> str:
    return "–" if s is None else f"{s * 1e3:.1f} ms"


def gbs(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f} GB/s"


def mib(b: float | None) -> str:
    return "–" if b is None else f"{b / MIB:.1f} MiB"


def met(v: bool | None) -> str:
    return "–" if v is None else ("**met**" if v else "**not met**")


def state_rows(s: dict[str, Any], gpu: bool) -> list[tuple[str, str]]:
    rows = [
        ("state", f"{mib(s['state_bytes'])} in {s['tensors']} tensors"),
        ("changed per step (tensors whose version moved)", f"{mib(s['changed_bytes'])}"),
    ]
    if s["content_changed_bytes"] is not None:
        rows.append(("changed per step (values)", mib(s["content_changed_bytes"])))
    rows += [
        ("copied by capture (`Snapshot.nbytes`)", mib(s["copied_bytes"])),
        ("**blocked** per checkpoint (capture + submit)", f"**{ms(s['blocked_s'])}**"),
        ("… of which capture", ms(s["capture_s"])),
        ("… of which queue wait", ms(s["queue_wait_s"])),
        ("page faults during capture (minor, 4 KiB)", f"{s.get('capture_page_faults') or 0:.0f}"),
        ("state GB per second blocked", gbs(s["blocked_state_gbs"])),
    ]
    if gpu:
        rows += [
            ("device-to-device copy of the changed tensors (warm)", ms(s["memcpy_changed_s"])),
            (
                "**visible** (blocked + the training stream's wait for the copies)",
                f"**{ms(s['visible_s'])}**",
            ),
            (
                "target: visible ≤ 10 ms per 400 MB",
                f"{ms(s.get('target_visible_s'))}: {met(s.get('target_visible_met'))}",
            ),
        ]
    else:
        rows += [
            ("memcpy of the changed tensors (warm)", ms(s["memcpy_changed_s"])),
            (
                "target: blocked ≤ memcpy + 1 ms",
                f"{ms(s.get('target_blocked_s'))}: {met(s.get('target_blocked_met'))}",
            ),
        ]
    rows += [
        ("**writer**: submit → durable and committed", f"**{ms(s['writer_s'])}**"),
        ("writer, GB of state per second", gbs(s["writer_state_gbs"])),
        ("written per checkpoint (store growth)", mib(s["written_bytes"])),
        ("writer, GB written per second", gbs(s["written_gbs"])),
        ("target: writer ≥ 1 GB/s of state", met(s.get("target_writer_met"))),
        ("by hand: encode (pickle + hash)", ms(s["hand_encode_s"])),
        ("by hand: blob writes (+ fsync each)", ms(s["hand_write_s"])),
        (
            "by hand: folder fsyncs, index commit",
            f"{ms(s['hand_sync_dirs_s'])}, {ms(s['hand_index_s'])}",
        ),
        (
            "back-to-back: blocked median, max",
            f"{ms(s['back_to_back_blocked_s'])}, {ms(s['back_to_back_blocked_max_s'])}",
        ),
        (
            "back-to-back: queue wait median, max",
            f"{ms(s['back_to_back_queue_wait_s'])}, {ms(s['back_to_back_queue_wait_max_s'])}",
        ),
        (
            "back-to-back: page faults during capture",
            f"{s.get('back_to_back_page_faults') or 0:.0f}",
        ),
        (
            "first checkpoint (empty store): blocked, writer",
            f"{ms(s['first_blocked_s'])}, {ms(s['first_writer_s'])}",
        ),
        ("training step (update) between checkpoints", ms(s["update_s"])),
    ]
    if s["breakdown_errors"]:
        rows.append(("by hand: failed", "; ".join(s["breakdown_errors"])))
    return rows


BASELINE_ROWS = (
    ("memcpy_warm", "memcpy: `dst.copy_(src)`, preallocated, warm"),
    ("clone_cold", "`src.clone()` (fresh allocation, page faults)"),
    ("xxh3_128", "xxhash.xxh3_128"),
    ("sha256", "hashlib.sha256"),
    ("blake3_1", "blake3, one thread"),
    ("blake3_all", "blake3, all threads"),
    ("fsync_write", "file write + fsync, same folder as the store"),
)


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def markdown(results: dict[str, dict[str, Any]]) -> str:
    """The RESULTS.md section, one column per label that has results."""
    labels = [lab for lab in LABELS if lab in results]
    lines = [
        BEGIN,
        "## Capture: training-thread and writer throughput per checkpoint",
        "",
        "`python benchmarks/bench_capture.py --label before|after` (method: its docstring). "
        "Each column is one run of the script on the code named below it; medians over "
        "repetitions (steady checkpoints pooled). 1 MiB = 2^20 bytes, 1 GB = 10^9 bytes. "
        "**blocked** is the training thread's time per checkpoint; **writer** the time from "
        "submit until the checkpoint is durable and committed; the *by hand* rows time one "
        "checkpoint's encoding and writing apart; *back-to-back* are checkpoints with only a "
        "training step between them, the writer still busy with the previous ones. Page faults "
        "count fresh memory the copies had to touch (4 KiB each): where the allocator handed "
        "back the previous snapshot's memory to the system, a capture pays them again.",
        "",
    ]
    for lab in labels:
        r = results[lab]
        mach = r["machine"]
        lines.append(
            f"- **{lab}**: {r['date']}, florc {r['commit']}, {mach['cpu']} ({mach['cores']} "
            f"cores), torch {mach['torch']}, {mach['threads']} torch thread(s), "
            f"--size-mb {r['size_mb']}, {r['reps']} repetitions × {r['checkpoints']} steady "
            f"checkpoints, temporary folder on {r['tmp_fs']}, load average at the end "
            f"{mach['load_end']}; GPU: {r['gpu'].get('device') or 'none (GPU rows skipped)'}"
        )
    lines += ["", "### Baselines (same runs)", ""]
    header = ["", *labels]
    rows = []
    for key, text in BASELINE_ROWS:
        rows.append([text, *(gbs(results[lab]["baselines"].get(key)) for lab in labels)])
    if any(results[lab]["gpu"].get("baselines") for lab in labels):
        rows.append(
            [
                "device → pinned host copy (side stream)",
                *(
                    gbs(results[lab]["gpu"].get("baselines", {}).get("pinned_d2h"))
                    for lab in labels
                ),
            ]
        )
        rows.append(
            [
                "pinned allocation of the buffer",
                *(
                    ms(results[lab]["gpu"].get("baselines", {}).get("pinned_alloc_s"))
                    for lab in labels
                ),
            ]
        )
    lines += table(header, rows)
    for where, gpu in (("states", False), ("gpu_states", True)):
        names = [n for n in STATES if any(n in results[lab].get(where, {}) for lab in labels)]
        for name in names:
            present = [lab for lab in labels if name in results[lab].get(where, {})]
            what = results[present[-1]][where][name]["what"]
            lines += ["", f"### {name}{' on the GPU' if gpu else ''}: {what}", ""]
            per_label = [dict(state_rows(results[lab][where][name], gpu)) for lab in present]
            keys = list(dict.fromkeys(k for d in per_label for k in d))
            lines += table(["", *present], [[k, *(d.get(k, "–") for d in per_label)] for k in keys])
    if not any(results[lab].get("gpu_states") for lab in labels):
        lines += ["", "No CUDA GPU in these runs: the pinned-copy and GPU-state rows are skipped."]
    lines.append(END)
    return "\n".join(lines) + "\n"


def replace_section(document: str, section: str) -> str:
    """`section` (markers included) in place of the marked block of `document`, else appended."""
    start, end = document.find(BEGIN), document.find(END)
    if start == -1 and end == -1:
        return document.rstrip("\n") + "\n\n" + section if document.strip() else section
    if start == -1 or end == -1 or end < start:
        raise SystemExit(f"bench_capture: {RESULTS_MD} has a broken {BEGIN} ... {END} block")
    return document[:start] + section + document[end + len(END) :].removeprefix("\n")


# --- main --------------------------------------------------------------------------------


def git_commit() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "?"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "florc")
    return commit + (" (florc/ modified)" if dirty else "")


def filesystem(path: Path) -> str:
    best = ("?", "")
    for line in (
        Path("/proc/mounts").read_text().splitlines() if Path("/proc/mounts").exists() else []
    ):
        parts = line.split()
        if (
            len(parts) > 2
            and str(path.resolve()).startswith(parts[1])
            and len(parts[1]) >= len(best[1])
        ):
            best = (parts[2], parts[1])
    return best[0]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mb", type=int, default=None, help="state size in MiB (default 256)")
    ap.add_argument("--gpu-size-mb", type=int, default=400, help="state size on the GPU, MiB")
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 3; 1 quick)")
    ap.add_argument("--checkpoints", type=int, default=3, help="steady checkpoints per rep")
    ap.add_argument("--label", choices=LABELS, default="after", help="which results file")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: as set)")
    ap.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()), help="temp folder")
    ap.add_argument("--states", default=",".join(STATES), help="comma-separated states")
    ap.add_argument(
        "--quick", action="store_true", help="16 MiB, one repetition; results to scratch/ only"
    )
    ap.add_argument(
        "--render", action="store_true", help="measure nothing: rewrite the section from the files"
    )
    a = ap.parse_args()
    if a.render:
        found = {lab: json_path(lab, a.quick) for lab in LABELS if json_path(lab, a.quick).exists()}
        if not found:
            ap.error("no results file to render")
        write_section({lab: json.loads(p.read_text()) for lab, p in found.items()}, a.quick)
        return 0
    size_mb = a.size_mb or (16 if a.quick else 256)
    reps = a.reps or (1 if a.quick else 3)
    if reps < 3 and not a.quick:
        ap.error("--reps must be at least 3 (or use --quick)")
    names = [n for n in a.states.split(",") if n]
    unknown = sorted(set(names) - set(STATES))
    if unknown:
        ap.error(f"unknown states {unknown}; known: {', '.join(STATES)}")
    if a.threads:
        torch.set_num_threads(a.threads)
    size = size_mb * MIB
    gpu_size = (16 if a.quick else a.gpu_size_mb) * MIB
    cuda = torch.cuda.is_available()
    t_start = time.perf_counter()

    base_reps: list[dict[str, float]] = []
    state_reps: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    gpu_base_reps: list[dict[str, float]] = []
    gpu_reps: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for rep in range(reps):
        base_reps.append(baselines(size, a.tmp))
        b = base_reps[-1]
        print(
            f"rep {rep + 1} baselines: memcpy {b['memcpy_warm']:.2f} GB/s, clone "
            f"{b['clone_cold']:.2f}, xxh3 {b['xxh3_128']:.2f}, sha256 {b['sha256']:.2f}, "
            f"fsync'd write {b['fsync_write']:.2f}",
            flush=True,
        )
        for name in names:
            r = measure_state(name, size, "cpu", a.checkpoints, a.tmp)
            state_reps[name].append(r)
            steady = r["steady"]
            print(
                f"rep {rep + 1} {name:12s} blocked "
                + " ".join(f"{row['blocked_s'] * 1e3:.1f}" for row in steady)
                + " ms; writer "
                + " ".join(f"{row['writer_s'] * 1e3:.1f}" for row in steady)
                + " ms; memcpy of changed "
                + " ".join(f"{row['memcpy_changed_s'] * 1e3:.1f}" for row in steady)
                + " ms",
                flush=True,
            )
            gc.collect()
        if cuda:
            gpu_base_reps.append(gpu_baselines(gpu_size))
            for name in names:
                r = measure_state(name, gpu_size, "cuda", a.checkpoints, a.tmp)
                gpu_reps[name].append(r)
                print(
                    f"rep {rep + 1} {name:12s} on the GPU: visible "
                    + " ".join(f"{row['visible_s'] * 1e3:.1f}" for row in r["steady"])
                    + " ms",
                    flush=True,
                )
                torch.cuda.empty_cache()

    result: dict[str, Any] = {
        "label": a.label,
        "quick": a.quick,
        "date": dt.date.today().isoformat(),
        "commit": git_commit(),
        "size_mb": size_mb,
        "reps": reps,
        "checkpoints": a.checkpoints,
        "tmp_fs": f"{filesystem(a.tmp)}",
        "machine": {
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "load_end": [round(x, 2) for x in os.getloadavg()],
        },
        "baselines": summarize_baselines(base_reps),
        "states": {n: summarize_state(state_reps[n]) for n in names},
        "gpu": {},
        "gpu_states": {},
        "raw": {"baselines": base_reps, "states": state_reps},
        "bench_seconds": time.perf_counter() - t_start,
    }
    if cuda:
        result["gpu"] = {
            "device": torch.cuda.get_device_name(),
            "size_mb": gpu_size // MIB,
            "baselines": summarize_baselines(gpu_base_reps),
        }
        result["gpu_states"] = {n: summarize_state(gpu_reps[n]) for n in names}
        result["raw"]["gpu_baselines"] = gpu_base_reps
        result["raw"]["gpu_states"] = gpu_reps

    path = json_path(a.label, a.quick)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    results = {a.label: result}
    for lab in LABELS:
        other = json_path(lab, a.quick)
        if lab != a.label and other.exists():
            results[lab] = json.loads(other.read_text())
    md = write_section(results, a.quick)
    print(f"wrote {path.relative_to(ROOT)} and {md.relative_to(ROOT)}")
    return 0


def write_section(results: dict[str, dict[str, Any]], quick: bool) -> Path:
    """Print the section and write it: into RESULTS.md, or a file of its own in scratch/."""
    section = markdown(results)
    print()
    print(section)
    if quick:
        md = SCRATCH / "capture_quick.md"
        md.write_text(section)
    else:
        md = RESULTS_MD
        md.write_text(replace_section(md.read_text() if md.exists() else "", section))
    return md


if __name__ == "__main__":
    sys.exit(main())
