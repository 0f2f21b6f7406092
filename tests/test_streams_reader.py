"""StreamReader against a real valkey-server: consumer groups, recovery, per-camera follow."""

from __future__ import annotations

import time

import pytest
import redis

from cluster.status import CameraState, CameraStatus
from streams import (
    DetectionMessage,
    StreamLayout,
    StreamReader,
    StreamWriter,
    UnsupportedMessageError,
)
from streams.samples import synthetic_batch, synthetic_message

LAYOUT = StreamLayout()


def _ids(received) -> list[tuple[str, int]]:
    return [(r.message.camera_id, r.message.seq) for r in received]


def _drain(*readers: StreamReader) -> dict[str, list]:
    got: dict[str, list] = {r.consumer: [] for r in readers}
    idle_rounds = 0
    while idle_rounds < 2:
        idle_rounds += 1
        for reader in readers:
            batch = reader.read(count=7)
            if batch:
                idle_rounds = 0
                got[reader.consumer].extend(batch)
                assert reader.ack(batch) == len(batch)
    return got


def test_groups_are_created_idempotently(redis_url):
    first = StreamReader(redis_url, group="g", consumer="a")
    second = StreamReader(redis_url, group="g", consumer="b")
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    assert len(client.keys("cctv:detections:*")) == 16
    assert [g["name"] for g in client.xinfo_groups(LAYOUT.shard_key(3))] == ["g"]
    first.close()
    second.close()


def test_start_id_applies_when_the_group_is_created(redis_url):
    with StreamWriter.from_url(redis_url) as writer:
        writer.write(synthetic_batch(cameras=4, per_camera=2))
    assert StreamReader(redis_url, group="new-only", consumer="a").read() == []
    history = StreamReader(redis_url, group="replay", consumer="a", start_id="0").read()
    assert len(history) == 8


def test_two_consumers_split_the_messages_without_loss_or_duplication(redis_url):
    readers = [StreamReader(redis_url, group="g", consumer=name) for name in ("a", "b")]
    sent = synthetic_batch(cameras=40, per_camera=10)
    with StreamWriter.from_url(redis_url) as writer:
        for start in range(0, len(sent), 50):
            writer.write(sent[start : start + 50])
    got = _drain(*readers)
    a, b = _ids(got["a"]), _ids(got["b"])
    assert a and b  # both did work
    assert len(a) + len(b) == len(sent)
    assert set(a).isdisjoint(b)
    assert set(a) | set(b) == {(m.camera_id, m.seq) for m in sent}
    # Within one consumer, each camera's messages arrive in sequence order (one camera, one shard).
    for ids in (a, b):
        for camera in {c for c, _ in ids}:
            seqs = [s for c, s in ids if c == camera]
            assert seqs == sorted(seqs)
    assert readers[0].pending() == 0
    assert readers[0].read(count=10) == []


def test_a_dead_consumers_pending_entries_are_reclaimed(redis_url):
    dead = StreamReader(redis_url, group="g", consumer="dead")
    alive = StreamReader(redis_url, group="g", consumer="alive")
    with StreamWriter.from_url(redis_url) as writer:
        writer.write(synthetic_batch(cameras=20, per_camera=5))
    lost = dead.read(count=3)  # read, never acked: the consumer "dies" here
    assert lost
    processed = _drain(alive)["alive"]
    assert len(lost) + len(processed) == 100
    assert alive.pending() == len(lost)
    assert alive.claim_stale(min_idle_ms=60_000) == []  # not idle long enough yet
    time.sleep(0.1)
    claimed, rounds = [], 0
    while batch := alive.claim_stale(min_idle_ms=50, count=2):  # at most about 2 per shard per call
        assert alive.ack(batch) == len(batch)  # processed, then acked, like a real consumer
        claimed += batch
        rounds += 1
    assert rounds >= 2
    assert sorted(_ids(claimed)) == sorted(_ids(lost))
    assert alive.pending() == 0
    assert alive.claim_stale(min_idle_ms=0) == []


def test_entries_of_unknown_versions_are_surfaced_not_dropped(redis_url):
    reader = StreamReader(redis_url, group="g", consumer="a")
    with StreamWriter.from_url(redis_url) as writer:
        writer.write([synthetic_message("cam-0000", 0)])
    key = LAYOUT.shard_key_of("cam-0000")
    client = redis.Redis.from_url(redis_url)
    client.xadd(key, {"v": 2, "kind": "detections", "camera_id": "cam-0000", "seq": 1, "json": "{}"})
    client.xadd(key, {"v": 1, "kind": "gait_match", "camera_id": "cam-0000", "json": "{}"})
    client.xadd(key, {"v": 1, "kind": "detections", "camera_id": "cam-0000", "json": '{"v": 1}'})
    received = reader.read(count=10)
    assert len(received) == 4
    assert isinstance(received[0].unwrap(), DetectionMessage)
    errors = [r.error for r in received[1:]]
    assert "schema version '2' is not supported" in errors[0] and "upgrade" in errors[0]
    assert "unknown message kind 'gait_match'" in errors[1]
    assert "invalid detections v1 payload" in errors[2]
    assert all(r.message is None and r.raw["camera_id"] == "cam-0000" for r in received[1:])
    with pytest.raises(UnsupportedMessageError, match="version '2'"):
        received[1].unwrap()
    assert reader.ack(received) == 4  # the caller decides; here it acks them as dead letters


def test_latest_and_camera_state(redis_url):
    reader = StreamReader(redis_url, group="g", consumer="a")
    with StreamWriter.from_url(redis_url) as writer:
        writer.write(synthetic_batch(cameras=3, per_camera=30))
        writer.write_states(
            [CameraStatus(camera_id="cam-0002", url="rtsp://h/2", state=CameraState.ONLINE, frames_decoded=7)]
        )
    latest = reader.latest("cam-0002", n=5)
    assert [r.message.seq for r in latest] == [29, 28, 27, 26, 25]
    assert {r.stream for r in latest} == {"cctv:camera:{cam-0002}:detections"}
    assert reader.latest("nobody") == []
    state = reader.camera_state("cam-0002")
    assert state.state == CameraState.ONLINE and state.counters.frames_decoded == 7
    assert reader.camera_state("cam-0001") is None


def test_reader_limited_to_some_shards(redis_url):
    layout = StreamLayout(shards=4)
    sent = synthetic_batch(cameras=12, per_camera=2)
    readers = [StreamReader(redis_url, layout, group="g", consumer=f"w{s}", shards=[s]) for s in range(4)]
    with StreamWriter.from_url(redis_url, layout) as writer:
        writer.write(sent)
    for shard, reader in enumerate(readers):
        got = reader.read(count=100)
        assert {r.stream for r in got} <= {layout.shard_key(shard)}
        assert sorted(_ids(got)) == sorted(
            (m.camera_id, m.seq) for m in sent if layout.shard_of(m.camera_id) == shard
        )


def test_blocking_read_wakes_up_on_new_data_and_rejects_unbounded_blocks(redis_url):
    reader = StreamReader(redis_url, group="g", consumer="a")
    started = time.monotonic()
    assert reader.read(block_ms=200) == []
    assert 0.15 < time.monotonic() - started < 2.0
    with pytest.raises(ValueError, match="block_ms"):
        reader.read(block_ms=0)
