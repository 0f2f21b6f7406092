"""Hundreds of damaged H.264 streams: the decoder must never crash or hang, and must count errors."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from cluster.status import CameraState
from decoders.camera_decoder import CameraDecoder
from decoders.config import BackoffPolicy, CameraSpec
from decoders.frame import ModelInput
from tests.helpers.video import make_h264

MUTATIONS_PER_CONTAINER = 100  # x 3 containers = 300 streams
ONE_TRY = BackoffPolicy(initial_s=0.01, max_attempts=1)  # an unreadable file fails at once


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One deterministic mutation: byte flips, truncation, inserted garbage, zeroed or shuffled blocks."""
    buf = bytearray(data)
    kind = rng.choice(["flip", "flip", "truncate", "garbage", "zero", "swap", "repeat"])
    if kind == "flip":
        for _ in range(rng.randint(1, 40)):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        del buf[rng.randrange(1, len(buf)) :]
    elif kind == "garbage":
        at = rng.randrange(len(buf))
        buf[at:at] = rng.randbytes(rng.randint(1, 2000))
    elif kind == "zero":
        at = rng.randrange(len(buf))
        buf[at : at + rng.randint(1, 1000)] = bytes(min(len(buf) - at, 1000))
    elif kind == "swap":
        a, b = sorted(rng.sample(range(len(buf)), 2))
        n = min(rng.randint(1, 500), b - a)
        buf[a : a + n], buf[b : b + n] = buf[b : b + n], buf[a : a + n]
    else:  # repeat a block (duplicated NAL units / packets)
        at = rng.randrange(len(buf))
        buf[at:at] = buf[at : at + rng.randint(1, 3000)]
    return kind, bytes(buf)


def run_bounded(path: Path, limit_s: float = 10.0) -> tuple[CameraDecoder, list, float]:
    spec = CameraSpec(
        camera_id="bad", url=str(path), sampling="all", realtime=False, loop=False, reconnect=ONE_TRY
    )
    decoder = CameraDecoder(spec, ModelInput(128, 128))
    frames: list = []
    thread = threading.Thread(target=decoder.run, args=(frames.append, threading.Event()), daemon=True)
    start = time.monotonic()
    thread.start()
    thread.join(limit_s)
    assert not thread.is_alive(), f"decoder hung on {path.name}"
    return decoder, frames, time.monotonic() - start


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".h264", ".ts", ".mp4"])
def test_mutated_streams_never_crash_or_hang(tmp_path, suffix):
    clean = make_h264(tmp_path / f"clean{suffix}", frames=10, size=(160, 120), gop=5)
    decoder, frames, _ = run_bounded(clean)
    assert len(frames) == 10 and decoder.health().decode_errors == 0  # the baseline is clean

    rng = random.Random(f"decoders-corruption-{suffix}")  # deterministic: same 100 streams every run
    data = clean.read_bytes()
    outcomes: Counter[str] = Counter()
    decode_errors = 0
    slowest = 0.0
    for i in range(MUTATIONS_PER_CONTAINER):
        kind, damaged = mutate(data, rng)
        path = tmp_path / f"m{i:03d}-{kind}{suffix}"
        path.write_bytes(damaged)
        decoder, frames, elapsed = run_bounded(path)
        health = decoder.health()
        slowest = max(slowest, elapsed)
        assert health.state in (CameraState.STOPPED, CameraState.FAILED), (path.name, health)
        assert health.frames_sampled == len(frames) <= health.frames_decoded
        assert all(f.image.shape == (128, 128, 3) for f in frames)
        if health.state is CameraState.FAILED:
            assert health.last_error, path.name
        outcomes[health.state] += 1
        decode_errors += health.decode_errors
        path.unlink()
    assert decode_errors > 0, outcomes  # damage is seen and counted, not silently swallowed
    assert slowest < 5.0
    print(f"{suffix}: {dict(outcomes)}, decode_errors={decode_errors}, slowest={slowest:.2f}s")
