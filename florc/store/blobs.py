"""Content-addressed blob files: `blobs/<sha[:2]>/<sha[2:]>`, each `FLRC` + codec + payload.

A blob is named by the SHA-256 of its uncompressed bytes, so the same tensor is stored once
across all checkpoints and runs, and every read checks the hash. A blob file appears only once
durable: written under a temporary name, fsynced, renamed, its folder fsynced (`sync_dirs` does
the last step for many blobs at once). The index (index.py) refers to a blob only after that.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BLOB_MAGIC = b"FLRC"
CODEC_RAW, CODEC_ZSTD = 0, 1


@dataclass
class BlobInfo:
    sha: str
    size: int  # bytes of content
    stored: int  # bytes on disk
    codec: int
    written: bool


class CorruptBlob(ValueError):
    pass


def digest(data: Any) -> str:
    """A blob's key: the hash of its bytes."""
    return hashlib.sha256(memoryview(data).cast("B")).hexdigest()


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


class Blobs:
    """The blob files under one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, sha: str) -> Path:
        return self.folder / sha[:2] / sha[2:]

    def write(
        self, data: Any, sha: str | None = None, compress: bool = False, sync_dir: bool = True
    ) -> BlobInfo:
        """Write bytes (any buffer) as a durable blob file unless it exists.

        With sync_dir=False the caller must `sync_dirs` the blob's folder before relying on it.
        """
        view = memoryview(data).cast("B")
        sha = sha or hashlib.sha256(view).hexdigest()
        path = self.path(sha)
        if path.exists():
            with open(path, "rb") as f:
                header = f.read(8)
            codec = header[4] if len(header) == 8 else CODEC_RAW
            return BlobInfo(sha, view.nbytes, path.stat().st_size, codec, written=False)
        codec, payload = CODEC_RAW, view
        if compress and view.nbytes >= 512:
            packed = _zstd().compress(view)
            if len(packed) < 0.9 * view.nbytes:
                codec, payload = CODEC_ZSTD, memoryview(packed)
        path.parent.mkdir(mode=0o700, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(BLOB_MAGIC + bytes([codec, 0, 0, 0]))
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)  # never leave a partial blob behind (disk full, ...)
            raise
        if sync_dir:
            fsync_dir(path.parent)
        return BlobInfo(sha, view.nbytes, payload.nbytes + 8, codec, written=True)

    def sync_dirs(self, blobs: Iterable[BlobInfo]) -> None:
        """Make the renames of newly written blobs durable: one fsync per folder."""
        for folder in {self.path(b.sha).parent for b in blobs if b.written}:
            fsync_dir(folder)

    def read(self, sha: str) -> bytes:
        """A blob's content, checked against its hash."""
        path = self.path(sha)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise CorruptBlob(f"checkpoint blob {sha[:12]} is missing") from None
        if raw[:4] != BLOB_MAGIC or len(raw) < 8:
            raise CorruptBlob(f"checkpoint blob {sha[:12]} has an unknown format")
        codec = raw[4]
        if codec == CODEC_RAW:
            data = raw[8:]
        elif codec == CODEC_ZSTD:
            try:
                data = _zstd_decompressor().decompress(raw[8:])
            except Exception as exc:  # noqa: BLE001 - zstd raises its own error type
                raise CorruptBlob(f"blob {sha[:12]} does not decompress: {exc}") from None
        else:
            raise CorruptBlob(f"checkpoint blob {sha[:12]} has unknown codec {codec}")
        if hashlib.sha256(data).hexdigest() != sha:
            raise CorruptBlob(f"checkpoint blob {sha[:12]} is corrupt (hash mismatch)")
        return data

    def collect(self, live: set[str]) -> tuple[int, int]:
        """Delete blob files not in `live` (and leftover temporary files): (files, bytes)."""
        files = freed = 0
        if not self.folder.is_dir():
            return 0, 0
        for sub in self.folder.iterdir():
            if not sub.is_dir():
                continue
            for f in sub.iterdir():
                if f.name.startswith(".") or sub.name + f.name not in live:
                    freed += f.stat().st_size
                    f.unlink()
                    files += 1
        return files, freed
