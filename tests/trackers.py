"""Read back what `florc export` wrote, with each tracker's own library: TensorBoard's event
file loader, MLflow's client, W&B's record protos (a `.wandb` file is a LevelDB-style log of
`wandb_internal_pb2.Record` messages). Imported by both test tiers."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def tb_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("events.out.tfevents.*"))


def tb_file_scalars(path: Path) -> list[tuple[str, int, float]]:
    """(tag, step, value) of every scalar in one event file, in file order (hparams left out)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    out = []
    for event in EventFileLoader(str(path)).Load():  # simple_value migrated to a tensor
        if event.HasField("summary"):
            for value in event.summary.value:
                if value.tag.startswith("_hparams_/"):
                    continue
                if value.HasField("tensor"):
                    number = float(tensor_util.make_ndarray(value.tensor))
                else:
                    number = float(value.simple_value)
                out.append((value.tag, int(event.step), number))
    return out


def tb_scalars(folder: Path) -> dict[tuple[str, int], float]:
    """(tag, step) -> value of the scalars in a run folder, read with TensorBoard's
    EventAccumulator (what the dashboard reads)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    out: dict[tuple[str, int], float] = {}
    for tag in acc.Tags()["scalars"]:
        for event in acc.Scalars(tag):
            out[(tag, event.step)] = event.value
    return out


_BLOCK = 32768
_HEADER = 7  # ":W&B", magic 0xBEE1, version
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def wandb_records(run_folder: Path) -> list[Any]:
    """The records of a W&B offline run folder's `.wandb` file, parsed with wandb's protos."""
    from wandb.proto import wandb_internal_pb2

    (path,) = run_folder.glob("*.wandb")
    data = path.read_bytes()
    assert data[:4] == b":W&B", path
    raw: list[bytes] = []
    pos, pending = _HEADER, b""
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == _FULL:
            raw.append(chunk)
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            raw.append(pending + chunk)
    records = []
    for blob in raw:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(blob)
        records.append(record)
    return records


def wandb_run(run_folder: Path) -> dict[str, Any]:
    """A W&B offline run: its id, name, config, metric definitions (name -> step metric) and
    history rows (user keys only)."""
    out: dict[str, Any] = {"history": [], "metrics": {}, "config": {}}
    for record in wandb_records(run_folder):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["id"], out["name"] = record.run.run_id, record.run.display_name
            for item in record.run.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "config":  # a config sent after the run's start
            for item in record.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "metric":
            out["metrics"][record.metric.name] = record.metric.step_metric
        elif kind == "history":
            row = {}
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                if not key.startswith("_"):
                    row[key] = json.loads(item.value_json)
            out["history"].append(row)
    return out


def wandb_points(run_folder: Path) -> dict[tuple[str, int], float]:
    """(metric, x on its custom axis) -> value of a W&B offline run's history."""
    run = wandb_run(run_folder)
    out: dict[tuple[str, int], float] = {}
    for row in run["history"]:
        for key, value in row.items():
            axis = run["metrics"].get(key)
            if axis:
                out[(key, int(row[axis]))] = float(value)
    return out
