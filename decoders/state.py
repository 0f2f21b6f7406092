"""The per-camera state machine: the states of ``cluster.status.CameraState`` and who may follow whom.

::

    CONNECTING --frames--> ONLINE --no frame for stall_timeout_s / read timeout--> STALLED
        |                    |                                                       |
        +--open failed--+    +--error / disconnect--+    +---------------------------+
                        v                           v    v
                      BACKOFF --delay elapsed--> CONNECTING
    CONNECTING / ONLINE / STALLED --failure with reconnect attempts exhausted--> FAILED
    any live state --stop / end of a finite file--> STOPPED;  enabled=False --> DISABLED

FAILED, DISABLED and STOPPED are where ``CameraDecoder.run`` returns; a new ``run`` may start over from
them (CONNECTING).
"""

from __future__ import annotations

import threading
from collections import deque

from cluster.status import CameraState

S = CameraState

ALLOWED_TRANSITIONS: dict[CameraState, frozenset[CameraState]] = {
    S.CONNECTING: frozenset({S.ONLINE, S.BACKOFF, S.FAILED, S.STOPPED, S.DISABLED}),
    S.ONLINE: frozenset({S.STALLED, S.BACKOFF, S.FAILED, S.STOPPED, S.DISABLED}),
    S.STALLED: frozenset({S.ONLINE, S.BACKOFF, S.FAILED, S.STOPPED, S.DISABLED}),
    S.BACKOFF: frozenset({S.CONNECTING, S.FAILED, S.STOPPED, S.DISABLED}),
    S.FAILED: frozenset({S.CONNECTING, S.STOPPED, S.DISABLED}),
    S.DISABLED: frozenset({S.CONNECTING, S.STOPPED}),
    S.STOPPED: frozenset({S.CONNECTING, S.DISABLED}),
}


class InvalidTransition(RuntimeError):
    def __init__(self, src: CameraState, dst: CameraState) -> None:
        allowed = ", ".join(sorted(ALLOWED_TRANSITIONS[src]))
        super().__init__(f"camera state {src} -> {dst} is not allowed (from {src}: {allowed})")
        self.src, self.dst = src, dst


class CameraStateMachine:
    """Thread-safe current state plus a short history of ``(state, monotonic_ts)`` for status and tests."""

    def __init__(self, initial: CameraState = S.CONNECTING, now: float = 0.0, history: int = 32) -> None:
        self._lock = threading.Lock()
        self._state = initial
        self._since = now
        self._history: deque[tuple[CameraState, float]] = deque([(initial, now)], maxlen=history)

    @property
    def state(self) -> CameraState:
        return self._state

    @property
    def since(self) -> float:
        return self._since

    def to(self, new: CameraState, now: float) -> bool:
        """Move to ``new``; a no-op (False) if already there; ``InvalidTransition`` if not allowed."""
        with self._lock:
            if new == self._state:
                return False
            if new not in ALLOWED_TRANSITIONS[self._state]:
                raise InvalidTransition(self._state, new)
            self._state, self._since = new, now
            self._history.append((new, now))
            return True

    def history(self) -> tuple[tuple[CameraState, float], ...]:
        with self._lock:
            return tuple(self._history)
