"""Parallel replay end to end: workers in separate processes, merged output, fidelity verdicts,
verify, a failing worker and --retry, the Ray executor on a local cluster."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import (
    EXAMPLES,
    apply_edits,
    clean_env,
    copy_project,
    florc,
    hindsight_lines,
    python,
)

from florc.replay.executors import cpu_count

pytestmark = pytest.mark.e2e

# --- end to end -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("parallel")
    project = copy_project(EXAMPLES / "main_train_eval", base / "project")
    # one thread: its workers fit the cores (a replay gives each the recording's count)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        rec = florc(["record", "--checkpoint-all", "train.py"], project)
    assert rec.returncode == 0, rec.stderr
    for f in project.glob("*.pt"):
        f.unlink()
    return project


def _batch_edit(recorded: Path, tmp_path: Path) -> tuple[list[str], Path]:
    """A batch-level print added to the recorded project: (a plain run's lines, the project)."""
    example = EXAMPLES / "main_train_eval"
    plain_dir = apply_edits(example, "batch", copy_project(example, tmp_path / "plain"))
    want = hindsight_lines(python("train.py", plain_dir).stdout)
    assert len(want) > 20
    work = apply_edits(example, "batch", shutil.copytree(recorded, tmp_path / "work"))
    return want, work


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.smoke), 3])
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


# Sums over more elements than torch's grain size (32768) are split over threads: with 1 thread
# this script's losses differ from 2 threads' in the last digits, and so (the RMSE's value
# scales its gradient) do the weights.
THREADED = """\
import torch

torch.manual_seed(0)
data = torch.randn(256, 64)
proj = torch.randn(64, 1024) / 8
model = torch.nn.Linear(64, 1024)
opt = torch.optim.SGD(model.parameters(), lr=0.05)
for epoch in range(4):
    for i in range(0, 256, 64):
        x = data[i : i + 64]
        loss = (model(x) - x @ proj).pow(2).mean().sqrt()  # RMSE: its value scales the step
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"epoch {epoch} loss {loss.item():.6f}")
"""
THREADED_EDIT = (
    "        opt.step()\n",
    "        opt.step()\n        print(f'HINDSIGHT e={epoch} i={i} loss={loss.item():.9f}')\n",
)


def test_a_two_thread_recording_replays_exactly_with_two_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    edited = THREADED.replace(*THREADED_EDIT)
    plain = {}
    for n in (1, 2):
        monkeypatch.setenv("OMP_NUM_THREADS", str(n))
        (tmp_path / f"plain{n}").mkdir()
        (tmp_path / f"plain{n}" / "train.py").write_text(edited)
        plain[n] = hindsight_lines(python("train.py", tmp_path / f"plain{n}").stdout)
    assert len(plain[2]) == 16
    assert plain[1] != plain[2], "the thread count must change this script's numbers"
    work = tmp_path / "work"
    work.mkdir()
    (work / "train.py").write_text(THREADED)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert florc(["record", "--checkpoint-all", "train.py"], work).returncode == 0
    (work / "train.py").write_text(edited)
    # a replay started with another thread count still gives workers the recording's
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    rep = florc(["replay", "train.py", "--epochs", "all", "--workers", "2"], work)
    assert rep.returncode == 0, rep.stderr
    assert rep.lines == plain[2]
    assert "fidelity: exact" in rep.stderr, rep.stderr
    cores = cpu_count()
    first = rep.stderr.splitlines()[0]
    if cores < 4:
        assert first == (
            "florc: 1 worker instead of 2: the recording used 2 torch threads and this machine "
            f"has {cores} cores; --threads {max(1, cores // 2)} runs 2 workers (values may "
            "differ in the last digits)"
        )
    else:
        assert "instead of" not in rep.stderr and "2 workers (local)" in rep.stderr
    # another count, asked for: the verdict says the values differ, and why
    rep = florc(["replay", "train.py", "--epochs", "all", "--workers", "2", "--threads", "1"], work)
    assert rep.returncode == 0, rep.stderr
    assert rep.lines != plain[2] and len(rep.lines) == 16
    assert "this replay ran 1 torch thread per process, the recording 2" in rep.stderr, rep.stderr
    if cores >= 2:
        assert "2 workers (local)" in rep.stderr


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

    beside = Path(sys.executable).with_name("ray")
    # Ray's command line: its script beside this Python, or the module it runs
    ray_cli = [str(beside)] if beside.exists() else [sys.executable, "-m", "ray.scripts.scripts"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # a cluster only this machine's tests reach: no token to hand to the driver
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_AUTH_MODE", "disabled")
        start = subprocess.run(
            [
                *ray_cli,
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
            env=clean_env(),
        )
        assert start.returncode == 0, start.stdout + start.stderr
        try:
            yield f"127.0.0.1:{port}"
        finally:
            subprocess.run(
                [*ray_cli, "stop", "--force"], capture_output=True, timeout=120, env=clean_env()
            )


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
