"""Parallel replay: the plan, workers in separate processes, merged output, fidelity verdicts."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e import EXAMPLES, copy_project, florc, hindsight_lines, overlay, python

from florc.parallel import plan_segments

# --- the plan ---------------------------------------------------------------------------


def test_one_worker_gets_everything_from_the_nearest_checkpoint() -> None:
    (seg,) = plan_segments([5, 6, 7], anchors=[1, 2, 4, 6], workers=1)
    assert (seg.start, seg.targets, seg.after_loop) == (4, [5, 6, 7], True)


def test_segments_start_at_checkpoints_and_balance_the_work() -> None:
    segs = plan_segments(list(range(10)), anchors=list(range(1, 11)), workers=3)
    assert len(segs) == 3 and max(s.executed for s in segs) == 4  # ceil(10 / 3)
    assert [t for s in segs for t in s.targets] == list(range(10))
    assert [s.start for s in segs] == [s.targets[0] for s in segs]  # no pass-through
    assert [s.after_loop for s in segs] == [False, False, True]


def test_without_checkpoints_splitting_does_not_help() -> None:
    segs = plan_segments(list(range(8)), anchors=[], workers=4)
    assert max(s.executed for s in segs) == 8  # every worker would start at 0
    assert sorted(t for s in segs for t in s.targets) == list(range(8))


def test_sparse_checkpoints_move_the_cuts() -> None:
    # checkpoints only at 6: the best split is 0-5 | 6-9 (6 and 4 iterations executed)
    segs = plan_segments(list(range(10)), anchors=[6], workers=3)
    assert max(s.executed for s in segs) == 6
    assert all(s.start in (0, 6) for s in segs)
    assert [t for s in segs for t in s.targets] == list(range(10))


def test_more_workers_than_targets() -> None:
    segs = plan_segments([2, 9], anchors=list(range(1, 10)), workers=8)
    assert [(s.start, s.targets) for s in segs] == [(2, [2]), (9, [9])]


# --- end to end -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("parallel")
    project = copy_project(EXAMPLES / "main_train_eval", base / "project")
    rec = florc(["record", "--checkpoint-all", "train.py"], project)
    assert rec.returncode == 0, rec.stderr
    for f in project.glob("*.pt"):
        f.unlink()
    return project


def _batch_edit(recorded: Path, tmp_path: Path) -> tuple[list[str], Path]:
    """A batch-level print added to the recorded project: (a plain run's lines, the project)."""
    edit = EXAMPLES / "main_train_eval" / "hindsight" / "batch"
    plain_dir = copy_project(EXAMPLES / "main_train_eval", tmp_path / "plain")
    overlay(edit, plain_dir)
    want = hindsight_lines(python("train.py", plain_dir).stdout)
    assert len(want) > 20
    work = tmp_path / "work"
    shutil.copytree(recorded, work)
    overlay(edit, work)
    return want, work


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_batch_level_replay_with_workers_matches_a_plain_run(
    recorded: Path, tmp_path: Path, workers: int
) -> None:
    want, work = _batch_edit(recorded, tmp_path)
    rep = florc(["replay", "train.py", "--epochs", "all", "--workers", str(workers)], work)
    assert rep.returncode == 0, rep.stderr
    assert rep.lines == want
    assert "fidelity: exact" in rep.stderr


NOISY = """\
import os

import torch

torch.manual_seed(0)
model = torch.nn.Linear(8, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
data = torch.randn(64, 8)
for epoch in range(6):
    for i in range(0, 64, 16):
        noise = int.from_bytes(os.urandom(2), "little") / 65536.0
        loss = (model(data[i : i + 16]) + noise).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"epoch {epoch} loss {loss.item():.6f}")
"""


def test_nondeterministic_training_is_reported_as_diverged(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(NOISY)
    assert florc(["record", "--checkpoint-all", "train.py"], tmp_path).returncode == 0
    edited = NOISY.replace(
        "        opt.step()\n",
        "        opt.step()\n        print(f'HINDSIGHT e={epoch} w={model.weight.sum().item():.6f}')\n",
    )
    (tmp_path / "train.py").write_text(edited)
    rep = florc(["replay", "train.py", "--epochs", "2-3"], tmp_path)
    assert rep.returncode == 0, rep.stderr
    assert "fidelity: diverged at train.py:10 epoch 2" in rep.stderr, rep.stderr
    rep = florc(["replay", "train.py", "--epochs", "1-4", "--workers", "2"], tmp_path)
    assert rep.returncode == 0, rep.stderr
    assert "fidelity: diverged at train.py:10 epoch 1" in rep.stderr, rep.stderr
    check = florc(["verify", "--sample", "2"], tmp_path)
    assert check.returncode == 1 and "fidelity: diverged at train.py:10 epoch" in check.stderr


def test_verify_reexecutes_a_sample_of_blocks(recorded: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    shutil.copytree(recorded, work)
    check = florc(["verify", "--sample", "2"], work)
    assert check.returncode == 0, check.stderr
    assert "re-running every block of epochs 1,5" in check.stderr
    assert "fidelity: exact" in check.stderr


def test_a_failing_worker_is_reported_and_the_others_results_kept(
    recorded: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    shutil.copytree(recorded, work)
    source = (work / "train.py").read_text()
    anchor = '        print(f"epoch {epoch}'
    assert anchor in source
    (work / "train.py").write_text(
        source.replace(
            anchor, '        print(f"HINDSIGHT e={epoch} {1 / (epoch - 5)}")\n' + anchor, 1
        )
    )
    rep = florc(["replay", "train.py", "--epochs", "all", "--workers", "2"], work)
    assert rep.returncode != 0
    assert "epochs 4–5" in rep.stderr and "ZeroDivisionError" in rep.stderr, rep.stderr
    shown = hindsight_lines(rep.stdout)
    assert [ln.split()[1] for ln in shown] == ["e=1", "e=2", "e=3"]
    # fix the statement, then rerun only the failed worker
    (work / "train.py").write_text(
        source.replace(
            anchor, '        print(f"HINDSIGHT e={epoch} {1 / (epoch - 9)}")\n' + anchor, 1
        )
    )
    again = florc(["replay", "train.py", "--retry"], work)
    assert again.returncode == 0, again.stderr
    assert "retrying worker 2 (epochs 4–5)" in again.stderr
    assert [ln.split()[1] for ln in hindsight_lines(again.stdout)] == ["e=4", "e=5"]
    assert "fidelity: exact" in again.stderr
    nothing = florc(["replay", "train.py", "--retry"], work)
    assert nothing.returncode == 2 and "no replay of run 1 has failed workers" in nothing.stderr


# --- Ray ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A real local Ray cluster, started and stopped with Ray's own command line."""
    pytest.importorskip("ray")
    import socket
    import subprocess
    import sys

    ray_cli = str(Path(sys.executable).with_name("ray"))
    # a cluster only this machine's tests reach: no token to hand to the driver
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = subprocess.run(
        [
            ray_cli,
            "start",
            "--head",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert start.returncode == 0, start.stdout + start.stderr
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True, timeout=120)
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved


def test_ray_executor_on_a_local_cluster_matches_a_plain_run(
    recorded: Path, tmp_path: Path, ray_cluster: str
) -> None:
    want, work = _batch_edit(recorded, tmp_path)
    rep = florc(
        [
            "replay",
            "train.py",
            "--epochs",
            "all",
            "--workers",
            "2",
            "--executor",
            "ray",
            "--address",
            ray_cluster,
        ],
        work,
    )
    assert rep.returncode == 0, rep.stderr
    assert rep.lines == want
    assert "2 workers (ray)" in rep.stderr and "fidelity: exact" in rep.stderr
