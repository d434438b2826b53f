"""Ranks of a torchrun / DistributedDataParallel job: who this process is, and what all ranks
agree on while they record.

Each rank records into a run of its own: rank 0's is the job's run (kind `record`), every other
rank's a run of kind `rank` whose parent is rank 0's. Ranks find rank 0's run by the job's
*launch key*, which every rank of one launch computes alike from the environment torchrun gives
it (`launch_key`).

While recording, the ranks agree through a gloo process group of florc's own, created from the
script's default group once the main loop reaches its first boundary (every rank passes every
main-loop boundary, in the same order, so collectives there cannot leave one rank waiting):

- whether to take each main-loop checkpoint: every rank's budget must allow it (`agree`);
- at the first one, which parts of the state are replicated (equal on every rank by digest:
  a DDP model and its optimizer after the all-reduce). From then on rank 0 alone writes those;
  the others write what is theirs (random generators, sampler position, per-rank counters).

A checkpoint of the job is committed once every rank's part is durable: the rows of all ranks'
runs at one (loop, iteration, occurrence) are usable (`committed_keys`). A rank killed mid-run
leaves parts no other rank matched; those are never used.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from typing import Any

# how long a rank waits for rank 0 to open the job's run
JOIN_TIMEOUT_SECONDS = 300.0


@dataclass(frozen=True)
class RankInfo:
    rank: int
    world_size: int
    local_rank: int

    @property
    def leader(self) -> bool:
        return self.rank == 0


def current() -> RankInfo | None:
    """This process's rank in a job of more than one process (None: not part of one)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        return None
    if world <= 1 or "RANK" not in os.environ:
        return None
    return RankInfo(rank, world, local)


LAUNCH_VAR = "FLORC_LAUNCH"  # set by `florc record --nproc-per-node` for all its ranks


def launch_key() -> str:
    """What every rank of one launch has alike and no other launch has: the id florc's own
    launcher gives it, else torchrun's run id, restart count and master address (plus the
    launching agent's process, which a default run id `none` needs on one machine)."""
    given = os.environ.get(LAUNCH_VAR)
    if given:
        return given
    run_id = os.environ.get("TORCHELASTIC_RUN_ID", "none")
    parts = [
        run_id,
        os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"),
        os.environ.get("MASTER_ADDR", ""),
        os.environ.get("MASTER_PORT", ""),
    ]
    if run_id == "none" and os.environ.get("LOCAL_WORLD_SIZE") == os.environ.get("WORLD_SIZE"):
        parts.append(str(os.getppid()))
    return ":".join(parts)


def shared_hash_seed(key: str) -> str:
    """One string-hash seed for every rank of a launch (the replay's ranks run with one)."""
    return str(int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") or 1)


def launch(nproc: int, run_id: str, argv: list[str]) -> None:
    """Run `python ARGV` as `nproc` ranks on this machine through torchrun's own launcher (an
    elastic agent, a rendezvous on a free port, no restarts); waits for all of them. Raises
    torch's ChildFailedError when a rank fails."""
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=run_id,
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",  # a free port: several launches side by side
        max_restarts=0,
        monitor_interval=0.1,
    )
    elastic_launch(config, sys.executable)(*argv)


class RankGroup:
    """What the ranks agree on while recording (see the module's docstring)."""

    def __init__(self, info: RankInfo) -> None:
        self.info = info
        self._group: Any = None
        self._unavailable = False
        self.replicated: frozenset[str] | None = None  # decided at the first checkpoint
        self.notes: list[str] = []

    def _process_group(self) -> Any:
        if self._group is None and not self._unavailable:
            try:
                import torch.distributed as dist

                ready = dist.is_available() and dist.is_initialized()
            except ImportError:
                ready = False
            if not ready:
                self._unavailable = True
                self.notes.append(
                    "the ranks could not agree on checkpoints (the script had not started a "
                    "torch.distributed process group by its main loop): each rank decided alone, "
                    "and only checkpoints every rank took can be replayed"
                )
                return None
            self._group = dist.new_group(backend="gloo")
        return self._group

    def agree(self, take: bool) -> bool:
        """Take this main-loop checkpoint only if every rank's budget allows it."""
        group = self._process_group()
        if group is None:
            return take
        import torch
        import torch.distributed as dist

        flag = torch.tensor([1 if take else 0], dtype=torch.int32)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN, group=group)
        return bool(flag.item())

    def decide_replicated(self, digests: dict[str, str]) -> frozenset[str]:
        """The paths whose digests are equal on every rank (called once, by all ranks)."""
        group = self._process_group()
        if group is None:
            self.replicated = frozenset()
            return self.replicated
        import torch.distributed as dist

        everyone: list[Any] = [None] * self.info.world_size
        dist.all_gather_object(everyone, digests, group=group)
        same = {p for p, d in digests.items() if all(o.get(p) == d for o in everyone)}
        self.replicated = frozenset(same)
        return self.replicated


    def recheck(self, digests: dict[str, str]) -> None:
        """At a later main-loop checkpoint (all ranks): the replicated paths whose digests
        differ now between ranks, or that a rank did not compare, become each rank's own."""
        group = self._process_group()
        if group is None or not self.replicated:
            return
        import torch.distributed as dist

        everyone: list[Any] = [None] * self.info.world_size
        dist.all_gather_object(everyone, digests, group=group)
        keys = set().union(*(o.keys() for o in everyone))
        differ = {p for p in keys if len({o.get(p) for o in everyone}) > 1}
        if differ:
            self.replicated = self.replicated - differ
            self.notes.append(
                f"{', '.join(f'`{p}`' for p in sorted(differ))} differed between ranks after "
                "being equal: each rank keeps its own from then on"
            )


def committed_keys(rows_by_rank: dict[int, list[Any]]) -> set[tuple[str, int, int]]:
    """The (loop, iteration, occurrence) of checkpoints every rank wrote, usable."""
    keys: set[tuple[str, int, int]] | None = None
    for rows in rows_by_rank.values():
        mine = {(r.loop, r.iteration, r.occurrence) for r in rows if r.usable and r.blob}
        keys = mine if keys is None else keys & mine
    return keys or set()
