"""Automatic backend choice with explicit override, and fallback when the preferred one fails to start.

``backend: auto`` (the ``AutoConfig`` below) tries, in ``order``: TensorRT where ``tensorrt`` imports
and a CUDA GPU is visible; PyTorch CUDA where torch sees a GPU and onnx2torch is installed; ONNX
Runtime (CUDA provider if present, else CPU) everywhere. ``choose_backends`` is the pure policy,
``probe_environment`` the only place that looks at the machine. When a backend fails to build (say a
TensorRT engine build error), the next one is used and the reason is logged; the chosen backend's
``name`` (``tensorrt-fp16``, ``torch-cuda-fp16``, ``onnxruntime-cpu``) is what status and messages show.
Naming a backend explicitly (``backend: tensorrt``) never falls back: its error is raised.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field

from models.backends.base import BackendConfigBase, InferenceBackend
from models.backends.onnxruntime import OnnxRuntimeBackend, OnnxRuntimeConfig
from models.backends.tensorrt import TensorRTBackend, TensorRTConfig
from models.backends.torch_cuda import TorchBackend, TorchConfig

log = logging.getLogger(__name__)

BackendName = Literal["tensorrt", "torch", "onnxruntime"]


class AutoConfig(BackendConfigBase):
    type: Literal["auto"] = Field(default="auto", description="Backend name in the registry.")
    order: tuple[BackendName, ...] = Field(
        default=("tensorrt", "torch", "onnxruntime"), min_length=1, description="Preference, best first."
    )
    tensorrt: TensorRTConfig = Field(
        default_factory=TensorRTConfig, description="Settings if TensorRT is chosen."
    )
    torch: TorchConfig = Field(default_factory=TorchConfig, description="Settings if PyTorch is chosen.")
    onnxruntime: OnnxRuntimeConfig = Field(
        default_factory=OnnxRuntimeConfig,
        description="Settings if ONNX Runtime is chosen (always available).",
    )


@dataclass(frozen=True)
class Environment:
    """What the machine offers; ``probe_environment`` fills it, tests build it by hand."""

    cuda_gpu: bool  # an NVIDIA GPU that CUDA can use
    tensorrt: bool  # ``import tensorrt`` can work
    torch_cuda: bool  # torch is installed and sees the GPU
    onnx2torch: bool


def probe_environment() -> Environment:
    """Cheap checks first: torch is imported only when its package and an NVIDIA driver are present."""
    has = importlib.util.find_spec
    driver = Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidia0").exists()
    torch_cuda = False
    if driver and has("torch") is not None:
        import torch

        torch_cuda = bool(torch.cuda.is_available())
    return Environment(
        cuda_gpu=driver and torch_cuda,
        tensorrt=driver and has("tensorrt") is not None,
        torch_cuda=torch_cuda,
        onnx2torch=has("onnx2torch") is not None,
    )


def choose_backends(env: Environment, order: tuple[str, ...]) -> list[tuple[str, str]]:
    """The usable backends in preference order, each with the reason; ONNX Runtime always ends the list."""
    usable: list[tuple[str, str]] = []
    for name in order:
        if name == "tensorrt":
            if env.tensorrt and env.cuda_gpu and env.torch_cuda:
                usable.append((name, "tensorrt importable and a CUDA GPU visible"))
        elif name == "torch":
            if env.torch_cuda and env.onnx2torch:
                usable.append((name, "torch sees a CUDA GPU and onnx2torch is installed"))
        elif name == "onnxruntime":
            usable.append((name, "runs everywhere"))
        else:
            raise ValueError(f"unknown backend {name!r} in order {order}")
    if not any(name == "onnxruntime" for name, _ in usable):
        usable.append(("onnxruntime", "last resort"))
    return usable


def create_auto_backend(
    config: AutoConfig, model_path: Path, env: Environment | None = None
) -> InferenceBackend:
    """Build the first backend of ``choose_backends`` that starts; ONNX Runtime errors are raised."""
    env = env or probe_environment()
    candidates = choose_backends(env, config.order)
    for index, (name, reason) in enumerate(candidates):
        try:
            if name == "tensorrt":
                backend: InferenceBackend = TensorRTBackend.from_config(config.tensorrt, model_path)
            elif name == "torch":
                backend = TorchBackend.from_config(config.torch, model_path)
            else:
                backend = OnnxRuntimeBackend.from_config(config.onnxruntime, model_path)
        except Exception:
            if index == len(candidates) - 1:
                raise
            log.warning(
                "backend %s for %s failed to start; trying %s",
                name,
                model_path.name,
                candidates[index + 1][0],
                exc_info=True,
            )
            continue
        log.info("backend for %s: %s (%s)", model_path.name, backend.name, reason)
        return backend
    raise AssertionError("unreachable: the candidate list is never empty")
