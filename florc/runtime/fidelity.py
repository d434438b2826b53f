"""Fidelity: are the values a replay recomputes the values training produced?

Two kinds of evidence are compared with the recording:
- the output of the script's original log statements in re-executed code (text; where only
  numbers differ, by how much);
- the end state of each re-executed block against that block's recorded checkpoint (content
  hashes first; where they differ, tensor by tensor).

The verdict is `exact`, `within tolerance (max abs diff X)` or `diverged at <where> epoch <E>`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from florc.runtime import state as st

RTOL = 1e-5
ATOL = 1e-8
_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)")


@dataclass
class Evidence:
    where: str  # "train.py:59" (a block) or "train.py:68" (a log statement)
    epoch: Any
    diff: float | None  # 0.0 identical; the max abs difference; None: differs in kind
    ok: bool  # within tolerance


def close(a: float, b: float) -> bool:
    if math.isnan(a) and math.isnan(b):
        return True
    return math.isclose(a, b, rel_tol=RTOL, abs_tol=ATOL)


def compare_text(recorded: str, replayed: str) -> tuple[float | None, bool]:
    """(max abs difference of the numbers, within tolerance); (None, False) if more differs."""
    if recorded == replayed:
        return 0.0, True
    if _NUMBER.sub("#", recorded) != _NUMBER.sub("#", replayed):
        return None, False
    worst, ok = 0.0, True
    for x, y in zip(_NUMBER.findall(recorded), _NUMBER.findall(replayed)):
        a, b = float(x), float(y)
        if a != b and not (math.isnan(a) and math.isnan(b)):
            worst = max(worst, abs(a - b))
            ok = ok and close(a, b)
    return worst, ok


class _Diff:
    """Walks two snapshot trees; collects the largest numeric difference."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.ok = True  # within tolerance
        self.same_kind = True

    def differ(self) -> None:
        self.same_kind = False
        self.ok = False

    def numbers(self, a: Any, b: Any) -> None:
        if a == b:
            return
        numeric = isinstance(a, (int, float)) and isinstance(b, (int, float))
        if numeric and not (isinstance(a, bool) or isinstance(b, bool)):
            self.worst = max(self.worst, abs(float(a) - float(b)))
            self.ok = self.ok and close(float(a), float(b))
            return
        self.differ()

    def tensors(self, a: Any, b: Any) -> None:
        if a is None or b is None:
            if a is not b:
                self.differ()
            return
        if tuple(a.shape) != tuple(b.shape) or a.dtype != b.dtype:
            self.differ()
            return
        np = _numpy_of(a)
        if np is not None:
            if np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"):
                return
            if a.dtype.kind not in "fc":
                self.differ()
                return
            d = float(np.nanmax(np.abs(a.astype("float64") - b.astype("float64"))))
            self.worst = max(self.worst, d)
            self.ok = self.ok and bool(np.allclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True))
            return
        torch = st._torch()
        if torch.equal(a, b):
            return
        if not (a.is_floating_point() or a.is_complex()):
            self.differ()
            return
        d = float((a.double() - b.double()).abs().nan_to_num(0.0).max())
        self.worst = max(self.worst, d)
        self.ok = self.ok and bool(torch.allclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True))

    def tree(self, a: Any, b: Any) -> None:
        """State dict-like values: dicts, lists, tensors, numbers."""
        if _is_array(a) or _is_array(b):
            if _is_array(a) and _is_array(b):
                self.tensors(a, b)
            else:
                self.differ()
        elif isinstance(a, dict) and isinstance(b, dict):
            if set(a) != set(b):
                self.differ()
            for k in set(a) & set(b):
                self.tree(a[k], b[k])
        elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
            if len(a) != len(b):
                self.differ()
            for x, y in zip(a, b):
                self.tree(x, y)
        else:
            try:
                self.numbers(a, b)
            except Exception:  # noqa: BLE001 - user objects with odd __eq__
                self.differ()

    def node(self, a: st.Node, b: st.Node) -> None:
        if a.kind != b.kind:
            self.differ()
            return
        if a.kind in ("list", "tuple"):
            if len(a.children) != len(b.children):
                self.differ()
            for x, y in zip(a.children, b.children):
                self.node(x, y)
        elif a.kind == "dict":
            ka, kb = dict(a.children), dict(b.children)
            if set(ka) != set(kb):
                self.differ()
            for k in set(ka) & set(kb):
                self.node(ka[k], kb[k])
        elif a.kind == "object":
            if set(a.children) != set(b.children):
                self.differ()
            for k in set(a.children) & set(b.children):
                self.node(a.children[k], b.children[k])
        elif a.kind == "ref":
            return
        else:
            self.tree((a.value, a.extra), (b.value, b.extra))


def _is_array(x: Any) -> bool:
    t = st._torch()
    if t is not None and isinstance(x, t.Tensor):
        return True
    return _numpy_of(x) is not None


def _numpy_of(x: Any) -> Any:
    np = st._numpy()
    return np if np is not None and isinstance(x, np.ndarray) else None


def compare_snapshots(recorded: st.Snapshot, replayed: st.Snapshot) -> tuple[float | None, bool]:
    """(max abs difference, within tolerance) over the paths both hold, and the RNG states."""
    d = _Diff()
    for path in set(recorded.paths) & set(replayed.paths):
        d.node(recorded.paths[path], replayed.paths[path])
    d.tree(_rng_tree(recorded.rng), _rng_tree(replayed.rng))
    if set(recorded.missing) != set(replayed.missing):
        d.differ()
    return (d.worst if d.same_kind else None), d.ok


def _rng_tree(rng: dict[str, Any]) -> Any:
    out: dict[str, Any] = {}
    for k, v in rng.items():
        out[k] = list(v) if isinstance(v, tuple) else v
    return out


@dataclass
class Verdict:
    compared: int
    worst: float
    diverged: Evidence | None

    @property
    def line(self) -> str:
        if self.diverged is not None:
            return f"fidelity: diverged at {self.diverged.where} epoch {self.diverged.epoch}"
        if self.compared == 0:
            return "fidelity: not checked — this replay recomputed no recorded value or checkpoint"
        if self.worst == 0.0:
            return f"fidelity: exact ({self.compared} recorded values and states compared)"
        return (
            f"fidelity: within tolerance (max abs diff {self.worst:.3g}; "
            f"{self.compared} recorded values and states compared)"
        )


def verdict(evidence: Iterable[Evidence]) -> Verdict:
    """The verdict over everything compared, in replay order (the first divergence is named)."""
    compared, worst, first_bad = 0, 0.0, None
    for ev in evidence:
        compared += 1
        if ev.diff is not None:
            worst = max(worst, ev.diff)
        if not ev.ok and first_bad is None:
            first_bad = ev
    return Verdict(compared, worst, first_bad)
