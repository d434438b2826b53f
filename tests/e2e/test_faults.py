"""Bad input and faults: clear errors, nothing lost, never a wrong value (docs/RELIABILITY.md)."""

from __future__ import annotations

import json
import resource
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import florc, hindsight_lines, python

from florc.store.index import Store

pytestmark = pytest.mark.e2e

# A small training script: an epoch loop over a block, state that grows a little every epoch,
# one line per epoch. HINDSIGHT marks where the tests add a log statement.
TRAIN = """\
import numpy as np

rng = np.random.default_rng(0)
w = np.zeros(1)
for epoch in range(EPOCHS):
    w = np.concatenate([w, rng.normal(size=GROW)])
    for i in range(3):
        w[: i + 1] += 0.5 * i
    # HINDSIGHT
    print(f"epoch {epoch} {w.sum():.6f}", flush=True)
"""
HINDSIGHT = 'print(f"HINDSIGHT e={epoch} {w[:3].sum():.6f} {len(w)}")'


def script(epochs: int = 8, grow: int = 1000, sleep: float = 0.0, rewrite: bool = False) -> str:
    text = TRAIN.replace("EPOCHS", str(epochs)).replace("GROW", str(grow))
    if rewrite:  # every byte changes, so each checkpoint writes all of `w` (no chunk is shared)
        text = text.replace("    for i in range(3):\n", "    w *= 0.999\n    for i in range(3):\n")
    if sleep:
        text = text.replace("import numpy as np\n", "import time\n\nimport numpy as np\n")
        text = text.replace("    # HINDSIGHT", f"    time.sleep({sleep})\n    # HINDSIGHT")
    return text


def edited(text: str) -> str:
    return text.replace("# HINDSIGHT", HINDSIGHT)


def plain_hindsight(tmp_path: Path, text: str) -> list[str]:
    folder = tmp_path / "plain"
    folder.mkdir(exist_ok=True)
    (folder / "train.py").write_text(edited(text))
    out = python("train.py", folder)
    assert out.returncode == 0, out.stderr
    return hindsight_lines(out.stdout)


def runs(project: Path) -> list[dict]:
    return json.loads(florc(["runs", "--format", "json"], project).stdout)


def no_partial_files(project: Path) -> bool:
    return not [p for p in (project / ".florc").rglob("*") if p.name.endswith(".tmp")]


# --- scripts florc cannot read ----------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "where"),
    [
        ('print "hello"\nfor i in range(3):\n    pass\n', "train.py:1:1: syntax error"),
        (b'x = "\xff\xfe"\n', "train.py:1:6: not valid UTF-8"),
        ("def f(:\n    pass\n", "train.py:1:7: syntax error"),
        ("for i in range(3):\n\tif i:\n        pass\n", "train.py:3:"),  # inconsistent tabs
    ],
)
def test_unreadable_scripts_get_one_clear_error(
    tmp_path: Path, source: str | bytes, where: str
) -> None:
    path = tmp_path / "train.py"
    path.write_bytes(source if isinstance(source, bytes) else source.encode())
    # record refuses the script (a usage error); the check reports it as one failed script
    for command, code in ((["record", "train.py"], 2), (["instrument", "--check", "train.py"], 1)):
        out = florc(command, tmp_path)
        assert out.returncode == code, out.stderr
        assert where in out.stderr, out.stderr
        assert "Traceback" not in out.stderr
    assert not (tmp_path / ".florc" / "florc.db").exists()  # nothing recorded


def test_a_folder_or_missing_file_is_not_a_script(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    for name, says in (("src", "src"), ("nope.py", "nope.py: no such file")):
        out = florc(["record", name], tmp_path)
        assert out.returncode == 2 and says in out.stderr and "Traceback" not in out.stderr


# --- the script fails, is interrupted, is killed ----------------------------------------


def test_a_script_that_fails_mid_training_keeps_its_epochs(tmp_path: Path) -> None:
    text = script(epochs=8).replace(
        '    print(f"epoch',
        '    if epoch == 5:\n        raise RuntimeError("diverged")\n    print(f"epoch',
    )
    (tmp_path / "train.py").write_text(text)
    rec = florc(["record", "--checkpoint-all", "train.py"], tmp_path)
    assert rec.returncode == 1  # what `python train.py` exits with
    assert "RuntimeError: diverged" in rec.stderr  # the script's own traceback, as Python shows it
    (run,) = runs(tmp_path)
    assert run["status"] == "failed" and run["checkpoints"] > 0
    (tmp_path / "train.py").write_text(edited(text))
    rep = florc(["replay", "train.py", "--epochs", "0-4"], tmp_path)
    assert rep.returncode == 0, rep.stderr
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "train.py").write_text(edited(text))
    assert hindsight_lines(rep.stdout) == hindsight_lines(python("train.py", plain).stdout)[:5]
    out = florc(["replay", "train.py", "--epochs", "6"], tmp_path)
    assert out.returncode == 2 and "the recorded range is 0-5" in out.stderr


def test_ctrl_c_during_record_keeps_what_was_written(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    text = script(epochs=200, sleep=0.05)
    (tmp_path / "train.py").write_text(text)
    proc = subprocess.Popen(
        [sys.executable, "-m", "florc", "record", "--checkpoint-all", "train.py"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # each line as it is printed: a block-buffered pipe delivers them all at once, and on a
        # loaded machine only after the run has ended
        env={**subprocess_env, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    seen = [proc.stdout.readline() for _ in range(6)]  # six epochs done
    assert seen[-1].startswith("epoch 5 ")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    (run,) = runs(tmp_path)
    assert run["status"] == "interrupted" and run["checkpoints"] >= 6

    (tmp_path / "train.py").write_text(edited(text))
    rep = florc(["replay", "train.py", "--epochs", "0-5"], tmp_path)
    assert rep.returncode == 0, rep.stderr
    assert hindsight_lines(rep.stdout) == plain_hindsight(tmp_path, text)[:6]
    assert "fidelity: exact" in rep.stderr


@pytest.mark.smoke
def test_disk_full_during_record_training_goes_on(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    """A file size limit (as a full disk or a quota would) makes checkpoint writes fail part-way.

    Each epoch adds 240 KB of state, all of it rewritten; past 3 MB a checkpoint's pack cannot
    be written."""
    text = script(epochs=16, grow=30_000, rewrite=True)
    (tmp_path / "train.py").write_text(text)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (3_000_000, 3_000_000))

    rec = subprocess.run(
        [sys.executable, "-m", "florc", "record", "--checkpoint-all", "train.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=subprocess_env,
        preexec_fn=limit,
    )
    plain = python("train.py", tmp_path)
    assert rec.returncode == 0, rec.stderr
    assert rec.stdout == plain.stdout  # training ran to its end, unchanged
    assert rec.stderr.count("warning: checkpoints stopped (File too large)") == 1
    assert "run 1 partial" in rec.stderr
    assert no_partial_files(tmp_path)
    (run,) = runs(tmp_path)
    assert run["status"] == "partial" and 0 < run["checkpoints"] < 32

    (tmp_path / "train.py").write_text(edited(text))
    rep = florc(["replay", "train.py", "--epochs", "all"], tmp_path)
    assert rep.returncode == 0, rep.stderr
    assert hindsight_lines(rep.stdout) == plain_hindsight(tmp_path, text)
    assert "fidelity: exact" in rep.stderr


# --- damaged stores ---------------------------------------------------------------------


def _recorded(tmp_path: Path, epochs: int = 8) -> tuple[Path, str]:
    text = script(epochs=epochs)
    (tmp_path / "train.py").write_text(text)
    rec = florc(["record", "--checkpoint-all", "train.py"], tmp_path)
    assert rec.returncode == 0, rec.stderr
    return tmp_path, text


def _boundary_blobs(project: Path, run: int = 1) -> dict[int, tuple[Path, int, int]]:
    """Main-loop boundary -> where its checkpoint's manifest blob lies: (file, offset, length),
    a pack file holding that checkpoint's new blobs."""
    db = sqlite3.connect(project / ".florc" / "florc.db")
    rows = db.execute(
        "SELECT c.iteration, c.blob FROM checkpoints c JOIN runs r ON r.id = c.run "
        "WHERE c.run = ? AND c.loop = r.main_loop AND c.usable",
        (run,),
    ).fetchall()
    db.close()
    store = Store(project)
    where = {it: store.blob_location(key) for it, key in rows}
    store.close()
    return where


@pytest.mark.parametrize("damage", [pytest.param("corrupt", marks=pytest.mark.smoke), "missing"])
def test_a_damaged_checkpoint_falls_back_to_an_earlier_one(tmp_path: Path, damage: str) -> None:
    project, text = _recorded(tmp_path)
    pack, offset, length = _boundary_blobs(project)[6]  # the state before epoch 6
    assert pack.parent.name == "packs" and length > 8
    if damage == "corrupt":
        data = bytearray(pack.read_bytes())
        data[offset + length - 5] ^= 0xFF  # a byte of the manifest's entry inside the pack
        pack.write_bytes(bytes(data))
    else:
        pack.unlink()  # the checkpoint's pack: its manifest and its new tensors
    (project / "train.py").write_text(edited(text))
    rep = florc(["replay", "train.py", "--epochs", "6-7"], project)
    assert rep.returncode == 0, rep.stderr
    assert hindsight_lines(rep.stdout) == plain_hindsight(tmp_path, text)[6:8]
    says = "is corrupt (hash mismatch)" if damage == "corrupt" else "is missing"
    assert "iteration 6: not restored (checkpoint blob" in rep.stderr
    assert says in rep.stderr
    assert "fidelity: exact" in rep.stderr


def test_with_every_checkpoint_gone_replay_runs_from_the_start(tmp_path: Path) -> None:
    project, text = _recorded(tmp_path, epochs=5)
    for blob in (project / ".florc" / "blobs").rglob("*"):
        if blob.is_file():
            blob.unlink()
    (project / "train.py").write_text(edited(text))
    rep = florc(["replay", "train.py", "--epochs", "3-4"], project)
    assert rep.returncode == 0, rep.stderr
    assert hindsight_lines(rep.stdout) == plain_hindsight(tmp_path, text)[3:5]
    assert "not restored" in rep.stderr and "is missing" in rep.stderr


# --- concurrency ------------------------------------------------------------------------


def test_two_records_and_a_replay_share_one_store(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    a, b = script(epochs=30, sleep=0.02), script(epochs=30, grow=500, sleep=0.02)
    (tmp_path / "a.py").write_text(a)
    (tmp_path / "b.py").write_text(b)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "florc", "record", "--checkpoint-all", name],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=subprocess_env,
        )
        for name in ("a.py", "b.py")
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    table = {r["script"]: r for r in runs(tmp_path)}
    assert table["a.py"]["id"] != table["b.py"]["id"]
    assert table["a.py"]["status"] == table["b.py"]["status"] == "done"
    for name, (out, _) in zip(("a.py", "b.py"), outputs):
        logged = json.loads(
            florc(["logs", str(table[name]["id"]), "--format", "json", "--long"], tmp_path).stdout
        )
        assert [r["value"] for r in logged] == out.splitlines()  # no rows mixed up or lost
    # replay a's recording while b records again
    proc = subprocess.Popen(
        [sys.executable, "-m", "florc", "record", "--checkpoint-all", "b.py"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env,
    )
    (tmp_path / "a.py").write_text(edited(a))
    rep = florc(["replay", "a.py", "--epochs", "20-29"], tmp_path)
    out_b, err_b = proc.communicate(timeout=120)
    assert rep.returncode == 0 and proc.returncode == 0, rep.stderr + err_b
    want = hindsight_lines(python("a.py", tmp_path).stdout)[20:30]
    assert hindsight_lines(rep.stdout) == want
    assert [r["status"] for r in runs(tmp_path) if r["kind"] == "record"] == ["done"] * 3


# --- replaying against the wrong thing --------------------------------------------------


def test_a_run_recorded_with_other_versions_gets_a_warning(tmp_path: Path) -> None:
    project, text = _recorded(tmp_path, epochs=4)
    db = sqlite3.connect(project / ".florc" / "florc.db")
    env_json = json.loads(db.execute("SELECT env FROM runs WHERE id = 1").fetchone()[0])
    env_json.update(torch="1.13.1", numpy="1.21.0")
    db.execute("UPDATE runs SET env = ? WHERE id = 1", (json.dumps(env_json),))
    db.commit()
    db.close()
    (project / "train.py").write_text(edited(text))
    rep = florc(["replay", "train.py", "--epochs", "3"], project)
    assert rep.returncode == 0, rep.stderr
    assert "warning: run 1 was recorded with numpy 1.21.0, this replay runs numpy" in rep.stderr
    assert hindsight_lines(rep.stdout) == plain_hindsight(tmp_path, text)[3:4]


def test_a_store_from_a_newer_florc_is_refused(tmp_path: Path) -> None:
    project, text = _recorded(tmp_path, epochs=3)
    db = sqlite3.connect(project / ".florc" / "florc.db")
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    rep = florc(["replay", "train.py"], project)
    assert rep.returncode == 2 and "schema version 99" in rep.stderr
    assert "Traceback" not in rep.stderr


def test_unknown_run_and_epochs_out_of_range(tmp_path: Path) -> None:
    project, text = _recorded(tmp_path, epochs=3)
    (project / "train.py").write_text(edited(text))
    out = florc(["replay", "train.py", "--run", "7"], project)
    assert out.returncode == 2 and "run 7 is not a recorded run" in out.stderr
    out = florc(["replay", "train.py", "--epochs", "2-9"], project)
    assert out.returncode == 2 and "the recorded range is 0-2" in out.stderr


# --- the script's options and florc's ---------------------------------------------------


def test_scripts_with_florcs_option_names(tmp_path: Path) -> None:
    text = (
        "import argparse\n"
        "p = argparse.ArgumentParser()\n"
        "for name in ('--epochs', '--run', '--workers', '--overhead'):\n"
        "    p.add_argument(name, type=int, default=1)\n"
        "a = p.parse_args()\n"
        "w = 0\n"
        "for epoch in range(a.epochs):\n"
        "    for i in range(a.workers):\n"
        "        w += a.run\n"
        "    # HINDSIGHT\n"
        "    print('epoch', epoch, w)\n"
    )
    (tmp_path / "train.py").write_text(text)
    args = ["--epochs", "4", "--run", "3", "--workers", "2", "--overhead", "9"]
    rec = florc(["record", "train.py", *args], tmp_path)
    assert rec.returncode == 0, rec.stderr
    assert rec.stdout.splitlines()[-1] == "epoch 3 24"
    rec = florc(["record", "--checkpoint-all", "train.py", "--", *args], tmp_path)
    assert rec.returncode == 0 and rec.stdout.splitlines()[-1] == "epoch 3 24"
    (tmp_path / "train.py").write_text(text.replace("# HINDSIGHT", "print('HINDSIGHT', w)"))
    rep = florc(["replay", "train.py", "--epochs", "2-3", "--workers", "2"], tmp_path)
    assert rep.returncode == 0, rep.stderr
    assert hindsight_lines(rep.stdout) == ["HINDSIGHT 18", "HINDSIGHT 24"]  # recorded arguments


# --- constructs the analysis cannot follow ----------------------------------------------

CONSTRUCTS = """\
import numpy as np

state = {"w": np.zeros(3)}
lr = 0.1


def step(i):
    global lr
    lr *= 0.99
    state["w"][0] += lr * i


def make_counter():
    count = 0

    def bump():
        nonlocal count
        count += 1
        return count

    return bump


def first_big(xs):
    for x in xs:
        if x > 1:
            return x
    return None


def doubled(n):
    for t in range(n):
        yield t * 2


bump = make_counter()
try:
    for epoch in range(5):
        for i in range(3):
            step(i)
        for j in range(2):
            exec("state['w'][1] += 1")
        for k in range(2):
            globals()["extra"] = k + epoch
        for m in range(2):
            bump()
        for v in doubled(3):
            state["w"][2] += first_big([0, v, 2])
        # HINDSIGHT
        print(epoch, state["w"].sum(), round(lr, 8), bump())
except KeyboardInterrupt:
    pass
"""


def test_constructs_the_analysis_cannot_follow_re_execute_and_say_why(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(CONSTRUCTS)
    report = florc(["instrument", "--report", "train.py"], tmp_path).stdout
    assert "train.py:42:13: `exec()` can change any variable" in report
    assert "train.py:44:13: `globals()` can change any variable" in report
    assert "train.py:27:13: `return` inside the loop leaves it with a value" in report
    assert "train.py:33:9: `yield` inside the loop suspends it" in report
    rec = florc(["record", "--checkpoint-all", "train.py"], tmp_path)
    assert rec.returncode == 0, rec.stderr
    statement = 'print("HINDSIGHT", epoch, state["w"][1], extra, lr > 0)'
    (tmp_path / "train.py").write_text(CONSTRUCTS.replace("# HINDSIGHT", statement))
    want = hindsight_lines(python("train.py", tmp_path).stdout)
    rep = florc(["replay", "train.py", "--epochs", "2-4"], tmp_path)
    assert rep.returncode == 0, rep.stderr
    assert hindsight_lines(rep.stdout) == want[2:5]
    assert "fidelity: exact" in rep.stderr
