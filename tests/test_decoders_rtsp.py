"""CameraDecoder against a real RTSP server (GStreamer, system python3): kill, freeze, credentials."""

from __future__ import annotations

import pytest

from cluster.status import CameraState
from decoders.camera_decoder import CameraDecoder
from decoders.config import BackoffPolicy, CameraSpec
from decoders.frame import ModelInput
from tests.helpers.rtsp_server import RtspServerProcess, gstreamer_missing
from tests.helpers.running import RunningDecoder
from tests.helpers.video import make_h264

_MISSING = gstreamer_missing()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(_MISSING is not None, reason=str(_MISSING))]

FAST_RETRY = BackoffPolicy(initial_s=0.2, max_s=0.5, jitter=0.1)


def rtsp_spec(url: str, **kw) -> CameraSpec:
    kw.setdefault("reconnect", FAST_RETRY)
    kw.setdefault("sampling", "all")
    return CameraSpec(camera_id="rtsp-1", url=url, **kw)


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_rtsp_decodes_live_stream(transport):
    with (
        RtspServerProcess() as server,
        RunningDecoder(CameraDecoder(rtsp_spec(server.url(), rtsp_transport=transport), ModelInput())) as run,
    ):
        health = run.wait_for(lambda h: h.frames_decoded >= 15, 15, "15 frames")
        assert health.state is CameraState.ONLINE and (health.width, health.height) == (320, 240)
        assert run.frames[0].image.shape == (416, 416, 3) and run.frames[0].scale == pytest.approx(1.3)
        assert health.cpu_seconds > 0 and health.codec == "h264"


def test_rtsp_serves_a_real_mp4_in_a_loop(tmp_path):
    clip = make_h264(tmp_path / "loop.mp4", frames=10, size=(320, 240), fps=10, gop=5)  # 1 s
    with (
        RtspServerProcess(file=clip) as server,
        RunningDecoder(CameraDecoder(rtsp_spec(server.url()), ModelInput())) as run,
    ):
        run.wait_for(lambda h: h.frames_decoded >= 25, 15, "25 frames: more than two passes of the clip")
        assert run.health().reconnects == 0


def test_server_killed_goes_backoff_then_online_after_restart():
    server = RtspServerProcess().start()
    try:
        with RunningDecoder(CameraDecoder(rtsp_spec(server.url()), ModelInput())) as run:
            run.wait_for(lambda h: h.frames_decoded >= 5, 15, "frames")
            mark = len(run.health().transitions)
            server.kill()
            run.wait_state(CameraState.BACKOFF, 10, after=mark)
            decoded = run.health().frames_decoded
            server = RtspServerProcess(port=server.port).start()  # same port
            health = run.wait_for(
                lambda h: h.state is CameraState.ONLINE and h.frames_decoded > decoded + 5, 20, "back online"
            )
            assert health.reconnects >= 1
            assert "ended" in (health.last_error or "") or "refused" in (health.last_error or "").lower()
    finally:
        server.kill()


def test_frozen_server_stalls_then_reconnects():
    with RtspServerProcess() as server:
        spec = rtsp_spec(server.url(), stall_timeout_s=1.5, read_timeout_s=1.0, open_timeout_s=2.0)
        with RunningDecoder(CameraDecoder(spec, ModelInput())) as run:
            run.wait_for(lambda h: h.frames_decoded >= 5, 15, "frames")
            mark = len(run.health().transitions)
            server.freeze()  # connection stays open, nothing is sent
            run.wait_state(CameraState.STALLED, 6, after=mark)
            run.wait_state(CameraState.BACKOFF, 4, after=mark)
            run.wait_state(CameraState.CONNECTING, 4, after=mark)
            server.resume()
            decoded = run.health().frames_decoded
            health = run.wait_for(
                lambda h: h.state is CameraState.ONLINE and h.frames_decoded > decoded, 20, "online again"
            )
            assert health.reconnects >= 1
            print(health)


def test_wrong_path_with_credentials_is_redacted(caplog):
    with RtspServerProcess() as server:
        url = server.url(userinfo="admin:hunter2@").replace("/cam1", "/nope")
        decoder = CameraDecoder(
            rtsp_spec(url, reconnect=BackoffPolicy(initial_s=0.05, max_attempts=2)), ModelInput()
        )
        with RunningDecoder(decoder) as run:
            health = run.wait_for(lambda h: h.state is CameraState.FAILED, 20, "failed")
    assert health.last_error and "hunter2" not in health.last_error and "admin" not in health.last_error
    assert "***@127.0.0.1" in health.last_error or "404" in health.last_error
    assert "hunter2" not in caplog.text and "hunter2" not in repr(health)
    print(health.last_error)
