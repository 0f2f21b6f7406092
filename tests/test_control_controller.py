"""Controller logic driven directly: a real SQLite store, in-process groups with fault injection."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cluster.assignment import AssignmentPolicy
from cluster.control_models import CameraExists, CameraNotFound, InvalidCamera
from cluster.controller import Controller, ControllerConfig, ControllerTimings
from cluster.group_backend import InMemoryGroupBackend
from cluster.inventory import SQLiteInventoryStore, SQLiteStoreConfig
from decoders.config import CameraSpec

POLICY = AssignmentPolicy(group_capacity=1.0, target_fill=0.8, max_cameras_per_group=4)
pytestmark = pytest.mark.anyio  # async tests run on asyncio through anyio's pytest plugin

TIMINGS = ControllerTimings(ping_timeout_s=0.1, unresponsive_after=2, call_timeout_s=0.5, start_timeout_s=1.0)


def cams(n: int, prefix: str = "cam", **fields) -> list[CameraSpec]:
    return [CameraSpec(camera_id=f"{prefix}-{i:03d}", url=f"sim://{prefix}-{i}", **fields) for i in range(n)]


def make(path: Path, groups: InMemoryGroupBackend) -> Controller:
    config = ControllerConfig(store=SQLiteStoreConfig(path=path), policy=POLICY, timings=TIMINGS)
    return Controller(SQLiteInventoryStore(path), groups, config)


def assert_runs_exactly(controller: Controller, groups: InMemoryGroupBackend) -> None:
    """Every assigned camera runs in exactly its group, nothing else runs, never twice."""
    running = groups.running()
    seen: list[str] = [c for cams in running.values() for c in cams]
    assert len(seen) == len(set(seen)), "a camera runs in two groups"
    assert {c: g for g, cams in running.items() for c in cams} == controller.assignment()
    assert groups.violations == []


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def groups() -> InMemoryGroupBackend:
    return InMemoryGroupBackend()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "inventory.sqlite"


async def started(db: Path, groups: InMemoryGroupBackend) -> Controller:
    controller = make(db, groups)
    await controller.start()
    await asyncio.sleep(0)  # let the new groups' readiness tasks run
    await settle(controller)
    return controller


async def settle(controller: Controller) -> None:
    for _ in range(5):
        await asyncio.sleep(0.01)
    await controller.poll_status()


async def test_import_assigns_every_camera_once(db, groups):
    controller = await started(db, groups)
    result = await controller.import_cameras(cams(10))
    await settle(controller)
    assert len(result.created) == 10 and result.plan_ms >= 0
    assert_runs_exactly(controller, groups)
    assert len(groups.running()) == 4  # at most 4 cameras per group, filled to 80%: 3
    status = await controller.cluster_status()
    assert status.by_state == {"online": 10} and status.assigned == 10 and status.simulated == 10


async def test_create_update_disable_delete(db, groups):
    controller = await started(db, groups)
    view = await controller.create_camera(cams(1)[0])
    await settle(controller)
    assert view.phase == "assigned"
    with pytest.raises(CameraExists):
        await controller.create_camera(cams(1)[0])
    group = view.group_id
    view = await controller.patch_camera("cam-000", {"fps": 5.0})
    assert view.group_id == group and view.camera["fps"] == 5.0
    assert groups.groups[group]["cam-000"]["fps"] == 5.0  # the group got the new spec (restart in place)
    with pytest.raises(InvalidCamera) as err:
        await controller.patch_camera("cam-000", {"fps": -1})
    assert err.value.errors[0].loc == ["fps"]
    view = await controller.patch_camera("cam-000", {"enabled": False})
    assert view.phase == "disabled" and view.group_id is None
    assert groups.running() == {}  # its group emptied and was retired
    await controller.delete_camera("cam-000")
    with pytest.raises(CameraNotFound):
        await controller.get_camera("cam-000")
    assert_runs_exactly(controller, groups)


async def test_import_prune_removes_the_rest(db, groups):
    controller = await started(db, groups)
    await controller.import_cameras(cams(6))
    result = await controller.import_cameras(cams(2), prune=True)
    assert result.unchanged == 2 and len(result.removed) == 4
    await settle(controller)
    assert_runs_exactly(controller, groups)


async def test_dead_group_cameras_reassigned(db, groups):
    controller = await started(db, groups)
    await controller.import_cameras(cams(10))
    await settle(controller)
    victim = controller.assignment()["cam-000"]
    lost = {c for c, g in controller.assignment().items() if g == victim}
    groups.die(victim)
    await controller.check_groups()
    await settle(controller)
    assert victim not in controller.assignment().values()
    assert set(controller.assignment()) == {c.camera_id for c in cams(10)}
    assert_runs_exactly(controller, groups)
    status = await controller.cluster_status()
    record = status.failovers[-1]
    assert record.group_id == victim and record.cameras == len(lost) and record.reassigned_s is not None
    assert status.by_state == {"online": 10}


async def test_hung_group_is_fenced_before_its_cameras_move(db, groups):
    controller = await started(db, groups)
    await controller.import_cameras(cams(10))
    await settle(controller)
    victim = controller.assignment()["cam-000"]
    groups.hang(victim)
    await controller.check_groups()  # one missed ping: not yet
    assert victim in controller.assignment().values()
    await controller.check_groups()  # second: fenced (killed), then re-placed
    await settle(controller)
    assert victim in groups.killed
    assert_runs_exactly(controller, groups)


async def test_restart_keeps_inventory_and_groups_without_re_adding(db, groups):
    controller = await started(db, groups)
    await controller.import_cameras(cams(10))
    await settle(controller)
    before = controller.assignment()
    await controller.shutdown()
    adds = sum(1 for call in groups.calls if call[0] == "add")
    restarted = await started(db, groups)
    assert restarted.assignment() == before
    assert sum(1 for call in groups.calls if call[0] == "add") == adds  # nothing restarted
    assert_runs_exactly(restarted, groups)
    assert (await restarted.cluster_status()).by_state == {"online": 10}


async def test_restart_finishes_an_interrupted_move_and_kills_strays(db, groups):
    controller = await started(db, groups)
    await controller.import_cameras(cams(6))
    await settle(controller)
    assignment = controller.assignment()
    await controller.shutdown()
    # The controller "crashed" after persisting a move of cam-000 but before telling the groups:
    # it still runs in its old group. Also a group was created but never recorded.
    source = assignment["cam-000"]
    target = next(g for g in set(assignment.values()) if g != source)
    store = SQLiteInventoryStore(db)
    from cluster.assignment import Move, Plan

    store.save_plan(Plan(assignment={}, moves=(Move("cam-000", source, target),), next_group_seq=99))
    store.close()
    await groups.create("stray")
    restarted = await started(db, groups)
    assert restarted.assignment()["cam-000"] == target
    assert "stray" in groups.killed
    assert_runs_exactly(restarted, groups)


async def test_group_dead_while_controller_down(db, groups):
    controller = await started(db, groups)
    await controller.import_cameras(cams(10))
    await settle(controller)
    victim = controller.assignment()["cam-000"]
    await controller.shutdown()
    groups.die(victim)
    restarted = await started(db, groups)
    assert victim not in restarted.assignment().values() and len(restarted.assignment()) == 10
    assert_runs_exactly(restarted, groups)


async def test_measured_cost_overload_is_shed_by_rebalance(db, groups):
    controller = await started(db, groups)
    await controller.import_cameras(cams(3))
    await settle(controller)
    assert len(groups.running()) == 1
    groups.costs = {"cam-000": 0.6, "cam-001": 0.5, "cam-002": 0.01}  # measured: over capacity (1.0)
    await controller.poll_status()  # measure
    await controller.rebalance()
    await settle(controller)
    status = await controller.cluster_status()
    assert all(g.load <= POLICY.group_capacity for g in status.groups)
    assert len(groups.running()) == 2
    assert_runs_exactly(controller, groups)
    view = await controller.get_camera("cam-000")
    assert view.cost_measured and view.cost == 0.6


async def test_status_poll_repairs_a_group_that_lost_a_camera(db, groups):
    controller = await started(db, groups)
    await controller.import_cameras(cams(3))
    await settle(controller)
    group = controller.assignment()["cam-001"]
    del groups.groups[group]["cam-001"]  # e.g. the group was restarted by hand
    await controller.poll_status()
    await settle(controller)
    assert_runs_exactly(controller, groups)


async def test_list_filters_and_pages(db, groups):
    controller = await started(db, groups)
    await controller.import_cameras(cams(7) + cams(2, prefix="off", enabled=False))
    await settle(controller)
    page = await controller.list_cameras(offset=2, limit=3)
    assert page.total == 9
    assert [v.camera["camera_id"] for v in page.cameras] == ["cam-002", "cam-003", "cam-004"]
    assert (await controller.list_cameras(state="disabled")).total == 2
    assert (await controller.list_cameras(state="online")).total == 7


async def test_a_move_waits_for_its_new_group_to_start(db, groups):
    controller = await started(db, groups)
    await controller.import_cameras(cams(3))
    await settle(controller)
    (source,) = groups.running()
    groups.slow_start = asyncio.Event()  # the next group waits, e.g. for the autoscaler
    groups.costs = {"cam-000": 0.6, "cam-001": 0.5, "cam-002": 0.01}
    await controller.poll_status()
    await controller.rebalance()
    await settle(controller)
    moving = [c for c, g in controller.assignment().items() if g != source]
    assert moving and all(c in groups.running()[source] for c in moving)  # still decoded where they were
    assert groups.violations == []
    groups.slow_start.set()
    await settle(controller)
    assert_runs_exactly(controller, groups)
