"""Content-addressed blobs: pack files `blobs/packs/<name>.pack`, and loose files
`blobs/<key[:2]>/<key[2:]>` in stores written before packs.

A blob is named by the hash of its uncompressed bytes, so the same tensor is stored once across
all checkpoints and runs, and every read checks that hash. Keys are xxh3-128 (32 hex digits,
`digest`; it runs at memory speed and releases the GIL); keys of 64 hex digits are SHA-256,
written by florc before packs, and keep loading: a read verifies with the algorithm its key's
length names.

Every blob is stored as one *entry*, `FLRC` + codec byte + 3 zero bytes + payload (raw or zstd).
A loose file is one entry; a pack is entries one after the other. Where an entry lies (pack,
offset, length) is the index's business (index.py): a pack is not self-describing.

Durability: a checkpoint's new blobs go into one new pack (`write_pack`), written in full, then
fsynced, then its folder fsynced — one file fsync and one folder fsync per checkpoint, however
many blobs it has. The index names a blob only after that. A process killed while writing leaves
a pack (or a temporary file) that no index row names, which `collect` deletes.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xxhash

BLOB_MAGIC = b"FLRC"
CODEC_RAW, CODEC_ZSTD = 0, 1
HEADER_BYTES = 8
PACKS_DIRNAME = "packs"
PACK_SUFFIX = ".pack"
_IOV_MAX = 512  # buffers per writev call (the system's limit is at least 1024)


def digest(data: Any) -> str:
    """The key of a blob: xxh3-128 of its bytes (any contiguous buffer), 32 hex digits."""
    return xxhash.xxh3_128_hexdigest(data)


def _sha256(data: Any) -> str:
    return hashlib.sha256(data).hexdigest()


# the hash of a key, by the key's length: 32 hex digits xxh3-128, 64 SHA-256 (older stores)
_ALGORITHMS = {32: digest, 64: _sha256}


def matches(key: str, data: Any) -> bool:
    """Whether `data` hashes to `key`, with the algorithm the key's length says."""
    algorithm = _ALGORITHMS.get(len(key))
    return algorithm is not None and algorithm(data) == key


@dataclass
class BlobInfo:
    key: str
    size: int  # bytes of content
    stored: int  # bytes on disk: the entry, header included
    codec: int
    written: bool  # False: the store held it already
    pack: str | None = None  # the pack's file name; None: a loose file
    offset: int = 0  # where its entry starts in the pack


class CorruptBlob(ValueError):
    pass


def _zstd() -> Any:
    import zstandard

    return zstandard.ZstdCompressor(level=3)


def _zstd_decompressor() -> Any:
    import zstandard

    return zstandard.ZstdDecompressor()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _header(codec: int) -> bytes:
    return BLOB_MAGIC + bytes([codec, 0, 0, 0])


def _write_all(fd: int, buffers: Sequence[memoryview]) -> None:
    """Write every buffer, in order, with as few system calls as the kernel allows."""
    pending = [b for b in buffers if b.nbytes]
    while pending:
        batch = pending[:_IOV_MAX]
        n = os.writev(fd, batch)
        done = 0
        while done < len(batch) and n >= batch[done].nbytes:
            n -= batch[done].nbytes
            done += 1
        rest = pending[done:]
        if n:
            rest[0] = rest[0][n:]
        pending = rest


def _parse(key: str, raw: bytes | memoryview) -> bytes:
    """An entry's content, checked against its key."""
    if len(raw) < HEADER_BYTES or bytes(raw[:4]) != BLOB_MAGIC:
        raise CorruptBlob(f"checkpoint blob {key[:12]} has an unknown format")
    codec = raw[4]
    if codec == CODEC_RAW:
        data = bytes(raw[HEADER_BYTES:])
    elif codec == CODEC_ZSTD:
        try:
            data = _zstd_decompressor().decompress(raw[HEADER_BYTES:])
        except Exception as exc:  # noqa: BLE001 - zstd raises its own error type
            raise CorruptBlob(f"checkpoint blob {key[:12]} does not decompress: {exc}") from None
    else:
        raise CorruptBlob(f"checkpoint blob {key[:12]} has unknown codec {codec}")
    if not matches(key, data):
        raise CorruptBlob(f"checkpoint blob {key[:12]} is corrupt (hash mismatch)")
    return data


class Blobs:
    """The blob files under one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.packs = folder / PACKS_DIRNAME

    def path(self, key: str) -> Path:
        """Where a loose blob file lives (stores written before packs)."""
        return self.folder / key[:2] / key[2:]

    def pack_path(self, pack: str) -> Path:
        return self.packs / pack

    def write_pack(self, payloads: Mapping[str, Any], compress: bool = False) -> list[BlobInfo]:
        """Write every payload (key -> buffer) into one new pack file, durable when this returns:
        the file fsynced, then its folder. Returns one BlobInfo per payload, in order. Nothing is
        written for an empty mapping. The caller checks which keys the store has already."""
        if not payloads:
            return []
        name = f"{time.time_ns():x}-{os.getpid()}-{secrets.token_hex(4)}{PACK_SUFFIX}"
        infos: list[BlobInfo] = []
        buffers: list[memoryview] = []
        offset = 0
        compressor = _zstd() if compress else None
        for key, data in payloads.items():
            view = memoryview(data).cast("B")
            codec, payload = CODEC_RAW, view
            if compressor is not None and view.nbytes >= 512:
                packed = compressor.compress(view)
                if len(packed) < 0.9 * view.nbytes:
                    codec, payload = CODEC_ZSTD, memoryview(packed)
            buffers += [memoryview(_header(codec)), payload]
            stored = HEADER_BYTES + payload.nbytes
            infos.append(BlobInfo(key, view.nbytes, stored, codec, True, name, offset))
            offset += stored
        self._write_new(name, buffers)
        return infos

    def _write_new(self, name: str, buffers: Sequence[memoryview]) -> None:
        """Create pack `name` with these bytes: written, fsynced, its folder fsynced."""
        path = self.pack_path(name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                _write_all(fd, buffers)
                os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            path.unlink(missing_ok=True)  # never leave a partial pack behind (disk full, ...)
            raise
        fsync_dir(self.packs)

    def read(self, key: str, pack: str | None = None, offset: int = 0, stored: int = 0) -> bytes:
        """A blob's content, checked against its key: from its pack (where the index says its
        entry lies) or, with pack None, from its loose file."""
        if pack is None:
            try:
                raw = self.path(key).read_bytes()
            except FileNotFoundError:
                raise CorruptBlob(f"checkpoint blob {key[:12]} is missing") from None
            return _parse(key, raw)
        try:
            fd = os.open(self.pack_path(pack), os.O_RDONLY)
        except FileNotFoundError:
            raise CorruptBlob(f"checkpoint blob {key[:12]} is missing (pack {pack})") from None
        try:
            raw = os.pread(fd, stored, offset)
        finally:
            os.close(fd)
        if not raw:
            raise CorruptBlob(f"checkpoint blob {key[:12]} is missing (pack {pack} ends before)")
        if len(raw) < stored:
            raise CorruptBlob(f"checkpoint blob {key[:12]} is truncated (pack {pack})")
        return _parse(key, raw)

    def compact(self, entries: Iterable[tuple[str, str, int, int]]) -> tuple[str, list[int]]:
        """Copy entries (key, pack, offset, stored) into one new durable pack, unchanged (their
        content is checked when read). Returns the new pack's name and each entry's offset."""
        name = f"{time.time_ns():x}-{os.getpid()}-{secrets.token_hex(4)}{PACK_SUFFIX}"
        buffers: list[memoryview] = []
        offsets: list[int] = []
        at = 0
        for key, pack, offset, stored in entries:
            with open(self.pack_path(pack), "rb") as f:
                raw = os.pread(f.fileno(), stored, offset)
            if len(raw) != stored:
                raise CorruptBlob(f"checkpoint blob {key[:12]} is truncated (pack {pack})")
            buffers.append(memoryview(raw))
            offsets.append(at)
            at += stored
        self._write_new(name, buffers)
        return name, offsets

    def collect(self, loose: set[str], packs: set[str]) -> tuple[int, int]:
        """Delete loose blob files whose key is not in `loose`, pack files not in `packs`, and
        leftover temporary files. Returns (files, bytes)."""
        files = freed = 0
        if not self.folder.is_dir():
            return 0, 0
        for sub in self.folder.iterdir():
            if not sub.is_dir():
                continue
            in_packs = sub.name == PACKS_DIRNAME
            for f in sub.iterdir():
                if f.name.startswith("."):
                    keep = False  # a temporary file
                elif in_packs:
                    keep = f.name in packs
                else:
                    keep = sub.name + f.name in loose
                if not keep:
                    freed += f.stat().st_size
                    f.unlink()
                    files += 1
        return files, freed
