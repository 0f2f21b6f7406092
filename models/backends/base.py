"""The one interface every inference backend implements (ONNX Runtime, TensorRT, PyTorch CUDA)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict


@runtime_checkable
class InferenceBackend(Protocol):
    name: str  # e.g. "onnxruntime-cpu", "tensorrt-fp16", "torch-cuda-fp16"; shown in status and messages

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run the model on a batched input (batch dimension first); outputs keep the batch dimension."""
        ...


class BackendConfigBase(BaseModel):
    """Base of every backend's config: strict, immutable, and tagged by ``type`` for the registry."""

    model_config = ConfigDict(extra="forbid", frozen=True)
