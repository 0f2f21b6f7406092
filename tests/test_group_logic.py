"""DecoderGroup logic without Ray: an in-process detector injected, a real Redis server, real model."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
import redis

from cluster.decoder_group import DecoderGroupImpl
from cluster.detector_client import LocalDetectorClient
from decoders.config import CameraSpec
from streams.keys import StreamLayout

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def detector(model_path):
    model_path("yolox_nano.onnx")
    return LocalDetectorClient()


def _camera_threads(camera_id: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"camera-{camera_id}" and t.is_alive()]


def _stream_seqs(redis_url: str, camera_id: str) -> list[int]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    return [
        json.loads(f["json"])["seq"] for _, f in client.xrange(StreamLayout().camera_stream_key(camera_id))
    ]


def test_concurrent_adds_start_one_decoder_and_a_restart_keeps_seq_increasing(redis_url, detector):
    spec = CameraSpec(camera_id="sim-1", url="sim://sim-1?width=640&height=360", fps=10)

    async def scenario() -> None:
        group = DecoderGroupImpl({"group_id": "g-test", "redis_url": redis_url}, detector=detector)
        try:
            await asyncio.gather(group.add_camera(spec), group.add_camera(spec), group.add_camera(spec))
            assert len(_camera_threads("sim-1")) == 1
            await asyncio.sleep(1.5)
            await group.add_camera(spec.model_copy(update={"fps": 5.0}))  # restart with a new spec
            assert len(_camera_threads("sim-1")) == 1
            await asyncio.sleep(1.5)
            status = await group.status()
            assert status["cameras"][0]["frames_analysed"] > 0
        finally:
            await group.stop()
        assert _camera_threads("sim-1") == []

    asyncio.run(scenario())
    seqs = _stream_seqs(redis_url, "sim-1")
    assert len(seqs) >= 10
    assert seqs == sorted(set(seqs)), "seq must increase along the stream across a restart"


def test_remove_on_a_group_that_never_started_is_a_no_op(redis_url, detector):
    async def scenario() -> None:
        group = DecoderGroupImpl({"group_id": "g-idle", "redis_url": redis_url}, detector=detector)
        await group.remove_camera("nothing")
        await group.stop()
        assert await group.camera_ids() == []

    asyncio.run(scenario())
