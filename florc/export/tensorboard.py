"""TensorBoard: one folder per florc run (`run-3/`) under the output folder, each export a new
event file in it.

Tags are the series of runs.py: NAME for a recorded value, `replay/NAME` for a replayed one
(TensorBoard shows these in a section of their own, every run's curve on one chart). Existing
files are never rewritten and a (tag, step) an earlier event file of that folder already holds
is not written again, so exporting after each replay adds only what is new. Within a file,
steps ascend. The run's arguments go into the first file as TensorBoard hparams (the HParams
tab lists each run with them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from florc.export import ExportResult
from florc.export.runs import Point, RunValues, missing_extra

FILE_SUFFIX = ".florc"


def _libraries() -> tuple[Any, Any, Any, Any]:
    try:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.plugins.hparams import summary_v2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except ImportError:
        raise missing_extra("TensorBoard", "tensorboard") from None
    return EventFileWriter, event_pb2, summary_pb2, summary_v2


def run_folder(out: Path, run: int) -> Path:
    return out / f"run-{run}"


def written(folder: Path) -> tuple[set[tuple[str, int]], bool]:
    """The (tag, step) scalars the event files in folder hold, and whether one holds hparams."""
    if not folder.is_dir():
        return set(), False
    try:
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    except ImportError:
        raise missing_extra("TensorBoard", "tensorboard") from None
    have: set[tuple[str, int]] = set()
    hparams = False
    for path in sorted(folder.glob("*tfevents*")):
        for event in EventFileLoader(str(path)).Load():
            if not event.HasField("summary"):
                continue
            for value in event.summary.value:
                if value.tag.startswith("_hparams_/"):
                    hparams = True
                else:
                    have.add((value.tag, int(event.step)))
    return have, hparams


def export(runs: list[RunValues], out: Path) -> ExportResult:
    EventFileWriter, event_pb2, summary_pb2, summary_v2 = _libraries()
    result = ExportResult(
        "tensorboard", str(out), f"tensorboard --logdir {out}", [r.run for r in runs]
    )
    for rv in runs:
        folder = run_folder(out, rv.run)
        have, has_hparams = written(folder)
        new = [p for p in rv.points if (p.series, p.x) not in have]
        result.skipped += len(rv.points) - len(new)
        if not new and (has_hparams or not rv.params):
            continue
        writer = EventFileWriter(str(folder), max_queue_size=1024, filename_suffix=FILE_SUFFIX)
        try:
            if not has_hparams and rv.params:
                summary = summary_v2.hparams_pb(
                    dict(rv.params), trial_id=rv.label, start_time_secs=rv.started
                )
                writer.add_event(event_pb2.Event(wall_time=rv.started, step=0, summary=summary))
            for p in _ascending(new):
                writer.add_event(_event(event_pb2, summary_pb2, p))
        finally:
            writer.close()
        result.written += len(new)
        result.updated.append(rv.run)
    return result


def _ascending(points: list[Point]) -> list[Point]:
    return sorted(points, key=lambda p: (p.x, p.series))


def _event(event_pb2: Any, summary_pb2: Any, p: Point) -> Any:
    value = summary_pb2.Summary.Value(tag=p.series, simple_value=p.value)
    return event_pb2.Event(
        wall_time=p.wall_time, step=p.x, summary=summary_pb2.Summary(value=[value])
    )
