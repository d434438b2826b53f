"""The pure parts of driving Lightning's epochs (florc/runtime/lightning.py, the compiler's
framework main loop): ids, where a new statement lies against the fit call, what is refused,
and that florc loads no framework for a script that does not import it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from florc.contract import is_lightning_loop, lightning_loop_id
from florc.runtime.lightning import manifest_for, refusal, unusable_reason
from florc.transforms.align import new_statement_after_main_loop
from florc.transforms.compiler import compile_modules


def test_lightning_loop_ids() -> None:
    assert lightning_loop_id("sub/train.py") == "sub/train.py:<lightning>:0"
    assert is_lightning_loop("sub/train.py:<lightning>:0")
    assert not is_lightning_loop("train.py:<module>:0") and not is_lightning_loop(None)
    m = manifest_for("t.py:<lightning>:0", {"relpath": "t.py", "line": 12, "col": 5})
    assert (m.relpath, m.line, m.col) == ("t.py", 12, 5)
    assert m.changeset == m.required == ["lightning", "rng", "attrs"] and not m.unbounded


SCRIPT = """\
import lightning as L


class M(L.LightningModule):
    def training_step(self, batch, batch_idx):
        return batch


def main():
    trainer = L.Trainer(max_epochs=2)
    trainer.fit(M())
    print("after, in main")


main()
print("after, at module level")
"""


def test_a_new_statement_after_the_fit_call_in_its_scope_runs_after_the_loop(
    tmp_path: Path,
) -> None:
    (tmp_path / "train.py").write_text(SCRIPT)
    compiled = compile_modules(tmp_path / "train.py", tmp_path)
    result = compiled.result
    assert result.main_loop == "train.py:<lightning>:0"
    assert result.framework is not None and result.framework["line"] == 11

    def after(line: int) -> bool:
        return new_statement_after_main_loop(
            {f"train.py:{line}": (line, line)}, compiled.modules, result.main_loop, result.framework
        )

    assert after(12)  # after the call, in main()
    assert not after(6)  # in training_step: runs during the fit
    assert not after(16)  # module level, another scope than the call's
    assert not new_statement_after_main_loop(
        {"train.py:12": (12, 12)}, compiled.modules, result.main_loop, None
    )


def _trainer(**kw: object) -> SimpleNamespace:
    base: dict[str, object] = {
        "num_devices": 1,
        "num_nodes": 1,
        "world_size": 1,
        "max_steps": -1,
        "strategy": object(),
        "fit_loop": SimpleNamespace(_combined_loader=None),
    }
    base.update(kw)
    return SimpleNamespace(**base)


def test_several_devices_are_refused_and_max_steps_makes_checkpoints_unusable() -> None:
    assert refusal(_trainer()) is None
    why = refusal(_trainer(num_devices=2))
    assert why is not None and "trains on 2 devices" in why and "devices=1" in why
    assert "on 8 devices" in str(refusal(_trainer(num_nodes=2, world_size=8, num_devices=4)))
    assert unusable_reason(_trainer()) is None
    assert "max_steps" in str(unusable_reason(_trainer(max_steps=100)))


def test_an_iterable_dataset_without_state_makes_checkpoints_unusable() -> None:
    import torch.utils.data as tud

    class Stream(tud.IterableDataset):
        def __iter__(self):  # type: ignore[no-untyped-def]
            return iter(range(3))

    class Resumable(Stream):
        def state_dict(self) -> dict[str, int]:
            return {}

    def with_data(ds: object) -> SimpleNamespace:
        loader = SimpleNamespace(flattened=[SimpleNamespace(dataset=ds)])
        return _trainer(fit_loop=SimpleNamespace(_combined_loader=loader))

    assert "IterableDataset (Stream) without state_dict()" in str(
        unusable_reason(with_data(Stream()))
    )
    assert unusable_reason(with_data(Resumable())) is None
    assert unusable_reason(with_data(tud.TensorDataset(torch_ones()))) is None


def torch_ones() -> object:
    import torch

    return torch.ones(2)


def test_florc_imports_no_framework_for_a_script_that_does_not() -> None:
    code = (
        "import sys, florc.runtime.runner, florc.runtime.intercept as i\n"
        "i.install()\n"
        "import argparse, torch\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('lightning', 'pytorch_lightning', 'transformers')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_plain_attributes_are_data_not_references() -> None:
    """What a framework's checkpoint leaves out of a user's module or callback and florc keeps:
    plain data (lists, counters, tensors), not references to other objects."""
    import torch

    from florc.runtime.frameworks import plain_attributes

    class Holder:
        pass

    h = Holder()
    h.history = [0.5, 0.25]
    h.count = 3
    h.best = {"epoch": 2, "loss": torch.tensor(0.1)}
    h.name = "run"
    h.other = Holder()  # a reference: left as it is
    h.mixed = [1, Holder()]
    h._private = [1]
    h.fn = len
    assert set(plain_attributes(h)) == {"history", "count", "best", "name"}
