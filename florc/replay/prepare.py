"""What every replay works from: the recorded run, the edited script compiled and aligned with
the recorded sources, and the plan a replay session follows.

The parent of a parallel replay prepares once; each worker gets its share as a plan file
(worker.py) and never compiles or aligns again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from florc.contract import CompileResult, ReplayPlan
from florc.errors import FlorcError, UsageError
from florc.launch import environment, no_main_loop, script_path
from florc.project import find_root, store_location
from florc.report import Reporter
from florc.runtime.distributed import committed_keys
from florc.store.index import CheckpointRow, Store

if TYPE_CHECKING:
    from florc.transforms.align import Alignment


@dataclass
class PreparedReplay:
    """What every replay (and the parent of a parallel one) works from. It holds the store
    open (shared with other readers, so gc waits): use it as a context manager."""

    path: Path
    root: Path
    store: Store
    run: int
    meta: dict[str, Any]
    result: CompileResult
    alignment: Alignment
    edited: dict[str, str]
    iterations: list[tuple[int, Any]]
    checkpoints: dict[tuple[str, int, int], CheckpointRow]
    probed: set[str]
    run_after_loop: bool
    # a distributed job: rank -> its run, and each rank's checkpoints (only those every rank
    # wrote: committed); {0: run} and {0: checkpoints} for a run of one process
    ranks: dict[int, int] = field(default_factory=dict)
    rank_checkpoints: dict[int, dict[tuple[str, int, int], CheckpointRow]] = field(
        default_factory=dict
    )

    @property
    def world_size(self) -> int:
        return max(1, len(self.ranks))

    def __enter__(self) -> PreparedReplay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.store.close()

    @property
    def values(self) -> list[Any]:
        """The recorded main loop's values, one per iteration (how epochs are named)."""
        return [v for _, v in self.iterations]

    def plan(self, targets: list[int], run_after_loop: bool, rank: int = 0) -> ReplayPlan:
        """The plan of a replay session that shows `targets` (iteration indices); in a
        distributed job, the plan of one rank."""
        run = self.ranks.get(rank, self.run)
        recorded_values: dict[tuple[str, int | None, int | None], list[str]] = {}
        for row in self.store.logs(run):
            if row["run"] == run:
                key = (row["statement"], row["iteration"], row["step"])
                recorded_values.setdefault(key, []).append(row["value"])
        return ReplayPlan(
            targets=targets,
            probed=set(self.probed),
            new_statements=set(self.alignment.new_statements),
            run_after_loop=run_after_loop,
            checkpoints=self.rank_checkpoints.get(rank, self.checkpoints),
            final_boundary=(
                len(self.iterations) if self.meta["status"] in ("done", "partial") else None
            ),
            statement_map=dict(self.alignment.statement_map),
            recorded_values=recorded_values,
            rank=rank if self.world_size > 1 else None,
            replicated=self.checkpoints if rank else {},
        )

    def anchors(self) -> list[int]:
        """Main-loop boundaries with a usable checkpoint."""
        main = self.result.main_loop
        return sorted(
            it
            for (loop, it, occ), row in self.checkpoints.items()
            if loop == main and occ == 0 and row.usable and row.blob
        )

    def threads_note(self, used: int | None) -> tuple[int, int] | None:
        """(used, recorded) when this replay runs with another torch thread count."""
        recorded = self.meta["env"].get("torch_threads")
        return (used, recorded) if used and recorded and used != recorded else None

    def nothing_to_replay(self) -> str:
        """Why a run without main-loop iterations has nothing to replay."""
        result, run = self.result, self.run
        if result.main_loop is None:
            return f"run {run} has no main-loop iterations to replay. " + no_main_loop(result)
        lp = result.loop(result.main_loop)
        where = f" at {lp.relpath}:{lp.line}:{lp.col}" if lp is not None else ""
        return (
            f"run {run} has no main-loop iterations to replay: it ended ({self.meta['status']}) "
            f"before its main loop{where} finished one iteration; record again"
        )


def recorded_run(store: Store, relpath: str, script: str, run: int | None) -> tuple[int, dict]:
    """The recorded run to replay (default: the script's latest) and its row."""
    if run is None:
        run = store.latest_run(relpath)
        if run is None:
            raise UsageError(
                f"no recorded run of {relpath} in {store.dir}; run `florc record {script}` first"
            )
    meta = store.run(run)
    if meta is None or meta["kind"] != "record":
        known = ", ".join(str(r["id"]) for r in store.runs("record")) or "none"
        raise UsageError(f"run {run} is not a recorded run in {store.dir} (recorded runs: {known})")
    return run, meta


def prepare(
    script: str,
    run: int | None,
    allow_changes: bool,
    store_dir: Path | None,
    reporter: Reporter | None,
    sources: Mapping[str, str] | None = None,
) -> PreparedReplay:
    """Compile the edited script, align it with the recorded run's sources, and check that a
    replay can be faithful (or is allowed not to be). reporter: where to say what a replay
    should know (None: say nothing); sources: the edited version's texts (relpath -> text)
    where they are not the files' (a recorded version with log statements placed: runs.py)."""
    path = script_path(script)
    root = find_root(path)
    location = store_location(root, store_dir)
    relpath = str(path.relative_to(root))
    with Store(root, location, readonly=True) as probe:  # nothing recorded: say so, create nothing
        recorded_run(probe, relpath, script, run)
    store = Store(root, location)
    try:
        store.hold_shared()
        return _prepare(path, root, store, script, relpath, run, allow_changes, reporter, sources)
    except BaseException:
        store.close()
        raise


def _prepare(
    path: Path,
    root: Path,
    store: Store,
    script: str,
    relpath: str,
    run: int | None,
    allow_changes: bool,
    reporter: Reporter | None,
    sources: Mapping[str, str] | None = None,
) -> PreparedReplay:
    run, meta = recorded_run(store, relpath, script, run)
    from florc.transforms.align import compile_and_align

    # each version of each file parsed once; nothing of the syntax trees is kept
    compiled = compile_and_align(path, root, store.sources(run), sources)
    result, alignment = compiled.result, compiled.alignment
    edited = {rel: fm.source for rel, fm in result.files.items()}
    if not alignment.faithful:
        listing = "\n".join(str(c) for c in alignment.changes)
        if not allow_changes:
            raise FlorcError(
                f"{relpath} has changes that are not log statements — replay would not be "
                f"faithful:\n{listing}\n  Undo them, or run with --allow-changes to replay anyway "
                "(results marked unfaithful)."
            )
        if reporter is not None:
            reporter.note(
                "replaying with changes that are not log statements (results marked unfaithful):\n"
                + listing
            )
    if reporter is not None:
        for note in version_differences(meta["env"], environment()):
            reporter.warn(f"run {run} {note}")
    main = result.main_loop
    if main != meta["main_loop"]:
        raise FlorcError(
            f"the main loop moved ({meta['main_loop']} when recorded, {main} now: "
            f"{result.main_loop_reason}); replay needs the recorded structure: record the "
            "script again (or mark the recorded loop `# florc: main-loop`)"
        )
    probed = set(alignment.changed_loops)
    for loop_id, fns in store.callees(run).items():
        if fns & alignment.changed_functions:
            probed.add(loop_id)
    ranks, by_rank = job_checkpoints(store, run, meta)
    return PreparedReplay(
        path=path,
        root=root,
        store=store,
        run=run,
        meta=meta,
        result=result,
        alignment=alignment,
        edited=edited,
        iterations=store.iterations(run),
        checkpoints=by_rank[0],
        probed=probed,
        run_after_loop=compiled.run_after_loop,
        ranks=ranks,
        rank_checkpoints=by_rank,
    )


def job_checkpoints(
    store: Store, run: int, meta: dict[str, Any]
) -> tuple[dict[int, int], dict[int, dict[tuple[str, int, int], CheckpointRow]]]:
    """The ranks of the job whose run this is (rank -> run) and each rank's checkpoints; of a
    distributed job, only those every rank wrote (committed: runtime/distributed.py)."""
    rows = {0: store.checkpoints(run)}
    world = int((meta["env"].get("distributed") or {}).get("world_size", 1))
    ranks = store.rank_runs(run) if world > 1 else {0: run}
    if world > 1:
        lost = sorted(set(range(world)) - set(ranks))
        if lost:
            raise FlorcError(
                f"run {run} is a job of {world} ranks, and rank {lost[0]} never opened its run "
                "(it failed before training started): nothing of it can be replayed; record again"
            )
        rows = {r: store.checkpoints(ranks[r]) for r in range(world)}
        keep = committed_keys(rows)
        rows = {
            r: [c for c in cs if (c.loop, c.iteration, c.occurrence) in keep]
            for r, cs in rows.items()
        }
    by_key = {r: {(c.loop, c.iteration, c.occurrence): c for c in cs} for r, cs in rows.items()}
    return ranks, by_key


def version_differences(recorded: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs between the software a run was recorded with and this replay's.

    Checkpoints carry their own format number and the store its schema version (both checked
    where they are read); a different torch, numpy or Python can still change floating-point
    results, so replay says so and its fidelity line reports what it found."""
    out = []
    for name in ("florc", "torch", "numpy", "python"):
        was, is_ = recorded.get(name), now.get(name)
        if was and is_ and was != is_:
            out.append(
                f"was recorded with {name} {was}, this replay runs {name} {is_}: values may "
                "differ in the last digits (the fidelity line below reports any difference)"
            )
    return out
