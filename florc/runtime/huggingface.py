"""Hugging Face transformers' epochs as florc's main loop: `trainer.train()` recorded and
replayed without a change to the script.

When the compile result's main loop is a transformers train call
(`contract.is_transformers_loop`), `Trainer.train` is wrapped as the script imports the Trainer
(intercept.py: nothing here imports transformers, and a script that does not import it never
loads it). The wrapper puts a `TrainerCallback` first in the Trainer's callback list; the
callback makes each of the Trainer's epochs an iteration of florc's main loop (`TrainerLoop`):

- at `on_epoch_begin` of epoch b (before any other callback's hook and before the epoch's data
  iterator exists) lies boundary b. Its checkpoint holds what the Trainer's own
  `_save_checkpoint` writes — the model's `state_dict`, the optimizer's, the LR scheduler's, the
  grad scaler's, the `TrainerState` (global step, log history, best metric, the states of
  callbacks that export one) — and the Trainer's running loss counters, and the random
  generators (Python, NumPy, torch, CUDA), through florc's capture, writer and budget;
- each optimizer step's index within the epoch is the step the output lines are filed under
  (evaluation's, under the evaluation batch's index);
- at replay the latest checkpoint before the first asked epoch is restored by the Trainer's own
  resume: `train(resume_from_checkpoint=DIR)` with DIR a temporary checkpoint folder written
  from the stored state. At an epoch's start the Trainer skips no batch; the random generators
  and the loss counters are put back at that epoch's start, before its data iterator is made.
  Past the last asked epoch the replay ends, unless a new statement lies after the train call
  (then training runs on, silent). Inside one train call nothing is restored again.

What cannot be replayed exactly is refused when training starts, with where the script calls
`train()`: several processes or devices, `max_steps` (or a fractional `num_train_epochs`) that
ends inside an epoch, training data without a length (an `IterableDataset`).
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import os
import shutil
import sys
import tempfile
import types
from typing import Any

from florc.contract import LoopManifest, is_transformers_loop
from florc.runtime import frameworks
from florc.runtime import state as st
from florc.runtime.frameworks import FrameworkRefused
from florc.runtime.loops import InnerLoop, MainLoop

TRAINER_MODULES = ("transformers.trainer",)
CALLBACK_MODULE = "transformers.trainer_callback"
PATHS = ["transformers", "rng", "attrs"]  # what a boundary checkpoint holds
# the Trainer's running counters that its own checkpoint leaves out (a resumed train() starts
# them afresh): the loss summed since the last log, the step of that log, the loss summed over
# the whole train() call, the step it started at, the floating-point operations not yet stored
COUNTERS = (
    "_tr_loss",
    "_globalstep_last_logged",
    "_total_loss_scalar",
    "_initial_global_step",
    "_initial_num_input_tokens_seen",
    "current_flos",
)
# the file names of a Trainer checkpoint folder (transformers.trainer's constants)
FILES = {
    "model": "pytorch_model.bin",
    "optimizer": "optimizer.pt",
    "scheduler": "scheduler.pt",
    "scaler": "scaler.pt",
    "trainer_state": "trainer_state.json",
}


def updates_per_epoch(batches: int, accumulation: int) -> int:
    """The Trainer's optimizer steps in an epoch of `batches` batches (its own formula)."""
    return max(batches // accumulation + int(batches % accumulation > 0), 1)


def refusal(trainer: Any) -> str | None:
    """Why this Trainer cannot be recorded at all (None: it can)."""
    args = trainer.args
    world = int(getattr(args, "world_size", 1) or 1)
    accelerator = getattr(trainer, "accelerator", None)
    processes = int(getattr(accelerator, "num_processes", 1) or 1)
    gpus = int(getattr(args, "n_gpu", 1) or 1)
    if world > 1 or processes > 1:
        return (
            f"the Trainer trains in {max(world, processes)} processes; florc replays "
            "transformers training in one process, and the other processes' state would not be "
            "the recording's. Record it in one process (python train.py, not torchrun or "
            "accelerate launch), or run this script without florc"
        )
    if gpus > 1:
        return (
            f"the Trainer trains on {gpus} GPUs (DataParallel); florc replays transformers "
            "training on one device. Record with one visible GPU (CUDA_VISIBLE_DEVICES=0)"
        )
    return None


def data_refusal(max_steps: int, batches: int | None, accumulation: int) -> str | None:
    """Why the training data or its length cannot be replayed exactly (None: it can).
    batches: the train dataloader's length (None: it has none)."""
    if batches is None:
        return (
            "the training data has no length (an IterableDataset): where its stream stands at "
            "an epoch's start is in no checkpoint, and the Trainer resumes it by skipping "
            "batches. Give the Trainer a map-style Dataset (with __len__ and __getitem__)"
        )
    per_epoch = updates_per_epoch(batches, accumulation)
    if max_steps > 0 and max_steps % per_epoch:
        return (
            f"training stops after {max_steps} optimizer steps, inside epoch "
            f"{max_steps // per_epoch} ({per_epoch} steps per epoch); florc checkpoints the "
            "Trainer at epoch starts only. Set max_steps to a multiple of "
            f"{per_epoch} or a whole num_train_epochs"
        )
    return None


def _exportable(trainer: Any) -> list[Any]:
    """The callbacks (and the TrainerControl) whose state the Trainer's checkpoint holds."""
    module = sys.modules.get(CALLBACK_MODULE)
    base = getattr(module, "ExportableState", None)
    if base is None:
        return []
    return [
        cb for cb in [*trainer.callback_handler.callbacks, trainer.control] if isinstance(cb, base)
    ]


def user_callbacks(trainer: Any) -> list[Any]:
    """The script's own callbacks (not the Trainer's built-in ones, not florc's)."""
    return [
        cb
        for cb in trainer.callback_handler.callbacks
        if not type(cb).__module__.startswith(("transformers", "florc", "accelerate"))
    ]


def dump_state(trainer: Any, epoch: int, per_epoch: int | None) -> dict[str, Any]:
    """What the Trainer's `_save_checkpoint` would write at this epoch's start, as values: the
    model's, optimizer's, scheduler's and scaler's state dicts, the TrainerState (as its JSON
    text, with the exportable callbacks' states), and the running counters."""
    state = trainer.state
    if per_epoch is not None and state.global_step != epoch * per_epoch:
        raise st.CannotSnapshot(
            f"epoch {epoch} starts at optimizer step {state.global_step}, not "
            f"{epoch * per_epoch}: an earlier epoch stopped early, and the Trainer would resume "
            "it by skipping batches"
        )
    stateful: dict[str, Any] = {}
    for cb in _exportable(trainer):
        stateful.setdefault(type(cb).__name__, []).append(cb.state())
    data = dataclasses.asdict(state)
    data["stateful_callbacks"] = {k: v[0] if len(v) == 1 else v for k, v in stateful.items()}
    scaler = getattr(getattr(trainer, "accelerator", None), "scaler", None)
    scheduler = getattr(trainer, "lr_scheduler", None)
    counters = {name: getattr(trainer, name) for name in COUNTERS if hasattr(trainer, name)}
    return {
        "model": trainer.model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "trainer_state": json.dumps(data, indent=2, sort_keys=True) + "\n",
        "counters": counters,
    }


def write_checkpoint_folder(saved: dict[str, Any]) -> str:
    """A temporary folder laid out as a Trainer checkpoint, from a stored boundary's state; the
    Trainer resumes from it. No RNG file: florc puts the generators back itself, at the epoch's
    start (the Trainer would then find none and leave them as florc set them)."""
    import torch

    folder = tempfile.mkdtemp(prefix="florc-transformers-")
    for key in ("model", "optimizer", "scheduler", "scaler"):
        if saved.get(key) is not None:
            torch.save(saved[key], os.path.join(folder, FILES[key]))
    with open(os.path.join(folder, FILES["trainer_state"]), "w", encoding="utf-8") as f:
        f.write(saved["trainer_state"])
    return folder


class TrainerScope(st.Scope):
    """A boundary's state: `transformers` (dump_state, made when first asked for at that
    boundary) and `rng` (the random generators). Outside a boundary nothing is there, so a
    restore builds fresh values and hands them to `set`, kept in `restored`."""

    def __init__(self, trainer: Any) -> None:  # noqa: D107 -- no frame
        self.local_names: set[str] = set()
        self.is_module = True
        self.locals = self.globals = {}
        self.local_writes: dict[str, Any] = {}
        self.trainer = trainer
        self.live = False
        self.epoch = 0
        self.per_epoch: int | None = None
        self.cache: dict[str, Any] = {}
        self.restored: dict[str, Any] = {}

    def get(self, path: str) -> Any:
        if not self.live or path not in PATHS:
            return st.MISSING
        if path not in self.cache:
            if path == "transformers":
                self.cache[path] = dump_state(self.trainer, self.epoch, self.per_epoch)
            elif path == "attrs":
                self.cache[path] = copy.deepcopy(
                    [
                        (type(cb).__qualname__, frameworks.plain_attributes(cb))
                        for cb in user_callbacks(self.trainer)
                    ]
                )
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


class TrainerLoop(MainLoop):
    """The main loop whose iterations are the Trainer's epochs; driven by the callback."""

    restores_inside = False  # replay restores only before the train call, through the Trainer

    def __init__(self, session: Any, manifest: LoopManifest, scope: TrainerScope) -> None:
        super().__init__(session, manifest)
        self.trainer_scope = scope
        self.ended = False
        self.first: int | None = None  # the first epoch this train call runs
        self.resumed: dict[str, Any] | None = None  # replay: the restored boundary's state
        self.epoch_step = 0  # the global step at the current epoch's start
        self.train_step: int | None = None  # the step lines are filed under, outside evaluation

    @property
    def bounded(self) -> bool:
        return not self.ended  # no checkpoint at the train call's end

    def scope(self) -> st.Scope:
        return self.trainer_scope

    @property
    def block_id(self) -> str:
        return f"{self.loop_id}:step"

    def train_begin(self, trainer: Any, state: Any, dataloader: Any) -> None:
        """on_train_begin: refuse what cannot be replayed; learn the steps per epoch."""
        try:
            batches: int | None = len(dataloader)
        except TypeError:
            batches = None
        accumulation = int(trainer.args.gradient_accumulation_steps)
        refused = data_refusal(int(state.max_steps or 0), batches, accumulation)
        if refused is not None:
            raise FrameworkRefused(f"{frameworks.where(self.manifest)}: {refused}")
        assert batches is not None
        self.trainer_scope.per_epoch = updates_per_epoch(batches, accumulation)

    def epoch_start(self, trainer: Any, state: Any) -> None:
        """The Trainer starts an epoch (the callback's on_epoch_begin)."""
        s = self.session
        per_epoch = self.trainer_scope.per_epoch or 1
        if self.first is None:
            epoch = int(state.global_step) // per_epoch  # the Trainer's epochs_trained
            self.first = epoch
            rng = self.trainer_scope.restored.pop("rng", None)
            if self.resumed is not None:
                self._put_back(trainer, self.resumed)
            attrs = self.trainer_scope.restored.pop("attrs", None)
            for cb, (name, values) in zip(user_callbacks(trainer), attrs or []):
                if type(cb).__qualname__ == name:  # the script's callbacks' own attributes
                    for attribute, value in values.items():
                        setattr(cb, attribute, value)
            if rng is not None:
                st.restore_rng(rng)  # before the epoch's data iterator is made
        else:
            assert self.current is not None
            epoch = self.current + 1
            self.trainer_scope.live = True
            self.trainer_scope.epoch = epoch
            try:
                self._boundary(epoch)
            finally:
                self.trainer_scope.close()
            s.next_iteration(self, epoch)  # replay: may end here (ReplayFinished)
        self.epoch_step = int(state.global_step)
        self.train_step = None
        self._begin(epoch, epoch)
        s.block = InnerLoop(s, self.block_id)

    def _put_back(self, trainer: Any, saved: dict[str, Any]) -> None:
        """The running counters and the exportable callbacks' states of the restored boundary
        (the Trainer's resume starts the counters afresh, and restores callbacks only when
        `restore_callback_states_from_checkpoint` is set)."""
        for name, value in dict(saved.get("counters") or {}).items():
            setattr(trainer, name, value)
        stored = json.loads(saved["trainer_state"]).get("stateful_callbacks") or {}
        seen: dict[str, int] = {}
        for cb in _exportable(trainer):
            name = type(cb).__name__
            if name == "TrainerControl":
                continue
            entries = stored.get(name)
            if entries is None:
                continue
            entries = entries if isinstance(entries, list) else [entries]
            i = seen.get(name, 0)
            seen[name] = i + 1
            if i < len(entries):
                for attribute, value in dict(entries[i].get("attributes", {})).items():
                    setattr(cb, attribute, value)

    def _block(self) -> InnerLoop | None:
        block = self.session.block
        return block if block is not None and block.loop_id == self.block_id else None

    def step_start(self, state: Any) -> None:
        block = self._block()
        if block is not None:
            block.step = self.train_step = int(state.global_step) - self.epoch_step

    def evaluation(self, start: bool) -> None:
        """An evaluation starts (its lines are filed under its batch index) or ends."""
        block = self._block()
        if block is not None:
            block.step = 0 if start else self.train_step

    def prediction_step(self) -> None:
        block = self._block()
        if block is not None and block.step is not None:
            block.step += 1

    def train_end(self) -> None:
        """train() returned: the loop's end (replay ends here unless code after it must run)."""
        s = self.session
        if self._block() is not None:
            s.block = None
        self.ended = True
        if self.current is not None:
            end = self.current + 1
            self._boundary(end)
            s.next_iteration(self, end)


def manifest_for(loop_id: str, framework: dict[str, Any] | None) -> LoopManifest:
    return frameworks.manifest_for(loop_id, framework, PATHS)


def _callback_class(callbacks: types.ModuleType) -> type:
    base = callbacks.TrainerCallback

    class FlorcCallback(base):  # type: ignore[misc,valid-type]
        """florc's part in train(): the Trainer's epochs as florc's main loop."""

        def __init__(self, loop: TrainerLoop, trainer: Any) -> None:
            super().__init__()
            self.loop = loop
            self.trainer = trainer

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.loop.train_begin(self.trainer, state, kwargs.get("train_dataloader"))

        def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.loop.epoch_start(self.trainer, state)

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.loop.step_start(state)

        def on_prediction_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.loop.prediction_step()

    return FlorcCallback


def patch_trainer(module: types.ModuleType) -> None:
    """Wrap `Trainer.train` of transformers' trainer module (intercept.py calls it on import)."""
    frameworks.wrap_entry(
        module.Trainer, "train", is_transformers_loop, CALLBACK_MODULE, _callback_class, _train
    )


def _evaluate_wrapper(trainer: Any, loop: TrainerLoop) -> Any:
    evaluate = trainer.evaluate  # the bound method (a subclass's override included)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        loop.evaluation(True)
        try:
            return evaluate(*args, **kwargs)
        finally:
            loop.evaluation(False)

    return wrapped


def _train(
    session: Any,
    trainer: Any,
    original: Any,
    signature: inspect.Signature,
    callback_cls: type,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    loop_id = session.main_loop_id
    loop = TrainerLoop(
        session, manifest_for(loop_id, getattr(session, "framework", None)), TrainerScope(trainer)
    )
    refused = refusal(trainer)
    if refused is not None:
        raise FrameworkRefused(f"{frameworks.where(loop.manifest)}: {refused}")
    session.main = loop
    callback = callback_cls(loop, trainer)
    handler = trainer.callback_handler
    handler.callbacks.insert(0, callback)
    trainer.evaluate = _evaluate_wrapper(trainer, loop)
    folder: str | None = None
    eval_on_start = getattr(trainer.args, "eval_on_start", False)
    try:
        loop.start()
        restored = session.next_iteration(loop, 0)
        saved = loop.trainer_scope.restored.pop("transformers", None)
        if hasattr(session, "in_target"):  # replay: an evaluation before epoch 0 is shown
            session.in_target = saved is None and 0 in session.plan.targets
        if saved is not None and restored:
            folder = write_checkpoint_folder(saved)
            loop.resumed = saved
            bound = signature.bind(trainer, *args, **kwargs)
            bound.arguments["resume_from_checkpoint"] = folder
            args, kwargs = tuple(bound.args[1:]), dict(bound.kwargs)
            trainer.args.eval_on_start = False  # it ran before the recording's first epoch
        out = original(trainer, *args, **kwargs)
        loop.train_end()
    except BaseException:
        loop.stop(left=False)
        raise
    finally:
        if callback in handler.callbacks:
            handler.callbacks.remove(callback)
        trainer.__dict__.pop("evaluate", None)
        if folder is not None:
            trainer.args.eval_on_start = eval_on_start
            shutil.rmtree(folder, ignore_errors=True)
    loop.stop(left=True)
    return out
