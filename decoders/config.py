"""Camera configuration: the validated boundary between operators and the decoders."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from decoders.redact import redact_url


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SamplingMode(StrEnum):
    FPS = "fps"  # sample by presentation time at `fps`
    KEYFRAMES = "keyframes"  # decode keyframes only (skip_frame=NONKEY); cheapest
    ALL = "all"  # every decoded frame


class SourceKind(StrEnum):
    FILE = "file"
    RTSP = "rtsp"
    HTTP = "http"
    SIM = "sim"


def source_kind(url: str) -> SourceKind:
    lower = url.lower()
    if lower.startswith(("rtsp://", "rtsps://")):
        return SourceKind.RTSP
    if lower.startswith(("http://", "https://")):
        return SourceKind.HTTP
    if lower.startswith("sim://"):
        return SourceKind.SIM
    return SourceKind.FILE


class BackoffPolicy(StrictModel):
    initial_s: float = Field(0.5, gt=0, description="First reconnect delay.")
    max_s: float = Field(30.0, gt=0, description="Cap on the reconnect delay.")
    multiplier: float = Field(2.0, ge=1, description="Growth factor per consecutive failure.")
    jitter: float = Field(0.2, ge=0, le=1, description="Random +/- fraction applied to each delay.")
    max_attempts: int | None = Field(
        None, ge=1, description="Consecutive failures before the camera is marked failed; None = forever."
    )


_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "file://", "sim://")


class CameraSpec(StrictModel):
    camera_id: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="Unique id: letters, digits, '_', '.', '-' (max 64); used in stream keys.",
    )
    url: SecretStr = Field(
        description="rtsp(s)://, http(s):// (MPEG-TS/MJPEG), file:// or a local path, or sim:// (simulated). "
        "May carry credentials; they are never logged or published."
    )
    sampling: SamplingMode = Field(SamplingMode.FPS, description="How frames are chosen for analysis.")
    fps: float = Field(2.0, gt=0, le=60, description="Analysis rate when sampling='fps'.")
    loop: bool = Field(False, description="Files only: restart at the end (a file played as a live camera).")
    realtime: bool = Field(True, description="Files only: pace by presentation time like a live camera.")
    rtsp_transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP transport.")
    open_timeout_s: float = Field(10.0, gt=0, le=120, description="Timeout for connecting/opening.")
    read_timeout_s: float = Field(10.0, gt=0, le=120, description="Timeout for one network read.")
    stall_timeout_s: float = Field(10.0, gt=0, le=600, description="No frame for this long -> reconnect.")
    reconnect: BackoffPolicy = Field(default_factory=BackoffPolicy, description="Reconnect policy.")
    enabled: bool = Field(True, description="Disabled cameras are kept in the inventory but not decoded.")
    plates: bool = Field(False, description="Read licence plates of detected vehicles (second stage).")
    faces: bool = Field(False, description="Detect faces in detected persons (second stage); off by default.")
    labels: dict[str, str] = Field(
        default_factory=dict, description="Free-form operator labels (site, zone)."
    )

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value().strip()
        if not raw:
            raise ValueError("must not be empty")
        if "://" in raw and not raw.lower().startswith(_SCHEMES):
            scheme = raw.split("://", 1)[0]
            valid = ", ".join(s[:-3] for s in _SCHEMES)
            raise ValueError(f"unsupported scheme {scheme!r}; use one of {valid}")
        return SecretStr(raw)

    @property
    def safe_url(self) -> str:
        """The URL with credentials redacted: the only form that may appear in logs, status or streams."""
        return redact_url(self.url.get_secret_value())

    @property
    def kind(self) -> SourceKind:
        return source_kind(self.url.get_secret_value())

    @property
    def is_file(self) -> bool:
        return self.kind is SourceKind.FILE

    @property
    def is_simulated(self) -> bool:
        """A ``sim://`` camera: frames without decoding, labelled simulated wherever they show."""
        return self.kind is SourceKind.SIM

    def public_dict(self) -> dict:
        """JSON-safe dict for APIs and status: the URL redacted."""
        data = self.model_dump(mode="json")
        data["url"] = self.safe_url
        return data

    def secret_dict(self) -> dict:
        """JSON dict including the real URL, for passing to the actor that decodes it (never to logs)."""
        data = self.model_dump(mode="json")
        data["url"] = self.url.get_secret_value()
        return data
