"""Assignment and rebalance policies: pure functions, plain dicts, no cluster."""

from __future__ import annotations

import random

import pytest

from cluster.assignment import AssignmentPolicy, CostModel, Move, plan_assignment, plan_rebalance
from decoders.config import CameraSpec

POLICY = AssignmentPolicy(group_capacity=1.0, target_fill=0.8, max_cameras_per_group=4, merge_below=0.25)


def costs(spec: str) -> dict[str, float]:
    """``"a=0.2 b=0.3"`` -> {"a": 0.2, "b": 0.3}."""
    return {k: float(v) for k, v in (item.split("=") for item in spec.split())}


def groups_of(assignment: dict[str, str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for camera_id, group_id in assignment.items():
        out.setdefault(group_id, set()).add(camera_id)
    return out


@pytest.mark.parametrize(
    ("camera_costs", "current", "live", "expected_groups", "expected_moves", "create", "retire"),
    [
        pytest.param("", {}, [], {}, 0, (), (), id="empty"),
        pytest.param(
            "a=0.3 b=0.3 c=0.3",
            {},
            [],
            {"g0000": {"a", "b"}, "g0001": {"c"}},
            3,
            ("g0000", "g0001"),
            (),
            id="new-cameras-open-groups-by-cost",
        ),
        pytest.param(
            "a=0.1 b=0.1 c=0.1 d=0.1 e=0.1",
            {},
            [],
            {"g0000": {"a", "b", "c"}, "g0001": {"d", "e"}},
            5,
            ("g0000", "g0001"),
            (),
            id="camera-count-filled-to-target-fill",
        ),
        pytest.param(
            "a=0.5 b=0.2",
            {"a": "g0", "b": "g1"},
            ["g0", "g1"],
            {"g0": {"a"}, "g1": {"b"}},
            0,
            (),
            (),
            id="sticky-no-needless-moves",
        ),
        pytest.param(
            "a=0.3 b=0.2 c=0.1",
            {"a": "g0", "b": "g1", "c": "g1"},
            ["g0"],
            {"g0": {"a", "b", "c"}},
            2,
            (),
            (),
            id="dead-group-cameras-go-to-live-group-with-room",
        ),
        pytest.param(
            "a=0.5 b=0.4",
            {"a": "g0", "b": "g1"},
            ["g0"],
            {"g0": {"a", "b"}},
            1,
            (),
            (),
            id="dead-group-cameras-use-headroom",
        ),
        pytest.param(
            "a=0.5 b=0.2 c=0.2",
            {"a": "g0", "b": "g2"},
            ["g0"],
            {"g0": {"a", "b"}, "g0007": {"c"}},
            2,
            ("g0007",),
            (),
            id="new-camera-respects-target-fill-orphan-does-not",
        ),
        pytest.param(
            "a=0.7 b=0.4",
            {"a": "g0", "b": "g1"},
            ["g0"],
            {"g0": {"a"}, "g0007": {"b"}},
            1,
            ("g0007",),
            (),
            id="dead-group-no-room-opens-group",
        ),
        pytest.param(
            "a=0.2",
            {"a": "g0", "b": "g1"},
            ["g0", "g1"],
            {"g0": {"a"}},
            1,
            (),
            ("g1",),
            id="removed-camera-empty-group-retired",
        ),
        pytest.param(
            "a=0.6 b=0.3 c=0.2",
            {"a": "g0", "b": "g0", "c": "g0"},
            ["g0"],
            {"g0": {"b", "c"}, "g0007": {"a"}},
            1,
            ("g0007",),
            (),
            id="hard-overload-sheds-largest-first",
        ),
        pytest.param(
            "a=2.5",
            {"a": "g0"},
            ["g0"],
            {"g0": {"a"}},
            0,
            (),
            (),
            id="oversized-camera-stays-alone",
        ),
        pytest.param(
            "a=0.1 b=0.1",
            {"a": "g0"},
            ["g0", "g1"],
            {"g0": {"a"}, "g1": {"b"}},
            1,
            (),
            (),
            id="new-camera-to-least-loaded",
        ),
    ],
)
def test_plan_assignment(camera_costs, current, live, expected_groups, expected_moves, create, retire):
    plan = plan_assignment(costs(camera_costs), current, live, POLICY, next_group_seq=7 if live else 0)
    assert groups_of(plan.assignment) == expected_groups
    assert len(plan.moves) == expected_moves
    assert plan.create == create
    assert plan.retire == retire


def test_moves_describe_the_change():
    plan = plan_assignment(costs("a=0.3 b=0.2"), {"a": "g0", "b": "g1", "gone": "g0"}, ["g0"], POLICY)
    assert set(plan.moves) == {Move("gone", "g0", None), Move("b", None, "g0")}


@pytest.mark.parametrize(
    ("camera_costs", "current", "max_moves", "expected_groups", "create", "retire"),
    [
        pytest.param(
            "a=0.5 b=0.35 c=0.05",
            {"a": "g0", "b": "g0", "c": "g1"},
            10,
            {"g0": {"a"}, "g1": {"b", "c"}},
            (),
            (),
            id="soft-overload-moves-smallest-sufficient-camera",
        ),
        pytest.param(
            "a=0.5 b=0.1 c=0.1",
            {"a": "g0", "b": "g1", "c": "g1"},
            10,
            {"g0": {"a", "b", "c"}},
            (),
            ("g1",),
            id="idle-group-drained-and-retired",
        ),
        pytest.param(
            "a=0.6 b=0.3",
            {"a": "g0", "b": "g1"},
            10,
            {"g0": {"a"}, "g1": {"b"}},
            (),
            (),
            id="uneven-but-fine-no-moves",
        ),
        pytest.param(
            "a=0.7 b=0.2",
            {"a": "g0", "b": "g1"},
            10,
            {"g0": {"a"}, "g1": {"b"}},
            (),
            (),
            id="idle-group-kept-when-others-lack-room",
        ),
        pytest.param(
            "a=0.5 b=0.3 c=0.3",
            {"a": "g0", "b": "g0", "c": "g0"},
            10,
            {"g0": {"a", "c"}, "g0003": {"b"}},
            ("g0003",),
            (),
            id="soft-overload-everywhere-opens-group",
        ),
        pytest.param(
            "a=0.05 b=0.05 c=0.05 d=0.5",
            {"a": "g1", "b": "g1", "c": "g1", "d": "g0"},
            2,
            {"g0": {"d"}, "g1": {"a", "b", "c"}},
            (),
            (),
            id="drain-needs-more-moves-than-allowed",
        ),
    ],
)
def test_plan_rebalance(camera_costs, current, max_moves, expected_groups, create, retire):
    policy = POLICY.model_copy(update={"max_moves": max_moves, "max_cameras_per_group": 20})
    plan = plan_rebalance(costs(camera_costs), current, policy, next_group_seq=3)
    assert groups_of(plan.assignment) == expected_groups
    assert plan.create == create
    assert plan.retire == retire
    assert len(plan.moves) <= max_moves


def test_rebalance_restores_count_headroom_after_failover():
    # max 4 cameras, target 3: a failover filled g0 to 4; rebalance moves its cheapest camera back out.
    current = {"a": "g0", "b": "g0", "c": "g0", "d": "g0", "e": "g1", "f": "g1", "g": "g2"}
    plan = plan_rebalance(costs("a=0.01 b=0.02 c=0.02 d=0.02 e=0.3 f=0.3 g=0.1"), current, POLICY)
    assert plan.moves == (Move("a", "g0", "g2"),) and not plan.create and not plan.retire


@pytest.mark.parametrize("seed", range(8))
def test_invariants_on_random_inventories(seed):
    rng = random.Random(seed)
    policy = AssignmentPolicy(group_capacity=1.0, target_fill=0.8, max_cameras_per_group=20)
    camera_costs = {f"c{i}": rng.choice([0.01, 0.05, 0.15, 0.4]) for i in range(rng.randint(1, 300))}
    first = plan_assignment(camera_costs, {}, [], policy)
    # Complete, and every group within its limits.
    assert set(first.assignment) == set(camera_costs)
    for members in groups_of(first.assignment).values():
        assert len(members) <= policy.max_cameras_per_group
        assert sum(camera_costs[c] for c in members) <= policy.group_capacity * policy.target_fill + 1e-9
    # Re-planning an unchanged inventory moves nothing.
    live = set(first.assignment.values())
    again = plan_assignment(camera_costs, first.assignment, live, policy, first.next_group_seq)
    assert not again.changed and again.assignment == first.assignment
    # Kill one group: only its cameras move.
    victim = rng.choice(sorted(live))
    after = plan_assignment(camera_costs, first.assignment, live - {victim}, policy, first.next_group_seq)
    moved = {m.camera_id for m in after.moves}
    assert moved == {c for c, g in first.assignment.items() if g == victim}
    assert set(after.assignment) == set(camera_costs) and victim not in after.assignment.values()


def test_cost_model_estimates_by_sampling_and_source():
    model = CostModel()
    assert model.estimate(CameraSpec(camera_id="a", url="rtsp://h/x")) == model.full_decode
    keyframes = CameraSpec(camera_id="a", url="rtsp://h/x", sampling="keyframes")
    assert model.estimate(keyframes) == model.keyframes
    assert model.estimate(CameraSpec(camera_id="a", url="sim://a")) == model.simulated


def test_ten_thousand_cameras_plan_quickly():
    import time

    camera_costs = {f"cam-{i:05d}": 0.002 for i in range(10_000)}  # 400 fill a group to target_fill
    policy = AssignmentPolicy(max_cameras_per_group=500)
    started = time.perf_counter()
    plan = plan_assignment(camera_costs, {}, [], policy)
    elapsed = time.perf_counter() - started
    assert len(set(plan.assignment.values())) == 25
    assert elapsed < 2.0, f"planning 10k cameras took {elapsed:.2f}s"
