"""The pure parts of distributed record and replay: ranks from the environment, the launch key,
what counts as committed, content digests across processes, the merged order of ranks' lines."""

from __future__ import annotations

import pytest
import torch

from florc.contract import LogLine
from florc.replay.ranks import merge_ranks
from florc.replay.results import ReplayStats, WorkerOutput
from florc.runtime import checkpoint, distributed
from florc.store.index import CheckpointRow


def _row(loop: str, it: int, usable: bool = True) -> CheckpointRow:
    return CheckpointRow(0, loop, it, 0, "b" if usable else None, 1, usable, {})


def test_rank_from_torchrun_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert distributed.current() is None
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.current() == distributed.RankInfo(1, 2, 1)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.current() is None  # one process is no job


def test_launch_key_is_shared_by_a_launch_and_not_by_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(distributed.LAUNCH_VAR, raising=False)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "abc")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    first = distributed.launch_key()
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")  # torchrun restarted the job
    assert distributed.launch_key() != first
    monkeypatch.setenv(distributed.LAUNCH_VAR, "florc-1")
    assert distributed.launch_key() == "florc-1"
    assert distributed.shared_hash_seed("florc-1") == distributed.shared_hash_seed("florc-1")
    assert distributed.shared_hash_seed("florc-1") != distributed.shared_hash_seed("florc-2")


def test_committed_only_where_every_rank_wrote_a_usable_part() -> None:
    rows = {
        0: [_row("m", 1), _row("m", 2), _row("m", 3), _row("b", 1)],
        1: [_row("m", 1), _row("m", 2, usable=False), _row("b", 1)],  # killed before 3
    }
    assert distributed.committed_keys(rows) == {("m", 1, 0), ("b", 1, 0)}


def test_content_digest_ignores_where_small_tensors_live() -> None:
    a = {"w": torch.arange(6.0), "n": 3}
    b = {"w": torch.arange(6.0).clone(), "n": 3}
    assert checkpoint.content_digest(a) == checkpoint.content_digest(b)
    b["w"][0] = 1e-7
    assert checkpoint.content_digest(a) != checkpoint.content_digest(b)


def _out(lines: list[LogLine], status: str = "done") -> WorkerOutput:
    return WorkerOutput(status, 0, None, 1.0, lines, [], ReplayStats())


def test_ranks_lines_merge_by_epoch_step_then_rank() -> None:
    def ln(it: int, step: int | None, text: str) -> LogLine:
        return LogLine("s", it, it, step, text, True)

    r0 = [ln(0, 0, "a0"), ln(0, 3, "b0"), ln(0, None, "e0"), ln(1, 0, "c0")]
    r1 = [ln(0, 0, "a1"), ln(0, 3, "b1"), ln(0, None, "e1"), ln(1, 0, "c1")]
    merged = merge_ranks({0: _out(r0), 1: _out(r1)})
    assert [x.text for x in merged.lines] == ["a0", "a1", "b0", "b1", "e0", "e1", "c0", "c1"]
    assert [x.rank for x in merged.lines[:2]] == [0, 1]
    failed = merge_ranks({0: _out(r0), 1: None}, "a rank failed")
    assert failed.status == "failed" and "rank 1" in (failed.error or "")
