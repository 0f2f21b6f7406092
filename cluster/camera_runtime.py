"""Per-camera state that lives with the camera's DecoderGroup: its frame slot, sequence and counters.

Freshness over completeness: a live camera keeps at most one frame waiting for inference, and a newer
frame replaces it (counted as a backpressure drop). A file played as fast as possible
(``realtime=False``) is not live, so its decoder waits for the slot instead of dropping.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque

import numpy as np

from cluster.status import CameraState, CameraStatus, DropReason, LatencySummary
from decoders.config import CameraSpec
from decoders.frame import DecodedFrame

_LATENCY_SAMPLES = 1024
_RATE_WINDOW_S = 10.0


class FrameSlot:
    """A one-frame mailbox between a decoder thread and the group's batcher."""

    def __init__(self, block_when_full: bool) -> None:
        self._block = block_when_full
        self._cond = threading.Condition()
        self._frame: DecodedFrame | None = None

    def put(self, frame: DecodedFrame, stop: threading.Event) -> bool:
        """Store ``frame``; returns True if it replaced a frame that was still waiting."""
        with self._cond:
            while self._block and self._frame is not None and not stop.is_set():
                self._cond.wait(0.1)
            replaced = self._frame is not None
            self._frame = frame
            return replaced

    def take(self) -> DecodedFrame | None:
        with self._cond:
            frame, self._frame = self._frame, None
            self._cond.notify_all()
            return frame

    def has_frame(self) -> bool:
        return self._frame is not None


class CameraRuntime:
    """Everything a group tracks for one camera besides the decoder itself."""

    def __init__(self, spec: CameraSpec, source, next_seq: int) -> None:
        self.spec = spec
        self.simulated = spec.is_simulated  # read per frame: derived once
        self.source = source  # CameraDecoder or SimulatedCamera: run(emit, stop), health()
        self.slot = FrameSlot(block_when_full=spec.is_file and not spec.realtime)
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self._seq = next_seq
        self._lock = threading.Lock()
        self.dropped: Counter[DropReason] = Counter()
        self.detections_by_class: Counter[str] = Counter()
        self.second_stage_messages: Counter[str] = Counter()
        self.frames_analysed = 0
        self.last_error: str | None = None
        self._latency_ms: deque[float] = deque(maxlen=_LATENCY_SAMPLES)
        self._analysed_at: deque[float] = deque()
        self._cpu_mark = (time.monotonic(), 0.0)
        self._cpu_rate = 0.0

    def next_seq(self) -> int:
        with self._lock:
            seq = self._seq
            self._seq += 1
            return seq

    def peek_seq(self) -> int:
        """The seq the next analysed frame would get."""
        with self._lock:
            return self._seq

    def count_drop(self, reason: DropReason, n: int = 1, error: str | None = None) -> None:
        with self._lock:
            self.dropped[reason] += n
            if error:
                self.last_error = error

    def count_second_stage(self, kind: str) -> None:
        with self._lock:
            self.second_stage_messages[kind] += 1

    def record_analysed(self, latency_s: float, labels: list[str]) -> None:
        now = time.monotonic()
        with self._lock:
            self.frames_analysed += 1
            self._latency_ms.append(latency_s * 1000.0)
            self._analysed_at.append(now)
            self.detections_by_class.update(labels)

    def _analysed_fps(self, now: float) -> float:
        while self._analysed_at and self._analysed_at[0] < now - _RATE_WINDOW_S:
            self._analysed_at.popleft()
        return len(self._analysed_at) / _RATE_WINDOW_S

    def status(self, group_id: str) -> CameraStatus:
        health = self.source.health()
        now = time.monotonic()
        with self._lock:
            mark_t, mark_cpu = self._cpu_mark
            if now - mark_t >= 1.0:
                self._cpu_rate = max(0.0, (health.cpu_seconds - mark_cpu) / (now - mark_t))
                self._cpu_mark = (now, health.cpu_seconds)
            latencies = np.fromiter(self._latency_ms, np.float64)
            dropped = dict(self.dropped)
            if health.decode_errors:
                dropped[DropReason.DECODE_ERROR] = health.decode_errors
            state = CameraState.DISABLED if not self.spec.enabled else health.state
            return CameraStatus(
                camera_id=self.spec.camera_id,
                url=self.spec.safe_url,
                group_id=group_id,
                state=state,
                last_error=health.last_error or self.last_error,
                simulated=self.simulated,
                frames_decoded=health.frames_decoded,
                frames_sampled=health.frames_sampled,
                frames_analysed=self.frames_analysed,
                reconnects=health.reconnects,
                decoded_fps=round(health.decoded_fps, 2),
                analysed_fps=round(self._analysed_fps(now), 2),
                decode_cpu_s_per_s=round(self._cpu_rate, 4),
                latency=LatencySummary(
                    p50_ms=round(float(np.percentile(latencies, 50)), 1) if len(latencies) else None,
                    p99_ms=round(float(np.percentile(latencies, 99)), 1) if len(latencies) else None,
                    samples=len(latencies),
                ),
                detections_by_class=dict(self.detections_by_class),
                second_stage_messages=dict(self.second_stage_messages),
                dropped=dropped,
                last_seq=self._seq - 1,
            )
