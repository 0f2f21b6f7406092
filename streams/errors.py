"""Typed errors of the streams package."""

from __future__ import annotations


class SinkError(RuntimeError):
    """A write to Redis failed; the caller counts the messages as dropped (reason ``sink_error``).

    Some messages of the failed call may have been written (a pipeline is not a transaction):
    consumers deduplicate by ``(camera_id, seq)``.
    """


class UnsupportedMessageError(ValueError):
    """An entry this reader cannot decode: an unknown schema version or kind, or an invalid payload."""
