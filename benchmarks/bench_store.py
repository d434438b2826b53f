"""Micro-benchmark: what the store costs the writer thread per checkpoint, and the hash speed.

A. Hash throughput, one thread: xxh3-128 (`florc.store.blobs.digest`, the blob key) against
   SHA-256 (the key before packs), over one buffer of random bytes.

B. Writing one checkpoint of N blobs of random (incompressible) bytes, durable and committed:

     loose   the layout before packs: every blob hashed with SHA-256 and written as a loose
             file (temporary name, fsync, rename), then one fsync per blob folder touched,
             then the index rows — what `Writer._write_checkpoint` did with `write_blob`
     pack    the current one: every blob hashed with xxh3-128, all written into one pack
             (`Store.write_pack`: one fsync of the file, one of its folder), then the index
             rows (`Store.add_checkpoint`)

   Shapes: 64 blobs of 1 MiB and 4 blobs of 64 MiB (and whatever --shape adds). Each timing is
   the median of --reps checkpoints (new bytes each time), each layout writing into an empty
   store of its own (so nothing is deduplicated) under --dir (default: a temporary folder next
   to this file, on the disk the project lives on; /tmp may be a RAM disk, where fsync costs
   nothing). fsync calls are counted per checkpoint.

Usage: python benchmarks/bench_store.py [--reps N] [--dir DIR] [--shape COUNTxMiB ...]
Prints a table; nothing is written outside the temporary folder, which is deleted.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from florc.store.blobs import BLOB_MAGIC, CODEC_RAW, digest, fsync_dir
from florc.store.index import Store

HERE = Path(__file__).resolve().parent
MiB = 2**20


class _FsyncCounter:
    def __init__(self) -> None:
        self.calls = 0
        self._real = os.fsync
        self._lock = threading.Lock()

    def __enter__(self) -> _FsyncCounter:
        def fsync(fd: int) -> None:
            with self._lock:
                self.calls += 1
            self._real(fd)

        os.fsync = fsync  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        os.fsync = self._real


def _loose_checkpoint(store: Store, payloads: list[bytes], it: int) -> None:
    """One checkpoint the way florc wrote it before packs (loose files, SHA-256)."""
    folder = store.dir / "blobs"
    keys, folders = [], set()
    for data in payloads:
        key = hashlib.sha256(data).hexdigest()
        path = folder / key[:2] / key[2:]
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                f.write(BLOB_MAGIC + bytes([CODEC_RAW, 0, 0, 0]))
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            folders.add(path.parent)
        keys.append(key)
    for sub in folders:
        fsync_dir(sub)
    with store.tx():
        store.db.executemany(
            "INSERT OR IGNORE INTO blobs (sha256, size, stored, codec) VALUES (?, ?, ?, 0)",
            [(k, len(d), len(d) + 8) for k, d in zip(keys, payloads)],
        )
        cur = store.db.execute(
            "INSERT INTO checkpoints (run, loop, iteration, occurrence, blob, nbytes, usable,"
            " info) VALUES (1, 'loose', ?, 0, ?, 0, 1, '{}')",
            (it, keys[-1]),
        )
        store.db.executemany(
            "INSERT OR IGNORE INTO checkpoint_blobs VALUES (?, ?)",
            [(cur.lastrowid, k) for k in keys],
        )


def _pack_checkpoint(store: Store, payloads: list[bytes], it: int) -> None:
    """One checkpoint as `Writer._write_checkpoint` writes it now."""
    keyed = {digest(data): data for data in payloads}
    infos = store.write_pack(keyed)
    store.add_checkpoint(1, "pack", it, 0, infos[-1].key, 0, True, {}, infos)


LAYOUTS: dict[str, Callable[[Store, list[bytes], int], None]] = {
    "loose": _loose_checkpoint,
    "pack": _pack_checkpoint,
}


def _time(base: Path, count: int, mib: int, reps: int) -> dict[str, tuple[float, float]]:
    """Per layout: median seconds per checkpoint, median fsync calls per checkpoint.

    Each repetition writes the same new bytes with every layout, in alternating order, each
    into a store of its own that is deleted afterwards, so that every layout finds the page
    cache alike (on a virtual machine, pages never used before cost far more than reused
    ones). The first repetition warms up and is not counted."""
    seconds: dict[str, list[float]] = {name: [] for name in LAYOUTS}
    fsyncs: dict[str, list[int]] = {name: [] for name in LAYOUTS}
    for rep in range(reps + 1):
        payloads = [os.urandom(mib * MiB) for _ in range(count)]
        order = list(LAYOUTS) if rep % 2 else list(reversed(LAYOUTS))
        for name in order:
            root = Path(tempfile.mkdtemp(prefix=".bench-store-", dir=base))
            try:
                store = Store(root, root / "store")
                with _FsyncCounter() as counter:
                    t0 = time.perf_counter()
                    LAYOUTS[name](store, payloads, rep)
                    took = time.perf_counter() - t0
                store.close()
            finally:
                shutil.rmtree(root, ignore_errors=True)
            if rep:
                seconds[name].append(took)
                fsyncs[name].append(counter.calls)
    return {n: (statistics.median(seconds[n]), statistics.median(fsyncs[n])) for n in LAYOUTS}


def _hash_speed(nbytes: int = 256 * MiB) -> dict[str, float]:
    data = os.urandom(nbytes)
    out = {}
    for name, fn in (("xxh3-128", digest), ("sha256", lambda b: hashlib.sha256(b).hexdigest())):
        best = min(_timed(fn, data) for _ in range(3))
        out[name] = nbytes / best / 1e9
    return out


def _timed(fn: Callable[[bytes], object], data: bytes) -> float:
    t0 = time.perf_counter()
    fn(data)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--shape", action="append", default=[], help="COUNTxMiB, e.g. 16x4")
    args = ap.parse_args()
    shapes = [(64, 1), (4, 64)] + [tuple(map(int, s.split("x"))) for s in args.shape]

    print("hash throughput, one thread (GB/s):")
    for name, speed in _hash_speed().items():
        print(f"  {name:9} {speed:6.2f}")

    base = args.dir or HERE
    print(f"\none checkpoint, durable and committed (median of {args.reps}):")
    print(f"  {'blobs':>12} {'layout':6} {'ms':>8} {'GB/s':>6} {'fsyncs':>6}")
    for count, mib in shapes:
        for name, (sec, fsyncs) in _time(base, count, mib, args.reps).items():
            gbps = count * mib * MiB / sec / 1e9
            label = f"{count} x {mib} MiB"
            print(f"  {label:>12} {name:6} {sec * 1e3:8.1f} {gbps:6.2f} {fsyncs:6.0f}")


if __name__ == "__main__":
    main()
