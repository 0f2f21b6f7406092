"""Inference backends by name; each backend's config is one member of a discriminated union.

A deployment config says ``backend: {type: onnxruntime, intra_op_threads: 2}`` (or just the name);
``parse_backend_config`` validates it against the member its ``type`` names, and ``create_backend``
builds the backend for a model file.

Adding a backend (TensorRT, PyTorch CUDA) takes three steps:
1. a module ``models/backends/<name>.py`` with a ``<Name>Config(BackendConfigBase)`` declaring
   ``type: Literal["<name>"]`` and a backend class with ``from_config(config, model_path)`` whose
   result satisfies ``InferenceBackend``. Import optional runtimes (``tensorrt``, ``torch``) inside
   ``from_config``, never at module top, so configs still parse on machines without them;
2. add the config class to ``BackendConfig`` below;
3. add ``"<name>": <Backend>.from_config`` to ``_FACTORIES``.

Registered: ``onnxruntime`` (CPU, or CUDA with onnxruntime-gpu), ``tensorrt`` (FP16 engines cached per
model, GPU and TensorRT version), ``torch`` (onnx2torch; FP16 + compile + CUDA graphs on GPUs) and
``auto``, which picks the best available of these at start-up and falls back when one fails to start
(``models.backends.auto``). Naming a concrete backend is the explicit override: it never falls back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import Field, TypeAdapter

from models.backends.auto import AutoConfig, create_auto_backend
from models.backends.base import BackendConfigBase, InferenceBackend
from models.backends.onnxruntime import OnnxRuntimeBackend, OnnxRuntimeConfig
from models.backends.tensorrt import TensorRTBackend, TensorRTConfig
from models.backends.torch_cuda import TorchBackend, TorchConfig

# Union[...] (not |) so that a second member can be added with one line; ruff's UP007 agrees for Annotated.
BackendConfig = Annotated[
    Union[OnnxRuntimeConfig, TensorRTConfig, TorchConfig, AutoConfig],  # noqa: UP007
    Field(discriminator="type"),
]

_FACTORIES: dict[str, Callable[[Any, Path], InferenceBackend]] = {
    "onnxruntime": OnnxRuntimeBackend.from_config,
    "tensorrt": TensorRTBackend.from_config,
    "torch": TorchBackend.from_config,
    "auto": create_auto_backend,
}

_ADAPTER: TypeAdapter[BackendConfigBase] = TypeAdapter(BackendConfig)


class UnknownBackendError(ValueError):
    """A backend name that is not registered; the message lists the valid names."""


def backend_names() -> list[str]:
    return sorted(_FACTORIES)


def _check_name(name: object) -> str:
    if name not in _FACTORIES:
        raise UnknownBackendError(f"unknown backend {name!r}; valid backends: {', '.join(backend_names())}")
    return str(name)


def parse_backend_config(value: BackendConfigBase | Mapping[str, Any] | str | None) -> BackendConfigBase:
    """A validated backend config from a config object, a mapping with ``type``, a bare name, or None.

    None means the default: ONNX Runtime with its defaults, which runs everywhere.
    """
    if value is None:
        return OnnxRuntimeConfig()
    if isinstance(value, BackendConfigBase):
        _check_name(getattr(value, "type", None))
        return value
    if isinstance(value, str):
        value = {"type": value}
    _check_name(value.get("type"))
    return _ADAPTER.validate_python(dict(value))


def create_backend(
    config: BackendConfigBase | Mapping[str, Any] | str | None, model_path: str | Path
) -> InferenceBackend:
    """Build the backend that ``config`` names, loaded with the ONNX file at ``model_path``."""
    parsed = parse_backend_config(config)
    return _FACTORIES[_check_name(getattr(parsed, "type", None))](parsed, Path(model_path))
