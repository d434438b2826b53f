"""The compiler on generated programs (hypothesmith): it never crashes, its output compiles,
instrumenting its own output changes nothing, and its one-pass walks compute what libcst's
general machinery computes.

A few programs per test by default; `HYPOTHESIS=1` (as `make test-all` sets it) runs the full
count, as LibCST gates its own fuzz tests.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

hypothesmith = pytest.importorskip("hypothesmith")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as hs  # noqa: E402
from reference import check_against_reference  # noqa: E402

from florc.errors import UsageError  # noqa: E402
from florc.runtime.linemap import compile_instrumented  # noqa: E402
from florc.transforms.compiler import compile_project  # noqa: E402

FUZZ = settings(
    max_examples=60 if os.environ.get("HYPOTHESIS") == "1" else 8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def in_training_loops(body: str) -> str:
    """Generated statements inside an epoch loop and a batch loop, so loops get instrumented."""
    inner = textwrap.indent(body if body.strip() else "pass\n", " " * 8)
    return f"w = 0\nfor epoch in range(2):\n    for i in range(2):\n{inner}\n    w += 1\n"


def check(source: str, folder: Path) -> None:
    path = folder / "train.py"
    path.write_text(source, encoding="utf-8")
    try:
        result = compile_project(path, folder)
    except UsageError:
        return  # a clear error with a position: allowed, a crash is not
    fm = result.files[result.script]
    check_against_reference(source)
    compile_instrumented(fm.source, fm.instrumented, fm.path)  # the output compiles
    path.write_text(fm.instrumented, encoding="utf-8")
    again = compile_project(path, folder)
    assert again.files[again.script].instrumented == fm.instrumented


programs = hypothesmith.from_grammar() | hypothesmith.from_node()


@FUZZ
@given(source=programs)
def test_generated_programs(tmp_path_factory: pytest.TempPathFactory, source: str) -> None:
    check(source, tmp_path_factory.mktemp("fuzz"))


@FUZZ
@given(source=hs.one_of(programs).map(in_training_loops))
def test_generated_statements_inside_training_loops(
    tmp_path_factory: pytest.TempPathFactory, source: str
) -> None:
    check(source, tmp_path_factory.mktemp("fuzz"))
