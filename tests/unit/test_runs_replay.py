"""replay --runs, the parts that need no subprocess: how runs are named, the exit status, and
the child's output kept in order (florc/replay/runs.py)."""

from __future__ import annotations

import sys

from florc.replay.runs import RunReplay, RunsResult, _Kept, _KeptStream, _telling_args


def meta(run: int, argv: list[str], params: dict | None = None) -> dict:
    env = {} if params is None else {"params": params, "params_set": list(params)}
    return {"id": run, "argv": argv, "env": env}


def test_runs_are_named_by_the_arguments_that_tell_them_apart() -> None:
    shared = {"data": "data/small", "emsize": 32, "nhid": 32}
    metas = [
        meta(1, [], {**shared, "lr": 20, "dropout": 0.2}),
        meta(2, ["--lr", "10"], {**shared, "lr": 10.0, "dropout": 0.2}),
        meta(3, ["--dropout", "0.5"], {**shared, "lr": 20, "dropout": 0.5}),
    ]
    assert _telling_args(metas) == {
        1: "dropout=0.2 lr=20",
        2: "dropout=0.2 lr=10.0",
        3: "dropout=0.5 lr=20",
    }
    # one run, or runs that differ only in their code: the arguments given
    assert _telling_args([meta(4, ["--lr", "0.1"])]) == {4: "lr=0.1"}
    assert _telling_args([meta(5, []), meta(6, [])]) == {5: "(no arguments)", 6: "(no arguments)"}


def test_exit_status() -> None:
    done = RunReplay(1, "", "", status="done", verdict="exact")
    skipped = RunReplay(2, "", "", skipped=["train.py:3:5: ... cannot be placed"])
    diverged = RunReplay(3, "", "", status="done", verdict="diverged")
    failed = RunReplay(4, "", "", status="failed", exit_code=1, verdict="exact")
    broken = RunReplay(5, "", "", error="its replay process ended (9) without a result")
    assert RunsResult([done, skipped], dry_run=False).exit_code == 0
    assert RunsResult([skipped], dry_run=False).exit_code == 1  # nothing could be replayed
    assert RunsResult([skipped], dry_run=True).exit_code == 1
    assert RunsResult([done, skipped], dry_run=True).exit_code == 0
    for bad in (diverged, failed, broken):
        assert RunsResult([done, bad], dry_run=False).exit_code == 1


def test_the_childs_lines_and_notes_are_kept_in_order() -> None:
    kept = _Kept()
    out, err = _KeptStream(kept, False, sys.__stdout__), _KeptStream(kept, True, sys.__stderr__)
    kept.note("run 3 · replay 7 · epochs 2–3")
    out.write("epoch 2 ")
    out.write("loss 0.5\nepoch 3 loss 0.4\npart")
    err.write("a warning\n")
    kept.note("fidelity: exact")
    out.close_line()
    assert kept.events == [
        ["note", "run 3 · replay 7 · epochs 2–3", False],
        ["output", "epoch 2 loss 0.5", False],
        ["output", "epoch 3 loss 0.4", False],
        ["output", "a warning", True],
        ["note", "fidelity: exact", False],
        ["output", "part", False],
    ]
