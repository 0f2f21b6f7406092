"""TensorRT backend: an FP16 engine built from the ONNX file, cached on disk, built once per node.

- **Engine.** The ONNX graph is first made batch-dynamic (``models.onnx_batch``), then parsed and built
  with one optimisation profile ``min_batch / opt_batch / max_batch`` over the batch dimension
  (``optimization_profile``), FP16 kernels allowed, and a timing cache per GPU model and TensorRT version
  so that rebuilding another model on the same kind of GPU skips most kernel timing.
- **Cache key** (``engine_cache_key``): the model's sha256, the GPU model name and the TensorRT version,
  plus a short hash of the build settings (precision, profile, workspace). An engine is only valid for
  the GPU model and TensorRT version it was built with; anything else gets its own file.
- **Built once per node.** Replicas of a deployment start together; ``get_or_build`` takes an exclusive
  ``fcntl`` lock next to the engine file, re-checks the file under the lock, builds, and publishes the
  engine with an atomic rename. Waiters find the finished engine and just load it.
- **Failures** raise ``EngineBuildError`` with the parser's errors and TensorRT's last log lines.
- ``tensorrt`` (and ``torch``, which provides the CUDA buffers and stream) are imported inside
  ``from_config`` only: configs parse and the pure functions run on machines without them. TensorRT
  wheels need NVIDIA's own index (see DESIGN.md); never install ``nvidia-pyindex``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
from pydantic import Field, model_validator

from models.backends.base import BackendConfigBase
from models.data import sha256_of
from models.onnx_batch import dynamic_batch_model_path

log = logging.getLogger(__name__)


class TensorRTConfig(BackendConfigBase):
    type: Literal["tensorrt"] = Field(default="tensorrt", description="Backend name in the registry.")
    fp16: bool = Field(default=True, description="Allow FP16 kernels (inputs and outputs stay float32).")
    min_batch: int = Field(default=1, ge=1, description="Smallest batch of the optimisation profile.")
    opt_batch: int = Field(default=16, ge=1, description="Batch TensorRT tunes kernels for.")
    max_batch: int = Field(
        default=64, ge=1, description="Largest batch per engine call; larger inputs are split."
    )
    workspace_mib: int = Field(default=2048, ge=64, description="Builder workspace memory limit (MiB).")
    device_id: int = Field(default=0, ge=0, description="CUDA device the engine is built for and runs on.")
    engine_cache_dir: Path | None = Field(
        default=None, description="Engine and timing-cache directory (~/.cache/cctv-analytics/tensorrt)."
    )
    timing_cache: bool = Field(
        default=True, description="Reuse kernel timings across builds on this GPU model."
    )
    lock_timeout_s: float = Field(
        default=1800.0, gt=0, description="How long a replica waits for another one building the same engine."
    )

    @model_validator(mode="after")
    def _ordered(self) -> TensorRTConfig:
        if not self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError(
                "need min_batch <= opt_batch <= max_batch, "
                f"got {self.min_batch}, {self.opt_batch}, {self.max_batch}"
            )
        return self


class EngineBuildError(RuntimeError):
    """TensorRT could not parse or build the model; the message carries its errors."""


# -- pure functions ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProfileShapes:
    input_name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


def optimization_profile(
    input_name: str, shape: Sequence[int | str | None], min_batch: int, opt_batch: int, max_batch: int
) -> ProfileShapes:
    """Min/opt/max input shapes for a graph input of ``shape`` (ONNX dims: int, or a name/None if symbolic).

    Only the batch (first) dimension may be dynamic: any other symbolic dimension is an error naming it.
    A graph whose batch is a fixed number gets that number for min, opt and max.
    """
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise ValueError(f"need 1 <= min <= opt <= max batch, got {min_batch}, {opt_batch}, {max_batch}")
    if not shape:
        raise ValueError(f"input {input_name!r} has no shape; TensorRT needs a batch-first tensor")
    rest = []
    for axis, dim in enumerate(shape[1:], start=1):
        if not isinstance(dim, int) or dim <= 0:
            raise ValueError(
                f"input {input_name!r} dimension {axis} is dynamic ({dim!r}) in shape {list(shape)}; "
                "only the batch dimension may be dynamic"
            )
        rest.append(dim)
    batch = shape[0]
    if isinstance(batch, int) and batch > 0:
        fixed = (batch, *rest)
        return ProfileShapes(input_name, fixed, fixed, fixed)
    return ProfileShapes(input_name, (min_batch, *rest), (opt_batch, *rest), (max_batch, *rest))


def gpu_slug(gpu_name: str) -> str:
    """``"NVIDIA H100 80GB HBM3"`` -> ``"nvidia-h100-80gb-hbm3"`` (safe in a file name)."""
    slug = re.sub(r"[^a-z0-9]+", "-", gpu_name.lower()).strip("-")
    if not slug:
        raise ValueError(f"GPU name {gpu_name!r} gives an empty cache-key part")
    return slug


def engine_cache_key(
    model_sha256: str, gpu_name: str, tensorrt_version: str, settings: Mapping[str, Any] | None = None
) -> str:
    """``<model sha256>-<gpu>-trt<version>-<settings hash>``: one engine file per model, GPU model,
    TensorRT version and build settings (precision, profile, workspace)."""
    if not re.fullmatch(r"[0-9a-f]{64}", model_sha256):
        raise ValueError(f"model_sha256 must be 64 lowercase hex digits, got {model_sha256!r}")
    version = re.sub(r"[^0-9A-Za-z.]+", "-", tensorrt_version).strip("-")
    if not version:
        raise ValueError(f"TensorRT version {tensorrt_version!r} gives an empty cache-key part")
    encoded = json.dumps(settings or {}, sort_keys=True, default=str).encode()
    return f"{model_sha256}-{gpu_slug(gpu_name)}-trt{version}-{hashlib.sha256(encoded).hexdigest()[:12]}"


def build_settings(config: TensorRTConfig, profile: ProfileShapes) -> dict[str, Any]:
    """What changes the engine besides model, GPU and TensorRT version: part of the cache key."""
    return {
        "fp16": config.fp16,
        "profile": [profile.input_name, profile.min, profile.opt, profile.max],
        "workspace_mib": config.workspace_mib,
    }


def default_engine_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cctv-analytics" / "tensorrt"


@contextlib.contextmanager
def exclusive_file_lock(path: Path, timeout_s: float, poll_s: float = 0.2) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created if missing), shared by every process on the node."""
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    with path.open("a") as handle:
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"waited {timeout_s:.0f} s for {path} (another process is building this engine)"
                    ) from None
                time.sleep(poll_s)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def get_or_build(
    path: Path, build: Callable[[], bytes], lock_timeout_s: float = 1800.0
) -> tuple[bytes, bool]:
    """The cached file's bytes, building and publishing it first if absent; ``(data, built_here)``.

    Concurrent callers on one node (threads or processes) build once: the first takes the lock, the
    others wait for it, then find the file.
    """
    if path.is_file():
        return path.read_bytes(), False
    with exclusive_file_lock(path.with_name(path.name + ".lock"), lock_timeout_s):
        if path.is_file():
            return path.read_bytes(), False
        data = build()
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
            tmp.write(data)
        Path(tmp.name).replace(path)
        return data, True


def onnx_input(path: Path) -> tuple[str, list[int | str | None]]:
    """Name and dims (int, or the symbolic name) of the single graph input of an ONNX file."""
    model = onnx.load(str(path), load_external_data=False)
    initializers = {init.name for init in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializers]
    if len(inputs) != 1:
        raise ValueError(f"{path}: expected one input, got {[value.name for value in inputs]}")
    dims = inputs[0].type.tensor_type.shape.dim
    return inputs[0].name, [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in dims]


# -- the backend (needs tensorrt + torch with CUDA) -----------------------------------------------------
def _import_runtime() -> tuple[Any, Any]:
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise ImportError(
            "the 'tensorrt' backend needs the tensorrt package (pip install '.[tensorrt]', which reaches "
            f"NVIDIA's index): {exc}"
        ) from exc
    try:
        import torch
    except ImportError as exc:
        raise ImportError(
            f"the 'tensorrt' backend uses torch for CUDA buffers (pip install '.[torch]'): {exc}"
        ) from exc
    if not torch.cuda.is_available():
        raise RuntimeError("the 'tensorrt' backend needs a CUDA GPU; torch.cuda.is_available() is False")
    return trt, torch


class _CapturingLogger:
    """A ``trt.ILogger`` that keeps the last messages for error reports."""

    def __init__(self, trt: Any) -> None:
        base = trt.ILogger
        parent = self

        class Logger(base):  # type: ignore[misc, valid-type]
            def __init__(self) -> None:
                base.__init__(self)

            def log(self, severity: Any, msg: str) -> None:
                parent.lines = [*parent.lines[-40:], f"{severity}: {msg}"]
                if severity <= trt.ILogger.Severity.WARNING:
                    log.warning("TensorRT: %s", msg)

        self.lines: list[str] = []
        self.logger = Logger()


def build_engine(
    trt: Any, source: Path, profile: ProfileShapes, config: TensorRTConfig, timing_path: Path | None
) -> bytes:
    """Parse ``source`` and build a serialized engine; ``EngineBuildError`` says why when it fails."""
    captured = _CapturingLogger(trt)
    builder = trt.Builder(captured.logger)
    major = int(trt.__version__.split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, captured.logger)
    if not parser.parse_from_file(str(source)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(f"TensorRT {trt.__version__} cannot parse {source}: {'; '.join(errors)}")
    build_config = builder.create_builder_config()
    build_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, config.workspace_mib << 20)
    if config.fp16:
        build_config.set_flag(trt.BuilderFlag.FP16)
    trt_profile = builder.create_optimization_profile()
    trt_profile.set_shape(profile.input_name, profile.min, profile.opt, profile.max)
    build_config.add_optimization_profile(trt_profile)
    cache = None
    if timing_path is not None:
        cache = build_config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
        build_config.set_timing_cache(cache, ignore_mismatch=False)
    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, build_config)
    if serialized is None:
        raise EngineBuildError(
            f"TensorRT {trt.__version__} failed to build {source} (profile {profile}); last messages: "
            + " | ".join(captured.lines[-10:])
        )
    if cache is not None and timing_path is not None:
        with exclusive_file_lock(timing_path.with_name(timing_path.name + ".lock"), 60):
            timing_path.write_bytes(memoryview(cache.serialize()))
    log.info("built TensorRT engine for %s in %.1f s", source.name, time.perf_counter() - started)
    return bytes(serialized)


class TensorRTBackend:
    """Runs a TensorRT engine on batch-first float inputs; batches above ``max_batch`` are split."""

    def __init__(self, engine: Any, torch: Any, config: TensorRTConfig) -> None:
        self._engine = engine
        self._torch = torch
        self._context = engine.create_execution_context()
        self._device = torch.device("cuda", config.device_id)
        self._stream = torch.cuda.Stream(self._device)
        self._max_batch = config.max_batch
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        mode = engine.get_tensor_mode
        self._inputs = [n for n in names if str(mode(n)).endswith("INPUT")]
        self._outputs = [n for n in names if str(mode(n)).endswith("OUTPUT")]
        if len(self._inputs) != 1:
            raise ValueError(f"expected an engine with one input, got {self._inputs}")
        self.name = "tensorrt-fp16" if config.fp16 else "tensorrt-fp32"

    @classmethod
    def from_config(cls, config: TensorRTConfig, model_path: Path) -> TensorRTBackend:
        trt, torch = _import_runtime()
        source = dynamic_batch_model_path(Path(model_path))
        input_name, dims = onnx_input(source)
        profile = optimization_profile(input_name, dims, config.min_batch, config.opt_batch, config.max_batch)
        gpu = torch.cuda.get_device_name(config.device_id)
        cache_dir = config.engine_cache_dir or default_engine_cache_dir()
        key = engine_cache_key(sha256_of(source), gpu, trt.__version__, build_settings(config, profile))
        timing = (
            cache_dir / f"timing-{gpu_slug(gpu)}-trt{trt.__version__}.cache" if config.timing_cache else None
        )
        with torch.cuda.device(config.device_id):
            data, built = get_or_build(
                cache_dir / f"{key}.engine",
                lambda: build_engine(trt, source, profile, config, timing),
                config.lock_timeout_s,
            )
            engine = trt.Runtime(_CapturingLogger(trt).logger).deserialize_cuda_engine(data)
        if engine is None:
            raise EngineBuildError(
                f"cannot load cached engine {cache_dir / key}.engine; delete it to rebuild"
            )
        log.info("TensorRT engine %s (%s)", key, "built" if built else "from cache")
        return cls(engine, torch, config)

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        if len(batch) == 0:
            raise ValueError(f"empty batch {batch.shape}: the caller should skip the call")
        parts = [
            self._run_chunk(batch[i : i + self._max_batch]) for i in range(0, len(batch), self._max_batch)
        ]
        return parts[0] if len(parts) == 1 else [np.concatenate(p) for p in zip(*parts, strict=True)]

    def _run_chunk(self, chunk: np.ndarray) -> list[np.ndarray]:
        torch = self._torch
        with torch.cuda.stream(self._stream):
            device_input = (
                torch.from_numpy(np.ascontiguousarray(chunk)).pin_memory().to(self._device, non_blocking=True)
            )
            self._context.set_input_shape(self._inputs[0], tuple(device_input.shape))
            self._context.set_tensor_address(self._inputs[0], device_input.data_ptr())
            outputs = []
            for name in self._outputs:
                shape = tuple(self._context.get_tensor_shape(name))
                dtype = _torch_dtype(torch, self._engine.get_tensor_dtype(name))
                outputs.append(torch.empty(shape, dtype=dtype, device=self._device))
                self._context.set_tensor_address(name, outputs[-1].data_ptr())
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            host = [out.to("cpu", non_blocking=True) for out in outputs]
        self._stream.synchronize()
        return [h.numpy() for h in host]


def _torch_dtype(torch: Any, trt_dtype: Any) -> Any:
    name = str(trt_dtype).rsplit(".", 1)[-1].upper()
    table = {
        "FLOAT": torch.float32,
        "HALF": torch.float16,
        "INT32": torch.int32,
        "INT64": torch.int64,
        "INT8": torch.int8,
        "UINT8": torch.uint8,
        "BOOL": torch.bool,
    }
    if name not in table:
        raise TypeError(f"unsupported TensorRT output dtype {trt_dtype}")
    return table[name]
