"""Stream messages of the second stages: plate reads and face matches (schema v1 kinds).

Staged here until ``streams/schema.py`` is free to edit; they then move there, join ``StreamMessage``
and get stream families (``plate_reads``, ``face_matches``) with their own retention. Field rules follow
``DetectionMessage``: boxes in original-frame pixels, ``seq`` is the sequence number of the camera's
detections message for the same frame (join key), times in Unix seconds.

Privacy: a ``face_match`` message carries an embedding only when ``SecondStageConfig.face_embeddings``
is on (off by default); by default only faces that match the watchlist produce messages.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat

CAMERA_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
CameraId = Annotated[str, Field(pattern=CAMERA_ID_PATTERN, description="Camera id (letters, digits, _ . -).")]
Box = Annotated[list[FiniteFloat], Field(min_length=4, max_length=4)]
Point = Annotated[list[FiniteFloat], Field(min_length=2, max_length=2)]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_serialization_defaults_required=True)


class _FrameFields(_Message):
    v: Literal[1] = Field(1, description="Schema version.")
    camera_id: CameraId
    seq: int = Field(ge=0, description="Sequence number of the detections message of the same frame.")
    frame_index: int = Field(ge=0, description="Index of the frame in the decoded stream.")
    pts_s: FiniteFloat | None = Field(description="Presentation time in seconds; null when the source has none.")
    capture_ts: FiniteFloat = Field(description="Unix time (s) when the frame was decoded.")
    written_ts: FiniteFloat | None = Field(None, description="Unix time (s) when the writer sent it to Redis.")
    frame_width: int = Field(gt=0, description="Original frame width in pixels.")
    frame_height: int = Field(gt=0, description="Original frame height in pixels.")
    model: str = Field(description="Second-stage model(s), e.g. 'lpd_yunet_2023mar+cct_xs_v1_global'.")
    backend: str = Field(description="Inference backend of the second stage, e.g. 'onnxruntime-cpu'.")


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
    person_box: Box | None = Field(description="The person detection the face was found in; null for whole frames.")
    identity_id: str | None = Field(description="Matched watchlist identity; null when no match.")
    label: str | None = Field(description="Display label of the matched identity.")
    similarity: float | None = Field(description="Cosine similarity to the matched identity, -1..1.")
    embedding: list[float] | None = Field(
        None, description="L2-normalised face embedding; only present where the deployment enables it."
    )


SecondStageMessage = PlateReadMessage | FaceMatchMessage
