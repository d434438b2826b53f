"""The tensor tracker (which tensors a checkpoint need not copy), the host buffer pool, and the
chunked tensor references of checkpoint format 3."""

from __future__ import annotations

import io
import pickle

import pytest

torch = pytest.importorskip("torch")

from florc.runtime import checkpoint  # noqa: E402
from florc.runtime import state as st  # noqa: E402
from florc.runtime.state.buffers import HostBuffers  # noqa: E402
from florc.runtime.state.capture import Capturer  # noqa: E402
from florc.runtime.state.tracker import StoredTensor, TensorTracker  # noqa: E402


def _checkpoint(tracker: TensorTracker, t: torch.Tensor, number: int) -> str:
    """One checkpoint of `t` as record takes it: 'skip', or 'copy' with its stale list."""
    stored = tracker.unchanged(t)
    if stored is not None:
        tracker.referenced(stored, number)
        return "skip"
    entry = tracker.copied(t)
    assert entry is not None
    tracker.submitted([entry])
    stale = tracker.committed(entry, checkpoint.chunk_keys(t.detach().clone()) or ())
    return f"copy {stale}" if stale else "copy"


def test_an_unwritten_tensor_is_skipped_and_verified_every_few_checkpoints() -> None:
    tracker = TensorTracker(verify_every=4)
    t = torch.randn(256, 256)
    seen = [_checkpoint(tracker, t, n) for n in range(8)]
    assert seen == ["copy", "skip", "skip", "skip", "copy", "skip", "skip", "skip"]
    assert tracker.stats.verified == 1 and tracker.stats.stale == 0
    assert tracker.stats.skipped_bytes == 6 * t.nbytes


@pytest.mark.parametrize(
    "write",
    [
        lambda t: t.requires_grad_(False).add_(1.0),  # in place: the version counter moves
        lambda t: t.data.mul_(0.5),  # through .data: no counter, every element (the probe)
        lambda t: t.data.copy_(torch.randn_like(t)),
        lambda t: setattr(t, "data", torch.randn_like(t)),  # new storage
    ],
    ids=["in-place", "data-mul", "data-copy", "new-storage"],
)
def test_a_written_tensor_is_copied(write: object) -> None:
    tracker = TensorTracker()
    t = torch.nn.Parameter(torch.randn(256, 256))
    assert _checkpoint(tracker, t, 0) == "copy"
    assert _checkpoint(tracker, t, 1) == "skip"
    write(t)  # type: ignore[operator]
    assert _checkpoint(tracker, t, 2) == "copy"


def test_batchnorm_statistics_and_fused_adam_are_never_skipped() -> None:
    """Both write without moving the version counter; the probe sees every change."""
    tracker = TensorTracker()
    norm = torch.nn.BatchNorm1d(20000)
    weight = torch.nn.Parameter(torch.randn(20000))
    opt = torch.optim.Adam([weight], lr=0.1, fused=True)
    for n in range(4):
        norm(torch.randn(8, 20000))
        weight.grad = torch.randn(20000)
        opt.step()
        assert _checkpoint(tracker, norm.running_mean, n) == "copy"
        assert _checkpoint(tracker, weight, n) == "copy"


def test_a_sparse_write_behind_the_counter_makes_the_skipping_checkpoints_unusable() -> None:
    tracker = TensorTracker(verify_every=4)
    table = torch.nn.Parameter(torch.randn(4000, 32))
    assert _checkpoint(tracker, table, 0) == "copy"
    table.data[5] += 1.0  # a row between the probed elements, the counter unmoved
    assert _checkpoint(tracker, table, 1) == "skip"  # wrong, found out below
    assert _checkpoint(tracker, table, 2) == "skip"
    assert _checkpoint(tracker, table, 3) == "skip"
    assert _checkpoint(tracker, table, 4) == "copy [1, 2, 3]"
    assert tracker.stats.stale == 3
    assert _checkpoint(tracker, table, 5) == "copy"  # never trusted again


def test_skips_while_a_verification_is_still_being_written_are_verified_too() -> None:
    """The writer lags: checkpoints skip the verifying copy before its verdict is known."""
    tracker = TensorTracker(verify_every=4)
    table = torch.nn.Parameter(torch.randn(4000, 32))

    def copy(n: int) -> tuple[object, tuple[str, ...]]:
        entry = tracker.copied(table)
        assert entry is not None
        tracker.submitted([entry])
        return entry, checkpoint.chunk_keys(table.detach().clone()) or ()

    tracker.committed(*copy(0))
    table.data[5] += 1.0
    for n in (1, 2, 3):
        tracker.referenced(tracker.unchanged(table), n)  # type: ignore[arg-type]
    assert tracker.unchanged(table) is None
    pending = copy(4)  # its checkpoint is not durable yet ...
    for n in (5, 6, 7):
        stored = tracker.unchanged(table)  # ... and later ones skip it
        assert stored is not None
        tracker.referenced(stored, n)
        table.data[9] += 1.0
    assert tracker.committed(*pending) == [1, 2, 3]  # type: ignore[arg-type]
    assert tracker.unchanged(table) is None  # untrusted now; the skips of 5-7 are checked:
    assert tracker.committed(*copy(8)) == [5, 6, 7]  # type: ignore[arg-type]


def test_the_end_of_a_run_verifies_what_was_skipped_since_the_last_verification() -> None:
    tracker = TensorTracker(verify_every=100)
    table = torch.nn.Parameter(torch.randn(4000, 32))
    other = torch.randn(4000, 32)
    for n in range(3):
        _checkpoint(tracker, table, n)
        _checkpoint(tracker, other, n)
    table.data[7] -= 2.0
    pending = tracker.unverified()
    assert {id(live) for _, live in pending} == {id(table), id(other)}
    stale = {
        id(live): tracker.finish_verification(entry, checkpoint.chunk_keys(live))
        for entry, live in pending
    }
    assert stale == {id(table): [1, 2], id(other): []}


def test_untracked_tensors() -> None:
    tracker = TensorTracker()
    small = torch.randn(16)
    strided = torch.randn(512, 512).t()
    with torch.inference_mode():
        inference = torch.randn(512, 512)
    for t in (small, strided, inference):
        assert tracker.copied(t) is None
        assert tracker.unchanged(t) is None


def test_the_tracker_draws_nothing_from_the_random_generators() -> None:
    tracker = TensorTracker()
    t = torch.randn(1000, 100)
    before = torch.random.get_rng_state()
    for n in range(5):
        _checkpoint(tracker, t, n)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_a_dead_tensor_is_forgotten_and_its_id_not_mistaken() -> None:
    tracker = TensorTracker()
    t = torch.randn(512, 512)
    _checkpoint(tracker, t, 0)
    key = id(t)
    del t
    assert key not in tracker._entries
    u = torch.randn(512, 512)
    assert tracker.unchanged(u) is None


def test_host_buffers_are_reused_once_given_back() -> None:
    pool = HostBuffers()
    t = torch.randn(300, 300)
    copy, buf = pool.like(t)
    copy.copy_(t)
    assert torch.equal(copy, t) and copy.shape == t.shape and copy.dtype == t.dtype
    pool.give_back([(buf, False)])
    again, buf2 = pool.like(t)
    assert buf2 is buf and pool.reused == 1 and pool.allocated == 1
    other, _ = pool.like(torch.randn(10, 10, dtype=torch.float64))
    assert other.dtype == torch.float64 and pool.allocated == 2


def test_host_buffers_keep_at_most_max_bytes() -> None:
    pool = HostBuffers(max_bytes=1000)
    _, buf = pool.like(torch.zeros(4000, dtype=torch.uint8))
    pool.give_back([(buf, False)])
    _, again = pool.like(torch.zeros(4000, dtype=torch.uint8))
    assert again is not buf


def test_a_capture_with_a_tracker_skips_and_its_checkpoint_round_trips() -> None:
    """Capture, encode (chunked), decode: a skipped tensor comes back from the earlier blobs."""
    tracker, pool = TensorTracker(), HostBuffers()
    model = torch.nn.Linear(1024, 600)  # a 2.4 MB weight: three chunks
    store: dict[str, bytes] = {}

    def take() -> checkpoint.Encoded:
        cap = Capturer(tracker=tracker, buffers=pool)
        snap = st.Snapshot(paths={"model": cap.capture(model)})
        snap.tracked = cap.tracked
        tracker.submitted(snap.tracked.values())
        enc = checkpoint.encode(snap)
        for key, raw in enc.payloads.items():
            store[key] = bytes(raw)
        for entry, keys in enc.tracked:
            tracker.committed(entry, keys)
        pool.give_back(cap.taken)
        return enc

    first = take()
    assert len(first.payloads) == 3  # the weight's chunks (the bias is small: inline)
    with torch.no_grad():
        model.bias.add_(1.0)
    second = take()
    assert not second.payloads and len(second.shared) == 3  # the weight is not copied
    assert len(second.stored) == 1 and isinstance(second.stored[0], StoredTensor)
    snap = checkpoint.decode(second.manifest, store.__getitem__)
    state = snap.paths["model"].value
    assert torch.equal(state["weight"], model.weight) and torch.equal(state["bias"], model.bias)
    with torch.no_grad():
        model.weight.mul_(2.0)
    third = take()  # copied again, into the buffer the first copy used
    assert len(third.payloads) == 3 and pool.reused == 1 and pool.allocated == 1
    state = checkpoint.decode(third.manifest, store.__getitem__).paths["model"].value
    assert torch.equal(state["weight"], model.weight)


def test_format_2_references_still_load() -> None:
    """A checkpoint written before chunking: one SHA-256 blob per tensor, the key a string."""
    t = torch.arange(20000, dtype=torch.float32)
    raw = t.numpy().tobytes()

    class Old(pickle.Pickler):
        def persistent_id(self, obj: object) -> object:
            return ("torch", "k" * 64, "float32", (20000,)) if obj is t else None

    buf = io.BytesIO()
    Old(buf, protocol=5).dump((2, st.Snapshot(paths={"x": st.Node("tensor", t)})))
    snap = checkpoint.decode(buf.getvalue(), {"k" * 64: raw}.__getitem__)
    assert torch.equal(snap.paths["x"].value, t)
