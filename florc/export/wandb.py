"""W&B: one offline run folder per florc run (`wandb/offline-run-*-florc-3-1a2b3c4d/` under the
output folder, as W&B's own `dir` setting puts it), which `wandb sync` uploads.

Each W&B run holds all the values of its florc run: the series of runs.py (NAME recorded,
`replay/NAME` replayed) on a custom x axis, `florc_epoch` or `florc_step`
(`define_metric(series, step_metric=...)`), so values of past epochs are allowed whatever
order they come in. Its id is the florc run's stable key: syncing a later export replaces the
W&B run of an earlier one instead of adding a second. An export writes a new folder only for a
run whose values or arguments changed since the last one, and removes that run's earlier folder
(`wandb/florc-export.json` says which folder holds which run). The config is the
run's arguments, with `florc_run` and `florc_commit`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from florc.export import ExportResult
from florc.export.runs import EPOCH, RunValues, missing_extra

MANIFEST = "florc-export.json"
AXES = {EPOCH: "florc_epoch", "step": "florc_step"}
QUIET_ENV = {
    "WANDB_SILENT": "true",
    "WANDB_MODE": "offline",
    "WANDB_CONSOLE": "off",
    "WANDB_DISABLE_GIT": "true",
    "WANDB_DISABLE_CODE": "true",
    "WANDB_DISABLE_STATS": "true",
}


@contextlib.contextmanager
def _environment() -> Iterator[None]:
    old = {k: os.environ.get(k) for k in QUIET_ENV}
    os.environ.update(QUIET_ENV)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _service(wandb: Any) -> Iterator[None]:
    """W&B's service process writes a run's files after `finish` returns; ending the service
    waits for them, so every folder is whole when the export returns."""
    try:
        yield
    finally:
        wandb.teardown()


def project_name(script: str) -> str:
    """A W&B project for the script: `train.py` -> train, `src/train.py` -> src-train."""
    stem = script[: -len(".py")] if script.endswith(".py") else script
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-") or "florc"


def digest(rv: RunValues) -> str:
    """What a W&B run of rv holds, as a hash: an export whose digest is unchanged writes nothing."""
    h = hashlib.sha256(json.dumps([rv.params, rv.commit, rv.dirty], sort_keys=True).encode())
    for p in rv.points:
        h.update(f"{p.series}\0{p.axis}\0{p.x}\0{p.value!r}\n".encode())
    return h.hexdigest()


def export(runs: list[RunValues], out: Path) -> ExportResult:
    try:
        import wandb
    except ImportError:
        raise missing_extra("W&B", "wandb") from None
    runs_dir = out / "wandb"
    runs_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = runs_dir / MANIFEST
    manifest: dict[str, Any] = {}
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
    result = ExportResult(
        "wandb", str(runs_dir), f"wandb sync {runs_dir}/offline-run-*", [r.run for r in runs]
    )
    with _environment(), _service(wandb):
        for rv in runs:
            entry = manifest.get(rv.key, {})
            kept = entry.get("folder")
            current = digest(rv)
            if entry.get("digest") == current and kept and (runs_dir / kept).is_dir():
                result.skipped += len(rv.points)
                continue
            folder = _write(wandb, rv, out)
            if kept and kept != folder and (runs_dir / kept).is_dir():
                shutil.rmtree(runs_dir / kept)
            manifest[rv.key] = {"run": rv.run, "folder": folder, "digest": current}
            manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
            result.written += len(rv.points)
            result.updated.append(rv.run)
    return result


def _settings(wandb: Any) -> Any:
    return wandb.Settings(
        mode="offline",
        console="off",
        silent=True,
        x_disable_stats=True,
        x_disable_meta=True,
        disable_git=True,
        save_code=False,
        disable_job_creation=True,
    )


def _write(wandb: Any, rv: RunValues, out: Path) -> str:
    """Write rv as a W&B offline run under out/wandb/; the run folder's name."""
    config = {**rv.params, "florc_run": rv.run, "florc_commit": rv.commit}
    run = wandb.init(
        dir=str(out),
        project=project_name(rv.script),
        id=rv.key,
        name=f"run-{rv.run}",
        notes=f"florc {rv.label}: recorded and replayed values of {rv.script}",
        tags=["florc", *rv.sources],
        config=config,
        settings=_settings(wandb),
        reinit="create_new",
    )
    try:
        for axis in AXES.values():
            run.define_metric(axis, hidden=True)
        for series, axis in dict.fromkeys((p.series, p.axis) for p in rv.points):
            run.define_metric(series, step_metric=AXES[axis])
        rows: dict[tuple[str, int], dict[str, float]] = {}
        for p in rv.points:
            rows.setdefault((p.axis, p.x), {})[p.series] = p.value
        for (axis, x), row in sorted(rows.items(), key=lambda kv: (kv[0][0] != EPOCH, kv[0][1])):
            run.log({AXES[axis]: x, **row})
        folder = Path(run.dir).parent  # run.dir is the run folder's files/
    finally:
        run.finish()
    return folder.name
