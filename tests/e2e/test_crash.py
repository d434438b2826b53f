"""Crash safety: `florc record` killed with SIGKILL at random moments leaves a usable store.

After every kill: the index passes SQLite's integrity check; every committed checkpoint loads,
with every blob present and matching its hash; the values the run logged before it died are
what a plain run prints; and a replay of the recorded epochs with a hindsight print gives
exactly what a plain run of the edited script prints for them.
"""

from __future__ import annotations

import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import clean_env, expected_for, florc, hindsight_lines, python

from florc.runtime import checkpoint
from florc.store.index import Store

pytestmark = pytest.mark.e2e

KILLS_NUMPY = 44
KILLS_TORCH = 8
SEED = 20261126

NUMPY_SCRIPT = """\
import numpy as np

rng = np.random.default_rng(0)
weights = rng.standard_normal((384, 384)) / 20
frozen = rng.standard_normal((512, 512))
for epoch in range(24):
    for step in range(12):
        batch = rng.standard_normal((64, 384))
        grad = batch.T @ np.tanh(batch @ weights) / 64
        weights -= 0.01 * grad
    print(f"epoch {epoch} loss {float(np.abs(weights).mean()):.12f}", flush=True)
"""

TORCH_SCRIPT = """\
import torch

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.ReLU(), torch.nn.Linear(512, 10))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
data = torch.randn(512, 256)
labels = torch.randint(0, 10, (512,))
for epoch in range(16):
    for i in range(0, 512, 64):
        loss = torch.nn.functional.cross_entropy(model(data[i : i + 64]), labels[i : i + 64])
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"epoch {epoch} loss {loss.item():.8f}", flush=True)
"""

HINDSIGHT = {
    "numpy": (
        '    print(f"epoch {epoch} loss',
        '    print(f"HINDSIGHT e={epoch} w={float(weights.sum()):.10f}")\n',
    ),
    "torch": (
        '    print(f"epoch {epoch} loss',
        '    print(f"HINDSIGHT e={epoch} w={float(model[0].weight.sum()):.8f}")\n',
    ),
}


def _edited(source: str, kind: str) -> str:
    anchor, line = HINDSIGHT[kind]
    i = source.index(anchor)
    return source[:i] + line + source[i:]


def _record_and_kill(project: Path, delay: float, wait_for_training: bool) -> list[str]:
    """Start `florc record`, SIGKILL it `delay` s after training starts; the lines it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "florc", "record", "--checkpoint-all", "train.py"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=clean_env(),
    )
    lines: list[str] = []
    started = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            started.set()
        started.set()

    reader = threading.Thread(target=read)
    reader.start()
    if wait_for_training:
        started.wait(timeout=120)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    reader.join()
    return lines


def _check_store(project: Path) -> tuple[int, list[int]] | None:
    """Everything committed loads. Returns (run id, recorded iteration indices)."""
    if not (project / ".florc" / "florc.db").exists():
        return None  # killed before the store was created
    db = sqlite3.connect(project / ".florc" / "florc.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    store = Store(project, project / ".florc")
    try:
        runs = [r["id"] for r in store.runs()]
        if not runs:
            return None  # killed before the run was created
        (run,) = runs
        assert store.run(run)["status"] in ("killed", "done")
        for row in store.checkpoints(run):
            if not row.usable:
                continue
            fetched: list[str] = []

            def fetch(sha: str, fetched: list[str] = fetched) -> bytes:
                fetched.append(sha)
                return store.get_blob(sha)  # checks the hash

            snap = checkpoint.decode(store.get_blob(row.blob), fetch)
            assert snap.rng, f"checkpoint {row.loop}@{row.iteration} lost its RNG state"
            listed = set(store.checkpoint_blobs(row.id))
            assert {row.blob, *fetched} <= listed, "a checkpoint uses a blob it does not list"
        return run, [i for i, _ in store.iterations(run)]
    finally:
        store.close()


_RESTORED = re.compile(
    r"(?P<boundaries>\d+) epoch checkpoints? and (?P<blocks>\d+) blocks? restored"
)


def _one_kill(
    kind: str,
    base: Path,
    plain: list[str],
    edited_plain: list[str],
    i: int,
    delay: float,
    early: bool,
) -> dict:
    project = base / f"{kind}-{i}"
    shutil.copytree(base / f"{kind}-src", project)
    printed = _record_and_kill(project, delay, wait_for_training=not early)
    if printed:  # the last line may have been cut by the kill
        assert printed[:-1] == plain[: len(printed) - 1], "record changed what the script printed"
        assert plain[len(printed) - 1].startswith(printed[-1])
    checked = _check_store(project)
    if checked is None:
        return {"iterations": 0, "restored": False}
    run, iterations = checked
    store = Store(project, project / ".florc")
    logged = [r["value"] for r in store.logs(run)]
    store.close()
    assert logged == plain[: len(logged)], "the store lost or reordered logged values"
    result = {"iterations": len(iterations), "restored": False}
    if not iterations:
        return result
    (project / "train.py").write_text(_edited((project / "train.py").read_text(), kind))
    rep = florc(["replay", "train.py", "--epochs", "all"], project)
    assert rep.returncode == 0, f"kill {i} ({delay:.2f} s): {rep.stderr}"
    assert rep.lines == expected_for(edited_plain, set(iterations)), (
        f"kill {i} after {delay:.2f} s: replay differs\n{rep.stderr}"
    )
    restored = _RESTORED.search(rep.stderr)
    assert restored, f"kill {i}: the replay did not say what it restored\n{rep.stderr}"
    result["restored"] = int(restored["boundaries"]) + int(restored["blocks"]) > 0
    return result


@pytest.mark.parametrize(
    ("kind", "source", "kills"),
    [
        pytest.param("numpy", NUMPY_SCRIPT, KILLS_NUMPY, marks=pytest.mark.smoke),
        ("torch", TORCH_SCRIPT, KILLS_TORCH),
    ],
    ids=["numpy", "torch"],
)
def test_sigkill_at_random_moments(kind: str, source: str, kills: int, tmp_path: Path) -> None:
    src = tmp_path / f"{kind}-src"
    src.mkdir()
    (src / "train.py").write_text(source)
    plain = python("train.py", src)
    assert plain.returncode == 0, plain.stderr
    edited = tmp_path / f"{kind}-edited"
    edited.mkdir()
    (edited / "train.py").write_text(_edited(source, kind))
    edited_plain = hindsight_lines(python("train.py", edited).stdout)
    assert edited_plain

    # how long training runs under record, to spread the kills over it
    full = tmp_path / f"{kind}-full"
    shutil.copytree(src, full)
    t0 = time.perf_counter()
    rec = florc(["record", "--checkpoint-all", "train.py"], full)
    span = time.perf_counter() - t0
    assert rec.returncode == 0, rec.stderr

    rng = random.Random(f"{SEED}-{kind}")
    moments = []
    for i in range(kills):
        early = i % 10 == 0  # some kills during start-up, before training
        moments.append((i, rng.uniform(0, span * (0.5 if early else 0.8)), early))
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(
            pool.map(lambda m: _one_kill(kind, tmp_path, plain.lines, edited_plain, *m), moments)
        )
    with_iterations = [r for r in results if r["iterations"]]
    assert len(with_iterations) >= kills // 2, "most kills should land during training"
    assert sum(r["restored"] for r in with_iterations) >= len(with_iterations) // 3, (
        "replays after a kill should restore committed checkpoints, not only re-execute"
    )
