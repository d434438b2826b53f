"""Fidelity: are the values a replay recomputes the values training produced?

Two kinds of evidence are compared with the recording:
- the output of the script's original log statements in re-executed code (text; where only
  numbers differ, by how much);
- the end state of each re-executed block against that block's recorded checkpoint (content
  hashes first; where they differ, tensor by tensor).

Values a log statement prints that derive from a clock or from randomness no seed controls
(the compiler marks them: transforms/clocks.py) are left out: a replay computes another
elapsed time than the recording did, and that is no divergence. The other values on the same
line are compared as usual; the verdict says how many values were left out.

The verdict is `exact`, `within tolerance (max abs diff X)` or `diverged at <where> epoch <E>`.
"""

from __future__ import annotations

import collections
import enum
import math
import numbers
import pickle
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from florc.contract import Evidence
from florc.runtime import state as st
from florc.runtime.state import Kind, kinds, lazy

RTOL = 1e-5
ATOL = 1e-8
_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)")


# the left_out key for values in a checkpoint that can be compared neither by content, by
# attributes nor by pickled bytes
NO_STATE = "no comparable state"


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


Shape = list[list[Any]]  # parts: ["text", str] | ["value", None | "clock" | "random"]


@dataclass
class LineComparison:
    diff: float | None
    ok: bool
    compared: bool  # some value (or the whole text) was compared
    left_out: dict[str, int]


def _split(line: str, shape: Shape) -> list[str] | None:
    """The texts of a line's values, if the line has the shape: each value ends where the
    next literal text first occurs (the last one at the line's end). Linear in the line."""
    values: list[str] = []
    pos, n = 0, len(shape)
    for i, (what, text) in enumerate(shape):
        if what == "value":
            if i == n - 1:
                values.append(line[pos:])
                pos = len(line)
            continue
        if i == 0 or shape[i - 1][0] != "value":
            if not line.startswith(text, pos):
                return None
            at = pos
        elif i == n - 1:
            at = len(line) - len(text)
            if at < pos or not line.endswith(text):
                return None
        else:
            at = line.find(text, pos)
            if at < 0:
                return None
        if i > 0 and shape[i - 1][0] == "value":
            values.append(line[pos:at])
        pos = at + len(text)
    return values if pos == len(line) else None


def compare_shaped(
    recorded: str, replayed: str, shapes: list[Shape], kind: str = "clock"
) -> LineComparison:
    """A line of a log statement some of whose values derive from a clock or unseeded
    randomness: compare the other values, leave those out.

    Both lines are matched against the statement's line shapes; the first shape both fit
    decides which text is which value. A line neither fits is left out whole (counted as one
    value of `kind`); when only one of them fits, the two differ in kind.
    """
    for shape in shapes:
        a, b = _split(recorded, shape), _split(replayed, shape)
        if a is None or b is None:
            continue
        kinds = [p[1] for p in shape if p[0] == "value"]
        left_out: dict[str, int] = {}
        worst: float | None = 0.0
        ok, compared = True, not kinds
        for k, x, y in zip(kinds, a, b):
            if k is not None:
                left_out[k] = left_out.get(k, 0) + 1
                continue
            compared = True
            d, same = compare_text(x, y)
            worst = None if d is None or worst is None else max(worst, d)
            ok = ok and same
        return LineComparison(worst, ok, compared, left_out)
    if any(_split(recorded, s) is not None or _split(replayed, s) is not None for s in shapes):
        diff, ok = compare_text(recorded, replayed)
        return LineComparison(diff, ok, True, {})
    return LineComparison(0.0, True, False, {kind: 1})


class SnapshotDiff:
    """Walks two snapshot trees; collects the largest numeric difference.

    The walk over nodes dispatches on the kinds registry (each kind says which of its parts are
    compared with which); the leaves (numbers, tensors, arrays, copied objects) are compared
    here, within RTOL/ATOL."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.ok = True  # within tolerance
        self.same_kind = True
        self.not_compared = 0  # opaque values whose state could not be compared
        self.seen: set[tuple[int, int]] = set()  # pairs of opaque values compared
        self.seen_nodes: set[tuple[int, int]] = set()

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
        torch = lazy.torch()
        if torch.equal(a, b):
            return
        if not (a.is_floating_point() or a.is_complex()):
            self.differ()
            return
        d = float((a.double() - b.double()).abs().nan_to_num(0.0).max())
        self.worst = max(self.worst, d)
        self.ok = self.ok and bool(torch.allclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True))

    def tree(self, a: Any, b: Any) -> None:
        """State dict-like values: dicts, lists, tensors, numbers; anything else by its state."""
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
        elif isinstance(a, _SEQUENCES) and isinstance(b, _SEQUENCES):
            if len(a) != len(b):
                self.differ()
            for x, y in zip(a, b):
                self.tree(x, y)
        elif isinstance(a, _PLAIN) or isinstance(b, _PLAIN):
            try:
                self.numbers(a, b)
            except Exception:  # noqa: BLE001 - user objects with odd __eq__
                self.differ()
        else:
            self.opaque(a, b)

    def opaque(self, a: Any, b: Any) -> None:
        """An object florc copied whole: compared by its state, never by identity. By the
        equality its type defines, else attribute by attribute, else by its pickled bytes;
        counted as not compared when none of these can say."""
        if a is b:
            return
        if type(a).__qualname__ != type(b).__qualname__:
            self.differ()
            return
        key = (id(a), id(b))
        if key in self.seen:
            return
        self.seen.add(key)
        if type(a).__eq__ is not object.__eq__:
            try:
                same = bool(a == b)
            except Exception:  # noqa: BLE001 - an __eq__ that cannot answer (arrays inside)
                same = None
            if same:
                return
            if same is False and not hasattr(a, "__dict__"):
                self.differ()
                return
        if hasattr(a, "__dict__") and hasattr(b, "__dict__"):
            self.tree(vars(a), vars(b))
            return
        pa, pb = _pickled(a), _pickled(b)
        if pa is None or pb is None:
            self.not_compared += 1
        elif pa != pb:
            self.differ()

    def node(self, a: st.Node, b: st.Node) -> None:
        """Two nodes: of one kind, compared as their kind's handler says (kinds.py). A pair
        met again (an object two paths lead to, a back-reference) is compared once."""
        key = (id(a), id(b))
        if key in self.seen_nodes:
            return
        self.seen_nodes.add(key)
        if a.kind != b.kind:
            self.differ()
            return
        kinds.of(a.kind).compare(self, a, b)


_SEQUENCES = (list, tuple, collections.deque)
_PLAIN = (type(None), bool, int, float, complex, str, bytes, numbers.Number)


def _pickled(x: Any) -> bytes | None:
    try:
        return pickle.dumps(x, protocol=5)
    except Exception:  # noqa: BLE001
        pass
    try:
        import cloudpickle

        return cloudpickle.dumps(x, protocol=5)
    except Exception:  # noqa: BLE001
        return None


def _is_array(x: Any) -> bool:
    t = lazy.torch()
    if t is not None and isinstance(x, t.Tensor):
        return True
    return _numpy_of(x) is not None


def _numpy_of(x: Any) -> Any:
    np = lazy.numpy()
    return np if np is not None and isinstance(x, np.ndarray) else None


def leave_out(snapshot: st.Snapshot, paths: dict[str, str]) -> dict[str, int]:
    """Drop from a snapshot the paths (and attributes of plain objects under them) that hold
    values derived from a clock or unseeded randomness; the count dropped, by kind.

    An attribute under something other than a plain object (a module, a dict) stays: the
    comparison then sees it, as before."""
    dropped: dict[str, int] = {}
    for path, kind in paths.items():
        root, *rest = path.split(".")
        if not rest:
            if path in snapshot.paths or path in snapshot.missing:
                snapshot.paths.pop(path, None)
                snapshot.missing = [m for m in snapshot.missing if m != path]
                dropped[kind] = dropped.get(kind, 0) + 1
            continue
        node = snapshot.paths.get(root)
        for name in rest[:-1]:
            if node is None or node.kind != Kind.OBJECT:
                break
            node = node.children.get(name)
        if node is not None and node.kind == Kind.OBJECT and rest[-1] in node.children:
            del node.children[rest[-1]]
            dropped[kind] = dropped.get(kind, 0) + 1
    return dropped


def snapshot_diff(recorded: st.Snapshot, replayed: st.Snapshot) -> SnapshotDiff:
    """The comparison itself: also says how many values could not be compared by state
    (`not_compared`; a path the replay could not capture counts as one)."""
    d = SnapshotDiff()
    for path in set(recorded.paths) & set(replayed.paths):
        d.node(recorded.paths[path], replayed.paths[path])
    d.not_compared += len(set(recorded.paths) - set(replayed.paths))
    d.tree(_rng_tree(recorded.rng), _rng_tree(replayed.rng))
    if set(recorded.missing) != set(replayed.missing):
        d.differ()
    return d


def _rng_tree(rng: dict[str, Any]) -> Any:
    out: dict[str, Any] = {}
    for k, v in rng.items():
        out[k] = list(v) if isinstance(v, tuple) else v
    return out


class VerdictKind(enum.Enum):
    """What a replay's comparison with the recording found."""

    EXACT = "exact"  # every value and state compared is identical
    WITHIN = "within"  # some differ, all within tolerance
    DIVERGED = "diverged"  # one differs beyond tolerance (the first is named)
    UNCHECKED = "unchecked"  # nothing recomputed could be compared


@dataclass
class Verdict:
    compared: int
    worst: float
    diverged: Evidence | None
    left_out: dict[str, int] = field(default_factory=dict)  # "clock"/"random" -> values
    threads: tuple[int, int] | None = None  # (this replay's, the recording's) when they differ

    @property
    def kind(self) -> VerdictKind:
        if self.diverged is not None:
            return VerdictKind.DIVERGED
        if self.compared == 0:
            return VerdictKind.UNCHECKED
        return VerdictKind.EXACT if self.worst == 0.0 else VerdictKind.WITHIN

    @property
    def line(self) -> str:
        left = _left_out_text(self.left_out)
        threads = ""
        if self.threads is not None and (self.diverged is not None or self.worst > 0):
            used, recorded = self.threads
            threads = (
                f" — this replay ran {used} torch thread{'s' if used != 1 else ''} per process, "
                f"the recording {recorded}: sums split over threads round differently"
            )
        if self.diverged is not None:
            where = f"fidelity: diverged at {self.diverged.where} epoch {self.diverged.epoch}"
            return (f"{where} ({left})" if left else where) + threads
        if self.compared == 0:
            if left:
                return (
                    "fidelity: not checked — every recorded value this replay recomputed "
                    f"derives from a clock or unseeded randomness ({left})"
                )
            return "fidelity: not checked — this replay recomputed no recorded value or checkpoint"
        left = f"; {left}" if left else ""
        if self.worst == 0.0:
            return f"fidelity: exact ({self.compared} recorded values and states compared{left})"
        return (
            f"fidelity: within tolerance (max abs diff {self.worst:.3g}; "
            f"{self.compared} recorded values and states compared{left}){threads}"
        )


def _left_out_text(left_out: dict[str, int]) -> str:
    parts = []
    clock, random = left_out.get("clock", 0), left_out.get("random", 0)
    if clock:
        parts.append(f"{clock} clock-derived value{'s' if clock != 1 else ''}")
    if random:
        parts.append(f"{random} value{'s' if random != 1 else ''} from unseeded randomness")
    uncomparable = left_out.get(NO_STATE, 0)
    if uncomparable:
        parts.append(
            f"{uncomparable} checkpointed value{'s' if uncomparable != 1 else ''} "
            "with no comparable state"
        )
    for kind, n in sorted(left_out.items()):  # any other reason a value was not compared
        if kind not in ("clock", "random", NO_STATE) and n:
            parts.append(f"{n} value{'s' if n != 1 else ''} ({kind})")
    return f"{' and '.join(parts)} left out" if parts else ""


def verdict(evidence: Iterable[Evidence], threads: tuple[int, int] | None = None) -> Verdict:
    """The verdict over everything compared, in replay order (the first divergence is named).

    threads: (this replay's torch thread count, the recording's) when they differ."""
    compared, worst, first_bad = 0, 0.0, None
    left_out: dict[str, int] = {}
    for ev in evidence:
        for k, n in ev.left_out.items():
            left_out[k] = left_out.get(k, 0) + n
        if not ev.compared:
            continue
        compared += 1
        if ev.diff is not None:
            worst = max(worst, ev.diff)
        if not ev.ok and first_bad is None:
            first_bad = ev
    return Verdict(compared, worst, first_bad, left_out, threads)
