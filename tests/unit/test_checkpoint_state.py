"""The checkpoint engine in process: deduplicated and compressed blobs, the background writer,
and complete state (module attributes, namedtuples, dataclasses, what pickle refuses, opaque
objects, rebound names) captured, stored and restored in place; GPU copies with CUDA."""

from __future__ import annotations

import collections
import dataclasses
import functools
import pickle
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")

from florc.runtime import checkpoint  # noqa: E402
from florc.runtime import state as st  # noqa: E402
from florc.runtime.writer import CheckpointJob, Writer  # noqa: E402
from florc.store.index import CorruptBlob, Store  # noqa: E402

# --- store: dedup, compression, corruption ----------------------------------------------


class Frozen(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = torch.nn.Embedding(2000, 64)  # 512 KB, frozen
        self.backbone.weight.requires_grad_(False)
        self.head = torch.nn.Linear(64, 4)


def _scope(names: dict[str, object]) -> st.Scope:
    """The scope of a stand-in module frame whose globals (and locals) are `names` itself."""
    code = SimpleNamespace(co_varnames=(), co_cellvars=(), co_freevars=())
    frame = SimpleNamespace(f_code=code, f_globals=names, f_locals=names)
    return st.Scope(frame)  # type: ignore[arg-type]


def _scope_of(**names: object) -> st.Scope:
    return _scope(names)


def _snapshot_of(**names: object) -> st.Snapshot:
    """Every name checkpointed, as the loop's changeset."""
    return st.capture(_scope(names), list(names), set())


def _write(store_dir: Path, snaps: list[st.Snapshot], compress: bool = False) -> Writer:
    writer = Writer(store_dir.parent, store_dir, compress=compress)
    for i, snap in enumerate(snaps):
        writer.submit_checkpoint(CheckpointJob(1, "loop", i, 0, snap, {}))
    writer.close()
    return writer


def test_unchanged_tensors_are_stored_once(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Frozen()
    opt = torch.optim.SGD(model.head.parameters(), lr=0.1)
    snaps = []
    for _ in range(5):
        loss = model.head(model.backbone(torch.arange(8))).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        snaps.append(_snapshot_of(model=model, opt=opt))
    store_dir = tmp_path / ".florc"
    writer = _write(store_dir, snaps)
    store = Store(tmp_path, store_dir)
    logical, stored = store.run_bytes(1)
    frozen_bytes = model.backbone.weight.nelement() * 4
    assert logical >= 5 * frozen_bytes
    assert stored < 1.5 * frozen_bytes, "the frozen embedding must be stored once"
    assert writer.stats.blobs_shared >= 4
    # and each checkpoint restores its own head weights
    rows = store.checkpoints(1)
    first = checkpoint.decode(store.get_blob(rows[0].blob), store.get_blob)
    head_w = first.paths["model"].value["head.weight"]
    assert torch.equal(head_w, snaps[0].paths["model"].value["head.weight"])
    assert not torch.equal(head_w, model.head.weight)
    store.close()


def test_compressed_blobs_round_trip_and_corruption_is_detected(tmp_path: Path) -> None:
    zeros = torch.zeros(100_000)  # compresses well
    store_dir = tmp_path / ".florc"
    _write(store_dir, [_snapshot_of(x=zeros)], compress=True)
    store = Store(tmp_path, store_dir)
    logical, stored = store.run_bytes(1)
    assert stored < logical / 10
    row = store.checkpoints(1)[0]
    snap = checkpoint.decode(store.get_blob(row.blob), store.get_blob)
    assert torch.equal(snap.paths["x"].value, zeros)
    tensor_blob = next(b for b in store.checkpoint_blobs(row.id) if b != row.blob)
    path, offset, length = store.blob_location(tensor_blob)
    raw = bytearray(path.read_bytes())
    raw[offset + length - 1] ^= 0xFF  # the last byte of the tensor's entry in the pack
    path.chmod(0o600)
    path.write_bytes(bytes(raw))
    store.get_blob(row.blob)  # the manifest, in the same pack, still reads
    with pytest.raises(CorruptBlob, match="does not decompress|hash mismatch"):
        checkpoint.decode(store.get_blob(row.blob), store.get_blob)
    store.close()


def test_numpy_arrays_and_odd_dtypes_round_trip(tmp_path: Path) -> None:
    import numpy as np

    values = {
        "a": np.arange(50_000, dtype=np.float64).reshape(500, 100),
        "b": torch.ones(60_000, dtype=torch.bfloat16),
        "c": torch.rand(100_000) > 0.5,
        "d": torch.arange(60_000).reshape(600, 100)[:, ::2],  # not contiguous when captured
        "small": torch.arange(10),  # stays inside the manifest
    }
    store_dir = tmp_path / ".florc"
    _write(store_dir, [_snapshot_of(**values)])
    store = Store(tmp_path, store_dir)
    row = store.checkpoints(1)[0]
    snap = checkpoint.decode(store.get_blob(row.blob), store.get_blob)
    assert np.array_equal(snap.paths["a"].value, values["a"])
    for k in ("b", "c", "d", "small"):
        got = snap.paths[k].value
        assert got.dtype == values[k].dtype and torch.equal(got, values[k])
    assert len(store.checkpoint_blobs(row.id)) == 5  # the manifest and four large ones
    store.close()


# --- writer -------------------------------------------------------------------------------


def test_a_full_queue_blocks_the_submitter_and_says_how_long(tmp_path: Path) -> None:
    store_dir = tmp_path / ".florc"
    writer = Writer(tmp_path, store_dir, max_queue_bytes=1)
    gate = threading.Event()
    writer.submit(lambda store: gate.wait(5))
    snap = _snapshot_of(x=torch.ones(10_000))
    first = writer.submit_checkpoint(CheckpointJob(1, "loop", 0, 0, snap, {}))
    threading.Timer(0.3, gate.set).start()
    waited = writer.submit_checkpoint(
        CheckpointJob(1, "loop", 1, 0, _snapshot_of(x=torch.ones(10_000)), {})
    )
    writer.close()
    assert first == 0.0
    assert waited >= 0.2
    assert writer.stats.checkpoints == 2


def test_a_checkpoint_that_cannot_be_serialised_is_marked_not_usable(tmp_path: Path) -> None:
    store_dir = tmp_path / ".florc"
    snaps = [st.Snapshot(paths={"f": st.Node("copy", threading.Lock())}) for _ in range(3)]
    writer = _write(store_dir, snaps)
    store = Store(tmp_path, store_dir)
    rows = store.checkpoints(1)
    assert len(rows) == 3 and not any(r.usable for r in rows)
    assert "`f` (a lock) cannot be serialised" in rows[0].info["reason"]
    # one reason for the three, said once, with the object's path
    assert list(writer.stats.unusable_reasons.values()) == [[3, "f"]]
    store.close()


# --- GPU --------------------------------------------------------------------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda
def test_gpu_state_is_copied_to_pinned_memory_and_restored_onto_its_device(tmp_path: Path) -> None:
    model = torch.nn.Linear(256, 256).cuda()
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(8, 256, device="cuda")).sum().backward()
    opt.step()
    snap = _snapshot_of(model=model, opt=opt)
    assert snap.pending, "GPU copies should be asynchronous"
    assert snap.paths["model"].value["weight"].is_pinned()
    before = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)  # the training stream goes on; the snapshot must not see this
    store_dir = tmp_path / ".florc"
    _write(store_dir, [snap])
    store = Store(tmp_path, store_dir)
    row = store.checkpoints(1)[0]
    loaded = checkpoint.decode(store.get_blob(row.blob), store.get_blob)
    assert torch.equal(loaded.paths["model"].value["weight"], before.cpu())
    st.restore(_scope_of(model=model, opt=opt), loaded)
    assert model.weight.device.type == "cuda"
    assert torch.equal(model.weight.detach(), before)
    state = next(iter(opt.state.values()))
    assert state["exp_avg"].device.type == "cuda"
    store.close()


# --- complete state: module attributes, namedtuples, dataclasses, opaque objects ---------------

SavedAction = collections.namedtuple("SavedAction", ["log_prob", "value"])


class Buffered(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(2, 2)
        self.inner = Inner()
        self.saved_actions: list[SavedAction] = []
        self.rewards: list[float] = []
        self.counts = {"steps": 0}
        self.window: collections.deque[float] = collections.deque(maxlen=3)
        self.baseline = torch.zeros(2)  # a plain tensor attribute, not a buffer


class Inner(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(2, 1)
        self.history: list[float] = []


def _through_store(snap: st.Snapshot) -> st.Snapshot:
    enc = checkpoint.encode(snap)
    return checkpoint.decode(enc.manifest, lambda sha: bytes(enc.payloads[sha]))


def test_module_attributes_are_captured_and_restored_in_place() -> None:
    model = Buffered()
    model.rewards.extend([1.0, 0.5])
    model.saved_actions.append(SavedAction(torch.tensor(-0.3), torch.tensor([0.7])))
    model.counts["steps"] = 2
    model.baseline += 1.5
    model.inner.history.append(3.0)
    model.window.extend([0.1, 0.2])
    names: dict[str, object] = {"model": model, "rewards": model.rewards}  # an alias
    scope = _scope(names)
    snap = _through_store(st.capture(scope, ["model", "rewards"], {"model"}))

    rewards, counts, baseline, window = model.rewards, model.counts, model.baseline, model.window
    model.window.extend([7.0, 8.0, 9.0])
    del model.rewards[:]
    del model.saved_actions[:]
    model.counts["steps"] = 9
    model.baseline.zero_()
    model.inner.history.clear()
    model.scratch = "added after the checkpoint"
    st.restore(scope, snap)

    assert model.rewards is rewards and names["rewards"] is rewards and rewards == [1.0, 0.5]
    assert model.counts is counts and counts == {"steps": 2}
    assert model.baseline is baseline and torch.equal(baseline, torch.full((2,), 1.5))
    ((log_prob, value),) = model.saved_actions
    assert type(model.saved_actions[0]) is SavedAction
    assert torch.equal(log_prob, torch.tensor(-0.3)) and torch.equal(value, torch.tensor([0.7]))
    assert model.inner.history == [3.0]
    assert model.window is window and list(window) == [0.1, 0.2] and window.maxlen == 3
    assert not hasattr(model, "scratch")
    assert model.training and "_parameters" in vars(model)  # torch's bookkeeping untouched


@dataclasses.dataclass
class Transition:
    obs: torch.Tensor
    reward: float


@dataclasses.dataclass(frozen=True, slots=True)
class FrozenStep:
    value: torch.Tensor
    tag: str


def test_namedtuples_and_dataclasses_are_walked_and_their_live_graphs_seen() -> None:
    w = torch.ones(2, requires_grad=True)
    out = (w * 3).sum()  # a live graph: not backpropagated yet
    cases = {
        "model": lambda m: m.saved_actions.append(SavedAction(out, out)),
        "steps": lambda m: m.append(Transition(out, 1.0)),
        "frozen": lambda m: m.append(FrozenStep(out, "x")),
        "nested": lambda m: m.append({"k": [(1, SimpleNamespace(t=out))]}),
        "window": lambda m: m.append(collections.deque([0, out])),
    }
    where = {
        "model": "model.saved_actions[0].log_prob",
        "steps": "steps[0].obs",
        "frozen": "frozen[0].value",
        "nested": "nested[0]['k'][0][1].t",
        "window": "window[0][1]",
    }
    for name, fill in cases.items():
        holder: object = Buffered() if name == "model" else []
        fill(holder)
        with pytest.raises(st.CannotSnapshot) as info:
            st.capture(_scope_of(**{name: holder}), [name], {name})
        assert info.value.where == where[name], str(info.value)
        assert f"`{where[name]}`" in str(info.value) and "autograd graph" in str(info.value)

    out.backward()  # the graph is spent: the same structures can be checkpointed and restored
    steps = [Transition(torch.tensor([1.0]), 0.5), FrozenStep(torch.tensor([2.0]), "a")]
    first, second = steps
    scope = _scope_of(steps=steps)
    snap = _through_store(st.capture(scope, ["steps"], {"steps"}))
    first.obs.add_(10)
    first.reward = -1.0
    object.__setattr__(second, "tag", "b")
    st.restore(scope, snap)
    assert steps[0] is first and first.reward == 0.5 and torch.equal(first.obs, torch.tensor([1.0]))
    assert steps[1] is second and second.tag == "a"


def make_counter(start: int):  # noqa: ANN201 - returns a closure
    class Local:
        def __init__(self) -> None:
            self.n = start

    def thunk() -> Local:
        return Local()

    return thunk


def test_what_plain_pickle_refuses_goes_through_cloudpickle_and_restores_in_place(
    tmp_path: Path,
) -> None:
    thunks = [make_counter(3), make_counter(4)]
    env = SimpleNamespace(
        env_fns=thunks,
        envs=[fn() for fn in thunks],  # instances of a class defined in a function
        visits=collections.defaultdict(lambda: 0),  # a lambda
        weights=torch.arange(20_000.0),  # large: stored as a blob of its own
    )
    env.visits["a"] += 2
    with pytest.raises(Exception):  # noqa: B017 - plain pickle refuses it, whatever the error
        pickle.dumps(env.visits)
    snap = _snapshot_of(env=env)
    store_dir = tmp_path / ".florc"
    _write(store_dir, [snap])
    store = Store(tmp_path, store_dir)
    (row,) = store.checkpoints(1)
    assert row.usable, row.info
    assert len(store.checkpoint_blobs(row.id)) == 2  # the manifest and the tensor
    back = checkpoint.decode(store.get_blob(row.blob), store.get_blob)
    store.close()

    scope = _scope_of(env=env)
    first, visits = env.envs[0], env.visits
    first.n = 99
    env.visits["b"] = 5
    env.weights.zero_()
    st.restore(scope, back)
    assert env.envs[0] is first and first.n == 3 and env.envs[1].n == 4
    assert env.visits is visits and dict(visits) == {"a": 2} and visits["new"] == 0
    assert env.env_fns is thunks and torch.equal(env.weights, torch.arange(20_000.0))


class Connection:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent = 0


class Worker:
    def __init__(self) -> None:
        self.conn = Connection()
        lock = self.conn.lock
        self.job = functools.partial(lambda: lock)  # copied whole; a closure over a lock


def test_what_neither_can_serialise_is_named_by_its_path() -> None:
    pool = SimpleNamespace(workers=[Worker()])
    with pytest.raises(st.CannotSnapshot) as info:  # the lock itself: not even copied
        st.capture(_scope_of(pool=pool), ["pool"], {"pool"})
    assert info.value.where == "pool.workers[0].conn.lock"
    del pool.workers[0].conn.lock
    snap = st.capture(_scope_of(pool=pool), ["pool"], {"pool"})
    with pytest.raises(checkpoint.Unserialisable) as err:
        checkpoint.encode(snap)
    assert err.value.where == "pool.workers[0].job.func", str(err.value)
    assert "cannot be serialised, by pickle or cloudpickle" in str(err.value)


class Opaque:
    """State florc cannot walk (its own __reduce__) and no __eq__: compared by pickled bytes."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __reduce__(self) -> tuple[object, ...]:
        return (Opaque, (self.n,))


class Sealed:
    """Neither comparable nor picklable: counted as not compared."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def __deepcopy__(self, memo: dict[int, object]) -> Sealed:
        return Sealed()


def test_opaque_objects_are_compared_by_state_never_by_identity() -> None:
    from florc.runtime import fidelity

    def diff(a: object, b: object) -> fidelity.SnapshotDiff:
        return fidelity.snapshot_diff(_snapshot_of(x=a), _snapshot_of(x=b))

    same = diff(Opaque(3), Opaque(3))  # two objects, one state
    assert same.same_kind and same.ok and same.worst == 0.0 and same.not_compared == 0
    assert not diff(Opaque(3), Opaque(4)).ok
    sealed = diff(Sealed(), Sealed())
    assert sealed.ok and sealed.not_compared == 1
    evidence = fidelity.Evidence("train.py:3", 0, 0.0, True, True, {fidelity.NO_STATE: 1})
    verdict = fidelity.verdict([evidence])
    assert verdict.line.startswith("fidelity: exact")
    assert "1 checkpointed value with no comparable state left out" in verdict.line


def test_a_rebound_name_is_restored_as_a_new_object_not_into_the_one_it_held() -> None:
    # `for ...: output = step(output); outputs += [output]`: at the loop's start `output` is the
    # last element of `outputs`; writing the recorded end value into that tensor would change
    # the list's element too
    first = torch.tensor([1.0])
    ns = {"output": first, "outputs": [first]}
    scope = _scope(ns)
    entry = st.identities(scope, ["output", "outputs"])
    for k in range(2, 4):
        ns["output"] = torch.tensor([float(k)])
        ns["outputs"] += [ns["output"]]
    snap = st.capture(scope, ["output", "outputs"], set(), entry)
    assert snap.rebound == ["output"]
    start = torch.tensor([1.0])
    ns.update(output=start, outputs=[start])  # the state at the loop's start, again
    kept = ns["outputs"]
    st.restore(_scope(ns), snap)
    assert [t.item() for t in ns["outputs"]] == [1.0, 2.0, 3.0]
    assert ns["outputs"] is kept and ns["output"] is ns["outputs"][-1]
    assert start.item() == 1.0
