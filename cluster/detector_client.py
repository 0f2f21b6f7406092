"""How a DecoderGroup reaches the detector: behind a small interface so tests can inject a local one.

The Serve client is the production path (a deployment handle; all Ray Serve calls are made here).
The local client runs the same ``models.detector.Detector`` in-process, for tests of group logic
and for the decode+model baseline in benchmarks.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import numpy as np


class DetectorClient(Protocol):
    async def info(self) -> dict[str, Any]: ...

    async def detect(self, frames: np.ndarray) -> list[np.ndarray]:
        """``uint8 [n, H, W, 3]`` at model input -> n arrays ``(k, 6)`` in model pixels."""
        ...


class ServeDetectorClient:
    def __init__(self, app_name: str = "detector", deployment: str = "Detector") -> None:
        from ray import serve

        self._handle = serve.get_deployment_handle(deployment, app_name=app_name)

    async def info(self) -> dict[str, Any]:
        return await self._handle.info.remote()

    async def detect(self, frames: np.ndarray) -> list[np.ndarray]:
        return await self._handle.detect.remote(frames)


class LocalDetectorClient:
    """Runs the detector in this process (no Serve); same contract as the deployment."""

    def __init__(self, model: str = "yolox_nano") -> None:
        from models.detector import Detector

        self._detector = Detector.from_spec(model)

    async def info(self) -> dict[str, Any]:
        return self._detector.info()

    async def detect(self, frames: np.ndarray) -> list[np.ndarray]:
        detections = await asyncio.to_thread(self._detector.detect, frames)
        return [d.to_array() for d in detections]
