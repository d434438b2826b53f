"""The compile cache: instrumented code and analysis of a script version, kept for `florc record`.

`florc instrument --check` (what the commit hook runs) compiles each training script and keeps
the result here, so recording that version starts without compiling again. An entry is keyed by
the florc version, the script's path in the project and the script's content (SHA-256); it also
lists every project module compiled with the script and its hash, and is used only while all of
them are unchanged. Entries are written to a temporary file and renamed into place, so a reader
never sees half an entry; an unreadable entry counts as a miss.

Layout: <store>/cache/<key>.json. No libcst here: a hit never loads the compiler. This module
sits between compile time (it keeps the compiler's output) and run time (record reads it).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from florc._version import __version__
from florc.contract import CompileResult
from florc.project import ignore_in_git

CACHE_DIRNAME = "cache"


def key(script: Path, root: Path) -> str:
    rel = script.resolve().relative_to(root.resolve()).as_posix()
    h = hashlib.sha256(f"florc {__version__}\0{rel}\0".encode())
    h.update(script.read_bytes())
    return h.hexdigest()


def lookup(script: Path, root: Path, store_dir: Path) -> CompileResult | None:
    """The cached compile result of this version of script, or None."""
    try:
        path = store_dir / CACHE_DIRNAME / f"{key(script, root)}.json"
        data = json.loads(path.read_text(encoding="utf-8"))
        result = CompileResult.from_dict(data)
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if result.florc_version != __version__ or result.root != str(root.resolve()):
        return None
    for rel, fm in result.files.items():
        try:
            current = (root / rel).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        if hashlib.sha256(current.encode()).hexdigest() != fm.sha256:
            return None
    return result


def store(result: CompileResult, script: Path, root: Path, store_dir: Path) -> Path:
    """Keep result for this version of script (atomically); the entry's path."""
    folder = store_dir / CACHE_DIRNAME
    store_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    ignore_in_git(store_dir)
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / f"{key(script, root)}.json"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(result.to_dict()), encoding="utf-8")
    os.replace(tmp, path)
    return path
