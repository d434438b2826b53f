"""Instrumented code compiled so that every position points at the user's own file and line."""

from __future__ import annotations

import ast
import difflib


def line_map(original: str, instrumented: str) -> list[int]:
    """For each instrumented line (1-based index), the original line it came from."""
    a = [line.strip() for line in original.splitlines()]
    b = [line.strip() for line in instrumented.splitlines()]
    mapping = [0] * (len(b) + 1)
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for i, j, n in matcher.get_matching_blocks():
        for k in range(n):
            mapping[j + k + 1] = i + k + 1
    # generated lines take the position of the next original line (the statement they wrap)
    nxt = len(a) or 1
    for j in range(len(b), 0, -1):
        if mapping[j]:
            nxt = mapping[j]
        else:
            mapping[j] = nxt
    return mapping


def compile_instrumented(original: str, instrumented: str, filename: str) -> object:
    """Compile with every position mapped back to the user's own file and line."""
    tree = ast.parse(instrumented, filename=filename)
    mapping = line_map(original, instrumented)
    for node in ast.walk(tree):
        if hasattr(node, "lineno") and node.lineno is not None:
            node.lineno = mapping[min(node.lineno, len(mapping) - 1)]
            if hasattr(node, "end_lineno") and node.end_lineno is not None:
                end = mapping[min(node.end_lineno, len(mapping) - 1)]
                node.end_lineno = max(node.lineno, end)
    return compile(tree, filename, "exec", dont_inherit=True)
