"""Export and plot end to end: two runs of a script recorded with different arguments, an
epoch-level and a batch-level print added and replayed across both (`replay --runs all`), then `florc export` to
TensorBoard, MLflow and W&B and `florc plot`; what each tracker reads back equals what a plain
run of the edited script prints.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import florc, python
from trackers import PNG_SIGNATURE, tb_files, tb_scalars, wandb_points, wandb_run

pytestmark = pytest.mark.e2e

SCRIPT = """\
import argparse

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.1)
args = parser.parse_args()
w = 1.0
for epoch in range(4):
    for i in range(3):
        w -= args.lr * (w - 0.5)
    print(f"epoch {epoch} loss {w:.5f}")
"""
BATCH = "        w -= args.lr * (w - 0.5)\n"
EPOCH = '    print(f"epoch {epoch} loss {w:.5f}")\n'
STEPS = 3
LRS = ("0.1", "0.3")


def edited() -> str:
    text = SCRIPT.replace(BATCH, BATCH + '        print(f"wsq {w * w:.6f}")\n')
    return text.replace(EPOCH, EPOCH + '    print(f"norm {abs(w):.5f}")\n')


def expected(stdout: str) -> dict[tuple[str, int], float]:
    """(series, x) -> value, from a plain run of the edited script: loss recorded, norm and wsq
    replayed (wsq at epoch * steps + step)."""
    out: dict[tuple[str, int], float] = {}
    epoch, step = 0, 0
    for line in stdout.splitlines():
        word, *rest = line.split()
        if word == "wsq":
            out[("replay/wsq", epoch * STEPS + step)] = float(rest[0])
            step += 1
        elif word == "epoch":
            out[("loss", int(rest[0]))] = float(rest[2])
        elif word == "norm":
            out[("replay/norm", epoch)] = float(rest[0])
            epoch, step = epoch + 1, 0
    return out


def record_and_replay(project: Path) -> dict[int, dict[tuple[str, int], float]]:
    """Record a run per learning rate, add the prints, replay them into every run (`--runs
    all`); what each run's exported values must be."""
    (project / "train.py").write_text(SCRIPT)
    for lr in LRS:
        rec = florc(["record", "train.py", "--lr", lr], project)
        assert rec.returncode == 0, rec.stderr
    (project / "train.py").write_text(edited())
    rep = florc(["replay", "train.py", "--runs", "all"], project)
    assert rep.returncode == 0, rep.stderr
    want = {}
    for run, lr in enumerate(LRS, start=1):
        plain = python("train.py", project, ["--lr", lr])
        assert plain.returncode == 0, plain.stderr
        want[run] = expected(plain.stdout)
        assert len(want[run]) == 4 + 4 + 4 * STEPS
    return want


@pytest.mark.smoke
def test_export_tensorboard_wandb_and_plot_equal_a_plain_run(tmp_path: Path) -> None:
    want = record_and_replay(tmp_path)
    tb = florc(["export", "--to", "tensorboard"], tmp_path)
    assert tb.returncode == 0, tb.stderr
    assert tb.lines == [
        "exported 40 values of 2 runs (1, 2) to .florc/export/tensorboard",
        "open it: tensorboard --logdir .florc/export/tensorboard",
    ]
    for run in (1, 2):
        got = tb_scalars(tmp_path / ".florc" / "export" / "tensorboard" / f"run-{run}")
        assert set(got) == set(want[run])
        for key, value in want[run].items():
            assert got[key] == pytest.approx(value, rel=1e-6), (run, key)

    wb = florc(["export", "all", "--to", "wandb", "--out", "wb"], tmp_path)
    assert wb.returncode == 0, wb.stderr
    assert wb.lines[-1] == "open it: wandb sync wb/wandb/offline-run-*"
    folders = sorted((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert len(folders) == 2
    for folder in folders:
        run = wandb_run(folder)
        lr = LRS[run["config"]["florc_run"] - 1]
        assert run["config"]["lr"] == lr
        assert wandb_points(folder) == pytest.approx(want[run["config"]["florc_run"]])

    plot = florc(["plot", "norm", "--out", "norm.png"], tmp_path)
    assert plot.returncode == 0, plot.stderr
    assert plot.lines == ["plotted 8 values of norm over epochs for 2 runs (1, 2) into norm.png"]
    data = (tmp_path / "norm.png").read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000
    missing = florc(["plot", "val_loss", "2"], tmp_path)
    assert missing.returncode == 2
    assert "no values named 'val_loss' in run 2 (names there: loss, norm, wsq)" in missing.stderr
    assert "Traceback" not in missing.stderr


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # SQLAlchemy, of MLflow
def test_export_mlflow_equals_a_plain_run_and_reexport_adds_nothing(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    want = record_and_replay(tmp_path)
    first = florc(["export", "--to", "mlflow", "--where", "lr=0.3"], tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.lines == [
        "exported 20 values of 1 run (2) to sqlite:///.florc/export/mlflow.db",
        "open it: mlflow ui --backend-store-uri sqlite:///.florc/export/mlflow.db",
    ]
    assert first.stderr == ""  # neither MLflow's nor alembic's INFO lines
    both = florc(["export", "--to", "mlflow"], tmp_path)
    assert both.returncode == 0, both.stderr
    assert both.lines[0] == (
        "exported 20 values of 2 runs (1, 2) to sqlite:///.florc/export/mlflow.db "
        "(20 already there)"
    )
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / '.florc' / 'export' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("train.py")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags["florc.run"] for r in runs) == ["1", "2"]
    for r in runs:
        run = int(r.data.tags["florc.run"])
        assert r.data.params["lr"] == LRS[run - 1]
        assert r.data.tags["florc.source"] == "record,replay"
        got = {
            (key, m.step): m.value
            for key in r.data.metrics
            for m in client.get_metric_history(r.info.run_id, key)
        }
        assert got == pytest.approx(want[run])
        assert sum(len(client.get_metric_history(r.info.run_id, k)) for k in r.data.metrics) == 20
    tb = florc(["export", "--to", "tensorboard", "--tracking-uri", "x"], tmp_path)
    assert tb.returncode == 2 and "--tracking-uri is for --to mlflow" in tb.stderr
    assert tb_files(tmp_path / ".florc" / "export" / "tensorboard" / "run-1") == []
