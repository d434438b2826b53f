"""PyTorch Lightning's epochs as florc's main loop: `trainer.fit(...)` recorded and replayed
without a change to the script.

When the compile result's main loop is a Lightning fit call (`contract.is_lightning_loop`),
`Trainer.fit` is wrapped as the script imports Lightning (intercept.py: nothing here imports
Lightning, and a script that does not import it never loads it). The wrapper puts a callback
first in the Trainer's list; the callback makes each of Lightning's epochs an iteration of
florc's main loop (`LightningLoop`), numbered by `trainer.current_epoch`:

- at `on_train_epoch_start` of epoch b (before any other callback's or the module's hook and
  before the epoch's data iterator exists) lies boundary b. Its checkpoint holds Lightning's
  own full checkpoint (`dump_checkpoint(weights_only=False)`: model, optimizers, schedulers,
  precision scaler, loops and their progress, callback and datamodule states) and the random
  generators (Python, NumPy, torch, CUDA), through florc's capture, writer and budget. Lightning
  resumes such a checkpoint as "restarted on epoch start" and runs epoch b's start hooks again;
- each train batch's index is the step the output lines are filed under (validation's under
  its own batch index);
- at replay the latest checkpoint before the first asked epoch is restored by Lightning's own
  resume: the fit call gets `ckpt_path` (the stored checkpoint written to a temporary file), and
  the random generators are put back at the start of the first epoch it runs. Past the last asked
  epoch the replay ends, unless a new statement lies after the fit call (then training runs on,
  silent). Inside one fit nothing is restored again: epochs between two asked ones re-execute.

What cannot be replayed exactly is refused at the fit call: several devices or processes (the
other processes' state is not the recording's) stop the record with a message; an iterable
dataset without a state, or `max_steps` (training may stop inside an epoch), makes the
checkpoints unusable — the record runs on, and replay re-executes from the start.
"""

from __future__ import annotations

import copy
import inspect
import os
import tempfile
import types
from typing import Any

from florc.contract import LoopManifest, is_lightning_loop
from florc.runtime import frameworks
from florc.runtime import state as st
from florc.runtime.frameworks import FrameworkRefused
from florc.runtime.loops import InnerLoop, MainLoop

TRAINER_MODULES = ("lightning.pytorch.trainer.trainer", "pytorch_lightning.trainer.trainer")
CALLBACK_MODULES = {
    "lightning.pytorch.trainer.trainer": "lightning.pytorch.callbacks",
    "pytorch_lightning.trainer.trainer": "pytorch_lightning.callbacks",
}
PATHS = ["lightning", "rng", "attrs"]  # what a boundary checkpoint holds


__all__ = ["FrameworkRefused", "LightningLoop", "manifest_for", "patch_trainer"]


class LightningScope(st.Scope):
    """A boundary's state: `lightning` (Lightning's checkpoint dict, dumped when first asked
    for at that boundary) and `rng` (the random generators). Outside a boundary nothing is
    there, so a restore builds fresh values and hands them to `set`, kept in `restored`."""

    def __init__(self, trainer: Any) -> None:  # noqa: D107 -- no frame
        self.local_names: set[str] = set()
        self.is_module = True
        self.locals = self.globals = {}
        self.local_writes: dict[str, Any] = {}
        self.trainer = trainer
        self.live = False
        self.cache: dict[str, Any] = {}
        self.restored: dict[str, Any] = {}

    def get(self, path: str) -> Any:
        if not self.live or path not in PATHS:
            return st.MISSING
        if path not in self.cache:
            if path == "lightning":
                self.cache[path] = dump_at_epoch_start(self.trainer)
            elif path == "attrs":
                self.cache[path] = copy.deepcopy(user_attributes(self.trainer))
            else:
                self.cache[path] = st.capture_rng()
        return self.cache[path]

    def set(self, path: str, value: Any) -> None:
        self.restored[path] = value

    def commit(self) -> None:
        return None

    def close(self) -> None:
        self.live = False
        self.cache = {}


def user_attributes(trainer: Any) -> list[tuple[str, dict[str, Any]]]:
    """The plain-data attributes (frameworks.plain_attributes) of the LightningModule and of
    the script's own callbacks, by class: what the script keeps in `self.x` (a list of losses,
    a counter), which Lightning's checkpoint leaves out. The module first, then the callbacks
    in their order."""
    objects = [trainer.lightning_module, *user_callbacks(trainer)]
    return [(type(o).__qualname__, frameworks.plain_attributes(o)) for o in objects]


def user_callbacks(trainer: Any) -> list[Any]:
    """The script's own callbacks (not Lightning's built-in ones, not florc's)."""
    return [
        cb
        for cb in trainer.callbacks
        if not type(cb).__module__.startswith(("lightning", "pytorch_lightning", "florc"))
    ]


def dump_at_epoch_start(trainer: Any) -> dict[str, Any]:
    """Lightning's checkpoint of the state at an epoch's start, as Lightning resumes it.

    At `on_train_epoch_start` the epoch loop still holds the last epoch's batch counts; it
    resets them only after the hooks, when it starts the epoch. A checkpoint with those counts
    resumes as an epoch already run to its end, so the dump is taken with them reset as the
    epoch loop is about to reset them; the live counters are left as they were."""
    epoch_loop = trainer.fit_loop.epoch_loop
    progress = [
        epoch_loop.batch_progress,
        epoch_loop.scheduler_progress,
        epoch_loop.automatic_optimization.optim_progress,
    ]
    val_total = epoch_loop.val_loop.batch_progress.total
    saved = [p.state_dict() for p in progress]
    saved_val = val_total.state_dict()
    try:
        for p in progress:
            p.reset_on_run()
        val_total.reset()
        return dict(trainer._checkpoint_connector.dump_checkpoint(weights_only=False))
    finally:
        for p, state in zip(progress, saved):
            p.load_state_dict(state)
        val_total.load_state_dict(saved_val)


class LightningLoop(MainLoop):
    """The main loop whose iterations are Lightning's epochs; driven by the callback."""

    restores_inside = False  # replay restores only before the fit call, through Lightning

    def __init__(self, session: Any, manifest: LoopManifest, scope: LightningScope) -> None:
        super().__init__(session, manifest)
        self.lightning = scope
        self.ended = False
        self.refused: str | None = None  # why its checkpoints cannot be used
        self.first: int | None = None  # the first epoch this fit runs

    @property
    def bounded(self) -> bool:
        return self.refused is None and not self.ended  # no checkpoint at the fit's end

    def scope(self) -> st.Scope:
        return self.lightning

    def epoch_start(self, epoch: int) -> None:
        """Lightning starts epoch `epoch` (the callback's on_train_epoch_start)."""
        s = self.session
        if self.first is None:
            self.first = epoch
            rng = self.lightning.restored.pop("rng", None)
            if rng is not None:
                # Lightning resumed: it made this epoch's data iterator before the hooks, with
                # the generators as they were; the recording made it after them, from the
                # boundary's generators. Put those back, then make the iterator again.
                attrs = self.lightning.restored.pop("attrs", None)
                trainer = self.lightning.trainer
                objects = [trainer.lightning_module, *user_callbacks(trainer)]
                for obj, (name, values) in zip(objects, attrs or []):
                    if type(obj).__qualname__ == name:  # as at the epoch's start
                        for attribute, value in values.items():
                            setattr(obj, attribute, value)
                st.restore_rng(rng)
                fetcher = getattr(self.lightning.trainer.fit_loop, "_data_fetcher", None)
                if fetcher is not None:
                    iter(fetcher)
        else:
            self.lightning.live = True
            try:
                self._boundary(epoch)
            finally:
                self.lightning.close()
            s.next_iteration(self, epoch)  # replay: may end here (ReplayFinished)
        self._begin(epoch, epoch)
        s.block = InnerLoop(s, f"{self.loop_id}:batch")

    def batch_start(self, batch_idx: int) -> None:
        block = self.session.block
        if block is not None and block.loop_id == f"{self.loop_id}:batch":
            block.step = batch_idx

    def fit_end(self) -> None:
        """fit returned: the loop's end (replay ends here unless code after the call must run)."""
        s = self.session
        if s.block is not None and s.block.loop_id == f"{self.loop_id}:batch":
            s.block = None
        self.ended = True
        if self.current is not None:
            end = self.current + 1
            self._boundary(end)
            s.next_iteration(self, end)


def manifest_for(loop_id: str, framework: dict[str, Any] | None) -> LoopManifest:
    return frameworks.manifest_for(loop_id, framework, PATHS)


def _where(session: Any, loop: LightningLoop) -> str:
    return frameworks.where(loop.manifest)


def refusal(trainer: Any) -> str | None:
    """Why this Trainer cannot be recorded at all (None: it can)."""
    devices = int(getattr(trainer, "num_devices", 1) or 1)
    nodes = int(getattr(trainer, "num_nodes", 1) or 1)
    world = int(getattr(trainer, "world_size", 1) or 1)
    if devices > 1 or nodes > 1 or world > 1:
        strategy = type(getattr(trainer, "strategy", None)).__name__
        return (
            f"the Trainer trains on {max(devices * nodes, world)} devices ({strategy}); florc "
            "replays Lightning training in one process on one device, and the other processes' "
            "state would not be the recording's. Record with `devices=1` (and `num_nodes=1`), "
            "or run this script without florc"
        )
    return None


def unusable_reason(trainer: Any) -> str | None:
    """Why this fit's checkpoints could not be restored exactly (None: they can)."""
    if int(getattr(trainer, "max_steps", -1)) != -1:
        return (
            "the Trainer stops at max_steps, which may fall inside an epoch; florc checkpoints "
            "Lightning at epoch starts only"
        )
    try:
        from torch.utils.data import IterableDataset
    except ImportError:
        return None
    loader = getattr(trainer.fit_loop, "_combined_loader", None)
    for dl in getattr(loader, "flattened", []) or []:
        dataset = getattr(dl, "dataset", None)
        if isinstance(dataset, IterableDataset) and not hasattr(dataset, "state_dict"):
            return (
                f"the training data is an IterableDataset ({type(dataset).__name__}) without "
                "state_dict(); where its stream stands at an epoch start is not in a checkpoint"
            )
    return None


def _callback_class(callbacks: types.ModuleType) -> type:
    base = callbacks.Callback

    class FlorcCallback(base):  # type: ignore[misc,valid-type]
        """florc's part in the fit: Lightning's epochs as florc's main loop."""

        def __init__(self, loop: LightningLoop) -> None:
            super().__init__()
            self.loop = loop

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            reason = unusable_reason(trainer)
            if reason is not None and self.loop.refused is None:
                self.loop.refused = reason
                stats = self.loop.session.stats
                stats.notes.append(
                    f"{_where(self.loop.session, self.loop)}: checkpoints not taken: {reason}; "
                    "replay re-executes from the start"
                )

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            self.loop.epoch_start(int(trainer.current_epoch))

        def on_train_batch_start(
            self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int
        ) -> None:
            self.loop.batch_start(batch_idx)

        def on_validation_batch_start(
            self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
        ) -> None:
            self.loop.batch_start(batch_idx)

    return FlorcCallback


def patch_trainer(module: types.ModuleType) -> None:
    """Wrap `Trainer.fit` of a Lightning trainer module (intercept.py calls it on import)."""

    callbacks_name = CALLBACK_MODULES.get(module.__name__, "lightning.pytorch.callbacks")
    frameworks.wrap_entry(
        module.Trainer, "fit", is_lightning_loop, callbacks_name, _callback_class, _fit
    )


def _fit(
    session: Any,
    trainer: Any,
    original: Any,
    signature: inspect.Signature,
    callback_cls: type,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    loop_id = session.main_loop_id
    loop = LightningLoop(
        session, manifest_for(loop_id, getattr(session, "framework", None)), LightningScope(trainer)
    )
    refused = refusal(trainer)
    if refused is not None:
        raise FrameworkRefused(f"{_where(session, loop)}: {refused}")
    session.main = loop
    trainer.callbacks.insert(0, callback_cls(loop))
    ckpt: str | None = None
    try:
        loop.start()
        restored = session.next_iteration(loop, 0)
        state = loop.lightning.restored.pop("lightning", None)
        if hasattr(session, "in_target"):  # replay: the sanity check before epoch 0 is shown
            session.in_target = state is None and 0 in session.plan.targets
        if state is not None and restored:
            import torch

            fd, ckpt = tempfile.mkstemp(prefix="florc-lightning-", suffix=".ckpt")
            os.close(fd)
            torch.save(state, ckpt)
            bound = signature.bind(trainer, *args, **kwargs)
            bound.arguments["ckpt_path"] = ckpt
            if "weights_only" in signature.parameters:
                bound.arguments["weights_only"] = False
            args, kwargs = tuple(bound.args[1:]), dict(bound.kwargs)
        out = original(trainer, *args, **kwargs)
        loop.fit_end()
    except BaseException:
        loop.stop(left=False)
        raise
    finally:
        if ckpt is not None:
            try:
                os.unlink(ckpt)
            except OSError:
                pass
    loop.stop(left=True)
    return out
