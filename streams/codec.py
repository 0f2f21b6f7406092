"""Stream entry encoding: a few flat fields for cheap filtering plus the full message as JSON.

Flat fields (``v``, ``kind``, ``camera_id``, ``seq``) let consumers in any language filter or route
without parsing JSON; ``json`` is the message, valid against ``streams/schema/*.json``.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError

from streams.errors import UnsupportedMessageError
from streams.schema import KINDS, STREAM_MESSAGE, SUPPORTED_VERSIONS, StreamMessage


def encode(message: StreamMessage) -> dict[str, str | int]:
    fields: dict[str, str | int] = {"v": message.v, "kind": message.kind, "camera_id": message.camera_id}
    seq = getattr(message, "seq", None)
    if seq is not None:
        fields["seq"] = seq
    fields["json"] = message.model_dump_json()
    return fields


def decode(fields: Mapping[str, str]) -> StreamMessage:
    """Parse one entry (decoded strings); raises ``UnsupportedMessageError`` with the reason."""
    version = fields.get("v")
    if version is None or not version.isdigit() or int(version) not in SUPPORTED_VERSIONS:
        raise UnsupportedMessageError(
            f"schema version {version!r} is not supported by this reader (supports "
            f"{sorted(SUPPORTED_VERSIONS)}); upgrade the cctv-analytics package"
        )
    kind = fields.get("kind")
    if kind not in KINDS:
        raise UnsupportedMessageError(f"unknown message kind {kind!r} (known: {sorted(KINDS)})")
    try:
        return STREAM_MESSAGE.validate_json(fields.get("json", ""))
    except ValidationError as exc:
        raise UnsupportedMessageError(f"invalid {kind} v{version} payload: {exc}") from exc
