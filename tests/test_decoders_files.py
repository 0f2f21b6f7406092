"""CameraDecoder on real H.264 files: sampling, keyframes, letterbox, loop, pacing, resolution change."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from cluster.status import CameraState
from decoders.camera_decoder import CameraDecoder
from decoders.config import BackoffPolicy, CameraSpec
from decoders.factory import make_camera_source
from decoders.frame import DecodedFrame, ModelInput
from models.preprocess import letterbox
from tests.helpers.running import RunningDecoder
from tests.helpers.video import keyframe_times, make_h264

VTEST = "opencv_vtest_480x360.avi"  # real footage, H.264 High with B-frames, 10 fps, 795 frames
CARS = "intel_car-detection.mp4"  # real footage, H.264 Baseline, 768x432, 12.5 fps


def spec(url: str | Path, **kw) -> CameraSpec:
    kw.setdefault("realtime", False)
    return CameraSpec(camera_id="cam-1", url=str(url), **kw)


def decode(
    url, model_input: ModelInput = ModelInput(), keep_full: bool = False, limit: int | None = None, **kw
) -> tuple[list[DecodedFrame], CameraDecoder]:
    """Run a decoder to the end of a finite file (or until ``limit`` frames) on this thread."""
    decoder = CameraDecoder(spec(url, **kw), model_input, keep_full_frame=keep_full)
    frames: list[DecodedFrame] = []
    stop = threading.Event()

    def emit(frame: DecodedFrame) -> None:
        frames.append(frame)
        if limit is not None and len(frames) >= limit:
            stop.set()

    decoder.run(emit, stop)
    return frames, decoder


def test_vtest_sampled_at_2fps_by_presentation_time(media):
    frames, decoder = decode(media(VTEST), sampling="fps", fps=2)
    health = decoder.health()
    assert health.state is CameraState.STOPPED
    assert health.frames_decoded == 795 and health.decode_errors == 0
    assert health.frames_sampled == len(frames)
    per_second = Counter(int(f.pts_s) for f in frames)
    full_seconds = range(int(frames[-1].pts_s))
    assert all(per_second[s] == 2 for s in full_seconds), per_second
    gaps = np.diff([f.pts_s for f in frames])
    assert gaps.min() > 0.39 and gaps.max() < 0.61  # 0.5 s apart at 10 fps: 0.4..0.6
    indices = [f.frame_index for f in frames]
    assert indices == sorted(indices) and indices[0] == 0
    assert health.cpu_seconds > 0 and (health.width, health.height) == (480, 360)


@pytest.mark.parametrize("clip", [CARS, "meva_school_G330_annotated.mp4"])
def test_keyframes_mode_yields_exactly_the_keyframes(media, clip):
    path = media(clip)
    frames, decoder = decode(path, sampling="keyframes")
    assert frames and all(f.keyframe for f in frames)
    assert [f.pts_s for f in frames] == pytest.approx(keyframe_times(path))
    assert decoder.health().frames_decoded == len(frames)


def test_keyframes_mode_on_generated_gop(tmp_path):
    clip = make_h264(tmp_path / "gop.mp4", frames=45, gop=15, fps=15)
    frames, _ = decode(clip, sampling="keyframes")
    assert [f.pts_s for f in frames] == pytest.approx([0.0, 1.0, 2.0])


def test_all_mode_emits_every_frame_in_order(tmp_path):
    clip = make_h264(tmp_path / "all.ts", frames=30, bframes=2)
    frames, decoder = decode(clip, sampling="all")
    assert [f.frame_index for f in frames] == list(range(30))
    assert np.all(np.diff([f.pts_s for f in frames]) > 0)
    assert decoder.health().frames_sampled == 30


def test_letterbox_geometry_scale_and_pixels(media):
    frames, _ = decode(media(VTEST), keep_full=True, sampling="all", limit=3)
    frame = frames[-1]
    assert frame.image.shape == (416, 416, 3) and frame.image.dtype == np.uint8
    assert (frame.width, frame.height) == (480, 360) and frame.scale == pytest.approx(416 / 480)
    assert frame.full_frame is not None and frame.full_frame.shape == (360, 480, 3)
    assert np.all(frame.image[312:] == 114)  # 360 * 416/480 = 312 rows of picture, then fill
    reference, scale = letterbox(frame.full_frame, 416, 416)
    assert scale == pytest.approx(frame.scale)
    assert np.abs(reference.astype(int) - frame.image.astype(int)).mean() < 3.0  # AREA vs LINEAR


def test_rgb_model_input_and_no_full_frame_by_default(media):
    bgr, _ = decode(media(CARS), sampling="all", limit=2)
    rgb, _ = decode(media(CARS), ModelInput(320, 320, color="rgb", fill=0), sampling="all", limit=2)
    assert bgr[0].full_frame is None
    assert rgb[0].image.shape == (320, 320, 3) and rgb[0].scale == pytest.approx(320 / 768)
    assert np.all(rgb[0].image[180:] == 0)  # 432 * 320/768 = 180 rows
    small_bgr = decode(media(CARS), ModelInput(320, 320), sampling="all", limit=1)[0][0].image
    assert np.array_equal(rgb[0].image[:180], small_bgr[:180, :, ::-1])


def test_loop_restarts_frame_index_and_stays_online(tmp_path):
    clip = make_h264(tmp_path / "loop.mp4", frames=12)
    frames, decoder = decode(clip, sampling="all", loop=True, limit=30)
    assert [f.frame_index for f in frames] == [*range(12), *range(12), *range(6)]
    health = decoder.health()
    assert health.reconnects == 0 and health.state is CameraState.STOPPED
    states = [s for s, _ in health.transitions]
    assert states == [CameraState.CONNECTING, CameraState.ONLINE, CameraState.STOPPED]


def test_file_url_and_raw_h264_without_timestamps(tmp_path):
    clip = make_h264(tmp_path / "raw clip.h264", frames=50)
    frames, _ = decode(clip.as_uri(), sampling="fps", fps=5)  # file:///.../raw%20clip.h264
    # no timestamps in a raw stream: frames are timed by the stream rate FFmpeg reports (25 fps)
    assert len(frames) == 10 and frames[1].pts_s == pytest.approx(0.2)


def test_realtime_pacing_is_roughly_real_time(tmp_path):
    clip = make_h264(tmp_path / "rt.mp4", frames=16, fps=10)  # 1.5 s from first to last frame
    start = time.monotonic()
    frames, _ = decode(clip, sampling="all", realtime=True)
    elapsed = time.monotonic() - start
    assert 1.45 < elapsed < 4.0  # never faster than real time; slower only on an overloaded machine
    lateness = [(f.capture_ts - frames[0].capture_ts) - f.pts_s for f in frames]
    assert min(lateness) > -0.02  # no frame released early
    assert sorted(lateness)[len(lateness) // 2] < 0.1  # and typically on time


def test_realtime_loop_keeps_the_frame_interval_across_the_restart(tmp_path):
    clip = make_h264(tmp_path / "rt-loop.mp4", frames=5, fps=10)
    clock = FakeClock()
    decoder = CameraDecoder(spec(clip, sampling="all", realtime=True, loop=True), ModelInput(), clock=clock)
    frames: list[DecodedFrame] = []
    stop = threading.Event()

    def emit(frame: DecodedFrame) -> None:
        frames.append(frame)
        if len(frames) == 12:
            stop.set()

    decoder.run(emit, stop)
    released = [f.capture_ts - frames[0].capture_ts for f in frames]
    assert released == pytest.approx([i / 10 for i in range(12)])  # 0.1 s between passes too
    assert [f.frame_index for f in frames] == [0, 1, 2, 3, 4] * 2 + [0, 1]


def test_resolution_change_mid_stream(tmp_path):
    first = make_h264(tmp_path / "a.h264", frames=10, size=(160, 120))
    second = make_h264(tmp_path / "b.h264", frames=10, size=(320, 180))
    joined = tmp_path / "joined.h264"
    joined.write_bytes(first.read_bytes() + second.read_bytes())
    frames, decoder = decode(joined, sampling="all")
    sizes = [(f.width, f.height, round(f.scale, 4)) for f in frames]
    assert sizes == [(160, 120, 2.6)] * 10 + [(320, 180, 1.3)] * 10
    assert np.all(frames[-1].image[234:] == 114) and not np.all(frames[-1].image[:234] == 114)
    assert (decoder.health().width, decoder.health().height) == (320, 180)


def test_missing_file_backs_off_then_fails_with_redacted_error(tmp_path):
    missing = tmp_path / "nope.mp4"
    policy = BackoffPolicy(initial_s=0.01, max_s=0.02, max_attempts=3)
    frames, decoder = decode(missing, reconnect=policy)
    health = decoder.health()
    assert frames == [] and health.state is CameraState.FAILED
    assert health.reconnects == 2 and "No such file" in (health.last_error or "")
    assert [s for s, _ in health.transitions].count(CameraState.BACKOFF) == 2


def test_disabled_camera_does_not_decode(media):
    frames, decoder = decode(media(VTEST), enabled=False)
    assert frames == [] and decoder.health().state is CameraState.DISABLED


def test_stop_event_stops_a_looping_realtime_camera_promptly(tmp_path):
    clip = make_h264(tmp_path / "live.mp4", frames=20)
    decoder = CameraDecoder(spec(clip, realtime=True, loop=True, sampling="all"), ModelInput())
    with RunningDecoder(decoder) as run:
        run.wait_for(lambda h: h.state is CameraState.ONLINE and h.frames_decoded > 2, 10, "online")
        run.stop.set()
        run.thread.join(timeout=2)
        assert not run.thread.is_alive() and decoder.health().state is CameraState.STOPPED


def test_emit_errors_do_not_kill_the_camera(tmp_path):
    clip = make_h264(tmp_path / "e.mp4", frames=10)
    decoder = CameraDecoder(spec(clip, sampling="all"), ModelInput())

    def emit(frame: DecodedFrame) -> None:
        raise RuntimeError("slot closed")

    decoder.run(emit, threading.Event())
    health = decoder.health()
    assert health.state is CameraState.STOPPED and health.frames_decoded == 10
    assert "emit failed" in (health.last_error or "")


def test_factory_dispatch(tmp_path):
    clip = make_h264(tmp_path / "f.mp4", frames=2)
    assert isinstance(make_camera_source(spec(clip), ModelInput()), CameraDecoder)
    with pytest.raises(ValueError, match="unknown decoder backend"):
        make_camera_source(spec(clip), ModelInput(), backend="quantum")


class FakeClock:
    """A clock that only moves when the decoder waits: pacing and backoff become exact and instant."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += max(0.0, seconds)
        return stop.is_set()


def test_reconnect_delays_follow_the_backoff_policy(tmp_path):
    clock = FakeClock()
    policy = BackoffPolicy(initial_s=1, max_s=4, multiplier=2, jitter=0.5, max_attempts=6)
    draws = iter([0.5, 0.5, 0.5, 0.5, 1.0, 0.0])  # no jitter, then +50 % (capped), then -50 %
    decoder = CameraDecoder(
        spec(tmp_path / "absent.mp4", reconnect=policy), ModelInput(), clock=clock, rng=lambda: next(draws)
    )
    decoder.run(lambda f: None, threading.Event())
    assert clock.waits == pytest.approx([1, 2, 4, 4, 4])
    health = decoder.health()
    assert health.state is CameraState.FAILED and health.reconnects == 5


def test_realtime_pacing_with_an_injected_clock(tmp_path):
    clip = make_h264(tmp_path / "paced.mp4", frames=20, fps=10)
    clock = FakeClock()
    frames: list[DecodedFrame] = []
    decoder = CameraDecoder(spec(clip, sampling="fps", fps=2, realtime=True), ModelInput(), clock=clock)
    decoder.run(frames.append, threading.Event())
    assert [f.capture_ts - frames[0].capture_ts for f in frames] == pytest.approx([0.0, 0.5, 1.0, 1.5])
    assert sum(clock.waits) == pytest.approx(1.9)  # the last frame is at 1.9 s
