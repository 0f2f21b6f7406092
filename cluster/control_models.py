"""What the control plane exchanges with its clients: request and response models, and safe errors.

Every response carries the camera's public form (``CameraSpec.public_dict()``: URL redacted); the
secret form only ever travels controller -> DecoderGroup. Validation errors are reported field by field
without the offending input, because that input may be a URL with credentials.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, create_model, model_validator

from cluster.status import CameraStatus
from decoders.config import CameraSpec
from decoders.redact import redact_text


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CameraNotFound(KeyError):
    """No camera with this id in the inventory."""


class CameraExists(ValueError):
    """Create refused: a camera with this id is already in the inventory."""


class InvalidCamera(ValueError):
    """A camera spec (or patch result) failed validation; ``errors`` are field-level and value-free."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in errors))
        self.errors = errors

    def __reduce__(self):  # crosses the Ray boundary with its errors intact
        return (type(self), (self.errors,))


class FieldError(_Model):
    loc: list[str | int] = Field(description="Path to the field, e.g. ['cameras', 3, 'fps'].")
    msg: str = Field(description="What is wrong (credentials redacted).")
    type: str = Field(description="Pydantic error type, e.g. 'greater_than'.")


def safe_errors(exc: ValidationError, prefix: tuple[str | int, ...] = ()) -> list[FieldError]:
    """Field-level errors without ``input``/``ctx`` (which could echo a URL with a password)."""
    return [
        FieldError(loc=[*prefix, *err["loc"]], msg=redact_text(err["msg"]), type=err["type"])
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    ]


# Partial update: every CameraSpec field but the id, all optional; derived so it never drifts.
CameraPatch = create_model(
    "CameraPatch",
    __config__=ConfigDict(extra="forbid"),
    **{
        name: (info.annotation | None, Field(None, description=info.description))
        for name, info in CameraSpec.model_fields.items()
        if name != "camera_id"
    },
)


def patch_changes(patch: BaseModel) -> dict[str, Any]:
    """The fields set in a ``CameraPatch`` as JSON values; the URL in clear (it is for the controller)."""
    changes = patch.model_dump(mode="json", exclude_unset=True)
    url = getattr(patch, "url", None)
    if "url" in changes and isinstance(url, SecretStr):
        changes["url"] = url.get_secret_value()
    return changes


def apply_patch(spec: CameraSpec, changes: dict[str, Any]) -> CameraSpec:
    """``spec`` with ``changes`` applied; raises ValidationError if the result is invalid."""
    return CameraSpec.model_validate(spec.secret_dict() | changes)


class ImportRequest(_Model):
    cameras: list[CameraSpec] = Field(description="Cameras to create or update (by camera_id).")
    prune: bool = Field(False, description="Also remove every camera that is not in this list.")

    @model_validator(mode="after")
    def _unique_ids(self) -> ImportRequest:
        duplicates = sorted(c for c, n in Counter(s.camera_id for s in self.cameras).items() if n > 1)
        if duplicates:
            raise ValueError(f"duplicate camera_id: {', '.join(duplicates[:10])}")
        return self


class ImportResult(_Model):
    created: list[str] = Field(default_factory=list, description="Ids of new cameras.")
    updated: list[str] = Field(default_factory=list, description="Ids whose spec changed (restarted).")
    unchanged: int = Field(0, description="Cameras already present with the same spec.")
    removed: list[str] = Field(default_factory=list, description="Ids removed (prune=true).")
    plan_ms: float = Field(0.0, description="Time spent computing the assignment.")


CameraPhase = Literal["unassigned", "assigned", "disabled"]


class CameraView(_Model):
    camera: dict[str, Any] = Field(description="The camera's public spec (URL redacted).")
    phase: CameraPhase = Field(description="Control-plane view: disabled, unassigned or assigned.")
    group_id: str | None = Field(None, description="The DecoderGroup decoding it.")
    cost: float = Field(description="Decode cost used for placement (CPU s/s).")
    cost_measured: bool = Field(description="True once the cost comes from the group's measurement.")
    status: CameraStatus | None = Field(None, description="Last status from its group (None until reported).")


class CameraList(_Model):
    total: int = Field(description="Cameras matching the filter.")
    offset: int
    cameras: list[CameraView]


class GroupSummary(_Model):
    group_id: str
    phase: Literal["starting", "ready"] = Field(description="'starting' until its first successful ping.")
    cameras: int = Field(description="Cameras assigned to it.")
    load: float = Field(description="Summed decode cost of its cameras (CPU s/s).")
    node_id: str | None = None
    batches_sent: int = 0
    status_age_s: float | None = Field(None, description="Seconds since its last status report.")


class FailoverRecord(_Model):
    group_id: str = Field(description="The group that died or stopped answering.")
    cameras: int = Field(description="Cameras it held.")
    reason: str
    detected_at: float = Field(description="Wall-clock time (time.time()) of detection.")
    reassigned_s: float | None = Field(
        None, description="Detection -> every camera added to a live group (None while in progress)."
    )


class ClusterStatus(_Model):
    cameras: int = Field(description="Cameras in the inventory.")
    enabled: int
    assigned: int
    simulated: int = Field(description="Cameras with a sim:// source (no real decoding).")
    by_state: dict[str, int] = Field(description="Camera states as last reported (plus 'unreported').")
    groups: list[GroupSummary]
    failovers: list[FailoverRecord] = Field(description="Most recent failovers, newest last.")
    last_plan_ms: float = Field(description="Duration of the last assignment computation.")
    last_status_poll_age_s: float | None
    controller_pid: int
    controller_rss_bytes: int
