"""MLflow: one MLflow run per florc run, in an experiment named after the script, in the
tracking store the user names (default: a SQLite file beside florc's other exports).

Metrics are the series of runs.py (NAME recorded, `replay/NAME` replayed; a character MLflow
does not allow in a name becomes `_`) with their x as the metric's step, written with
`MlflowClient.log_batch` (at most 1000 metrics a call). The run's arguments are its params.
Tags: `florc.run` (the run's id, by which a later export finds the MLflow run again),
`florc.key` (the run's stable key, telling it from a run of the same id in another project),
`florc.source` (record, replay, or record,replay: what its metrics hold), `florc.replays`, and
the git commit and script as MLflow's own `mlflow.source.*` tags. A (metric, step) the MLflow
run already has is not logged again.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from florc.export import ExportResult
from florc.export.runs import RunValues, missing_extra

BATCH = 1000  # MLflow's limit on the entities of one log_batch call
MAX_PARAMS, MAX_TAGS = 100, 100
MAX_PARAM_VALUE = 6000


_NOT_IN_A_NAME = re.compile(r"[^/\w.\- :]")


def metric_key(series: str) -> str:
    """The MLflow metric of a series: MLflow allows letters, digits, `_ - . / :` and spaces in
    a name, anything else becomes `_` (`top@1` -> top_1)."""
    return _NOT_IN_A_NAME.sub("_", series)


def default_uri(folder: Path) -> str:
    return f"sqlite:///{(folder / 'mlflow.db').resolve()}"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """MLflow and alembic say INFO lines when they create a store's tables, and SQLAlchemy warns
    of what MLflow uses: keep them out of florc's output."""
    loggers = [logging.getLogger(n) for n in ("mlflow", "alembic")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def export(runs: list[RunValues], tracking_uri: str, artifacts: Path | None = None) -> ExportResult:
    try:
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise missing_extra("MLflow", "mlflow") from None
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    result = ExportResult(
        "mlflow",
        tracking_uri,
        f"mlflow ui --backend-store-uri {tracking_uri}",
        [r.run for r in runs],
    )
    with _quiet():
        client = MlflowClient(tracking_uri=tracking_uri)
        experiments: dict[str, str] = {}
        for rv in runs:
            if rv.script not in experiments:
                experiments[rv.script] = _experiment(client, rv.script, artifacts)
            run_id, existing_params = _run(client, experiments[rv.script], rv)
            have: set[tuple[str, int]] = set()
            for key in {metric_key(p.series) for p in rv.points}:
                have |= {(key, m.step) for m in client.get_metric_history(run_id, key)}
            metrics = [
                Metric(metric_key(p.series), p.value, int(p.wall_time * 1000), p.x)
                for p in rv.points
                if (metric_key(p.series), p.x) not in have
            ]
            params = [
                Param(k, v[:MAX_PARAM_VALUE])
                for k, v in rv.params.items()
                if k not in existing_params
            ]
            tags = [RunTag(k, v) for k, v in _tags(rv).items()]
            for i in range(0, len(metrics), BATCH):
                client.log_batch(run_id, metrics=metrics[i : i + BATCH])
            for i in range(0, len(params), MAX_PARAMS):
                client.log_batch(run_id, params=params[i : i + MAX_PARAMS])
            for i in range(0, len(tags), MAX_TAGS):
                client.log_batch(run_id, tags=tags[i : i + MAX_TAGS])
            result.written += len(metrics)
            result.skipped += len(rv.points) - len(metrics)
            if metrics or params:
                result.updated.append(rv.run)
    return result


def _experiment(client: Any, script: str, artifacts: Path | None) -> str:
    found = client.get_experiment_by_name(script)
    if found is not None:
        return str(found.experiment_id)
    location = (artifacts / script).resolve().as_uri() if artifacts is not None else None
    return str(client.create_experiment(script, artifact_location=location))


def _run(client: Any, experiment: str, rv: RunValues) -> tuple[str, dict[str, str]]:
    """The MLflow run of rv (made when there is none yet) and the params it has."""
    found = client.search_runs(
        [experiment], filter_string=f"tags.`florc.run` = '{rv.run}'", max_results=100
    )
    for run in found:
        if run.data.tags.get("florc.key") == rv.key:
            return str(run.info.run_id), dict(run.data.params)
    run = client.create_run(
        experiment,
        start_time=int(rv.started * 1000),
        tags={"florc.run": str(rv.run), "florc.key": rv.key},
        run_name=f"run-{rv.run}",
    )
    client.set_terminated(run.info.run_id, "FINISHED")
    return str(run.info.run_id), {}


def _tags(rv: RunValues) -> dict[str, str]:
    tags = {
        "florc.run": str(rv.run),
        "florc.key": rv.key,
        "florc.source": ",".join(rv.sources) or "record",
        "florc.replays": ",".join(map(str, rv.replays)),
        "florc.args": " ".join(f"{k}={v}" for k, v in rv.shown.items()),
        "mlflow.source.name": rv.script,
        "mlflow.source.type": "LOCAL",
        "mlflow.note.content": f"florc {rv.label}: recorded and replayed values of {rv.script}",
    }
    if rv.commit:
        tags["mlflow.source.git.commit"] = rv.commit
        tags["florc.commit"] = rv.commit[:8] + ("+dirty" if rv.dirty else "")
    return tags
