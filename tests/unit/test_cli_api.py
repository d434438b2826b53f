"""The CLI in process (click's CliRunner) against the real API, on tiny numpy scripts: options,
exit codes from the results' kinds, messages without tracebacks, and the read-only store.

No interpreter is started per case: the scripts run inside the test process, as `florc record`
runs them inside its own. PYTHONHASHSEED is pinned so that record does not re-execute itself.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from florc import api
from florc.cli import cli

SCRIPT = """\
import numpy as np

rng = np.random.default_rng(0)
w = np.zeros(2)
for epoch in range(1, 6):
    for _ in range(3):
        w = w + 0.1 * (rng.normal(size=2) - w)
    print(f"epoch {epoch} w {w[0]:.6f}")
print("final", round(float(w.sum()), 6))
"""

HINDSIGHT = '    print(f"HINDSIGHT e={epoch} n={np.linalg.norm(w):.6f}")\n'

# a block that reads its input from a file: change the file and re-executing the block no
# longer gives the recorded end state
READS_A_FILE = """\
import numpy as np

w = np.zeros(2)
for epoch in range(4):
    for _ in range(3):
        scale = float(open("scale.txt").read())
        w = w + scale * 0.1
    print(f"epoch {epoch} w {w[0]:.6f}")
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    (tmp_path / "train.py").write_text(SCRIPT)
    return tmp_path


def florc(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def plain(text: str) -> list[str]:
    """What the script prints when run as `python train.py` (in process)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(text, "train.py", "exec"), {"__name__": "__main__"})
    return out.getvalue().splitlines()


def edit(project: Path, text: str = SCRIPT) -> list[str]:
    """Add the hindsight print after the epoch's print; the edited script's plain output."""
    anchor = '    print(f"epoch {epoch} w {w[0]:.6f}")\n'
    edited = text.replace(anchor, anchor + HINDSIGHT)
    (project / "train.py").write_text(edited)
    return [ln for ln in plain(edited) if ln.startswith("HINDSIGHT")]


def test_record_shows_the_scripts_output_and_replay_only_the_new_lines(project: Path) -> None:
    rec = florc("record", "--checkpoint-all", "train.py")
    assert rec.exit_code == 0, rec.stderr
    assert rec.stdout.splitlines() == plain(SCRIPT)
    assert all(ln.startswith("florc: ") for ln in rec.stderr.splitlines()), rec.stderr
    assert "main loop at train.py:5, 1 block under it" in rec.stderr  # not "1 blocks"
    assert "run 1 done — 5 main-loop iterations, " in rec.stderr

    want = edit(project)
    rep = florc("replay", "train.py", "--epochs", "2,4-5")
    assert rep.exit_code == 0, rep.stderr
    assert rep.stdout.splitlines() == [want[i] for i in (1, 3, 4)]
    notes = rep.stderr.splitlines()
    assert notes[0] == (
        "florc: run 1 · replay 2 · epochs 2,4–5 — epochs as the script counts them "
        "(the main loop's variable)"
    )
    assert notes[-1].startswith("florc: fidelity: exact (")


def test_the_api_returns_typed_results_and_says_everything_to_its_reporter(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    said = api.Recorded()
    rec = api.record("train.py", [], checkpoint_all=True, reporter=said)
    assert (rec.run_id, rec.exit_code) == (1, 0)
    assert any(n.startswith("run 1 done — 5 main-loop iterations") for n in said.notes)
    want = edit(project)
    said = api.Recorded()
    result = api.replay("train.py", "last", reporter=said)
    assert result.verdict.kind is api.VerdictKind.EXACT
    assert result.faithful and result.exit_code == 0
    # the boundary before the last epoch is restored; its block is restored or re-executed,
    # whichever the replay's measured restore speed says is faster (timing decides)
    assert result.stats.restored_boundaries == 1
    assert result.stats.restored_blocks + result.stats.reexecuted == 1
    assert said.notes[-1] == result.verdict.line
    assert "florc:" not in capsys.readouterr().err  # the API printed none of its own lines
    assert [r.value for r in api.logs(project, result.replay_id) if r.new] == [want[-1]]
    rows = api.runs(project)
    assert [(r.id, r.kind, r.parent, r.status) for r in rows] == [
        (1, "record", None, "done"),
        (2, "replay", 1, "done"),
    ]


def test_verify_exits_1_when_the_verdict_is_diverged(project: Path) -> None:
    (project / "train.py").write_text(READS_A_FILE)
    (project / "scale.txt").write_text("1.0")
    assert florc("record", "--checkpoint-all", "train.py").exit_code == 0
    same = florc("verify", "--sample", "2")
    assert same.exit_code == 0, same.stderr
    assert "florc: fidelity: exact" in same.stderr
    assert "florc: verify 2 done in " in same.stderr and "re-executed" in same.stderr

    (project / "scale.txt").write_text("2.0")  # the block's input changed since the recording
    changed = florc("verify", "1", "--sample", "2")
    assert changed.exit_code == 1, changed.stderr
    assert "florc: fidelity: diverged at train.py:5 epoch" in changed.stderr
    assert api.verify(project, 1, sample=1).verdict.kind is api.VerdictKind.DIVERGED


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["replay", "train.py"], "no recorded run of train.py in "),
        (["replay", "nope.py"], "nope.py: no such file. Give the path of the training script."),
        (["record", "--overhead", "2", "train.py"], "--overhead 2.0: give a fraction"),
        (["verify"], "no recorded run in "),
        (["gc", "7"], "unknown run 7; `florc runs` lists them"),
        (["logs", "7"], "unknown run 7; `florc runs` lists them"),
    ],
)
def test_mistakes_exit_2_with_a_message_and_no_traceback(
    project: Path, args: list[str], message: str
) -> None:
    res = florc(*args)
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("florc: ") and message in res.stderr
    assert "Traceback" not in res.stderr
    assert isinstance(res.exception, SystemExit)  # the CLI's exit, not an escaped error


def test_replay_options_are_checked_before_anything_runs(project: Path) -> None:
    assert florc("record", "train.py").exit_code == 0
    bad = florc("replay", "train.py", "--workers", "0")
    assert bad.exit_code == 2 and "--workers 0: give 1 or more" in bad.stderr
    bad = florc("replay", "train.py", "--threads", "0")
    assert bad.exit_code == 2 and "--threads 0: give 1 or more" in bad.stderr
    bad = florc("replay", "train.py", "--epochs", "7-9")
    assert bad.exit_code == 2 and "the recorded range is 1-5" in bad.stderr
    bad = florc("replay", "train.py", "--executor", "slurm")
    assert bad.exit_code == 2 and "'slurm' is not one of 'local', 'ray'" in bad.stderr
    assert [r.kind for r in api.runs(project)] == ["record"]  # no replay was started


def test_runs_and_logs_in_a_folder_without_a_store_create_nothing(project: Path) -> None:
    for args in (["runs"], ["logs"], ["runs", "--format", "json"], ["gc"]):
        res = florc(*args)
        assert res.exit_code == 0, res.output
    assert florc("runs").stdout == "(none)\n"
    assert json.loads(florc("logs", "--format", "json").stdout) == []
    assert not (project / ".florc").exists()


def test_tables_in_three_formats(project: Path) -> None:
    assert florc("record", "train.py").exit_code == 0
    table = florc("runs").stdout.splitlines()
    assert table[0].split() == [
        "id",
        "kind",
        "of",
        "script",
        "started",
        "epochs",
        "checkpoints",
        "size",
        "status",
        "commit",
        "args",
    ]
    assert table[1].split()[:3] == ["1", "record", "train.py"] and table[1].endswith("done")
    (row,) = json.loads(florc("runs", "--format", "json").stdout)
    assert (row["id"], row["of"], row["epochs"], row["status"]) == (1, "", 5, "done")
    assert row["size"].endswith(" MB")
    long = "--long"
    logs = json.loads(florc("logs", "1", "--name", "epoch 3", "--format", "json", long).stdout)
    assert [(r["epoch"], r["value"]) for r in logs] == [(3, plain(SCRIPT)[2])]
    csv = florc("logs", "--format", "csv", long).stdout.splitlines()
    assert csv[0] == "run,kind,statement,iteration,epoch,step,name,value,new"
    assert len(csv) == 1 + len(plain(SCRIPT))
    # the named values: one row per epoch (and one after the loop), a column per name
    wide = json.loads(florc("logs", "1", "--format", "json").stdout)
    printed = [line.split() for line in plain(SCRIPT)]
    assert [(r["epoch"], r["w"]) for r in wide[:5]] == [
        (e, float(p[3])) for e, p in zip(range(1, 6), printed)
    ]
    assert not any("logged_epoch" in r for r in wide)  # the printed epoch is the key column
    assert wide[5]["iteration"] is None and wide[5]["final"] == float(printed[5][1])
    csv = florc("logs", "--format", "csv", "--name", "w").stdout.splitlines()
    assert csv[0] == "run,source,epoch,iteration,step,w" and len(csv) == 1 + 5
    assert csv[1] == f"1,record,1,0,,{float(printed[0][3])}"


def test_gc_keeps_the_last_records_and_frees_their_blobs(project: Path) -> None:
    for _ in range(2):
        assert florc("record", "--checkpoint-all", "train.py").exit_code == 0
    res = florc("gc", "--keep-last", "1")
    assert res.exit_code == 0
    assert res.stdout.splitlines()[0] == "deleted runs 1"
    assert [r.id for r in api.runs(project)] == [2]
    bad = florc("gc", "--keep-last", "-1")
    assert bad.exit_code == 2 and "--keep-last -1: give a number of runs" in bad.stderr


def test_instrument_prints_code_or_report_and_wants_one_script(project: Path) -> None:
    code = florc("instrument", "train.py")
    assert code.exit_code == 0 and "__florc" in code.stdout
    report = florc("instrument", "--report", "train.py")
    assert report.exit_code == 0 and report.stdout.startswith("main loop: train.py:5")
    two = florc("instrument", "train.py", "train.py")
    assert two.exit_code == 2 and "give one SCRIPT" in two.output
