"""``run_tail`` against a real valkey-server, printing into a recording console."""

from __future__ import annotations

import io
import threading
import time

import redis
from rich.console import Console

from cluster.status import CameraState, CameraStatus
from streams import StreamLayout, StreamWriter
from streams.samples import synthetic_batch, synthetic_message
from streams.tail import run_tail


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=240, color_system=None), out


def test_tail_all_shards_prints_the_newest_in_order(redis_url):
    with StreamWriter.from_url(redis_url) as writer:
        for seq in range(10):  # one write per seq: written order is seq order across cameras
            writer.write(synthetic_batch(cameras=3, per_camera=1, first_seq=seq))
    console, out = _console()
    assert run_tail(redis_url, follow=False, count=6, console=console) == 6
    lines = out.getvalue().splitlines()
    assert [line.split()[2] for line in lines] == ["#8"] * 3 + ["#9"] * 3
    assert all(
        "det" in line and "yolox_nano/onnxruntime-cpu" in line and "[simulated]" in line for line in lines
    )


def test_tail_one_camera_shows_state_then_follows(redis_url):
    with StreamWriter.from_url(redis_url) as writer:
        writer.write([synthetic_message("gate-3", s) for s in range(3)] + [synthetic_message("other", 0)])
        writer.write_states(
            [CameraStatus(camera_id="gate-3", url="rtsp://h/x", state=CameraState.ONLINE, frames_decoded=12)]
        )
        console, out = _console()
        stop = threading.Event()
        printed: list[int] = []
        thread = threading.Thread(
            target=lambda: printed.append(run_tail(redis_url, "gate-3", count=2, console=console, stop=stop))
        )
        thread.start()
        deadline = time.monotonic() + 5
        while out.getvalue().count("\n") < 3 and time.monotonic() < deadline:  # state + 2 recent lines
            time.sleep(0.02)
        writer.write([synthetic_message("gate-3", 3), synthetic_message("other", 1)])
        while "#3 " not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.02)
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive() and printed == [3]
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("gate-3 online") and "decoded=12" in lines[0]
    assert [line.split()[2] for line in lines[1:]] == ["#1", "#2", "#3"]
    assert all(" gate-3 " in line for line in lines[1:])


def test_tail_surfaces_undecodable_entries(redis_url):
    client = redis.Redis.from_url(redis_url)
    client.xadd(StreamLayout().shard_key(0), {"v": 9, "kind": "detections", "camera_id": "x", "json": "{}"})
    console, out = _console()
    assert run_tail(redis_url, follow=False, console=console) == 1
    assert "schema version '9' is not supported" in out.getvalue()


def test_tail_of_an_empty_database(redis_url):
    console, out = _console()
    assert run_tail(redis_url, "cam-9", follow=False, console=console) == 0
    assert "cam-9: no state reported" in out.getvalue()
