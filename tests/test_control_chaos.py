"""Chaos on a real Ray cluster: real DecoderGroup actors with simulated cameras, the real controller actor.

- a DecoderGroup killed mid-run (ray.kill): every one of its cameras is online again in other groups,
  within a bound, and no camera ever runs in two groups;
- the controller killed and restarted by Ray (no_restart=False), then killed for good and re-created:
  inventory and assignment intact, cameras not restarted, group camera sets disjoint and complete.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import ray

from cluster.assignment import AssignmentPolicy
from cluster.controller import ControllerConfig, ControllerTimings, GroupOptions
from cluster.inventory import SQLiteStoreConfig
from cluster.ray_layer import NAMESPACE, start_controller, stop_controller
from decoders.config import CameraSpec

pytestmark = pytest.mark.slow

FAILOVER_BOUND_S = 15.0  # measured ~3 s here; the bound leaves room for a loaded 2-core machine
CAMERAS = 12


@pytest.fixture
def controller(ray_serve, redis_url: str, tmp_path: Path):
    run = uuid.uuid4().hex[:6]
    name, prefix = f"cctv-controller-test-{run}", f"cctv-test-{run}-"
    config = ControllerConfig(
        store=SQLiteStoreConfig(path=tmp_path / "inventory.sqlite"),
        policy=AssignmentPolicy(max_cameras_per_group=4),
        timings=ControllerTimings(health_interval_s=0.5, ping_timeout_s=2.0, status_interval_s=1.0),
        groups=GroupOptions(actor_prefix=prefix, num_cpus=0.05, config={"redis_url": redis_url}),
    )
    handle = start_controller(config, name=name, num_cpus=0.05)
    yield handle, config, name, prefix
    stop_controller(name, stop_groups=True)


def group_sets(prefix: str) -> dict[str, set[str]]:
    """What every live group of this test actually runs, asked of the actors themselves."""
    names = [
        a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(prefix)
    ]
    handles = {n[len(prefix) :]: ray.get_actor(n, namespace=NAMESPACE) for n in names}
    return {g: set(ray.get(h.camera_ids.remote(), timeout=30)) for g, h in handles.items()}


def assert_disjoint_and_complete(prefix: str, assignment: dict[str, str]) -> None:
    sets = group_sets(prefix)
    flat = [c for cams in sets.values() for c in cams]
    assert len(flat) == len(set(flat)), f"a camera runs in two groups: {sets}"
    assert {c: g for g, cams in sets.items() for c in cams} == assignment


def wait_online(handle, cameras: set[str], timeout_s: float, not_in: str | None = None) -> float:
    """Seconds until every camera in ``cameras`` reports ONLINE (from a group other than ``not_in``)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        page = ray.get(handle.list_cameras.remote(limit=1000), timeout=30)
        online = {
            v.camera["camera_id"]
            for v in page.cameras
            if v.status is not None and v.status.state == "online" and v.group_id not in (None, not_in)
        }
        if cameras <= online:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"not online after {timeout_s}s: {sorted(cameras - online)}")


def wait_restarted(handle, old_pid: int, timeout_s: float = 60.0):
    """The status of the restarted controller (ray.kill is asynchronous: the old one may still answer)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            status = ray.get(handle.cluster_status.remote(), timeout=30)
            if status.controller_pid != old_pid:
                return status
        except ray.exceptions.RayActorError:
            pass  # restarting
        time.sleep(0.2)
    raise AssertionError("the controller did not come back")


def frames_by_camera(handle) -> dict[str, int]:
    page = ray.get(handle.list_cameras.remote(limit=1000), timeout=30)
    return {v.camera["camera_id"]: v.status.frames_decoded for v in page.cameras if v.status is not None}


def import_cameras(handle) -> set[str]:
    specs = [CameraSpec(camera_id=f"sim-{i:02d}", url=f"sim://sim-{i:02d}", fps=2.0) for i in range(CAMERAS)]
    ray.get(handle.import_cameras.remote(specs), timeout=60)
    ids = {s.camera_id for s in specs}
    wait_online(handle, ids, timeout_s=60)
    return ids


def test_killed_group_cameras_back_online_within_bound(controller):
    handle, _, _, prefix = controller
    ids = import_cameras(handle)
    assignment = ray.get(handle.assignment.remote())
    assert len(set(assignment.values())) == 4  # at most 4 per group, filled to 80%: 3
    assert_disjoint_and_complete(prefix, assignment)

    victim = assignment["sim-00"]
    lost = {c for c, g in assignment.items() if g == victim}
    ray.kill(ray.get_actor(prefix + victim, namespace=NAMESPACE), no_restart=True)
    killed_at = time.monotonic()
    elapsed = wait_online(handle, lost, timeout_s=FAILOVER_BOUND_S + 30, not_in=victim)
    elapsed = time.monotonic() - killed_at
    print(f"\nfailover: {len(lost)} cameras of {victim} online again in {elapsed:.2f}s")
    assert elapsed < FAILOVER_BOUND_S

    after = ray.get(handle.assignment.remote())
    assert set(after) == ids and victim not in after.values()
    assert {c: g for c, g in after.items() if c not in lost} == {
        c: g for c, g in assignment.items() if c not in lost
    }
    assert_disjoint_and_complete(prefix, after)
    status = ray.get(handle.cluster_status.remote())
    record = status.failovers[-1]
    assert record.group_id == victim and record.cameras == len(lost) and record.reassigned_s is not None


def test_controller_restart_keeps_inventory_and_does_not_restart_cameras(controller):
    handle, config, name, prefix = controller
    ids = import_cameras(handle)
    assignment = ray.get(handle.assignment.remote())
    time.sleep(2.0)  # a status poll or two, so frame counters are known
    frames_before = frames_by_camera(handle)
    pid_before = ray.get(handle.cluster_status.remote()).controller_pid

    # 1. Ray restarts the actor (as after a crash): __init__ re-reads the store, adopts the groups.
    ray.kill(handle, no_restart=False)
    status = wait_restarted(handle, pid_before)
    assert status.cameras == CAMERAS
    assert ray.get(handle.assignment.remote()) == assignment
    assert_disjoint_and_complete(prefix, assignment)
    wait_online(handle, ids, timeout_s=30)
    frames_after = frames_by_camera(handle)
    assert all(frames_after[c] >= frames_before[c] for c in frames_before), "a camera was restarted"

    # 2. Killed for good and re-created from the same store.
    ray.kill(handle, no_restart=True)
    deadline = time.monotonic() + 30
    while name in {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)}:
        assert time.monotonic() < deadline, "killed controller still listed"
        time.sleep(0.1)
    handle = start_controller(config, name=name, num_cpus=0.05)
    assert ray.get(handle.cluster_status.remote()).controller_pid != status.controller_pid
    assert ray.get(handle.assignment.remote()) == assignment
    assert_disjoint_and_complete(prefix, assignment)
    wait_online(handle, ids, timeout_s=30)
