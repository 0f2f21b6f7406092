"""Time as a dependency: decoders read the clock and sleep through this, so tests can drive them."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a monotonic clock (pacing, timeouts, rates)."""
        ...

    def time(self) -> float:
        """Wall-clock seconds since the epoch (``DecodedFrame.capture_ts``)."""
        ...

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        """Sleep up to ``seconds``; return True early if ``stop`` is set."""
        ...


class SystemClock:
    """The real clock: ``time.monotonic``, ``time.time`` and ``Event.wait``."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        if seconds <= 0:
            return stop.is_set()
        return stop.wait(seconds)


SYSTEM_CLOCK = SystemClock()
