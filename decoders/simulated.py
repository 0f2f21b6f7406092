"""SIMULATED cameras for scale and failover tests: frames without any video, decoding or network.

``sim://NAME?width=1920&height=1080&source_fps=25&gop_s=2&cpu_ms_per_frame=0`` behaves like a live
camera to its DecoderGroup (same ``run(emit, stop)`` / ``health()`` contract as
``decoders.camera_decoder.CameraDecoder``) and costs almost nothing, so one machine can hold thousands.
It is always labelled as such: ``SimulatedCamera.simulated`` is True, its health reports
``codec="simulated"``, and the group marks its status and stream messages ``simulated=true`` (it keys
on the ``sim://`` scheme). Its frame counters count produced frames: nothing is decoded.

Query parameters (all optional):
- ``width``/``height``: the resolution it claims (letterbox scale and box mapping use it);
- ``source_fps``: the rate of sampling ``all``; ``gop_s``: one keyframe per ``gop_s`` for ``keyframes``;
- ``cpu_ms_per_frame``: CPU to burn per frame, to stand in for decode cost when testing cost-based
  placement (it shows up in ``cpu_seconds`` and so in the measured ``decode_cpu_s_per_s``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cluster.status import CameraState
from decoders.clock import SYSTEM_CLOCK, Clock
from decoders.config import CameraSpec, SamplingMode
from decoders.frame import DecodedFrame, ModelInput
from decoders.health import DecoderHealth, RateMeter
from decoders.redact import redact_text
from decoders.state import CameraStateMachine

log = logging.getLogger(__name__)
S = CameraState


class SimParams(BaseModel):
    """The query string of a ``sim://`` URL."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    width: int = Field(1920, ge=16, le=8192, description="Claimed source width.")
    height: int = Field(1080, ge=16, le=8192, description="Claimed source height.")
    source_fps: float = Field(25.0, gt=0, le=240, description="Source frame rate (sampling 'all').")
    gop_s: float = Field(2.0, gt=0, le=60, description="Seconds between keyframes (sampling 'keyframes').")
    cpu_ms_per_frame: float = Field(0.0, ge=0, le=1000, description="CPU to burn per produced frame.")

    @classmethod
    def from_url(cls, url: str) -> SimParams:
        return cls.model_validate(dict(parse_qsl(urlsplit(url).query)))


class SimulatedCamera:
    """A camera that produces synthetic frames at its sampling rate, paced in real time."""

    simulated = True

    def __init__(
        self,
        spec: CameraSpec,
        model_input: ModelInput,
        keep_full_frame: bool = False,
        clock: Clock | None = None,
    ) -> None:
        self.spec = spec
        self.model_input = model_input
        self.keep_full_frame = keep_full_frame
        self._clock = clock or SYSTEM_CLOCK
        self._error: str | None = None
        try:
            self.params = SimParams.from_url(spec.url.get_secret_value())
        except ValidationError as exc:  # reported through health(), like a camera that cannot open
            self.params = SimParams()
            self._error = redact_text(f"invalid sim:// parameters: {exc.errors()[0]['msg']}")
        self.rate = self._rate()
        now = self._clock.monotonic()
        self._sm = CameraStateMachine(S.CONNECTING if spec.enabled else S.DISABLED, now)
        self._meter = RateMeter(now)
        self._lock = threading.Lock()
        self._frames = 0
        self._cpu = 0.0
        self.scale = min(model_input.width / self.params.width, model_input.height / self.params.height)

    def _rate(self) -> float:
        p = self.params
        if self.spec.sampling is SamplingMode.KEYFRAMES:
            return 1.0 / p.gop_s
        if self.spec.sampling is SamplingMode.ALL:
            return p.source_fps
        return min(self.spec.fps, p.source_fps)

    def health(self) -> DecoderHealth:
        now = self._clock.monotonic()
        with self._lock:
            return DecoderHealth(
                camera_id=self.spec.camera_id,
                url=self.spec.safe_url,
                state=self._sm.state,
                state_since=self._sm.since,
                last_error=self._error,
                frames_decoded=self._frames,
                frames_sampled=self._frames,
                decode_errors=0,
                reconnects=0,
                cpu_seconds=self._cpu,
                decoded_fps=self._meter.rate(now),
                width=self.params.width,
                height=self.params.height,
                codec="simulated",
                transitions=self._sm.history(),
            )

    def run(self, emit: Callable[[DecodedFrame], None], stop: threading.Event) -> None:
        """Emit frames at the sampling rate until ``stop``; never raises."""
        if not self.spec.enabled:
            self._sm.to(S.DISABLED, self._clock.monotonic())
            return
        if self._error is not None:
            self._sm.to(S.FAILED, self._clock.monotonic())
            return
        self._sm.to(S.CONNECTING, self._clock.monotonic())
        try:
            self._run(emit, stop)
        except Exception as exc:  # emit() is the group's code; keep the group alive and say so
            log.exception("simulated camera %s: loop crashed", self.spec.camera_id)
            with self._lock:
                self._error = redact_text(f"{type(exc).__name__}: {exc}")
            now = self._clock.monotonic()
            if self._sm.state in (S.ONLINE, S.STALLED):
                self._sm.to(S.BACKOFF, now)  # the state machine reaches FAILED only through BACKOFF
            self._sm.to(S.FAILED, now)
            return
        self._sm.to(S.STOPPED, self._clock.monotonic())

    def _run(self, emit: Callable[[DecodedFrame], None], stop: threading.Event) -> None:
        start = self._clock.monotonic()
        n = 0
        while not stop.is_set():
            cpu0 = time.thread_time()
            frame = self._frame(n)
            self._burn(cpu0)
            cpu = time.thread_time() - cpu0
            now = self._clock.monotonic()
            with self._lock:
                self._frames += 1
                self._cpu += cpu
                self._meter.add(now)
            self._sm.to(S.ONLINE, now)
            emit(frame)
            n += 1
            # Pace against the schedule, not the last frame, so time spent in emit() does not drift;
            # a camera that fell more than a frame behind skips ahead instead of bursting.
            due = start + n / self.rate
            if due < self._clock.monotonic() - 1.0 / self.rate:
                n = int((self._clock.monotonic() - start) * self.rate) + 1
                due = start + n / self.rate
            if self._clock.wait(stop, due - self._clock.monotonic()):
                return

    def _burn(self, cpu0: float) -> None:
        target = self.params.cpu_ms_per_frame / 1000.0
        while target and time.thread_time() - cpu0 < target:
            pass

    def _frame(self, n: int) -> DecodedFrame:
        p, mi = self.params, self.model_input
        pts = n / self.rate
        image = np.full((mi.height, mi.width, 3), mi.fill, dtype=np.uint8)
        box_w, box_h = max(8, mi.width // 8), max(8, mi.height // 8)
        x = (n * 16) % max(1, mi.width - box_w)  # a moving block, so consecutive frames differ
        image[mi.height // 3 : mi.height // 3 + box_h, x : x + box_w] = (40, 200, 240)
        full = np.zeros((p.height, p.width, 3), dtype=np.uint8) if self.keep_full_frame else None
        index = round(pts * p.source_fps)
        return DecodedFrame(
            camera_id=self.spec.camera_id,
            frame_index=index,
            pts_s=pts,
            capture_ts=self._clock.time(),
            image=image,
            scale=self.scale,
            width=p.width,
            height=p.height,
            keyframe=index % max(1, round(p.gop_s * p.source_fps)) == 0,
            full_frame=full,
        )
