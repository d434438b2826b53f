"""Parallel replay's plan (pure): segments start at checkpoints and balance the work; workers
get the recording's thread count, or fewer run."""

from __future__ import annotations

from florc.replay.segments import plan_segments, plan_threads

# --- the plan ---------------------------------------------------------------------------


def test_one_worker_gets_everything_from_the_nearest_checkpoint() -> None:
    (seg,) = plan_segments([5, 6, 7], anchors=[1, 2, 4, 6], workers=1)
    assert (seg.start, seg.targets, seg.after_loop) == (4, [5, 6, 7], True)


def test_segments_start_at_checkpoints_and_balance_the_work() -> None:
    segs = plan_segments(list(range(10)), anchors=list(range(1, 11)), workers=3)
    assert len(segs) == 3 and max(s.executed for s in segs) == 4  # ceil(10 / 3)
    assert [t for s in segs for t in s.targets] == list(range(10))
    assert [s.start for s in segs] == [s.targets[0] for s in segs]  # no pass-through
    assert [s.after_loop for s in segs] == [False, False, True]


def test_without_checkpoints_splitting_does_not_help() -> None:
    segs = plan_segments(list(range(8)), anchors=[], workers=4)
    assert max(s.executed for s in segs) == 8  # every worker would start at 0
    assert sorted(t for s in segs for t in s.targets) == list(range(8))


def test_sparse_checkpoints_move_the_cuts() -> None:
    # checkpoints only at 6: the best split is 0-5 | 6-9 (6 and 4 iterations executed)
    segs = plan_segments(list(range(10)), anchors=[6], workers=3)
    assert max(s.executed for s in segs) == 6
    assert all(s.start in (0, 6) for s in segs)
    assert [t for s in segs for t in s.targets] == list(range(10))


def test_more_workers_than_targets() -> None:
    segs = plan_segments([2, 9], anchors=list(range(1, 10)), workers=8)
    assert [(s.start, s.targets) for s in segs] == [(2, [2]), (9, [9])]


def test_workers_get_the_recordings_thread_count_or_fewer_workers_run() -> None:
    tp = plan_threads(2, recorded=2, asked=None, cores=4)
    assert (tp.workers, tp.threads, tp.note) == (2, 2, None)
    tp = plan_threads(2, recorded=2, asked=None, cores=2)
    assert (tp.workers, tp.threads) == (1, 2)
    assert tp.note == (
        "1 worker instead of 2: the recording used 2 torch threads and this machine has 2 "
        "cores; --threads 1 runs 2 workers (values may differ in the last digits)"
    )
    tp = plan_threads(4, recorded=2, asked=1, cores=2)  # asked for: as many as the cores hold
    assert (tp.workers, tp.threads) == (2, 1) and "need 4 cores" in (tp.note or "")
    tp = plan_threads(3, recorded=None, asked=None, cores=2)  # not known: as before
    assert (tp.workers, tp.threads, tp.note) == (3, None, None)
    tp = plan_threads(4, recorded=16, asked=None, cores=16, gpus=4)  # a GPU each: all run
    assert (tp.workers, tp.threads) == (4, 4) and "the recording used 16" in (tp.note or "")
