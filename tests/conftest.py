"""Shared fixtures and the tier rules.

Two tiers: `tests/unit/` runs in this process (compiler, policy, segments, store, state, clocks,
fuzz); `tests/e2e/` starts florc and plain Python as subprocesses and is marked `e2e`. A few
e2e cases are also marked `smoke`: `make test` runs the unit tier and those (one case per
feature), `make test-all` runs everything. The functions both tiers import (running florc, the
subprocess environment, hindsight edits) are in `helpers.py`, beside this file.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import clean_env

_HERE = Path(__file__).resolve().parent
E2E = _HERE / "e2e"


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """The environment for a subprocess a test starts itself (`helpers.clean_env()`)."""
    return clean_env()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep the tiers honest: every test under tests/e2e/ is marked `e2e`, no other test is,
    and `smoke` marks e2e tests only."""
    wrong = []
    for item in items:
        in_e2e = E2E in Path(str(item.path)).resolve().parents
        marked = item.get_closest_marker("e2e") is not None
        if in_e2e != marked:
            wrong.append(f"{item.nodeid}: {'not ' if in_e2e else ''}marked e2e")
        elif item.get_closest_marker("smoke") is not None and not marked:
            wrong.append(f"{item.nodeid}: marked smoke but not e2e")
    if wrong:
        raise pytest.UsageError(
            "tests in the wrong tier (tests/e2e/ holds the e2e-marked ones):\n  "
            + "\n  ".join(wrong)
        )
