"""Run a decoder on a background thread in tests, and wait for what its health says."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from cluster.status import CameraState
from decoders.frame import DecodedFrame
from decoders.health import DecoderHealth


class RunningDecoder:
    def __init__(self, decoder) -> None:
        self.decoder = decoder
        self.frames: list[DecodedFrame] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=decoder.run, args=(self.frames.append, self.stop), daemon=True)

    def __enter__(self) -> RunningDecoder:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "decoder did not stop"

    def health(self) -> DecoderHealth:
        return self.decoder.health()

    def wait_for(self, what: Callable[[DecoderHealth], bool], timeout: float, why: str = "") -> DecoderHealth:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            health = self.decoder.health()
            if what(health):
                return health
            time.sleep(0.05)
        raise AssertionError(
            f"timed out after {timeout} s waiting for {why or what}: {self.decoder.health()}"
        )

    def wait_state(self, state: CameraState, timeout: float, after: int = 0) -> DecoderHealth:
        """Wait until ``state`` appears in the transition history from index ``after`` (even if brief)."""

        def seen(h: DecoderHealth) -> bool:
            return any(s is state for s, _ in h.transitions[after:])

        return self.wait_for(seen, timeout, f"state {state}")
