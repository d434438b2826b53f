"""Values derived from clocks (and unseeded randomness) are left out of the fidelity check; the
values printed beside them are still compared."""

from __future__ import annotations

from typing import Any

import pytest

from florc.contract import CompileResult, ReplayPlan
from florc.runtime import fidelity
from florc.runtime import state as st
from florc.runtime.replay import ReplaySession
from florc.transforms.compiler import compile_project

SCRIPT = '''\
import logging
import os
import random
import time
from datetime import datetime
from time import perf_counter

logger = logging.getLogger("train")


def log(msg):
    print(msg)


class Timer:
    def start(self):
        self.t0 = perf_counter()

    def ms(self):
        return (perf_counter() - self.t0) * 1000


def estimate_mfu(n, dt):
    return n / dt / 1e12


class Trainer:
    def fit(self):
        for step in range(2):
            self.iter_time = time.time()
            self.loss = 0.5 / (step + 1)
            print(f"step {step} loss {self.loss} took {time.time() - self.iter_time:.3f}s")


timer = Timer()
start_time = time.time()
t0 = time.time()
running_mfu = -1.0
times = []
random.seed(0)
for epoch in range(3):
    timer.start()
    loss = 1.0 / (epoch + 1)
    t1 = time.time()
    dt = t1 - t0
    t0 = t1
    times.append(dt)
    mfu = estimate_mfu(100, dt)
    running_mfu = mfu if running_mfu == -1.0 else 0.9 * running_mfu + 0.1 * mfu
    print(f"iter {epoch}: loss {loss:.4f}, time {dt*1000:.2f}ms, mfu {running_mfu*100:.2f}%")
    print("epoch", epoch, "loss", loss, "SPS:", int(epoch / (time.time() - start_time)))
    print("step %d loss %.5f %.3f ms/batch" % (epoch, loss, timer.ms()))
    print("epoch {} avg {a:.3f}s loss {:.4f}".format(epoch, loss, a=sum(times) / len(times)))
    logger.info("epoch %d took %.2f s", epoch, dt)
    log(f"elapsed {dt:.2f}")
    print(f"""loss {loss:.4f}
at {datetime.now()}""")
    print(os.urandom(2).hex(), loss, sep=" | ")
    print(f"loss only {loss:.4f} lr {random.random():.4f}")
    print(f"timer {timer.t0:.3f} loss {loss:.4f}")
'''


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> CompileResult:
    root = tmp_path_factory.mktemp("clocks")
    (root / "train.py").write_text(SCRIPT)
    return compile_project(root / "train.py", root)


class _Statements:
    """Log statements by how their code starts."""

    def __init__(self, compiled: CompileResult) -> None:
        self.all: list[dict[str, Any]] = compiled.files["train.py"].log_statements

    def __getitem__(self, start: str) -> dict[str, Any]:
        (found,) = [ls for ls in self.all if ls["code"].startswith(start)]
        return found


def _statements(compiled: CompileResult) -> _Statements:
    return _Statements(compiled)


def _shape(ls: dict[str, Any]) -> list[Any]:
    return [p[1] if p[0] == "text" else p[1] or "=" for p in ls["shapes"][0]]


def test_each_formatting_style_marks_the_clock_values(compiled: CompileResult) -> None:
    ls = _statements(compiled)
    # nanoGPT's line: dt from time.time(), mfu through a function of the module, a running mean
    assert _shape(ls['print(f"iter {epoch}: ']) == [
        "iter ", "=", ": loss ", "=", ", time ", "clock", "ms, mfu ", "clock", "%",
    ]  # fmt: skip
    assert _shape(ls['print("epoch", epoch, ']) == [
        "epoch ", "=", " loss ", "=", " SPS: ", "clock",
    ]  # fmt: skip
    # a timer object keeping its start in an attribute, read back by a method
    assert _shape(ls['print("step %d loss %.']) == [
        "step ", "=", " loss ", "=", " ", "clock", " ms/batch",
    ]  # fmt: skip
    # a list the times are appended to
    assert _shape(ls['print("epoch {} avg {a']) == [
        "epoch ", "=", " avg ", "clock", "s loss ", "=",
    ]  # fmt: skip
    # logging: the handler's prefix, then the message's own % operands
    assert _shape(ls['logger.info("epoch %d t']) == ["=", "epoch ", "=", " took ", "clock", " s"]
    # a helper's parameter, from its call sites
    assert ls["print(msg)"]["shapes"] == [[["value", "clock"]]]
    # one print, two lines
    triple = ls['print(f"""loss {loss:.']["shapes"]
    assert [[p[1] for p in line] for line in triple] == [["loss ", None], ["at ", "clock"]]
    # attributes set in methods, read in a method or through an instance
    assert _shape(ls['print(f"step {step} loss {self.loss}']) == [
        "step ", "=", " loss ", "=", " took ", "clock", "s",
    ]  # fmt: skip
    assert _shape(ls['print(f"timer {timer.t0']) == ["timer ", "clock", " loss ", "="]
    # unseeded randomness is left out too, under its own name
    urandom = ls["print(os.urandom(2).he"]
    assert urandom["left_out"] == "random"
    assert _shape(urandom) == ["random", " | ", "="]


def test_statements_without_clock_values_are_compared_as_text(compiled: CompileResult) -> None:
    ls = _statements(compiled)
    # a seeded generator is replayed exactly: not left out
    assert "shapes" not in ls['print(f"loss only {lo']


def test_checkpointed_state_derived_from_clocks_is_left_out(compiled: CompileResult) -> None:
    loops = {lp.scope: lp for lp in compiled.files["train.py"].loops}
    left = loops["<module>"].left_out
    assert {"t0", "dt", "times", "mfu", "running_mfu", "timer.t0"} <= set(left)
    assert "loss" not in left and "epoch" not in left
    fit = loops["Trainer.fit"]
    assert "self.iter_time" in fit.left_out, fit
    assert not any("loss" in p for p in fit.left_out)


# --- the comparison ----------------------------------------------------------------------

SHAPE = [
    ["text", "epoch "],
    ["value", None],
    ["text", " loss "],
    ["value", None],
    ["text", " time "],
    ["value", "clock"],
    ["text", "s"],
]


def test_only_the_clock_values_may_differ() -> None:
    c = fidelity.compare_shaped(
        "epoch 3 loss 0.2500 time 1.234s", "epoch 3 loss 0.2500 time 9.9s", [SHAPE]
    )
    assert (c.diff, c.ok, c.compared, c.left_out) == (0.0, True, True, {"clock": 1})


def test_a_different_loss_beside_a_clock_value_still_diverges() -> None:
    c = fidelity.compare_shaped(
        "epoch 3 loss 0.2500 time 1.2s", "epoch 3 loss 0.2600 time 1.2s", [SHAPE]
    )
    assert not c.ok and c.compared and c.diff == pytest.approx(0.01)
    c = fidelity.compare_shaped(
        "epoch 3 loss 0.2500 time 1.2s", "epoch 4 loss 0.2500 time 1.2s", [SHAPE]
    )
    assert not c.ok


def test_a_line_outside_the_shapes_is_left_out_whole_and_counted() -> None:
    c = fidelity.compare_shaped("tensor([1.0,\n 2.0])", "tensor([1.0,\n 3.0])", [SHAPE], "clock")
    assert (c.compared, c.ok, c.left_out) == (False, True, {"clock": 1})
    # one fits and the other does not: they differ in kind
    c = fidelity.compare_shaped("epoch 3 loss 0.25 time 1.2s", "nan", [SHAPE])
    assert c.compared and not c.ok


def test_the_verdict_says_how_many_values_were_left_out() -> None:
    ev = [
        fidelity.Evidence("train.py:9", 1, 0.0, True, True, {"clock": 2}),
        fidelity.Evidence("train.py:9", 2, 0.0, True, False, {"clock": 1, "random": 1}),
        fidelity.Evidence("train.py:5", 2, 0.0, True),
    ]
    assert fidelity.verdict(ev).line == (
        "fidelity: exact (2 recorded values and states compared; 3 clock-derived values and "
        "1 value from unseeded randomness left out)"
    )
    only = fidelity.verdict(ev[1:2]).line
    assert only.startswith("fidelity: not checked") and "1 clock-derived value and" in only
    bad = ev + [fidelity.Evidence("train.py:9", 3, 0.01, False, True, {"clock": 1})]
    assert fidelity.verdict(bad).line == (
        "fidelity: diverged at train.py:9 epoch 3 (4 clock-derived values and 1 value from "
        "unseeded randomness left out)"
    )


def test_state_attributes_from_clocks_are_dropped_before_comparing() -> None:
    timer = st.Node("object", children={"t0": st.Node("value", 1.5), "n": st.Node("value", 3)})
    snap = st.Snapshot(paths={"timer": timer, "dt": st.Node("value", 0.2)})
    dropped = fidelity.leave_out(snap, {"timer.t0": "clock", "dt": "clock", "gone": "clock"})
    assert dropped == {"clock": 2}
    assert set(snap.paths) == {"timer"} and set(timer.children) == {"n"}


# --- through the manifest, as replay compares ------------------------------------------


def _replayed(compiled: CompileResult, recorded: str, replayed: str) -> str:
    """The verdict when the epoch-level nanoGPT line was recorded as `recorded` and a replay
    printed `replayed`."""
    ls = _statements(compiled)['print(f"iter {epoch}: ']
    sid = f"train.py:{ls['line']}"
    plan = ReplayPlan(
        targets=[0],
        probed=set(),
        new_statements=set(),
        run_after_loop=False,
        checkpoints={},
        final_boundary=None,
        statement_map={sid: sid},
        recorded_values={(sid, 0, None): [recorded]},
    )
    session = ReplaySession(None, 2, compiled, plan)  # type: ignore[arg-type]
    session.iteration, session.epoch = 0, 0
    session.on_line(replayed, sid)
    return fidelity.verdict(session.evidence).line


def test_replay_leaves_the_time_out_and_compares_the_loss(compiled: CompileResult) -> None:
    rec = "iter 0: loss 1.0000, time 12.41ms, mfu 0.81%"
    assert _replayed(compiled, rec, "iter 0: loss 1.0000, time 9.02ms, mfu 1.11%") == (
        "fidelity: exact (1 recorded values and states compared; 2 clock-derived values left out)"
    )
    assert _replayed(compiled, rec, "iter 0: loss 1.0100, time 12.41ms, mfu 0.81%").startswith(
        "fidelity: diverged at train.py:"
    )


def test_old_evidence_without_the_new_fields_reads_back() -> None:
    ev = fidelity.Evidence(**{"where": "train.py:3", "epoch": 1, "diff": 0.0, "ok": True})
    assert ev.compared and ev.left_out == {}


def test_an_attribute_another_module_sets_from_a_clock_is_left_out(tmp_path: Any) -> None:
    # minGPT's shape: the Trainer (its own module) times each iteration in `self.iter_dt`; the
    # script's callback prints `trainer.iter_dt` beside the loss
    (tmp_path / "trainer.py").write_text(
        "import time\n\n\nclass Trainer:\n"
        "    def run(self, callback):\n"
        "        self.iter_time = time.time()\n"
        "        for self.iter_num in range(3):\n"
        "            tnow = time.time()\n"
        "            self.iter_dt = tnow - self.iter_time\n"
        "            self.iter_time = tnow\n"
        "            self.loss = 1.0 / (self.iter_num + 1)\n"
        "            callback(self)\n"
    )
    (tmp_path / "train.py").write_text(
        "from trainer import Trainer\n\n\n"
        "def on_batch(trainer):\n"
        '    print(f"iter_dt {trainer.iter_dt * 1000:.2f}ms; loss {trainer.loss:.5f}")\n\n\n'
        "Trainer().run(on_batch)\n"
    )
    result = compile_project(tmp_path / "train.py", tmp_path)
    (ls,) = result.files["train.py"].log_statements
    assert ls["left_out"] == "clock"
    assert [kind for part, kind in ls["shapes"][0] if part == "value"] == ["clock", None]
