"""Message schema v1: what the writer puts in Redis and what every consumer may rely on.

Each message is a pydantic model tagged by ``kind`` and carrying the schema version ``v``. The same
models produce the published JSON Schema (``python -m streams.export_schema``), so this file is the
single source of truth for ``docs/streams.md`` and for non-Python consumers. Versioning policy: any
change a strict validator would notice (field added, removed, renamed, retyped) makes a new ``v``; a new
``kind`` may be added within a version (consumers skip kinds they do not know by the flat ``kind`` field).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, TypeAdapter, field_validator

from cluster.status import CameraState, CameraStatus, DropReason
from decoders.redact import redact_text, redact_url
from models.detections import Detections

SCHEMA_VERSION = 1
SUPPORTED_VERSIONS = frozenset({1})

# Same rule as decoders.config.CameraSpec.camera_id (a test keeps them equal): safe inside a key.
CAMERA_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
CameraId = Annotated[str, Field(pattern=CAMERA_ID_PATTERN, description="Camera id (letters, digits, _ . -).")]


class _Message(BaseModel):
    # Frozen: a message is a value that crosses process and language boundaries.
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_serialization_defaults_required=True)


class Detection(_Message):
    """One detected object."""

    label: str = Field(description="Class name, e.g. 'car'; 'class_<id>' when the model has no name for it.")
    class_id: int = Field(ge=0, description="Class index in the model's label set.")
    score: float = Field(ge=0.0, le=1.0, description="Detector confidence, 0..1.")
    box: Annotated[list[FiniteFloat], Field(min_length=4, max_length=4)] = Field(
        description="[x1, y1, x2, y2] in pixels of the original (full-resolution) frame, clipped to it."
    )


class FrameRef(Protocol):
    """The frame metadata ``from_detections`` needs (``decoders.frame.DecodedFrame`` has it)."""

    camera_id: str
    frame_index: int
    pts_s: float
    capture_ts: float
    width: int
    height: int


class _FrameFields(_Message):
    """The fields every per-frame message kind carries (schema v1)."""

    v: Literal[1] = Field(1, description="Schema version.")
    camera_id: CameraId
    seq: int = Field(
        ge=0,
        description="Per-camera sequence number of the frame's detections message: strictly increasing, "
        "gaps mean dropped frames; second-stage messages carry the seq of their frame.",
    )
    frame_index: int = Field(
        ge=0, description="Index of the frame in the decoded stream (restarts on reconnect)."
    )
    pts_s: FiniteFloat | None = Field(
        description="Presentation time in seconds; null when the source has none."
    )
    capture_ts: FiniteFloat = Field(description="Unix time (s) when the frame was decoded: start of latency.")
    written_ts: FiniteFloat | None = Field(
        None, description="Unix time (s) when the writer sent it to Redis."
    )
    frame_width: int = Field(gt=0, description="Original frame width in pixels.")
    frame_height: int = Field(gt=0, description="Original frame height in pixels.")
    model: str = Field(
        description="Model(s) that produced it, e.g. 'yolox_nano' or 'lpd_yunet_2023mar+cct_xs_v1_global'."
    )
    backend: str = Field(description="Inference backend, e.g. 'onnxruntime-cpu'.")


class DetectionMessage(_FrameFields):
    """Detections of one analysed frame of one camera."""

    kind: Literal["detections"] = Field("detections", description="Message kind (discriminator).")
    simulated: bool = Field(
        False, description="True for simulated cameras or simulated inference (demo data)."
    )
    detections: list[Detection] = Field(description="Detected objects; may be empty.")

    @classmethod
    def from_detections(
        cls,
        detections: Detections,
        class_names: Sequence[str],
        frame: FrameRef,
        *,
        seq: int,
        model: str,
        backend: str,
        simulated: bool = False,
    ) -> DetectionMessage:
        """Build from a ``Detections`` whose boxes are already in original-frame pixels."""
        limits = np.array([frame.width, frame.height, frame.width, frame.height], np.float64)
        boxes = np.clip(detections.xyxy.astype(np.float64), 0.0, limits)
        # Rounded in float64 (float32 prints 17 digits): 0.01 px and 1e-4 score are far below
        # detector noise and make the JSON about half as long.
        rows = zip(
            detections.class_id.tolist(),
            np.round(detections.confidence.astype(np.float64), 4).tolist(),
            np.round(boxes, 2).tolist(),
            strict=True,
        )
        return cls(
            camera_id=frame.camera_id,
            seq=seq,
            frame_index=frame.frame_index,
            pts_s=frame.pts_s,
            capture_ts=frame.capture_ts,
            frame_width=frame.width,
            frame_height=frame.height,
            model=model,
            backend=backend,
            simulated=simulated,
            detections=[
                Detection(label=_label(class_names, cid), class_id=cid, score=score, box=box)
                for cid, score, box in rows
            ],
        )


def _label(class_names: Sequence[str], class_id: int) -> str:
    return class_names[class_id] if 0 <= class_id < len(class_names) else f"class_{class_id}"


class CameraCounters(_Message):
    """Cumulative counters since the camera was added to its current group."""

    frames_decoded: int = Field(ge=0, description="Frames decoded.")
    frames_sampled: int = Field(ge=0, description="Frames chosen for analysis.")
    frames_analysed: int = Field(ge=0, description="Frames that got detections back.")
    reconnects: int = Field(ge=0, description="Reconnects to the source.")
    last_seq: int = Field(ge=-1, description="Last sequence number the group assigned; -1 before the first.")
    dropped: dict[DropReason, int] = Field(description="Frames dropped, by reason.")
    detections_by_class: dict[str, int] = Field(description="Detections counted, by label.")


class CameraRates(_Message):
    """Recent rates and latency of the camera."""

    decoded_fps: float = Field(ge=0, description="Frames decoded per second.")
    analysed_fps: float = Field(ge=0, description="Frames analysed per second.")
    decode_cpu_s_per_s: float = Field(ge=0, description="Decode CPU seconds per wall second (decode cost).")
    latency_p50_ms: float | None = Field(description="Median capture-to-result latency (ms).")
    latency_p99_ms: float | None = Field(description="99th percentile capture-to-result latency (ms).")


class CameraStateMessage(_Message):
    """Latest state of one camera (stored in the camera's state hash, not appended to streams)."""

    v: Literal[1] = Field(1, description="Schema version.")
    kind: Literal["camera_state"] = Field("camera_state", description="Message kind (discriminator).")
    camera_id: CameraId
    group_id: str | None = Field(description="DecoderGroup that owns the camera.")
    url: str = Field(description="Source URL with credentials redacted.")
    state: CameraState = Field(description="Connection state.")
    last_error: str | None = Field(description="Last error, credentials redacted.")
    simulated: bool = Field(description="True for simulated cameras.")
    counters: CameraCounters = Field(description="Cumulative counters.")
    rates: CameraRates = Field(description="Recent rates and latency.")
    written_ts: FiniteFloat | None = Field(None, description="Unix time (s) when the writer stored it.")

    # Defence in depth: statuses should arrive redacted, but a secret must never reach Redis.
    @field_validator("url")
    @classmethod
    def _redact_url(cls, value: str) -> str:
        return redact_url(value)

    @field_validator("last_error")
    @classmethod
    def _redact_error(cls, value: str | None) -> str | None:
        return None if value is None else redact_text(value)

    @classmethod
    def from_status(cls, status: CameraStatus) -> CameraStateMessage:
        return cls(
            camera_id=status.camera_id,
            group_id=status.group_id,
            url=status.url,
            state=status.state,
            last_error=status.last_error,
            simulated=status.simulated,
            counters=CameraCounters(
                frames_decoded=status.frames_decoded,
                frames_sampled=status.frames_sampled,
                frames_analysed=status.frames_analysed,
                reconnects=status.reconnects,
                last_seq=status.last_seq,
                dropped=dict(status.dropped),
                detections_by_class=dict(status.detections_by_class),
            ),
            rates=CameraRates(
                decoded_fps=status.decoded_fps,
                analysed_fps=status.analysed_fps,
                decode_cpu_s_per_s=status.decode_cpu_s_per_s,
                latency_p50_ms=status.latency.p50_ms,
                latency_p99_ms=status.latency.p99_ms,
            ),
        )


# -- second stages: plate reads and face matches (cluster.second_stage) ------------------------------
# Boxes in original-frame pixels; ``seq`` is the seq of the camera's detections message for the same
# frame (the join key). Privacy: a face_match carries an embedding only where the deployment enables
# ``SecondStageConfig.face_embeddings`` (off by default), and by default only watchlist matches are sent.
Box = Annotated[list[FiniteFloat], Field(min_length=4, max_length=4)]
Point = Annotated[list[FiniteFloat], Field(min_length=2, max_length=2)]


class PlateReadMessage(_FrameFields):
    """One licence plate read on one vehicle of one frame."""

    kind: Literal["plate_read"] = Field("plate_read", description="Message kind (discriminator).")
    vehicle_box: Box = Field(description="[x1, y1, x2, y2] of the vehicle detection, original pixels.")
    vehicle_label: str = Field(description="Detector label of the vehicle, e.g. 'car'.")
    vehicle_score: float = Field(ge=0, le=1, description="Detector confidence of the vehicle.")
    plate_corners: Annotated[list[Point], Field(min_length=4, max_length=4)] = Field(
        description="Plate corners [[x, y]] top-left, top-right, bottom-right, bottom-left, original pixels."
    )
    plate_score: float = Field(ge=0, le=1, description="Plate detector confidence.")
    text: str = Field(description="Plate text without spaces or padding, e.g. '5AU5341'.")
    char_confidence: list[float] = Field(description="OCR probability of each character of `text`, 0..1.")
    confidence: float = Field(ge=0, le=1, description="The weakest character's probability.")


class FaceMatchMessage(_FrameFields):
    """One face of one frame: a watchlist match, or any face where the camera reports all faces."""

    kind: Literal["face_match"] = Field("face_match", description="Message kind (discriminator).")
    box: Box = Field(description="[x1, y1, x2, y2] of the face, original pixels.")
    score: float = Field(ge=0, le=1, description="Face detector confidence.")
    landmarks: Annotated[list[Point], Field(min_length=5, max_length=5)] = Field(
        description="Right eye, left eye, nose tip, right and left mouth corner, original pixels."
    )
    person_box: Box | None = Field(
        description="The person detection the face was found in; null for whole frames."
    )
    identity_id: str | None = Field(description="Matched watchlist identity; null when no match.")
    label: str | None = Field(description="Display label of the matched identity.")
    similarity: float | None = Field(description="Cosine similarity to the matched identity, -1..1.")
    embedding: list[float] | None = Field(
        None, description="L2-normalised face embedding; only present where the deployment enables it."
    )


SecondStageMessage = PlateReadMessage | FaceMatchMessage

# `kind` selects the model; consumers skip kinds they do not know.
StreamMessage = Annotated[
    DetectionMessage | CameraStateMessage | PlateReadMessage | FaceMatchMessage, Field(discriminator="kind")
]
STREAM_MESSAGE = TypeAdapter(StreamMessage)
KINDS: frozenset[str] = frozenset({"detections", "camera_state", "plate_read", "face_match"})
