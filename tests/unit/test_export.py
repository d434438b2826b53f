"""Export and plot against the real libraries: what TensorBoard, MLflow and W&B read back from
what `florc export` wrote, the plot's PNG, and the message when an extra is missing.

The store is built by hand: two recorded runs (lr 0.1 and 0.3) of three epochs numbered 1..3,
each with an epoch-level print, a writer's add_scalar on its own global step and a print after
the loop; a replay of each with a new epoch-level statement, and of run 1 a batch-level one.
"""

from __future__ import annotations

import builtins
import json
from pathlib import Path
from typing import Any

import pytest
from trackers import (
    PNG_SIGNATURE,
    tb_file_scalars,
    tb_files,
    tb_scalars,
    wandb_points,
    wandb_run,
)

from florc import api
from florc.errors import FlorcError, UsageError
from florc.export.runs import EPOCH, STEP, gather
from florc.store.index import Store

EPOCHS = (1, 2, 3)
STEPS = 4  # the batch loop's steps per epoch
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def loss(run: int, epoch: int) -> float:
    return round(1.0 / (epoch + run), 4)


def weight_norm(run: int, epoch: int) -> float:
    return round(10.0 * run + epoch / 10, 4)


def gnorm(epoch: int, step: int) -> float:
    return round(0.01 * (epoch * STEPS + step), 4)


def _rows(run: int, replay: bool, epochs: tuple[int, ...], batch: bool = False) -> list[Any]:
    rows: list[Any] = []
    for e in epochs:
        it, ep = e - 1, json.dumps(e)
        if not replay:
            rows.append(
                ("train.py:9", it, ep, None, "print(...)", f"epoch {e} loss {loss(run, e)}", 0)
            )
            rows.append(
                (
                    "train.py:10",
                    it,
                    ep,
                    e * 100,
                    'writer.add_scalar("train/acc", acc, step)',
                    f"train/acc={0.5 + e / 10 + run}",
                    0,
                )
            )
        else:
            if batch:
                for s in range(STEPS):
                    rows.append(("train.py:8", it, ep, s, "print(...)", f"gnorm {gnorm(e, s)}", 1))
            rows.append(
                ("train.py:11", it, ep, None, "print(...)", f"weight_norm {weight_norm(run, e)}", 1)
            )
    if not replay:
        rows.append(
            ("train.py:12", None, "null", None, "print(...)", f"test acc {0.9 + run / 100}", 0)
        )
    return rows


def make_store(root: Path) -> Path:
    with Store(root, root / ".florc") as store:
        for run, lr in ((1, "0.1"), (2, "0.3")):
            env = {
                "params": {"lr": lr, "epochs": "3"},
                "params_set": ["lr"],
                "git_commit": COMMIT,
                "git_dirty": run == 2,
            }
            rid = store.create_run("record", "train.py", ["--lr", lr], env)
            assert rid == run
            for e in EPOCHS:
                store.add_iteration(rid, e - 1, e)
            store.add_logs(rid, _rows(run, False, EPOCHS))
            store.finish_run(rid, "done", 0)
        r3 = store.create_run("replay", "train.py", [], {}, parent=1)
        store.add_logs(r3, _rows(1, True, EPOCHS, batch=True))
        r4 = store.create_run("replay", "train.py", [], {}, parent=2)
        store.add_logs(r4, _rows(2, True, (1, 2)))
    return root


def add_replay(root: Path) -> int:
    """A later replay of run 2: the third epoch's weight_norm, and the first two again."""
    with Store(root, root / ".florc") as store:
        rid = store.create_run("replay", "train.py", [], {}, parent=2)
        store.add_logs(rid, _rows(2, True, EPOCHS))
    return rid


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_store(tmp_path / "project")


def expected(run: int, epochs: tuple[int, ...] = EPOCHS) -> dict[tuple[str, int], float]:
    """(series, x) -> value that every exporter writes for a run."""
    out: dict[tuple[str, int], float] = {}
    for e in EPOCHS:
        out[("loss", e)] = loss(run, e)
        out[("train/acc", e * 100)] = 0.5 + e / 10 + run
    out[("test_acc", 4)] = 0.9 + run / 100  # after the loop: one past the last epoch
    for e in epochs:
        out[("replay/weight_norm", e)] = weight_norm(run, e)
        if run == 1:
            for s in range(STEPS):
                out[("replay/gnorm", (e - 1) * STEPS + s)] = gnorm(e, s)
    return out


ALL = len(expected(1)) + len(expected(2, (1, 2)))  # what a first export writes


def test_points_lie_on_the_epoch_or_the_step_axis(project: Path) -> None:
    with Store(project, project / ".florc", readonly=True) as store:
        runs = gather(store, [1, 2])
    one, two = runs
    assert {(p.series, p.x): p.value for p in one.points} == pytest.approx(expected(1))
    assert {(p.series, p.x): p.value for p in two.points} == pytest.approx(expected(2, (1, 2)))
    axes = {p.series: p.axis for p in one.points}
    assert axes == {
        "loss": EPOCH,
        "test_acc": EPOCH,
        "train/acc": STEP,
        "replay/weight_norm": EPOCH,
        "replay/gnorm": STEP,
    }
    assert "epoch" not in {p.name for p in one.points}  # `epoch 3` in epoch 3: the axis itself
    assert one.params == {"lr": "0.1", "epochs": "3"} and one.shown == {"lr": "0.1"}
    assert one.sources == ["record", "replay"] and one.replays == [3]
    assert (one.commit, one.dirty, two.dirty) == (COMMIT, False, True)
    assert one.key != two.key and one.key.startswith("florc-1-")
    # a series's points ascend
    for rv in runs:
        for series in {p.series for p in rv.points}:
            xs = [p.x for p in rv.points if p.series == series]
            assert xs == sorted(xs) and len(xs) == len(set(xs))


def test_epoch_axis_is_the_index_when_the_loop_is_not_ascending_integers(tmp_path: Path) -> None:
    with Store(tmp_path, tmp_path / ".florc") as store:
        rid = store.create_run("record", "train.py", [], {})
        for i, value in enumerate(["a", "b"]):
            store.add_iteration(rid, i, value)
            store.add_logs(
                rid, [("train.py:3", i, json.dumps(value), None, "print", f"loss {i}.5", 0)]
            )
        (rv,) = gather(store, [rid])
    assert [(p.x, p.value) for p in rv.points] == [(0, 0.5), (1, 1.5)]


def test_tensorboard_event_files_read_back_new_file_per_export(project: Path) -> None:
    out = project / "tb"
    first = api.export(project, "tensorboard", out=out)
    assert (first.runs, first.written, first.skipped) == ([1, 2], ALL, 0)
    for run, epochs in ((1, EPOCHS), (2, (1, 2))):
        folder = out / f"run-{run}"
        assert len(tb_files(folder)) == 1
        got = tb_scalars(folder)
        want = expected(run, epochs)
        assert set(got) == set(want)
        for key, value in want.items():
            assert got[key] == pytest.approx(value, rel=1e-6), key  # event files hold float32
        steps = [step for _, step, _ in tb_file_scalars(tb_files(folder)[0])]
        assert steps == sorted(steps)  # steps ascend within a file
    # nothing new: no file written
    again = api.export(project, "tensorboard", out=out)
    assert (again.written, again.skipped, again.updated) == (0, ALL, [])
    assert [len(tb_files(out / f"run-{r}")) for r in (1, 2)] == [1, 1]
    # a later replay: a new file holding only what is new, the old one untouched
    old = tb_files(out / "run-2")[0]
    before = old.read_bytes()
    add_replay(project)
    third = api.export(project, "tensorboard", out=out)
    assert (third.written, third.updated) == (1, [2])
    files = tb_files(out / "run-2")
    assert len(files) == 2 and old.read_bytes() == before
    (new,) = [f for f in files if f != old]
    assert tb_file_scalars(new) == [("replay/weight_norm", 3, pytest.approx(weight_norm(2, 3)))]
    assert set(tb_scalars(out / "run-2")) == set(expected(2))


def test_tensorboard_hparams_hold_the_runs_arguments(project: Path) -> None:
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import plugin_data_pb2

    api.export(project, "tensorboard", out=project / "tb")
    (path,) = tb_files(project / "tb" / "run-1")
    infos = []
    for event in EventFileLoader(str(path)).Load():
        for value in event.summary.value:
            if value.tag == "_hparams_/session_start_info":
                data = plugin_data_pb2.HParamsPluginData.FromString(
                    value.metadata.plugin_data.content
                )
                infos.append(
                    {k: v.string_value for k, v in data.session_start_info.hparams.items()}
                )
    assert infos == [{"lr": "0.1", "epochs": "3"}]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # SQLAlchemy, of MLflow
def test_mlflow_sqlite_store_read_back_and_reexport_adds_no_points(project: Path) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{project / 'ml' / 'mlflow.db'}"
    first = api.export(project, "mlflow", tracking_uri=uri, out=project / "ml")
    assert (first.written, first.location) == (ALL, uri)
    assert first.open_command == f"mlflow ui --backend-store-uri {uri}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("train.py")
    assert experiment is not None
    mlflow.set_tracking_uri(uri)
    try:
        frame = mlflow.search_runs([experiment.experiment_id], order_by=["tags.`florc.run` ASC"])
    finally:
        mlflow.set_tracking_uri(None)
    assert list(frame["tags.florc.run"]) == ["1", "2"]
    assert list(frame["params.lr"]) == ["0.1", "0.3"]
    assert list(frame["tags.florc.source"]) == ["record,replay", "record,replay"]
    assert list(frame["tags.mlflow.source.git.commit"]) == [COMMIT, COMMIT]
    assert list(frame["tags.florc.commit"]) == ["01234567", "01234567+dirty"]
    ids = dict(zip(frame["tags.florc.run"], frame["run_id"]))

    def history(run: int) -> dict[tuple[str, int], float]:
        out: dict[tuple[str, int], float] = {}
        metrics = client.get_run(ids[str(run)]).data.metrics
        for key in metrics:
            for m in client.get_metric_history(ids[str(run)], key):
                assert (key, m.step) not in out, f"{key} step {m.step} logged twice"
                out[(key, m.step)] = m.value
        return out

    assert history(1) == pytest.approx(expected(1))
    assert history(2) == pytest.approx(expected(2, (1, 2)))
    again = api.export(project, "mlflow", tracking_uri=uri)
    assert (again.written, again.skipped) == (0, ALL)
    add_replay(project)
    third = api.export(project, "mlflow", tracking_uri=uri)
    assert (third.written, third.updated) == (1, [2])
    assert history(2) == pytest.approx(expected(2))  # the new point, none twice
    assert len(client.search_runs([experiment.experiment_id])) == 2


def test_mlflow_metric_keys_are_names_mlflow_allows() -> None:
    from florc.export.mlflow import metric_key

    assert metric_key("replay/val loss:top-1.x") == "replay/val loss:top-1.x"
    assert metric_key("acc@1(train)") == "acc_1_train_"


def test_wandb_offline_run_holds_the_values_and_reexport_replaces_it(project: Path) -> None:
    out = project / "wb"
    first = api.export(project, "wandb", out=out)
    assert first.written == ALL and first.location == str(out / "wandb")
    folders = sorted((out / "wandb").glob("offline-run-*"))
    assert len(folders) == 2
    runs = {wandb_run(f)["config"]["florc_run"]: f for f in folders}
    assert set(runs) == {1, 2}
    one = wandb_run(runs[1])
    assert one["name"] == "run-1" and one["id"].startswith("florc-1-")
    assert one["config"]["lr"] == "0.1" and one["config"]["florc_commit"] == COMMIT
    assert one["metrics"]["loss"] == "florc_epoch"
    assert one["metrics"]["replay/gnorm"] == "florc_step"
    assert wandb_points(runs[1]) == pytest.approx(expected(1))
    assert wandb_points(runs[2]) == pytest.approx(expected(2, (1, 2)))
    # nothing changed: nothing written, the same folders
    again = api.export(project, "wandb", out=out)
    assert (again.written, again.skipped) == (0, ALL)
    assert sorted((out / "wandb").glob("offline-run-*")) == folders
    # a later replay: run 2's folder replaced by one holding all its values, same id
    two_id = wandb_run(runs[2])["id"]
    assert two_id.startswith("florc-2-")
    add_replay(project)
    third = api.export(project, "wandb", out=out)
    assert third.updated == [2]
    now = sorted((out / "wandb").glob("offline-run-*"))
    assert len(now) == 2 and runs[1] in now and runs[2] not in now
    (two,) = [f for f in now if f != runs[1]]
    assert wandb_run(two)["id"] == two_id
    assert wandb_points(two) == pytest.approx(expected(2))


def test_plot_writes_a_png_and_names_what_there_is(project: Path) -> None:
    out = project / "plots" / "weight_norm.png"
    result = api.plot(project, "weight_norm", out)
    assert (result.runs, result.axis, result.points, result.sources) == (
        [1, 2],
        EPOCH,
        5,
        ["replay"],
    )
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000
    mixed = api.plot(project, "loss", project / "loss.png", spec="2")
    assert (mixed.runs, mixed.points, mixed.sources) == ([2], 3, ["record"])
    steps = api.plot(project, "gnorm", project / "gnorm.png")
    assert (steps.axis, steps.runs, steps.points) == (STEP, [1], 12)
    with pytest.raises(UsageError) as err:
        api.plot(project, "val_loss", project / "x.png")
    assert str(err.value) == (
        "no values named 'val_loss' in runs 1, 2 (names there: gnorm, loss, test_acc, "
        "train/acc, weight_norm); `florc logs --format csv` shows them"
    )
    assert not (project / "x.png").exists()


def test_plot_legend_names_the_arguments_that_differ(project: Path) -> None:
    from florc.export.plot import _labels

    with Store(project, project / ".florc", readonly=True) as store:
        runs = gather(store, [1, 2])
    assert _labels(runs) == {1: "run 1 (lr=0.1)", 2: "run 2 (lr=0.3)"}
    assert _labels(runs[:1]) == {1: "run 1 (lr=0.1)"}


def test_runs_are_chosen_like_everywhere_else(project: Path) -> None:
    only = api.export(project, "tensorboard", spec="2", out=project / "tb")
    assert only.runs == [2] and not (project / "tb" / "run-1").exists()
    where = api.export(project, "tensorboard", where=["lr=0.1"], out=project / "tb2")
    assert where.runs == [1]
    with pytest.raises(UsageError, match=r"no recorded run matches --where lr=5"):
        api.export(project, "tensorboard", where=["lr=5"], out=project / "tb3")
    with pytest.raises(UsageError, match=r"--runs 7: 7 not a recorded run"):
        api.plot(project, "loss", project / "p.png", spec="7")
    with pytest.raises(UsageError, match=r"--to csv: give one of tensorboard, mlflow, wandb"):
        api.export(project, "csv")
    with pytest.raises(UsageError, match=r"--tracking-uri is for --to mlflow"):
        api.export(project, "wandb", tracking_uri="sqlite:///x.db")
    empty = project.parent / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match=r"no recorded run in .*; run `florc record` first"):
        api.export(empty, "tensorboard")


def test_default_locations_are_under_the_store(project: Path) -> None:
    result = api.export(project, "tensorboard")
    assert result.location == str(project / ".florc" / "export" / "tensorboard")
    assert result.open_command == f"tensorboard --logdir {result.location}"
    assert (project / ".florc" / "export" / "tensorboard" / "run-1").is_dir()


@pytest.mark.parametrize(
    ("target", "module", "extra"),
    [
        ("tensorboard", "tensorboard", "tensorboard"),
        ("mlflow", "mlflow", "mlflow"),
        ("wandb", "wandb", "wandb"),
        ("plot", "matplotlib", "plot"),
    ],
)
def test_a_missing_extra_says_what_to_install(
    project: Path, monkeypatch: pytest.MonkeyPatch, target: str, module: str, extra: str
) -> None:
    real_import = builtins.__import__

    def no_such_module(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == module or name.startswith(module + "."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_such_module)
    with pytest.raises(FlorcError) as err:
        if target == "plot":
            api.plot(project, "loss", project / "p.png")
        else:
            api.export(project, target, out=project / "x")
    assert f"pip install 'florc[{extra}]'" in str(err.value)
