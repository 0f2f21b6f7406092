"""StreamWriter against a real valkey-server: exact contents, retention, states, failures."""

from __future__ import annotations

import json
import socket
import time

import pytest
import redis

from cctv.redis_server import RedisServer
from cluster.status import CameraState, CameraStatus
from streams import CameraStateMessage, Retention, SinkError, StreamLayout, StreamWriter
from streams.samples import synthetic_batch, synthetic_message

LAYOUT = StreamLayout()


@pytest.fixture
def client(redis_url):
    c = redis.Redis.from_url(redis_url, decode_responses=True)
    yield c
    c.close()


@pytest.fixture
def writer(redis_url):
    with StreamWriter.from_url(redis_url) as w:
        yield w


def test_exact_stream_contents(writer, client):
    messages = [synthetic_message("gate-3", seq) for seq in (0, 1, 2)] + [synthetic_message("cam-0001", 40)]
    before = time.time()
    assert writer.write(messages) == 4
    after = time.time()

    shard = LAYOUT.shard_key_of("gate-3")
    assert shard == "cctv:detections:{s05}"
    entries = client.xrange(shard)
    assert [list(fields) for _, fields in entries] == [["v", "kind", "camera_id", "seq", "json"]] * 3
    assert [(f["v"], f["kind"], f["camera_id"], f["seq"]) for _, f in entries] == [
        ("1", "detections", "gate-3", str(seq)) for seq in (0, 1, 2)
    ]
    for (_, fields), sent in zip(entries, messages, strict=False):
        payload = json.loads(fields["json"])
        assert before <= payload["written_ts"] <= after
        assert payload == sent.model_copy(update={"written_ts": payload["written_ts"]}).model_dump(
            mode="json"
        )
    # The per-camera stream holds the same entries; other shards only what hashes to them.
    assert [f for _, f in client.xrange(LAYOUT.camera_stream_key("gate-3"))] == [f for _, f in entries]
    assert [f["seq"] for _, f in client.xrange(LAYOUT.shard_key_of("cam-0001"))] == ["40"]
    assert sum(client.xlen(k) for k in LAYOUT.shard_keys()) == 4
    assert writer.last_seq("gate-3") == 2 and writer.last_seq("cam-0001") == 40
    assert writer.last_seq("never-seen") == -1
    assert messages[0].written_ts is None  # the caller's message is a value: not modified


def test_a_camera_moved_to_another_writer_continues_its_sequence(redis_url):
    with StreamWriter.from_url(redis_url) as first:
        first.write(synthetic_batch(cameras=2, per_camera=5))
    with StreamWriter.from_url(redis_url) as second:
        assert second.last_seq("cam-0001") == 4
        nxt = second.last_seq("cam-0001") + 1
        second.write([synthetic_message("cam-0001", nxt)])
        assert second.last_seq("cam-0001") == 5


def test_empty_write_sends_nothing(writer, client):
    assert writer.write([]) == 0
    assert writer.write_states([]) == 0
    assert client.dbsize() == 0


def test_state_messages_are_not_appended_to_streams(writer):
    state = CameraStateMessage.from_status(CameraStatus(camera_id="cam-1", url="rtsp://h/x"))
    with pytest.raises(ValueError, match="camera_state"):
        writer.write([state])


def test_retention_bounds_stream_length_and_memory(redis_url, client):
    retention = Retention(shard_maxlen=400, camera_maxlen=50)
    layout = StreamLayout(shards=2)
    node_entries = int(client.config_get("stream-node-max-entries")["stream-node-max-entries"])
    with StreamWriter.from_url(redis_url, layout, retention) as writer:
        # 8 cameras, 4 per shard: 100 messages per camera fill each shard to its retention once.
        writer.write(synthetic_batch(cameras=8, per_camera=100))
        memory_1x = sum(client.memory_usage(k) for k in client.keys("cctv:*"))
        for first_seq in range(100, 500, 100):  # 5x the retention in total
            writer.write(synthetic_batch(cameras=8, per_camera=100, first_seq=first_seq))
    assert sorted(layout.shard_of(f"cam-{c:04d}") for c in range(8)) == [0] * 4 + [1] * 4
    for key in layout.shard_keys():
        assert retention.shard_maxlen <= client.xlen(key) < retention.shard_maxlen + node_entries
    for c in range(8):
        length = client.xlen(layout.camera_stream_key(f"cam-{c:04d}"))
        assert retention.camera_maxlen <= length < retention.camera_maxlen + node_entries
    memory_5x = sum(client.memory_usage(k) for k in client.keys("cctv:*"))
    assert memory_5x < 1.3 * memory_1x
    # The newest entries are the ones kept.
    newest = client.xrevrange(layout.camera_stream_key("cam-0000"), count=1)[0][1]
    assert newest["seq"] == "499"


def test_camera_maxlen_zero_disables_per_camera_streams(redis_url, client):
    with StreamWriter.from_url(redis_url, retention=Retention(camera_maxlen=0)) as writer:
        writer.write(synthetic_batch(cameras=2, per_camera=3))
        assert client.hget(LAYOUT.state_key("cam-0001"), "last_seq") == "2"
        writer.write_states([CameraStatus(camera_id="cam-0001", url="rtsp://h/1", last_seq=1)])  # lagging
        assert writer.last_seq("cam-0001") == 2
    assert client.keys("cctv:camera:*:detections") == []


def test_write_states_stores_latest_state_with_ttl(writer, client):
    writer.write([synthetic_message("cam-1", s) for s in range(10)])
    statuses = [
        CameraStatus(
            camera_id="cam-1", url="rtsp://h/1", state=CameraState.ONLINE, frames_decoded=50, last_seq=3
        ),
        CameraStatus(camera_id="cam-2", url="rtsp://h/2", state=CameraState.FAILED, last_error="refused"),
    ]
    assert writer.write_states(statuses) == 2
    state = client.hgetall(LAYOUT.state_key("cam-1"))
    assert set(state) == {"v", "kind", "camera_id", "json", "state", "reported_seq", "written_ts"}
    assert {k: state[k] for k in ("v", "kind", "camera_id", "state", "reported_seq")} == {
        "v": "1",
        "kind": "camera_state",
        "camera_id": "cam-1",
        "state": "online",
        "reported_seq": "3",
    }
    message = CameraStateMessage.model_validate_json(state["json"])
    assert message.counters.frames_decoded == 50 and message.written_ts == float(state["written_ts"])
    assert client.hget(LAYOUT.state_key("cam-2"), "state") == "failed"
    for key in (LAYOUT.state_key("cam-1"), LAYOUT.camera_stream_key("cam-1")):
        assert 0 < client.ttl(key) <= Retention().camera_ttl_s


@pytest.mark.parametrize(
    ("written", "reported", "expected"),
    [
        ([], None, -1),
        ([0, 1, 2], None, 2),
        ([0, 1, 2], 1, 2),  # a lagging status snapshot never moves the sequence back
        ([0, 1, 2], 7, 7),  # seqs 3..7 were assigned but never written (dropped): not reused
        ([], 4, 4),  # the stream expired or was trimmed away: the reported state still counts
    ],
)
def test_last_seq_is_the_highest_written_or_reported(writer, written, reported, expected):
    writer.write([synthetic_message("cam-1", s) for s in written])
    if reported is not None:
        writer.write_states([CameraStatus(camera_id="cam-1", url="rtsp://h/1", last_seq=reported)])
    assert writer.last_seq("cam-1") == expected


def _everything_stored(client: redis.Redis) -> str:
    parts = []
    for key in client.scan_iter("*"):
        parts.append(key)
        kind = client.type(key)
        if kind == "hash":
            parts.extend(f"{k}={v}" for k, v in client.hgetall(key).items())
        elif kind == "stream":
            parts.extend(f"{k}={v}" for _, fields in client.xrange(key) for k, v in fields.items())
        else:
            parts.append(f"<{kind}>")
    return "\n".join(parts)


def test_credentials_never_reach_redis(writer, client):
    leaky = CameraStatus(
        camera_id="cam-1",
        url="rtsp://admin:hunter2@10.1.2.3:554/live?token=s3cr3t",
        last_error="failed to open rtsp://admin:hunter2@10.1.2.3:554/live?token=s3cr3t: 401 Unauthorized",
    )
    writer.write_states([leaky])
    writer.write([synthetic_message("cam-1", 0)])
    stored = _everything_stored(client)
    assert "cam-1" in stored and "10.1.2.3" in stored
    assert "hunter2" not in stored and "s3cr3t" not in stored and "admin" not in stored


def test_sink_error_when_the_server_dies_then_recovery_on_the_same_port():
    server = RedisServer().start()
    restarted = None
    try:
        writer = StreamWriter.from_url(server.url, timeout_s=1.0)
        assert writer.write([synthetic_message("cam-1", 0)]) == 1
        server.kill()
        for seq in (1, 2):  # a second call must fail as fast (reconnect refused), not hang
            started = time.monotonic()
            with pytest.raises(SinkError, match="ConnectionError"):
                writer.write([synthetic_message("cam-1", seq)])
            assert time.monotonic() - started < 3.0
        with pytest.raises(SinkError):
            writer.last_seq("cam-1")
        assert writer.ping() is False
        restarted = RedisServer(port=server.port).start()
        assert writer.write([synthetic_message("cam-1", 3)]) == 1
        assert writer.last_seq("cam-1") == 3
    finally:
        for s in (server, restarted):
            if s is not None:
                s.stop()


def test_sink_error_when_the_server_hangs():
    # A listening socket that never answers: connect succeeds, every read must time out.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        writer = StreamWriter.from_url(url, timeout_s=0.5)
        started = time.monotonic()
        with pytest.raises(SinkError, match="Timeout"):
            writer.write([synthetic_message("cam-1", 0)])
        assert time.monotonic() - started < 3.0
        writer.close()
