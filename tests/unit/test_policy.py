"""The adaptive checkpoint policy (pure: a fake clock, no torch): what it takes under a budget,
how it follows costs that change, and the restore-speed estimate replay decides with."""

from __future__ import annotations

import math

import pytest

from florc.runtime.policy import CheckpointPolicy


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
