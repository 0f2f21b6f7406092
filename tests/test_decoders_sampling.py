"""Pure policies of the decoders: sampling by presentation time, timestamps, backoff, state machine."""

from __future__ import annotations

import pytest

from cluster.status import CameraState as S
from decoders.backoff import Backoff, backoff_delay, exhausted
from decoders.config import BackoffPolicy
from decoders.sampling import BestEffortTimestamp, FpsSampler, SamplerState, sample_fps
from decoders.state import ALLOWED_TRANSITIONS, CameraStateMachine, InvalidTransition


def taken(pts: list[float], fps: float) -> list[float]:
    sampler = FpsSampler(fps)
    return [p for p in pts if sampler.take(p)]


def grid(fps: float, seconds: float, start: float = 0.0) -> list[float]:
    return [start + i / fps for i in range(round(seconds * fps))]


@pytest.mark.parametrize(
    ("pts", "fps", "expected"),
    [
        (grid(10, 2), 2, [0.0, 0.5, 1.0, 1.5]),
        (grid(25, 2), 2, [0.0, 0.52, 1.0, 1.52]),  # first frame at or after each due time
        (grid(10, 1), 10, grid(10, 1)),  # target == source: every frame
        (grid(10, 1), 30, grid(10, 1)),  # target above source: every frame, no duplicates
        (grid(5, 2, start=100.0), 1, [100.0, 101.0]),  # stream clocks need not start at 0
        ([0.0, 0.1, 5.0, 5.1, 5.5, 6.0], 2, [0.0, 5.0, 5.5, 6.0]),  # gap: re-anchor, no burst
        ([0.0, 0.5, 1.0, 0.0, 0.5, 1.0], 2, [0.0, 0.5, 1.0, 0.0, 0.5, 1.0]),  # loop restart
        ([0.0, 0.4999999, 0.99999], 2, [0.0, 0.4999999, 0.99999]),  # time-base rounding tolerated
        ([], 2, []),
    ],
)
def test_sample_fps_table(pts, fps, expected):
    assert taken(pts, fps) == pytest.approx(expected)


@pytest.mark.parametrize(("source_fps", "target"), [(25, 2), (30, 7), (10, 3), (12.5, 2), (30, 0.2)])
def test_long_run_rate_matches_target(source_fps, target):
    seconds = 120
    got = taken(grid(source_fps, seconds), target)
    assert len(got) == pytest.approx(seconds * target, abs=1.5)


def test_sample_fps_is_pure():
    state = SamplerState()
    take, after = sample_fps(state, 0.0, 2.0)
    assert take and state == SamplerState() and after.due == pytest.approx(0.5)
    assert sample_fps(after, 0.2, 2.0)[0] is False
    with pytest.raises(ValueError, match="fps must be > 0"):
        FpsSampler(0)


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ([(0, 0), (1, 1), (2, 2)], [0, 1, 2]),  # sane pts: pts
        # AVI with B-frames: decode-order pts, increasing dts -> dts once pts prove faulty
        ([(1, 2), (4, 3), (3, 4), (5, 5), (2, 6), (8, 7)], [1, 4, 4, 5, 6, 7]),
        ([(None, None), (None, None)], [None, None]),  # raw .h264: caller falls back to the rate
        ([(None, 3), (None, 4)], [3, 4]),
        ([(0, None), (3, None), (1, None)], [0, 3, 1]),  # no dts: pts whatever they are
    ],
)
def test_best_effort_timestamp(pairs, expected):
    guess = BestEffortTimestamp()
    assert [guess(p, d) for p, d in pairs] == expected


POLICY = BackoffPolicy(initial_s=0.5, max_s=8.0, multiplier=2.0, jitter=0.2)


@pytest.mark.parametrize(
    ("attempt", "u", "expected"),
    [
        (1, 0.5, 0.5),  # u = 0.5: no jitter
        (2, 0.5, 1.0),
        (4, 0.5, 4.0),
        (5, 0.5, 8.0),  # reaches the cap
        (50, 0.5, 8.0),  # stays capped
        (10_000, 0.5, 8.0),  # no overflow after weeks offline
        (1, 0.0, 0.4),  # -20 %
        (1, 1.0, 0.6),  # +20 %
        (6, 1.0, 8.0),  # jitter never exceeds the cap
        (6, 0.0, 6.4),
    ],
)
def test_backoff_delay_table(attempt, u, expected):
    assert backoff_delay(POLICY, attempt, u) == pytest.approx(expected)


@pytest.mark.parametrize(("attempt", "u"), [(0, 0.5), (1, -0.1), (1, 1.5)])
def test_backoff_delay_rejects(attempt, u):
    with pytest.raises(ValueError):
        backoff_delay(POLICY, attempt, u)


def test_backoff_sequence_with_injected_rng_and_reset():
    draws = iter([0.5, 0.5, 0.0, 1.0, 0.5])
    policy = BackoffPolicy(initial_s=1, max_s=5, jitter=0.5, max_attempts=4)
    backoff = Backoff(policy, rng=lambda: next(draws))
    assert [backoff.next_delay() for _ in range(3)] == pytest.approx([1.0, 2.0, 2.0])
    assert not backoff.exhausted
    assert backoff.next_delay() == pytest.approx(5.0)  # 8 capped at 5, +50 % capped at 5
    assert backoff.exhausted and backoff.failures == 4
    backoff.reset()
    assert backoff.next_delay() == pytest.approx(1.0) and not backoff.exhausted


@pytest.mark.parametrize(
    ("max_attempts", "failures", "expected"), [(None, 10**6, False), (3, 2, False), (3, 3, True)]
)
def test_exhausted(max_attempts, failures, expected):
    assert exhausted(BackoffPolicy(max_attempts=max_attempts), failures) is expected


@pytest.mark.parametrize(
    ("path", "ok"),
    [
        ([S.ONLINE, S.STALLED, S.BACKOFF, S.CONNECTING, S.ONLINE, S.STOPPED], True),
        ([S.BACKOFF, S.CONNECTING, S.BACKOFF, S.FAILED], True),
        ([S.ONLINE, S.BACKOFF, S.CONNECTING, S.ONLINE], True),
        ([S.STALLED], False),  # never had a frame: cannot stall
        ([S.ONLINE, S.CONNECTING], False),  # must back off first
        ([S.BACKOFF, S.ONLINE], False),
        ([S.STOPPED, S.ONLINE], False),
    ],
)
def test_state_machine_paths(path, ok):
    machine = CameraStateMachine(S.CONNECTING)
    if ok:
        for i, state in enumerate(path, start=1):
            assert machine.to(state, float(i))
        assert [s for s, _ in machine.history()] == [S.CONNECTING, *path]
    else:
        with pytest.raises(InvalidTransition, match="not allowed"):
            for i, state in enumerate(path, start=1):
                machine.to(state, float(i))


def test_every_state_has_rules_and_same_state_is_a_no_op():
    assert set(ALLOWED_TRANSITIONS) == set(S)
    machine = CameraStateMachine(S.ONLINE, now=1.0)
    assert machine.to(S.ONLINE, 2.0) is False and machine.since == 1.0
