"""PyTorch backend: the ONNX graph converted with onnx2torch; FP16, ``torch.compile`` and CUDA graphs on GPUs.

This is the GPU path where TensorRT is absent (DESIGN.md measured 1,658 images/s at batch 1 and about
21,000 at 128-256 for YOLOX-nano on one H100 with FP16 + compile + CUDA graphs). On a CPU it runs in
FP32 without compilation, which is how parity with ONNX Runtime is tested on machines without a GPU.

- **Constants frozen.** onnx2torch's Reshape, Slice and Resize modules take their shape/start/scale
  constants as tensors and read them back with ``.tolist()``/``torch.any`` on every call: on a GPU that
  is a device-to-host sync per op, which blocks CUDA graphs and breaks ``torch.compile`` graphs.
  ``freeze_shape_constants`` rewrites those calls once, after conversion, into modules holding plain
  Python ints. Graphs that compute shapes at run time (``Shape -> Gather -> Concat``) keep the original
  modules and simply run eagerly around them.
- **Batch buckets.** A CUDA graph is recorded per input shape, so batches are zero-padded up to the next
  size in ``batch_buckets`` (compiled mode only): a bounded number of graphs, each recorded once.
- **Precision.** FP16 weights and inputs (``model.half()``) when the graph input is floating point;
  graphs taking integer pixels (the plate OCR) cast internally, so they run under ``torch.autocast``.
- torch and onnx2torch are optional (``pip install '.[torch]'``) and imported in ``from_config``.
  onnx2torch imports torchvision only for its NMS and RoiAlign converters, which none of our models use;
  where torchvision is missing (its PyPI wheel does not load beside the CPU torch wheel), a placeholder
  that raises on use is installed for the duration of the import.
"""

from __future__ import annotations

import logging
import sys
import types
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
from pydantic import Field

from models.backends.base import BackendConfigBase
from models.onnx_batch import dynamic_batch_model_path

log = logging.getLogger(__name__)

DEFAULT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class TorchConfig(BackendConfigBase):
    type: Literal["torch"] = Field(default="torch", description="Backend name in the registry.")
    device: Literal["auto", "cuda", "cpu"] = Field(default="auto", description="'auto': CUDA when available.")
    precision: Literal["auto", "fp16", "fp32"] = Field(
        default="auto", description="'auto': FP16 on CUDA, FP32 on CPU."
    )
    compile: bool | None = Field(default=None, description="torch.compile the model; None: on CUDA only.")
    cuda_graphs: bool = Field(
        default=True, description="With compile on CUDA, replay CUDA graphs (reduce-overhead)."
    )
    batch_buckets: tuple[int, ...] = Field(
        default=DEFAULT_BUCKETS,
        min_length=1,
        description="Compiled mode pads batches up to one of these sizes.",
    )
    cpu_threads: int = Field(default=1, ge=1, description="torch intra-op threads when running on the CPU.")
    onnx_cache_dir: Path | None = Field(default=None, description="Where batch-dynamic graphs are cached.")


def bucket_for(n: int, buckets: tuple[int, ...]) -> int:
    """The smallest bucket holding ``n`` images; ``n`` itself when it exceeds every bucket."""
    return next((b for b in sorted(buckets) if b >= n), n)


def import_onnx2torch() -> Any:
    """``onnx2torch``, importable without torchvision (see the module docs)."""
    try:
        import onnx2torch
    except Exception as exc:  # torchvision missing, or present but broken (ABI mismatch with torch)
        if getattr(exc, "name", None) != "torchvision" and "torchvision" not in str(exc):
            raise ImportError(
                f"the 'torch' backend needs torch and onnx2torch (pip install '.[torch]'): {exc}"
            ) from exc
    else:
        return onnx2torch

    def missing(*_args: Any, **_kwargs: Any) -> Any:
        raise NotImplementedError("this ONNX op needs torchvision, which is not installed")

    placeholder = types.ModuleType("torchvision")
    placeholder.__path__ = []  # a package, so "from torchvision.ops import ..." resolves
    ops = types.ModuleType("torchvision.ops")
    ops.nms = ops.roi_align = ops.box_convert = missing  # type: ignore[attr-defined]
    placeholder.ops = ops  # type: ignore[attr-defined]
    for name in [n for n in sys.modules if n == "onnx2torch" or n.startswith("onnx2torch.")]:
        del sys.modules[name]  # drop the half-imported package
    sys.modules["torchvision"], sys.modules["torchvision.ops"] = placeholder, ops
    try:
        import onnx2torch
    finally:
        del sys.modules["torchvision"], sys.modules["torchvision.ops"]
    return onnx2torch


def _constant_value(gm: Any, node: Any) -> Any:
    """The tensor behind a constant fx node (an initializer attribute or an OnnxConstant call), else None."""
    import torch

    if node is None:
        return None
    if node.op == "get_attr":
        value = gm
        for part in node.target.split("."):
            value = getattr(value, part)
        return value if isinstance(value, torch.Tensor) else None
    if (
        node.op == "call_module"
        and not node.args
        and type(gm.get_submodule(node.target)).__name__ == "OnnxConstant"
    ):
        value = gm.get_submodule(node.target).value
        return value if isinstance(value, torch.Tensor) else None
    return None


def freeze_shape_constants(gm: Any) -> int:
    """Replace Reshape/Slice/Resize calls whose shape arguments are constants; returns how many."""
    import torch

    class FrozenReshape(torch.nn.Module):
        def __init__(self, shape: list[int]) -> None:
            super().__init__()
            self.shape = shape

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.reshape([x.shape[i] if d == 0 else d for i, d in enumerate(self.shape)])

    class FrozenSlice(torch.nn.Module):
        def __init__(self, index: tuple[Any, ...]) -> None:
            super().__init__()
            self.index = index

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[self.index]

    class FrozenResize(torch.nn.Module):
        def __init__(
            self, inner: torch.nn.Module, scales: list[float] | None, sizes: list[int] | None
        ) -> None:
            super().__init__()
            self.inner, self.scales, self.sizes = inner, scales, sizes

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            from onnx2torch.node_converters.resize import _onnx_mode_to_torch_mode

            return torch.nn.functional.interpolate(
                x,
                size=self.sizes[2:] if self.sizes else None,
                scale_factor=self.scales[2:] if self.scales else None,
                mode=_onnx_mode_to_torch_mode(self.inner.onnx_mode, x.dim() - 2),
                align_corners=self.inner.align_corners,
            )

    replaced = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_module":
            continue
        module = gm.get_submodule(node.target)
        kind = type(module).__name__
        if kind not in ("OnnxReshape", "OnnxSlice", "OnnxResize"):
            continue
        extra = [_constant_value(gm, arg) if arg is not None else None for arg in node.args[1:]]
        if any(value is None and arg is not None for value, arg in zip(extra, node.args[1:], strict=True)):
            continue  # computed at run time
        values = [None if v is None else v.detach().cpu().tolist() for v in extra]
        if kind == "OnnxReshape":
            frozen: torch.nn.Module = FrozenReshape([int(d) for d in values[0]])
        elif kind == "OnnxSlice":
            starts, ends, axes, steps = (values + [None, None])[:4]
            axes = axes if axes is not None else list(range(len(starts)))
            steps = steps if steps is not None else [1] * len(starts)
            if any(s < 0 for s in steps) or any(a < 0 for a in axes):
                continue
            index: list[Any] = [slice(None)] * (max(axes) + 1)
            for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
                index[axis] = slice(int(start), int(end), int(step))
            frozen = FrozenSlice(tuple(index))
        else:
            if getattr(module, "ignore_roi", True) is False and values and values[0]:
                continue
            scales = values[1] if len(values) > 1 and values[1] else None
            sizes = values[2] if len(values) > 2 and values[2] else None
            if (scales and scales[:2] != [1, 1]) or (sizes is None and scales is None):
                continue
            frozen = FrozenResize(module, scales, [int(s) for s in sizes] if sizes else None)
        name = f"frozen_{replaced}_{node.target.replace('.', '_')}"
        gm.add_submodule(name, frozen)
        node.target = name
        node.args = node.args[:1]
        replaced += 1
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return replaced


class TorchBackend:
    def __init__(
        self, model: Any, torch: Any, device: str, fp16: bool, float_input: bool, config: TorchConfig
    ) -> None:
        self._torch = torch
        self._device = torch.device(device)
        self._half = fp16 and float_input
        self._autocast = fp16 and not float_input
        compiled = config.compile if config.compile is not None else device == "cuda"
        self._buckets = config.batch_buckets if compiled else None
        if compiled:
            mode = "reduce-overhead" if device == "cuda" and config.cuda_graphs else "default"
            model = torch.compile(model, mode=mode, dynamic=False)
        self._model = model
        suffix = "-compiled" if compiled else ""
        self.name = f"torch-{device}-{'fp16' if fp16 else 'fp32'}{suffix}"

    @classmethod
    def from_config(cls, config: TorchConfig, model_path: Path) -> TorchBackend:
        try:
            import torch
        except ImportError as exc:
            raise ImportError(f"the 'torch' backend needs torch (pip install '.[torch]'): {exc}") from exc
        onnx2torch = import_onnx2torch()
        device = config.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        elif device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device 'cuda' asked for, but torch {torch.__version__} sees no CUDA GPU")
        if device == "cpu":
            torch.set_num_threads(config.cpu_threads)
        fp16 = config.precision == "fp16" or (config.precision == "auto" and device == "cuda")
        source = dynamic_batch_model_path(Path(model_path), config.onnx_cache_dir)
        graph = onnx.load(str(source))
        elem = graph.graph.input[0].type.tensor_type.elem_type
        float_input = elem in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
        model = onnx2torch.convert(graph).eval()
        frozen = freeze_shape_constants(model)
        log.info("%s: %d shape constants frozen", source.name, frozen)
        model = model.to(device)
        if fp16 and float_input:
            model = model.half()
        return cls(model, torch, device, fp16, float_input, config)

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        torch = self._torch
        n = len(batch)
        if n == 0:
            raise ValueError(f"empty batch {batch.shape}: the caller should skip the call")
        padded = bucket_for(n, self._buckets) if self._buckets else n
        if padded != n:
            batch = np.concatenate([batch, np.zeros((padded - n, *batch.shape[1:]), batch.dtype)])
        tensor = torch.from_numpy(np.ascontiguousarray(batch))
        if self._device.type == "cuda":
            tensor = tensor.pin_memory().to(self._device, non_blocking=True)
        if self._half:
            tensor = tensor.half()
        with torch.inference_mode(), torch.autocast(self._device.type, torch.float16, enabled=self._autocast):
            out = self._model(tensor)
            outputs = list(out) if isinstance(out, list | tuple) else [out]
            host = [o.float().cpu().numpy() if o.is_floating_point() else o.cpu().numpy() for o in outputs]
        return [_trim(h, n, padded) for h in host]


def _trim(output: np.ndarray, n: int, padded: int) -> np.ndarray:
    """Drop the padded images' rows (outputs flattened over the batch, like LPD-YuNet's, included)."""
    if padded == n:
        return output
    rows = output.shape[0] // padded
    if rows * padded != output.shape[0]:
        raise ValueError(f"output with {output.shape[0]} rows does not split into {padded} images")
    return output[: n * rows]
