"""The utilisation policy as a pure function: parametrised decisions and hysteresis, no cluster."""

from __future__ import annotations

import pytest

from autoscale.utilisation import UtilisationParams, decide, desired_replicas

P = UtilisationParams(target_utilisation=0.5, upscale_delay_s=5, downscale_delay_s=30, max_step_up=2)


@pytest.mark.parametrize(
    ("busy", "target", "expected"),
    [
        ([], 0.7, 1),
        ([0.0, 0.0], 0.7, 1),
        ([0.7], 0.7, 1),
        ([0.71], 0.7, 2),
        ([1.0, 1.0], 0.5, 4),
        ([1.5], 0.5, 2),  # a bad report over 1.0 is clamped
        ([0.3, 0.3, 0.3], 0.9, 1),
    ],
)
def test_desired_replicas(busy, target, expected):
    assert desired_replicas(busy, target) == expected


def test_scale_up_waits_for_the_delay_then_steps_at_most_max_step_up():
    state: dict = {}
    n, state = decide([1.0, 1.0], 2, (1, 10), P, state, now=0.0)
    assert n == 2 and "up_since" in state
    n, state = decide([1.0, 1.0], 2, (1, 10), P, state, now=4.9)
    assert n == 2
    n, state = decide([1.0, 1.0], 2, (1, 10), P, state, now=5.0)
    assert n == 4 and state == {}


def test_a_dip_resets_the_upscale_timer():
    n, state = decide([1.0, 1.0], 2, (1, 10), P, {}, now=0.0)
    n, state = decide([0.5, 0.5], 2, (1, 10), P, state, now=3.0)  # exactly at target: steady
    assert state == {}
    n, state = decide([1.0, 1.0], 2, (1, 10), P, state, now=6.0)
    assert n == 2  # the timer restarted at 6.0


def test_scale_down_after_the_longer_delay_and_respects_bounds():
    n, state = decide([0.05] * 4, 4, (2, 10), P, {}, now=0.0)
    assert n == 4
    n, state = decide([0.05] * 4, 4, (2, 10), P, state, now=30.0)
    assert n == 2  # wants 1, but min is 2


def test_max_bound_caps_scale_up_and_zero_replicas_cold_starts():
    n, _ = decide([1.0] * 3, 3, (1, 3), P, {}, now=0.0)
    assert n == 3
    n, _ = decide([], 0, (0, 3), P, {}, now=0.0)
    assert n == 1
