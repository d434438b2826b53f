"""Named values: what real training scripts print, read back as numbers by name."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from florc.store.index import Store
from florc.store.values import NamedValue, named_values, parse_values, scalar

LINES = [
    ("epoch 3 loss 0.4123 acc 0.871", [("epoch", 3), ("loss", 0.4123), ("acc", 0.871)]),
    # the PyTorch tutorials: fractions name their numerator, the denominator nothing
    (
        "Epoch [1/10], Step [100/600], Loss: 0.2345",
        [("epoch", 1), ("step", 100), ("loss", 0.2345)],
    ),
    ("train loss: 0.31 | val acc = 93.2%", [("train_loss", 0.31), ("val_acc", 93.2)]),
    # nanoGPT: units against the number are dropped
    (
        "iter 100: loss 2.3456, time 12.34ms, mfu 5.01%",
        [("iter", 100), ("loss", 2.3456), ("time", 12.34), ("mfu", 5.01)],
    ),
    ("step 0: train loss 4.2, val loss 4.3", [("step", 0), ("train_loss", 4.2), ("val_loss", 4.3)]),
    # the CIFAR-10 tutorial: numbers without a name are left out
    ("[1,  2000] loss: 2.295", [("loss", 2.295)]),
    # the MNIST example
    (
        "Test set: Average loss: 0.0333, Accuracy: 9890/10000 (99%)",
        [("average_loss", 0.0333), ("accuracy", 9890)],
    ),
    ("Train Epoch: 1 [0/60000 (0%)]\tLoss: 2.300", [("train_epoch", 1), ("loss", 2.3)]),
    ("lr=1e-3", [("lr", 0.001)]),
    ("Learning rate 0.001 weight decay 1e-4", [("learning_rate", 0.001), ("weight_decay", 1e-4)]),
    ("delta -0.5 y=-3 z +2", [("delta", -0.5), ("y", -3), ("z", 2)]),
    ("loss tensor(0.5000) acc tensor(0.9, grad_fn=<MeanBackward0>)", [("loss", 0.5), ("acc", 0.9)]),
    ("loss: tensor(0.5, device='cuda:0')", [("loss", 0.5)]),
    ("x=np.float64(0.25)", [("x", 0.25)]),
    ("{'loss': 0.5, 'acc': 0.9}", [("loss", 0.5), ("acc", 0.9)]),
    ('{"loss": 0.5}', [("loss", 0.5)]),
    ("Epoch: 1 | Batch: 100 | Loss: 0.5", [("epoch", 1), ("batch", 100), ("loss", 0.5)]),
    ("epoch 1/10 loss=0.3", [("epoch", 1), ("loss", 0.3)]),
    ("acc@1 75.3 acc@5 92.1", [("acc@1", 75.3), ("acc@5", 92.1)]),
    ("loss 0.5.", [("loss", 0.5)]),
    ("epoch 2, loss 0.25;", [("epoch", 2), ("loss", 0.25)]),
    # a line that is exactly NAME=VALUE keeps NAME as written (florc.log, writer calls)
    ("train/Loss=0.25", [("train/Loss", 0.25)]),
    ("loss=tensor(0.5000)", [("loss", 0.5)]),
    ("ok=True", [("ok", 1.0)]),
    # filler words end a name; a number after them has none
    ("Loss after epoch 3: 0.5", [("epoch", 3)]),
    ("The average loss on the test set is 0.5", []),
    ("finished with loss 0.5", [("loss", 0.5)]),
    # more than three words are not a name
    ("very long running average loss 0.5", []),
    # numbers that are not values
    ("version 1.2.3 at 12:30:01 on 2024-01-02", []),
    ("resnet50 trained", []),
    ("0.5 0.25", []),
    ("", []),
    ("loss: n/a", []),
    ("lr=[0.1, 0.2] acc (0.5)", [("acc", 0.5)]),
    ("name='abc' lr=[0.1, 0.2]", []),
]


@pytest.mark.parametrize("text, expected", LINES, ids=[t for t, _ in LINES])
def test_parse_values(text: str, expected: list[tuple[str, float]]) -> None:
    got = parse_values(text)
    assert [n for n, _ in got] == [n for n, _ in expected]
    for (_, a), (_, b) in zip(got, expected):
        assert a == pytest.approx(b)


def test_nan_and_inf_are_numbers() -> None:
    got = dict(parse_values("loss nan grad inf x -inf info 3"))
    assert math.isnan(got["loss"]) and got["grad"] == math.inf and got["x"] == -math.inf
    assert got["info"] == 3


@pytest.mark.parametrize(
    "text, value",
    [
        ("0.5", 0.5),
        ("tensor(0.5000)", 0.5),
        ("tensor(3)", 3.0),
        ("tensor(0.5000, grad_fn=<MeanBackward0>)", 0.5),
        ("tensor(0.2500, device='cuda:0', dtype=torch.float16)", 0.25),
        ("np.float32(0.5)", 0.5),
        ("np.int64(7)", 7.0),
        ("False", 0.0),
        ("tensor([0.5000, 0.2500])", None),
        ("[0.5]", None),
        ("'0.5'", None),
    ],
)
def test_scalar(text: str, value: float | None) -> None:
    assert scalar(text) == value


def _store(tmp_path: Path) -> Store:
    return Store(tmp_path, tmp_path / ".florc")


def _log(store: Store, run: int, rows: list[tuple[str, int, int | None, str, int]]) -> None:
    store.add_logs(
        run,
        [
            (stmt, it, json.dumps(it + 1), step, "print(...)", text, new)
            for stmt, it, step, text, new in rows
        ],
    )


def test_named_values_keep_the_latest_replay(tmp_path: Path) -> None:
    with _store(tmp_path) as store:
        rec = store.create_run("record", "train.py", [], {})
        _log(store, rec, [("train.py:9", 0, None, "epoch 1 loss 0.5", 0)])
        first = store.create_run("replay", "train.py", [], {}, parent=rec)
        _log(
            store,
            first,
            [
                ("train.py:9", 0, None, "epoch 1 loss 0.5", 0),  # a recorded statement again
                ("train.py:10", 0, None, "acc 0.1", 1),
                ("train.py:10", 1, None, "acc 0.2", 1),
            ],
        )
        second = store.create_run("replay", "train.py", [], {}, parent=rec)
        _log(store, second, [("train.py:10", 0, None, "acc 0.3", 1)])
        store.create_run("verify", "train.py", [], {}, parent=rec)
        values = named_values(store)
        other = store.create_run("record", "train.py", [], {})
        _log(store, other, [("train.py:9", 0, None, "loss 9", 0)])
        assert [v.name for v in named_values(store, [other])] == ["loss"]
    assert values == [
        NamedValue(rec, "record", None, 0, 1, None, "train.py:9", "epoch", 1.0),
        NamedValue(rec, "record", None, 0, 1, None, "train.py:9", "loss", 0.5),
        NamedValue(rec, "replay", first, 1, 2, None, "train.py:10", "acc", 0.2),
        NamedValue(rec, "replay", second, 0, 1, None, "train.py:10", "acc", 0.3),
    ]


def test_a_string_value_is_no_name() -> None:
    assert parse_values("model='resnet 3' lr 0.1") == [("lr", 0.1)]
    assert parse_values("opt=adam lr 0.1") == [("lr", 0.1)]


def test_wide_rows_keep_a_printed_epoch_only_where_it_differs_from_the_loops() -> None:
    from florc.store.queries import wide
    from florc.store.values import NamedValue

    def value(iteration: int, epoch: int, name: str, x: float) -> NamedValue:
        return NamedValue(1, "record", None, iteration, epoch, None, "train.py:9", name, x)

    same = wide([value(0, 0, "epoch", 0.0), value(0, 0, "loss", 0.5)])
    assert same.columns == ["run", "source", "epoch", "iteration", "step", "loss"]
    assert same.rows == [
        {"run": 1, "source": "record", "epoch": 0, "iteration": 0, "step": None, "loss": 0.5}
    ]
    shifted = wide([value(0, 0, "epoch", 1.0), value(0, 0, "loss", 0.5)])  # printed 1-based
    assert shifted.columns[-2:] == ["logged_epoch", "loss"]
    assert shifted.rows[0]["logged_epoch"] == 1.0 and shifted.rows[0]["epoch"] == 0
