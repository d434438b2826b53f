"""The run store: `.florc/` at the project root, SQLite for the index plus content-addressed blobs.

A blob becomes visible only once durable: written under a temporary name, fsynced, renamed; its
index row is committed after that. Blobs are named by the SHA-256 of their bytes, so identical
checkpoints are stored once, and every read checks the hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
STORE_DIRNAME = ".florc"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,               -- record | replay
    parent INTEGER,                   -- for a replay: the recorded run
    script TEXT NOT NULL,
    argv TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL,
    status TEXT NOT NULL,             -- running | done | failed | interrupted
    exit_code INTEGER,
    env TEXT NOT NULL,                -- json: versions, git commit, ...
    main_loop TEXT,
    epochs TEXT                       -- json: what was asked (replay)
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
    blob TEXT, nbytes INTEGER NOT NULL, usable INTEGER NOT NULL, info TEXT NOT NULL,
    UNIQUE (run, loop, iteration, occurrence)
);
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


def find_root(script: Path) -> Path:
    """The project root: the git root above the script, else the script's folder."""
    start = script.resolve().parent
    for d in (start, *start.parents):
        if (d / ".git").exists():
            return d
    return start


class Store:
    def __init__(self, root: Path, location: Path | None = None) -> None:
        self.root = root
        self.dir = location if location is not None else root / STORE_DIRNAME
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.dir / "blobs").mkdir(mode=0o700, exist_ok=True)
        (self.dir / "replays").mkdir(mode=0o700, exist_ok=True)
        self.db = sqlite3.connect(self.dir / "florc.db", timeout=60, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        with self.tx():
            row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                self.db.execute(
                    "INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
            elif int(row[0]) != SCHEMA_VERSION:
                from florc.errors import UsageError

                raise UsageError(
                    f"{self.dir}: store schema version {row[0]}, "
                    f"this florc reads {SCHEMA_VERSION}. "
                    "Use the florc version that wrote it, or move the store aside."
                )

    def tx(self) -> sqlite3.Connection:
        return _Tx(self.db)  # type: ignore[return-value]

    def close(self) -> None:
        self.db.close()

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
                " (kind, parent, script, argv, started, status, env, main_loop, epochs)"
                " VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?)",
                (
                    kind,
                    parent,
                    script,
                    json.dumps(argv),
                    time.time(),
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

    def run(self, run: int) -> dict[str, Any] | None:
        cur = self.db.execute("SELECT * FROM runs WHERE id=?", (run,))
        row = cur.fetchone()
        if row is None:
            return None
        d = dict(zip([c[0] for c in cur.description], row))
        d["argv"] = json.loads(d["argv"])
        d["env"] = json.loads(d["env"])
        d["epochs"] = json.loads(d["epochs"]) if d["epochs"] else None
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

    # blobs ------------------------------------------------------------------
    def blob_path(self, sha: str) -> Path:
        return self.dir / "blobs" / sha[:2] / sha[2:]

    def put_blob(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        path = self.blob_path(sha)
        if path.exists():
            return sha
        path.parent.mkdir(mode=0o700, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return sha

    def get_blob(self, sha: str) -> bytes:
        data = self.blob_path(sha).read_bytes()
        if hashlib.sha256(data).hexdigest() != sha:
            raise ValueError(f"checkpoint blob {sha[:12]} is corrupt (hash mismatch)")
        return data

    # checkpoints ------------------------------------------------------------
    def add_checkpoint(
        self,
        run: int,
        loop: str,
        iteration: int,
        occurrence: int,
        blob: str | None,
        nbytes: int,
        usable: bool,
        info: dict[str, Any],
    ) -> None:
        with self.tx():
            self.db.execute(
                "INSERT OR REPLACE INTO checkpoints"
                " (run, loop, iteration, occurrence, blob, nbytes,"
                " usable, info) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run, loop, iteration, occurrence, blob, nbytes, int(usable), json.dumps(info)),
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

    def run_bytes(self, run: int) -> tuple[int, int]:
        """(bytes referenced by the run's checkpoints, bytes of its distinct blobs)."""
        total = self.db.execute(
            "SELECT COALESCE(SUM(nbytes), 0) FROM checkpoints WHERE run=?", (run,)
        ).fetchone()[0]
        distinct = self.db.execute(
            "SELECT COALESCE(SUM(n), 0) FROM (SELECT MAX(nbytes) AS n FROM checkpoints"
            " WHERE run=? AND blob IS NOT NULL GROUP BY blob)",
            (run,),
        ).fetchone()[0]
        return int(total), int(distinct)

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
