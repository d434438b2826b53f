"""The adaptive checkpoint policy (pure: a fake clock, no torch): what it takes under a budget,
how it follows costs that change, what it charges for the writer's work (the slowdown training
feels, from injected clock samples), and the restore-speed estimate replay decides with."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from florc.runtime.policy import CheckpointPolicy, Sample


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


def test_restore_speed_starts_from_a_prior_then_learns() -> None:
    from florc.runtime.replay import RestoreSpeed

    speed = RestoreSpeed()
    assert speed.estimate(10**9) == pytest.approx(1.001)
    speed.observe(10**8, 1.0)  # 100 MB/s measured here
    assert speed.estimate(10**9) == pytest.approx(10.0)


# what the writer's work costs: samples as the writer would read them ---------------------------
def idle_window(policy: CheckpointPolicy, start: float, wall: float, training_cores: float) -> None:
    """The writer idle for `wall` s while training used `training_cores` cores."""
    a = Sample(start, 100.0, 5.0)
    policy.observe_idle(a, Sample(start + wall, 100.0 + training_cores * wall, 5.0))


def job(wall: float, training_cores: float, writer_cores: float, blocked: float = 0.0):
    """The samples at the start and end of a checkpoint the writer wrote in `wall` s."""
    a = Sample(10.0, 100.0, 5.0, 1.0)
    writer = writer_cores * wall
    b = Sample(
        10.0 + wall, 100.0 + training_cores * (wall - blocked) + writer, 5.0 + writer, 1.0 + blocked
    )
    return a, b


def started(cores: int, memory_share: float = 0.0) -> tuple[FakeClock, CheckpointPolicy]:
    """A policy whose main loop has started; memory_share 0: the CPU-rate model alone."""
    clock = FakeClock()
    policy = CheckpointPolicy(0.05, clock, cores=cores, memory_share=memory_share)
    policy.start("main")
    return clock, policy


def test_idle_rate_is_learned_from_idle_windows_inside_the_main_loop() -> None:
    clock, policy = started(cores=2)
    assert policy.idle_rate() is None
    idle_window(policy, -1.0, 0.5, training_cores=0.1)  # before the main loop: not counted
    assert policy.idle_rate() is None
    idle_window(policy, 0.0, 0.5, training_cores=1.0)
    idle_window(policy, 0.5, 0.5, training_cores=0.8)
    assert policy.idle_rate() == pytest.approx(0.9, rel=0.01)  # weighted by wall time
    clock.now = 2.0
    policy.stop()
    idle_window(policy, 1.5, 1.0, training_cores=0.1)  # ends after the main loop: not counted
    assert policy.idle_rate() == pytest.approx(0.9, rel=0.01)


def test_the_writers_cpu_on_an_idle_core_costs_about_nothing() -> None:
    _, policy = started(cores=2)
    idle_window(policy, 0.0, 1.0, training_cores=1.0)
    a, b = job(0.2, training_cores=1.0, writer_cores=1.0)  # training kept its pace
    assert policy.background_cost(a, b) == pytest.approx(0.0, abs=1e-9)
    policy.job_written("main", 0.01, a, b, 0.0, 10**6)
    s = policy.summary()
    assert s["writer_cpu_seconds"] == pytest.approx(0.2)
    assert s["background_seconds"] == pytest.approx(0.0, abs=1e-9)
    assert s["cost_seconds"] == pytest.approx(0.0, abs=1e-9)  # foreground is charged by save
    assert policy.estimate("main") == pytest.approx(0.01)  # foreground + charged background


def test_the_slowdown_of_training_is_charged() -> None:
    # two cores, training uses both; the writer's core is taken from it: training at 1.0
    _, policy = started(cores=2)
    idle_window(policy, 0.0, 1.0, training_cores=2.0)
    a, b = job(0.4, training_cores=1.0, writer_cores=1.0)
    assert policy.background_cost(a, b) == pytest.approx(0.2)  # 0.4 s at half speed
    # the training thread waiting for the writer (queue, GIL) shows as a lower rate
    a, b = job(0.4, training_cores=0.5, writer_cores=1.0)
    assert policy.background_cost(a, b) == pytest.approx(0.3)


def test_at_least_a_share_of_the_writers_cpu_is_charged_for_shared_memory() -> None:
    _, policy = started(cores=2, memory_share=0.5)
    idle_window(policy, 0.0, 1.0, training_cores=1.0)
    a, b = job(0.2, training_cores=1.0, writer_cores=1.0)  # training kept its CPU pace
    assert policy.background_cost(a, b) == pytest.approx(0.1)  # half the writer's 0.2 s
    a, b = job(0.4, training_cores=0.25, writer_cores=1.0)  # it lost more than that
    assert policy.background_cost(a, b) == pytest.approx(0.3)


def test_time_blocked_on_the_writer_is_not_charged_twice() -> None:
    _, policy = started(cores=2)
    idle_window(policy, 0.0, 1.0, training_cores=1.0)
    # 0.3 s of the job's 0.4 s training waited for room in the queue (charged as foreground);
    # the rest of the time it ran at full pace
    a, b = job(0.4, training_cores=1.0, writer_cores=1.0, blocked=0.3)
    assert policy.background_cost(a, b) == pytest.approx(0.0, abs=1e-9)


def test_before_the_idle_rate_is_known_the_cores_decide() -> None:
    _, policy = started(cores=2)
    assert policy.idle_rate() is None
    # training and the writer used both cores: the writer's CPU may be training's, charged
    a, b = job(0.2, training_cores=1.0, writer_cores=1.0)
    assert policy.background_cost(a, b) == pytest.approx(0.2)
    # half a core stayed unused: nobody waited for one, nothing is charged
    a, b = job(0.2, training_cores=0.5, writer_cores=1.0)
    assert policy.background_cost(a, b) == pytest.approx(0.0, abs=1e-9)
    # an eighth of a core unused: half of the writer's CPU
    a, b = job(0.2, training_cores=0.875, writer_cores=1.0)
    assert policy.background_cost(a, b) == pytest.approx(0.1)
    # on one core, whatever the writer computes is taken from training
    _, single = started(cores=1)
    a, b = job(0.2, training_cores=0.5, writer_cores=0.5)
    assert single.background_cost(a, b) == pytest.approx(0.1)


def test_the_summary_reports_the_charged_cost_and_the_writers_cpu() -> None:
    clock, policy = started(cores=2)
    idle_window(policy, 0.0, 1.0, training_cores=2.0)
    clock.now = 10.0
    policy.charge_foreground(0.05)
    a, b = job(0.4, training_cores=1.0, writer_cores=1.0)
    policy.job_written("main", 0.05, a, b, 0.0, 10**6)
    s = policy.summary()
    assert s["foreground_seconds"] == pytest.approx(0.05)
    assert s["background_seconds"] == pytest.approx(0.2)
    assert s["cost_seconds"] == pytest.approx(0.25)
    assert s["writer_cpu_seconds"] == pytest.approx(0.4)
    assert s["training_cores"] == pytest.approx(2.0)
    assert policy.estimate("main") == pytest.approx(0.25)


def test_the_writer_reports_idle_windows_and_each_checkpoints_window(tmp_path: Path) -> None:
    """The windows tile the writer's time: an index write belongs to an idle window, a
    checkpoint's window is its own and goes to its callback."""
    pytest.importorskip("torch")
    from florc.runtime import state as st
    from florc.runtime.writer import CheckpointJob, Writer

    ticks = iter(range(1000))

    def sample(blocked: float) -> Sample:
        n = next(ticks)
        return Sample(float(n), 2.0 * n, 0.5 * n, blocked)

    idle: list[tuple[Sample, Sample]] = []
    jobs: list[tuple[Sample, Sample]] = []
    writer = Writer(
        tmp_path, tmp_path / ".florc", observe=lambda a, b: idle.append((a, b)), sample=sample
    )
    writer.submit(lambda store: None)  # an index write
    writer.submit_checkpoint(
        CheckpointJob(1, "loop", 1, 0, st.Snapshot(), {}, on_done=lambda a, b: jobs.append((a, b)))
    )
    writer.submit(lambda store: None)
    writer.close()
    assert len(jobs) == 1
    windows = sorted([*idle, *jobs], key=lambda w: w[0].wall)
    assert windows[0][0].wall == 0.0  # from the writer's start
    for (_, end), (start, _) in zip(windows, windows[1:]):
        assert end.wall == start.wall  # no gap, no overlap
    job_start, job_end = jobs[0]
    assert job_end.wall > job_start.wall
    assert all(b.wall <= job_start.wall or a.wall >= job_end.wall for a, b in idle)


def test_a_first_estimate_counts_the_writer_only_when_no_core_is_free() -> None:
    _, free = started(cores=2)
    idle_window(free, 0.0, 1.0, training_cores=1.0)  # one core trains, one is the writer's
    free.decide("main", nbytes=10**8)
    assert free.estimate("main") == pytest.approx(0.002 + 0.1)  # the copy at 1 GB/s
    _, busy = started(cores=2)
    idle_window(busy, 0.0, 1.0, training_cores=1.9)
    busy.decide("main", nbytes=10**8)
    assert busy.estimate("main") == pytest.approx(0.002 + 0.4)  # + the writer, 3 ns a byte
    # once bytes are measured, that rate estimates other loops
    busy.written("main", 0.05, 0.05, 0.0, 10**8)
    busy.decide("block", nbytes=10**8)
    assert busy.estimate("block") == pytest.approx(0.002 + 0.098)
