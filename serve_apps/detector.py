"""The Detector deployment: merges frame micro-batches from many DecoderGroups into model batches.

Requests are micro-batches, not frames: a DecoderGroup sends one contiguous ``uint8 [N, H, W, 3]``
array (already letterboxed to the model input) per request, because a Serve handle call costs ~5 ms
of CPU here and one frame per request would spend the machine on RPC. ``@serve.batch`` then merges
requests from several groups, counting frames with ``batch_size_fn`` so a model batch never exceeds
``max_batch_frames`` however the frames arrive.

Settings chosen on purpose (see DESIGN.md):
- ``max_ongoing_requests`` must exceed the number of micro-batches a full model batch is made of,
  or Serve caps every batch (the default of 5 collapsed throughput to 10 req/s in a measurement).
- fractional ``num_cpus`` so a replica fits beside decoders on small nodes; ``num_gpus`` on GPU nodes.
- autoscaling on ongoing micro-batches: ``target_ongoing_requests`` about two micro-batches per
  replica keeps one batch queued behind the one running, which hides the handle latency.

The replica is stateless: boxes come back in model-input pixels and the group, which knows each
frame's letterbox scale, maps them to the original frame.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from autoscale.utilisation import BUSY_METRIC, UtilisationParams
from models.backends.registry import BackendConfig, OnnxRuntimeConfig
from models.detector import Detector
from models.spec import get_model_spec


class DetectorAppArgs(BaseModel):
    """Arguments of the ``detector`` Serve application (the ``args:`` block of the Serve config)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("yolox_nano", description="Built-in model spec name.")
    backend: BackendConfig = Field(default_factory=OnnxRuntimeConfig, description="Inference backend config.")
    max_batch_frames: int = Field(32, ge=1, le=1024, description="Largest model batch, in frames.")
    batch_wait_timeout_s: float = Field(0.01, ge=0, le=1, description="How long a partial batch waits.")
    num_cpus: float = Field(0.5, gt=0, description="CPUs reserved per replica.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per replica (fractions share a GPU).")
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(2, ge=1)
    autoscaling_policy: Literal["utilisation", "requests"] = Field(
        "utilisation",
        description="'utilisation': scale on measured model busy time (autoscale/utilisation.py); "
        "'requests': Serve's default, on ongoing micro-batches per replica.",
    )
    utilisation: UtilisationParams = Field(default_factory=UtilisationParams, description="Policy settings.")
    target_ongoing_requests: float = Field(2.0, gt=0, description="Micro-batches in flight per replica.")
    max_ongoing_requests: int = Field(32, ge=1, description="Must exceed micro-batches per model batch.")


def _frames_in(requests: list[np.ndarray]) -> int:
    return sum(int(r.shape[0]) for r in requests)


@serve.deployment(name="Detector")
class DetectorDeployment:
    def __init__(self, args: dict[str, Any] | None = None) -> None:
        self._args = DetectorAppArgs.model_validate(args or {})
        self._detector = Detector.from_spec(
            get_model_spec(self._args.model), backend_config=self._args.backend
        )
        self.detect.set_max_batch_size(self._args.max_batch_frames)
        self.detect.set_batch_wait_timeout_s(self._args.batch_wait_timeout_s)
        self._busy_s = 0.0  # wall time spent in the model, for the utilisation autoscaler
        self._busy_mark = (time.monotonic(), 0.0)

    def record_autoscaling_stats(self) -> dict[str, float]:
        """Serve calls this periodically; the fraction of wall time this replica ran the model."""
        now = time.monotonic()
        mark_t, mark_busy = self._busy_mark
        self._busy_mark = (now, self._busy_s)
        return {BUSY_METRIC: (self._busy_s - mark_busy) / max(1e-6, now - mark_t)}

    def info(self) -> dict[str, Any]:
        spec = get_model_spec(self._args.model)
        return {
            "model": spec.name,
            "backend": self._detector.backend_name,
            "input_width": spec.input_width,
            "input_height": spec.input_height,
            "color": spec.color,
            "class_names": list(self._detector.class_names),
            "max_batch_frames": self._args.max_batch_frames,
        }

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01, batch_size_fn=_frames_in)
    async def detect(self, micro_batches: list[np.ndarray]) -> list[list[np.ndarray]]:
        """Each input: ``uint8 [n, H, W, 3]``; each output: n arrays ``(k, 6)`` in model pixels."""
        merged = micro_batches[0] if len(micro_batches) == 1 else np.concatenate(micro_batches)
        # Inference off the event loop so the next batch can assemble while this one runs.
        started = time.monotonic()
        try:
            detections = await asyncio.to_thread(self._detector.detect, merged)
        finally:
            self._busy_s += time.monotonic() - started
        rows = [d.to_array() for d in detections]
        out: list[list[np.ndarray]] = []
        start = 0
        for micro in micro_batches:
            out.append(rows[start : start + micro.shape[0]])
            start += micro.shape[0]
        return out

    async def __call__(self, frames: np.ndarray) -> list[np.ndarray]:
        return await self.detect(frames)


def build_app(args: dict[str, Any] | None = None) -> serve.Application:
    """Application builder: ``serve deploy serve_apps/serve_config.yaml`` and ``cctv demo`` both use it."""
    parsed = DetectorAppArgs.model_validate(args or {})
    autoscaling: dict[str, Any] = {
        "min_replicas": parsed.min_replicas,
        "initial_replicas": max(1, parsed.min_replicas),
        "max_replicas": parsed.max_replicas,
        "target_ongoing_requests": parsed.target_ongoing_requests,
        "upscale_delay_s": parsed.utilisation.upscale_delay_s,
        "downscale_delay_s": parsed.utilisation.downscale_delay_s,
    }
    if parsed.autoscaling_policy == "utilisation":
        autoscaling["policy"] = {
            "policy_function": "autoscale.utilisation:UtilisationPolicy",
            "policy_kwargs": parsed.utilisation.model_dump(),
        }
    deployment = DetectorDeployment.options(
        max_ongoing_requests=parsed.max_ongoing_requests,
        ray_actor_options={"num_cpus": parsed.num_cpus, "num_gpus": parsed.num_gpus},
        autoscaling_config=autoscaling,
    )
    return deployment.bind(parsed.model_dump(mode="json"))
