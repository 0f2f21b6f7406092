"""DecoderGroup: a Ray actor that owns a group of cameras, batches their frames, and writes results.

Data path inside one group::

    camera thread (decoder.run) --emit--> FrameSlot (one per camera, newest frame wins)
    batcher task: take up to max_batch_frames frames across cameras -> one uint8 [N,H,W,3] array
      -> detector (Serve deployment handle, one request per micro-batch)
      -> boxes back to original pixels -> DetectionMessage per frame -> pipelined XADD (StreamWriter)

Decoding runs in one thread per camera (PyAV releases the GIL while decoding); batching, inference
calls and stream writes run on the actor's event loop. Every frame that does not reach the stream is
counted with its reason in the camera's status. A camera's errors never leave its own thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from typing import Any

import numpy as np
import ray
from pydantic import BaseModel, ConfigDict, Field

from cluster.camera_runtime import CameraRuntime
from cluster.detector_client import DetectorClient, ServeDetectorClient
from cluster.second_stage import SecondStage, SecondStageClient, SecondStageItem, ServeSecondStageClient
from cluster.status import DropReason, GroupStatus
from decoders.config import CameraSpec
from decoders.factory import make_camera_source
from decoders.frame import DecodedFrame, ModelInput
from decoders.redact import redact_text
from models.detections import Detections
from streams.keys import Retention, StreamLayout
from streams.schema import DetectionMessage
from streams.writer import SinkError, StreamWriter

log = logging.getLogger(__name__)


class GroupConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    group_id: str = Field(description="Unique group name (also the actor name).")
    redis_url: str = Field(description="Where results are written.")
    detector_app: str = Field("detector", description="Serve application of the detector.")
    detector_deployment: str = Field("Detector", description="Deployment name inside that app.")
    streams: StreamLayout = Field(default_factory=StreamLayout, description="Stream key layout.")
    retention: Retention = Field(default_factory=Retention, description="Stream retention (MAXLEN ~, TTL).")
    max_batch_frames: int = Field(16, ge=1, le=256, description="Frames per micro-batch request.")
    max_inflight_batches: int = Field(2, ge=1, le=16, description="Micro-batches awaiting the detector.")
    batch_wait_s: float = Field(0.02, ge=0, le=1, description="Wait to gather frames from more cameras.")
    status_interval_s: float = Field(1.0, gt=0, description="How often camera states go to Redis.")
    plates_app: str | None = Field(
        "plates", description="Serve app of the plate reader (None: not deployed)."
    )
    faces_app: str | None = Field("faces", description="Serve app of the face analyzer (None: not deployed).")


class DecoderGroupImpl:
    """The actor's logic; ``DecoderGroup`` below is the Ray actor class."""

    def __init__(
        self,
        config: dict[str, Any] | GroupConfig,
        detector: DetectorClient | None = None,
        second_stages: SecondStageClient | None = None,
    ) -> None:
        self.config = config if isinstance(config, GroupConfig) else GroupConfig.model_validate(config)
        self._detector = detector
        self._second_client = second_stages
        self._second: SecondStage | None = None  # built on first use: most cameras need none
        self._writer = StreamWriter.from_url(
            self.config.redis_url, self.config.streams, self.config.retention
        )
        self._cameras: dict[str, CameraRuntime] = {}
        self._started: asyncio.Future | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._inflight: asyncio.Semaphore | None = None
        self._membership: asyncio.Lock | None = None
        self._tasks: list[asyncio.Task] = []
        self._model_input: ModelInput | None = None
        self._info: dict[str, Any] = {}
        self._batches_sent = 0
        self._second_stage_errors = 0
        self._inflight_batches = 0
        self._frames_sent = 0
        self._rr = 0  # round-robin start so no camera is always first into a batch
        # Micro-batches overlap in inference but are written in the order they were sent, so each
        # camera's stream is in frame order and its seq numbers increase along the stream.
        self._last_written: asyncio.Future | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    async def _ensure_started(self) -> None:
        # Concurrent add_camera calls must all wait for the one start-up (detector info first).
        if self._started is None:
            self._started = asyncio.ensure_future(self._start())
        await self._started

    async def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._inflight = asyncio.Semaphore(self.config.max_inflight_batches)
        self._membership = asyncio.Lock()
        if self._detector is None:
            self._detector = ServeDetectorClient(self.config.detector_app, self.config.detector_deployment)
        self._info = await self._detector.info()
        self._model_input = ModelInput(
            width=self._info["input_width"], height=self._info["input_height"], color=self._info["color"]
        )
        self._tasks = [
            asyncio.create_task(self._batch_loop(), name="batcher"),
            asyncio.create_task(self._state_loop(), name="state-writer"),
        ]

    async def ping(self) -> str:
        return self.config.group_id

    async def stop(self) -> None:
        if self._started is None:
            return
        for camera_id in list(self._cameras):
            await self.remove_camera(camera_id)
        for task in self._tasks:
            task.cancel()
        self._tasks = []

    # -- cameras ---------------------------------------------------------------------------------
    async def add_camera(self, spec: dict[str, Any] | CameraSpec) -> None:
        """Start decoding a camera; adding one that runs already restarts it with the new spec."""
        await self._ensure_started()
        spec = spec if isinstance(spec, CameraSpec) else CameraSpec.model_validate(spec)
        # One membership change at a time: two concurrent adds of a camera must not both start it.
        async with self._membership:
            previous = await self._stop_camera(spec.camera_id)
            keep_full = spec.plates or spec.faces
            source = make_camera_source(spec, self._model_input, keep_full_frame=keep_full)
            next_seq = await asyncio.to_thread(self._last_seq, spec.camera_id) + 1
            if previous is not None:  # its last messages may not be in Redis yet
                next_seq = max(next_seq, previous.peek_seq())
            self._start_camera(CameraRuntime(spec, source, next_seq))

    def _start_camera(self, runtime: CameraRuntime) -> None:
        spec = runtime.spec
        self._cameras[spec.camera_id] = runtime
        if spec.enabled:
            runtime.thread = threading.Thread(
                target=self._run_camera, args=(runtime,), name=f"camera-{spec.camera_id}", daemon=True
            )
            runtime.thread.start()
        log.info("group %s: camera %s added (%s)", self.config.group_id, spec.camera_id, spec.safe_url)

    def _last_seq(self, camera_id: str) -> int:
        try:
            return self._writer.last_seq(camera_id)
        except SinkError:
            return -1  # Redis down: start at 0; sequence gaps are visible to consumers

    async def remove_camera(self, camera_id: str) -> None:
        if self._started is None:
            return  # never started: it has no cameras
        await self._started
        async with self._membership:
            await self._stop_camera(camera_id)

    async def _stop_camera(self, camera_id: str) -> CameraRuntime | None:
        runtime = self._cameras.pop(camera_id, None)
        if runtime is None:
            return None
        runtime.stop.set()
        if runtime.thread is not None:
            await asyncio.to_thread(runtime.thread.join, 5.0)
        return runtime

    async def camera_ids(self) -> list[str]:
        return list(self._cameras)

    def _run_camera(self, runtime: CameraRuntime) -> None:
        def emit(frame: DecodedFrame) -> None:
            if runtime.slot.put(frame, runtime.stop):
                runtime.count_drop(DropReason.BACKPRESSURE)
            if self._loop is not None and self._wake is not None:
                self._loop.call_soon_threadsafe(self._wake.set)

        try:
            runtime.source.run(emit, runtime.stop)
        except Exception as exc:  # the decoder contract says never; keep the group alive if it does
            runtime.last_error = redact_text(f"{type(exc).__name__}: {exc}")
            log.exception("group %s: camera %s thread crashed", self.config.group_id, runtime.spec.camera_id)

    # -- batching and inference ------------------------------------------------------------------
    def _take_batch(self) -> list[tuple[CameraRuntime, DecodedFrame]]:
        runtimes = list(self._cameras.values())
        if not runtimes:
            return []
        start = self._rr % len(runtimes)
        self._rr += 1
        batch = []
        for runtime in runtimes[start:] + runtimes[:start]:
            if len(batch) >= self.config.max_batch_frames:
                break
            frame = runtime.slot.take()
            if frame is not None:
                batch.append((runtime, frame))
        return batch

    async def _batch_loop(self) -> None:
        assert self._wake is not None and self._inflight is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.config.batch_wait_s:
                await asyncio.sleep(self.config.batch_wait_s)
            await self._inflight.acquire()
            batch = self._take_batch()
            if not batch:
                self._inflight.release()
                continue
            if any(r.slot.has_frame() for r in self._cameras.values()):
                self._wake.set()  # more frames than one micro-batch holds
            previous, written = self._last_written, self._loop.create_future()
            self._last_written = written
            task = asyncio.create_task(self._process(batch, previous, written))
            self._inflight_batches += 1
            task.add_done_callback(self._batch_done)

    def _batch_done(self, _task: asyncio.Task) -> None:
        self._inflight_batches -= 1
        self._inflight.release()

    async def _process(
        self,
        batch: list[tuple[CameraRuntime, DecodedFrame]],
        previous: asyncio.Future | None,
        written: asyncio.Future,
    ) -> None:
        second: list[SecondStageItem] = []
        try:
            rows = await self._infer(batch)
            if previous is not None:
                await asyncio.shield(previous)
            if rows is not None:
                second = await self._write(batch, rows)
        except Exception:  # a bug, not a sink or model failure (those are counted): say where
            log.exception(
                "group %s: processing a micro-batch of %d frames failed", self.config.group_id, len(batch)
            )
        finally:
            written.set_result(None)
        if second:
            # Still inside the in-flight bound, so the full-resolution frames held stay bounded.
            await self._run_second_stages(second)

    async def _infer(self, batch: list[tuple[CameraRuntime, DecodedFrame]]) -> list[np.ndarray] | None:
        frames = np.stack([frame.image for _, frame in batch])
        self._batches_sent += 1
        self._frames_sent += len(batch)
        try:
            return await self._detector.detect(frames)
        except Exception as exc:
            error = redact_text(f"inference failed: {type(exc).__name__}: {exc}")[:500]
            for runtime, _ in batch:
                runtime.count_drop(DropReason.INFERENCE_ERROR, error=error)
            log.warning("group %s: %s", self.config.group_id, error)
            return None

    async def _write(
        self, batch: list[tuple[CameraRuntime, DecodedFrame]], rows: list[np.ndarray]
    ) -> list[SecondStageItem]:
        """Write one detections message per frame; returns the frames that need second stages."""
        class_names = self._info["class_names"]
        messages, accepted, second = [], [], []
        for (runtime, frame), frame_rows in zip(batch, rows, strict=True):
            if self._cameras.get(runtime.spec.camera_id) is not runtime:
                continue  # removed or restarted with a new spec while this frame was in flight
            # Boxes come back in model pixels; the group knows each frame's letterbox scale.
            detections = Detections.from_array(frame_rows).scaled(1.0 / frame.scale)
            seq = runtime.next_seq()
            if frame.full_frame is not None and (runtime.spec.plates or runtime.spec.faces):
                second.append(SecondStageItem(frame, detections, runtime.spec, seq))
            messages.append(
                DetectionMessage.from_detections(
                    detections,
                    class_names,
                    frame,
                    seq=seq,
                    model=self._info["model"],
                    backend=self._info["backend"],
                    simulated=runtime.simulated,
                )
            )
            accepted.append((runtime, frame, [class_names[c] for c in detections.class_id]))
        try:
            await asyncio.to_thread(self._writer.write, messages)
        except SinkError as exc:
            error = redact_text(f"stream write failed: {exc}")[:500]
            for runtime, _, _ in accepted:
                runtime.count_drop(DropReason.SINK_ERROR, error=error)
            return []
        written_at = time.time()
        for runtime, frame, labels in accepted:
            runtime.record_analysed(written_at - frame.capture_ts, labels)
        return second

    async def _run_second_stages(self, items: list[SecondStageItem]) -> None:
        if self._second is None:
            client = self._second_client or ServeSecondStageClient(
                self.config.plates_app, self.config.faces_app
            )
            self._second = SecondStage(client, self._info["class_names"])
        try:
            messages = await self._second.process(items)
            if messages:
                await asyncio.to_thread(self._writer.write, messages)
        except Exception as exc:  # a second stage never costs the detections already written
            self._second_stage_errors += 1
            log.warning(
                "group %s: second stage failed: %s", self.config.group_id, redact_text(str(exc))[:300]
            )
            return
        runtimes = self._cameras
        for message in messages:
            runtime = runtimes.get(message.camera_id)
            if runtime is not None:
                runtime.count_second_stage(message.kind)

    # -- status ----------------------------------------------------------------------------------
    async def status(self) -> dict[str, Any]:
        cameras = [runtime.status(self.config.group_id) for runtime in self._cameras.values()]
        return GroupStatus(
            group_id=self.config.group_id,
            node_id=_node_id(),
            cameras=cameras,
            batches_sent=self._batches_sent,
            mean_batch_frames=round(self._frames_sent / self._batches_sent, 2) if self._batches_sent else 0.0,
            inflight_batches=self._inflight_batches,
            backend=self._info.get("backend"),
            second_stage_failures={
                **(self._second.failures if self._second else {}),
                **({"errors": self._second_stage_errors} if self._second_stage_errors else {}),
            },
        ).model_dump(mode="json")

    async def _state_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.status_interval_s)
            statuses = [runtime.status(self.config.group_id) for runtime in self._cameras.values()]
            if not statuses:
                continue
            with contextlib.suppress(SinkError):  # states are refreshed next tick; results count drops
                await asyncio.to_thread(self._writer.write_states, statuses)


def _node_id() -> str | None:
    try:
        return ray.get_runtime_context().get_node_id()
    except Exception:  # outside Ray (tests of the plain class)
        return None


# The Ray actor. max_restarts=0: the controller reassigns a dead group's cameras to live groups,
# which is faster than waiting for Ray to restart the actor and re-open every camera.
DecoderGroup = ray.remote(max_restarts=0, max_concurrency=1000)(DecoderGroupImpl)
