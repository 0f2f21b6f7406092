"""What a decoder reports about itself: a frozen snapshot, safe to hand to any thread or actor."""

from __future__ import annotations

from dataclasses import dataclass

from cluster.status import CameraState


@dataclass(frozen=True)
class DecoderHealth:
    camera_id: str
    url: str  # redacted
    state: CameraState
    state_since: float  # clock.monotonic() of the last transition
    last_error: str | None  # redacted
    frames_decoded: int
    frames_sampled: int
    decode_errors: int  # packets the decoder rejected, corrupt frames, unreadable files/streams
    reconnects: int  # new connections after a failure (loop restarts of a file are not reconnects)
    cpu_seconds: float  # CPU time of the decode thread (time.thread_time()), emit() excluded
    decoded_fps: float  # recent decode rate
    width: int | None  # current source resolution (changes mid-stream are followed)
    height: int | None
    codec: str | None = None
    transitions: tuple[tuple[CameraState, float], ...] = ()  # recent (state, clock.monotonic()) pairs


class RateMeter:
    """Events per second over windows of about ``window_s``; cheap enough to call per frame."""

    def __init__(self, now: float, window_s: float = 2.0) -> None:
        self.window_s = window_s
        self._start = now
        self._count = 0
        self._rate = 0.0

    def add(self, now: float, n: int = 1) -> None:
        self._count += n
        elapsed = now - self._start
        if elapsed >= self.window_s:
            self._rate = self._count / elapsed
            self._start, self._count = now, 0

    def rate(self, now: float) -> float:
        """The last full window's rate, decayed if nothing has arrived for longer than a window."""
        elapsed = now - self._start
        if elapsed > 2 * self.window_s or (self._rate == 0.0 and elapsed >= 0.5):
            return self._count / elapsed  # idle for a while (decays to 0), or no full window yet
        return self._rate
