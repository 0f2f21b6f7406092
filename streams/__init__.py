"""Results in Redis streams: message schema, key layout, pipelined writer, consumer-group reader, tail.

See ``docs/streams.md``. The schema is published as JSON Schema under ``streams/schema/``.
"""

from streams.errors import SinkError, UnsupportedMessageError
from streams.keys import Retention, StreamLayout
from streams.reader import ReceivedMessage, StreamReader
from streams.schema import (
    SCHEMA_VERSION,
    CameraStateMessage,
    Detection,
    DetectionMessage,
    FaceMatchMessage,
    PlateReadMessage,
    StreamMessage,
)
from streams.writer import StreamWriter

__all__ = [
    "SCHEMA_VERSION",
    "CameraStateMessage",
    "Detection",
    "DetectionMessage",
    "FaceMatchMessage",
    "PlateReadMessage",
    "ReceivedMessage",
    "Retention",
    "SinkError",
    "StreamLayout",
    "StreamMessage",
    "StreamReader",
    "StreamWriter",
    "UnsupportedMessageError",
]
