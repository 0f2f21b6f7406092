"""Which decoded frames go to analysis: a pure policy over presentation times.

``FpsSampler`` keeps a *due time* on the stream's own clock (its presentation time, not the wall
clock) and takes the first frame at or after it, then advances the due time by exactly one period.
Advancing by the period (not by ``pts + period``) keeps the long-run rate at the target whatever the
source rate: a 25 fps camera sampled at 2 fps yields frames at 0.0, 0.52, 1.0, 1.52, ... -> 2.0/s.
A forward gap (lost packets, a camera that paused) re-anchors the due time at the frame after the gap
instead of bursting to catch up; a backward jump (loop, reconnect, timestamp wrap) restarts the
sampler. Frames without a timestamp (MJPEG over HTTP) are sampled by their arrival time instead.
"""

from __future__ import annotations

from dataclasses import dataclass

# Tolerance for time-base rounding: 0.5 s expressed in a 1/90000 or 1/12800 time base may come out a
# few microseconds short and must still count as "due".
_EPS = 1e-4
# A jump back by more than this (seconds) is a discontinuity, not B-frame reordering jitter.
_BACKWARD_JUMP_S = 0.5


@dataclass(frozen=True)
class SamplerState:
    due: float | None = None  # presentation time at or after which the next frame is taken
    last_pts: float | None = None


def sample_fps(state: SamplerState, pts_s: float, fps: float) -> tuple[bool, SamplerState]:
    """``(state, pts, fps) -> (take, new_state)``: the whole policy, pure and table-testable."""
    period = 1.0 / fps
    restart = state.due is None or (state.last_pts is not None and pts_s < state.last_pts - _BACKWARD_JUMP_S)
    if restart:
        return True, SamplerState(due=pts_s + period, last_pts=pts_s)
    assert state.due is not None
    if pts_s + _EPS < state.due:
        return False, SamplerState(due=state.due, last_pts=max(pts_s, state.last_pts or pts_s))
    due = state.due + period
    if due <= pts_s + _EPS:  # a gap longer than one period: re-anchor rather than burst
        due = pts_s + period
    return True, SamplerState(due=due, last_pts=pts_s)


class FpsSampler:
    """Stateful wrapper around :func:`sample_fps` for one decoder thread."""

    def __init__(self, fps: float) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.fps = fps
        self._state = SamplerState()

    def take(self, pts_s: float) -> bool:
        take, self._state = sample_fps(self._state, pts_s, self.fps)
        return take

    def reset(self) -> None:
        """Forget the stream's timeline (new connection, loop restart)."""
        self._state = SamplerState()


class BestEffortTimestamp:
    """FFmpeg's ``guess_correct_pts``: the frame's pts, unless the stream's pts are less trustworthy
    than its dts (counted as non-increasing values so far). AVI files with B-frames carry decode-order
    pts (``1, 4, 3, 5, 2, ...`` on ``opencv_vtest``), while the dts of the frames as they come out of
    the decoder still increase; presentation-time sampling needs the increasing one."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._faulty_pts = self._faulty_dts = 0
        self._last_pts: int | None = None
        self._last_dts: int | None = None

    def __call__(self, pts: int | None, dts: int | None) -> int | None:
        if dts is not None:
            self._faulty_dts += self._last_dts is not None and dts <= self._last_dts
            self._last_dts = dts
        if pts is not None:
            self._faulty_pts += self._last_pts is not None and pts <= self._last_pts
            self._last_pts = pts
        if pts is not None and (self._faulty_pts <= self._faulty_dts or dts is None):
            return pts
        return dts
