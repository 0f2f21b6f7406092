"""Key layout: stable sharding, key names, and Redis Cluster slots."""

from __future__ import annotations

import zlib
from collections import Counter

import pytest
from pydantic import ValidationError

from streams import Retention, StreamLayout

CLUSTER_SLOTS = 16384


def crc16_xmodem(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def key_slot(key: str) -> int:
    """Redis Cluster HASH_SLOT: CRC16 of the hash tag (first non-empty ``{...}``) or of the whole key."""
    raw = key.encode()
    start = raw.find(b"{")
    if start != -1:
        end = raw.find(b"}", start + 1)
        if end > start + 1:
            raw = raw[start + 1 : end]
    return crc16_xmodem(raw) % CLUSTER_SLOTS


def test_key_slot_matches_the_cluster_spec():
    assert crc16_xmodem(b"123456789") == 0x31C3  # test vector of the Redis Cluster specification
    assert key_slot("{user1000}.following") == key_slot("{user1000}.followers")
    assert key_slot("foo{}{bar}") == crc16_xmodem(b"foo{}{bar}") % CLUSTER_SLOTS


@pytest.mark.parametrize(
    ("layout", "shard", "expected"),
    [
        (StreamLayout(), 7, "cctv:detections:{s07}"),
        (StreamLayout(), 15, "cctv:detections:{s15}"),
        (StreamLayout(prefix="city-a", shards=128), 5, "city-a:detections:{s005}"),
        (StreamLayout(shards=1), 0, "cctv:detections:{s00}"),
    ],
)
def test_shard_key_names(layout, shard, expected):
    assert layout.shard_key(shard) == expected


def test_camera_key_names():
    layout = StreamLayout()
    assert layout.camera_stream_key("gate-3") == "cctv:camera:{gate-3}:detections"
    assert layout.state_key("gate-3") == "cctv:camera:{gate-3}:state"


def test_shard_of_is_crc32_and_stable():
    layout = StreamLayout()
    # Pinned: any consumer in any language computes crc32(camera_id) % shards the same way.
    assert zlib.crc32(b"cam-0000") == 0xB663D33F
    assert [layout.shard_of(c) for c in ("cam-0000", "cam-0001", "gate-3")] == [15, 9, 5]
    assert StreamLayout(shards=64).shard_of("cam-0000") == 0xB663D33F % 64
    spread = Counter(layout.shard_of(f"cam-{i:05d}") for i in range(10_000))
    assert len(spread) == 16 and max(spread.values()) < 1.15 * 10_000 / 16


def test_a_cameras_keys_share_one_slot():
    layout = StreamLayout()
    for camera_id in ("cam-0000", "gate-3", "a", "Z.9_x-1"):
        slots = {key_slot(layout.camera_stream_key(camera_id)), key_slot(layout.state_key(camera_id))}
        assert len(slots) == 1, camera_id


@pytest.mark.parametrize("shards", [16, 32, 64])
def test_shard_keys_spread_over_slots_and_nodes(shards):
    slots = [key_slot(key) for key in StreamLayout(shards=shards).shard_keys()]
    assert len(set(slots)) == shards  # every shard its own slot
    # A 3-master cluster with the default contiguous slot ranges serves shards on every node.
    per_node = Counter(slot * 3 // CLUSTER_SLOTS for slot in slots)
    assert set(per_node) == {0, 1, 2} and min(per_node.values()) >= shards // 4


def test_cameras_spread_over_slots():
    layout = StreamLayout()
    slots = {key_slot(layout.state_key(f"cam-{i:05d}")) for i in range(1000)}
    assert len(slots) > 900


@pytest.mark.parametrize(
    ("kwargs", "model"),
    [
        ({"shards": 0}, StreamLayout),
        ({"prefix": "a b"}, StreamLayout),
        ({"prefix": "x{y}"}, StreamLayout),
        ({"extra": 1}, StreamLayout),
        ({"shard_maxlen": 0}, Retention),
        ({"camera_ttl_s": 1}, Retention),
    ],
)
def test_invalid_settings_are_rejected(kwargs, model):
    with pytest.raises(ValidationError):
        model(**kwargs)


def test_shard_out_of_range():
    with pytest.raises(ValueError, match="out of range 0..15"):
        StreamLayout().shard_key(16)
