"""NVDEC decoding (PyNvVideoCodec) behind the ``CameraDecoder`` interface: ``run(emit, stop)``, ``health()``.

The CPU still demuxes (PyAV, cheap: DESIGN measures 0.35-0.75 ms of CPU per GOP); only the decode moves
to the GPU. What is sent there is decided here, on the CPU, and is tested without a GPU:

* **Keyframes mode sends keyframe packets only.** Non-key packets are dropped right after demux; each
  keyframe goes through ``h264_mp4toannexb`` / ``hevc_mp4toannexb`` (PyAV ``BitStreamFilterContext``),
  which turns MP4/MKV length-prefixed NAL units into Annex-B and puts SPS/PPS before every IDR. Streams
  that are Annex-B already (RTSP, MPEG-TS, raw .h264) pass through; if an IDR arrives without its
  parameter sets, the last ones seen (or the SDP/extradata ones) are prepended. Each access unit is
  then self-contained, so **any** decoder session can decode it: keyframes of all cameras share a small
  pool of sessions (DESIGN: 8-16 sessions saturate the 7 NVDEC engines of an H100; more lowers
  throughput, -22 % at 64), instead of one session per camera.
* **Low latency**: ``latency=DisplayDecodeLatencyType.LOW`` and ``decode_flag=ENDOFPICTURE`` on every
  packet, so a frame comes out for the packet that carried it. In the default mode each output lags
  two packets: about 4 s per camera at one keyframe per 2 s.
* ``fps`` / ``all`` modes need every packet decoded in order by one session: one private session per
  camera connection (the ~167 cameras/H100 full-rate ceiling in DESIGN applies).

Letterboxing runs on the GPU when PyTorch is importable (``area`` interpolation, as on the CPU path),
so only the 416x416 input crosses PCIe; otherwise the frame is copied to the host and resized with
OpenCV. The GPU part cannot run on the dev machine and is exercised with the same tests by injecting a
CPU session (``session_factory``); ``tests/test_decoders_nvdec.py`` skips the real one with the reason.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

import av
import cv2
import numpy as np

from decoders.camera_decoder import CameraDecoder
from decoders.clock import Clock
from decoders.config import CameraSpec, SamplingMode
from decoders.frame import ModelInput
from models.preprocess import letterbox_geometry, paste_top_left

H264_IDR, H264_SEI, H264_SPS, H264_PPS, H264_AUD = 5, 6, 7, 8, 9
_START3 = b"\x00\x00\x01"
SUPPORTED_CODECS = ("h264", "hevc")


def _h264_nal_units(data: bytes) -> list[tuple[int, bytes]]:
    """``[(nal_type, payload), ...]`` of an Annex-B buffer (3- or 4-byte start codes)."""
    starts = []
    at = data.find(_START3)
    while at != -1:
        starts.append(at)
        at = data.find(_START3, at + 3)
    units = []
    for i, begin in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(data)
        payload = data[begin + 3 : end].rstrip(b"\x00") if i + 1 < len(starts) else data[begin + 3 : end]
        if payload:
            units.append((payload[0] & 0x1F, payload))
    return units


def h264_nal_types(data: bytes) -> list[int]:
    """NAL unit types of an Annex-B H.264 buffer, in order (``[9, 7, 8, 5]`` for AUD SPS PPS IDR)."""
    return [nal_type for nal_type, _ in _h264_nal_units(data)]


def h264_parameter_sets(data: bytes) -> bytes:
    """The SPS and PPS NAL units of an Annex-B buffer, each behind a 4-byte start code."""
    return b"".join(
        b"\x00\x00\x00\x01" + payload
        for nal_type, payload in _h264_nal_units(data)
        if nal_type in (H264_SPS, H264_PPS)
    )


def is_annexb(extradata: bytes | None) -> bool:
    return not extradata or extradata.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01"))


@dataclass(frozen=True)
class AccessUnit:
    """One Annex-B access unit for the GPU decoder."""

    data: bytes
    pts: int | None
    time_base: Fraction | None
    keyframe: bool


class KeyframePacketFilter:
    """Demuxed PyAV packets -> Annex-B access units; with ``keyframes_only`` drops non-key packets.

    Counters (``packets_in``, ``packets_out``, ``bytes_out``) show what reaches the GPU.
    """

    def __init__(self, stream: av.video.stream.VideoStream, keyframes_only: bool = True) -> None:
        codec = stream.codec_context.name
        if codec not in SUPPORTED_CODECS:
            raise ValueError(f"NVDEC path supports {', '.join(SUPPORTED_CODECS)}, not {codec!r}")
        self.codec = codec
        self.keyframes_only = keyframes_only
        extradata = stream.codec_context.extradata
        self._bsf = (
            None if is_annexb(extradata) else av.BitStreamFilterContext(f"{codec}_mp4toannexb", stream)
        )
        # Annex-B extradata (SDP sprop-parameter-sets, MPEG-TS) holds the parameter sets themselves
        self._param_sets = (
            h264_parameter_sets(extradata) if codec == "h264" and extradata and not self._bsf else b""
        )
        self.packets_in = self.packets_out = self.bytes_out = 0

    def __call__(self, packet: av.Packet) -> list[AccessUnit]:
        if not packet.size:
            return []
        self.packets_in += 1
        key, pts, time_base = packet.is_keyframe, packet.pts, packet.time_base  # read before filtering
        if self.keyframes_only and not key:
            if self.codec == "h264" and self._bsf is None:
                self._remember_parameter_sets(packet)
            return []
        out = self._bsf.filter(packet) if self._bsf is not None else [packet]
        units = []
        for filtered in out:
            data = bytes(filtered)
            if self.codec == "h264" and key and self._bsf is None:
                data = self._with_parameter_sets(data)
            units.append(AccessUnit(data, pts, time_base, key))
            self.packets_out += 1
            self.bytes_out += len(data)
        return units

    def _remember_parameter_sets(self, packet: av.Packet) -> None:
        """A non-key packet that starts with SPS/PPS (some RTSP cameras send them on their own)."""
        head = h264_nal_types(memoryview(packet)[:8].tobytes())
        if head and head[0] in (H264_SPS, H264_PPS, H264_AUD):
            data = bytes(packet)
            if H264_SPS in h264_nal_types(data):
                self._param_sets = h264_parameter_sets(data)

    def _with_parameter_sets(self, data: bytes) -> bytes:
        types = h264_nal_types(data)
        if H264_SPS in types:
            self._param_sets = h264_parameter_sets(data)
            return data
        return self._param_sets + data if self._param_sets else data


# ---------------------------------------------------------------------- decoder sessions
@dataclass
class GpuFrame:
    """A decoded picture as ``CameraDecoder._on_frame`` reads it; ``data`` is backend-specific."""

    data: Any  # torch tensor on the GPU, or a host numpy array (H, W, 3) RGB
    pts: int | None
    time_base: Fraction | None
    width: int
    height: int
    key_frame: bool
    dts: int | None = None
    is_corrupt: bool = False


class DecoderSession(Protocol):
    def decode(self, unit: AccessUnit) -> list[GpuFrame]: ...

    def close(self) -> None: ...


def nvdec_missing() -> str | None:
    """None if PyNvVideoCodec and a CUDA device are usable here, else the reason."""
    try:
        import PyNvVideoCodec  # noqa: F401
    except Exception as exc:  # ImportError, or a CUDA driver error raised at import
        hint = "pip install 'cctv-analytics[gpu-decode]' on a machine with an NVIDIA GPU"
        return f"PyNvVideoCodec unavailable ({type(exc).__name__}: {exc}); {hint}"
    try:
        import torch

        if not torch.cuda.is_available():
            return "no CUDA device"
    except ImportError:
        pass
    return None


class NvdecSession:
    """One PyNvVideoCodec decoder in low-latency mode, RGB output in device memory."""

    def __init__(self, codec: str, gpu_id: int = 0, max_size: tuple[int, int] = (3840, 2160)) -> None:
        import PyNvVideoCodec as nvc  # lazy: optional dependency, GPU only

        self._nvc = nvc
        self._dec = nvc.CreateDecoder(
            gpuid=gpu_id,
            codec=nvc.cudaVideoCodec.H264 if codec == "h264" else nvc.cudaVideoCodec.HEVC,
            usedevicememory=True,
            maxwidth=max_size[0],
            maxheight=max_size[1],
            outputColorType=nvc.OutputColorType.RGB,
            latency=nvc.DisplayDecodeLatencyType.LOW,
        )

    def decode(self, unit: AccessUnit) -> list[GpuFrame]:
        nvc = self._nvc
        buf = np.frombuffer(unit.data, np.uint8)
        packet = nvc.PacketData()
        packet.bsl_data = buf.ctypes.data
        packet.bsl = buf.size
        packet.pts = unit.pts if unit.pts is not None else 0
        packet.decode_flag = nvc.VideoPacketFlag.ENDOFPICTURE  # one whole picture: decode it now
        frames = []
        for decoded in self._dec.Decode(packet):
            data = _device_rgb(decoded)
            height, width = data.shape[:2]
            pts = decoded.getPTS()
            frames.append(GpuFrame(data, pts, unit.time_base, width, height, unit.keyframe))
        return frames

    def close(self) -> None:
        self._dec = None


def _device_rgb(decoded: Any) -> Any:
    """A decoded RGB picture as an (H, W, 3) uint8 torch CUDA tensor (zero-copy), or a host array."""
    try:
        import torch

        return torch.from_dlpack(decoded)
    except ImportError:
        return np.from_dlpack(decoded)  # host-memory frames only; device frames need torch


class SessionPool:
    """A few decoder sessions shared by all keyframes-mode cameras of a process (thread-safe)."""

    def __init__(self, factory: Callable[[str], DecoderSession], size: int = 8) -> None:
        self._factory = factory
        self._size = size
        self._free: dict[str, queue.Queue[DecoderSession]] = {}
        self._created: dict[str, int] = {}
        self._lock = threading.Lock()

    def decode(self, codec: str, unit: AccessUnit) -> list[GpuFrame]:
        session = self._acquire(codec)
        try:
            return session.decode(unit)
        finally:
            self._free[codec].put(session)

    def _acquire(self, codec: str) -> DecoderSession:
        with self._lock:
            free = self._free.setdefault(codec, queue.Queue())
            if free.empty() and self._created.get(codec, 0) < self._size:
                self._created[codec] = self._created.get(codec, 0) + 1
                return self._factory(codec)
        return free.get()


_default_pool: SessionPool | None = None
_default_pool_lock = threading.Lock()


def default_pool() -> SessionPool:
    global _default_pool
    with _default_pool_lock:
        if _default_pool is None:
            _default_pool = SessionPool(NvdecSession, size=8)
        return _default_pool


# ---------------------------------------------------------------------- the camera
class NvdecCameraDecoder(CameraDecoder):
    """``CameraDecoder`` with the decode on NVDEC; same states, health, sampling, pacing, reconnects."""

    def __init__(
        self,
        spec: CameraSpec,
        model_input: ModelInput,
        keep_full_frame: bool = False,
        clock: Clock | None = None,
        *,
        rng: Callable[[], float] | None = None,
        session_factory: Callable[[str], DecoderSession] | None = None,
        pool: SessionPool | None = None,
    ) -> None:
        super().__init__(spec, model_input, keep_full_frame, clock, rng=rng)
        self._session_factory = session_factory or NvdecSession
        self._pool = pool
        self._filter: KeyframePacketFilter | None = None
        self._gpu_session: DecoderSession | None = None
        self._letterbox = self._letterbox_gpu_frame
        self._keep_full = keep_full_frame

    def run(self, emit, stop: threading.Event) -> None:
        try:
            super().run(emit, stop)
        finally:
            if self._gpu_session is not None:
                self._gpu_session.close()
                self._gpu_session = None

    def _start_stream(self, stream) -> None:
        self._keyframes = self.spec.sampling is SamplingMode.KEYFRAMES
        self._filter = KeyframePacketFilter(stream, keyframes_only=self._keyframes)
        if self._gpu_session is not None:  # a new connection: start the private session afresh
            self._gpu_session.close()
            self._gpu_session = None
        if self._keyframes and self._pool is None:  # real NVDEC: the process-wide pool; else a private one
            is_real = self._session_factory is NvdecSession
            self._pool = default_pool() if is_real else SessionPool(self._session_factory, size=1)

    def _decode_packet(self, stream, packet) -> Iterable | None:
        assert self._filter is not None
        units = self._filter(packet)
        if not units:
            return None
        frames: list[GpuFrame] = []
        for unit in units:
            try:
                if self._keyframes:
                    assert self._pool is not None
                    frames += self._pool.decode(self._filter.codec, unit)
                else:
                    if self._gpu_session is None:
                        self._gpu_session = self._session_factory(self._filter.codec)
                    frames += self._gpu_session.decode(unit)
            except Exception as exc:  # a bad access unit must not end the connection
                self._decode_error(exc)
        return frames

    def _letterbox_gpu_frame(self, frame: GpuFrame) -> tuple[np.ndarray, float, np.ndarray | None]:
        mi = self.model_input
        g = letterbox_geometry(frame.width, frame.height, mi.width, mi.height)
        data = frame.data
        if isinstance(data, np.ndarray):  # host RGB
            small = cv2.resize(data, (g.resized_width, g.resized_height), interpolation=cv2.INTER_AREA)
            small = small if mi.color == "rgb" else small[..., ::-1]
            full = np.ascontiguousarray(data[..., ::-1]) if self._keep_full else None
            return paste_top_left(small, g, mi.fill), g.scale, full
        import torch
        import torch.nn.functional as F  # noqa: N812

        x = data.permute(2, 0, 1).unsqueeze(0).float()
        small = F.interpolate(x, size=(g.resized_height, g.resized_width), mode="area")
        small = small.round_().clamp_(0, 255).to(torch.uint8)[0].permute(1, 2, 0)
        if mi.color != "rgb":
            small = small.flip(-1)
        canvas = torch.full((mi.height, mi.width, 3), mi.fill, dtype=torch.uint8, device=data.device)
        canvas[: g.resized_height, : g.resized_width] = small
        full = data.flip(-1).cpu().numpy() if self._keep_full else None
        return canvas.cpu().numpy(), g.scale, full
