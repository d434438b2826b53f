"""The checkpoint engine: adaptive policy, background writer, deduplicated store, gc, GPU copies."""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import math
import pickle
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from e2e import florc

from florc.runtime import checkpoint
from florc.runtime import state as st
from florc.runtime.policy import CheckpointPolicy
from florc.runtime.writer import CheckpointJob, Writer
from florc.store.index import CorruptBlob, Store

# --- policy --------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def simulate(budget: float, compute: float, cost: float, epochs: int) -> tuple[int, list[float]]:
    """Epochs of `compute` s, each ending in a boundary checkpoint costing `cost` s when taken.

    Returns (checkpoints taken, the ratio cost/compute after each epoch)."""
    clock = FakeClock()
    policy = CheckpointPolicy(budget, clock)
    policy.start("main")
    taken, ratios = 0, []
    for _ in range(epochs):
        clock.now += compute
        d = policy.decide("main", nbytes=int(cost / 3e-9))
        if d.take:
            taken += 1
            clock.now += cost / 2  # the synchronous copy
            policy.charge_foreground(cost / 2)
            policy.submitted(max(0.0, d.estimate - cost / 2))
            policy.written("main", cost / 2, cost / 2, max(0.0, d.estimate - cost / 2), 1000)
        ratios.append(policy.spent() / policy.compute())
    return taken, ratios


def test_cheap_checkpoints_are_taken_every_time() -> None:
    taken, ratios = simulate(0.05, compute=1.0, cost=0.001, epochs=50)
    assert taken == 50
    assert max(ratios) <= 0.05


@pytest.mark.parametrize("budget", [0.01, 0.05, 0.10])
def test_expensive_checkpoints_are_spread_within_the_budget(budget: float) -> None:
    # a checkpoint costs three epochs of compute
    taken, ratios = simulate(budget, compute=1.0, cost=3.0, epochs=400)
    assert max(ratios) <= budget + 1e-9
    # and the budget is used, not wasted: within one checkpoint of the most it allows
    assert taken >= math.floor(budget * 400 / 3.0) - 1


def test_costs_that_drift_up_are_followed() -> None:
    clock = FakeClock()
    policy = CheckpointPolicy(0.05, clock)
    policy.start("main")
    taken = []
    for epoch in range(200):
        clock.now += 1.0
        cost = 0.01 if epoch < 100 else 0.5  # the state grew
        d = policy.decide("main", nbytes=None if epoch else 1000)
        if d.take:
            policy.charge_foreground(cost)
            clock.now += cost
            policy.written("main", cost, 0.0, 0.0, 1000)
            taken.append(epoch)
        assert policy.spent() <= 0.05 * policy.compute() + 0.5  # at most one surprise
    early = sum(1 for e in taken if e < 100)
    late = sum(1 for e in taken if e >= 100)
    # cumulative rule: (0.05 * 200 s - 100 * 0.01 s) / 0.5 s = 18 expensive ones fit
    assert early == 100 and 14 <= late <= 18
    assert policy.estimate("main") == pytest.approx(0.5, rel=0.05)


def test_blocks_leave_room_for_the_next_boundary() -> None:
    clock = FakeClock()
    policy = CheckpointPolicy(0.1, clock)
    policy.start("main")
    policy.written("main", 0.08, 0.0, 0.0, 1000)  # boundary checkpoints cost 0.08 s
    policy.foreground = policy.background = 0.0
    clock.now = 1.0  # budget so far: 0.1 s
    assert not policy.decide("block", nbytes=int(0.05 / 3e-9)).take  # 0.05 + 0.08 > 0.1
    assert policy.decide("main").take


def test_unlimited_budget_takes_everything() -> None:
    policy = CheckpointPolicy(math.inf, FakeClock())
    policy.start("main")
    assert policy.decide("main", nbytes=10**12).take


# --- store: dedup, compression, corruption ----------------------------------------------


class Frozen(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = torch.nn.Embedding(2000, 64)  # 512 KB, frozen
        self.backbone.weight.requires_grad_(False)
        self.head = torch.nn.Linear(64, 4)


def _snapshot_of(**names: object) -> st.Snapshot:
    frame = SimpleNamespace(
        f_code=SimpleNamespace(co_varnames=(), co_cellvars=(), co_freevars=()),
        f_globals=dict(names),
    )
    frame.f_locals = frame.f_globals
    return st.capture(st.Scope(frame), list(names), set())  # type: ignore[arg-type]


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
    path = store.blob_path(tensor_blob)
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.chmod(0o600)
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptBlob):
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


# --- gc and runs ------------------------------------------------------------------------------

SCRIPT = """\
import torch

torch.manual_seed(0)
frozen = torch.nn.Embedding(4000, 32)
frozen.weight.requires_grad_(False)
head = torch.nn.Linear(32, 2)
opt = torch.optim.SGD(head.parameters(), lr=0.1)
for epoch in range(4):
    for i in range(3):
        loss = head(frozen(torch.arange(i, i + 8))).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    frozen.weight.add_(0)  # in place: part of the changeset, unchanged bytes
    print(f"epoch {epoch} loss {loss.item():.6f}")
"""


def test_runs_sizes_and_gc(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(SCRIPT)
    for _ in range(3):
        assert florc(["record", "--checkpoint-all", "train.py"], tmp_path).returncode == 0
    runs = json.loads(florc(["runs", "--format", "json"], tmp_path).stdout)
    assert [r["checkpoints"] for r in runs] == [8, 8, 8]
    store = Store(tmp_path)
    logical, stored = store.run_bytes(1)
    embedding = 4000 * 32 * 4
    assert logical > 8 * embedding and stored < 2 * embedding
    total_before = store.store_bytes()
    store.close()
    (tmp_path / ".florc" / "blobs" / "ab").mkdir(exist_ok=True)
    orphan = tmp_path / ".florc" / "blobs" / "ab" / ("c" * 62)
    orphan.write_bytes(b"left by a crash")

    res = florc(["gc", "--keep-last", "1"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert "deleted runs 1, 2" in res.stdout
    assert not orphan.exists()
    runs = json.loads(florc(["runs", "--format", "json"], tmp_path).stdout)
    assert [r["id"] for r in runs] == [3]
    store = Store(tmp_path)
    assert store.store_bytes() <= total_before
    for row in store.checkpoints(3):  # what is kept still loads
        checkpoint.decode(store.get_blob(row.blob), store.get_blob)
    with store.exclusive() as alone:
        assert alone
        busy = florc(["gc", "3"], tmp_path)
    assert busy.returncode != 0 and "record or replay is using this store" in busy.stderr
    store.close()
    assert florc(["gc", "7"], tmp_path).returncode == 2


def test_record_rejects_a_budget_outside_0_to_1(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("print(1)\n")
    res = florc(["record", "--overhead", "5", "train.py"], tmp_path)
    assert res.returncode == 2 and "between 0 and 1" in res.stderr
    assert not (tmp_path / ".florc").exists() or not list((tmp_path / ".florc").glob("*.db"))


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
    frame = SimpleNamespace(
        f_code=SimpleNamespace(co_varnames=(), co_cellvars=(), co_freevars=()),
        f_globals={"model": model, "opt": opt},
    )
    frame.f_locals = frame.f_globals
    st.restore(st.Scope(frame), loaded)  # type: ignore[arg-type]
    assert model.weight.device.type == "cuda"
    assert torch.equal(model.weight.detach(), before)
    state = next(iter(opt.state.values()))
    assert state["exp_avg"].device.type == "cuda"
    store.close()


CLASS_SCRIPT = """\
import torch


class Classifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.table = torch.nn.Embedding(200_000, 64)  # 51 MB: the writer is still busy at exit
        self.head = torch.nn.Linear(64, 2)

    def forward(self, idx):
        return self.head(self.table(idx))


torch.manual_seed(0)
model = Classifier()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for epoch in range(3):
    loss = model(torch.arange(epoch, epoch + 4)).sum()
    opt.zero_grad()
    loss.backward()
    opt.step()
    print(f"epoch {epoch} loss {loss.item():.6f}")
"""


def test_checkpoints_of_classes_defined_in_the_script_are_written_after_it_ends(
    tmp_path: Path,
) -> None:
    (tmp_path / "train.py").write_text(CLASS_SCRIPT)
    rec = florc(["record", "--checkpoint-all", "train.py"], tmp_path)
    assert rec.returncode == 0, rec.stderr
    store = Store(tmp_path)
    rows = store.checkpoints(1)
    assert len(rows) == 4 and all(r.usable for r in rows), [r.info for r in rows]
    store.close()


# --- replay: restore or re-run ----------------------------------------------------------

CHEAP_BLOCK = """\
import numpy as np

table = np.zeros(1_000_000)  # 8 MB of state, changed a little each epoch
for epoch in range(5):
    for i in range(3):
        table[i] += epoch + i
    # HINDSIGHT
    print(f"epoch {epoch} {table[:3].sum()}")
"""


def test_a_block_faster_to_run_than_to_restore_is_run_again(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(CHEAP_BLOCK)
    rec = florc(["record", "--checkpoint-all", "train.py"], tmp_path)
    assert rec.returncode == 0, rec.stderr
    store = Store(tmp_path)
    blocks = [c for c in store.checkpoints(1) if c.info.get("ran_seconds") is not None]
    store.close()
    assert len(blocks) == 5  # each block says how long it ran

    edited = CHEAP_BLOCK.replace("# HINDSIGHT", 'print(f"HINDSIGHT e={epoch} {table[2]}")')
    (tmp_path / "train.py").write_text(edited)
    rep = florc(["replay", "train.py", "--epochs", "2-4"], tmp_path)
    assert rep.returncode == 0, rep.stderr
    assert [x for x in rep.stdout.splitlines() if x.startswith("HINDSIGHT")] == [
        f"HINDSIGHT e={e} {float(2 + sum(range(e + 1)) + 2 * e)}" for e in (2, 3, 4)
    ]
    # the epoch boundary is restored (the only way to skip epochs 0-1); the blocks run again
    assert "because that was faster than restoring" in rep.stderr, rep.stderr
    assert "fidelity: exact" in rep.stderr


def test_restore_speed_starts_from_a_prior_then_learns() -> None:
    from florc.runtime.session import RestoreSpeed

    speed = RestoreSpeed()
    assert speed.estimate(10**9) == pytest.approx(1.001)
    speed.observe(10**8, 1.0)  # 100 MB/s measured here
    assert speed.estimate(10**9) == pytest.approx(10.0)


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


def _scope_of(**names: object) -> st.Scope:
    frame = SimpleNamespace(
        f_code=SimpleNamespace(co_varnames=(), co_cellvars=(), co_freevars=()),
        f_globals=names,
    )
    frame.f_locals = frame.f_globals
    return st.Scope(frame)  # type: ignore[arg-type]


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
    scope = _scope_of(**names)
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


LOCK_SCRIPT = """\
import threading

import torch


class Counter:
    def __init__(self):
        self.lock = threading.Lock()
        self.seen = 0
{getstate}

torch.manual_seed(0)
counter = Counter()
w = torch.zeros(3)
for epoch in range(4):
    for i in range(3):
        with counter.lock:
            counter.seen += 1
        w += i
    print(f"epoch {epoch} seen {counter.seen} w {w.sum().item()}")
"""

GETSTATE = """
    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "lock"}
"""


def test_an_object_neither_can_serialise_is_reported_once_with_its_path(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(LOCK_SCRIPT.replace("{getstate}", ""))
    rec = florc(["record", "--checkpoint-all", "train.py"], tmp_path)
    assert rec.returncode == 0, rec.stderr
    notes = [ln for ln in rec.stderr.splitlines() if "counter.lock" in ln]
    assert len(notes) == 1, rec.stderr  # once per run, not once per checkpoint
    assert "not usable" in notes[0] and "give the class of `counter` a __getstate__" in notes[0]

    # what the note says to do works: the lock is left out, the rest is restored
    work = tmp_path / "fixed"
    work.mkdir()
    (work / "train.py").write_text(LOCK_SCRIPT.replace("{getstate}", GETSTATE))
    rec = florc(["record", "--checkpoint-all", "train.py"], work)
    assert rec.returncode == 0 and "not usable" not in rec.stderr, rec.stderr
    edited = LOCK_SCRIPT.replace("{getstate}", GETSTATE).replace(
        '    print(f"epoch', '    print(f"HINDSIGHT {epoch} {counter.seen}")\n    print(f"epoch'
    )
    (work / "train.py").write_text(edited)
    rep = florc(["replay", "train.py", "--epochs", "2-3"], work)
    assert rep.returncode == 0, rep.stderr
    assert [x for x in rep.stdout.splitlines() if x.startswith("HINDSIGHT")] == [
        "HINDSIGHT 2 9",
        "HINDSIGHT 3 12",
    ]
    # epochs 0-1 were skipped: the boundary checkpoint holding `counter` was restored, and the
    # loop's `with counter.lock` ran on the live lock
    assert "1 epoch checkpoint and" in rep.stderr, rep.stderr


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

    def diff(a: object, b: object) -> fidelity._Diff:
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
    frame = SimpleNamespace(
        f_code=SimpleNamespace(co_varnames=(), co_cellvars=(), co_freevars=()), f_globals=ns
    )
    frame.f_locals = ns
    scope = st.Scope(frame)  # type: ignore[arg-type]
    entry = st.identities(scope, ["output", "outputs"])
    for k in range(2, 4):
        ns["output"] = torch.tensor([float(k)])
        ns["outputs"] += [ns["output"]]
    snap = st.capture(scope, ["output", "outputs"], set(), entry)
    assert snap.rebound == ["output"]
    start = torch.tensor([1.0])
    ns.update(output=start, outputs=[start])  # the state at the loop's start, again
    kept = ns["outputs"]
    st.restore(st.Scope(frame), snap)  # type: ignore[arg-type]
    assert [t.item() for t in ns["outputs"]] == [1.0, 2.0, 3.0]
    assert ns["outputs"] is kept and ns["output"] is ns["outputs"][-1]
    assert start.item() == 1.0
