"""Values, not only text; runs findable by what they were.

A TensorBoard writer's scalars recorded and replayed are the values the plain run's event file
holds; argparse's options are kept with the run, shown by `florc runs` and chosen by --where.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import florc, python

pytestmark = pytest.mark.e2e

WRITER_SCRIPT = """\
import argparse
import random

from torch.utils.tensorboard import SummaryWriter

parser = argparse.ArgumentParser()
parser.add_argument("--logdir", default="tb")
parser.add_argument("--lr", type=float, default=0.1)
args = parser.parse_args()
random.seed(0)
writer = SummaryWriter(args.logdir)
w = 1.0
for epoch in range(4):
    for i in range(3):
        w -= args.lr * (w - random.random())
    writer.add_scalar("train/w", w, epoch)
    print(f"epoch {epoch} w {w:.6f}")
writer.close()
"""

BATCH = "        w -= args.lr * (w - random.random())\n"
EPOCH = '    writer.add_scalar("train/w", w, epoch)\n'


def edited(text: str) -> str:
    text = text.replace(
        BATCH, BATCH + '        writer.add_scalar("hindsight/w2", w * w, epoch * 3 + i)\n'
    )
    return text.replace(
        EPOCH, EPOCH + '    writer.add_scalars("pair", {"a": w, "b": 2 * w}, epoch)\n'
    )


def events(folder: Path) -> dict[tuple[str, int], float]:
    """(tag, step) -> value of every scalar in the event files under folder (add_scalars' values
    as main_tag/key, the name florc gives them)."""
    from tbparse import SummaryReader

    frame = SummaryReader(str(folder), extra_columns={"dir_name"}).scalars
    out = {}
    for row in frame.itertuples():
        tag = row.tag
        if row.dir_name:  # add_scalars: a folder per key, named main_tag_key
            tag = f"{row.tag}/{row.dir_name.split('_', 1)[1]}"
        out[(tag, int(row.step))] = float(row.value)
    return out


def test_writer_values_recorded_and_replayed_equal_the_event_file(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(WRITER_SCRIPT)
    rec = florc(["record", "train.py", "--lr", "0.2"], tmp_path)
    assert rec.returncode == 0, rec.stderr
    (tmp_path / "train.py").write_text(edited(WRITER_SCRIPT))
    rep = florc(["replay", "train.py"], tmp_path)
    assert rep.returncode == 0, rep.stderr
    assert "add_scalar hindsight/w2 = " in rep.stdout
    plain = python("train.py", tmp_path, ["--lr", "0.2", "--logdir", "plain"])
    assert plain.returncode == 0, plain.stderr
    expected = events(tmp_path / "plain")
    assert len(expected) == 4 + 12 + 8

    rows = json.loads(florc(["logs", "--format", "json"], tmp_path).stdout)
    got = {}
    for row in rows:
        for name, value in row.items():
            if "/" in name and value is not None:
                got[(name, row["step"])] = (row["source"], value)
    assert {k for k, (src, _) in got.items() if src == "record"} == {
        ("train/w", e) for e in range(4)
    }
    assert set(got) == set(expected)
    for key, (_, value) in got.items():
        assert value == pytest.approx(expected[key], rel=1e-6), key  # event files hold float32


ARGS_SCRIPT = """\
import argparse

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.1)
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--layers", type=int, nargs="+", default=[8])
parser.add_argument("--cuda", action="store_true")
parser.add_argument("--name", default="base")
args = parser.parse_args()
w = 1.0
for epoch in range(args.epochs):
    for _ in range(2):
        w -= args.lr * w
    print(f"epoch {epoch} loss {w:.5f}")
"""


def test_runs_show_their_arguments_and_where_chooses_them(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(ARGS_SCRIPT)
    for args in (["--lr", "0.01"], ["--lr=0.1", "--cuda", "--epochs", "3"], ["--epochs", "2"]):
        res = florc(["record", "train.py", *args], tmp_path)
        assert res.returncode == 0, res.stderr
    table = florc(["runs"], tmp_path).stdout.splitlines()
    assert table[0].split()[-2:] == ["commit", "args"]
    # what the command line gave or differs from the defaults
    assert table[1].endswith("  lr=0.01")
    assert table[2].endswith("  lr=0.1 epochs=3 cuda=True")
    assert table[3].endswith("  epochs=2")
    rows = json.loads(florc(["runs", "--format", "json"], tmp_path).stdout)
    assert rows[0]["params"] == {
        "lr": "0.01",
        "epochs": "3",
        "layers": "[8]",
        "cuda": "False",
        "name": "base",
    }

    def chosen(*where: str) -> list[int]:
        args = [a for w in where for a in ("--where", w)]
        out = florc(["runs", "--format", "json", *args], tmp_path)
        assert out.returncode == 0, out.stderr
        return [r["id"] for r in json.loads(out.stdout)]

    assert chosen("lr=0.01") == [1]
    assert chosen("lr=1e-1") == [2, 3]  # numbers compare as numbers; the default counts
    assert chosen("epochs=3") == [1, 2]
    assert chosen("epochs=3", "cuda=true") == [2]
    assert chosen("name=base", "lr=0.1") == [2, 3]
    assert chosen("dropout=0.5") == []
    assert [
        r["id"]
        for r in json.loads(florc(["runs", "--runs", "2-3", "--format", "json"], tmp_path).stdout)
    ] == [2, 3]
    # logs take the same choice
    wide = json.loads(florc(["logs", "--where", "epochs=2", "--format", "json"], tmp_path).stdout)
    # the printed epoch equals the main loop's value: the epoch column holds it, once
    assert [(r["run"], r["epoch"]) for r in wide] == [(3, 0), (3, 1)]
    assert all("logged_epoch" not in r for r in wide)
    assert wide[1]["loss"] == pytest.approx(0.9**4, abs=1e-5)
    bad = florc(["runs", "--where", "lr"], tmp_path)
    assert bad.returncode == 2 and "give KEY=VALUE" in bad.stderr
