"""Pipelined writes of messages and camera states to Redis.

One ``write()`` is one pipeline round trip however many messages it carries; one XADD per message
and round trip is several times slower (``benchmarks/redis_writer.py`` measures both). The API is
synchronous and thread-safe (each call takes its own pooled connection); async callers use
``asyncio.to_thread``. Failures raise ``SinkError`` quickly (socket timeouts, no retries: a retried
pipeline could duplicate a half-written batch) and the next call reconnects.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from cluster.status import CameraStatus
from streams.codec import encode
from streams.errors import SinkError
from streams.keys import (
    DETECTIONS,
    FACE_MATCHES,
    FAMILIES,
    PLATE_READS,
    Retention,
    StreamLayout,
)
from streams.schema import CameraStateMessage, StreamMessage

# message kind -> stream family; camera_state lives in hashes
_FAMILIES = {"detections": DETECTIONS, "plate_read": PLATE_READS, "face_match": FACE_MATCHES}


class StreamWriter:
    """Writes to the key layout of ``layout`` with the bounds of ``retention``."""

    def __init__(self, client: redis.Redis, layout: StreamLayout, retention: Retention) -> None:
        self._client = client
        self.layout = layout
        self.retention = retention
        self._keys: dict[tuple[str, str], tuple[str, str]] = {}  # bounded by cameras x families

    @classmethod
    def from_url(
        cls,
        url: str,
        layout: StreamLayout | None = None,
        retention: Retention | None = None,
        *,
        timeout_s: float = 2.0,
    ) -> StreamWriter:
        client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        return cls(client, layout or StreamLayout(), retention or Retention())

    def write(self, messages: Sequence[StreamMessage]) -> int:
        """Append messages to their shard and per-camera streams; sets ``written_ts``. Returns the count."""
        if not messages:
            return 0
        now = time.time()
        keep_camera = self.retention.camera_maxlen
        pipe = self._client.pipeline(transaction=False)
        last_seq: dict[str, int] = {}
        for message in messages:
            shard_key, camera_key = self._stream_keys(message.camera_id, message.kind)
            fields = encode(message.model_copy(update={"written_ts": now}))
            keep_shard = self.retention.shard_maxlen_of(_FAMILIES[message.kind])
            pipe.xadd(shard_key, fields, maxlen=keep_shard, approximate=True)
            if keep_camera:
                pipe.xadd(camera_key, fields, maxlen=keep_camera, approximate=True)
            else:
                seq = getattr(message, "seq", None)
                if seq is not None and seq > last_seq.get(message.camera_id, -1):
                    last_seq[message.camera_id] = seq
        # Without per-camera streams (whose newest entry holds the last seq), keep it in the state hash.
        for camera_id, seq in last_seq.items():
            pipe.hset(self.layout.state_key(camera_id), "last_seq", seq)
        self._execute(pipe, f"writing {len(messages)} messages")
        return len(messages)

    def write_states(self, statuses: Iterable[CameraStatus]) -> int:
        """Store each camera's latest state in its hash (credentials redacted). Returns the count."""
        now = time.time()
        ttl = self.retention.camera_ttl_s
        pipe = self._client.pipeline(transaction=False)
        written = 0
        for status in statuses:
            message = CameraStateMessage.from_status(status).model_copy(update={"written_ts": now})
            key = self.layout.state_key(message.camera_id)
            fields = encode(message)
            # `reported_seq`, not `last_seq`: a status snapshot may lag the writes and must not lower it.
            fields.update(state=message.state.value, reported_seq=status.last_seq, written_ts=repr(now))
            pipe.hset(key, mapping=fields)
            if ttl is not None:
                pipe.expire(key, ttl)
                for family in FAMILIES:  # a no-op for families the camera never wrote
                    pipe.expire(self.layout.camera_stream_key(message.camera_id, family), ttl)
            written += 1
        if written:
            self._execute(pipe, f"writing {written} camera states")
        return written

    def last_seq(self, camera_id: str) -> int:
        """The last sequence number written or reported for the camera, -1 if none.

        A group that takes a camera over continues at ``last_seq + 1``. It is the highest of the
        newest per-camera stream entry and the state hash's ``last_seq`` / ``reported_seq``.
        """
        pipe = self._client.pipeline(transaction=False)
        pipe.hmget(self.layout.state_key(camera_id), ["last_seq", "reported_seq"])
        pipe.xrevrange(self.layout.camera_stream_key(camera_id, DETECTIONS), count=1)
        try:
            stored, newest = pipe.execute()
        except redis.RedisError as exc:
            raise SinkError(f"reading last_seq of {camera_id}: {exc}") from exc
        candidates = [int(value) for value in stored if value is not None]
        candidates += [int(fields[b"seq"]) for _, fields in newest if b"seq" in fields]
        return max(candidates, default=-1)

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except redis.RedisError:
            return False

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> StreamWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _stream_keys(self, camera_id: str, kind: str) -> tuple[str, str]:
        cached = self._keys.get((camera_id, kind))
        if cached is None:
            family = _FAMILIES.get(kind)
            if family is None:
                raise ValueError(
                    f"messages of kind {kind!r} are not appended to streams (kinds: {sorted(_FAMILIES)})"
                )
            cached = (
                self.layout.shard_key_of(camera_id, family),
                self.layout.camera_stream_key(camera_id, family),
            )
            self._keys[(camera_id, kind)] = cached
        return cached

    @staticmethod
    def _execute(pipe: redis.client.Pipeline, what: str) -> None:
        try:
            pipe.execute()
        except redis.RedisError as exc:
            # redis-py has already dropped the broken connection: the next call reconnects.
            raise SinkError(f"{what} failed: {type(exc).__name__}: {exc}") from exc
