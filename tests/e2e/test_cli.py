"""The CLI on small pure-Python scripts (fast): errors users see, refusals, tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import florc, python

pytestmark = pytest.mark.e2e

SCRIPT = """\
import random
import sys

random.seed(1)
weights = [0.0, 0.0]
history = []


def step(w, x):
    return [wi + 0.1 * (x - wi) for wi in w]


for epoch in range(1, 6):
    for _ in range(4):
        weights = step(weights, random.random())
    history.append(sum(weights))
    print(f"epoch {epoch} w {weights[0]:.6f}")
print("final", len(history))
"""


def make(tmp_path: Path, text: str = SCRIPT) -> Path:
    (tmp_path / "train.py").write_text(text)
    return tmp_path


@pytest.mark.parametrize("policy", [[], ["--checkpoint-all"]], ids=["budget", "all"])
def test_record_prints_the_scripts_output_and_replay_shows_new_statements(
    tmp_path: Path, policy: list[str]
) -> None:
    make(tmp_path)
    rec = florc(["record", *policy, "train.py"], tmp_path)
    assert rec.returncode == 0, rec.stderr
    assert rec.stdout == python("train.py", tmp_path).stdout
    assert "main loop at train.py:13" in rec.stderr
    edited = SCRIPT.replace(
        '    print(f"epoch',
        '    print(f"HINDSIGHT e={epoch} h={history[-1]:.6f}")\n    print(f"epoch',
    )
    edited = edited.replace(
        "        weights = step(weights, random.random())\n",
        "        weights = step(weights, random.random())\n        print(f'HINDSIGHT e={epoch} w1={weights[1]:.6f}')\n",
    )
    (tmp_path / "train.py").write_text(edited)
    plain = [
        ln for ln in python("train.py", tmp_path).stdout.splitlines() if ln.startswith("HINDSIGHT")
    ]
    rep = florc(["replay", "train.py", "--epochs", "2,4-5"], tmp_path)
    assert rep.returncode == 0, rep.stderr
    want = [ln for ln in plain if any(f"e={e} " in ln for e in (2, 4, 5))]
    assert rep.stdout.splitlines() == want
    assert "epochs as the script counts them" in rep.stderr.splitlines()[0]


@pytest.mark.smoke
def test_replay_refuses_changes_to_training_code(tmp_path: Path) -> None:
    make(tmp_path)
    assert florc(["record", "train.py"], tmp_path).returncode == 0
    (tmp_path / "train.py").write_text(SCRIPT.replace("0.1 * (x - wi)", "0.2 * (x - wi)"))
    rep = florc(["replay", "train.py", "--epochs", "2"], tmp_path)
    assert rep.returncode != 0
    assert "not log statements" in rep.stderr
    assert "train.py:10" in rep.stderr and "0.2 * (x - wi)" in rep.stderr
    assert "Traceback" not in rep.stderr
    forced = florc(["replay", "train.py", "--epochs", "2", "--allow-changes"], tmp_path)
    assert forced.returncode == 0 and "UNFAITHFUL" in forced.stderr


def test_epochs_outside_the_recorded_range(tmp_path: Path) -> None:
    make(tmp_path)
    florc(["record", "train.py"], tmp_path)
    rep = florc(["replay", "train.py", "--epochs", "7-9"], tmp_path)
    assert rep.returncode == 2
    assert "recorded range is 1-5" in rep.stderr
    bad = florc(["replay", "train.py", "--epochs", "x"], tmp_path)
    assert bad.returncode == 2 and "expected e.g." in bad.stderr


def test_unknown_run_and_no_recording(tmp_path: Path) -> None:
    make(tmp_path)
    rep = florc(["replay", "train.py"], tmp_path)
    assert rep.returncode == 2 and "florc record train.py" in rep.stderr
    florc(["record", "train.py"], tmp_path)
    rep = florc(["replay", "train.py", "--run", "99"], tmp_path)
    assert rep.returncode == 2 and "run 99" in rep.stderr


def test_script_errors_are_reported_with_position(tmp_path: Path) -> None:
    make(tmp_path, "for i in range(3)\n    print(i)\n")
    res = florc(["record", "train.py"], tmp_path)
    assert res.returncode == 2
    assert "train.py:1:18: syntax error" in res.stderr
    assert "Traceback" not in res.stderr
    missing = florc(["record", "nope.py"], tmp_path)
    assert missing.returncode == 2 and "nope.py: no such file" in missing.stderr


def test_script_failure_keeps_status_and_checkpoints(tmp_path: Path) -> None:
    make(
        tmp_path,
        SCRIPT.replace(
            '    print(f"epoch',
            '    if epoch == 3:\n        raise SystemExit(3)\n    print(f"epoch',
        ),
    )
    res = florc(["record", "--checkpoint-all", "train.py"], tmp_path)
    assert res.returncode == 3
    runs = json.loads(florc(["runs", "--format", "json"], tmp_path).stdout)
    assert runs[-1]["status"] == "failed" and runs[-1]["checkpoints"] > 0


def test_script_arguments_do_not_collide_with_florc_options(tmp_path: Path) -> None:
    make(tmp_path, "import sys\nprint(sys.argv[1:])\n")
    res = florc(["record", "train.py", "--epochs", "3", "--run", "x"], tmp_path)
    assert res.returncode == 0 and res.stdout.strip() == "['--epochs', '3', '--run', 'x']"
    res = florc(["record", "train.py", "--", "--epochs", "3"], tmp_path)
    assert res.stdout.strip() == "['--epochs', '3']"


@pytest.mark.smoke
def test_logs_and_runs_tables(tmp_path: Path) -> None:
    make(tmp_path)
    florc(["record", "train.py"], tmp_path)
    runs = florc(["runs"], tmp_path)
    assert runs.returncode == 0 and "train.py" in runs.stdout and "done" in runs.stdout
    rows = json.loads(florc(["logs", "1", "--format", "json", "--long"], tmp_path).stdout)
    values = [r["value"] for r in rows if r["epoch"] == 3]
    assert len(values) == 1 and values[0].startswith("epoch 3 w ")
    csv = florc(["logs", "--format", "csv", "--long"], tmp_path)
    assert csv.stdout.splitlines()[0].startswith("run,kind,statement")
    wide = florc(["logs", "--format", "csv"], tmp_path).stdout.splitlines()
    assert wide[0] == "run,source,epoch,iteration,step,w,final"  # epoch printed = epoch column
    assert wide[3].startswith("1,record,3,2,,") and float(wide[3].split(",")[-2]) == float(
        values[0].split()[-1]
    )


@pytest.mark.parametrize("policy", [[], ["--checkpoint-all"]], ids=["budget", "all"])
def test_replay_never_overwrites_recorded_files(tmp_path: Path, policy: list[str]) -> None:
    text = SCRIPT.replace(
        '    print(f"epoch', '    open("state.txt", "w").write(str(epoch))\n    print(f"epoch'
    )
    make(tmp_path, text)
    florc(["record", *policy, "train.py"], tmp_path)
    assert (tmp_path / "state.txt").read_text() == "5"
    (tmp_path / "train.py").write_text(
        text.replace('print("final"', 'print("HINDSIGHT", open("state.txt").read())\nprint("final"')
    )
    rep = florc(["replay", "train.py", "--epochs", "2"], tmp_path)
    assert rep.returncode == 0, rep.stderr
    assert (tmp_path / "state.txt").read_text() == "5"
    assert rep.stdout.strip() == "HINDSIGHT 5"


def test_dataframe_and_private_store(tmp_path: Path) -> None:
    make(tmp_path)
    florc(["record", "train.py"], tmp_path)
    assert (tmp_path / ".florc").stat().st_mode & 0o777 == 0o700
    code = (
        "import florc; df = florc.dataframe(run=1, root='.', long=True);"
        " print(len(df), sorted(set(df['kind'])), df[df.epoch == '3'].value.tolist());"
        " w = florc.dataframe(root='.', name='w');"
        " print(list(w.columns), len(w), w[w.epoch == 3].w.tolist() == [float("
        "df[df.epoch == '3'].value.tolist()[0].split()[-1])])"
    )
    import sys

    from helpers import run

    out = run([sys.executable, "-c", code], tmp_path)
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.strip().splitlines()
    assert first.startswith("6 ['record'] ['epoch 3 w ")
    assert second == "['run', 'source', 'epoch', 'iteration', 'step', 'w'] 5 True"


def test_report_names_blocks_that_re_execute(tmp_path: Path) -> None:
    make(
        tmp_path,
        SCRIPT.replace(
            "        weights = step(weights, random.random())\n",
            "        weights = step(weights, random.random())\n        exec('pass')\n",
        ),
    )
    rep = florc(["instrument", "--report", "train.py"], tmp_path)
    assert rep.returncode == 0
    assert "main loop: train.py:13" in rep.stdout
    assert "re-executes at replay:" in rep.stdout and "train.py:16:9: `exec()`" in rep.stdout


def test_record_warns_about_nondeterminism_it_can_see(tmp_path: Path) -> None:
    make(
        tmp_path,
        "import os\nfrom uuid import uuid4\n"
        + SCRIPT.replace(
            "        weights = step(weights, random.random())\n",
            "        weights = step(weights, random.random() + os.urandom(1)[0] * 0)\n",
        ),
    )
    res = florc(["record", "train.py"], tmp_path)
    assert res.returncode == 0, res.stderr
    warning = next(ln for ln in res.stderr.splitlines() if "warning:" in ln)
    assert "train.py:17:" in warning and "os.urandom()" in warning
    assert res.stderr.index("warning:") < res.stderr.index(" done — ")


def test_record_deterministic_switches_torch_to_deterministic_mode(tmp_path: Path) -> None:
    make(
        tmp_path,
        "import torch\nprint('deterministic', torch.are_deterministic_algorithms_enabled())\n",
    )
    res = florc(["record", "--deterministic", "train.py"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "deterministic True"
    assert florc(["record", "train.py"], tmp_path).stdout.strip() == "deterministic False"


KERAS = """\
import keras
import numpy as np

x = np.random.rand(8, 4)
model = keras.Sequential([keras.layers.Dense(1)])
model.compile(loss="mse")
model.fit(x, x[:, :1], epochs=3)
"""


def test_training_inside_a_framework_is_named_by_record_replay_and_report(
    tmp_path: Path,
) -> None:
    project = make(tmp_path, KERAS)
    where = "train.py:7:1"
    report = florc(["instrument", "--report", "train.py"], project)
    assert report.returncode == 0, report.stderr
    first, hint = report.stdout.splitlines()[:2]
    assert first == (
        "main loop: none — the training loop is inside Keras: "
        f"model.fit(x, x[:, :1], epochs=3) at {where}; "
        "florc cannot checkpoint a loop inside an installed package yet"
    )
    assert "Record runs the script unchanged" in hint and "# florc: main-loop" in hint

    # keras is not installed here: the script fails as a plain run does, and
    # florc says which package is missing and what a recording of this script can do
    plain = python("train.py", project)
    rec = florc(["record", "train.py"], project)
    assert rec.returncode == plain.returncode == 1
    assert "ModuleNotFoundError: No module named 'keras'" in plain.stderr
    assert plain.stderr.strip().splitlines()[-1] in rec.stderr
    assert (
        f"florc: {where}: the training loop runs inside Keras "
        "(`model.fit(x, x[:, :1], epochs=3)`); "
        "florc cannot checkpoint a loop inside an installed package yet." in rec.stderr
    )
    assert f"nothing to replay: the training loop is inside Keras ({where})" in (rec.stderr)
    assert "keras is not installed in the Python florc runs with" in rec.stderr
    assert "0 main-loop iterations" not in rec.stderr

    rep = florc(["replay", "train.py", "--epochs", "last"], project)
    assert rep.returncode == 2
    assert rep.stderr.startswith(
        f"florc: run 1 has no main-loop iterations to replay. {where}: the training loop runs "
        "inside Keras"
    )
    assert "run the edited script again" in rep.stderr and "Traceback" not in rep.stderr


def test_a_script_without_a_main_loop_says_why_at_record_and_replay(tmp_path: Path) -> None:
    project = make(tmp_path, "total = 0\nfor i in range(3):\n    total += i\nprint(total)\n")
    rec = florc(["record", "train.py"], project)
    assert rec.returncode == 0 and rec.stdout == "3\n"
    assert "run 1 done — nothing to replay: no main loop" in rec.stderr
    rep = florc(["replay", "train.py", "--epochs", "last"], project)
    assert rep.returncode == 2
    assert (
        "run 1 has no main-loop iterations to replay. train.py: no main loop: no loop reaches"
        in (rep.stderr)
    )


def test_a_warning_shown_once_per_process_is_not_compared_as_output(tmp_path: Path) -> None:
    # the script's own print calls code that warns once: at record the warning comes with the
    # first epoch's line, at a replay from a checkpoint with the first epoch it replays
    text = SCRIPT.replace(
        "def step(w, x):",
        "def rounded(v):\n"
        "    import warnings\n"
        '    warnings.warn("rounded() is deprecated", DeprecationWarning, stacklevel=1)\n'
        "    return round(v, 6)\n\n\n"
        "def step(w, x):",
    ).replace(
        'print(f"epoch {epoch} w {weights[0]:.6f}")', 'print("epoch", epoch, rounded(weights[0]))'
    )
    make(tmp_path, "import warnings\nwarnings.simplefilter('default')\n" + text)
    rec = florc(["record", "--checkpoint-all", "train.py"], tmp_path)
    assert rec.returncode == 0, rec.stderr
    assert "rounded() is deprecated" in rec.stderr
    edited = (
        (tmp_path / "train.py")
        .read_text()
        .replace(
            "    history.append(sum(weights))\n",
            "    history.append(sum(weights))\n    print(f'HINDSIGHT e={epoch} h={history[-1]:.6f}')\n",
        )
    )
    (tmp_path / "train.py").write_text(edited)
    rep = florc(["replay", "train.py", "--epochs", "4-5"], tmp_path)
    assert rep.returncode == 0, rep.stderr
    assert [ln[:13] for ln in rep.stdout.splitlines()] == ["HINDSIGHT e=4", "HINDSIGHT e=5"]
    assert "fidelity: exact" in rep.stderr, rep.stderr


def test_an_elif_of_log_statements_stays_part_of_its_if(tmp_path: Path) -> None:
    # `if ...: <training code> elif ...: print(...)`: the print must not run when the `if`
    # branch was taken
    text = SCRIPT.replace(
        "    history.append(sum(weights))\n",
        "    if epoch % 2 == 0:\n"
        "        history.append(sum(weights))\n"
        "    elif epoch > 1:\n"
        '        print("odd epoch", epoch)\n',
    )
    make(tmp_path, text)
    rec = florc(["record", "train.py"], tmp_path)
    assert rec.returncode == 0, rec.stderr
    assert rec.stdout == python("train.py", tmp_path).stdout
    assert "odd epoch 3" in rec.stdout and "odd epoch 2" not in rec.stdout
