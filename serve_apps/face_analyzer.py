"""The FaceAnalyzer deployment: person crops (or whole frames) from many groups -> faces and matches.

Same shape as the PlateReader deployment: a request is one micro-batch (a list of BGR images),
``@serve.batch`` merges requests up to ``max_batch_images`` images counted by ``batch_size_fn``,
``max_ongoing_requests`` is set above the requests per model batch, ``num_cpus`` is fractional.

Only cameras with ``CameraSpec.faces`` send images here. The replica keeps no face data between calls;
it loads the watchlist gallery (``analyzer.gallery_file``) at start, read-only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field
from ray import serve

from models.backends.auto import AutoConfig
from models.backends.registry import BackendConfig
from models.face import FaceAnalyzer, FaceAnalyzerConfig, FaceResult
from serve_apps.common import BusyTimeReporter, ReplicaArgs, split_by_request


class FaceAnalyzerAppArgs(ReplicaArgs):
    """Arguments of the ``faces`` Serve application."""

    analyzer: FaceAnalyzerConfig = Field(
        default_factory=FaceAnalyzerConfig, description="Models, thresholds."
    )
    backend: BackendConfig = Field(
        default_factory=AutoConfig,
        description="Inference backend; auto: TensorRT > PyTorch CUDA > ONNX Runtime.",
    )
    max_batch_images: int = Field(16, ge=1, le=1024, description="Largest model batch, in images.")
    num_cpus: float = Field(0.25, gt=0, description="CPUs reserved per replica.")
    max_ongoing_requests: int = Field(64, ge=1, description="Must exceed micro-batches per model batch.")


def _images_in(requests: list[list[np.ndarray]]) -> int:
    return sum(len(r) for r in requests)


@serve.deployment(name="FaceAnalyzer")
class FaceAnalyzerDeployment(BusyTimeReporter):
    def __init__(self, args: dict[str, Any] | None = None) -> None:
        self._args = FaceAnalyzerAppArgs.model_validate(args or {})
        self._analyzer = FaceAnalyzer.from_config(self._args.analyzer, backend=self._args.backend)
        self.analyze.set_max_batch_size(self._args.max_batch_images)
        self.analyze.set_batch_wait_timeout_s(self._args.batch_wait_timeout_s)

    def info(self) -> dict[str, Any]:
        return {
            "model": "yunet_2023mar" + ("+embedder" if self._analyzer.embedder is not None else ""),
            "backend": self._analyzer.backend_name,
            "max_request_crops": self._args.max_batch_images,
            "watchlist_size": len(self._analyzer.gallery) if self._analyzer.gallery is not None else 0,
        }

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01, batch_size_fn=_images_in)
    async def analyze(self, requests: list[list[np.ndarray]]) -> list[list[list[FaceResult]]]:
        merged = [image for request in requests for image in request]
        faces = await self.run_model(self._analyzer.analyze, merged) if merged else []
        return split_by_request(faces, [len(request) for request in requests])

    async def __call__(self, images: list[np.ndarray]) -> list[list[FaceResult]]:
        return await self.analyze(images)


def build_app(args: dict[str, Any] | None = None) -> serve.Application:
    parsed = FaceAnalyzerAppArgs.model_validate(args or {})
    return FaceAnalyzerDeployment.options(**parsed.deployment_options()).bind(parsed.model_dump(mode="json"))
