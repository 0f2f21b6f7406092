"""Key layout and retention: which Redis keys hold what, and how long they are kept.

- Shard streams ``{prefix}:detections:{s07}``: every message of a camera goes to one shard chosen by
  ``crc32(camera_id) % shards`` (stable across processes and languages), so N consumers in a consumer
  group read everything by reading ``shards`` keys instead of polling one key per camera.
- Per-camera keys ``{prefix}:camera:{<camera_id>}:detections`` (short stream) and
  ``{prefix}:camera:{<camera_id>}:state`` (hash): follow one camera cheaply.

The ``{...}`` parts are Redis Cluster hash tags: a camera's keys share a slot (one node serves a camera),
and each shard has its own tag so that the shards spread over slots and nodes.
"""

from __future__ import annotations

import zlib

from pydantic import BaseModel, ConfigDict, Field

DETECTIONS = "detections"  # stream family of DetectionMessage
PLATE_READS = "plate_reads"  # stream family of PlateReadMessage
FACE_MATCHES = "face_matches"  # stream family of FaceMatchMessage
FAMILIES = (DETECTIONS, PLATE_READS, FACE_MATCHES)


class StreamLayout(BaseModel):
    """Names of every key the streams package reads or writes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefix: str = Field("cctv", pattern=r"^[A-Za-z0-9_.-]+$", description="First part of every key.")
    shards: int = Field(16, ge=1, le=4096, description="Shard streams per family (consumer parallelism).")

    def shard_of(self, camera_id: str) -> int:
        return zlib.crc32(camera_id.encode()) % self.shards

    def shard_key(self, shard: int, family: str = DETECTIONS) -> str:
        if not 0 <= shard < self.shards:
            raise ValueError(f"shard {shard} out of range 0..{self.shards - 1}")
        width = max(2, len(str(self.shards - 1)))
        return f"{self.prefix}:{family}:{{s{shard:0{width}d}}}"

    def shard_keys(self, family: str = DETECTIONS) -> list[str]:
        return [self.shard_key(s, family) for s in range(self.shards)]

    def shard_key_of(self, camera_id: str, family: str = DETECTIONS) -> str:
        return self.shard_key(self.shard_of(camera_id), family)

    def camera_stream_key(self, camera_id: str, family: str = DETECTIONS) -> str:
        return f"{self.prefix}:camera:{{{camera_id}}}:{family}"

    def state_key(self, camera_id: str) -> str:
        return f"{self.prefix}:camera:{{{camera_id}}}:state"


class Retention(BaseModel):
    """How much each kind of key keeps; ``MAXLEN ~`` trims in whole stream nodes (about 100 entries)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shard_maxlen: int = Field(
        100_000, ge=1, description="Entries kept per shard stream (XADD MAXLEN ~): consumer-lag headroom."
    )
    family_shard_maxlen: dict[str, int] = Field(
        default_factory=lambda: {FACE_MATCHES: 10_000},
        description="Per-family override of shard_maxlen. Face matches are kept shorter by default: "
        "they concern people, and consumers (alerting) read them at once.",
    )
    camera_maxlen: int = Field(
        200, ge=0, description="Entries kept per per-camera stream; 0 disables per-camera streams."
    )
    camera_ttl_s: int | None = Field(
        86_400,
        ge=60,
        description="Expiry of a camera's state hash and stream, renewed by every state write: keys of a "
        "removed camera disappear after this. None keeps them forever.",
    )

    def shard_maxlen_of(self, family: str) -> int:
        return self.family_shard_maxlen.get(family, self.shard_maxlen)
