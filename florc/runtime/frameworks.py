"""What driving a framework's epochs as florc's main loop shares across frameworks
(lightning.py: PyTorch Lightning's fit; huggingface.py: transformers' `Trainer.train`)."""

from __future__ import annotations

from typing import Any

from florc.contract import LoopManifest
from florc.errors import UsageError


class FrameworkRefused(UsageError):
    """The framework runs in a way florc cannot replay exactly: said where the script calls it."""


def manifest_for(loop_id: str, framework: dict[str, Any] | None, paths: list[str]) -> LoopManifest:
    """The main loop's manifest: where the framework call is, and the scope's paths (all of them
    required: a boundary's checkpoint holds them all)."""
    fw = framework or {}
    return LoopManifest(
        loop_id=loop_id,
        relpath=str(fw.get("relpath", loop_id.rsplit(":", 2)[0])),
        line=int(fw.get("line", 0)),
        col=int(fw.get("col", 0)),
        kind="for",
        scope="",
        parent_loop=None,
        changeset=list(paths),
        required=list(paths),
        iterated=[],
        unbounded=[],
    )


def where(manifest: LoopManifest) -> str:
    return f"{manifest.relpath}:{manifest.line}:{manifest.col}"
