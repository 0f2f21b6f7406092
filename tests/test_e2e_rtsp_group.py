"""An RTSP camera that goes away does not disturb the other cameras of its DecoderGroup.

Real GStreamer RTSP server process, real Ray actor, Serve detector and Redis: the server is killed,
the file camera beside it keeps its analysis rate, and the RTSP camera comes back on its own.
"""

from __future__ import annotations

import time

import pytest
import ray

from cluster.status import CameraState, GroupStatus
from decoders.config import BackoffPolicy, CameraSpec
from tests.helpers.rtsp_server import RtspServerProcess, gstreamer_missing

_MISSING = gstreamer_missing()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(_MISSING is not None, reason=str(_MISSING))]


def _cameras(group) -> dict:
    return {c.camera_id: c for c in GroupStatus.model_validate(ray.get(group.status.remote())).cameras}


def _wait(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return predicate()


def _analysed_over(group, camera_id: str, seconds: float) -> float:
    start = _cameras(group)[camera_id].frames_analysed
    time.sleep(seconds)
    return (_cameras(group)[camera_id].frames_analysed - start) / seconds


def test_rtsp_outage_leaves_the_group_s_other_camera_at_its_rate(ray_serve, redis_url, media):
    server = RtspServerProcess().start()
    rtsp = CameraSpec(
        camera_id="street-rtsp",
        url=server.url(),
        fps=5,
        open_timeout_s=2,
        read_timeout_s=2,
        stall_timeout_s=3,
        reconnect=BackoffPolicy(initial_s=0.2, max_s=1.0, jitter=0.1),
    )
    file = CameraSpec(camera_id="street-file", url=str(media("opencv_vtest_480x360.avi")), fps=5, loop=True)
    groups = ray_serve.start_groups([rtsp, file], redis_url, cameras_per_group=8)
    try:
        group = groups[0]
        started = _wait(lambda: all(c.frames_analysed >= 5 for c in _cameras(group).values()), 60)
        assert started, _cameras(group)
        before = _analysed_over(group, "street-file", 5.0)
        server.kill()
        assert _wait(lambda: _cameras(group)["street-rtsp"].state == CameraState.BACKOFF, 15), _cameras(group)
        during = _analysed_over(group, "street-file", 5.0)
        assert during >= 0.8 * before and during >= 3.5, (before, during)
        analysed = _cameras(group)["street-rtsp"].frames_analysed
        server = RtspServerProcess(port=server.port).start()
        assert _wait(
            lambda: (
                (c := _cameras(group)["street-rtsp"]).state == CameraState.ONLINE
                and c.frames_analysed >= analysed + 5
            ),
            30,
        ), _cameras(group)
        assert _cameras(group)["street-rtsp"].reconnects >= 1
    finally:
        ray_serve.stop_groups(groups)
        server.kill()
