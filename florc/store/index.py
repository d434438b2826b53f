"""The run store: a folder (`.florc/` at the project root unless configured otherwise) holding
the SQLite index and the content-addressed blobs (blobs.py).

A checkpoint is one small *manifest* blob (the snapshot's structure) plus one blob per large
tensor or array. Blobs are named by the hash of their uncompressed bytes (blobs.py: xxh3-128,
or SHA-256 in stores written before schema 3), so a tensor that does not change (a frozen
layer, an embedding, a buffer) is stored once across all checkpoints and runs, and every read
checks the hash. The `blobs` table says where each blob lies: in a pack file (pack, offset,
stored bytes) or, for blobs written before packs, in a loose file of its own.

Crash safety: a checkpoint's new blobs are written into one new pack, which is fsynced, then its
folder (`write_pack`); the checkpoint's index rows — the checkpoint, its blobs — are committed
after that, in one transaction (`add_checkpoint`). A process killed at any instant leaves at
most packs, loose or temporary files that no row names, which `gc` removes.

Where the store lives is the caller's decision (florc/project.py's `store_location` reads the
configuration); the store only opens the folder it is given. A read-only open of a folder
without a store creates nothing: it reads an empty store.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from florc.errors import UsageError
from florc.project import STORE_DIRNAME, ignore_in_git
from florc.store.blobs import BlobInfo, Blobs, CorruptBlob, fsync_dir

__all__ = ["BlobInfo", "CheckpointRow", "CorruptBlob", "Store"]

# 1: one blob per checkpoint; 2: a manifest blob plus one blob per large tensor (the blobs and
# checkpoint_blobs tables), each with its codec; 3: blobs in pack files (the blobs table's pack
# and pack_offset columns, NULL for a loose file) and keyed by xxh3-128. A writable open
# migrates a store of version 2 in place; a read-only one reads it as it is.
SCHEMA_VERSION = 3
READABLE_VERSIONS = (2, 3)
# gc compacts a pack when more than this share of its bytes is no longer referenced
COMPACT_ABOVE = 0.5
DB_NAME = "florc.db"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,               -- record | replay | verify
    parent INTEGER,                   -- for a replay: the recorded run
    script TEXT NOT NULL,
    argv TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL,
    status TEXT NOT NULL,             -- running | done | partial | failed | interrupted
    exit_code INTEGER,
    pid INTEGER,                      -- the process that wrote it (to tell a crashed run)
    env TEXT NOT NULL,                -- json: versions, git commit, ...
    main_loop TEXT,
    epochs TEXT                       -- json, replay and verify: what was asked (spec,
                                      -- iterations, faithful), fidelity, segments
);
CREATE TABLE IF NOT EXISTS sources (
    run INTEGER NOT NULL, relpath TEXT NOT NULL, sha256 TEXT NOT NULL, text TEXT NOT NULL,
    PRIMARY KEY (run, relpath)
);
CREATE TABLE IF NOT EXISTS iterations (
    run INTEGER NOT NULL, idx INTEGER NOT NULL, value TEXT, PRIMARY KEY (run, idx)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run INTEGER NOT NULL, loop TEXT NOT NULL,
    iteration INTEGER NOT NULL, occurrence INTEGER NOT NULL,
    blob TEXT,                        -- the manifest blob (NULL when not usable)
    nbytes INTEGER NOT NULL,          -- logical size: manifest + every tensor it names
    usable INTEGER NOT NULL, info TEXT NOT NULL,
    UNIQUE (run, loop, iteration, occurrence)
);
CREATE TABLE IF NOT EXISTS blobs (
    sha256 TEXT PRIMARY KEY,          -- the key: xxh3-128 (32 hex) or SHA-256 (64 hex, older)
    size INTEGER NOT NULL, stored INTEGER NOT NULL, codec INTEGER NOT NULL,
    pack TEXT,                        -- the pack file holding its entry (NULL: a loose file)
    pack_offset INTEGER               -- where the entry starts in the pack
);
CREATE TABLE IF NOT EXISTS checkpoint_blobs (
    checkpoint INTEGER NOT NULL, blob TEXT NOT NULL, PRIMARY KEY (checkpoint, blob)
);
CREATE INDEX IF NOT EXISTS checkpoint_blobs_blob ON checkpoint_blobs (blob);
CREATE TABLE IF NOT EXISTS callees (
    run INTEGER NOT NULL, loop TEXT NOT NULL, function TEXT NOT NULL,
    PRIMARY KEY (run, loop, function)
);
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run INTEGER NOT NULL, statement TEXT NOT NULL, iteration INTEGER, epoch TEXT, step INTEGER,
    name TEXT NOT NULL, value TEXT NOT NULL, new INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS logs_run ON logs (run);
"""


@dataclass
class CheckpointRow:
    id: int
    loop: str
    iteration: int
    occurrence: int
    blob: str | None
    nbytes: int
    usable: bool
    info: dict[str, Any]


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Store:
    """The index and blobs of one store folder. Use it as a context manager (it closes)."""

    def __init__(self, root: Path, location: Path | None = None, readonly: bool = False) -> None:
        """location: the store folder (default: `.florc` under root; project.store_location
        says which one the configuration names). readonly: open to read, never to write; a
        folder without a store then reads as an empty store and nothing is created."""
        self.root = root
        self._lock: Any = None
        self.dir = location if location is not None else root / STORE_DIRNAME
        self.readonly = readonly
        self.blobs = Blobs(self.dir / "blobs")
        self._packed = True  # whether the blobs table has the pack columns (schema 3)
        if readonly and not (self.dir / DB_NAME).is_file():
            self.db = sqlite3.connect(":memory:", isolation_level=None)  # an empty store
            self._create_schema()
            return
        if not readonly:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            ignore_in_git(self.dir)
            (self.dir / "blobs").mkdir(mode=0o700, exist_ok=True)
            (self.dir / "replays").mkdir(mode=0o700, exist_ok=True)
            if not self.blobs.packs.is_dir():
                self.blobs.packs.mkdir(mode=0o700, exist_ok=True)
                fsync_dir(self.blobs.folder)  # the folder outlives a crash: packs rely on it
        self.db = sqlite3.connect(self.dir / DB_NAME, timeout=60, isolation_level=None)
        try:
            self._open_db(readonly)
        except BaseException:
            self.db.close()
            raise

    def _open_db(self, readonly: bool) -> None:
        if readonly:
            self._check_version(self._schema_version())
            self._packed = self._has_pack_columns()
            return
        self._use_wal()
        self.db.execute("PRAGMA synchronous=NORMAL")
        with self.tx():
            version = self._schema_version()
            self._check_version(version)
            if version is not None and int(version) < SCHEMA_VERSION:
                self._migrate()
            self._create_schema()
            if version is None:
                self.db.execute(
                    "INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )

    def _use_wal(self) -> None:
        """Switch a new index to write-ahead logging (it stays so). Two processes creating one
        store at once both try; SQLite answers the second "locked" at once, without waiting
        for its busy timeout, so wait here."""
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.db.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                    return
                self.db.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @staticmethod
    def exists(location: Path) -> bool:
        """Whether a store has been created in this folder."""
        return (location / DB_NAME).is_file()

    def _schema_version(self) -> str | None:
        has_meta = self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
        ).fetchone()
        if not has_meta:
            return None
        row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return None if row is None else str(row[0])

    def _has_pack_columns(self) -> bool:
        return "pack" in {r[1] for r in self.db.execute("PRAGMA table_info(blobs)")}

    def _migrate(self) -> None:
        """Schema 2 -> 3, inside the open's transaction: the blobs table gains the pack columns
        (its rows, loose files, keep NULL there). Older blobs keep their SHA-256 keys."""
        if not self._has_pack_columns():
            self.db.execute("ALTER TABLE blobs ADD COLUMN pack TEXT")
            self.db.execute("ALTER TABLE blobs ADD COLUMN pack_offset INTEGER")
        self.db.execute(
            "UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),)
        )

    def _check_version(self, version: str | None) -> None:
        if version is not None and int(version) not in READABLE_VERSIONS:
            raise UsageError(
                f"{self.dir}: store schema version {version}, "
                f"this florc reads {SCHEMA_VERSION}. "
                "Use the florc version that wrote it, or move the store aside."
            )

    def _create_schema(self) -> None:
        for statement in SCHEMA.split(";"):
            if statement.strip():
                self.db.execute(statement)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def replay_dir(self, run: int) -> Path:
        """The folder of a replay's (or verify's) own files: sandboxed writes, worker plans."""
        return self.dir / "replays" / str(run)

    def tx(self) -> sqlite3.Connection:
        return _Tx(self.db)  # type: ignore[return-value]

    def close(self) -> None:
        self.db.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # runs -------------------------------------------------------------------
    def create_run(
        self,
        kind: str,
        script: str,
        argv: list[str],
        env: dict[str, Any],
        parent: int | None = None,
        main_loop: str | None = None,
        epochs: Any = None,
    ) -> int:
        with self.tx():
            cur = self.db.execute(
                "INSERT INTO runs"
                " (kind, parent, script, argv, started, status, pid, env, main_loop, epochs)"
                " VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?, ?)",
                (
                    kind,
                    parent,
                    script,
                    json.dumps(argv),
                    time.time(),
                    os.getpid(),
                    json.dumps(env),
                    main_loop,
                    json.dumps(epochs),
                ),
            )
            return int(cur.lastrowid or 0)

    def finish_run(self, run: int, status: str, exit_code: int | None) -> None:
        with self.tx():
            self.db.execute(
                "UPDATE runs SET status=?, exit_code=?, finished=? WHERE id=?",
                (status, exit_code, time.time(), run),
            )

    def update_env(self, run: int, values: dict[str, Any]) -> None:
        """Add facts learned while the run ran (e.g. torch's thread count) to its env."""
        with self.tx():
            row = self.db.execute("SELECT env FROM runs WHERE id=?", (run,)).fetchone()
            env = json.loads(row[0]) if row else {}
            env.update(values)
            self.db.execute("UPDATE runs SET env=? WHERE id=?", (json.dumps(env), run))

    def set_replay_info(self, run: int, info: dict[str, Any]) -> None:
        """Add keys to a replay's description (its `epochs` field)."""
        with self.tx():
            row = self.db.execute("SELECT epochs FROM runs WHERE id=?", (run,)).fetchone()
            current = json.loads(row[0]) if row and row[0] else {}
            current.update(info)
            self.db.execute("UPDATE runs SET epochs=? WHERE id=?", (json.dumps(current), run))

    def run(self, run: int) -> dict[str, Any] | None:
        cur = self.db.execute("SELECT * FROM runs WHERE id=?", (run,))
        row = cur.fetchone()
        if row is None:
            return None
        d = dict(zip([c[0] for c in cur.description], row))
        d["argv"] = json.loads(d["argv"])
        d["env"] = json.loads(d["env"])
        d["epochs"] = json.loads(d["epochs"]) if d["epochs"] else None
        if d["status"] == "running" and not _alive(d["pid"]):
            d["status"] = "killed"  # the process ended without finishing the run
        return d

    def runs(self, kind: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT id FROM runs" + (" WHERE kind=?" if kind else "") + " ORDER BY id"
        ids = [r[0] for r in self.db.execute(q, (kind,) if kind else ())]
        return [r for r in (self.run(i) for i in ids) if r is not None]

    def latest_run(self, script: str) -> int | None:
        row = self.db.execute(
            "SELECT id FROM runs WHERE kind='record' AND script=? ORDER BY id DESC LIMIT 1",
            (script,),
        ).fetchone()
        return int(row[0]) if row else None

    # the ranks of a distributed job (runtime/distributed.py) -------------------
    def job_run(self, launch: str) -> int | None:
        """Rank 0's run of the launch with this key (the job's run), once it is open."""
        row = self.db.execute(
            "SELECT id FROM runs WHERE kind='record'"
            " AND json_extract(env, '$.distributed.launch')=? ORDER BY id DESC LIMIT 1",
            (launch,),
        ).fetchone()
        return int(row[0]) if row else None

    def rank_runs(self, run: int) -> dict[int, int]:
        """rank -> its run, for every rank of the job whose run this is (rank 0: the job's)."""
        out = {0: run}
        for rid, env in self.db.execute(
            "SELECT id, env FROM runs WHERE kind='rank' AND parent=? ORDER BY id", (run,)
        ):
            out.setdefault(int(json.loads(env)["distributed"]["rank"]), int(rid))
        return out

    # sources ----------------------------------------------------------------
    def add_sources(self, run: int, files: dict[str, str]) -> None:
        with self.tx():
            for relpath, text in files.items():
                self.db.execute(
                    "INSERT OR REPLACE INTO sources VALUES (?, ?, ?, ?)",
                    (run, relpath, hashlib.sha256(text.encode()).hexdigest(), text),
                )

    def sources(self, run: int) -> dict[str, str]:
        return dict(self.db.execute("SELECT relpath, text FROM sources WHERE run=?", (run,)))

    # iterations -------------------------------------------------------------
    def add_iteration(self, run: int, idx: int, value: Any) -> None:
        with self.tx():
            self.db.execute(
                "INSERT OR REPLACE INTO iterations VALUES (?, ?, ?)", (run, idx, json.dumps(value))
            )

    def iterations(self, run: int) -> list[tuple[int, Any]]:
        rows = self.db.execute("SELECT idx, value FROM iterations WHERE run=? ORDER BY idx", (run,))
        return [(i, json.loads(v) if v is not None else None) for i, v in rows]

    # blobs (blobs.py) -----------------------------------------------------------
    def _blob_rows(self, keys: Iterable[str]) -> dict[str, BlobInfo]:
        """The stored blobs among these keys."""
        where = "pack, pack_offset" if self._packed else "NULL, NULL"
        found: dict[str, BlobInfo] = {}
        wanted = list(dict.fromkeys(keys))
        for i in range(0, len(wanted), 500):  # below SQLite's limit on bound variables
            batch = wanted[i : i + 500]
            rows = self.db.execute(
                f"SELECT sha256, size, stored, codec, {where} FROM blobs"
                f" WHERE sha256 IN ({','.join('?' * len(batch))})",
                batch,
            )
            for key, size, stored, codec, pack, offset in rows:
                found[key] = BlobInfo(key, size, stored, codec, False, pack, offset or 0)
        return found

    def write_pack(self, payloads: Mapping[str, Any], compress: bool = False) -> list[BlobInfo]:
        """Write the payloads (key -> buffer; the key is `blobs.digest` of the bytes) that the
        store does not hold yet into one new pack, durable when this returns (one fsync of the
        file, one of its folder); no index row yet: `add_checkpoint` commits them.

        Returns one BlobInfo per payload, in order: written=False for a key already stored.
        With nothing new, no file is written."""
        known = self._blob_rows(payloads)
        new = {k: v for k, v in payloads.items() if k not in known}
        written = {b.key: b for b in self.blobs.write_pack(new, compress)}
        return [known[k] if k in known else written[k] for k in payloads]

    def has_blob(self, key: str) -> bool:
        """Whether the index holds this blob (committed by some checkpoint, not yet collected)."""
        return self.db.execute("SELECT 1 FROM blobs WHERE sha256=?", (key,)).fetchone() is not None

    def get_blob(self, key: str) -> bytes:
        """A blob's content, checked against its key (CorruptBlob when missing or damaged)."""
        row = self._blob_rows([key]).get(key)
        if row is None or row.pack is None:
            return self.blobs.read(key)  # a loose file, as written before packs
        return self.blobs.read(key, row.pack, row.offset, row.stored)

    def blob_location(self, key: str) -> tuple[Path, int, int]:
        """Where a blob's entry lies: (file, offset, length) — a pack, or a loose file at 0."""
        row = self._blob_rows([key]).get(key)
        if row is None or row.pack is None:
            path = self.blobs.path(key)
            return path, 0, path.stat().st_size if path.exists() else 0
        return self.blobs.pack_path(row.pack), row.offset, row.stored

    # checkpoints ------------------------------------------------------------
    def add_checkpoint(
        self,
        run: int,
        loop: str,
        iteration: int,
        occurrence: int,
        manifest: str | None,
        nbytes: int,
        usable: bool,
        info: dict[str, Any],
        blobs: Iterable[BlobInfo] = (),
        shared: Iterable[str] = (),
    ) -> int:
        """Commit a checkpoint's index rows; returns its id. `blobs`: what `write_pack` returned
        (its packs are durable already); `shared`: keys of blobs committed before that this
        checkpoint uses too (so gc keeps them). A checkpoint that replaces one of the same
        (run, loop, iteration, occurrence) drops that one's references."""
        blobs = list(blobs)
        refs = list(dict.fromkeys([*(b.key for b in blobs), *shared]))
        with self.tx():
            self.db.executemany(
                "INSERT OR IGNORE INTO blobs"
                " (sha256, size, stored, codec, pack, pack_offset) VALUES (?, ?, ?, ?, ?, ?)",
                [(b.key, b.size, b.stored, b.codec, b.pack, b.offset) for b in blobs if b.written],
            )
            missing = set(shared) - set(self._blob_rows(shared))
            if missing:
                raise CorruptBlob(
                    f"checkpoint shares blob {sorted(missing)[0][:12]}, which the store lacks"
                )
            old = self.db.execute(
                "SELECT id FROM checkpoints WHERE run=? AND loop=? AND iteration=?"
                " AND occurrence=?",
                (run, loop, iteration, occurrence),
            ).fetchone()
            if old is not None:
                self.db.execute("DELETE FROM checkpoint_blobs WHERE checkpoint=?", (old[0],))
            cur = self.db.execute(
                "INSERT OR REPLACE INTO checkpoints"
                " (run, loop, iteration, occurrence, blob, nbytes,"
                " usable, info) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run, loop, iteration, occurrence, manifest, nbytes, int(usable), json.dumps(info)),
            )
            checkpoint = int(cur.lastrowid or 0)
            self.db.executemany(
                "INSERT OR IGNORE INTO checkpoint_blobs VALUES (?, ?)",
                [(checkpoint, key) for key in refs],
            )
        return checkpoint

    def mark_unusable(self, checkpoint_ids: Iterable[int], reason: str) -> None:
        """Checkpoints that must not be restored (found to reference stale data): usable=0, and
        the reason in their info."""
        with self.tx():
            for cid in checkpoint_ids:
                row = self.db.execute("SELECT info FROM checkpoints WHERE id=?", (cid,)).fetchone()
                if row is None:
                    continue
                info = json.loads(row[0])
                info["reason"] = reason
                self.db.execute(
                    "UPDATE checkpoints SET usable=0, info=? WHERE id=?", (json.dumps(info), cid)
                )

    def checkpoints(self, run: int) -> list[CheckpointRow]:
        rows = self.db.execute(
            "SELECT id, loop, iteration, occurrence, blob, nbytes, usable, info FROM checkpoints"
            " WHERE run=? ORDER BY id",
            (run,),
        )
        return [
            CheckpointRow(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), json.loads(r[7]))
            for r in rows
        ]

    def checkpoint_blobs(self, checkpoint: int) -> list[str]:
        rows = self.db.execute(
            "SELECT blob FROM checkpoint_blobs WHERE checkpoint=?", (checkpoint,)
        )
        return [r[0] for r in rows]

    def run_bytes(self, run: int) -> tuple[int, int]:
        """(logical bytes of the run's checkpoints, bytes on disk of the blobs they use)."""
        total = self.db.execute(
            "SELECT COALESCE(SUM(nbytes), 0) FROM checkpoints WHERE run=?", (run,)
        ).fetchone()[0]
        stored = self.db.execute(
            "SELECT COALESCE(SUM(stored), 0) FROM blobs WHERE sha256 IN"
            " (SELECT checkpoint_blobs.blob FROM checkpoint_blobs"
            " JOIN checkpoints ON checkpoints.id = checkpoint_blobs.checkpoint"
            " WHERE checkpoints.run=?)",
            (run,),
        ).fetchone()[0]
        return int(total), int(stored)

    def store_bytes(self) -> int:
        return int(self.db.execute("SELECT COALESCE(SUM(stored), 0) FROM blobs").fetchone()[0])

    # garbage collection -----------------------------------------------------
    def delete_runs(self, runs: Iterable[int]) -> list[int]:
        """Delete runs, their replays and all their rows; returns the ids deleted."""
        ids = set(runs)
        ids |= {
            r[0]
            for r in self.db.execute(
                f"SELECT id FROM runs WHERE parent IN ({','.join('?' * len(ids))})", tuple(ids)
            )
        }
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        args = tuple(ids)
        with self.tx():
            self.db.execute(
                f"DELETE FROM checkpoint_blobs WHERE checkpoint IN"
                f" (SELECT id FROM checkpoints WHERE run IN ({marks}))",
                args,
            )
            for table in ("checkpoints", "sources", "iterations", "callees", "logs"):
                self.db.execute(f"DELETE FROM {table} WHERE run IN ({marks})", args)
            self.db.execute(f"DELETE FROM runs WHERE id IN ({marks})", args)
        for run in ids:
            shutil.rmtree(self.replay_dir(run), ignore_errors=True)
        return sorted(ids)

    def collect_garbage(self, compact_above: float = COMPACT_ABOVE) -> tuple[int, int]:
        """Free what no checkpoint references: the blobs' rows, loose files, packs without a
        live entry, leftover temporary files. A pack whose dead bytes exceed `compact_above` of
        its size is compacted: its live entries are copied into a new pack (one for all such
        packs, durable before the rows point at it) and the old pack is deleted; a pack less
        dead than that is kept as it is, its dead entries with it.

        Returns (files deleted, bytes freed). Call only while holding the store alone
        (`exclusive`): no record or replay may read or write it meanwhile.
        """
        with self.tx():
            self.db.execute(
                "DELETE FROM blobs WHERE sha256 NOT IN (SELECT blob FROM checkpoint_blobs)"
            )
        live = [
            BlobInfo(key, size, stored, codec, False, pack, offset or 0)
            for key, size, stored, codec, pack, offset in self.db.execute(
                "SELECT sha256, size, stored, codec, "
                + ("pack, pack_offset" if self._packed else "NULL, NULL")
                + " FROM blobs"
            )
        ]
        by_pack: dict[str, list[BlobInfo]] = {}
        for b in live:
            if b.pack is not None:
                by_pack.setdefault(b.pack, []).append(b)
        files, freed = self.blobs.collect({b.key for b in live if b.pack is None}, set(by_pack))
        dead: list[tuple[str, int]] = []  # (pack, size) to compact
        for pack, entries in by_pack.items():
            try:
                size = self.blobs.pack_path(pack).stat().st_size
            except FileNotFoundError:
                continue  # a damaged store: its reads say the blobs are missing
            if size - sum(b.stored for b in entries) > compact_above * size:
                dead.append((pack, size))
        if dead:
            moved = [b for pack, _ in dead for b in by_pack[pack]]
            try:
                name, offsets = self.blobs.compact(
                    (b.key, b.pack or "", b.offset, b.stored) for b in moved
                )
            except (OSError, CorruptBlob):
                moved = []  # a pack that cannot be read stays as it is
            if moved:
                with self.tx():
                    self.db.executemany(
                        "UPDATE blobs SET pack=?, pack_offset=? WHERE sha256=?",
                        [(name, at, b.key) for b, at in zip(moved, offsets)],
                    )
                for pack, size in dead:
                    self.blobs.pack_path(pack).unlink()
                    files += 1
                    freed += size
                freed -= sum(b.stored for b in moved)
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return files, freed

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[bool]:
        """Try to hold the store alone (no record or replay running); yields whether it does."""
        with open(self.dir / "lock", "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def hold_shared(self) -> None:
        """Mark this process as using the store until it exits (gc then waits for it)."""
        if self._lock is None:
            self._lock = open(self.dir / "lock", "a+")  # noqa: SIM115 - held for the process
            fcntl.flock(self._lock, fcntl.LOCK_SH)

    # callees ----------------------------------------------------------------
    def add_callees(self, run: int, loop: str, functions: Iterable[str]) -> None:
        with self.tx():
            self.db.executemany(
                "INSERT OR IGNORE INTO callees VALUES (?, ?, ?)",
                [(run, loop, f) for f in functions],
            )

    def callees(self, run: int) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for loop, fn in self.db.execute("SELECT loop, function FROM callees WHERE run=?", (run,)):
            out.setdefault(loop, set()).add(fn)
        return out

    # logs -------------------------------------------------------------------
    def add_logs(self, run: int, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        with self.tx():
            self.db.executemany(
                "INSERT INTO logs (run, statement, iteration, epoch, step, name, value, new)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(run, *r) for r in rows],
            )

    def logs(self, run: int | None = None) -> list[dict[str, Any]]:
        q = (
            "SELECT logs.run, runs.kind, statement, iteration, epoch, step, name, value, new"
            " FROM logs JOIN runs ON runs.id = logs.run"
        )
        args: tuple[Any, ...] = ()
        if run is not None:
            q += " WHERE logs.run=? OR runs.parent=?"
            args = (run, run)
        q += " ORDER BY logs.run, logs.id"
        cols = ["run", "kind", "statement", "iteration", "epoch", "step", "name", "value", "new"]
        return [dict(zip(cols, r)) for r in self.db.execute(q, args)]


class _Tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: Any, *_: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
