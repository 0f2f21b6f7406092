"""The PlateReader deployment: full-resolution vehicle crops from many groups -> plate text.

A request is one micro-batch: the vehicle crops of one frame or of one group's batch of frames (a list
of BGR ``uint8`` arrays of any size). ``@serve.batch`` merges requests and ``batch_size_fn`` counts
crops, so one model batch holds at most ``max_batch_crops`` crops however they arrive; the client
splits larger micro-batches (a single request over the limit would be rejected by Serve).

Settings chosen on purpose: ``max_ongoing_requests`` must exceed the requests one model batch is made of
(Serve's default of 5 would cap every batch at 5 requests); fractional ``num_cpus`` so a replica fits
beside decoders; the replica is stateless and returns plate corners in crop pixels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field
from ray import serve

from models.backends.auto import AutoConfig
from models.backends.registry import BackendConfig
from models.plate import PlateRead, PlateReader, PlateReaderConfig
from serve_apps.common import BusyTimeReporter, ReplicaArgs, split_by_request


class PlateReaderAppArgs(ReplicaArgs):
    """Arguments of the ``plates`` Serve application."""

    reader: PlateReaderConfig = Field(default_factory=PlateReaderConfig, description="Models and thresholds.")
    backend: BackendConfig = Field(
        default_factory=AutoConfig,
        description="Inference backend; auto: TensorRT > PyTorch CUDA > ONNX Runtime.",
    )
    max_batch_crops: int = Field(32, ge=1, le=1024, description="Largest model batch, in crops.")
    num_cpus: float = Field(0.25, gt=0, description="CPUs reserved per replica.")
    max_ongoing_requests: int = Field(64, ge=1, description="Must exceed micro-batches per model batch.")


def _crops_in(requests: list[list[np.ndarray]]) -> int:
    return sum(len(r) for r in requests)


@serve.deployment(name="PlateReader")
class PlateReaderDeployment(BusyTimeReporter):
    def __init__(self, args: dict[str, Any] | None = None) -> None:
        self._args = PlateReaderAppArgs.model_validate(args or {})
        self._reader = PlateReader.from_config(self._args.reader, backend=self._args.backend)
        self.read.set_max_batch_size(self._args.max_batch_crops)
        self.read.set_batch_wait_timeout_s(self._args.batch_wait_timeout_s)

    def info(self) -> dict[str, Any]:
        return {
            "model": "lpd_yunet_2023mar+cct_xs_v1_global",
            "backend": self._reader.backend_name,
            "max_request_crops": self._args.max_batch_crops,
        }

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01, batch_size_fn=_crops_in)
    async def read(self, requests: list[list[np.ndarray]]) -> list[list[list[PlateRead]]]:
        """Each request: a list of BGR crops; each result: the plates read in each crop."""
        merged = [crop for request in requests for crop in request]
        reads = await self.run_model(self._reader.read, merged) if merged else []
        return split_by_request(reads, [len(request) for request in requests])

    async def __call__(self, crops: list[np.ndarray]) -> list[list[PlateRead]]:
        return await self.read(crops)


def build_app(args: dict[str, Any] | None = None) -> serve.Application:
    parsed = PlateReaderAppArgs.model_validate(args or {})
    return PlateReaderDeployment.options(**parsed.deployment_options()).bind(parsed.model_dump(mode="json"))
