"""One camera: PyAV demux + decode, sampling, letterbox, reconnects. One thread per camera.

``CameraDecoder.run(emit, stop)`` is the whole life of a camera inside its DecoderGroup: connect, decode,
hand sampled frames to ``emit`` (which may block: that is the group's backpressure), and on any error
record it (redacted) and reconnect with exponential backoff. It never raises.

Choices, by measurement (2-core dev VM, PyAV 18 / FFmpeg 8; process CPU time, all threads counted):

* **Decoder threads: one** (``thread_count=1``). 1080p H.264: 273 frames per CPU-second with one thread,
  213 with ``AUTO`` (frame threads), 221 with 2 frame threads, 254 with 2 slice threads. Extra threads
  only buy latency-free wall speed for one camera; a group decodes many cameras, so parallelism comes
  from cameras, and one thread keeps ``time.thread_time()`` an exact measure of each camera's cost.
* **Keyframes mode** sets ``skip_frame=NONKEY`` *and* drops non-key packets before the decoder once the
  stream has shown that it flags keyframes (the decoder never sees P-frames: 1080p, 2 s GOP, about
  1% of full-decode CPU). Streams that never flag keyframes still work through ``skip_frame``.
* **Resize**: one swscale pass straight to the letterboxed size, see ``decoders.resize``.
* **Pacing** (``realtime`` files): a frame is released at ``start + (pts - first_pts)`` on the clock; a
  decoder that falls more than a second behind re-anchors instead of bursting.
* **Stall watchdog**: no decoded frame for ``stall_timeout_s`` -> STALLED -> reconnect. A read that blocks
  is cut by PyAV's interrupt callback after ``min(read_timeout_s, stall_timeout_s)``. In keyframes mode
  the stall timeout must exceed the GOP (the default 10 s covers 1-4 s GOPs).
* **Stop latency**: ``stop`` is checked between packets; a read blocked on a silent server returns at the
  latest after the read timeout.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from enum import Enum

import av
import av.error

from cluster.status import CameraState
from decoders.backoff import Backoff
from decoders.clock import SYSTEM_CLOCK, Clock
from decoders.config import CameraSpec, SamplingMode
from decoders.frame import DecodedFrame, ModelInput
from decoders.health import DecoderHealth, RateMeter
from decoders.redact import redact_text
from decoders.resize import DEFAULT_INTERPOLATION, Letterboxer
from decoders.sampling import BestEffortTimestamp, FpsSampler
from decoders.sources import OpenArgs, SourceKind, open_args
from decoders.state import CameraStateMachine

log = logging.getLogger(__name__)
S = CameraState

_RESYNC_BEHIND_S = 1.0  # a realtime file more than this behind schedule re-anchors its pacing


class _End(Enum):
    STOP = "stop"  # the stop event was set
    EOF = "eof"  # the source ended cleanly
    ERROR = "error"  # open/read failed: back off and reconnect
    STALL = "stall"  # connected but no frames: back off and reconnect


class _Stalled(Exception):
    pass


class CameraDecoder:
    """Decode one camera (file, RTSP, HTTP) on the calling thread; see the module docstring."""

    interpolation: str = DEFAULT_INTERPOLATION

    def __init__(
        self,
        spec: CameraSpec,
        model_input: ModelInput,
        keep_full_frame: bool = False,
        clock: Clock | None = None,
        *,
        rng: Callable[[], float] | None = None,
    ) -> None:
        self.spec = spec
        self.model_input = model_input
        self._clock = clock or SYSTEM_CLOCK
        self._args: OpenArgs = open_args(spec)
        self._is_file = self._args.kind is SourceKind.FILE
        self._secret_url = spec.url.get_secret_value()
        self._safe_url = spec.safe_url
        self._letterbox = Letterboxer(model_input, keep_full_frame, self.interpolation)
        self._backoff = Backoff(spec.reconnect, rng)
        self._sampler = FpsSampler(spec.fps)
        self._timestamp = BestEffortTimestamp()
        now = self._clock.monotonic()
        self._sm = CameraStateMachine(S.CONNECTING if spec.enabled else S.DISABLED, now)
        self._rate = RateMeter(now)
        self._lock = threading.Lock()
        self._last_error: str | None = None
        self._frames_decoded = 0
        self._frames_sampled = 0
        self._decode_errors = 0
        self._reconnects = 0
        self._cpu = 0.0
        self._cpu_mark: float | None = None
        self._width: int | None = None
        self._height: int | None = None
        self._codec: str | None = None
        self._pace_anchor: tuple[float, float] | None = None  # (clock.monotonic, pts_s)
        self._last_release: tuple[float, float] | None = None  # (due, pts_s) of the last paced frame
        self._frame_interval = 0.04
        self._file_rate: float | None = None
        self._opened_at = 0.0
        self._tb_cache: tuple[object, float] = (None, 0.0)
        self._keyframes = spec.sampling is SamplingMode.KEYFRAMES
        self._key_flags_seen = False

    # ------------------------------------------------------------------ public
    def health(self) -> DecoderHealth:
        now = self._clock.monotonic()
        with self._lock:
            cpu = self._cpu
            return DecoderHealth(
                camera_id=self.spec.camera_id,
                url=self._safe_url,
                state=self._sm.state,
                state_since=self._sm.since,
                last_error=self._last_error,
                frames_decoded=self._frames_decoded,
                frames_sampled=self._frames_sampled,
                decode_errors=self._decode_errors,
                reconnects=self._reconnects,
                cpu_seconds=cpu,
                decoded_fps=self._rate.rate(now),
                width=self._width,
                height=self._height,
                codec=self._codec,
                transitions=self._sm.history(),
            )

    def run(self, emit: Callable[[DecodedFrame], None], stop: threading.Event) -> None:
        """Decode until ``stop`` is set, a finite file ends (STOPPED) or reconnects are exhausted
        (FAILED). Calls ``emit`` for every sampled frame. Never raises."""
        self._cpu_mark = time.thread_time()
        try:
            self._run(emit, stop)
        except Exception as exc:  # a bug, not a camera problem: keep the group alive and say so
            trace = self._redact("".join(traceback.format_exception(exc)))  # FFmpeg errors carry the URL
            log.error("camera %s: decoder loop crashed\n%s", self.spec.camera_id, trace)
            self._record_error(exc)
            self._to(S.FAILED if self._sm.state is not S.STOPPED else S.STOPPED, force=True)
        finally:
            self._cpu_checkpoint()
            self._cpu_mark = None

    # ------------------------------------------------------------------ loop
    def _run(self, emit: Callable[[DecodedFrame], None], stop: threading.Event) -> None:
        if not self.spec.enabled:
            self._to(S.DISABLED)
            return
        self._to(S.CONNECTING)
        while not stop.is_set():
            frames_before = self._frames_decoded
            end = self._session(emit, stop)
            produced = self._frames_decoded > frames_before
            if end is _End.STOP:
                break
            if end is _End.EOF and self._is_file:
                if not self.spec.loop:
                    self._to(S.STOPPED)
                    return
                if produced:
                    continue  # loop: reopen and play again; still ONLINE
                self._record_error("file ended without a decodable frame")
            elif end is _End.EOF:
                self._record_error("stream ended (server closed the connection)")
            if not self._back_off(stop):
                return
        self._to(S.STOPPED)

    def _back_off(self, stop: threading.Event) -> bool:
        """Wait before reconnecting; False when the camera is done (FAILED, or stopped while waiting)."""
        delay = self._backoff.next_delay()
        if self._backoff.exhausted:
            self._to(S.FAILED)
            log.warning("camera %s: failed after %d attempts", self.spec.camera_id, self._backoff.failures)
            return False
        self._to(S.BACKOFF)
        if self._clock.wait(stop, delay):
            self._to(S.STOPPED)
            return False
        with self._lock:
            self._reconnects += 1
        self._to(S.CONNECTING)
        return True

    def _session(self, emit: Callable[[DecodedFrame], None], stop: threading.Event) -> _End:
        """One connection (or one pass over a file): open, demux, decode until it ends."""
        container = None
        try:
            container = av.open(
                self._args.target, mode="r", options=dict(self._args.options), timeout=self._args.timeout
            )
            if not container.streams.video:
                raise ValueError("source has no video stream")
            stream = container.streams.video[0]
            self._codec = stream.codec_context.name
            self._start_stream(stream)
            rate = stream.average_rate or stream.guessed_rate
            self._file_rate = float(rate) if self._is_file and rate else None
            self._opened_at = self._clock.monotonic()
            self._sampler.reset()
            self._timestamp.reset()
            self._pace_anchor = None
            return self._demux(container, stream, emit, stop)
        except _Stalled as exc:
            self._record_error(str(exc))
            if self._sm.state is not S.ONLINE:
                return _End.ERROR  # connected, but never a frame
            self._to(S.STALLED)
            return _End.STALL
        except (av.error.ExitError, TimeoutError) as exc:  # interrupt callback or socket timeout
            if self._sm.state is S.ONLINE:
                read_s = self._args.timeout[1] if self._args.timeout else None
                self._record_error(f"no data for {read_s} s: {exc}")
                self._to(S.STALLED)
                return _End.STALL
            self._record_error(exc)
            return _End.ERROR
        except Exception as exc:  # open/demux failures: FFmpeg errors, OSError, ...
            self._record_error(exc)
            if self._is_file and self._sm.state is S.ONLINE:
                with self._lock:
                    self._decode_errors += 1
                return _End.EOF  # a damaged file: what could be read was read; replaying it is the loop's job
            return _End.ERROR
        finally:
            if container is not None:
                # closing a broken container must not mask the real error
                with contextlib.suppress(Exception):
                    container.close()

    # ------------------------------------------------------------------ decoding (hooks for other backends)
    def _start_stream(self, stream) -> None:
        """A new connection's video stream: configure the decoder."""
        ctx = stream.codec_context
        ctx.thread_count = 1
        self._keyframes = self.spec.sampling is SamplingMode.KEYFRAMES
        self._key_flags_seen = False
        if self._keyframes:
            ctx.skip_frame = "NONKEY"

    def _decode_packet(self, stream, packet) -> Iterable | None:
        """Frames out of one demuxed packet, or None when the packet was dropped unseen (keyframes mode)."""
        if self._keyframes and packet.size:
            if packet.is_keyframe:
                self._key_flags_seen = True
            elif self._key_flags_seen:
                return None
        try:
            return stream.codec_context.decode(packet)
        except av.error.FFmpegError as exc:
            self._decode_error(exc)
            return ()

    def _demux(self, container, stream, emit, stop: threading.Event) -> _End:
        # The per-frame path is kept lean: at 480x360 a frame decodes in ~0.27 ms, so every 10 us of
        # Python here is ~4 % of the camera's cost (see benchmarks/decode.py, ratio_to_limit).
        monotonic = self._clock.monotonic
        last_frame_at = monotonic()
        frame_index = 0
        stall_s = self.spec.stall_timeout_s
        for packet in container.demux(stream):
            if stop.is_set():
                return _End.STOP
            frames = self._decode_packet(stream, packet)
            now = monotonic()
            if frames:
                for frame in frames:
                    if frame.is_corrupt:
                        self._decode_error("decoder flagged a corrupt frame")
                    self._on_frame(frame, frame_index, now, emit, stop)
                    frame_index += 1
                last_frame_at = monotonic()  # after emit/pacing, which may have blocked
            elif now - last_frame_at > stall_s:
                raise _Stalled(f"no frame for {stall_s} s")
        return _End.STOP if stop.is_set() else _End.EOF

    def _on_frame(self, frame, index: int, now: float, emit, stop: threading.Event) -> None:
        ts = self._timestamp(frame.pts, frame.dts)
        if ts is not None and frame.time_base is not None:
            if self._tb_cache[0] is not frame.time_base:  # Fraction math per frame costs ~10 us
                self._tb_cache = (frame.time_base, float(frame.time_base))
            pts_s = ts * self._tb_cache[1]
        elif self._file_rate:  # raw elementary stream (.h264): no timestamps, frames at the stream rate
            pts_s = index / self._file_rate
        else:  # live source without timestamps (MJPEG over HTTP): its arrival time is its time
            pts_s = now - self._opened_at
        self._frames_decoded += 1  # single writer (this thread); health() reads it under the GIL
        self._rate.add(now)
        if frame.width != self._width or frame.height != self._height:
            self._new_size(frame.width, frame.height)
        if self._frames_decoded & 31 == 0:
            self._cpu_checkpoint()
        if self._sm.state is not S.ONLINE:
            self._to(S.ONLINE)
            self._backoff.reset()
        if self.spec.realtime and self._is_file:
            self._pace(pts_s, stop)
        mode = self.spec.sampling
        # ALL, or KEYFRAMES (the decoder outputs keyframes only): every frame
        take = self._sampler.take(pts_s) if mode is SamplingMode.FPS else True
        if not take or stop.is_set():
            return
        image, scale, full = self._letterbox(frame)
        decoded = DecodedFrame(
            camera_id=self.spec.camera_id,
            frame_index=index,
            pts_s=pts_s,
            capture_ts=self._clock.time(),
            image=image,
            scale=scale,
            width=frame.width,
            height=frame.height,
            keyframe=bool(frame.key_frame),
            full_frame=full,
        )
        self._frames_sampled += 1
        self._cpu_checkpoint()
        try:
            emit(decoded)  # may block (backpressure); its CPU belongs to the group, not to decoding
        except Exception as exc:  # the group's problem, not the camera's: drop this frame, keep decoding
            self._record_error(f"emit failed: {type(exc).__name__}: {exc}")
        self._cpu_mark = time.thread_time()

    def _new_size(self, width: int, height: int) -> None:
        if self._width is not None:
            log.info(
                "camera %s: resolution %sx%s -> %sx%s",
                self.spec.camera_id,
                self._width,
                self._height,
                width,
                height,
            )
        with self._lock:
            self._width, self._height = width, height

    # ------------------------------------------------------------------ pacing
    def _pace(self, pts_s: float, stop: threading.Event) -> None:
        now = self._clock.monotonic()
        if self._pace_anchor is None:  # new pass: a looping file continues one frame after its last one
            start = now
            if self._last_release is not None:
                start = max(now, self._last_release[0] + self._frame_interval)
            self._pace_anchor = (start, pts_s)
        elif self._last_release is not None and pts_s > self._last_release[1]:
            self._frame_interval = min(pts_s - self._last_release[1], 1.0)
        wall0, pts0 = self._pace_anchor
        due = wall0 + (pts_s - pts0)
        if due - now < -_RESYNC_BEHIND_S or pts_s < pts0:  # far behind, or time went backwards
            self._pace_anchor = (now, pts_s)
            due = now
        elif due > now:
            self._cpu_checkpoint()
            self._clock.wait(stop, due - now)
            self._cpu_mark = time.thread_time()
        self._last_release = (due, pts_s)

    # ------------------------------------------------------------------ bookkeeping
    def _to(self, state: CameraState, force: bool = False) -> None:
        now = self._clock.monotonic()
        try:
            changed = self._sm.to(state, now)
        except Exception:
            if not force:
                raise
            self._sm = CameraStateMachine(state, now)
            changed = True
        if changed:
            log.info("camera %s: %s", self.spec.camera_id, state)

    def _redact(self, message: str) -> str:
        return redact_text(message.replace(self._secret_url, self._safe_url))

    def _record_error(self, error: BaseException | str) -> None:
        if isinstance(error, BaseException):
            error = f"{type(error).__name__}: {error}"
        message = self._redact(error)[:500]
        with self._lock:
            self._last_error = message
        log.warning("camera %s (%s): %s", self.spec.camera_id, self._safe_url, message)

    def _decode_error(self, error: BaseException | str) -> None:
        with self._lock:
            self._decode_errors += 1
            if isinstance(error, BaseException):
                error = f"{type(error).__name__}: {error}"
            self._last_error = self._redact(f"decode: {error}")[:500]

    def _cpu_checkpoint(self) -> None:
        if self._cpu_mark is None:
            return
        now = time.thread_time()
        with self._lock:
            self._cpu += now - self._cpu_mark
        self._cpu_mark = now
