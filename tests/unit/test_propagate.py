"""Placing the current script's log statements into a recorded version (transforms/propagate.py).

Each case writes the current version to disk, gives the recorded version as text, and checks the
patched text line for line, or the reason a statement is refused and where it is."""

from __future__ import annotations

import textwrap
from pathlib import Path

from florc.transforms.propagate import Propagation, place_statements


def place(tmp_path: Path, recorded: str, current: str, **modules: str) -> Propagation:
    """Current version on disk (train.py and modules given as name=text, current), recorded
    version as texts (train.py and the same modules, recorded)."""
    (tmp_path / "train.py").write_text(current)
    texts = {"train.py": recorded}
    for name, pair in modules.items():
        old, new = pair if isinstance(pair, tuple) else (pair, pair)
        (tmp_path / f"{name}.py").write_text(new)
        texts[f"{name}.py"] = old
    return place_statements(tmp_path / "train.py", tmp_path, texts, run=4)


RECORDED = textwrap.dedent(
    """\
    import torch

    def train(model, loader, opt, epochs):
        for epoch in range(epochs):
            total = 0.0
            for x, y in loader:
                opt.zero_grad()
                loss = model(x, y)
                loss.backward()
                opt.step()
                total += loss.item()
            print(f"epoch {epoch} loss {total:.4f}")
        return model
    """
)


def test_epoch_and_batch_statements_go_where_they_are_in_the_current_version(tmp_path):
    current = RECORDED.replace(
        "            loss.backward()\n",
        "            loss.backward()\n"
        "            gnorm = sum(p.grad.norm() for p in model.parameters())\n"
        '            print(f"grad {gnorm:.3f}")\n',
    ).replace(
        '        print(f"epoch {epoch} loss {total:.4f}")\n',
        '        print(f"epoch {epoch} loss {total:.4f}")\n'
        '        print(f"epoch {epoch} wnorm {model.weight.norm():.3f}")\n',
    )
    # the recorded version differs elsewhere: an added line before the loop
    recorded = RECORDED.replace("import torch\n", "import torch\nimport math\n")
    got = place(tmp_path, recorded, current)
    assert got.complete
    assert [p.code for p in got.placed] == [
        "gnorm = sum(p.grad.norm() for p in model.parameters())",
        'print(f"grad {gnorm:.3f}")',
        'print(f"epoch {epoch} wnorm {model.weight.norm():.3f}")',
    ]
    assert [p.target_line for p in got.placed] == [11, 12, 16]
    want = current.replace("import torch\n", "import torch\nimport math\n")
    assert got.sources["train.py"] == want
    where = got.placed[0].where
    assert "def train" in where and "for x, y in loader" in where
    assert "after `loss.backward()`" in where and "before `opt.step()`" in where


def test_a_statement_the_recorded_version_has_is_not_placed_again(tmp_path):
    got = place(tmp_path, RECORDED, RECORDED.replace("loss {total", "loss  {total"))
    assert got.complete and not got.placed
    assert got.sources["train.py"] == RECORDED


def test_changed_anchor_code_refuses_with_the_reason_and_place(tmp_path):
    current = RECORDED.replace(
        "            opt.step()\n", '            print("stepping")\n            opt.step()\n'
    )
    # the recorded version clipped gradients between backward and step
    recorded = RECORDED.replace(
        "            loss.backward()\n",
        "            loss.backward()\n            clip(model)\n",
    )
    got = place(tmp_path, recorded, current)
    assert not got.placed and len(got.unplaced) == 1
    refused = got.unplaced[0]
    assert (refused.relpath, refused.line, refused.col) == ("train.py", 10, 13)
    text = str(refused)
    assert text.startswith('train.py:10:13: `print("stepping")`')
    assert "the code around it changed" in text and "run 4" in text
    assert "after `loss.backward()` and before `opt.step()`" in text
    assert got.sources["train.py"] == recorded


def test_a_missing_enclosing_block_is_named(tmp_path):
    current = RECORDED.replace(
        "            opt.step()\n", '            opt.step()\n            print("stepped")\n'
    )
    recorded = RECORDED.replace("for x, y in loader:", "for batch in loader:")
    got = place(tmp_path, recorded, current)
    assert len(got.unplaced) == 1
    assert "has no `for x, y in loader` in def train › for epoch in range(epochs)" in str(
        got.unplaced[0]
    )


def test_two_blocks_with_the_same_path_are_ambiguous(tmp_path):
    recorded = "for epoch in range(3):\n    for x in data:\n        step(x)\n" * 1 + (
        "    for x in data:\n        step(x)\n"
    )
    current = recorded.replace("        step(x)\n", "        step(x)\n        print(x)\n", 1)
    got = place(tmp_path, recorded, current)
    assert len(got.unplaced) == 1
    assert "2 blocks in for epoch in range(3) › for x in data" in str(got.unplaced[0])


def test_the_same_neighbours_twice_in_a_block_are_ambiguous(tmp_path):
    recorded = "for epoch in range(3):\n    step()\n    check()\n    step()\n    check()\n"
    current = recorded.replace("    step()\n", "    step()\n    print(epoch)\n", 1)
    got = place(tmp_path, recorded, current)
    assert len(got.unplaced) == 1
    assert "has 2 such places" in str(got.unplaced[0])


def test_a_name_the_recorded_version_never_mentions_is_refused(tmp_path):
    current = RECORDED.replace(
        '        print(f"epoch {epoch} loss {total:.4f}")\n',
        '        print(f"epoch {epoch} loss {total:.4f}")\n        print(f"acc {acc:.3f}")\n',
    )
    got = place(tmp_path, RECORDED, current)
    assert len(got.unplaced) == 1
    assert "reads `acc`, which run 4's version of train.py never mentions" in str(got.unplaced[0])


def test_reindented_to_the_recorded_blocks_indentation(tmp_path):
    recorded = "for epoch in range(3):\n  step()\n  if epoch:\n    check()\n"
    current = (
        "for epoch in range(3):\n    step()\n    print(epoch)\n    if epoch:\n        check()\n"
    )
    got = place(tmp_path, recorded, current)
    assert got.sources["train.py"] == (
        "for epoch in range(3):\n  step()\n  print(epoch)\n  if epoch:\n    check()\n"
    )


def test_order_with_log_statements_both_versions_have(tmp_path):
    recorded = "for epoch in range(3):\n    step()\n    print('a')\n    print('c')\n"
    current = "for epoch in range(3):\n    step()\n    print('a')\n    print('b')\n    print('c')\n"
    got = place(tmp_path, recorded, current)
    assert got.sources["train.py"] == current
    first = "for epoch in range(3):\n    step()\n    print('z')\n    print('a')\n    print('c')\n"
    got = place(tmp_path, recorded, first)
    assert got.sources["train.py"] == first


def test_parts_of_if_and_try_are_told_apart(tmp_path):
    recorded = textwrap.dedent(
        """\
        for epoch in range(3):
            if epoch == 0:
                warm()
            elif epoch == 1:
                mid()
            else:
                late()
            try:
                step()
            except ValueError:
                skip()
        """
    )
    current = (
        recorded.replace("        late()\n", "        late()\n        print('late')\n")
        .replace("        skip()\n", "        print('skipped')\n        skip()\n")
        .replace("        mid()\n", "        mid()\n        print('mid')\n")
    )
    got = place(tmp_path, recorded, current)
    assert got.complete and len(got.placed) == 3
    assert got.sources["train.py"] == current
    wheres = sorted(p.where for p in got.placed)
    assert any("try (except ValueError)" in w for w in wheres)
    assert any(
        "if epoch == 1 (else)" not in w and "if epoch == 0 (else) › if epoch == 1" in w
        for w in wheres
    )


def test_statements_in_a_project_module_go_into_its_recorded_version(tmp_path):
    old_lib = "def evaluate(model, data):\n    acc = model.score(data)\n    return acc\n"
    new_lib = (
        "def evaluate(model, data):\n    acc = model.score(data)\n"
        "    print(f'eval acc {acc:.3f}')\n    return acc\n"
    )
    script = "import lib\nfor epoch in range(3):\n    lib.evaluate(m, d)\n"
    got = place(tmp_path, script, script, lib=(old_lib, new_lib))
    assert got.complete and [p.relpath for p in got.placed] == ["lib.py"]
    assert got.sources["lib.py"] == new_lib and got.sources["train.py"] == script


def test_a_file_the_run_did_not_record(tmp_path):
    (tmp_path / "extra.py").write_text("def f():\n    print('hi')\n")
    (tmp_path / "train.py").write_text("import extra\nfor e in range(2):\n    extra.f()\n")
    got = place_statements(
        tmp_path / "train.py",
        tmp_path,
        {"train.py": "import extra\nfor e in range(2):\n    extra.f()\n"},
        run=4,
    )
    assert len(got.unplaced) == 1
    assert "is in extra.py, which run 4 did not record" in got.unplaced[0].reason
