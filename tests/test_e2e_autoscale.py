"""The utilisation autoscaler inside real Ray Serve: replicas report busy time and Serve scales up."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from ray import serve

from serve_apps.detector import build_app

pytestmark = pytest.mark.slow

APP = "detector-autoscale"


def _running_replicas() -> int:
    app = serve.status().applications.get(APP)
    if app is None:
        return 0
    states = app.deployments["Detector"].replica_states
    return int(states.get("RUNNING", 0))


def test_busy_detector_scales_up_under_the_utilisation_policy(ray_serve):
    args = {
        "max_replicas": 2,
        "num_cpus": 0.25,
        "max_batch_frames": 8,
        "utilisation": {"target_utilisation": 0.3, "upscale_delay_s": 1.0, "downscale_delay_s": 600},
    }
    handle = serve.run(build_app(args), name=APP, route_prefix=None)
    frames = np.full((8, 416, 416, 3), 114, np.uint8)

    async def drive(seconds: float) -> int:
        deadline = time.monotonic() + seconds
        calls = 0
        while time.monotonic() < deadline and _running_replicas() < 2:
            await asyncio.gather(*(handle.detect.remote(frames) for _ in range(4)))
            calls += 4
        return calls

    try:
        assert _running_replicas() == 1
        calls = asyncio.run(drive(90))
        assert _running_replicas() == 2, f"still {_running_replicas()} replica(s) after {calls} calls"
    finally:
        serve.delete(APP)
