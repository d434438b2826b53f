"""The pure parts of driving transformers' epochs (florc/runtime/huggingface.py, the compiler's
framework main loop): ids, where a new statement lies against the train call, what is refused,
the checkpoint folder the Trainer resumes from. No transformers needed."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from florc.contract import (
    framework_loop_id,
    is_framework_loop,
    is_lightning_loop,
    is_transformers_loop,
    loop_framework,
    possessive,
    transformers_loop_id,
)
from florc.runtime import state as st
from florc.runtime.huggingface import (
    FILES,
    data_refusal,
    dump_state,
    manifest_for,
    refusal,
    updates_per_epoch,
    write_checkpoint_folder,
)
from florc.transforms.align import new_statement_after_main_loop
from florc.transforms.compiler import compile_modules


def test_framework_loop_ids() -> None:
    tid = transformers_loop_id("sub/train.py")
    assert tid == framework_loop_id("sub/train.py", "Hugging Face transformers")
    assert tid == "sub/train.py:<transformers>:0"
    assert framework_loop_id("t.py", "PyTorch Lightning") == "t.py:<lightning>:0"
    assert is_transformers_loop(tid) and is_framework_loop(tid) and not is_lightning_loop(tid)
    assert loop_framework(tid) == "Hugging Face transformers"
    assert loop_framework("t.py:<lightning>:0") == "PyTorch Lightning"
    assert loop_framework("train.py:<module>:0") is None and not is_framework_loop(None)
    assert possessive("Hugging Face transformers") == "Hugging Face transformers'"
    assert possessive("PyTorch Lightning") == "PyTorch Lightning's"
    m = manifest_for(tid, {"relpath": "sub/train.py", "line": 40, "col": 10})
    assert (m.relpath, m.line, m.col) == ("sub/train.py", 40, 10)
    assert m.changeset == m.required == ["transformers", "rng", "attrs"] and not m.unbounded


SCRIPT = """\
from transformers import Trainer, TrainingArguments


class LossTrainer(Trainer):
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        return model(**inputs).loss


def main():
    trainer = LossTrainer(model=None, args=TrainingArguments("out"))
    result = trainer.train()
    print("after, in main")


main()
print("after, at module level")
"""


def test_a_new_statement_after_the_train_call_in_its_scope_runs_after_the_loop(
    tmp_path: Path,
) -> None:
    (tmp_path / "train.py").write_text(SCRIPT)
    compiled = compile_modules(tmp_path / "train.py", tmp_path)
    result = compiled.result
    assert result.main_loop == "train.py:<transformers>:0"
    assert result.framework is not None and result.framework["line"] == 11

    def after(line: int) -> bool:
        return new_statement_after_main_loop(
            {f"train.py:{line}": (line, line)}, compiled.modules, result.main_loop, result.framework
        )

    assert after(12)  # after the call, in main()
    assert not after(6)  # in compute_loss: runs during train()
    assert not after(16)  # module level, another scope than the call's


def test_steps_per_epoch_and_what_the_data_makes_refused() -> None:
    assert updates_per_epoch(6, 1) == 6 and updates_per_epoch(7, 2) == 4
    assert updates_per_epoch(1, 4) == 1
    assert data_refusal(-1, 6, 1) is None
    assert data_refusal(18, 6, 1) is None  # max_steps ends with epoch 3
    why = data_refusal(15, 6, 1)
    assert why is not None and "inside epoch 2 (6 steps per epoch)" in why
    assert "multiple of 6" in why
    assert data_refusal(8, 7, 2) is None  # 4 steps per epoch with accumulation
    no_length = data_refusal(12, None, 1)
    assert no_length is not None and "IterableDataset" in no_length


def _trainer(**args: object) -> SimpleNamespace:
    base: dict[str, object] = {"world_size": 1, "n_gpu": 1}
    base.update(args)
    return SimpleNamespace(args=SimpleNamespace(**base), accelerator=SimpleNamespace())


def test_several_processes_or_gpus_are_refused() -> None:
    assert refusal(_trainer()) is None
    assert refusal(_trainer(n_gpu=0)) is None  # CPU
    why = refusal(_trainer(world_size=4))
    assert why is not None and "trains in 4 processes" in why and "torchrun" in why
    gpus = refusal(_trainer(n_gpu=2))
    assert gpus is not None and "2 GPUs (DataParallel)" in gpus
    accel = _trainer()
    accel.accelerator = SimpleNamespace(num_processes=2)
    assert "2 processes" in str(refusal(accel))


@dataclass
class _State:
    global_step: int = 0
    epoch: float = 0.0
    log_history: list[dict[str, Any]] = field(default_factory=list)
    stateful_callbacks: dict[str, Any] = field(default_factory=dict)


def _live_trainer(step: int) -> SimpleNamespace:
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
    return SimpleNamespace(
        state=_State(global_step=step, epoch=2.0, log_history=[{"loss": 0.5, "step": step}]),
        model=model,
        optimizer=optimizer,
        lr_scheduler=scheduler,
        accelerator=SimpleNamespace(scaler=None),
        callback_handler=SimpleNamespace(callbacks=[]),
        control=SimpleNamespace(),
        _tr_loss=torch.tensor(0.25),
        _globalstep_last_logged=step,
        _total_loss_scalar=1.5,
    )


def test_a_boundary_state_is_a_checkpoint_folder_the_trainer_resumes_from(tmp_path: Path) -> None:
    trainer = _live_trainer(12)
    saved = dump_state(trainer, epoch=2, per_epoch=6)
    assert saved["counters"]["_total_loss_scalar"] == 1.5
    assert saved["counters"]["_globalstep_last_logged"] == 12
    folder = Path(write_checkpoint_folder(saved))
    try:
        names = sorted(p.name for p in folder.iterdir())
        assert names == sorted(
            FILES[k] for k in ("model", "optimizer", "scheduler", "trainer_state")
        )
        weights = torch.load(folder / FILES["model"], weights_only=True)
        assert torch.equal(weights["weight"], trainer.model.weight)
        state = json.loads((folder / FILES["trainer_state"]).read_text())
        assert state["global_step"] == 12 and state["log_history"] == [{"loss": 0.5, "step": 12}]
    finally:
        import shutil

        shutil.rmtree(folder)


def test_an_epoch_that_did_not_start_at_its_step_is_not_checkpointed() -> None:
    # an earlier epoch stopped early (should_epoch_stop): the Trainer would resume it by skipping
    with pytest.raises(st.CannotSnapshot, match="epoch 2 starts at optimizer step 10, not 12"):
        dump_state(_live_trainer(10), epoch=2, per_epoch=6)


def test_exported_callback_states_and_counters_are_put_back() -> None:
    callbacks = pytest.importorskip("transformers.trainer_callback")
    from florc.runtime.huggingface import TrainerLoop, TrainerScope

    early = callbacks.EarlyStoppingCallback(early_stopping_patience=3)
    trainer = _live_trainer(12)
    trainer.callback_handler.callbacks = [early]
    trainer.control = callbacks.TrainerControl()
    early.early_stopping_patience_counter = 2
    saved = dump_state(trainer, epoch=2, per_epoch=6)
    stored = json.loads(saved["trainer_state"])["stateful_callbacks"]
    assert stored["EarlyStoppingCallback"]["attributes"] == {"early_stopping_patience_counter": 2}
    # a fresh run of the script at replay: its callback and counters as they start
    fresh = callbacks.EarlyStoppingCallback(early_stopping_patience=3)
    trainer.callback_handler.callbacks = [fresh]
    trainer._total_loss_scalar = 0.0
    loop_id = transformers_loop_id("train.py")
    loop = TrainerLoop(None, manifest_for(loop_id, None), TrainerScope(trainer))
    loop._put_back(trainer, saved)
    assert fresh.early_stopping_patience_counter == 2
    assert trainer._total_loss_scalar == 1.5
