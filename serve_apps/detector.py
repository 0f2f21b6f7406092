"""The Detector deployment: merges frame micro-batches from many DecoderGroups into model batches.

Requests are micro-batches, not frames: a DecoderGroup sends one contiguous ``uint8 [N, H, W, 3]``
array (already letterboxed to the model input) per request, because a Serve handle call costs ~5 ms
of CPU here and one frame per request would spend the machine on RPC. ``@serve.batch`` then merges
requests from several groups, counting frames with ``batch_size_fn`` so a model batch never exceeds
``max_batch_frames`` however the frames arrive.

Replica resources, ``max_ongoing_requests`` and busy-time autoscaling: ``serve_apps/common.py``.

The replica is stateless: boxes come back in model-input pixels and the group, which knows each
frame's letterbox scale, maps them to the original frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field
from ray import serve

from models.backends.registry import BackendConfig, OnnxRuntimeConfig
from models.detector import Detector
from models.spec import get_model_spec
from serve_apps.common import BusyTimeReporter, ReplicaArgs, split_by_request


class DetectorAppArgs(ReplicaArgs):
    """Arguments of the ``detector`` Serve application (the ``args:`` block of the Serve config)."""

    model: str = Field("yolox_nano", description="Built-in model spec name.")
    backend: BackendConfig = Field(default_factory=OnnxRuntimeConfig, description="Inference backend config.")
    max_batch_frames: int = Field(32, ge=1, le=1024, description="Largest model batch, in frames.")


def _frames_in(requests: list[np.ndarray]) -> int:
    return sum(int(r.shape[0]) for r in requests)


@serve.deployment(name="Detector")
class DetectorDeployment(BusyTimeReporter):
    def __init__(self, args: dict[str, Any] | None = None) -> None:
        self._args = DetectorAppArgs.model_validate(args or {})
        self._detector = Detector.from_spec(
            get_model_spec(self._args.model), backend_config=self._args.backend
        )
        self.detect.set_max_batch_size(self._args.max_batch_frames)
        self.detect.set_batch_wait_timeout_s(self._args.batch_wait_timeout_s)

    def info(self) -> dict[str, Any]:
        return {**self._detector.info(), "max_batch_frames": self._args.max_batch_frames}

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01, batch_size_fn=_frames_in)
    async def detect(self, micro_batches: list[np.ndarray]) -> list[list[np.ndarray]]:
        """Each input: ``uint8 [n, H, W, 3]``; each output: n arrays ``(k, 6)`` in model pixels."""
        merged = micro_batches[0] if len(micro_batches) == 1 else np.concatenate(micro_batches)
        detections = await self.run_model(self._detector.detect, merged)
        return split_by_request([d.to_array() for d in detections], [m.shape[0] for m in micro_batches])

    async def __call__(self, frames: np.ndarray) -> list[np.ndarray]:
        return await self.detect(frames)


def build_app(args: dict[str, Any] | None = None) -> serve.Application:
    """Application builder: ``serve deploy serve_apps/serve_config.yaml`` and ``cctv demo`` both use it."""
    parsed = DetectorAppArgs.model_validate(args or {})
    return DetectorDeployment.options(**parsed.deployment_options()).bind(parsed.model_dump(mode="json"))
