"""Reconnect delays: exponential backoff with jitter, capped. Pure, with the randomness passed in.

``delay = min(max_s, initial_s * multiplier ** (attempt - 1)) * (1 + jitter * (2u - 1))``, then capped
at ``max_s`` again, where ``u`` in [0, 1) is the caller's random draw. Jitter spreads the reconnects of
thousands of cameras that lost the same switch so they do not hammer the recorder in lock-step.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from decoders.config import BackoffPolicy


def backoff_delay(policy: BackoffPolicy, attempt: int, u: float) -> float:
    """Delay in seconds before reconnect ``attempt`` (1 = first failure); ``u`` uniform in [0, 1)."""
    if attempt < 1:
        raise ValueError(f"attempt starts at 1, got {attempt}")
    if not 0.0 <= u <= 1.0:
        raise ValueError(f"u must be in [0, 1], got {u}")
    # Cap the exponent so multiplier ** (attempt - 1) cannot overflow for a camera down for weeks.
    base = policy.initial_s * policy.multiplier ** min(attempt - 1, 64)
    base = min(policy.max_s, base)
    return min(policy.max_s, max(0.0, base * (1.0 + policy.jitter * (2.0 * u - 1.0))))


def exhausted(policy: BackoffPolicy, failures: int) -> bool:
    """True once ``failures`` consecutive failures reach ``policy.max_attempts`` (never if None)."""
    return policy.max_attempts is not None and failures >= policy.max_attempts


class Backoff:
    """Consecutive-failure counter around :func:`backoff_delay`; ``rng`` returns floats in [0, 1)."""

    def __init__(self, policy: BackoffPolicy, rng: Callable[[], float] | None = None) -> None:
        self.policy = policy
        self._rng = rng or random.Random().random
        self.failures = 0

    def next_delay(self) -> float:
        """Record one more failure and return the delay before the next attempt."""
        self.failures += 1
        return backoff_delay(self.policy, self.failures, self._rng())

    @property
    def exhausted(self) -> bool:
        return exhausted(self.policy, self.failures)

    def reset(self) -> None:
        """A connection delivered frames: the next failure starts from ``initial_s`` again."""
        self.failures = 0
