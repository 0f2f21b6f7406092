"""The Python consumer: consumer groups over the shard streams, plus cheap per-camera follow.

Entries this reader cannot decode (a newer schema version, an unknown kind) are surfaced, never
dropped: they come back with ``message=None`` and ``error`` set, so the caller can log, dead-letter
and ack them instead of leaving poison entries pending forever. ``unwrap()`` raises instead.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Sequence

import redis
from pydantic import BaseModel, ConfigDict, Field

from streams.codec import decode
from streams.errors import UnsupportedMessageError
from streams.keys import DETECTIONS, StreamLayout
from streams.schema import STREAM_MESSAGE, SUPPORTED_VERSIONS, CameraStateMessage, StreamMessage


class ReceivedMessage(BaseModel):
    """One stream entry as read from Redis."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stream: str = Field(description="Key of the stream the entry was read from.")
    entry_id: str = Field(description="Redis entry id ('<ms>-<n>'), needed to ack.")
    message: StreamMessage | None = Field(
        description="The parsed message; None when it could not be decoded."
    )
    error: str | None = Field(None, description="Why the entry could not be decoded.")
    raw: dict[str, str] | None = Field(None, description="The entry's fields, kept only when undecodable.")

    def unwrap(self) -> StreamMessage:
        if self.message is None:
            raise UnsupportedMessageError(f"{self.stream} {self.entry_id}: {self.error}")
        return self.message


def to_received(stream: str, entry_id: str, fields: dict[str, str]) -> ReceivedMessage:
    try:
        return ReceivedMessage(stream=stream, entry_id=entry_id, message=decode(fields))
    except UnsupportedMessageError as exc:
        return ReceivedMessage(stream=stream, entry_id=entry_id, message=None, error=str(exc), raw=fields)


class StreamReader:
    """One consumer of consumer group ``group`` over the shard streams (all of them, or ``shards``).

    ``start_id`` applies only when the group is created: ``"$"`` reads what is written from then on,
    ``"0"`` everything still retained. Within a shard, and so within a camera, entries arrive in order.
    ``family`` picks the stream family: ``detections`` (default), ``plate_reads`` or ``face_matches``.
    """

    def __init__(
        self,
        url: str,
        layout: StreamLayout | None = None,
        group: str = "cctv",
        consumer: str | None = None,
        *,
        shards: Sequence[int] | None = None,
        start_id: str = "$",
        family: str = DETECTIONS,
    ) -> None:
        self.layout = layout or StreamLayout()
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        chosen = range(self.layout.shards) if shards is None else shards
        if not chosen:
            raise ValueError("shards must name at least one shard (or be None for all)")
        self.family = family  # detections, plate_reads or face_matches (streams.keys.FAMILIES)
        self.keys = [self.layout.shard_key(s, family) for s in chosen]
        self._timeout_s = 10.0
        self._client = redis.Redis.from_url(
            url, decode_responses=True, socket_timeout=self._timeout_s, socket_connect_timeout=self._timeout_s
        )
        self._create_groups(start_id)

    def _create_groups(self, start_id: str) -> None:
        for key in self.keys:
            try:
                self._client.xgroup_create(key, self.group, id=start_id, mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):  # the group exists already: fine
                    raise

    def read(self, count: int = 100, block_ms: int | None = None) -> list[ReceivedMessage]:
        """New entries for this consumer: at most ``count`` per shard, waiting up to ``block_ms``."""
        if block_ms is not None and not 0 < block_ms < (self._timeout_s - 1) * 1000:
            raise ValueError(f"block_ms must be in 1..{int((self._timeout_s - 1) * 1000)} (socket timeout)")
        reply = self._client.xreadgroup(
            self.group, self.consumer, dict.fromkeys(self.keys, ">"), count=count, block=block_ms
        )
        return [
            to_received(key, entry_id, fields) for key, entries in reply or [] for entry_id, fields in entries
        ]

    def ack(self, received: Iterable[ReceivedMessage]) -> int:
        """Acknowledge processed entries; returns how many were pending and are now acked."""
        by_stream: dict[str, list[str]] = {}
        for item in received:
            by_stream.setdefault(item.stream, []).append(item.entry_id)
        if not by_stream:
            return 0
        pipe = self._client.pipeline(transaction=False)
        for stream, ids in by_stream.items():
            pipe.xack(stream, self.group, *ids)
        return sum(pipe.execute())

    def claim_stale(self, min_idle_ms: int, count: int = 100) -> list[ReceivedMessage]:
        """Take over entries other consumers read but did not ack for ``min_idle_ms`` (e.g. they died).

        At most about ``count`` per shard; call again until it returns nothing. Entries trimmed by
        retention while pending are dropped from the pending list by Redis and not returned.
        """
        claimed: list[ReceivedMessage] = []
        for key in self.keys:
            cursor, taken = "0-0", 0
            while taken < count:
                reply = self._client.xautoclaim(
                    key, self.group, self.consumer, min_idle_ms, cursor, count=count
                )
                cursor, entries = reply[0], reply[1]
                for entry_id, fields in entries:
                    if fields is not None:
                        claimed.append(to_received(key, entry_id, fields))
                taken += len(entries)
                if cursor == "0-0":
                    break
        return claimed

    def pending(self) -> int:
        """Entries delivered to some consumer of the group and not yet acked, over this reader's shards."""
        pipe = self._client.pipeline(transaction=False)
        for key in self.keys:
            pipe.xpending(key, self.group)
        return sum(info["pending"] for info in pipe.execute())

    def latest(self, camera_id: str, n: int = 10) -> list[ReceivedMessage]:
        """The camera's ``n`` most recent messages, newest first (from its per-camera stream)."""
        key = self.layout.camera_stream_key(camera_id, self.family)
        return [
            to_received(key, entry_id, fields) for entry_id, fields in self._client.xrevrange(key, count=n)
        ]

    def camera_state(self, camera_id: str) -> CameraStateMessage | None:
        """The camera's latest stored state, or None if it never reported one (or it expired)."""
        fields = self._client.hgetall(self.layout.state_key(camera_id))
        if "json" not in fields:
            return None
        if fields.get("v", "").isdigit() and int(fields["v"]) in SUPPORTED_VERSIONS:
            message = STREAM_MESSAGE.validate_json(fields["json"])
            if isinstance(message, CameraStateMessage):
                return message
        raise UnsupportedMessageError(
            f"state of {camera_id}: version {fields.get('v')!r} kind {fields.get('kind')!r} not supported"
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> StreamReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
