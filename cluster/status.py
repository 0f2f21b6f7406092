"""Status models reported by DecoderGroups: per camera, then per group. Pydantic at the boundary."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class CameraState(StrEnum):
    CONNECTING = "connecting"
    ONLINE = "online"
    STALLED = "stalled"
    BACKOFF = "backoff"
    FAILED = "failed"
    DISABLED = "disabled"
    STOPPED = "stopped"  # a finite file reached its end


class DropReason(StrEnum):
    BACKPRESSURE = "backpressure"  # a newer frame replaced one still waiting for inference
    DECODE_ERROR = "decode_error"
    INFERENCE_ERROR = "inference_error"
    SINK_ERROR = "sink_error"  # Redis write failed


class LatencySummary(BaseModel):
    p50_ms: float | None = None
    p99_ms: float | None = None
    samples: int = 0


class CameraStatus(BaseModel):
    model_config = ConfigDict(extra="forbid")

    camera_id: str
    url: str = Field(description="Redacted URL.")
    group_id: str | None = None
    state: CameraState = CameraState.CONNECTING
    last_error: str | None = Field(None, description="Last error, redacted.")
    simulated: bool = False
    frames_decoded: int = 0
    frames_sampled: int = 0
    frames_analysed: int = 0
    reconnects: int = 0
    decoded_fps: float = 0.0
    analysed_fps: float = 0.0
    decode_cpu_s_per_s: float = Field(0.0, description="Measured decode CPU seconds per wall second (cost).")
    latency: LatencySummary = Field(default_factory=LatencySummary)
    detections_by_class: dict[str, int] = Field(default_factory=dict)
    second_stage_messages: dict[str, int] = Field(
        default_factory=dict, description="Plate reads / face matches written, by message kind."
    )
    dropped: dict[DropReason, int] = Field(default_factory=dict)
    last_seq: int = -1


class GroupStatus(BaseModel):
    group_id: str
    node_id: str | None = None
    cameras: list[CameraStatus] = Field(default_factory=list)
    batches_sent: int = 0
    mean_batch_frames: float = 0.0
    inflight_batches: int = 0
    backend: str | None = None
    second_stage_failures: dict[str, int] = Field(
        default_factory=dict, description="Failed second-stage requests by stage (detections were kept)."
    )
