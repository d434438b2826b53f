"""Which epochs a replay shows: `--epochs` specs in, iteration indices out, and back to text.

A script that counts its epochs with ints (`for epoch in range(1, 11)`) names them by those
values; any other main loop by 0-based iteration index.
"""

from __future__ import annotations

import re
from typing import Any

from florc.errors import UsageError

_RANGE = re.compile(r"^\s*(-?\d+)\s*(?:-\s*(-?\d+))?\s*$")


def counted(values: list[Any]) -> bool:
    """Whether the recorded main loop's values are ints, so epochs are named by them."""
    return all(isinstance(v, int) for v in values)


def parse_epochs(spec: str, values: list[Any]) -> tuple[list[int], str]:
    """`5-9`, `3`, `1,4,7-9`, `last`, `all` -> (iteration indices, how numbers were read)."""
    n = len(values)
    if n == 0:
        raise UsageError("the recorded run has no main-loop iterations to replay")
    by_value = counted(values)
    numbers = values if by_value else list(range(n))
    how = (
        "epochs as the script counts them (the main loop's variable)"
        if by_value
        else "0-based main-loop iterations"
    )
    valid = f"{numbers[0]}-{numbers[-1]}" if n > 1 else f"{numbers[0]}"
    spec = spec.strip().lower()
    if spec == "all":
        return list(range(n)), how
    if spec == "last":
        return [n - 1], how
    index = {v: i for i, v in enumerate(numbers)}
    out: set[int] = set()
    for part in spec.split(","):
        m = _RANGE.match(part)
        if not m:
            raise UsageError(f"--epochs {spec!r}: expected e.g. 5-9, 3, 1,4,7-9, last or all")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise UsageError(f"--epochs {part!r}: the range is empty (start after end)")
        for v in range(lo, hi + 1):
            if v not in index:
                raise UsageError(
                    f"--epochs {part!r}: epoch {v} was not recorded; the recorded range is {valid} "
                    f"({how})"
                )
            out.add(index[v])
    return sorted(out), how


def named(values: list[Any], iterations: list[int]) -> list[Any]:
    """The iterations as the user names them: the loop's values, or the indices themselves."""
    by_value = counted(values)
    return [values[i] if by_value else i for i in iterations]


def ranges(values: list[Any]) -> str:
    """`[1, 2, 3, 5]` -> `1–3,5`; values that are not ints are listed as they are."""
    if not values:
        return "(none)"
    if not counted(values):
        return ",".join(map(str, values))
    parts, lo, prev = [], values[0], values[0]
    for v in values[1:]:
        if v == prev + 1:
            prev = v
            continue
        parts.append(f"{lo}–{prev}" if lo != prev else f"{lo}")
        lo = prev = v
    parts.append(f"{lo}–{prev}" if lo != prev else f"{lo}")
    return ",".join(parts)


def epochs_text(values: list[Any], iterations: list[int]) -> str:
    """Iteration indices as the epochs the user asked for: `5–9`."""
    return ranges(named(values, iterations))
