"""The blob store in process: xxh3-128 keys, one pack file and two fsyncs per checkpoint, every
read verified, stores written before packs (SHA-256 keys, loose files, schema 2) still loading
and migrated in place, read-only opens writing nothing, and gc of packs (deleted, compacted or
kept)."""

from __future__ import annotations

import hashlib
import os
import pickle
import random
import re
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest
import xxhash

from florc.store import blobs as blobs_mod
from florc.store import index
from florc.store.blobs import CorruptBlob, digest
from florc.store.index import Store


def _open(tmp_path: Path) -> Store:
    return Store(tmp_path, tmp_path / ".florc")


def _packs(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / ".florc" / "blobs" / "packs").glob("*.pack"))


def _payloads(n: int, size: int = 70_000, seed: int = 0) -> dict[str, bytes]:
    out = {}
    for i in range(n):
        data = random.Random(f"{seed}-{i}").randbytes(size)  # does not compress
        out[digest(data)] = data
    return out


def _commit(store: Store, payloads: dict[str, bytes], iteration: int, run: int = 1) -> int:
    infos = store.write_pack(payloads)
    keys = list(payloads)
    return store.add_checkpoint(run, "loop", iteration, 0, keys[-1], 0, True, {}, infos)


# --- keys -------------------------------------------------------------------------------------


def test_digest_is_xxh3_128_and_reads_verify_by_key_length() -> None:
    data = b"x" * 1000
    assert digest(data) == xxhash.xxh3_128_hexdigest(data)
    assert re.fullmatch(r"[0-9a-f]{32}", digest(data))
    assert digest(memoryview(data)) == digest(bytearray(data))
    assert blobs_mod.matches(digest(data), data)
    assert blobs_mod.matches(hashlib.sha256(data).hexdigest(), data)
    assert not blobs_mod.matches(hashlib.sha256(data).hexdigest(), data + b"!")
    assert not blobs_mod.matches(digest(data)[:20], data)  # a key of no known length


# --- packs ------------------------------------------------------------------------------------


def test_a_pack_round_trips_and_stored_keys_are_not_written_again(tmp_path: Path) -> None:
    store = _open(tmp_path)
    payloads = _payloads(4)
    zeros = bytes(200_000)  # compresses
    payloads[digest(zeros)] = zeros
    infos = store.write_pack(payloads, compress=True)
    assert [b.key for b in infos] == list(payloads)
    assert all(b.written for b in infos)
    (pack,) = _packs(tmp_path)
    assert {b.pack for b in infos} == {pack.name}
    # entries follow one another: each FLRC + codec + 3 bytes + payload
    offsets = [b.offset for b in infos]
    assert offsets == [sum(b.stored for b in infos[:i]) for i in range(len(infos))]
    assert pack.stat().st_size == sum(b.stored for b in infos)
    raw = pack.read_bytes()
    for b in infos:
        assert raw[b.offset : b.offset + 4] == b"FLRC" and raw[b.offset + 4] == b.codec
    assert infos[-1].codec == blobs_mod.CODEC_ZSTD and infos[-1].stored < 10_000
    assert infos[0].codec == blobs_mod.CODEC_RAW and infos[0].stored == 8 + 70_000
    assert not store.has_blob(infos[0].key)  # not committed yet
    cid = store.add_checkpoint(1, "loop", 0, 0, infos[0].key, 0, True, {}, infos)
    assert sorted(store.checkpoint_blobs(cid)) == sorted(payloads)
    for key, data in payloads.items():
        assert store.has_blob(key)
        assert store.get_blob(key) == data
    # a second checkpoint with one new payload: a pack holding just that one
    more = _payloads(1, seed=1)
    again = store.write_pack({**payloads, **more})
    assert [b.written for b in again] == [False] * len(payloads) + [True]
    assert again[0].pack == pack.name and again[0].offset == 0  # where the stored one lies
    assert len(_packs(tmp_path)) == 2
    assert store.write_pack(payloads) and len(_packs(tmp_path)) == 2  # nothing new: no file
    assert store.write_pack({}) == [] and len(_packs(tmp_path)) == 2
    store.close()


def test_dedup_across_checkpoints_and_the_writer_passes_shared_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch = pytest.importorskip("torch")
    from florc.runtime import checkpoint
    from florc.runtime import state as st
    from florc.runtime.writer import CheckpointJob, Writer

    frozen = torch.arange(100_000, dtype=torch.float32)
    names: dict[str, object] = {"frozen": frozen, "w": torch.zeros(20_000)}
    code = SimpleNamespace(co_varnames=(), co_cellvars=(), co_freevars=())
    frame = SimpleNamespace(f_code=code, f_globals=names, f_locals=names)
    scope = st.Scope(frame)  # type: ignore[arg-type]
    store_dir = tmp_path / ".florc"
    writer = Writer(tmp_path, store_dir)
    for i in range(3):
        names["w"] = torch.full((20_000,), float(i))
        snap = st.capture(scope, list(names), set())
        writer.submit_checkpoint(CheckpointJob(1, "loop", i, 0, snap, {}))
    writer.flush()
    assert writer.stats.checkpoints == 3 and not writer.stats.errors
    assert writer.stats.blobs_shared == 2  # the frozen tensor, at checkpoints 1 and 2
    store = Store(tmp_path, store_dir)
    frozen_key = digest(frozen.numpy())
    rows = store.checkpoints(1)
    assert all(frozen_key in store.checkpoint_blobs(r.id) for r in rows)
    assert store.store_bytes() < 2 * 400_000  # frozen once
    packs = _packs(tmp_path)
    assert len(packs) == 3 and packs[0].stat().st_size > 400_000 > packs[1].stat().st_size
    # Encoded.shared goes to the index: a blob the checkpoint uses without writing it
    real = checkpoint.encode

    def encode(snap: st.Snapshot, cloud_first: bool = False) -> checkpoint.Encoded:
        enc = real(snap, cloud_first)
        enc.payloads.pop(frozen_key, None)
        enc.shared = [frozen_key]
        return enc

    monkeypatch.setattr(checkpoint, "encode", encode)
    snap = st.capture(scope, list(names), set())
    writer.submit_checkpoint(CheckpointJob(1, "loop", 3, 0, snap, {}))
    writer.close()
    assert not writer.stats.errors
    last = store.checkpoints(1)[-1]
    assert last.iteration == 3 and frozen_key in store.checkpoint_blobs(last.id)
    # a shared key the store lacks is refused: the index never names what is not stored
    with pytest.raises(CorruptBlob, match="lacks"):
        store.add_checkpoint(1, "loop", 9, 0, None, 0, True, {}, shared=["0" * 32])
    assert all(r.iteration != 9 for r in store.checkpoints(1))
    store.close()


def test_one_fsync_of_the_pack_and_one_of_its_folder_per_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch = pytest.importorskip("torch")
    from florc.runtime import state as st
    from florc.runtime.writer import CheckpointJob, Writer

    store_dir = tmp_path / ".florc"
    Store(tmp_path, store_dir).close()  # the store's folders exist
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    names = {f"t{i}": torch.full((30_000,), float(i)) for i in range(6)}  # 6 separate blobs
    code = SimpleNamespace(co_varnames=(), co_cellvars=(), co_freevars=())
    frame = SimpleNamespace(f_code=code, f_globals=names, f_locals=names)
    snaps = [st.capture(st.Scope(frame), list(names), set())]  # type: ignore[arg-type]
    writer = Writer(tmp_path, store_dir)
    writer.submit_checkpoint(CheckpointJob(1, "loop", 0, 0, snaps[0], {}))
    writer.close()
    assert writer.stats.checkpoints == 1 and not writer.stats.errors
    (pack,) = _packs(tmp_path)
    assert synced == [str(pack), str(pack.parent)]
    store = Store(tmp_path, store_dir)
    assert len(store.checkpoint_blobs(store.checkpoints(1)[0].id)) == 7  # 6 tensors + manifest
    store.close()


def test_every_read_from_a_pack_is_verified(tmp_path: Path) -> None:
    store = _open(tmp_path)
    payloads = _payloads(3)
    infos = store.write_pack(payloads)
    store.add_checkpoint(1, "loop", 0, 0, None, 0, True, {}, infos)
    keys = list(payloads)
    path, offset, length = store.blob_location(keys[1])
    assert (offset, length) == (infos[1].offset, infos[1].stored)
    raw = bytearray(path.read_bytes())
    raw[offset + length // 2] ^= 0x01  # one bit of the middle blob's payload
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptBlob, match=f"blob {keys[1][:12]} is corrupt \\(hash mismatch\\)"):
        store.get_blob(keys[1])
    assert store.get_blob(keys[0]) == payloads[keys[0]]  # its neighbours are intact
    assert store.get_blob(keys[2]) == payloads[keys[2]]
    raw[offset] = ord("X")  # the entry's header
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptBlob, match="unknown format"):
        store.get_blob(keys[1])
    path.write_bytes(bytes(raw[: infos[2].offset + 10]))  # the last entry cut short
    with pytest.raises(CorruptBlob, match="is truncated"):
        store.get_blob(keys[2])
    path.write_bytes(bytes(raw[: infos[2].offset]))
    with pytest.raises(CorruptBlob, match="is missing"):
        store.get_blob(keys[2])
    path.unlink()
    with pytest.raises(CorruptBlob, match=f"blob {keys[0][:12]} is missing"):
        store.get_blob(keys[0])
    store.close()


def test_mark_unusable(tmp_path: Path) -> None:
    store = _open(tmp_path)
    a = _commit(store, _payloads(1), 0)
    b = _commit(store, _payloads(1, seed=1), 1)
    store.mark_unusable([b], "references a stale tensor")
    rows = {r.id: r for r in store.checkpoints(1)}
    assert rows[a].usable and "reason" not in rows[a].info
    assert not rows[b].usable and rows[b].info["reason"] == "references a stale tensor"
    store.close()


# --- stores written before packs -------------------------------------------------------------

V2_BLOBS = (
    "CREATE TABLE IF NOT EXISTS blobs (sha256 TEXT PRIMARY KEY, size INTEGER NOT NULL,"
    " stored INTEGER NOT NULL, codec INTEGER NOT NULL);"
)


def _legacy_store(project: Path) -> tuple[Path, dict[str, bytes]]:
    """A store as florc wrote it before packs (schema 2): loose files named by SHA-256, each
    `FLRC` + codec + 3 bytes + payload, and their rows; run 1 has two checkpoints, of which
    the second's manifest blob is also a tensor of the first."""
    folder = project / ".florc"
    (folder / "blobs").mkdir(parents=True)
    (folder / "replays").mkdir()
    data = {name: hashlib.sha256(name.encode()).digest() * 3000 for name in "abcd"}
    keys = {name: hashlib.sha256(v).hexdigest() for name, v in data.items()}
    for v, key in zip(data.values(), keys.values()):
        path = folder / "blobs" / key[:2] / key[2:]
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"FLRC\0\0\0\0" + v)
    db = sqlite3.connect(folder / "florc.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    blobs_table = r"CREATE TABLE IF NOT EXISTS blobs \(.*?\n\);"
    schema = re.sub(blobs_table, V2_BLOBS, index.SCHEMA, flags=re.S)
    assert "pack" not in schema
    db.executescript(schema)
    db.execute("INSERT INTO meta VALUES ('schema_version', '2')")
    db.execute(
        "INSERT INTO runs (kind, script, argv, started, status, env)"
        " VALUES ('record', 'train.py', '[]', 0, 'done', '{}')"
    )
    for k, v in zip(keys.values(), data.values()):
        db.execute("INSERT INTO blobs VALUES (?, ?, ?, 0)", (k, len(v), len(v) + 8))
    for cid, (manifest, refs) in enumerate([("a", "ab"), ("b", "b"), ("c", "c")], start=1):
        db.execute(
            "INSERT INTO checkpoints VALUES (?, 1, 'loop', ?, 0, ?, 0, 1, '{}')",
            (cid, cid, keys[manifest]),
        )
        for r in refs:
            db.execute("INSERT INTO checkpoint_blobs VALUES (?, ?)", (cid, keys[r]))
    db.close()
    return folder, {keys[n]: v for n, v in data.items()}


def _tree(folder: Path) -> dict[str, tuple[int, int, str]]:
    return {
        str(p.relative_to(folder)): (
            p.stat().st_size,
            p.stat().st_mtime_ns,
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "",
        )
        for p in folder.rglob("*")
    }


def test_a_read_only_open_reads_an_old_store_and_writes_nothing(tmp_path: Path) -> None:
    folder, data = _legacy_store(tmp_path)
    before = _tree(folder)
    with Store(tmp_path, folder, readonly=True) as store:
        rows = store.checkpoints(1)
        assert [len(r.blob or "") for r in rows] == [64, 64, 64]
        for key, value in data.items():
            assert store.get_blob(key) == value
        assert store.has_blob(rows[0].blob or "")
        assert store.run_bytes(1) == (0, sum(len(v) + 8 for v in list(data.values())[:3]))
    assert _tree(folder) == before
    db = sqlite3.connect(folder / "florc.db")
    assert db.execute("SELECT value FROM meta").fetchone() == ("2",)
    db.close()


def test_a_writable_open_migrates_an_old_store_which_keeps_loading(tmp_path: Path) -> None:
    folder, data = _legacy_store(tmp_path)
    keys = list(data)
    path = folder / "blobs" / keys[0][:2] / keys[0][2:]
    with Store(tmp_path, folder) as store:
        assert store.get_blob(keys[0]) == data[keys[0]]  # SHA-256, a loose file
        # new checkpoints go to packs, with xxh3 keys, next to the old blobs
        new = _payloads(2)
        cid = _commit(store, new, 10)
        assert all(len(k) == 32 for k in store.checkpoint_blobs(cid))
        assert all(store.get_blob(k) == v for k, v in new.items())
        raw = bytearray(path.read_bytes())
        raw[-1] ^= 0xFF
        path.write_bytes(bytes(raw))
        with pytest.raises(CorruptBlob, match="hash mismatch"):
            store.get_blob(keys[0])  # verified with SHA-256
        raw[-1] ^= 0xFF
        path.write_bytes(bytes(raw))
    db = sqlite3.connect(folder / "florc.db")
    assert db.execute("SELECT value FROM meta").fetchone() == (str(index.SCHEMA_VERSION),)
    assert {"pack", "pack_offset"} <= {r[1] for r in db.execute("PRAGMA table_info(blobs)")}
    db.close()
    with Store(tmp_path, folder) as store:  # a second open: already migrated
        store.delete_runs([1])
        assert store.get_blob(keys[0]) == data[keys[0]]
        _commit(store, {keys[1]: data[keys[1]]}, 0, run=2)  # keeps one old loose blob alive
        files, _ = store.collect_garbage()
        assert store.get_blob(keys[1]) == data[keys[1]]
    loose = [p for p in (folder / "blobs").rglob("*") if p.is_file() and p.parent.name != "packs"]
    assert [p.parent.name + p.name for p in loose] == [keys[1]]
    assert _packs(tmp_path) == []  # the new pack's blobs belonged to run 1
    assert files == 3 + 1


def test_a_store_of_a_newer_schema_is_refused(tmp_path: Path) -> None:
    with _open(tmp_path) as store:
        store.db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(Exception, match="schema version 99"):
        _open(tmp_path)


# --- gc ----------------------------------------------------------------------------------------


def test_gc_deletes_dead_packs_compacts_mostly_dead_ones_and_keeps_the_rest(
    tmp_path: Path,
) -> None:
    store = _open(tmp_path)
    run1 = store.create_run("record", "t.py", [], {})
    run2 = store.create_run("record", "t.py", [], {})
    a, b, c = _payloads(4, seed=1), _payloads(4, seed=2), _payloads(4, seed=3)
    ka, kb, kc = list(a), list(b), list(c)
    _commit(store, a, 0, run=run1)  # all of it dies with run 1
    _commit(store, b, 1, run=run1)  # one of four survives: 3/4 dead, compacted
    _commit(store, c, 2, run=run1)  # three of four survive: 1/4 dead, kept
    store.add_checkpoint(run2, "loop", 0, 0, None, 0, True, {}, shared=[kb[0], *kc[:3]])
    pack_a, pack_b, pack_c = (p.name for p in _packs(tmp_path))
    size = {p.name: p.stat().st_size for p in _packs(tmp_path)}
    tmp = tmp_path / ".florc" / "blobs" / "packs" / ".left-by-a-crash.tmp"
    tmp.write_bytes(b"x" * 10)
    orphan = tmp_path / ".florc" / "blobs" / "packs" / "0-0-orphan.pack"
    orphan.write_bytes(b"FLRC" * 100)  # written, never committed
    assert store.delete_runs([run1]) == [run1]
    files, freed = store.collect_garbage()
    names = {p.name for p in _packs(tmp_path)}
    assert pack_a not in names and pack_b not in names and pack_c in names
    assert len(names) == 2  # c, and the compacted copy of b's survivor
    (compacted,) = names - {pack_c}
    assert (tmp_path / ".florc/blobs/packs" / compacted).stat().st_size == 8 + len(b[kb[0]])
    assert not tmp.exists() and not orphan.exists()
    assert files == 4  # a, the temporary file, the orphan, b (compacted)
    assert freed == size[pack_a] + 10 + 400 + size[pack_b] - (8 + len(b[kb[0]]))
    assert store.get_blob(kb[0]) == b[kb[0]]
    assert all(store.get_blob(k) == c[k] for k in kc[:3])
    for k in (*ka, *kb[1:], kc[3]):
        assert not store.has_blob(k)
    # kept dead entries count on disk, not in the index
    on_disk = sum(p.stat().st_size for p in _packs(tmp_path))
    assert on_disk - store.store_bytes() == 8 + len(c[kc[3]])
    # a second gc changes nothing
    assert store.collect_garbage() == (0, 0)
    # with a threshold of 0, gc compacts every pack with a dead entry
    assert store.collect_garbage(compact_above=0.0)[0] == 1
    on_disk = sum(p.stat().st_size for p in _packs(tmp_path))
    assert on_disk == store.store_bytes() and len(_packs(tmp_path)) == 2
    assert all(store.get_blob(k) == c[k] for k in kc[:3])
    store.close()


def test_pickled_blob_info_is_plain_data() -> None:
    info = blobs_mod.BlobInfo("k" * 32, 1, 9, 0, True, "p.pack", 0)
    assert pickle.loads(pickle.dumps(info)) == info


def test_a_pack_is_complete_when_the_kernel_writes_a_little_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.writev
    calls = []

    def writev(fd: int, buffers: list[memoryview]) -> int:
        calls.append(len(buffers))
        return real(fd, [bytes(b"".join(bytes(b) for b in buffers)[:999])])

    monkeypatch.setattr(os, "writev", writev)
    store = _open(tmp_path)
    payloads = _payloads(3, size=2500)
    infos = store.write_pack(payloads)
    monkeypatch.undo()
    store.add_checkpoint(1, "loop", 0, 0, None, 0, True, {}, infos)
    assert len(calls) == -(-3 * 2508 // 999)  # 999 bytes a call, none lost or repeated
    assert all(store.get_blob(k) == v for k, v in payloads.items())
    store.close()
