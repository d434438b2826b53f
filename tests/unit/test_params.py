"""A run's arguments: argparse's parse kept at record, read back, shown and matched by --where."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from florc.errors import UsageError
from florc.runtime import api, intercept
from florc.store.index import Store
from florc.store.queries import commit_text, short_args
from florc.store.selection import (
    matches,
    params_from_argv,
    run_params,
    select_runs,
    shown_params,
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("--lr", type=float, default="0.1")  # a string default argparse converts
    p.add_argument("-b", "--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--layers", type=int, nargs="+", default=[8, 8])
    p.add_argument("--cuda", action="store_true")
    p.set_defaults(seed=1)
    return p


def test_parsed_params_keep_json_scalars_and_say_what_was_set() -> None:
    args = ["mnist", "-b", "32", "--epochs=5", "--layers", "4"]
    values, given = intercept.parsed_params(parser(), parser().parse_args(args), args)
    assert values == {
        "data": "mnist",
        "lr": 0.1,
        "batch_size": 32,
        "epochs": 5,
        "layers": "[4]",
        "cuda": False,
        "seed": 1,
    }
    # given on the command line (epochs, though equal to its default) or not the default
    assert given == ["data", "batch_size", "epochs", "layers"]


class FakeSession:
    def __init__(self) -> None:
        self.parses: list[tuple[dict[str, Any], list[str]]] = []

    def params_parsed(self, values: dict[str, Any], given: list[str]) -> None:
        self.parses.append((values, given))


def test_the_wrapped_parse_reports_top_level_parses_only(monkeypatch: pytest.MonkeyPatch) -> None:
    finder = intercept.install()  # argparse is imported: wrapped at once
    try:
        assert getattr(argparse.ArgumentParser.parse_known_args, "__florc_wrapped__", False)
        session = FakeSession()
        monkeypatch.setattr(api, "_session", session)
        top = argparse.ArgumentParser()
        top.add_argument("--lr", type=float, default=0.1)
        sub = top.add_subparsers(dest="cmd").add_parser("train")
        sub.add_argument("--epochs", type=int, default=3)
        monkeypatch.setattr("sys.argv", ["train.py", "--lr", "0.5", "train", "--epochs", "7"])
        ns = top.parse_args()
        assert (ns.lr, ns.cmd, ns.epochs) == (0.5, "train", 7)
        # one report, of the whole parse (the subparser's own parse is nested in it)
        assert session.parses == [
            ({"lr": 0.5, "cmd": "train", "epochs": 7}, ["lr", "cmd", "epochs"])
        ]
        monkeypatch.setattr(api, "_session", None)
        top.parse_args(["--lr", "1"])  # without a session: nothing reported
        assert len(session.parses) == 1
    finally:
        intercept.uninstall(finder)
    assert finder not in __import__("sys").meta_path


def test_params_from_argv() -> None:
    assert params_from_argv(["--lr", "0.1", "--epochs=3", "--cuda", "-b", "8", "data"]) == {
        "lr": "0.1",
        "epochs": "3",
        "cuda": "True",
        "b": "8",
    }
    assert params_from_argv(["--shift", "-1", "--no-aug"]) == {"shift": "-1", "no_aug": "True"}


def meta(argv: list[str], env: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"argv": argv, "env": env or {}}


def test_run_params_prefer_the_parse_and_keep_defaults() -> None:
    recorded = meta(
        ["--lr", "0.01", "--extra", "x"],
        {"params": {"lr": 0.01, "epochs": 5, "cuda": False}, "params_set": ["lr"]},
    )
    assert run_params(recorded) == {"lr": "0.01", "extra": "x", "epochs": "5", "cuda": "False"}
    assert shown_params(recorded) == {"lr": "0.01"}
    assert matches(run_params(recorded), ["epochs=5"])  # a default not on the command line
    assert matches(run_params(recorded), ["lr=1e-2", "cuda=false"])
    assert not matches(run_params(recorded), ["lr=0.1"])
    assert not matches(run_params(recorded), ["dropout=0.5"])
    # an older run without a kept parse: its command line
    old = meta(["--lr", "0.01", "--batch-size", "8"])
    assert run_params(old) == shown_params(old) == {"lr": "0.01", "batch_size": "8"}
    assert matches(run_params(old), ["batch-size=8"])
    with pytest.raises(UsageError, match="give KEY=VALUE"):
        matches({}, ["lr"])


def test_short_args_and_commit() -> None:
    assert short_args({"lr": "0.01", "epochs": "5"}) == "lr=0.01 epochs=5"
    long = short_args({f"option{i}": "value" for i in range(10)})
    assert len(long) == 40 and long.endswith("…")
    assert commit_text({"git_commit": "0123456789abcdef", "git_dirty": True}) == "01234567+dirty"
    assert commit_text({"git_commit": "0123456789abcdef", "git_dirty": False}) == "01234567"
    assert commit_text({}) == ""


def test_select_runs_by_where(tmp_path: Path) -> None:
    with Store(tmp_path, tmp_path / ".florc") as store:
        a = store.create_run("record", "train.py", ["--lr", "0.1"], {"params": {"lr": 0.1}})
        b = store.create_run("record", "train.py", [], {"params": {"lr": 0.01}})
        c = store.create_run("record", "other.py", ["--lr", "0.1"], {})
        store.create_run("replay", "train.py", [], {}, parent=a)
        assert select_runs(store, None, ["lr=0.1"]) == [a, c]
        assert select_runs(store, "all", ["lr=0.01"]) == [b]
        assert select_runs(store, f"{a},{b}", ["lr=0.1"]) == [a]
        assert select_runs(store, None, ["lr=0.1"], script="train.py") == [a]
        with pytest.raises(UsageError, match="not a recorded run"):
            select_runs(store, "4")
