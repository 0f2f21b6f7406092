"""The utilisation policy as a pure function: parametrised decisions, no cluster.

(Its behaviour inside real Serve is tested in test_e2e_autoscale.py.)
"""

from __future__ import annotations

import pytest

from autoscale.utilisation import UtilisationParams, decide, desired_replicas

P = UtilisationParams(target_utilisation=0.5, max_step_up=2)


@pytest.mark.parametrize(
    ("busy", "target", "requests", "expected"),
    [
        ([], 0.7, 0, 0),
        ([0.0, 0.0], 0.7, 0, 0),
        ([0.0], 0.7, 3, 1),  # waiting requests keep at least one replica
        ([0.7], 0.7, 1, 1),
        ([0.71], 0.7, 1, 2),
        ([1.0, 1.0], 0.5, 1, 4),
        ([1.5], 0.5, 1, 2),  # a bad report over 1.0 is clamped
        ([-0.2, 0.3], 0.9, 1, 1),  # and one below 0
    ],
)
def test_desired_replicas(busy, target, requests, expected):
    assert desired_replicas(busy, target, requests) == expected


@pytest.mark.parametrize(
    ("busy", "requests", "current", "bounds", "expected"),
    [
        ([1.0, 1.0], 5, 2, (1, 10), 4),  # 2 busy / 0.5 target
        ([1.0] * 4, 9, 4, (1, 10), 6),  # wants 8: at most max_step_up more per decision
        ([1.0] * 3, 5, 3, (1, 3), 3),  # the max bound
        ([0.05] * 4, 1, 4, (2, 10), 2),  # wants 1: the min bound
        ([0.5, 0.5], 2, 2, (1, 10), 2),  # at target: steady
        ([0.0], 0, 1, (0, 3), 0),  # idle and allowed: scale to zero
        ([0.0], 0, 1, (1, 3), 1),  # idle, min 1 keeps one
        ([], 1, 0, (0, 3), 1),  # at zero, a request starts one
        ([], 0, 0, (0, 3), 0),  # at zero without demand: stays
    ],
)
def test_decide(busy, requests, current, bounds, expected):
    assert decide(busy, requests, current, bounds, P) == expected
