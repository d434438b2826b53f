"""Run the edited script under a replay session in this process: what a one-process replay,
each worker of a parallel one and verify all do once their plan is made.

The session runs as the recording did: with its torch thread count (unless asked otherwise),
its deterministic mode, and its random generators' start state; file writes go to the replay's
own folder (a sandbox), so a replay never overwrites what the recording wrote.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from florc.contract import START_LOOP, CompileResult, ReplayPlan
from florc.launch import compiled_code, import_hook, make_deterministic, thread_vars
from florc.report import Reporter
from florc.runtime import state as st
from florc.runtime.files import FileSandbox
from florc.runtime.replay import ReplaySession
from florc.runtime.runner import RunOutcome, run_script
from florc.store.index import Store


@dataclass
class SessionRun:
    session: ReplaySession
    outcome: RunOutcome
    seconds: float


def use_threads(threads: int | None, recorded_vars: dict[str, str] | None) -> None:
    """Run the script with this many torch threads (the recording's, unless asked otherwise):
    through the environment for a torch not imported yet, directly for one that is."""
    if threads is None:
        return
    os.environ.update(thread_vars(threads, recorded_vars))
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def run_session(
    store: Store,
    replay_id: int,
    compiled: CompileResult,
    plan: ReplayPlan,
    script: Path,
    root: Path,
    meta: dict[str, Any],
    files: Path,
    reporter: Reporter,
    quiet: bool = False,
    on_progress: Callable[[], None] | None = None,
    threads: int | None = None,
) -> SessionRun:
    """Run `script` (compiled) under a replay session that follows `plan`.

    meta: the recorded run's row (its argv, and the environment it ran in); files: where the
    script's writes go; quiet: show nothing (a worker: the parent shows the merged output);
    threads: torch threads to run with (None: the recording's)."""
    env = meta["env"]
    explicit = threads is not None
    use_threads(threads or env.get("torch_threads"), None if explicit else env.get("thread_env"))
    if env.get("deterministic"):
        make_deterministic()
    session = ReplaySession(store, replay_id, compiled, plan)
    session.echo = not quiet
    session.on_progress = on_progress
    start = plan.checkpoints.get((START_LOOP, 0, 0))
    if start is not None and start.blob:
        try:
            rng = session.load(start).rng
        except (OSError, ValueError) as exc:
            reporter.warn(
                f"the recorded start state (random generators) cannot be read ({exc}); "
                "a script that does not seed them may replay differently (see the fidelity line)"
            )
        else:
            st.start_rng(with_torch="torch" in rng)  # import what record imported, then restore
            st.restore_rng(rng)
    sandbox = FileSandbox(root, files, store.dir)
    session.on_final_restore = sandbox.forget
    t0 = time.perf_counter()
    sandbox.install()
    try:
        outcome = run_script(
            session,
            compiled_code(compiled, compiled.script),
            script,
            meta["argv"],
            import_hook(compiled, root, session),
        )
    finally:
        sandbox.uninstall()
    return SessionRun(session, outcome, time.perf_counter() - t0)
