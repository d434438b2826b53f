"""The examples written next to the compiler's rules, each a case: log statements
(florc/transforms/logstatements.py) and the nondeterminism warnings
(florc/transforms/nondeterminism.py)."""

from __future__ import annotations

from pathlib import Path

import libcst as cst
import pytest

from florc.transforms.logstatements import (
    EXAMPLES_LOG,
    EXAMPLES_NOT_LOG,
    Example,
    LogStatementFinder,
)
from florc.transforms.modules import ModuleInfo, analyse_module
from florc.transforms.nondeterminism import (
    EXAMPLES_NO_WARN,
    EXAMPLES_WARN,
    find_nondeterminism,
)
from florc.transforms.syntax import names_in, parse_cst, source_preorder

MARK = "# <-"


def _analyse(code: str, recorded: str | None) -> ModuleInfo:
    known = None if recorded is None else frozenset(names_in(parse_cst(recorded)))
    return analyse_module(code + "\n", Path("t.py"), "t.py", "__main__", known)


def _statement(info: ModuleInfo) -> cst.CSTNode:
    """The statement on the line marked `# <-` (the outermost one starting there), or the last
    top-level one."""
    lines = info.source.splitlines()
    marked = [n + 1 for n, text in enumerate(lines) if text.rstrip().endswith(MARK)]
    if not marked:
        return info.tree.body[-1]
    [line] = marked
    for node in source_preorder(info.tree):
        if isinstance(node, cst.BaseStatement) and info.position(node)[0] == line:
            return node
    raise AssertionError(f"no statement starts on line {line}")


def _is_log(example: Example) -> tuple[bool, bool]:
    """(the rule's verdict, whether the compile collected the statement as a log statement)."""
    info = _analyse(example.code, example.recorded)
    stmt = _statement(info)
    finder = LogStatementFinder(info.tree, info.finder.known_names if info.finder else None)
    collected = any(ls.node is stmt for ls in info.log_statements)
    return finder.is_log_statement(stmt), collected


@pytest.mark.parametrize("example", EXAMPLES_LOG, ids=lambda e: e.code.splitlines()[0])
def test_log_statement(example: Example) -> None:
    assert _is_log(example) == (True, True)


@pytest.mark.parametrize("example", EXAMPLES_NOT_LOG, ids=lambda e: e.code.splitlines()[0])
def test_not_a_log_statement(example: Example) -> None:
    assert _is_log(example) == (False, False)


@pytest.mark.parametrize("code", EXAMPLES_WARN, ids=lambda c: c.splitlines()[-1])
def test_nondeterminism_warned_on_its_line(code: str) -> None:
    warnings = find_nondeterminism(_analyse(code, None))
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"t.py:{len(code.splitlines())}:")


@pytest.mark.parametrize("code", EXAMPLES_NO_WARN, ids=lambda c: c.splitlines()[-1])
def test_no_nondeterminism_warning(code: str) -> None:
    assert find_nondeterminism(_analyse(code, None)) == []
