"""ONNX Runtime backend: CPU everywhere, CUDA where onnxruntime-gpu provides it.

Threads are an explicit budget (``intra_op_threads``, default 1): on a CPU node ONNX Runtime shares
the cores with the PyAV decoders, and its default (one thread per core, spinning while idle) starves
them. Spinning is off unless asked for, for the same reason.

Batching. Most exported detectors fix the batch to 1 in the graph. ``batch_mode`` chooses how a batch
of N images runs:
- ``dynamic``: the graph rewritten by ``models.onnx_batch`` (symbolic batch), one call per batch, or
  per ``max_images_per_call`` images;
- ``loop``: the original graph, one call per image;
- ``auto`` (``resolve_batch_mode``): on CPU, ``loop`` with one intra-op thread and ``dynamic`` in calls
  of at most 8 images with two or more (measured below); on CUDA, ``dynamic`` with whole batches
  (GPUs need big batches to be busy). Where the rewrite is impossible for a model, ``auto`` falls back
  to ``loop`` with a warning.

Measured (``python -m models.benchmark``): YOLOX-nano 416x416, onnxruntime 1.31.1 CPU, 2-core AMD EPYC
dev machine shared with other work, ``backend.run`` only, images/s, best of 4 interleaved rounds of
1.5 s (medians were 2-10% lower while the machine was quiet):

    threads  batch   dynamic   loop   | auto, later run (best of 4; load avg 1-3.4)
    1        1       116       118    | 117  (loop)
    1        4       112       117    | 111  (loop)
    1        8       103       120    | 115  (loop)
    1        16       95       115    | 117  (loop)
    1        32       84       117    | 111  (loop)
    2        1       110       135    | 122  (dynamic, <= 8 per call)
    2        4       154       122    | 151
    2        8       155       137    | 147
    2        16      140       128    | 151
    2        32      136       129    | 137

At batch 1 both modes run the same computation, so that row shows the noise: small with one thread,
up to 20% with two. Three separate runs agreed on the rest. With one thread, batching the graph does
not pay (it gets slower as the batched activations outgrow the cache) and ``loop`` is as fast as it
gets, about 8.5 ms per image. With two threads the batched graph beat the loop in every run at batch
4-8 (143-155 vs 101-137) and loses some of that beyond, hence calls of at most 8 images. Two threads
give only +30% over one for a whole second core, and under load (other engineers' jobs, load average
3.4) the two-thread medians fell to 65-105 images/s while one thread held 100-110: the default stays
one thread, leaving the other core to decoders.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort
from pydantic import Field

from models.backends.base import BackendConfigBase
from models.onnx_batch import BatchRewriteError, dynamic_batch_model_path

log = logging.getLogger(__name__)

BatchMode = Literal["dynamic", "loop"]
# From the measurements in the module docstring: one CPU thread gains nothing from batching (the
# batched activations fall out of cache); two threads gain about 20% with batches of up to 8.
CPU_AUTO_CHUNK = 8


class OnnxRuntimeConfig(BackendConfigBase):
    type: Literal["onnxruntime"] = Field(default="onnxruntime", description="Backend name in the registry.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="'auto' uses CUDA when onnxruntime offers its provider, else the CPU."
    )
    intra_op_threads: int = Field(
        default=1, ge=1, description="Threads for one operator; the CPU budget this backend may take."
    )
    inter_op_threads: int = Field(
        default=1, ge=1, description="Threads across operators (graphs here are serial)."
    )
    allow_spinning: bool = Field(
        default=False, description="Let idle worker threads spin; lowers latency a little, burns decoder CPU."
    )
    batch_mode: Literal["auto", "dynamic", "loop"] = Field(
        default="auto",
        description="How a batch runs on a batch-1 graph; see the module docs for measurements.",
    )
    max_images_per_call: int | None = Field(
        default=None,
        ge=1,
        description="Split larger batches into session calls of at most this many images (dynamic mode). "
        "None: 'auto' picks the measured best, explicit modes pass whole batches.",
    )
    onnx_cache_dir: Path | None = Field(
        default=None,
        description="Where rewritten batch-dynamic graphs are cached (~/.cache/cctv-analytics/onnx).",
    )


def resolve_batch_mode(config: OnnxRuntimeConfig, on_cuda: bool) -> tuple[BatchMode, int | None]:
    """``(mode, max images per call)`` for ``config`` on this device; ``auto`` follows the measurements."""
    if config.batch_mode != "auto":
        return config.batch_mode, config.max_images_per_call
    if on_cuda:
        return "dynamic", config.max_images_per_call
    if config.intra_op_threads == 1:
        return "loop", None
    return "dynamic", config.max_images_per_call or CPU_AUTO_CHUNK


class OnnxRuntimeBackend:
    """Runs one single-input ONNX model; ``run`` takes and returns batch-first arrays."""

    def __init__(
        self, session: ort.InferenceSession, batch_mode: BatchMode, max_images_per_call: int | None = None
    ) -> None:
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"expected a model with one input, got {[i.name for i in inputs]}")
        self._session = session
        self._input_name = inputs[0].name
        self.batch_mode = batch_mode
        self.max_images_per_call = 1 if batch_mode == "loop" else max_images_per_call
        device = "cuda" if session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        self.name = f"onnxruntime-{device}"

    @classmethod
    def from_config(cls, config: OnnxRuntimeConfig, model_path: Path) -> OnnxRuntimeBackend:
        providers = _providers(config.device)
        mode, per_call = resolve_batch_mode(config, on_cuda=providers[0] == "CUDAExecutionProvider")
        path = Path(model_path)
        if mode == "dynamic":
            try:
                path = dynamic_batch_model_path(path, config.onnx_cache_dir)
            except BatchRewriteError:
                if config.batch_mode == "dynamic":
                    raise
                log.warning("cannot make %s batch-dynamic; running it image by image", path, exc_info=True)
                mode = "loop"
        options = ort.SessionOptions()
        options.intra_op_num_threads = config.intra_op_threads
        options.inter_op_num_threads = config.inter_op_threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        spinning = "1" if config.allow_spinning else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
        options.add_session_config_entry("session.inter_op.allow_spinning", spinning)
        return cls(ort.InferenceSession(str(path), options, providers=providers), mode, per_call)

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        if len(batch) == 0:
            raise ValueError(f"empty batch {batch.shape}: the caller should skip the call")
        step = self.max_images_per_call or len(batch)
        if step >= len(batch):
            return self._session.run(None, {self._input_name: batch})
        parts = [
            self._session.run(None, {self._input_name: batch[i : i + step]})
            for i in range(0, len(batch), step)
        ]
        return [np.concatenate(outputs) for outputs in zip(*parts, strict=True)]


def _providers(device: Literal["auto", "cpu", "cuda"]) -> list[str]:
    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if device == "cuda" and not has_cuda:
        raise RuntimeError(
            f"device 'cuda' asked for, but onnxruntime {ort.__version__} offers only "
            f"{ort.get_available_providers()} (install onnxruntime-gpu)"
        )
    if device != "cpu" and has_cuda:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]
