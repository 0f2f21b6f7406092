"""The whole chain on the real system: group -> Serve detector -> Serve plate reader -> Redis."""

from __future__ import annotations

import time

import av
import cv2
import pytest
import ray
import redis
from ray import serve

from cluster.status import GroupStatus
from decoders.config import CameraSpec
from streams.keys import PLATE_READS, StreamLayout
from streams.schema import PlateReadMessage

pytestmark = pytest.mark.slow


def _encode_still(image_path, out_path, frames: int = 6) -> None:
    """A short H.264 clip of a still (what a parked car looks like to a camera)."""
    image = cv2.imread(str(image_path))
    image = image[: image.shape[0] // 2 * 2, : image.shape[1] // 2 * 2]  # yuv420p needs even sizes
    with av.open(str(out_path), "w") as container:
        stream = container.add_stream("libx264", rate=5, options={"crf": "16", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = image.shape[1], image.shape[0], "yuv420p"
        for _ in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_parked_car_plate_is_read_into_the_plate_stream(ray_serve, redis_url, media, tmp_path):
    clip = tmp_path / "parking.mp4"
    _encode_still(media("plate_car_parking.png"), clip)
    ray_serve.deploy_plate_reader({"min_replicas": 1, "max_replicas": 1, "num_cpus": 0.25})
    spec = CameraSpec(camera_id="lot-1", url=str(clip), sampling="all", realtime=False, plates=True)
    groups = ray_serve.start_groups([spec], redis_url, cameras_per_group=8, faces_app=None)
    try:
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        key = StreamLayout().camera_stream_key("lot-1", PLATE_READS)
        deadline = time.monotonic() + 90
        reads: list[PlateReadMessage] = []
        while time.monotonic() < deadline and not reads:
            reads = [PlateReadMessage.model_validate_json(f["json"]) for _, f in client.xrange(key)]
            time.sleep(0.5)
        status = GroupStatus.model_validate(ray.get(groups[0].status.remote()))
        assert reads, f"no plate reads; group status: {status}"
        assert "5AU5341" in {r.text for r in reads}, [r.text for r in reads]
        assert status.cameras[0].second_stage_messages.get("plate_read", 0) >= 1
    finally:
        ray_serve.stop_groups(groups)
        serve.delete("plates")
