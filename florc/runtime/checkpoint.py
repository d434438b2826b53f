"""How a snapshot is laid out in the store: one manifest blob plus blobs for large tensors.

The manifest is the snapshot pickled with every tensor or array of at least `SEPARATE_BYTES`
(64 KiB) replaced by a reference `(kind, keys, dtype, shape)`. Such a tensor's raw bytes are cut
into chunks of `CHUNK_BYTES` (1 MiB), and each chunk is a blob named by the hash of its bytes:
a chunk whose bytes did not change since an earlier checkpoint (a frozen layer, the rows of an
embedding table no batch touched) costs a hash and no write. A tensor the capture did not copy,
because it has not changed since a checkpoint stored it (state/tracker.py), is a `StoredTensor`
in the snapshot: its reference names that checkpoint's chunks, with no hash and no write at all.
Smaller tensors (biases, norms, scalars) stay inline: a blob each would cost more than sharing
them saves.

Format 3 (chunked; every reference holds a tuple of keys) is written; format 2 (one SHA-256 blob
per tensor, the key a string) still loads.

Encoding runs on the writer thread over the snapshot's own copies, never over live tensors.
"""

from __future__ import annotations

import collections
import functools
import io
import os
import pickle
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from florc.runtime import state as st
from florc.runtime.state import kinds
from florc.runtime.state.tracker import Entry, StoredTensor
from florc.store.blobs import digest
from florc.store.index import CorruptBlob

FORMAT = 3
READABLE_FORMATS = (2, 3)
SEPARATE_BYTES = 64 * 1024
# FLORC_CHUNK_BYTES=0 stores each tensor as one blob (benchmarks compare the two layouts)
CHUNK_BYTES = int(os.environ.get("FLORC_CHUNK_BYTES", 2**20)) or 2**62


class CheckpointFormatError(ValueError):
    pass


@dataclass
class Encoded:
    manifest: bytes
    payloads: dict[str, Any] = field(default_factory=dict)  # key -> buffer of raw bytes
    nbytes: int = 0  # manifest + every tensor's bytes: what a checkpoint would be without sharing
    cloud: bool = False  # written by cloudpickle (plain pickle refused something)
    # keys of blobs already in the store that this checkpoint refers to (tensors not copied)
    shared: list[str] = field(default_factory=list)
    stored: list[StoredTensor] = field(default_factory=list)  # ... the tensors they stand for
    tracked: list[tuple[Entry, tuple[str, ...]]] = field(default_factory=list)  # copies' keys


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


def _content_id(obj: Any) -> Any:
    """A tensor or array of any size by its bytes, dtype and shape (torch's own pickle of a
    small tensor names its storage by its address, which differs from process to process)."""
    if type(obj).__name__ == "Tensor" and type(obj).__module__ == "torch":
        torch = sys.modules["torch"]
        if obj.device.type != "cpu" or obj.layout != torch.strided or obj.is_quantized:
            return None
        raw = obj.detach().contiguous().reshape(-1).view(torch.uint8).numpy()
        return ("torch", str(obj.dtype), tuple(obj.shape), obj.requires_grad, digest(raw))
    found = _raw_array(obj)
    if found is not None:
        return (*found[1], digest(found[0]))
    return None


class _ContentPickler(pickle.Pickler):
    persistent_id = staticmethod(_content_id)


def content_digest(value: Any) -> str:
    """A digest of a snapshot's part that is equal in two processes exactly when their contents
    are (a rank's copy of the model against another's). Raises what pickle raises for a value
    it cannot write."""
    buf = io.BytesIO()
    _ContentPickler(buf, protocol=5).dump(value)
    return digest(buf.getvalue())


class BaseNotWritten(Exception):
    """A tensor the snapshot did not copy is in an earlier checkpoint that was not written."""

    def __str__(self) -> str:
        return "it builds on an earlier checkpoint that could not be written"


class Unserialisable(Exception):
    """Neither pickle nor cloudpickle can write a value of the snapshot; `where` is its access
    path (`envs.envs[0].sock`), `what` its type."""

    def __init__(self, where: str | None, what: str, cause: str) -> None:
        self.where, self.what, self.cause = where, what, cause
        place = f"`{where}` (a {what})" if where else f"a {what}"
        super().__init__(f"{place} cannot be serialised, by pickle or cloudpickle: {cause}")


def _tensor_ref(self: Any, obj: Any) -> Any:
    key = id(obj)
    if key in self.seen:
        return self.seen[key]
    if isinstance(obj, StoredTensor):
        keys = obj.entry.keys
        if keys is None:
            raise BaseNotWritten()
        self.enc.shared.extend(keys)
        self.enc.stored.append(obj)
        self.enc.nbytes += obj.nbytes
        ref = (obj.kind, keys, obj.dtype, obj.shape)
        self.seen[key] = ref
        return ref
    found = _raw_tensor(obj) or _raw_array(obj)
    if found is None:
        return None
    raw, (kind, dtype, shape) = found
    chunks = []
    for chunk in _chunks(raw):
        sha = digest(chunk)
        self.enc.payloads[sha] = chunk
        chunks.append(sha)
    self.enc.nbytes += raw.nbytes
    entry = self.tracked.get(key)
    if entry is not None:
        self.enc.tracked.append((entry, tuple(chunks)))
    ref = (kind, tuple(chunks), dtype, shape)
    self.seen[key] = ref
    return ref


def _chunks(raw: Any) -> list[Any]:
    return [raw[start : start + CHUNK_BYTES] for start in range(0, raw.nbytes, CHUNK_BYTES)]


def chunk_keys(t: Any) -> tuple[str, ...] | None:
    """The keys a tensor's bytes would be stored under now (None: not stored apart)."""
    if t.device.type != "cpu":
        t = t.cpu()
    found = _raw_tensor(t.detach())
    if found is None:
        return None
    return tuple(digest(chunk) for chunk in _chunks(found[0]))


def _tensor_placeholder(self: Any, obj: Any) -> Any:
    return "t" if isinstance(obj, StoredTensor) or _raw_tensor(obj) or _raw_array(obj) else None


class _Pickler(pickle.Pickler):
    def __init__(self, file: Any, enc: Encoded, tracked: dict[int, Entry]) -> None:
        super().__init__(file, protocol=5)
        self.enc = enc
        self.tracked = tracked
        self.seen: dict[int, Any] = {}

    persistent_id = _tensor_ref


_cloud_picklers: list[Any] = []


def _cloud_pickler_class(probe: bool = False) -> Any:
    """A cloudpickle pickler that keeps the tensor references, and saves by reference whatever
    plain pickle can find again by name (cloudpickle would save the script's own classes by
    value: a replay could then not tell them from the classes of its own run). probe: tensors
    are not hashed (the pickle is only written to see whether it can be)."""
    if not _cloud_picklers:
        import cloudpickle

        class _CloudPickler(cloudpickle.Pickler):
            def __init__(self, file: Any, enc: Encoded, tracked: dict[int, Entry]) -> None:
                super().__init__(file, protocol=5)
                self.enc = enc
                self.tracked = tracked
                self.seen: dict[int, Any] = {}

            persistent_id = _tensor_ref

            def reducer_override(self, obj: Any) -> Any:
                if isinstance(obj, (type, types.FunctionType)) and st.importable(obj):
                    return NotImplemented
                return super().reducer_override(obj)

        class _Probe(_CloudPickler):
            persistent_id = _tensor_placeholder

        _cloud_picklers.extend([_CloudPickler, _Probe])
    return _cloud_picklers[1 if probe else 0]


def _problem(value: Any) -> Exception | None:
    """Why cloudpickle cannot write `value`, or None when it can."""
    try:
        _cloud_pickler_class(probe=True)(io.BytesIO(), Encoded(b""), {}).dump(value)
    except Exception as exc:  # noqa: BLE001
        return exc
    return None


def _value_parts(value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        parts = [(f"[{k!r}]", v) for k, v in value.items()]
    elif isinstance(value, (list, tuple, collections.deque)):
        parts = [(f"[{i}]", v) for i, v in enumerate(value)]
    elif isinstance(value, (set, frozenset)):
        parts = [("", v) for v in value]
    elif isinstance(value, functools.partial):
        parts = [(".func", value.func)] + [(f".args[{i}]", a) for i, a in enumerate(value.args)]
        parts += [(f".keywords[{k!r}]", v) for k, v in value.keywords.items()]
    else:
        parts = []
    if hasattr(value, "__dict__") and not isinstance(value, type):
        parts += [(f".{a}", v) for a, v in vars(value).items()]
    if isinstance(value, collections.defaultdict):
        parts.append((".default_factory", value.default_factory))
    return parts


def find_unserialisable(snap: st.Snapshot) -> Unserialisable | None:
    """The first value of the snapshot that cloudpickle cannot write, named by its path."""
    seen: set[int] = set()

    def in_value(value: Any, where: str, exc: Exception, depth: int) -> Unserialisable:
        if depth < 20:
            for seg, part in _value_parts(value):
                sub = _problem(part)
                if sub is not None:
                    return in_value(part, where + seg, sub, depth + 1)
        return Unserialisable(where, type(value).__name__, f"{type(exc).__name__}: {exc}")

    def in_node(node: st.Node, where: str) -> Unserialisable | None:
        if id(node) in seen:
            return None
        seen.add(id(node))
        for seg, child in kinds.parts(node):
            found = in_node(child, where + seg)
            if found is not None:
                return found
        for part in (node.value, node.cls, node.extra):
            exc = _problem(part)
            if exc is not None:
                return in_value(part, where, exc, 0)
        return None

    for path, node in snap.paths.items():
        found = in_node(node, path)
        if found is not None:
            return found
    return None


def encode(snap: st.Snapshot, cloud_first: bool = False) -> Encoded:
    """Pickle the snapshot's structure and hash its large tensors (waits for GPU copies first).

    Plain pickle first (the fast path: cloudpickle costs about a fifth more CPU); what it refuses
    (a closure, a lambda, a class defined in a function) goes through cloudpickle, and
    `Encoded.cloud` says so. cloud_first: skip the plain attempt (it failed for this loop
    before). Raises Unserialisable when neither can write it."""
    snap.wait()
    picklers = [_cloud_pickler_class()] if cloud_first else [_Pickler, _cloud_pickler_class()]
    for i, pickler in enumerate(picklers):
        enc = Encoded(b"")
        buf = io.BytesIO()
        try:
            pickler(buf, enc, snap.tracked).dump((FORMAT, snap))
        except BaseNotWritten:
            raise
        except Exception as exc:  # noqa: BLE001 - pickle refuses in many ways
            if i + 1 < len(picklers):
                continue
            found = find_unserialisable(snap)
            if found is None:
                raise Unserialisable(None, "value", f"{type(exc).__name__}: {exc}") from None
            raise found from None
        enc.manifest = buf.getvalue()
        enc.nbytes += len(enc.manifest)
        enc.cloud = pickler is not _Pickler
        return enc
    raise AssertionError("unreachable")


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: Any, fetch: Callable[[str], bytes]) -> None:
        super().__init__(file)
        self.fetch = fetch

    def persistent_load(self, pid: Any) -> Any:
        kind, keys, dtype, shape = pid
        if isinstance(keys, str):  # format 2: one blob
            data = bytearray(self.fetch(keys))
        else:
            data = bytearray()
            for key in keys:
                data += self.fetch(key)
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
    if fmt not in READABLE_FORMATS or not isinstance(snap, st.Snapshot):
        raise CheckpointFormatError(
            f"checkpoint format {fmt}, this florc reads {' and '.join(map(str, READABLE_FORMATS))}"
        )
    return snap
