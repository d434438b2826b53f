"""Recorded and replayed values out of florc's store, into the tools people look at:
TensorBoard event files, an MLflow tracking store, W&B offline runs, a matplotlib picture.

`runs.py` gathers what every target writes (each chosen run's values as series on an epoch or
a step axis, its arguments and commit); `tensorboard.py`, `mlflow.py`, `wandb.py` and `plot.py`
write it, each importing its library only when called (an optional extra: florc[tensorboard],
florc[mlflow], florc[wandb], florc[plot]).
"""

from __future__ import annotations

from dataclasses import dataclass, field

TARGETS = ("tensorboard", "mlflow", "wandb")


@dataclass
class ExportResult:
    """What an export wrote."""

    target: str  # tensorboard | mlflow | wandb
    location: str  # the folder, or the tracking URI
    open_command: str  # how to look at it
    runs: list[int] = field(default_factory=list)  # the recorded runs exported
    written: int = 0  # values written now
    skipped: int = 0  # values an earlier export had already written
    updated: list[int] = field(default_factory=list)  # the runs something was written for
