"""End to end through real parts: Ray actors, Ray Serve, a Redis server process, PyAV, the ONNX model."""

from __future__ import annotations

import time

import jsonschema
import pytest
import ray
import redis

from cluster.status import CameraState, DropReason, GroupStatus
from decoders.config import CameraSpec
from streams.keys import StreamLayout
from streams.schema import DetectionMessage

pytestmark = pytest.mark.slow

VEHICLES = {"car", "motorbike", "bus", "truck"}


def _wait_for(predicate, timeout_s: float, interval_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    return predicate()


def _statuses(group) -> dict:
    return {c.camera_id: c for c in GroupStatus.model_validate(ray.get(group.status.remote())).cameras}


def test_vtest_frame_240_reaches_the_stream_with_people_and_vehicles(ray_serve, redis_url, media):
    clip = media("opencv_vtest_480x360.avi")
    spec = CameraSpec(camera_id="vtest", url=str(clip), sampling="all", loop=False, realtime=False)
    groups = ray_serve.start_groups([spec], redis_url, cameras_per_group=8)
    try:
        layout = StreamLayout()
        client = redis.Redis.from_url(redis_url, decode_responses=True)

        def frame_240():
            for _, fields in client.xrange(layout.camera_stream_key("vtest")):
                msg = DetectionMessage.model_validate_json(fields["json"])
                if msg.frame_index == 240:
                    return msg
            return None

        msg = _wait_for(frame_240, timeout_s=120)
        assert msg is not None, f"frame 240 never reached the stream; status: {_statuses(groups[0])}"
        labels = [d.label for d in msg.detections]
        assert labels.count("person") >= 6, labels
        assert sum(label in VEHICLES for label in labels) >= 2, labels
        for det in msg.detections:
            x1, y1, x2, y2 = det.box
            assert 0 <= x1 < x2 <= 480 and 0 <= y1 < y2 <= 360
        assert (msg.frame_width, msg.frame_height) == (480, 360)
        assert msg.backend.startswith("onnxruntime")

        # Every message in the shard stream validates against the published JSON Schema; the stream
        # is in seq order, and the only gaps are frames counted as failed writes (files played as
        # fast as possible block instead of dropping for backpressure).
        schema = DetectionMessage.model_json_schema()
        entries = client.xrange(layout.shard_key_of("vtest"))
        seqs = []
        for _, fields in entries:
            payload = __import__("json").loads(fields["json"])
            jsonschema.validate(payload, schema)
            seqs.append(payload["seq"])
        assert seqs == sorted(set(seqs)), "per-camera stream out of seq order"
        status = _statuses(groups[0])["vtest"]
        missing = set(range(seqs[-1] + 1)) - set(seqs)
        assert len(missing) <= status.dropped.get(DropReason.SINK_ERROR, 0)
        assert status.dropped.get(DropReason.BACKPRESSURE, 0) == 0
    finally:
        ray_serve.stop_groups(groups)


def test_unreachable_camera_reports_why_while_others_keep_running(ray_serve, redis_url, media):
    good = CameraSpec(camera_id="good", url=str(media("opencv_vtest_480x360.avi")), fps=5, loop=True)
    bad = CameraSpec(
        camera_id="bad",
        url="rtsp://admin:hunter2@127.0.0.1:9/stream",
        open_timeout_s=1,
        read_timeout_s=1,
        reconnect={"initial_s": 0.2, "max_s": 1.0},
    )
    groups = ray_serve.start_groups([good, bad], redis_url, cameras_per_group=8)
    try:
        statuses = _wait_for(
            lambda: (s := _statuses(groups[0]))["good"].frames_analysed >= 10 and s["bad"].last_error and s,
            timeout_s=60,
        )
        assert statuses, _statuses(groups[0])
        assert statuses["bad"].state in {CameraState.BACKOFF, CameraState.CONNECTING, CameraState.FAILED}
        assert statuses["good"].state == CameraState.ONLINE
        assert "hunter2" not in statuses["bad"].model_dump_json()
        assert "hunter2" not in statuses["bad"].last_error
        # and never in Redis either
        client = redis.Redis.from_url(redis_url)
        for key in client.keys("*"):
            kind = client.type(key)
            dump = str(
                client.hgetall(key) if kind == b"hash" else client.xrange(key) if kind == b"stream" else ""
            )
            assert "hunter2" not in dump
    finally:
        ray_serve.stop_groups(groups)


@pytest.mark.parametrize(
    ("spec", "field", "problem"),
    [
        ({"camera_id": "a b", "url": "x.mp4"}, "camera_id", "pattern"),
        ({"camera_id": "a", "url": "ftp://x"}, "url", "unsupported scheme"),
        ({"camera_id": "a", "url": "x.mp4", "fps": 0}, "fps", "greater than 0"),
        ({"camera_id": "a", "url": "x.mp4", "sampling": "sometimes"}, "sampling", "fps"),
        ({"camera_id": "a", "url": "x.mp4", "colour": "red"}, "colour", "Extra inputs"),
    ],
)
def test_invalid_camera_config_names_the_field(ray_serve, redis_url, spec, field, problem):
    groups = ray_serve.start_groups([], redis_url, cameras_per_group=8)
    try:
        with pytest.raises(Exception) as info:
            ray.get(groups[0].add_camera.remote(spec))
        assert field in str(info.value) and problem in str(info.value)
    finally:
        ray_serve.stop_groups(groups)
