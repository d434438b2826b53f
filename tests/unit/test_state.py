"""The node kinds of florc.runtime.state: each captured, restored in place keeping identity,
compared equal and different by fidelity; the pickled form of a snapshot; the two-phase restore.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import pickle
import random
import types
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from florc.runtime import checkpoint, fidelity
from florc.runtime import state as st
from florc.runtime.state import kinds
from florc.runtime.state.capture import Capturer

Pair = collections.namedtuple("Pair", ["items", "n"])


@dataclasses.dataclass
class Step:
    obs: list[float]
    reward: float


class Counter:
    """Not a torch class, but with a state_dict: the stateful kind."""

    def __init__(self) -> None:
        self.n = 0

    def state_dict(self) -> dict[str, int]:
        return {"n": self.n}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.n = state["n"]


class Opaque:
    """Its own __reduce__: copied whole, compared by pickled bytes."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __reduce__(self) -> tuple[Any, ...]:
        return (Opaque, (self.n,))


def _scope(ns: dict[str, Any]) -> st.Scope:
    code = types.SimpleNamespace(co_varnames=(), co_cellvars=(), co_freevars=())
    frame = types.SimpleNamespace(f_code=code, f_globals=ns)
    frame.f_locals = ns
    return st.Scope(frame)  # type: ignore[arg-type]


def _through_store(snap: st.Snapshot) -> st.Snapshot:
    enc = checkpoint.encode(snap)
    return checkpoint.decode(enc.manifest, lambda sha: bytes(enc.payloads[sha]))


def _trained_optimizer() -> torch.optim.Optimizer:
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = torch.optim.SGD([w], lr=0.1, momentum=0.9)
    (w * w).sum().backward()
    opt.step()
    return opt


def _loader() -> torch.utils.data.DataLoader[Any]:
    g = torch.Generator()
    g.manual_seed(4)
    data = torch.utils.data.TensorDataset(torch.arange(8.0))
    return torch.utils.data.DataLoader(data, batch_size=2, shuffle=True, generator=g)


def _draws(obj: Any) -> Any:
    """What the object yields next (it advances it): the state a generator kind holds."""
    if isinstance(obj, torch.Generator):
        return torch.rand(3, generator=obj).tolist()
    if isinstance(obj, torch.utils.data.DataLoader):
        return [b[0].tolist() for b in obj]
    if isinstance(obj, np.random.Generator):
        return obj.random(3).tolist()
    if isinstance(obj, np.random.RandomState):
        return obj.rand(3).tolist()
    return [obj.random() for _ in range(3)]


def _next_draws(obj: Any) -> Any:
    """What the object would yield next, leaving it as it is (a copy of it draws)."""
    if isinstance(obj, torch.utils.data.DataLoader):
        obj = obj.generator
    if isinstance(obj, torch.Generator):
        g = torch.Generator()
        g.set_state(obj.get_state())
        return _draws(g)
    return _draws(copy.deepcopy(obj))


@dataclasses.dataclass
class Case:
    """An object of one kind, a change to it, and what of it the test reads back."""

    make: Callable[[], Any]
    change: Callable[[Any], Any]  # returns the object the path should hold after the change
    read: Callable[[Any], Any]
    kept: bool = True  # restored in place: the path keeps its object


def _add_(t: Any) -> Any:
    with torch.no_grad():
        t.add_(1)
    return t


def _change_module(m: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        m.weight.mul_(2)
    m.eval()
    return m


def _change_optimizer(opt: torch.optim.Optimizer) -> torch.optim.Optimizer:
    (w,) = opt.param_groups[0]["params"]
    (w * w).sum().backward()
    opt.step()
    return opt


def _advance(obj: Any) -> Any:
    _draws(obj)
    return obj


def _set(obj: Any, **attrs: Any) -> Any:
    for k, v in attrs.items():
        setattr(obj, k, v)
    return obj


def _mutate(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def change(obj: Any) -> Any:
        fn(obj)
        return obj

    return change


CASES: dict[st.Kind, Case] = {
    st.Kind.VALUE: Case(lambda: 2.5, lambda v: 3.5, lambda v: v, kept=False),
    # a binding is kept as it is now, never recreated: restoring leaves the new one
    st.Kind.REF: Case(lambda: len, lambda f: abs, lambda f: f, kept=False),
    st.Kind.TENSOR: Case(lambda: torch.arange(4.0), _add_, lambda t: t.tolist()),
    st.Kind.MODULE: Case(
        lambda: torch.nn.Linear(2, 2),
        _change_module,
        lambda m: (m.weight.tolist(), m.training),
    ),
    st.Kind.OPTIMIZER: Case(
        _trained_optimizer,
        _change_optimizer,
        lambda o: (
            o.param_groups[0]["params"][0].tolist(),
            o.state_dict()["state"][0]["momentum_buffer"].tolist(),
        ),
    ),
    st.Kind.DATALOADER: Case(_loader, _advance, _next_draws),
    st.Kind.GENERATOR: Case(lambda: torch.Generator().manual_seed(1), _advance, _next_draws),
    st.Kind.NDARRAY: Case(
        lambda: np.arange(6.0), _mutate(lambda a: a.__iadd__(1)), lambda a: a.tolist()
    ),
    st.Kind.NP_GENERATOR: Case(lambda: np.random.default_rng(2), _advance, _next_draws),
    st.Kind.NP_RANDOMSTATE: Case(lambda: np.random.RandomState(3), _advance, _next_draws),
    st.Kind.RANDOM: Case(lambda: random.Random(5), _advance, _next_draws),
    st.Kind.STATEFUL: Case(Counter, lambda c: _set(c, n=7), lambda c: c.n),
    st.Kind.LIST: Case(lambda: [1, [2, 3]], _mutate(lambda x: x[1].append(4)), list),
    st.Kind.DEQUE: Case(
        lambda: collections.deque([1.0, 2.0], maxlen=3),
        _mutate(lambda d: d.extend([5.0, 6.0])),
        lambda d: (list(d), d.maxlen),
    ),
    st.Kind.TUPLE: Case(lambda: (1, "a"), lambda t: (2, "a"), lambda t: t, kept=False),
    # a namedtuple whose fields are restored in place keeps its own identity too
    st.Kind.NAMEDTUPLE: Case(
        lambda: Pair([1.0], 2), _mutate(lambda p: p.items.append(9.0)), lambda p: (p.items, p.n)
    ),
    st.Kind.DICT: Case(
        lambda: {"a": 1, "b": [2]}, _mutate(lambda d: d.update(a=5, c=3)), lambda d: dict(d)
    ),
    st.Kind.OBJECT: Case(
        lambda: Step([0.5], 1.0),
        lambda s: _set(s, reward=-1.0, extra="added"),
        lambda s: (s.obs, s.reward, hasattr(s, "extra")),
    ),
    st.Kind.COPY: Case(lambda: {1, 2}, _mutate(lambda s: s.add(3)), lambda s: sorted(s)),
}


def test_every_kind_has_one_handler_and_a_case_here() -> None:
    assert set(kinds.KINDS) == {k.value for k in st.Kind} == set(CASES)
    assert [h.tag for h in kinds.HANDLERS] == list(kinds.KINDS)  # one handler per kind
    assert all(type(h.tag) is str for h in kinds.HANDLERS)


@pytest.mark.parametrize("kind", list(CASES), ids=str)
def test_each_kind_is_captured_restored_in_place_and_compared(kind: st.Kind) -> None:
    case = CASES[kind]
    ns = {"x": case.make()}
    scope = _scope(ns)
    before = case.read(ns["x"])
    snap = _through_store(st.capture(scope, ["x"], {"x"}))
    assert snap.paths["x"].kind == kind and type(snap.paths["x"].kind) is str

    same = fidelity.snapshot_diff(snap, st.capture(scope, ["x"], {"x"}))
    assert same.ok and same.same_kind and same.worst == 0.0 and same.not_compared == 0

    original = ns["x"]
    ns["x"] = case.change(ns["x"])
    if kind is not st.Kind.REF:  # a binding is not state: two functions compare equal
        changed = fidelity.snapshot_diff(snap, st.capture(scope, ["x"], {"x"}))
        assert not changed.ok, kind

    changed_to = ns["x"]
    st.restore(scope, snap)
    if kind is st.Kind.REF:
        assert ns["x"] is changed_to
        return
    assert case.read(ns["x"]) == before
    if case.kept:
        assert ns["x"] is original
    after = fidelity.snapshot_diff(snap, st.capture(scope, ["x"], {"x"}))
    assert after.ok and after.worst == 0.0


def test_a_number_within_tolerance_is_not_a_divergence_and_its_difference_is_measured() -> None:
    a = st.Snapshot(paths={"x": st.Node(st.Kind.VALUE.value, 1.0)})
    b = st.Snapshot(paths={"x": st.Node(st.Kind.VALUE.value, 1.0 + 1e-9)})
    d = fidelity.snapshot_diff(a, b)
    assert d.ok and d.same_kind and d.worst == pytest.approx(1e-9)
    c = st.Snapshot(paths={"x": st.Node(st.Kind.LIST.value, children=[])})
    assert not fidelity.snapshot_diff(a, c).same_kind  # another kind at the same path


def test_an_alias_restores_to_the_same_object_and_a_cycle_is_one_node() -> None:
    inner = [1]
    outer: list[Any] = [inner, inner]
    outer.append(outer)
    ns = {"outer": outer, "alias": inner}
    snap = _through_store(st.capture(_scope(ns), ["outer", "alias"], set()))
    node = snap.paths["outer"]
    assert node.children[0] is node.children[1] is snap.paths["alias"]
    assert node.children[2] is node
    inner.append(2)
    outer.pop()
    st.restore(_scope(ns), snap)
    assert ns["alias"] is inner and inner == [1] and outer[2] is outer and outer[0] is inner


class Callback:
    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.calls = 0


class Trainer:
    def __init__(self) -> None:
        self.step = 0
        self.callbacks = [Callback(self)]


def test_a_back_reference_restores_to_the_object_it_refers_to() -> None:
    trainer = Trainer()
    ns: dict[str, Any] = {"trainer": trainer}
    snap = _through_store(st.capture(_scope(ns), ["trainer"], set()))
    (callback,) = trainer.callbacks
    trainer.step, callback.calls = 5, 2
    st.restore(_scope(ns), snap)
    assert ns["trainer"] is trainer and trainer.step == 0
    assert trainer.callbacks[0] is callback and callback.calls == 0 and callback.trainer is trainer

    now = st.capture(_scope(ns), ["trainer"], set())
    assert fidelity.snapshot_diff(snap, now).ok  # compared once around the cycle
    callback.calls = 1
    assert not fidelity.snapshot_diff(snap, st.capture(_scope(ns), ["trainer"], set())).ok

    ns["trainer"] = None  # rebound to something it cannot be restored into: recreated whole
    st.restore(_scope(ns), snap)
    again = ns["trainer"]
    assert type(again) is Trainer and again is not trainer
    assert again.callbacks[0].trainer is again


def test_restore_checks_every_path_before_changing_any() -> None:
    model = torch.nn.Linear(2, 1)
    history = [1.0]
    ns: dict[str, Any] = {"history": history, "model": model}
    snap = st.capture(_scope(ns), ["history", "model"], set())
    history.append(2.0)
    ns["model"] = torch.nn.Conv1d(1, 1, 1)  # does not fit the recorded Linear
    with pytest.raises(st.CannotRestore, match="expected a Linear module"):
        st.restore(_scope(ns), snap)
    assert history == [1.0, 2.0]  # the first path was not touched either


def test_a_function_binding_that_is_gone_cannot_be_recreated() -> None:
    snap = st.capture(_scope({"f": len}), ["f"], set())
    with pytest.raises(st.CannotRestore, match="function or module binding"):
        st.restore(_scope({}), snap)


def test_an_unknown_kind_is_refused_on_restore_and_compared_by_its_value() -> None:
    node = st.Node("from_a_newer_florc", 1)
    with pytest.raises(st.CannotRestore, match="unknown snapshot kind from_a_newer_florc"):
        st.restore(_scope({"x": 1}), st.Snapshot(paths={"x": node}))
    other = st.Snapshot(paths={"x": st.Node("from_a_newer_florc", 2)})
    assert not fidelity.snapshot_diff(st.Snapshot(paths={"x": node}), other).ok


def test_an_opaque_copy_is_rebound_and_compared_by_its_state() -> None:
    ns = {"x": Opaque(3)}
    snap = st.capture(_scope(ns), ["x"], set())
    assert snap.paths["x"].kind == st.Kind.COPY
    first = ns["x"]
    first.n = 4
    st.restore(_scope(ns), snap)
    assert ns["x"] is not first and ns["x"].n == 3  # no way to write into it: rebound


def test_parts_name_each_child_by_its_access_segment() -> None:
    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(1, 1)
            self.seen = [1]

    ns = {
        "d": {"k": 1},
        "l": [1, 2],
        "o": types.SimpleNamespace(a=1),
        "m": Net(),
        "p": Pair([1], 2),
    }
    snap = st.capture(_scope(ns), list(ns), set())
    names = {path: [seg for seg, _ in kinds.parts(node)] for path, node in snap.paths.items()}
    assert names == {
        "d": ["['k']"],
        "l": ["[0]", "[1]"],
        "o": [".a"],
        "m": [".seen"],
        "p": ["[0]", "[1]"],
    }


class Proxy:
    """An object that says it is a list (isinstance() believes its __class__)."""

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return list


@pytest.mark.parametrize(
    "obj",
    [
        1,
        True,
        None,
        "s",
        (1,),
        [1],
        {"a": 1},
        collections.OrderedDict(a=1),
        collections.defaultdict(list),
        collections.deque([1]),
        {1},
        Pair([1], 2),
        torch.max(torch.tensor([[1.0, 2.0]]), 1),  # a structseq
        Step([1.0], 0.5),
        types.SimpleNamespace(a=1),
        Counter(),
        Opaque(1),
        Proxy(),
        torch.zeros(1),
        torch.nn.Linear(1, 1),
        np.zeros(2),
        random.Random(1),
        st.Kind.LIST,
        len,
        iter([1]),
    ],
    ids=lambda o: type(o).__name__,
)
def test_capture_gives_every_object_the_kind_of_the_first_handler_that_takes_it(obj: Any) -> None:
    """The shortcuts (builtin types straight to their handler, handlers a class rules out not
    asked) decide as asking every handler in order would."""
    asked = next(h.tag for h in kinds.HANDLERS if h.capture(Capturer(), obj, 0) is not None)
    assert Capturer().capture(obj).kind == asked


def test_snapshots_pickle_under_the_names_stores_hold() -> None:
    data = pickle.dumps(st.Snapshot(paths={"x": st.Node("value", 1)}), protocol=5)
    assert b"florc.runtime.state\x94\x8c\x08Snapshot" in data and b"\x8c\x04Node" in data
    assert b"florc.runtime.state.nodes" not in data and b"Kind" not in data


# A checkpoint manifest written before the state code became a package (checkpoint.encode of
# the snapshot built below): it must load, restore, and be what an encode writes today (but for
# the format number).
MANIFEST_HEX = (
    "80059515030000000000004b028c13666c6f72632e72756e74696d652e7374617465948c08536e617073686f"
    "749493942981947d94288c057061746873947d94288c056974656d739468008c044e6f64659493942981947d"
    "94288c046b696e64948c046c697374948c0576616c7565944e8c086368696c6472656e945d94286809298194"
    "7d9428680c680d680e4e680f5d942868092981947d9428680c680e680e4b01680f4e8c03636c73944e8c0565"
    "78747261944e756268092981947d9428680c680e680e4b02680f4e68164e68174e75626568164e68174e7562"
    "681168092981947d9428680c680e680e474004000000000000680f4e68164e68174e75626568164e68174e75"
    "628c06636f756e74739468092981947d9428680c8c046469637494680e4e680f5d94288c0161946809298194"
    "7d9428680c680e680e4b01680f4e68164e68174e756286944b014b02869468092981947d9428680c680e680e"
    "8c017494680f4e68164e68174e756286946568168c086275696c74696e73948c046469637494939468174e75"
    "628c026e739468092981947d9428680c8c066f626a65637494680e89680f7d94288c016e9468092981947d94"
    "28680c680e680e4b03680f4e68164e68174e75628c01739468117568168c057479706573948c0f53696d706c"
    "654e616d65737061636594939468172975628c0677696e646f779468092981947d9428680c8c056465717565"
    "94680e4e680f5d942868092981947d9428680c680e680e4b01680f4e68164e68174e756268092981947d9428"
    "680c680e680e4b02680f4e68164e68174e75626568164e68174b0375628c04746167739468092981947d9428"
    "680c8c04636f707994680e8f94288c01789490680f4e68164e68174e75628c04706169729468092981947d94"
    "28680c8c057475706c6594680e4e680f5d9428681168092981947d9428680c680e680e8c017094680f4e6816"
    "4e68174e75626568164e68174e7562758c076d697373696e67945d948c04676f6e6594618c076f6d69747465"
    "64947d948c03726e67947d948c0770656e64696e67945d948c066e6279746573944b008c077265626f756e64"
    "945d94756286942e"
)


def _old_shape() -> dict[str, Any]:
    shared = [1, 2]
    return {
        "items": [shared, shared, 2.5],
        "counts": {"a": 1, (1, 2): "t"},
        "ns": types.SimpleNamespace(n=3, s=shared),
        "window": collections.deque([1, 2], maxlen=3),
        "tags": {"x"},
        "pair": (shared, "p"),
    }


def test_a_manifest_written_before_loads_restores_and_is_written_the_same_today() -> None:
    manifest = bytes.fromhex(MANIFEST_HEX)
    ns = _old_shape()
    snap = st.capture(_scope(ns), [*ns, "gone"], set())
    snap.rng = {}
    today = bytearray(manifest)
    assert today[11:13] == b"K\x02"  # the format number: 2 then, 3 (chunked tensors) now
    today[12] = checkpoint.FORMAT
    assert checkpoint.encode(snap).manifest == bytes(today)

    old = checkpoint.decode(manifest, lambda sha: b"")
    assert old.missing == ["gone"] and old.paths["ns"].kind == st.Kind.OBJECT
    live = _old_shape()
    shared, window, tags = live["items"][0], live["window"], live["tags"]
    shared.append(3)
    window.append(9)
    tags.add("y")
    live["ns"].n = 0
    st.restore(_scope(live), old)
    assert live["items"] == [[1, 2], [1, 2], 2.5] and live["items"][1] is shared
    assert live["ns"].s is shared and live["ns"].n == 3 and live["pair"][0] is shared
    assert live["window"] is window and list(window) == [1, 2]
    assert live["tags"] is tags and tags == {"x"}
