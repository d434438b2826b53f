"""Reading recorded and replayed values back: tables for people, rows for programs."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def dataframe(run: int | None = None, root: str | Path = ".", name: str | None = None) -> Any:
    """Logged values as a pandas DataFrame: one row per value, recorded and replayed.

    Columns: run, kind (record | replay), statement, iteration, epoch, step, name, value, new.
    """
    import pandas as pd

    from florc.project import STORE_DIRNAME, find_root
    from florc.store.index import Store

    root = Path(root).resolve()
    if not (root / STORE_DIRNAME).exists():
        root = find_root(root / "x.py")
    store = Store(root)
    try:
        rows = store.logs(run)
    finally:
        store.close()
    if name is not None:
        rows = [r for r in rows if name in r["name"]]
    return pd.DataFrame(
        rows,
        columns=["run", "kind", "statement", "iteration", "epoch", "step", "name", "value", "new"],
    )
