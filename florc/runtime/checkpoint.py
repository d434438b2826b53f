"""How a snapshot is laid out in the store: one manifest blob plus one blob per large tensor.

The manifest is the snapshot pickled with every tensor or array of at least `SEPARATE_BYTES`
(64 KiB) replaced by a reference `(kind, sha256, dtype, shape)`. Each such tensor's raw bytes
become a blob of their own, named by their hash, so a tensor whose bytes did not change since
an earlier checkpoint (a frozen layer, an embedding table, a dataset) costs a hash and no
write. Smaller tensors (biases, norms, scalars) stay inline: a durable file each would cost more
than sharing them saves.

Encoding runs on the writer thread over the snapshot's own copies, never over live tensors.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from florc.runtime import state as st
from florc.runtime.store import CorruptBlob

FORMAT = 2
SEPARATE_BYTES = 64 * 1024


class CheckpointFormatError(ValueError):
    pass


@dataclass
class Encoded:
    manifest: bytes
    payloads: dict[str, Any] = field(default_factory=dict)  # sha256 -> buffer of raw bytes
    nbytes: int = 0  # manifest + every payload: what a checkpoint would be without sharing


def _raw_tensor(obj: Any) -> tuple[Any, tuple[Any, ...]] | None:
    # by name first: the script may be importing torch on the training thread right now
    if type(obj).__name__ != "Tensor" or type(obj).__module__ != "torch":
        return None
    torch = sys.modules["torch"]
    if obj.device.type != "cpu" or obj.layout != torch.strided or obj.is_quantized:
        return None
    if obj.nelement() * obj.element_size() < SEPARATE_BYTES or not obj.is_contiguous():
        return None
    try:
        raw = obj.detach().reshape(-1).view(torch.uint8).numpy()
    except (RuntimeError, TypeError):
        return None
    return raw, ("torch", str(obj.dtype).removeprefix("torch."), tuple(obj.shape))


def _raw_array(obj: Any) -> tuple[Any, tuple[Any, ...]] | None:
    if type(obj).__name__ != "ndarray" or type(obj).__module__ != "numpy":
        return None
    np = sys.modules["numpy"]
    if obj.dtype.hasobject or obj.dtype.fields is not None or obj.nbytes < SEPARATE_BYTES:
        return None
    if not obj.flags.c_contiguous:
        return None
    return obj.reshape(-1).view(np.uint8), ("numpy", obj.dtype.str, tuple(obj.shape))


class _Pickler(pickle.Pickler):
    def __init__(self, file: Any, payloads: dict[str, Any]) -> None:
        super().__init__(file, protocol=5)
        self.payloads = payloads
        self.seen: dict[int, Any] = {}

    def persistent_id(self, obj: Any) -> Any:
        key = id(obj)
        if key in self.seen:
            return self.seen[key]
        found = _raw_tensor(obj) or _raw_array(obj)
        if found is None:
            return None
        raw, (kind, dtype, shape) = found
        sha = hashlib.sha256(raw).hexdigest()
        self.payloads[sha] = raw
        ref = (kind, sha, dtype, shape)
        self.seen[key] = ref
        return ref


def encode(snap: st.Snapshot) -> Encoded:
    """Pickle the snapshot's structure and hash its large tensors (waits for GPU copies first)."""
    snap.wait()
    payloads: dict[str, Any] = {}
    buf = io.BytesIO()
    _Pickler(buf, payloads).dump((FORMAT, snap))
    manifest = buf.getvalue()
    return Encoded(manifest, payloads, len(manifest) + sum(p.nbytes for p in payloads.values()))


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: Any, fetch: Callable[[str], bytes]) -> None:
        super().__init__(file)
        self.fetch = fetch

    def persistent_load(self, pid: Any) -> Any:
        kind, sha, dtype, shape = pid
        data = bytearray(self.fetch(sha))
        if kind == "torch":
            import torch

            flat = torch.frombuffer(data, dtype=torch.uint8) if data else torch.empty(0)
            return flat.view(getattr(torch, dtype)).reshape(shape)
        if kind == "numpy":
            import numpy as np

            return np.frombuffer(data, dtype=np.uint8).view(np.dtype(dtype)).reshape(shape)
        raise CheckpointFormatError(f"unknown tensor kind {kind!r} in checkpoint")


def decode(manifest: bytes, fetch: Callable[[str], bytes]) -> st.Snapshot:
    """Rebuild a snapshot; `fetch(sha)` returns a verified blob."""
    try:
        fmt, snap = _Unpickler(io.BytesIO(manifest), fetch).load()
    except CorruptBlob:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure means "this checkpoint does not load"
        raise CheckpointFormatError(f"checkpoint does not load: {exc}") from None
    if fmt != FORMAT or not isinstance(snap, st.Snapshot):
        raise CheckpointFormatError(f"checkpoint format {fmt}, this florc reads {FORMAT}")
    return snap
