"""Named values: the numbers in what log statements wrote, by name.

`print(f"epoch {epoch} loss {loss:.4f} acc {acc:.3f}")` wrote "epoch 3 loss 0.4123 acc 0.871":
its values are epoch=3, loss=0.4123, acc=0.871 for that epoch and step. These feed
`florc.dataframe()`, `florc logs --format csv|json`, the exporters and `florc plot`.

How a line of text is read (`parse_values`):

- A line that is exactly `NAME=VALUE` (NAME without spaces, VALUE one number or a scalar's repr
  such as `tensor(0.5000)` or `np.float32(0.5)`) keeps NAME as written: this is what
  `florc.log(name, value)` and a captured `writer.add_scalar(tag, value, step)` file.
- Otherwise every number is named by the words directly before it, back to the previous number
  or punctuation (`:` and `=` and an opening bracket between the words and the number are
  allowed): `train loss: 0.31 | val acc = 93.2%` gives train_loss=0.31 and val_acc=93.2.
  Names are lowercased, their words joined by `_`. Filler words (is, of, after, with, ...) end a
  name: `Loss after epoch 3: 0.5` gives epoch=3, and 0.5 has no name. A run of more than three
  words is not a name.
- A number with no name before it is left out, never guessed: `[1,  2000] loss: 2.295` gives
  only loss.
- A number in brackets after a name is its value only when it is alone there: `Step [100/600]`
  gives step=100, `lr=[0.1, 0.2]` nothing.
- A fraction names its numerator: `Epoch [1/10]` gives epoch=1, `9890/10000` the 9890.
- A unit written against the number is dropped, the number kept as printed: `12.34ms` is 12.34,
  `5.01%` is 5.01.
- `nan`, `inf`, `-inf`, negative numbers and exponents are numbers; a number inside a word
  (`resnet50`, `top-1`), a version (`1.2.3`), a time of day (`12:30`) or a date is not.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from florc.store.index import Store

_NUM = r"[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|(?i:nan|inf(?:inity)?)(?![A-Za-z]))"
# a number, with an optional /denominator and a unit written against it
_NUMBER = re.compile(
    r"(?<![\w.@/-])(?P<value>" + _NUM + r")(?![-:]\d)"
    r"(?:/(?:\d+\.?\d*))?(?P<unit>%|[A-Za-zµ]+)?(?![\w@])(?!\.\w)"
)
# a scalar's repr around a number: tensor(0.5000, grad_fn=...), np.float64(0.5), array(0.5)
_WRAPPED = re.compile(
    r"\b(?:tensor|(?:np|numpy)\.(?:float|int|uint)\d*|array|Decimal)\(\s*['\"]?(?P<value>"
    + _NUM
    + r")['\"]?\s*(?:,[^()]*(?:\([^()]*\)[^()]*)*)?\)"
)
_WORD = r"[A-Za-z_][\w./@-]*"
# the words just before a number (the end of the text between it and the previous number)
_NAME_BEFORE = re.compile(
    r"(?P<words>"
    + _WORD
    + r"(?:[ \t]+"
    + _WORD
    + r")*)[ \t]*(?:[:=][ \t]*)?(?P<open>[\[(])?[ \t]*$"
)
_QUOTED = re.compile(r"(?P<q>['\"])(?P<text>[^'\"]*)(?P=q)(?P<key>[ \t]*:)?")
_EXACT = re.compile(r"^\s*(?P<name>[^\s=]+)\s*=\s*(?P<value>.+?)\s*$")
_FILLER = frozenset(
    [
        "is",
        "was",
        "are",
        "were",
        "be",
        "of",
        "the",
        "a",
        "an",
        "at",
        "after",
        "before",
        "for",
        "on",
        "in",
        "to",
        "and",
        "or",
        "with",
        "from",
        "by",
        "per",
        "than",
        "then",
        "took",
        "over",
        "during",
    ]
)
MAX_WORDS = 3


@dataclass(frozen=True)
class NamedValue:
    """One number a log statement wrote, by name."""

    run: int  # the recorded run it belongs to (for a replayed value: the replay's parent)
    source: str  # "record" | "replay"
    replay: int | None  # the replay that computed it (None: recorded)
    iteration: int | None  # index of the main loop's iteration (None: outside it)
    epoch: Any  # the main loop's value in that iteration
    step: int | None  # the inner loop's step, or a writer call's global_step (None: epoch level)
    statement: str  # "relpath:line" of the statement that wrote it
    name: str
    value: float
    # a writer's add_scalar(tag, value, global_step): step is the script's own global step
    writer: bool = False


def scalar(text: str) -> float | None:
    """The number a scalar's text or repr holds: `0.5`, `nan`, `tensor(0.5000)`,
    `np.float32(0.5)`, `True`; None for anything else (a list, a string, a tensor of many)."""
    text = text.strip()
    if text in ("True", "False"):
        return float(text == "True")
    m = _WRAPPED.fullmatch(text)
    if m is not None:
        text = m["value"]
    if re.fullmatch(_NUM, text):
        return float(text)
    return None


def _name(words: str) -> str | None:
    parts = words.split()
    for i in range(len(parts) - 1, -1, -1):
        if parts[i].lower() in _FILLER:
            parts = parts[i + 1 :]
            break
    parts = [p.rstrip("./-") for p in parts]
    if not parts or len(parts) > MAX_WORDS or not all(parts):
        return None
    return "_".join(parts).lower()


def parse_values(text: str) -> list[tuple[str, float]]:
    """The named numbers of one line of output: `loss 0.41 acc=0.87` -> [("loss", 0.41),
    ("acc", 0.87)]; `loss=tensor(0.41)` -> [("loss", 0.41)] (the module's docstring has the
    rules). A number without a name before it is left out."""
    exact = _EXACT.match(text)
    if exact is not None:
        value = scalar(exact["value"])
        if value is not None:
            return [(exact["name"], value)]
    text = _WRAPPED.sub(lambda m: m["value"], text)
    # a quoted word followed by `:` is a dict's key; any other quoted text is a value
    text = _QUOTED.sub(lambda m: f" {m['text']}:" if m["key"] else " , ", text)
    out: list[tuple[str, float]] = []
    last = 0
    for m in _NUMBER.finditer(text):
        gap = text[max(last, m.start() - 120) : m.start()]
        last = m.end()
        before = _NAME_BEFORE.search(gap)
        if before is None:
            continue
        if before["open"] and not text[m.end() :].lstrip().startswith("])"[before["open"] == "("]):
            continue  # `lr=[0.1, 0.2]`: one number of many is not the value
        words = before["words"]
        if gap[: before.start()].rstrip().endswith("="):
            words = words.partition(" ")[2]  # `name=abc lr 0.1`: abc is name's value
        name = _name(words)
        if name is not None:
            out.append((name, float(m["value"])))
    return out


def named_values(store: Store, runs: list[int] | None = None) -> list[NamedValue]:
    """The named values of the recorded runs `runs` (None: every recorded run) and of their
    replays, recorded first, in the order they were written. Where several replays of a run
    computed a value of the same (iteration, step, statement, name), only the latest replay's
    are kept."""
    recorded_out: list[NamedValue] = []
    replayed: list[NamedValue] = []
    kinds = {r["id"]: r for r in store.runs()}
    for row in store.logs(None):
        meta = kinds.get(row["run"])
        if meta is None or meta["kind"] == "verify":
            continue
        recorded = row["run"] if meta["kind"] == "record" else meta["parent"]
        if recorded is None or (runs is not None and recorded not in runs):
            continue
        if meta["kind"] == "replay" and not row["new"]:
            continue  # a recorded statement's output, shown again
        epoch = json.loads(row["epoch"]) if row["epoch"] else None
        into = recorded_out if meta["kind"] == "record" else replayed
        writer = "add_scalar" in row["name"] and _EXACT.match(row["value"]) is not None
        for name, value in parse_values(row["value"]):
            into.append(
                NamedValue(
                    run=recorded,
                    source=meta["kind"],
                    replay=None if meta["kind"] == "record" else row["run"],
                    iteration=row["iteration"],
                    epoch=epoch,
                    step=row["step"],
                    statement=row["statement"],
                    name=name,
                    value=value,
                    writer=writer,
                )
            )
    # the latest replay of each (run, iteration, step, statement, name)
    latest: dict[tuple[Any, ...], int] = {}
    for v in replayed:
        key = (v.run, v.iteration, v.step, v.statement, v.name)
        latest[key] = max(latest.get(key, -1), v.replay or 0)
    kept = [
        v
        for v in replayed
        if latest[(v.run, v.iteration, v.step, v.statement, v.name)] == (v.replay or 0)
    ]
    return recorded_out + kept
