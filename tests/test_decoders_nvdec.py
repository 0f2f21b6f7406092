"""NVDEC path: the CPU side (keyframe selection, Annex-B, parameter sets, pooling) runs here with a CPU
stand-in for the GPU session; the real PyNvVideoCodec session is skipped without a GPU."""

from __future__ import annotations

import threading
from pathlib import Path

import av
import numpy as np
import pytest

from cluster.status import CameraState
from decoders.camera_decoder import CameraDecoder
from decoders.config import CameraSpec
from decoders.frame import ModelInput
from decoders.nvdec import (
    AccessUnit,
    GpuFrame,
    KeyframePacketFilter,
    NvdecCameraDecoder,
    NvdecSession,
    SessionPool,
    h264_nal_types,
    h264_parameter_sets,
    nvdec_missing,
)
from tests.helpers.video import make_h264

SPS, PPS, IDR, SLICE, SEI, AUD = 7, 8, 5, 1, 6, 9


class CpuSession:
    """Stands in for an NVDEC session: decodes each Annex-B access unit with FFmpeg's h264 decoder.

    ``stateless`` (pool mode) decodes every unit with a fresh decoder, as a shared session would see
    keyframes from many cameras: it only works if each unit is self-contained."""

    def __init__(self, codec: str, stateless: bool = True) -> None:
        self.codec, self.stateless = codec, stateless
        self.ctx = None if stateless else av.CodecContext.create(codec, "r")
        self.units: list[AccessUnit] = []

    def decode(self, unit: AccessUnit) -> list[GpuFrame]:
        self.units.append(unit)
        packet = av.Packet(unit.data)
        packet.pts = unit.pts
        if self.stateless:
            ctx = av.CodecContext.create(self.codec, "r")
            frames = [*ctx.decode(packet), *ctx.decode(None)]
        else:
            frames = self.ctx.decode(packet)
        return [
            GpuFrame(f.to_ndarray(format="rgb24"), f.pts, unit.time_base, f.width, f.height, unit.keyframe)
            for f in frames
        ]

    def close(self) -> None:
        pass


def filtered(path: Path, keyframes_only: bool = True) -> tuple[list[AccessUnit], KeyframePacketFilter]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packet_filter = KeyframePacketFilter(stream, keyframes_only)
        units = [u for p in container.demux(stream) for u in packet_filter(p)]
    return units, packet_filter


def full_decode_keyframes(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0) if f.key_frame]


@pytest.mark.parametrize(
    ("data", "types"),
    [
        (
            b"\x00\x00\x00\x01\x09\xf0\x00\x00\x00\x01\x67\x42\x00\x00\x01\x68\xce\x00\x00\x01\x65\x88",
            [9, 7, 8, 5],
        ),
        (b"\x00\x00\x01\x41\x9a", [1]),
        (b"", []),
        (b"\x12\x34", []),
    ],
)
def test_h264_nal_types(data, types):
    assert h264_nal_types(data) == types


def test_h264_parameter_sets_keeps_only_sps_pps_with_4_byte_start_codes():
    data = b"\x00\x00\x00\x01\x09\xf0\x00\x00\x01\x67\x42\x11\x00\x00\x00\x01\x68\xce\x00\x00\x01\x65\x88"
    assert h264_parameter_sets(data) == b"\x00\x00\x00\x01\x67\x42\x11\x00\x00\x00\x01\x68\xce"


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".ts", ".h264"])
def test_keyframe_units_are_annexb_self_contained_and_decode_exactly(tmp_path, suffix):
    clip = make_h264(tmp_path / f"k{suffix}", frames=40, gop=10)
    units, packet_filter = filtered(clip)
    assert len(units) == 4 and all(u.keyframe for u in units)
    assert packet_filter.packets_in == 40 and packet_filter.packets_out == 4
    for unit in units:
        assert unit.data.startswith((b"\x00\x00\x00\x01", b"\x00\x00\x01"))  # Annex-B, not length-prefixed
        types = h264_nal_types(unit.data)
        assert {SPS, PPS, IDR} <= set(types) and types.index(SPS) < types.index(IDR)
    # each unit alone, on a fresh decoder, gives exactly the keyframe of a full decode
    session = CpuSession("h264")
    decoded = [session.decode(u)[0].data for u in units]
    reference = full_decode_keyframes(clip)
    assert len(decoded) == len(reference) and all(
        np.array_equal(a, b) for a, b in zip(decoded, reference, strict=True)
    )


def test_parameter_sets_are_prepended_when_an_idr_comes_without_them(tmp_path):
    clip = make_h264(tmp_path / "ps.ts", frames=20, gop=10)
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        packet_filter = KeyframePacketFilter(stream)
        keys = [bytes(p) for p in container.demux(stream) if p.size and p.is_keyframe]
    stripped = b"".join(
        b"\x00\x00\x00\x01" + part
        for part in keys[1].split(b"\x00\x00\x01")[1:]
        if part and part[0] & 0x1F not in (7, 8)
    )
    assert SPS not in h264_nal_types(stripped)
    fixed = packet_filter._with_parameter_sets(stripped)
    assert h264_nal_types(fixed)[:2] == [SPS, PPS] and CpuSession("h264").decode(
        AccessUnit(fixed, 0, None, True)
    )


def test_full_mode_passes_every_packet(tmp_path):
    clip = make_h264(tmp_path / "all.mp4", frames=15, gop=5)
    units, _ = filtered(clip, keyframes_only=False)
    assert len(units) == 15 and sum(u.keyframe for u in units) == 3
    assert {SLICE} & set(h264_nal_types(units[1].data))


def test_unsupported_codec_is_refused(tmp_path):
    path = tmp_path / "m.avi"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mjpeg", rate=5)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuvj420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="bgr24")
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with av.open(str(path)) as container, pytest.raises(ValueError, match="supports h264, hevc"):
        KeyframePacketFilter(container.streams.video[0])


def spec(path: Path, **kw) -> CameraSpec:
    return CameraSpec(camera_id="gpu-1", url=str(path), realtime=False, **kw)


def test_nvdec_camera_keyframes_mode_with_cpu_sessions_matches_cpu_decoder(tmp_path):
    clip = make_h264(tmp_path / "cam.mp4", frames=50, gop=10, size=(320, 240))
    sessions: list[CpuSession] = []

    def factory(codec: str) -> CpuSession:
        sessions.append(CpuSession(codec))
        return sessions[-1]

    pool = SessionPool(factory, size=2)
    cameras = [
        NvdecCameraDecoder(spec(clip, sampling="keyframes"), ModelInput(), keep_full_frame=True, pool=pool)
        for _ in range(3)
    ]
    outputs = [[] for _ in cameras]
    threads = [
        threading.Thread(target=c.run, args=(out.append, threading.Event()))
        for c, out in zip(cameras, outputs, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    cpu_frames: list = []
    CameraDecoder(spec(clip, sampling="keyframes"), ModelInput()).run(cpu_frames.append, threading.Event())
    assert len(sessions) <= 2  # three cameras shared at most two sessions
    assert sum(len(s.units) for s in sessions) == 15  # only keyframes reached the "GPU": 5 per camera
    for camera, frames in zip(cameras, outputs, strict=True):
        health = camera.health()
        assert (
            health.state is CameraState.STOPPED and health.frames_decoded == 5 and health.decode_errors == 0
        )
        assert [f.pts_s for f in frames] == pytest.approx([f.pts_s for f in cpu_frames])
        for gpu_frame, cpu_frame in zip(frames, cpu_frames, strict=True):
            assert gpu_frame.image.shape == (416, 416, 3) and gpu_frame.full_frame.shape == (240, 320, 3)
            assert np.abs(gpu_frame.image.astype(int) - cpu_frame.image.astype(int)).mean() < 2.0


def test_nvdec_camera_fps_mode_uses_one_private_session(tmp_path):
    clip = make_h264(tmp_path / "fps.ts", frames=30, gop=10)
    sessions: list[CpuSession] = []

    def factory(codec: str) -> CpuSession:
        sessions.append(CpuSession(codec, stateless=False))
        return sessions[-1]

    frames: list = []
    camera = NvdecCameraDecoder(spec(clip, sampling="fps", fps=2), ModelInput(), session_factory=factory)
    camera.run(frames.append, threading.Event())
    assert len(sessions) == 1 and len(sessions[0].units) == 30
    assert [f.pts_s for f in frames] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])


@pytest.mark.gpu
@pytest.mark.skipif(nvdec_missing() is not None, reason=f"NVDEC not available here: {nvdec_missing()}")
def test_real_nvdec_keyframes_match_cpu_decode(tmp_path):  # pragma: no cover - needs an NVIDIA GPU
    clip = make_h264(tmp_path / "gpu.mp4", frames=40, gop=10, size=(640, 360))
    units, _ = filtered(clip)
    session = NvdecSession("h264")
    frames = [f for u in units for f in session.decode(u)]
    assert len(frames) == len(units)  # low-latency mode: one picture out per keyframe packet, no lag
    reference = full_decode_keyframes(clip)
    for frame, ref in zip(frames, reference, strict=True):
        data = frame.data.cpu().numpy() if hasattr(frame.data, "cpu") else frame.data
        assert np.abs(data.astype(int) - ref.astype(int)).mean() < 3.0  # NVDEC colour conversion differs
