"""The one place that decides which decoder serves a camera."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from decoders.camera_decoder import CameraDecoder
from decoders.config import CameraSpec
from decoders.frame import ModelInput

if TYPE_CHECKING:
    from decoders.nvdec import NvdecCameraDecoder
    from decoders.simulated import SimulatedCamera

DecoderBackend = Literal["cpu", "nvdec"]


def make_camera_source(
    spec: CameraSpec,
    model_input: ModelInput,
    keep_full_frame: bool = False,
    *,
    backend: DecoderBackend = "cpu",
) -> CameraDecoder | SimulatedCamera | NvdecCameraDecoder:
    """``sim://`` -> ``SimulatedCamera``; otherwise ``CameraDecoder`` (PyAV on the CPU), or with
    ``backend="nvdec"`` the NVDEC decoder (needs PyNvVideoCodec and an NVIDIA GPU). All share
    ``run(emit, stop)`` and ``health()``."""
    if spec.is_simulated:
        # lazy: written separately, not needed for real cameras
        from decoders.simulated import SimulatedCamera

        return SimulatedCamera(spec, model_input, keep_full_frame=keep_full_frame)
    if backend == "nvdec":
        from decoders.nvdec import NvdecCameraDecoder  # lazy: PyNvVideoCodec only when asked

        return NvdecCameraDecoder(spec, model_input, keep_full_frame=keep_full_frame)
    if backend != "cpu":
        raise ValueError(f"unknown decoder backend {backend!r}; valid: cpu, nvdec")
    return CameraDecoder(spec, model_input, keep_full_frame=keep_full_frame)
