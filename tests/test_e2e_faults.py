"""Faults on the data path cost counted frames, never a group: a dead replica, a dead Redis."""

from __future__ import annotations

import time

import pytest
import ray

from cctv.redis_server import RedisServer
from cluster.status import CameraState, DropReason, GroupStatus
from decoders.config import CameraSpec

pytestmark = pytest.mark.slow


def _cameras(group) -> dict:
    return {c.camera_id: c for c in GroupStatus.model_validate(ray.get(group.status.remote())).cameras}


def _wait(predicate, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return predicate()


def _assert_every_frame_counted(cam, max_pending: int) -> None:
    """Sampled = analysed + dropped (all reasons but decode errors, which are never sampled) + pending."""
    dropped = sum(n for reason, n in cam.dropped.items() if reason != DropReason.DECODE_ERROR)
    pending = cam.frames_sampled - cam.frames_analysed - dropped
    assert 0 <= pending <= max_pending, cam


def _detector_replica_actors() -> list[str]:
    from ray._private import state

    return [
        a["Name"]
        for a in state.state.actor_table(None).values()
        if a["State"] == "ALIVE" and a.get("ActorClassName") == "ServeReplica:detector:Detector"
    ]


def test_killed_detector_replica_costs_counted_frames_and_the_group_recovers(ray_serve, redis_url, media):
    clip = str(media("opencv_vtest_480x360.avi"))
    specs = [CameraSpec(camera_id=f"r{i}", url=clip, fps=5, loop=True) for i in range(2)]
    groups = ray_serve.start_groups(specs, redis_url, cameras_per_group=8)
    try:
        group = groups[0]
        assert _wait(lambda: all(c.frames_analysed >= 5 for c in _cameras(group).values()), 60)
        replicas = _detector_replica_actors()
        assert replicas, "no Detector replica actor found"
        for name in replicas:
            ray.kill(ray.get_actor(name, namespace="serve"), no_restart=False)
        before = {cid: c.frames_analysed for cid, c in _cameras(group).items()}
        # Serve replaces the replica; the group keeps its cameras and analysis resumes.
        assert _wait(
            lambda: all(c.frames_analysed >= before[cid] + 10 for cid, c in _cameras(group).items()), 120
        ), _cameras(group)
        assert ray.get(group.ping.remote()) == "group-0"
        for cam in _cameras(group).values():
            assert cam.state == CameraState.ONLINE
            _assert_every_frame_counted(cam, max_pending=1 + 2 * 16)
    finally:
        ray_serve.stop_groups(groups)


def test_dead_redis_counts_sink_errors_and_writing_resumes_after_restart(ray_serve, media):
    clip = str(media("opencv_vtest_480x360.avi"))
    server = RedisServer().start()
    port = server.port
    groups = ray_serve.start_groups(
        [CameraSpec(camera_id="sink", url=clip, fps=5, loop=True)], server.url, cameras_per_group=8
    )
    try:
        group = groups[0]
        assert _wait(lambda: _cameras(group)["sink"].frames_analysed >= 5, 60)
        server.kill()
        assert _wait(lambda: _cameras(group)["sink"].dropped.get(DropReason.SINK_ERROR, 0) >= 5, 60)
        cam = _cameras(group)["sink"]
        assert "stream write failed" in (cam.last_error or "")
        server = RedisServer(port=port).start()
        analysed = cam.frames_analysed
        assert _wait(lambda: _cameras(group)["sink"].frames_analysed >= analysed + 5, 60), _cameras(group)
        _assert_every_frame_counted(_cameras(group)["sink"], max_pending=1 + 2 * 16)
    finally:
        ray_serve.stop_groups(groups)
        server.stop()
