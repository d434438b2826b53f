"""Named values: the numbers in what log statements wrote, by name.

`print(f"epoch {epoch} loss {loss:.4f} acc {acc:.3f}")` wrote "epoch 3 loss 0.4123 acc 0.871":
its values are epoch=3, loss=0.4123, acc=0.871 for that epoch and step. `florc.log(name, value)`
keeps its name. These feed `florc.dataframe()`, `florc logs --format csv|json`, the exporters
and `florc plot`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from florc.store.index import Store

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PAIR = re.compile(
    r"(?P<name>[A-Za-z_][A-Za-z0-9_./-]*)\s*(?:[:=]\s*|\s+)(?P<value>" + _NUMBER + r")(?![\w.])"
)


@dataclass(frozen=True)
class NamedValue:
    """One number a log statement wrote, by name."""

    run: int  # the recorded run it belongs to (for a replayed value: the replay's parent)
    source: str  # "record" | "replay"
    replay: int | None  # the replay that computed it (None: recorded)
    iteration: int | None  # index of the main loop's iteration (None: outside it)
    epoch: Any  # the main loop's value in that iteration
    step: int | None  # the inner loop's step (None: at epoch level)
    statement: str  # "relpath:line" of the statement that wrote it
    name: str
    value: float


def parse_values(text: str) -> list[tuple[str, float]]:
    """The named numbers of one line of output: `loss 0.41 acc=0.87` -> [("loss", 0.41),
    ("acc", 0.87)]. A number without a name before it is left out."""
    return [(m["name"].lower(), float(m["value"])) for m in _PAIR.finditer(text)]


def named_values(store: Store, runs: list[int] | None = None) -> list[NamedValue]:
    """The named values of the recorded runs `runs` (None: every recorded run) and of their
    replays, recorded first, in the order they were written."""
    out: list[NamedValue] = []
    kinds = {r["id"]: r for r in store.runs()}
    for row in store.logs(None):
        meta = kinds.get(row["run"])
        if meta is None or meta["kind"] == "verify":
            continue
        recorded = row["run"] if meta["kind"] == "record" else meta["parent"]
        if runs is not None and recorded not in runs:
            continue
        if meta["kind"] == "replay" and not row["new"]:
            continue  # a recorded statement's output, shown again
        epoch = json.loads(row["epoch"]) if row["epoch"] else None
        for name, value in parse_values(row["value"]):
            out.append(
                NamedValue(
                    run=recorded,
                    source=meta["kind"],
                    replay=None if meta["kind"] == "record" else row["run"],
                    iteration=row["iteration"],
                    epoch=epoch,
                    step=row["step"],
                    statement=row["statement"],
                    name=name,
                    value=value,
                )
            )
    return out
