"""The compiler: instrumented output, main-loop detection, changesets, log statements."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import EXAMPLES, REPO, clean_env

from florc.errors import SourceError
from florc.runtime.linemap import compile_instrumented
from florc.transforms.compiler import compile_project

TRAIN = '''\
"""A tiny training script."""
import torch  # the framework

model = torch.nn.Linear(2, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
data = [torch.randn(4, 2) for _ in range(3)]


def train(epoch):
    total = 0.0
    for x in data:
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss.item()
    return total


for epoch in range(3):
    t = train(epoch)
    print(f"epoch {epoch} loss {t:.4f}")
'''


def compile_text(tmp_path: Path, text: str, name: str = "train.py", **kw):
    path = tmp_path / name
    path.write_text(text)
    return compile_project(path, tmp_path, **kw)


def test_instrumented_output_compiles_and_keeps_comments(tmp_path: Path) -> None:
    result = compile_text(tmp_path, TRAIN)
    out = result.files["train.py"].instrumented
    compile(out, "train.py", "exec")
    assert "# the framework" in out
    assert '"""A tiny training script."""' in out.splitlines()[0]


def test_instrumenting_twice_changes_nothing(tmp_path: Path) -> None:
    once = compile_text(tmp_path, TRAIN).files["train.py"].instrumented
    twice = compile_text(tmp_path, once, name="again.py").files["again.py"].instrumented
    assert twice == once


def test_main_loop_follows_calls_into_project_functions(tmp_path: Path) -> None:
    result = compile_text(tmp_path, TRAIN)
    assert result.main_loop == "train.py:<module>:0"
    batch = result.loop("train.py:train:0")
    assert batch is not None
    assert {"model", "opt", "total"} <= set(batch.changeset)
    assert "total" in batch.required  # read by `return total` after the loop
    assert not batch.unbounded


def test_main_loop_pragma_overrides(tmp_path: Path) -> None:
    text = TRAIN.replace(
        "def train(epoch):\n    total = 0.0\n    for x in data:",
        "def train(epoch):\n    total = 0.0\n    for x in data:  # florc: main-loop",
    )
    assert compile_text(tmp_path, text).main_loop == "train.py:train:0"


def test_unbounded_effects_make_a_block_re_execute(tmp_path: Path) -> None:
    text = TRAIN.replace(
        "        total += loss.item()\n", "        total += loss.item()\n        exec('pass')\n"
    )
    batch = compile_text(tmp_path, text).loop("train.py:train:0")
    assert batch is not None and any("exec()" in r for r in batch.unbounded)
    assert batch.unbounded[0].startswith("train.py:")


def test_return_inside_a_loop_is_unbounded(tmp_path: Path) -> None:
    text = TRAIN.replace(
        "        total += loss.item()\n",
        "        total += loss.item()\n        if total > 9:\n            return total\n",
    )
    batch = compile_text(tmp_path, text).loop("train.py:train:0")
    assert batch is not None and any("return" in r for r in batch.unbounded)


def test_log_statements_recognised(tmp_path: Path) -> None:
    text = (
        TRAIN
        + """
import logging
log = logging.getLogger(__name__)
log.info("done")
if t > 1:
    print("big")
"""
    )
    codes = [ls["code"] for ls in compile_text(tmp_path, text).files["train.py"].log_statements]
    assert 'print(f"epoch {epoch} loss {t:.4f}")' in codes
    assert 'log.info("done")' in codes
    assert any(c.startswith("if t > 1:") for c in codes)


def test_new_name_used_only_by_logs_is_a_log_statement(tmp_path: Path) -> None:
    edited = TRAIN.replace(
        '    print(f"epoch', '    gn = model.weight.norm()\n    print(gn)\n    print(f"epoch'
    )
    known = {
        "train.py": frozenset({"model", "epoch", "t", "train", "print", "torch", "data", "opt"})
    }
    codes = [
        ls["code"]
        for ls in compile_text(tmp_path, edited, known_names=known).files["train.py"].log_statements
    ]
    assert "gn = model.weight.norm()" in codes


def test_syntax_error_has_position(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as info:
        compile_text(tmp_path, "for x in range(3)\n    pass\n")
    assert str(info.value).startswith("train.py:1:")


def test_reserved_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="reserved"):
        compile_text(tmp_path, "__florc_x = 1\n")


def test_traceback_points_at_the_users_line(tmp_path: Path) -> None:
    text = "import math\nfor i in range(2):\n    for j in range(2):\n        pass\n    x = 1 / 0\n"
    result = compile_text(tmp_path, text)
    fm = result.files["train.py"]
    code = compile_instrumented(fm.source, fm.instrumented, str(tmp_path / "train.py"))
    with pytest.raises(ZeroDivisionError) as info:
        exec(code, {"__name__": "x"})
    tb = info.tb
    while tb.tb_next is not None:
        tb = tb.tb_next
    assert tb.tb_lineno == 5


def test_runtime_never_imports_libcst() -> None:
    code = (
        "import sys; import florc.runtime.api, florc.runtime.session, florc.runtime.runner,"
        " florc.runtime.state, florc.store.index; assert 'libcst' not in sys.modules;"
        " assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=clean_env())


LOADER = """\
import torch
from torch.utils.data import DataLoader, TensorDataset

x, y = torch.randn(64, 4), torch.randn(64, 1)
model = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
batched = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)
unbatched = DataLoader(TensorDataset(x, y), batch_size=None)
for epoch in range(2):
    for xb, yb in batched:
        loss = (model(xb) - yb).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    for i, (xs, ys) in enumerate(unbatched):
        xs.mul_(1.0)
"""


def test_batches_of_a_dataloader_do_not_alias_its_dataset(tmp_path: Path) -> None:
    result = compile_text(tmp_path, LOADER)
    loops = {lp.line: lp for lp in result.files["train.py"].loops}
    batched = loops[10]
    assert {"model", "opt", "xb", "yb"} <= set(batched.changeset)
    assert not {"x", "y", "batched"} & set(batched.changeset)
    assert "batched" in batched.iterated  # its generator is still captured
    # without automatic batching, samples can be views of the dataset: x and y may change
    unbatched = loops[15]
    assert {"x", "y"} <= set(unbatched.changeset)


def test_nondeterminism_is_reported_with_its_position(tmp_path: Path) -> None:
    text = LOADER.replace("shuffle=True)", "shuffle=True, persistent_workers=True)").replace(
        "model = torch.nn.Linear(4, 1)\n",
        "model = torch.nn.Linear(4, 1)\ntorch.backends.cudnn.benchmark = True\n",
    )
    warnings = compile_text(tmp_path, text).warnings
    assert any(w.startswith("train.py:8:") and "persistent_workers=True" in w for w in warnings)
    assert any(w.startswith("train.py:6:1:") and "cudnn.benchmark" in w for w in warnings)
    assert compile_text(tmp_path, LOADER).warnings == []


def test_editing_a_comment_does_not_make_a_log_statement_new(tmp_path: Path) -> None:
    from florc.transforms.align import align

    recorded = "for epoch in range(3):\n    x = epoch\n    # TODO: log more\n    print(x)  # loss\n"
    edited = "for epoch in range(3):\n    x = epoch\n    print('new', x)\n    print(x)\n"
    result = align({"t.py": recorded}, {"t.py": edited}, tmp_path, "t.py")
    assert result.new_statements == {"t.py:3"}
    assert result.statement_map == {"t.py:4": "t.py:4"}


def test_deleting_items_changes_a_container_deleting_a_name_is_unbounded(tmp_path: Path) -> None:
    text = (
        "rewards = []\nfor episode in range(3):\n    for t in range(2):\n"
        "        rewards.append(t)\n    del rewards[:]\n    x = 1\n    del x\n"
    )
    result = compile_text(tmp_path, text)
    main = result.loop(result.main_loop)
    assert "rewards" in main.changeset
    assert [u.split(": ", 1)[1] for u in main.unbounded] == [
        "`del` removes state that a restore could not remove"
    ]
    assert main.unbounded[0].startswith("train.py:7:5")


# --- a bounded analysis ------------------------------------------------------------------------

GPT_BLOCKS = EXAMPLES / "wild" / "gpt_blocks" / "train.py"

DEEP = '''\
import torch
from torch import nn


class Leaf(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.fc(x)


class Stack(nn.Module):
    """Blocks containing blocks: a Stack holds Leaves and Stacks, and runs them in turn."""

    def __init__(self, depth):
        super().__init__()
        inner = [Stack(depth - 1) for _ in range(2)] if depth > 0 else [Leaf(), Leaf()]
        self.layers = nn.ModuleList(inner)
        self.history = []

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        self.history.append(x.shape[0])
        return x


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.ModuleDict(dict(stack=Stack(2), head=nn.Linear(4, 1)))
        self.child = None

    def forward(self, x):
        if self.child is not None:
            x = self.child(x)  # recursion through forward
        for block in self.body.stack.layers:
            x = block(x)
        return self.body.head(x)


class Node:
    def __init__(self, value, next=None):
        self.value = value
        self.next = next


def visit(module, seen):
    seen.append(module)
    for child in module.layers:
        visit(child, seen)


chain = Node(1, Node(2, Node(3)))
model = Net()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for epoch in range(3):
    for step in range(2):
        loss = model(torch.randn(2, 4)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    node = chain
    while node is not None:
        node.value += 1
        node = node.next
    visit(model.body.stack, [])
    print(epoch, loss.item())
'''


def _project(path: Path):
    from florc.transforms.effects import Project
    from florc.transforms.modules import analyse_module

    return Project([analyse_module(path.read_text(), path, path.name, "__main__")])


def _assert_bounded(path: Path) -> None:
    from florc.transforms.effects import MAX_ANALYSES_PER_FUNCTION, MAX_PATH, MAX_PATHS

    project = _project(path)
    n = len(project.functions)
    # each function analysed a few times, far from the budget (which would mark it unbounded)
    assert project.analyses <= 6 * n < MAX_ANALYSES_PER_FUNCTION * n
    for key, summary in project.summaries.items():
        assert len(summary.mutated) <= MAX_PATHS, key
        assert all(len(p) <= MAX_PATH for p in summary.mutated), key
        assert not any("did not converge" in u.reason for u in summary.unbounded), key
    result = compile_project(path, path.parent)
    main = result.loop(result.main_loop)
    assert main is not None and "model" in main.changeset
    assert {"optimizer", "opt"} & set(main.changeset)
    for fm in result.files.values():
        for lp in fm.loops:
            assert all(len(p.split(".")) <= MAX_PATH for p in lp.changeset), lp.loop_id
            assert len(lp.changeset) <= MAX_PATHS, lp.loop_id
            assert not any("did not converge" in r for r in lp.unbounded), lp.loop_id


def test_gpt_blocks_analysis_ends_bounded_and_keeps_model_and_optimizer() -> None:
    _assert_bounded(GPT_BLOCKS)
    result = compile_project(GPT_BLOCKS, GPT_BLOCKS.parent)
    main = result.loop(result.main_loop)
    assert main is not None and main.line == 120
    assert {"model", "optimizer", "step"} <= set(main.required)
    batch = result.loop(f"{main.relpath}:<module>:1")
    assert batch is not None and not batch.unbounded
    assert {"model", "optimizer", "step"} <= set(batch.changeset)
    forward = result.loop(f"{main.relpath}:GPT.forward:0")
    assert forward is not None and "self.transformer" in forward.changeset


def test_nested_blocks_recursion_and_linked_lists_stay_bounded(tmp_path: Path) -> None:
    path = tmp_path / "train.py"
    path.write_text(DEEP)
    _assert_bounded(path)
    result = compile_project(path, tmp_path)
    assert result.main_loop == "train.py:<module>:0"
    main = result.loop(result.main_loop)
    assert main is not None and {"model", "opt", "chain.value"} <= set(main.changeset)
    walk = result.loop("train.py:<module>:2")  # `node = node.next`: every node of chain changes
    assert walk is not None and not walk.unbounded
    # the first three nodes' values by name, the rest of the list as the object that holds it
    assert {"chain.value", "chain.next.value", "chain.next.next.next"} <= set(walk.changeset)


def test_a_fixpoint_out_of_budget_re_executes_the_blocks_it_reaches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from florc.api import report
    from florc.transforms import effects

    path = tmp_path / "train.py"
    path.write_text(DEEP)
    monkeypatch.setattr(effects, "MAX_ANALYSES_PER_FUNCTION", 0)  # one analysis per function
    project = _project(path)
    stuck = {
        k
        for k, s in project.summaries.items()
        if any("did not converge" in u.reason for u in s.unbounded)
    }
    assert stuck, "the budget should have run out before the summaries settled"
    text = report(str(path))
    line = DEEP.splitlines().index("    for step in range(2):") + 1
    batch = text.split(f"train.py:{line}:5 for loop", 1)[1].split("\n\n", 1)[0]
    assert "re-executes at replay:" in batch and "analysis did not converge" in batch


def test_a_changeset_wider_than_the_limit_collapses_to_its_roots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from florc.api import report
    from florc.transforms import effects

    fields = "\n".join(f"        state.f{i}.x += 1" for i in range(6))
    text = f"import torch\nstate = object()\nfor epoch in range(3):\n    for b in range(2):\n{fields}\n"
    path = tmp_path / "train.py"
    path.write_text(text)
    monkeypatch.setattr(effects, "MAX_PATHS", 4)
    batch = compile_project(path, tmp_path).loop("train.py:<module>:1")
    assert batch is not None and batch.changeset == ["b", "state"] and not batch.unbounded
    names = "\n".join(f"        v{i} = {i}" for i in range(6))
    path.write_text(f"for epoch in range(3):\n    for b in range(2):\n{names}\n")
    out = report(str(path))
    assert "more than the analysis tracks (4)" in out


# --- which loop is the main loop: the one that trains -------------------------------------


def compile_files(tmp_path: Path, files: dict[str, str], script: str = "train.py"):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return compile_project(tmp_path / script, tmp_path)


RL = """\
import torch

policy = torch.nn.Linear(4, 2)
optimizer = torch.optim.Adam(policy.parameters(), lr=0.01)
rewards = []


class Env:
    def reset(self):
        return torch.zeros(4)

    def step(self, action):
        return torch.ones(4), 1.0


env = Env()


def finish_episode():
    loss = policy(torch.ones(4)).sum() * sum(rewards)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    del rewards[:]


for warmup in range(2):  # only steps the environment
    state = env.reset()
    for t in range(3):
        state, reward = env.step(0)

for episode in range(5):
    state = env.reset()
    for t in range(3):
        action = int(policy(state).argmax())
        state, reward = env.step(action)
        rewards.append(reward)
    finish_episode()
"""


def test_env_step_is_not_a_training_step(tmp_path: Path) -> None:
    result = compile_text(tmp_path, RL)
    assert result.main_loop == "train.py:<module>:2"  # the episode loop, not the warm-up
    assert result.main_loop_rule == "trains"
    assert result.main_loop_reason == (
        "the outermost loop that trains: it reaches loss.backward() at train.py:22:5 "
        "through finish_episode()"
    )
    # without the update, no loop trains: the first loop with a nested loop is the fallback
    untrained = compile_text(
        tmp_path, RL.replace("    finish_episode()\n", "    rewards.clear()\n")
    )
    assert untrained.main_loop == "train.py:<module>:0"
    assert untrained.main_loop_rule == "fallback"
    assert untrained.main_loop_reason.startswith("fallback: no loop reaches a training step")
    assert "a nested loop at train.py:29:5" in untrained.main_loop_reason


LBFGS = """\
import torch

rows = [[1.0, 2.0], [3.0, 4.0]]
total = 0.0
for row in rows:  # preprocessing with a nested loop
    for v in row:
        total += v
x = torch.tensor(rows)
model = torch.nn.Linear(2, 1)
opt = torch.optim.LBFGS(model.parameters(), lr=0.1)
for i in range(4):
    def closure():
        opt.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        return loss
    opt.step(closure)
    print(i)
"""


@pytest.mark.parametrize("step", ["opt.step(closure)", "opt.step(lambda: closure())"])
def test_an_lbfgs_closure_step_trains(tmp_path: Path, step: str) -> None:
    result = compile_text(tmp_path, LBFGS.replace("opt.step(closure)", step))
    assert result.main_loop == "train.py:<module>:2"
    assert result.main_loop_reason.endswith(f"{step} at train.py:17:5")


TRAINER = """\
class Trainer:
    def __init__(self, model, opt, data):
        self.model, self.opt, self.data = model, opt, data

    def fit(self, epochs):
        for epoch in range(epochs):
            self.train_epoch()

    def train_epoch(self):
        for x in self.data:
            loss = self.model(x).sum()
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
"""


def test_the_training_loop_inside_a_method_of_a_local_module(tmp_path: Path) -> None:
    script = (
        "import torch\nfrom trainer import Trainer\n\n"
        "vocab = {}\nfor line in ['a b', 'b c']:\n    for word in line.split():\n"
        "        vocab.setdefault(word, len(vocab))\n"
        "model = torch.nn.Linear(2, 1)\n"
        "t = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), [torch.ones(2)])\n"
        "t.fit(3)\n"
    )
    result = compile_files(tmp_path, {"trainer.py": TRAINER, "train.py": script})
    assert result.main_loop == "trainer.py:Trainer.fit:0"
    assert result.main_loop_reason == (
        "the outermost loop that trains: it reaches loss.backward() at trainer.py:13:13 "
        "through Trainer.train_epoch()"
    )


DATA = """\
class Dictionary:
    def __init__(self):
        self.word2idx = {}

    def add_word(self, word):
        if word not in self.word2idx:
            self.word2idx[word] = len(self.word2idx)
        return self.word2idx[word]


class Corpus:
    def __init__(self, lines):
        self.dictionary = Dictionary()
        self.ids = self.tokenize(lines)

    def tokenize(self, lines):
        ids = []
        for line in lines:
            for word in line.split() + ["<eos>"]:
                ids.append(self.dictionary.add_word(word))
        return ids
"""


@pytest.mark.parametrize(
    "imports, make",
    [("import data", "data.Corpus"), ("from data import Corpus", "Corpus")],
)
def test_a_data_loop_in_a_local_module_called_first_never_wins(
    tmp_path: Path, imports: str, make: str
) -> None:
    script = f"""\
import torch
{imports}

corpus = {make}(["the cat sat", "the dog ran"])
ids = torch.tensor(corpus.ids)
model = torch.nn.Embedding(len(corpus.dictionary.word2idx), 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)


def train_epoch():
    for i in range(0, len(ids) - 1, 2):
        loss = model(ids[i : i + 2]).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()


for epoch in range(3):
    train_epoch()
"""
    result = compile_files(tmp_path, {"data.py": DATA, "train.py": script})
    assert result.main_loop == "train.py:<module>:0"
    assert "loss.backward() at train.py:14:9 through train_epoch()" in result.main_loop_reason
    # the tokenizer's double loop is an ordinary block, not the main loop
    assert result.loop("data.py:Corpus.tokenize:0") is not None


def test_lightning_fit_is_the_main_loop(tmp_path: Path) -> None:
    script = """\
import pytorch_lightning as pl
from model import LitModel

vocab = {}
for line in ["a b", "b c"]:
    for word in line.split():
        vocab.setdefault(word, len(vocab))
model = LitModel(len(vocab))
trainer = pl.Trainer(max_epochs=3)
trainer.fit(model)
"""
    model = (
        "import pytorch_lightning as pl\nimport torch\n\n\nclass LitModel(pl.LightningModule):\n"
        "    def __init__(self, n):\n        super().__init__()\n"
        "        self.layer = torch.nn.Linear(n, 1)\n\n"
        "    def training_step(self, batch, batch_idx):\n        return self.layer(batch).sum()\n"
    )
    result = compile_files(tmp_path, {"model.py": model, "train.py": script})
    # Lightning's epochs are the main loop (the tokenizing loop does not become the fallback)
    assert result.main_loop == "train.py:<lightning>:0"
    assert result.main_loop_rule == "framework"
    assert result.framework == {
        "framework": "PyTorch Lightning",
        "code": "trainer.fit(model)",
        "relpath": "train.py",
        "line": 10,
        "col": 1,
    }
    assert result.main_loop_reason == (
        "PyTorch Lightning's epochs: trainer.fit(model) at train.py:10:1"
    )
    # the id does not move when lines are added above the call
    moved = compile_files(tmp_path, {"model.py": model, "train.py": "import os\n" + script})
    assert moved.main_loop == result.main_loop and moved.framework["line"] == 11
    # a loop of the script's own that trains wins over the framework call
    own = script + "for batch in [torch.ones(2)]:\n    model.training_step(batch, 0).backward()\n"
    result = compile_files(tmp_path, {"model.py": model, "train.py": "import torch\n" + own})
    assert result.main_loop == "train.py:<module>:2" and result.framework is None


def test_transformers_train_is_the_main_loop(tmp_path: Path) -> None:
    script = """\
from transformers import Trainer, TrainingArguments

trainer = Trainer(model=None, args=TrainingArguments("out"))
trainer.train()
"""
    result = compile_files(tmp_path, {"train.py": script})
    assert result.main_loop == "train.py:<transformers>:0"
    assert result.main_loop_rule == "framework"
    assert result.framework is not None
    assert result.framework["framework"] == "Hugging Face transformers"
    assert result.main_loop_reason == (
        "Hugging Face transformers' epochs: trainer.train() at train.py:4:1"
    )


def test_training_handed_to_another_framework_is_named(tmp_path: Path) -> None:
    script = """\
import keras

model = keras.Sequential([keras.layers.Dense(1)])
model.fit([[0.0]], [[1.0]], epochs=3)
"""
    result = compile_files(tmp_path, {"train.py": script})
    assert result.main_loop is None and result.main_loop_rule == ""
    assert result.framework is not None
    assert result.framework["framework"] == "Keras"
    assert result.main_loop_reason.startswith(
        "the training loop is inside Keras: model.fit([[0.0]], [[1.0]], epochs=3) at train.py:4:1"
    )


FIRE = """\
import fire
import torch
import torchvision


def train(model, opt, data):
    for x in data:
        loss = model(x).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()


def load(root, train):
    return torchvision.datasets.MNIST(root, train)  # a parameter, not the function train


def main(epochs=3):
    data = load("data", True)
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, 1)
    for epoch in range(epochs):
        train(model, opt, [torch.ones(2)])
        scheduler.step()


if __name__ == "__main__":
    fire.Fire(main)
"""


def test_a_function_handed_to_a_runner_is_searched_and_a_schedule_step_does_not_train(
    tmp_path: Path,
) -> None:
    result = compile_text(tmp_path, FIRE)
    assert result.main_loop == "train.py:main:0"
    assert result.main_loop_reason == (
        "the outermost loop that trains: it reaches loss.backward() at train.py:10:9 "
        "through train()"
    )


@pytest.mark.parametrize(
    "call, trains",
    [
        ("loss.backward()", True),
        ("scaler.scale(loss).backward()", True),
        ("accelerator.backward(loss)", True),
        ("optimizer.step()", True),
        ("self.opt.step(closure=closure)", True),
        ("optimizer.step(closure)", True),  # closure is a function of the script
        ("optimizer.step(lambda: closure())", True),
        ("scaler.step(optimizer)", True),
        ("self.scaler.step(self.optD)", True),
        ("env.step(action)", False),
        ("envs.step(actions.cpu().numpy())", False),
        ("env.step(options)", False),
        ("scheduler.step()", False),
        ("lr_scheduler.step(val_loss)", False),
        ("counter.step", False),
    ],
)
def test_what_counts_as_a_training_step(tmp_path: Path, call: str, trains: bool) -> None:
    text = f"def closure():\n    pass\n\n\nfor i in range(3):\n    {call}\n"
    result = compile_text(tmp_path, text)
    assert (result.main_loop_rule == "trains") is trains, result.main_loop_reason


# --- the one-pass walks equal libcst's general machinery ------------------------------------

SYNTAX = '''\
"""Every kind of node the walks must order like libcst does."""
from __future__ import annotations
import os.path as osp, sys
from .. import sibling as sib
from pkg.mod import (a as b, c)


@decorator(arg, key=1)
@other
async def fetch(x, /, y: int = 2, *args, z, w=3, **kw) -> dict[str, int]:
    async with lock as held, other():
        async for item in stream(x):
            await item
    return {k: v for k, v in kw.items() if v} | {**kw, "x": x}


@dataclass
class Point(Base, metaclass=Meta):
    x: int = 0
    for i in range(2):
        print(i)

    def method(self, *, key=lambda q, r=1: q if r else -q):
        global counter
        try:
            value = [e async for e in g()] if sys.argv else (yield from ())
        except* (ValueError, TypeError) as err:
            raise RuntimeError("x") from err
        else:
            pass
        finally:
            del self.cache[0:1:2], self.other
        return f"{self.x!r:>{width}} {key(1)=}"


for epoch in range(3):  # comment
    # leading comment
    if epoch % 2:
        print(f"odd {epoch}", file=sys.stderr)
    elif epoch > 5:
        print("big")
    else:
        print("even");  print("twice")
    while (n := epoch) < 3 and not done:
        n += 1
    else:
        logger.info("done %d", n)
    match command.split():
        case [action, *rest] if action:
            pass
        case {"k": value, **others}:
            pass
        case Point(x=0) | None:
            pass
    with open(osp.join("a", "b")) as f, other: data = f.read()
    assert data, "message"
    total = sum(x * y for x, y in zip(a, b)) @ matrix ** -1
    items = {1, 2, *rest}; pairs = [(k, v) for k in d for v in d[k] if k if v]
    value: float = 1.5 + 2j
    writer.add_scalar("loss", loss, epoch)
    text = ("implicit " "concatenation"
            f"and {value:.{prec}f}")
    x = y = z[::2, ..., None]
'''


@pytest.mark.parametrize(
    "name",
    ["<syntax>", *sorted(str(p.relative_to(REPO)) for p in EXAMPLES.glob("**/*.py"))],
)
def test_fast_walks_equal_libcst_reference(name: str) -> None:
    from reference import check_against_reference

    source = SYNTAX if name == "<syntax>" else (REPO / name).read_text()
    check_against_reference(source)
    check_against_reference(source, known_names=frozenset({"epoch", "data", "sys"}))


def _libcst_visit_order(cls: type) -> list[str] | None:
    """The field names in the order libcst's own visit of cls passes them (from its source)."""
    import ast
    import inspect
    import textwrap

    try:
        src = textwrap.dedent(inspect.getsource(cls._visit_and_replace_children))  # type: ignore[attr-defined]
    except (OSError, TypeError):
        return None
    returns = [n for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Return)]
    if len(returns) != 1 or not isinstance(returns[0].value, ast.Call):
        return None
    return [k.arg for k in returns[0].value.keywords if k.arg is not None]


def test_source_order_table_matches_libcst() -> None:
    import inspect

    import libcst as cst

    from florc.transforms.syntax import source_fields

    classes, todo = set(), [cst.CSTNode]
    while todo:
        for sub in todo.pop().__subclasses__():
            classes.add(sub)
            todo.append(sub)
    checked = 0
    for cls in classes:
        if inspect.isabstract(cls):
            continue
        order = _libcst_visit_order(cls)
        if order is None:
            continue
        fields = source_fields(cls)
        assert [f for f in order if f in fields] == list(fields), cls.__name__
        checked += 1
    assert checked > 100


def _runtime_calls(code: str) -> list[tuple[str, str, tuple[str, ...] | None]]:
    """(method, first argument, `changes=`) of every `__florc__.method(...)` call in code."""
    import ast

    out = []
    for node in ast.walk(ast.parse(code)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "__florc__"
        ):
            changes = next((ast.literal_eval(k.value) for k in node.keywords), None)
            out.append((node.func.attr, ast.literal_eval(node.args[0]), changes))
    return out


def test_generated_strings_hold_paths_with_quotes_and_backslashes(tmp_path: Path) -> None:
    folder = tmp_path / 'o\'neil \\ "runs"'
    folder.mkdir()
    (folder / "train.py").write_text(TRAIN)
    result = compile_project(folder / "train.py", tmp_path)
    rel = 'o\'neil \\ "runs"/train.py'
    fm = result.files[rel]
    compile(fm.instrumented, "train.py", "exec")
    calls = _runtime_calls(fm.instrumented)
    # every id reads back exactly, and each loop's call names the manifest's changeset
    assert sorted((a, c) for m, a, c in calls if m == "loop") == sorted(
        (lp.loop_id, tuple(lp.changeset)) for lp in fm.loops
    )
    assert {a for m, a, _ in calls if m == "log_statement"} == {
        f"{rel}:{ls['line']}" for ls in fm.log_statements
    }
    assert [a for m, a, _ in calls if m == "entered"] == [f"{rel}:train"]
    assert result.main_loop == f"{rel}:<module>:0"
    (folder / "again.py").write_text(fm.instrumented)
    again = compile_project(folder / "again.py", tmp_path)
    assert again.files['o\'neil \\ "runs"/again.py'].instrumented == fm.instrumented


def test_a_loop_call_names_its_changeset(tmp_path: Path) -> None:
    fm = compile_text(tmp_path, TRAIN).files["train.py"]
    batch = next(lp for lp in fm.loops if lp.scope == "train")
    assert batch.changeset and "model" in batch.changeset
    expected = ", ".join(repr(p) for p in batch.changeset)
    assert f"__florc__.loop('train.py:train:0', changes=({expected})) as __florc_l0:" in (
        fm.instrumented
    )
