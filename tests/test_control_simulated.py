"""SimulatedCamera: the decoder contract (run/health), real-time pacing, and its simulated label."""

from __future__ import annotations

import threading
import time
from dataclasses import fields

import numpy as np
import pytest

from cluster.status import CameraState
from decoders.config import CameraSpec
from decoders.factory import make_camera_source
from decoders.frame import DecodedFrame, ModelInput
from decoders.health import DecoderHealth
from decoders.simulated import SimulatedCamera

MODEL_INPUT = ModelInput(width=416, height=416)


def run_for(camera: SimulatedCamera, seconds: float) -> list[DecodedFrame]:
    frames: list[DecodedFrame] = []
    stop = threading.Event()
    thread = threading.Thread(target=camera.run, args=(frames.append, stop))
    thread.start()
    time.sleep(seconds)
    stop.set()
    thread.join(2)
    assert not thread.is_alive(), "run() must return promptly after stop"
    return frames


@pytest.mark.parametrize(
    ("url", "sampling", "fps", "expected_rate"),
    [
        ("sim://a", "fps", 10.0, 10.0),
        ("sim://a?gop_s=0.25", "keyframes", 2.0, 4.0),
        ("sim://a?source_fps=20", "all", 2.0, 20.0),
        ("sim://a?source_fps=5", "fps", 30.0, 5.0),  # cannot sample faster than the source
    ],
)
def test_paced_in_real_time(url, sampling, fps, expected_rate):
    camera = SimulatedCamera(CameraSpec(camera_id="a", url=url, sampling=sampling, fps=fps), MODEL_INPUT)
    assert camera.rate == expected_rate
    frames = run_for(camera, 1.0)
    assert abs(len(frames) - expected_rate) <= max(1.5, 0.2 * expected_rate)
    pts = [f.pts_s for f in frames]
    assert pts == sorted(pts) and len(set(pts)) == len(pts)


def test_frames_and_health_match_the_decoder_contract():
    spec = CameraSpec(camera_id="cam-7", url="sim://cam-7?width=1280&height=720&cpu_ms_per_frame=5", fps=20)
    camera = make_camera_source(spec, MODEL_INPUT, keep_full_frame=True)
    assert isinstance(camera, SimulatedCamera) and camera.simulated
    assert camera.health().state is CameraState.CONNECTING
    frames = run_for(camera, 0.5)
    frame = frames[-1]
    assert frame.image.shape == (416, 416, 3) and frame.image.dtype == np.uint8
    assert frame.full_frame is not None and frame.full_frame.shape == (720, 1280, 3)
    assert (frame.width, frame.height) == (1280, 720) and frame.scale == pytest.approx(416 / 1280)
    assert not np.array_equal(frames[0].image, frames[1].image)  # something moves
    health = camera.health()
    assert isinstance(health, DecoderHealth) and health.codec == "simulated"
    assert health.state is CameraState.STOPPED and health.frames_decoded == len(frames)
    assert health.cpu_seconds >= 0.004 * len(frames)  # the burnt CPU is what gets measured as cost
    assert {f.name for f in fields(DecoderHealth)} >= {
        "state",
        "last_error",
        "frames_decoded",
        "frames_sampled",
        "decode_errors",
        "reconnects",
        "cpu_seconds",
        "decoded_fps",
        "width",
        "height",
    }


def test_disabled_and_invalid_cameras_do_not_run():
    disabled = SimulatedCamera(CameraSpec(camera_id="d", url="sim://d", enabled=False), MODEL_INPUT)
    assert run_for(disabled, 0.1) == [] and disabled.health().state is CameraState.DISABLED
    broken = SimulatedCamera(CameraSpec(camera_id="b", url="sim://b?width=nope"), MODEL_INPUT)
    assert run_for(broken, 0.1) == []
    assert broken.health().state is CameraState.FAILED and "invalid sim://" in broken.health().last_error


def test_emit_errors_never_escape_run():
    camera = SimulatedCamera(CameraSpec(camera_id="e", url="sim://e", fps=50), MODEL_INPUT)

    def emit(frame: DecodedFrame) -> None:
        raise RuntimeError("group bug")

    camera.run(emit, threading.Event())  # returns instead of raising
    assert camera.health().state is CameraState.FAILED and "group bug" in camera.health().last_error
